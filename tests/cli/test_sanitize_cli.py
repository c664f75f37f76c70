"""``trtkit sanitize`` and the build's preparation flags, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from trtkit.backend import Backend
from trtkit.cli import main
from trtkit.manifest import read_engine_file

BACKEND_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
OPSET6_ADD = BACKEND_DATA / "pytorch-operator" / "test_operator_add_broadcast" / "model.onnx"


@pytest.fixture
def opset6(tmp_path: Path) -> Path:
    path = tmp_path / "add.onnx"
    shutil.copy(OPSET6_ADD, path)
    return path


@pytest.fixture
def scaled(tmp_path: Path) -> Path:
    """y = x[N, 4] * sr, sr a float scalar input."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "sr"], ["y"], name="scale")], "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("sr", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "scaled.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_sanitize_upgrades_and_prints_a_summary(opset6: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "add.sanitized.onnx"
    assert main(["sanitize", str(opset6), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"sanitized {opset6} -> {out}" in text
    assert "opset 6 -> 17" in text and "nodes: 1 -> 1" in text and "ops removed: none" in text
    saved = onnx.load(out)
    assert {o.domain or "": o.version for o in saved.opset_import}[""] == 17
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
        helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in saved.graph.input}
    ort = pytest.importorskip("onnxruntime")
    prepared = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)
    original = ReferenceEvaluator(str(opset6)).run(None, feeds)  # ONNX Runtime does not run opset 6
    np.testing.assert_allclose(prepared[0], original[0], rtol=1e-6, atol=1e-6)


def test_sanitize_json_freeze_and_shapes(scaled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scaled.fixed.onnx"
    assert main(["sanitize", str(scaled), "-o", str(out), "--freeze", "sr:2", "--shapes", "x:3x4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(out) and data["opset"] == {"before": 17, "after": 17}
    assert data["nodes"]["before"] == 1 and data["steps"]
    saved = onnx.load(out)
    inits = {t.name for t in saved.graph.initializer}
    assert [i.name for i in saved.graph.input if i.name not in inits] == ["x"]
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    prepared = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    original = ort.InferenceSession(str(scaled), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "sr": np.array(2, np.float32)})
    np.testing.assert_allclose(prepared[0], original[0], rtol=1e-6)


def test_sanitize_refuses_to_overwrite_its_input(opset6: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = opset6.read_bytes()
    assert main(["sanitize", str(opset6), "-o", str(opset6)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "would destroy the input" in err
    assert opset6.read_bytes() == before


def test_sanitize_bad_values_are_one_line(scaled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.onnx"
    assert main(["sanitize", str(scaled), "-o", str(out), "--freeze", "rate:2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "freeze names 'rate', not an input of scaled" in err
    assert main(["sanitize", str(scaled), "-o", str(out), "--freeze", "sr"]) == 2
    assert "expected NAME:VALUE" in capsys.readouterr().err
    assert main(["sanitize", str(scaled), "-o", str(out), "--freeze", "sr:abc"]) == 2
    assert "not a number" in capsys.readouterr().err
    assert main(["sanitize", str(scaled), "-o", str(out), "--upgrade-opset", "3"]) == 1
    assert "upgrade_opset must be between 7 and" in capsys.readouterr().err
    assert not out.exists()


def test_build_no_sanitize_fails_and_default_retries(rtx: Backend, opset6: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "add.engine"
    assert main(["build", str(opset6), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress",
                 "--no-sanitize"]) == 1
    assert "Pre-opset 7 broadcasting" in capsys.readouterr().err and not out.exists()
    assert main(["build", str(opset6), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WARNING" in err and "built it after preparing the model:" in err
    _, manifest = read_engine_file(out)
    assert manifest is not None and manifest.extra["preparation"]["trigger"] == "retry"


def test_build_freeze_flag(rtx: Backend, scaled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scaled.engine"
    assert main(["build", str(scaled), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress",
                 "--shapes", "x:2x4", "--freeze", "sr:16000"]) == 0
    assert "prepared the model (freeze):" in capsys.readouterr().out
    _, manifest = read_engine_file(out)
    assert manifest is not None and [t.name for t in manifest.tensors] == ["x", "y"]
    assert manifest.config["freeze"] == {"sr": 16000}
