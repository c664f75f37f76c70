"""The command line, as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from support.onnx_factory import conv_relu, unsupported_op

from trtkit.backend import Backend, get_backend
from trtkit.cli import main
from trtkit.manifest import read_engine_file


def sum_of(names: tuple[str, ...]) -> onnx.ModelProto:
    """y = Sum of inputs named ``names``, each float32[N, 4] with N dynamic."""
    graph = helper.make_graph(
        [helper.make_node("Sum", list(names), ["y"], name="sum0")], "sum_of",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def dyn_model(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(conv_relu(), path)
    return path


def test_build_with_trtexec_flags_then_inspect(rtx: Backend, dyn_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cnn.engine"
    rc = main(["build", str(dyn_model), "-o", str(out), "--backend", "tensorrt_rtx",
               "--minShapes=x:1x3x16x16", "--optShapes=x:2x3x32x32", "--maxShapes=x:4x3x64x64",
               "--memPoolSize=workspace:256", "--builderOptimizationLevel=2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    _, manifest = read_engine_file(out)
    assert manifest is not None
    assert manifest.profiles[0]["x"].opt == (2, 3, 32, 32)
    assert manifest.config["memory_pool_limits"] == {"workspace": 256 << 20}
    capsys.readouterr()

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "input  x" in text and "min 1x3x16x16" in text and "tensorrt_rtx" in text

    assert main(["inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["manifest"]["tensors"][0]["shape"] == [-1, 3, -1, -1]


def test_inspect_onnx_shows_dim_names(dyn_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(dyn_model), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["N", 3, "H", "W"]}]
    assert data["ops"] == {"Conv": 1, "Relu": 1}


def test_missing_shapes_is_one_clear_message(rtx: Backend, dyn_model: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["build", str(dyn_model), "--backend", "tensorrt_rtx", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    assert err.startswith("trtkit: error:")
    assert "x (float32 [N, 3, H, W])" in err
    assert "--minShapes=x:1x3x1x1 --optShapes=x:1x3x1x1 --maxShapes=x:1x3x1x1" in err
    assert "<N>" not in err


def _suggested_flags(err: str) -> list[str]:
    """The flags of the missing-shapes message, as a shell passes them after pasting."""
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("e.g. on the command line:"))
    return shlex.split(lines[start + 1])


@pytest.mark.parametrize("names", [("x",), ("input_1:0", "a, b", "$y", "img;rm")])
def test_suggested_shape_flags_paste_into_the_build(rtx: Backend, tmp_path: Path, names: tuple[str, ...],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(sum_of(names), path)
    assert main(["build", str(path), "--backend", "tensorrt_rtx", "--no-progress"]) == 1
    flags = _suggested_flags(capsys.readouterr().err)
    assert len(flags) == 3, flags
    out = tmp_path / "m.engine"
    rc = main(["build", str(path), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress", *flags])
    assert rc == 0, capsys.readouterr().err
    _, manifest = read_engine_file(out)
    assert manifest is not None and sorted(manifest.profiles[0]) == sorted(names)


def test_unsupported_op_names_node_and_op(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.onnx"
    onnx.save(unsupported_op(), path)
    rc = main(["build", str(path), "--backend", "tensorrt_rtx", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one line names the node, the op and what to do
    assert "node 1 'warp0'" in err and "FancyWarp" in err and "--plugins" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["build"]) == 2
    assert main(["build", str(tmp_path / "x.onnx"), "--precision", "fp7"]) == 2
    assert main(["nosuchcommand"]) == 2


def test_not_onnx_file(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "photo.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    rc = main(["build", str(path), "--backend", "tensorrt_rtx"])
    err = capsys.readouterr().err
    assert rc == 1 and "not an ONNX model" in err and "Traceback" not in err


def test_debug_shows_traceback(rtx: Backend, dyn_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--debug", "build", str(dyn_model), "--backend", "tensorrt_rtx", "--no-progress"])
    assert rc == 1 and "Traceback" in capsys.readouterr().err


def test_demo_builds_sample_and_explains_why_it_cannot_run(rtx: Backend) -> None:
    # Runs the installed console script as a user would; on a machine with no GPU it stops after the build.
    proc = subprocess.run([sys.executable, "-m", "trtkit", "demo", "--backend", "tensorrt_rtx"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "built tiny_cnn.engine" in proc.stdout
    assert "input  image" in proc.stdout
    from trtkit.runtime.compat import run_blocker

    reason = run_blocker(rtx)
    if reason is not None:
        assert "not running the engine" in proc.stdout


def test_every_build_config_field_has_one_build_flag() -> None:
    from dataclasses import fields

    from trtkit.builder import BuildConfig
    from trtkit.cli._options import CONFIG_FLAGS, make_config
    from trtkit.cli.build import build_command

    assert sorted(f.field for f in CONFIG_FLAGS) == sorted(f.name for f in fields(BuildConfig))
    assert make_config(build_command.make_context("build", ["m.onnx"]).params) == BuildConfig()
    flags = ["--noTF32", "--memPoolSize=workspace:2", "--tacticSources", "cublas,CUDNN", "--convertIOTypes"]
    config = make_config(build_command.make_context("build", ["m.onnx", *flags]).params)
    assert config == BuildConfig(tf32=False, memory_pool_limits={"workspace": 2 << 20},
                                 tactic_sources=("cublas", "CUDNN"), keep_io_types=False)
    flags = ["--sanitize", "--freeze", "sr:16000", "--freeze", "in:0:1,2.5", "--freeze", "m:[[1,2],[3,4]]",
             "--upgrade-opset", "17", "--lower-dynamic-quant"]
    config = make_config(build_command.make_context("build", ["m.onnx", *flags]).params)
    assert config == BuildConfig(sanitize="always", freeze={"sr": 16000, "in:0": [1, 2.5], "m": [[1, 2], [3, 4]]},
                                 upgrade_opset=17, lower_dynamic_quant=True)
    assert make_config(build_command.make_context("build", ["m.onnx", "--no-sanitize"]).params).sanitize == "never"


def test_build_flag_choices_come_from_the_config_vocabularies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "[fp32|fp16|bf16|int8|fp8]" in text and "[auto|modelopt|onnxconverter-common]" in text
    assert "[none|ampere_plus|same_compute_capability]" in text


def test_bad_build_flag_values_are_one_line(rtx: Backend, dyn_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["build", str(dyn_model), "--backend", "tensorrt_rtx", "--no-progress", "--tacticSources", "cublass"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "tactic source 'CUBLASS' is not one of CUBLAS" in err


def test_backend_module_option_is_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tests inject the TensorRT double through the ``trt_double_backend`` fixture, not a CLI option."""
    assert main(["run", str(tmp_path / "m.engine"), "--backend-module", "trt_double"]) == 2
    assert "--backend-module" in capsys.readouterr().err


