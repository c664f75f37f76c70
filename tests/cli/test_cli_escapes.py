"""A name from a model or the command line cannot put a raw terminal escape sequence into trtkit's error line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from trtkit.cli.main import cli, main
from trtkit.errors import BuildCancelledError, ShapeError

NAME = "input\x1b[31m_red"
LOG = f"[E] [TRT] {NAME}: shape mismatch \x1b]0;owned\x07"


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def failing() -> Iterator[click.Group]:
    """A command that fails the way a real one does, with text taken from a model."""

    @click.command("fail-with")
    @click.argument("kind")
    def fail_with(kind: str) -> None:
        if kind == "trtkit":
            _raise(ShapeError(f"the model has no input named {NAME}", tensorrt_log=[LOG]))
        elif kind == "cancelled":
            _raise(BuildCancelledError(f"build of {NAME} cancelled"))
        elif kind == "usage":
            _raise(click.BadParameter(f"no input named {NAME}", param_hint="--shapes"))
        _raise(RuntimeError(f"boom in {NAME}"))

    cli.add_command(fail_with)
    yield cli
    cli.commands.pop("fail-with")


@pytest.mark.parametrize(("kind", "rc"), [("trtkit", 1), ("cancelled", 130), ("usage", 2), ("internal", 70)])
def test_error_lines_carry_no_raw_escape_sequences(failing: click.Group, kind: str, rc: int,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fail-with", kind]) == rc
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "input\\x1b[31m_red" in err  # the name is still there, shown escaped


def test_tensorrt_log_lines_stay_lines_but_are_escaped(failing: click.Group,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fail-with", "trtkit"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("trtkit: error: the model has no input named input\\x1b[31m_red")
    assert lines[-1].strip() == "[E] [TRT] input\\x1b[31m_red: shape mismatch \\x1b]0;owned\\x07"


def test_a_model_named_with_an_escape_is_escaped_in_a_real_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"{tmp_path}/model\x1b[31m.onnx"
    assert main(["build", missing]) != 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "model\\x1b[31m.onnx" in err
