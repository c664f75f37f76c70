"""The report of an accuracy check: :class:`CompareReport`, its status and the exit codes of ``trtkit compare``.

Exit codes (also :attr:`CompareReport.exit_code`): 0 within tolerance, 1 error, 2 usage error, 3 the engine
cannot run on this machine, 4 outputs differ beyond tolerance, 5 nothing meaningful was compared (an output's
reference is all within ``atol`` of zero, and no output failed): not a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from trtkit.profiles import format_shape
from trtkit.text import safe
from trtkit.tools.metrics import OutputComparison, Tolerance

if TYPE_CHECKING:
    from trtkit.tools.layerwise import LayerwiseReport

__all__ = [
    "EXIT_CANNOT_RUN",
    "EXIT_ERROR",
    "EXIT_MISMATCH",
    "EXIT_NOT_CHECKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CompareReport",
    "Status",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CANNOT_RUN: Final = 3
EXIT_MISMATCH: Final = 4
EXIT_NOT_CHECKED: Final = 5

Status = Literal["pass", "mismatch", "not_run", "not_checked"]

_EXIT_CODES: Final[Mapping[str, int]] = {
    "pass": EXIT_OK, "not_run": EXIT_CANNOT_RUN, "mismatch": EXIT_MISMATCH, "not_checked": EXIT_NOT_CHECKED,
}

_NOT_CHECKED_FIX: Final = ("feed inputs that give these outputs values beyond atol (--inputs FILE.npz or "
                           "--val-range), or lower --atol (0 checks an all-zero output exactly)")


@dataclass(frozen=True)
class CompareReport:
    """The result of :func:`compare` and :func:`trtkit.tools.quantize.check_conversion`.

    ``status`` is ``"pass"`` (every output within tolerance), ``"mismatch"`` (at least one output fails),
    ``"not_checked"`` (none fails, but at least one output's reference is all within ``atol`` of zero, so
    nothing meaningful was compared for it: not a pass) or ``"not_run"`` (the engine cannot run on this
    machine; :attr:`reason` says why and :attr:`outputs` is empty).
    """

    reference: str
    candidate: str
    precision: str
    tolerance: Tolerance
    inputs: Mapping[str, tuple[tuple[int, ...], str]]
    """Input name -> (shape, dtype) of what was fed."""
    outputs: tuple[OutputComparison, ...] = ()
    reason: str | None = None
    seed: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    """``evaluator``: what ran an ONNX candidate (``"onnxruntime"`` or ``"onnx-reference"``); ``val_range``: the
    range generated inputs were drawn from; ``model_check``: whether the engine's manifest names MODEL."""
    notes: tuple[str, ...] = ()
    """Things the reader should know (e.g. the engine was built from another model); printed by :meth:`format`."""
    layerwise: LayerwiseReport | None = None
    """The layer-wise table (``compare(..., layerwise=True)``); it does not change :attr:`status`."""

    @property
    def ran(self) -> bool:
        return self.reason is None

    @property
    def not_checked(self) -> tuple[str, ...]:
        """Names of the outputs that were not really checked (see :attr:`OutputComparison.checked`)."""
        return tuple(o.name for o in self.outputs if o.status == "not_checked")

    @property
    def passed(self) -> bool:
        """True only for ``status == "pass"``."""
        return self.status == "pass"

    @property
    def status(self) -> Status:
        if not self.ran:
            return "not_run"
        if any(o.status == "fail" for o in self.outputs):
            return "mismatch"
        if not self.outputs or self.not_checked:
            return "not_checked"
        return "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 3 not run here, 4 mismatch, 5 not checked (see the module docstring)."""
        return _EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status, "exit_code": self.exit_code, "reason": self.reason,
            "reference": self.reference, "candidate": self.candidate, "precision": self.precision,
            "tolerance": self.tolerance.to_dict(), "seed": self.seed,
            "inputs": {n: {"shape": list(s), "dtype": d} for n, (s, d) in self.inputs.items()},
            "outputs": [o.to_dict() for o in self.outputs], "not_checked": list(self.not_checked),
            "notes": list(self.notes), **dict(self.extra),
            "layerwise": self.layerwise.to_dict() if self.layerwise is not None else None,
        }

    def format(self) -> str:
        """A human-readable table, and the layer-wise table after it when there is one."""
        text = self._format_outputs()
        if self.layerwise is None:
            return text
        return f"{text}\nlayer-wise (intermediate tensors, in topological order):\n{self.layerwise.format()}"

    def _format_outputs(self) -> str:
        lines = [f"reference: {safe(self.reference)}", f"candidate: {safe(self.candidate)}"]
        feeds = ", ".join(f"{safe(n)} {d}[{format_shape(s)}]" for n, (s, d) in self.inputs.items())
        src = f" (generated, seed {self.seed})" if self.seed is not None else ""
        if self.seed is not None and self.extra.get("val_range") is not None:
            src = f" (generated, seed {self.seed}, range {self.extra['val_range']})"
        if self.extra.get("inputs_from"):
            src = f" ({self.extra['inputs_from']})"
        lines.append(f"inputs:    {feeds}{src}")
        lines.append(f"tolerance: {self.precision}: {self.tolerance.describe()}")
        lines += [f"note: {safe(n)}" for n in self.notes]
        if not self.ran:
            lines.append(f"NOT RUN: the engine cannot run on this machine: {safe(str(self.reason))}")
            lines.append("(`trtkit doctor` shows what this machine has; the ONNX Runtime reference did run.)")
            return "\n".join(lines)
        lines.append(f"  {'output':<20} {'shape':<16} {'max abs':>10} {'max rel':>10} {'mean abs':>10} "
                     f"{'mismatch':>16} {'cosine':>10}")
        for o in self.outputs:
            name = safe(o.name)
            if o.problem is not None:
                lines.append(f"  {name:<20} FAIL: {safe(o.problem)}")
                continue
            mism = f"{o.mismatches}/{o.size}" if self.tolerance.elementwise else "-"
            cosine = f"{o.cosine:>10.6f}" if o.cosine_checked else f"{'-':>10}"
            verdict = {"pass": "", "fail": "  FAIL: " + "; ".join(o.failures),
                       "not_checked": "  NOT CHECKED: the reference is all within atol of zero"}[o.status]
            lines.append(f"  {name:<20} {format_shape(o.shape):<16} {o.max_abs:>10.3g} {o.max_rel:>10.3g} "
                         f"{o.mean_abs:>10.3g} {mism:>16} {cosine}{verdict}")
        status = self.status
        if status == "pass":
            lines.append("PASS: every output is within tolerance")
        elif status == "mismatch":
            failed = sum(o.status == "fail" for o in self.outputs)
            lines.append(f"FAIL: {failed} of {len(self.outputs)} output(s) differ beyond tolerance")
        elif not self.outputs:
            lines.append("NOT CHECKED: there were no outputs to compare")
        else:
            names = ", ".join(map(repr, map(safe, self.not_checked)))
            lines.append(f"NOT CHECKED: nothing meaningful was compared for {names} (the reference is all within "
                         f"atol of zero, so any output near zero would match); this is not a pass: "
                         f"{_NOT_CHECKED_FIX}")
        return "\n".join(lines)

