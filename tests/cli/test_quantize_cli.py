"""``trtkit quantize`` as a user runs it: data checked before any work, what was quantized, the accuracy verdict
in the exit status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.cli import main
from trtkit.deps import available


def _conv_model(path: Path) -> Path:
    """Two 3x3 convs with a ReLU: ``x[1, 3, 16, 16]`` -> ``y[1, 32, 16, 16]``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32), n)
             for n, s in (("w1", (32, 3, 3, 3)), ("w2", (32, 32, 3, 3)))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["a"], ["b"], name="relu"),
         helper.make_node("Conv", ["b", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])], "convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _conv_model(tmp_path / "convs.onnx")


def _data(path: Path, scale: float = 1.0, name: str = "x", count: int = 8, seed: int = 0) -> Path:
    arr = (np.random.default_rng(seed).uniform(-1, 1, (count, 3, 16, 16)) * scale).astype(np.float32)
    np.savez(path, **{name: arr})
    return path


@pytest.mark.skipif(available("modelopt.onnx"), reason="ModelOpt is installed: auto picks it")
def test_quantize_writes_the_model_and_prints_what_was_quantized(model: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "convs.int8.onnx"
    rc = main(["quantize", str(model), "-o", str(out), "--calib", str(_data(tmp_path / "calib.npz")),
               "--val-data", str(_data(tmp_path / "val.npz", seed=1))])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert out.is_file() and {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(out).graph.node}
    assert "onnxruntime" in printed and "Conv 2" in printed
    assert "accuracy: PASS" in printed and "cosine" in printed


def test_a_data_file_with_a_wrong_input_name_is_refused_in_one_line(model: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.onnx"
    rc = main(["quantize", str(model), "-o", str(out), "--calib", str(_data(tmp_path / "bad.npz", name="input"))])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1
    assert "'input'" in err and "x (float32 [1, 3, 16, 16])" in err
    assert not out.exists()


def test_output_that_is_the_model_or_its_weight_file_is_refused(model: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    calib = str(_data(model.parent / "calib.npz"))
    before = model.read_bytes()
    assert main(["quantize", str(model), "-o", str(model), "--calib", calib]) == 1
    assert "destroy the input" in capsys.readouterr().err
    assert model.read_bytes() == before
    # a model whose weights live in weights.onnx.data: -o weights.onnx would write its .data over them
    external = model.parent / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(model), external, save_as_external_data=True, location="weights.onnx.data",
              size_threshold=0)
    weights = (external.parent / "weights.onnx.data").read_bytes()
    assert main(["quantize", str(external), "-o", str(external.parent / "weights.onnx"), "--calib", calib]) == 1
    assert "destroy the input" in capsys.readouterr().err
    assert (external.parent / "weights.onnx.data").read_bytes() == weights


def test_a_failed_accuracy_check_exits_4_and_no_check_skips_it(model: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Calibrated on tiny inputs, validated on large ones: the input clips and the check fails, loudly."""
    calib = str(_data(tmp_path / "calib.npz", scale=0.001))
    val = str(_data(tmp_path / "val.npz", scale=1000.0, seed=1))
    out = tmp_path / "q.onnx"
    rc = main(["quantize", str(model), "-o", str(out), "--calib", calib, "--val-data", val,
               "--quantizer", "onnxruntime"])
    printed = capsys.readouterr().out
    assert rc == 4
    assert any(line.startswith("FAILED accuracy") for line in printed.splitlines())
    assert out.is_file()  # written, to inspect
    rc = main(["quantize", str(model), "-o", str(out), "--calib", calib, "--quantizer", "onnxruntime",
               "--no-check"])
    assert rc == 0 and "accuracy: not checked" in capsys.readouterr().out


def test_exclusions_and_shapes_flags(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q.onnx"
    rc = main(["quantize", str(model), "-o", str(out), "--calib", str(_data(tmp_path / "c.npz")),
               "--quantizer", "onnxruntime", "--exclude-nodes", "conv2", "--shapes", "x:1x3x16x16"])
    printed = capsys.readouterr().out
    assert rc == 0 and "left in float: 1 compute node(s): conv2" in printed
    rc = main(["quantize", str(model), "-o", str(out), "--calib", str(_data(tmp_path / "c.npz")),
               "--quantizer", "onnxruntime", "--exclude-ops", "Conv"])
    assert rc == 0 and "left in float: 2 compute node(s): conv1, conv2" in capsys.readouterr().out
    rc = main(["quantize", str(model), "-o", str(out), "--calib", str(_data(tmp_path / "c.npz")),
               "--shapes", "x:1x3x32x32"])
    assert rc == 1 and "x" in capsys.readouterr().err