def test_trt_double_backend_fixture_is_the_default_backend(trt_double_backend: Backend) -> None:
    assert get_backend() is trt_double_backend and get_backend("tensorrt") is trt_double_backend


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_build_never_overwrites_the_model(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from support.onnx_factory import matmul_external

    static = tmp_path / "cnn.onnx"
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), static)
    named_engine = tmp_path / "model.engine"  # an ONNX model with an engine's name, built with no -o
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), named_engine)
    weights_model = matmul_external(tmp_path)
    base = ["--backend", "tensorrt_rtx", "--no-progress"]
    cases = [
        ([str(static), "-o", str(static)], "the engine"),
        ([str(static), "-o", str(tmp_path / "x" / ".." / "cnn.onnx")], "the engine"),
        ([str(named_engine)], "the engine"),
        ([str(weights_model), "--shapes=x:2x64", "-o", str(tmp_path / "mm.weights")], "mm.weights"),
        ([str(static), "--precision", "fp16", "--saveConvertedModel", str(static)], "save_converted_model"),
        ([str(weights_model), "--shapes=x:2x64", "--precision", "fp16",
          "--saveConvertedModel", str(tmp_path / "mm.weights")], "save_converted_model"),
    ]
    before = _files(tmp_path)
    for args, what in cases:
        rc = main(["build", *args, *base])
        err = capsys.readouterr().err
        assert rc == 1, (args, err)
        assert err.count("\n") == 1 and err.startswith("trtkit: error:") and what in err, (args, err)
        assert "is also an input" in err
        assert _files(tmp_path) == before, args
    # the manifest too: an engine named so that its manifest would be the model
    manifest_named = tmp_path / "m.engine.manifest.json"
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), manifest_named)
    rc = main(["build", str(manifest_named), "-o", str(tmp_path / "m.engine"), *base])
    assert rc == 1 and "manifest" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


NO_GPU = __import__("trtkit.gpu", fromlist=["device_count"]).device_count() == 0


@pytest.mark.skipif(not NO_GPU, reason="these options fail only on a machine without a GPU")
@pytest.mark.parametrize(("flags", "needle"), [
    (["--refit"], "refit (--refit) needs a GPU"),
    (["--stripWeights"], "strip_weights (--stripWeights) needs a GPU"),
    (["--computeCapabilities", "current"], "Name the target GPUs instead, e.g. --computeCapabilities 8.6,8.9"),
    (["--computeCapabilities", "8.6,current"], "list the GPUs instead"),
    (["--versionCompatible"], "Build without --versionCompatible"),
    (["--memPoolSize=workspace:0"], "memory pool workspace limit 0"),
    (["--memPoolSize=tactic_shared_memory:0"], "memory pool tactic_shared_memory limit 0"),
])
def test_options_that_cannot_work_here_say_what_to_do(rtx: Backend, tmp_path: Path, flags: list[str], needle: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "s.onnx"
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), model)
    rc = main(["build", str(model), "-o", str(tmp_path / "s.engine"), "--backend", "tensorrt_rtx", "--no-progress",
               *flags])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("trtkit: error:") and err.count("\n") == 1, err
    assert needle in err
    for raw in ("MyelinCheckException", "cudaError", "libnvinfer_lean.so.1", "Internal Error", "TensorRT said"):
        assert raw not in err
    assert not (tmp_path / "s.engine").exists()
