"""``trtkit build MODEL --precision int8 --calib DATA``: quantize (ONNX Runtime) and build (TensorRT-RTX on the
CPU) in one step through the engine cache; the second call reuses both. Bad data is refused in one line before
any work; an implicit-calibration request names the Q/DQ path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtkit.cache as cache_mod
import trtkit.engine as engine_mod
from trtkit.backend import Backend
from trtkit.builder.precision import model_precisions
from trtkit.cli import main
from trtkit.manifest import read_engine_file


def small_cnn() -> onnx.ModelProto:
    """x[1,3,16,16] -> 2 x (Conv 3x3 + Relu) -> y."""
    rng = np.random.default_rng(0)
    nodes, inits, x, cin = [], [], "x", 3
    for i, cout in enumerate((16, 32)):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x, cin = f"r{i}", cout
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 32, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def work(tmp_path: Path) -> Path:
    onnx.save(small_cnn(), tmp_path / "cnn.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(tmp_path / "wrong.npz", images=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    return tmp_path


def _build(work: Path, *extra: str) -> int:
    cache = ["--cache-dir", str(work / "cache")] if "--calib" in extra else []
    return main(["build", str(work / "cnn.onnx"), "-o", str(work / "cnn.int8.engine"), "--backend", "tensorrt_rtx",
                 "--no-progress", *cache, *extra])


def test_one_step_then_cache_hit(rtx: Backend, work: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert _build(work, "--precision", "int8", "--calib", str(work / "calib.npz")) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0].startswith("quantized to int8 with onnxruntime") and "accuracy pass" in first[0]
    assert first[1].startswith(f"built {work / 'cnn.int8.engine'}")
    assert first[2].startswith("placement (from the Q/DQ model") and "2 of 2" in first[2]
    assert "--profilingVerbosity detailed" in first[2]
    _, manifest = read_engine_file(work / "cnn.int8.engine")
    assert manifest is not None and manifest.config["precision"] == "int8"
    assert manifest.extra["quantization"]["quantizer"] == "onnxruntime"
    (kept,) = (work / "cache").glob("*.engine.qdq.onnx")
    assert model_precisions(onnx.load(kept))["quantized"] == ["int8"]

    monkeypatch.setattr(engine_mod, "quantize", lambda *a, **k: pytest.fail("a cache hit must not quantize"))
    monkeypatch.setattr(cache_mod, "build_engine", lambda *a, **k: pytest.fail("a cache hit must not build"))
    (work / "cnn.int8.engine").unlink()
    assert _build(work, "--precision", "int8", "--calib", str(work / "calib.npz")) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[0] == "(cached) " + first[0]
    assert second[1].startswith("reused the cached engine for")
    assert (work / "cnn.int8.engine").is_file()

    assert main(["inspect", str(work / "cnn.int8.engine")]) == 0  # the engine says how it was quantized
    assert "  " + first[0] in capsys.readouterr().out.splitlines()


def test_one_step_in_a_fresh_process_each_time(rtx: Backend, work: Path) -> None:
    """The command as a user types it, twice: the second process finds the first one's engine."""
    env = {**os.environ, "TRTKIT_CACHE_DIR": str(work / "cache"), "TRTKIT_BACKEND": "tensorrt_rtx"}
    cmd = [sys.executable, "-m", "trtkit", "build", str(work / "cnn.onnx"), "--precision", "int8",
           "--calib", str(work / "calib.npz"), "--no-progress"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert "built " in runs[0].stdout and "reused the cached engine" in runs[1].stdout
    assert runs[1].stdout.startswith("(cached) quantized to int8")
    assert (work / "cnn.engine").is_file()


def test_detailed_verbosity_shows_where_int8_took_hold(rtx: Backend, work: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(work, "--precision", "int8", "--calib", str(work / "calib.npz"),
                  "--profilingVerbosity", "detailed", "--saveConvertedModel", str(work / "cnn.qdq.onnx")) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("placement: "))
    assert line.startswith("placement: INT8 took hold in ") and "[from the build log]" in line
    assert model_precisions(onnx.load(work / "cnn.qdq.onnx"))["quantized"] == ["int8"]


def test_wrong_input_name_is_refused_in_one_line_before_any_work(rtx: Backend, work: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "quantize", lambda *a, **k: pytest.fail("must not quantize"))
    monkeypatch.setattr(cache_mod, "build_engine", lambda *a, **k: pytest.fail("must not build"))
    assert _build(work, "--precision", "int8", "--calib", str(work / "wrong.npz")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("trtkit: error: ") and "'images'" in line and "x" in line
    assert not (work / "cnn.int8.engine").exists() and not (work / "cache").exists()


def test_int8_without_calibration_data_names_the_ways_to_quantize(rtx: Backend, work: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(work, "--precision", "int8") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "trtkit quantize" in line and "--calib" in line and "never calibrates" in line


def test_a_calibration_cache_names_the_qdq_path(rtx: Backend, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "calib.cache").write_bytes(b"TRT-100100-EntropyCalibration2\ninput: 3c010a14\n")
    assert _build(work, "--precision", "int8", "--calib", str(work / "calib.cache")) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "calibration cache" in line and "trtkit quantize" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calib", "calib.npz"], "add --precision int8"),
        (["--quantizer", "onnxruntime"], "--quantizer applies with --calib"),
        (["--precision", "int8", "--quant-method", "entropy", "--exclude-ops", "MatMul"],
         "--quant-method, --exclude-ops apply with --calib"),
    ],
)
def test_flag_combinations_that_make_no_sense_are_usage_errors(work: Path, capsys: pytest.CaptureFixture[str],
                                                               args: list[str], message: str) -> None:
    args = [str(work / a) if a.endswith(".npz") else a for a in args]
    assert _build(work, *args) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_quantization_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--calib", "--quant-method", "--quantizer", "--exclude-ops", "--exclude-nodes", "--cache-dir"):
        assert flag in text
    assert "int8" in text and "fp8" in text


def test_manifest_json_keeps_the_record(rtx: Backend, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(work, "--precision", "int8", "--calib", str(work / "calib.npz"), "--quant-method", "entropy",
                  "--no-accuracy-check") == 0
    record = json.loads((work / "cnn.int8.engine.manifest.json").read_text())["extra"]["quantization"]
    assert record["method"] == "entropy" and record["accuracy"] is None
    assert "accuracy not checked" in capsys.readouterr().out
