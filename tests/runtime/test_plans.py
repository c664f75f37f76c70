"""What is not a TensorRT plan is called what it is, in one line, before anything is deserialized."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from onnx import TensorProto, helper
from support import trt_double

from trtkit.backend import Backend
from trtkit.cli.main import main
from trtkit.errors import ConfigError, EngineFileError, TrtkitError
from trtkit.runtime import load_engine
from trtkit.runtime.plans import check_plan, not_a_plan, plan_tag


def _onnx_bytes() -> bytes:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def _zip(tmp_path: Path) -> bytes:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x04" + b"x" * 100)
    return (tmp_path / "a.zip").read_bytes()


NOT_PLANS = {
    "text": (lambda _: b"This is my model.\nIt is not an engine.\n" * 10, "a text file"),
    "json": (lambda _: json.dumps({"hello": list(range(40))}).encode(), "a JSON file"),
    "manifest": (lambda _: json.dumps({"plan_size": 1, "plan_sha256": "0" * 64, "x": "y" * 50}).encode(),
                 "trtkit manifest"),
    "onnx": (lambda _: _onnx_bytes(), "an ONNX model"),
    "tiny": (lambda _: b"ftr", "too small"),
    "zip": (_zip, "a zip archive"),
    "ultralytics": (lambda _: (lambda m: len(m).to_bytes(4, "little") + m + b"ftrt" + bytes(200))(
        json.dumps({"task": "detect", "imgsz": [640, 640]}).encode()), "Ultralytics"),
}


@pytest.mark.parametrize("kind", sorted(NOT_PLANS))
def test_not_a_plan_names_what_the_file_is(kind: str, tmp_path: Path) -> None:
    make, words = NOT_PLANS[kind]
    what = not_a_plan(make(tmp_path))
    assert what is not None and words in what


def test_plans_are_recognised_by_their_tag(rtx: Backend) -> None:
    from trtkit.builder import build_engine

    built = build_engine(_onnx_bytes(), backend=rtx, progress=False)
    assert plan_tag(built.plan) == "TensorRT-RTX"
    assert not_a_plan(built.plan) is None
    check_plan(built.plan, "x")  # no error
    assert not_a_plan(b"ftrt" + bytes(1000)) is None


@pytest.mark.parametrize("kind", sorted(NOT_PLANS))
def test_load_engine_refuses_non_plans_before_any_gpu_work(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(NOT_PLANS[kind][0](tmp_path))
    be = Backend.from_module("tensorrt", trt_double.make_module("tensorrt"))
    with pytest.raises(EngineFileError, match="is not a TensorRT engine plan") as info:
        load_engine(path, backend=be)
    assert "\n" not in str(info.value)


def test_load_engine_of_a_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pass a path"):
        load_engine(123)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(NOT_PLANS))
def test_cli_inspect_does_not_call_a_non_plan_a_plan(kind: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(NOT_PLANS[kind][0](tmp_path))
    rc = main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("trtkit: error:") and "not a TensorRT engine plan" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_inspect_of_random_bytes_says_it_is_probably_not_a_plan(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "random.engine"
    path.write_bytes(bytes(range(256)) * 8)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "probably not a TensorRT plan" in out and "bare TensorRT plan" not in out


def test_text_passed_as_plan_bytes_is_refused_as_text() -> None:
    be = Backend.from_module("tensorrt", trt_double.make_module("tensorrt"))
    with pytest.raises(EngineFileError, match="it is a text file"):
        load_engine(b"engine = 'model.engine'\nprecision = 'fp16'\n" * 4, backend=be)


def test_double_plans_carry_the_tensorrt_tag_and_pass_the_plan_check(tmp_path: Path) -> None:
    plan = trt_double.make_plan()
    assert plan_tag(plan) == "TensorRT" and not_a_plan(plan) is None
    path = tmp_path / "double.engine"
    path.write_bytes(plan)
    be = Backend.from_module("tensorrt", trt_double.make_module("tensorrt"))
    try:
        load_engine(path, backend=be)
    except EngineFileError as exc:
        pytest.fail(f"a double plan was refused as a file: {exc}")
    except TrtkitError:
        pass  # no GPU here: it got past the plan check to the device
