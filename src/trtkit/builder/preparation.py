"""How a build prepares the graph (:mod:`trtkit.builder.prepare`): the options a :class:`BuildConfig` asks for,
the checks of frozen inputs, and ``sanitize="auto"``'s preparation after a failed first attempt."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from trtkit.builder.config import BuildConfig
from trtkit.builder.model import OnnxModel
from trtkit.builder.prepare import Prepared, PrepareOptions, prepare
from trtkit.errors import ConfigError, TrtkitError
from trtkit.log import get_logger
from trtkit.profiles import Profile

__all__ = ["append_to_message", "check_freeze", "failure_reason", "first_line", "notice", "prepare_after_failure",
           "prepare_options", "retry_failed"]

_log = get_logger("builder")


def prepare_options(config: BuildConfig) -> PrepareOptions:
    """The graph preparation ``config`` asks for."""
    return PrepareOptions(upgrade_opset=config.upgrade_opset, freeze=config.freeze or MappingProxyType({}),
                          lower_dynamic_quant=config.lower_dynamic_quant)


def check_freeze(config: BuildConfig, model: OnnxModel, profiles: Sequence[Profile]) -> None:
    """Refuse ``freeze`` names that are not inputs of ``model``, and profiles giving shapes for frozen inputs
    (a frozen input is a constant, not an engine input)."""
    if not config.freeze:
        return
    names = [i.name for i in model.inputs()]
    unknown = [n for n in config.freeze if n not in names]
    if unknown:
        raise ConfigError(f"freeze names {', '.join(map(repr, unknown))}, not an input of {model.name}; its inputs: "
                          f"{', '.join(map(repr, names)) or 'none'}")
    for index, profile in enumerate(profiles):
        shaped = [n for n in profile.ranges if n in config.freeze]
        if shaped:
            raise ConfigError(f"profile {index} gives shapes for frozen input {', '.join(map(repr, shaped))}; a "
                              "frozen input is a constant, not an engine input: leave it out of the shapes")


def first_line(text: str, limit: int = 240) -> str:
    """The first line of ``text``, cut to ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failure_reason(error: TrtkitError) -> str:
    """One line saying why a build failed: the parser's first issue, else the message's first line."""
    issues = getattr(error, "issues", ())
    return first_line(str(issues[0]) if issues else error.message)


def append_to_message(error: TrtkitError, text: str) -> None:
    """Add ``text`` to the first line of ``error``'s message."""
    first, _, rest = error.message.partition("\n")
    error.message = first + text + (f"\n{rest}" if rest else "")
    error.args = (error._render(),)


def prepare_after_failure(first: TrtkitError, model: OnnxModel, config: BuildConfig,
                          profiles: Sequence[Profile]) -> Prepared:
    """``sanitize="auto"``: prepare ``model`` after ``first`` failed, or raise ``first`` when preparation fails
    (saying so at the end of its first line) or changes nothing."""
    try:
        prepared = prepare(model, prepare_options(config), profiles)
    except Exception as exc:  # the model failed anyway: its own error says more than the preparation's
        append_to_message(first, f" (trtkit could not prepare the graph: {type(exc).__name__}: {first_line(str(exc))})")
        raise first from exc
    if not prepared.steps:
        raise first
    _log.info("%s failed as it is (%s); prepared the model: %s; retrying", model.name, failure_reason(first),
              "; ".join(prepared.steps))
    return prepared


def retry_failed(first: TrtkitError, second: TrtkitError, prepared: Prepared) -> TrtkitError:
    """``first``, its first line ending with what preparation did and why the prepared model failed too."""
    append_to_message(first, f" (preparing the model did not help: {'; '.join(prepared.steps)}; then "
                             f"{failure_reason(second)})")
    return first


def notice(name: str, first: TrtkitError, prepared: Prepared) -> None:
    """The one-line warning of a build that succeeded only after preparation."""
    _log.warning("%s failed as it is (%s); built it after preparing the model: %s", name, failure_reason(first),
                 "; ".join(prepared.steps))
