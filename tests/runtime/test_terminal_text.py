"""Names from files reach the terminal escaped: no ANSI escape sequence in a tensor or input name is acted on."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from trtkit.backend import Backend
from trtkit.cli.main import main
from trtkit.errors import ShapeError
from trtkit.profiles import InputInfo, resolve_profiles
from trtkit.text import safe, safe_lines

EVIL = "x\x1b[2J\x1b[31mowned\u202e\x9b1m"


def _assert_inert(text: str) -> None:
    for ch in ("\x1b", "\u202e", "\x9b", "\x07"):
        assert ch not in text


def test_safe_escapes_controls_and_keeps_printable_unicode() -> None:
    assert safe("input_1:0") == "input_1:0"
    assert safe("énergie名前") == "énergie名前"
    out = safe(EVIL)
    _assert_inert(out)
    assert "\\x1b[2J" in out and "owned" in out
    assert safe_lines("a\x1b\nb") == "a\\x1b\nb"


def test_shape_errors_escape_input_names() -> None:
    with pytest.raises(ShapeError) as info:
        resolve_profiles([], [InputInfo(EVIL, (-1, 3), "float32")])
    _assert_inert(str(info.value))


def _evil_model(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", [EVIL], ["y\x1b]0;title\x07"])], "g\x1b[1m",
                              [helper.make_tensor_value_info(EVIL, TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y\x1b]0;title\x07", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def test_inspect_onnx_escapes_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(_evil_model(tmp_path / "m.onnx"))]) == 0
    out = capsys.readouterr().out
    assert "owned" in out
    _assert_inert(out)


def test_inspect_engine_escapes_names(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit.builder import build_engine
    from trtkit.manifest import write_engine_file

    built = build_engine(_evil_model(tmp_path / "m.onnx"), backend=rtx, progress=False)
    path = write_engine_file(tmp_path / "m.engine", built.plan, built.manifest)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "owned" in out
    _assert_inert(out)
