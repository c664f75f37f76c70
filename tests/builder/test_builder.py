"""The builder, for real with TensorRT-RTX on the CPU."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import add_two, conv_relu, matmul_external, reshape_with_shape_input, unsupported_op

from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine, parse_size
from trtkit.builder.model import load_onnx
from trtkit.builder.progress import ProgressEvent
from trtkit.errors import (
    BuildCancelledError,
    BuildError,
    ConfigError,
    ModelError,
    OnnxParseError,
    ShapeError,
    UnsupportedFeatureError,
)
from trtkit.profiles import ShapeRange, profiles_from_trtexec

DYN = {"x": ((1, 3, 16, 16), (2, 3, 32, 32), (4, 3, 64, 64))}


def test_static_model_builds_with_derived_profile(rtx: Backend) -> None:
    built = build_engine(conv_relu(dims=(1, 3, 16, 16)), backend=rtx, progress=False)
    m = built.manifest
    assert len(built.plan) == m.plan_size > 1000
    assert m.backend == "tensorrt_rtx" and m.backend_version == rtx.version
    assert [(t.name, t.mode, t.dtype, t.shape) for t in m.tensors] == [
        ("x", "input", "float32", (1, 3, 16, 16)),
        ("y", "output", "float32", (1, 8, 16, 16)),
    ]
    assert m.profiles[0]["x"] == ShapeRange.fixed((1, 3, 16, 16))
    assert m.onnx["sha256"] == load_onnx(conv_relu(dims=(1, 3, 16, 16))).sha256


def test_dynamic_model_without_shapes_names_input_and_dims(rtx: Backend) -> None:
    with pytest.raises(ShapeError) as info:
        build_engine(conv_relu(), backend=rtx, progress=False)
    msg = str(info.value)
    assert "x (float32 [N, 3, H, W])" in msg
    assert "--minShapes=x:1x3x1x1 --optShapes=x:1x3x1x1 --maxShapes=x:1x3x1x1" in msg
    flags_line = msg.split("e.g. on the command line:\n")[1].splitlines()[0]
    assert "<" not in flags_line and ">" not in flags_line, "placeholders like <N> are shell redirects"
    assert "0 (N), 2 (H), 3 (W)" in msg.split("--maxShapes")[1], "the note names the dims to replace"


def test_suggested_shape_flags_parse_and_build(rtx: Backend) -> None:
    with pytest.raises(ShapeError) as info:
        build_engine(conv_relu(), backend=rtx, progress=False)
    lines = str(info.value).splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("e.g. on the command line:"))
    words = shlex.split(lines[start + 1])  # what a shell hands over after pasting
    flags = {word.split("=", 1)[0]: [word.split("=", 1)[1]] for word in words}
    assert sorted(flags) == ["--maxShapes", "--minShapes", "--optShapes"]
    profiles = profiles_from_trtexec(min_shapes=flags["--minShapes"], opt_shapes=flags["--optShapes"],
                                     max_shapes=flags["--maxShapes"])
    built = build_engine(conv_relu(), shapes=profiles, backend=rtx, progress=False)
    assert built.manifest.profiles[0]["x"] == ShapeRange.fixed((1, 3, 1, 1))


def test_dynamic_model_with_profiles(rtx: Backend) -> None:
    second = {"x": ((8, 3, 16, 16), (8, 3, 16, 16), (16, 3, 16, 16))}
    built = build_engine(conv_relu(), shapes=[DYN, second], backend=rtx, progress=False)
    m = built.manifest
    assert len(m.profiles) == 2
    assert m.profiles[0]["x"].max == (4, 3, 64, 64)
    assert m.profiles[1]["x"].min == (8, 3, 16, 16)
    assert m.inputs[0].shape == (-1, 3, -1, -1)


def test_profile_for_unknown_input_fails_before_build(rtx: Backend) -> None:
    with pytest.raises(ShapeError, match="'image'"):
        build_engine(conv_relu(), shapes={"image": (1, 3, 8, 8)}, backend=rtx, progress=False)


def test_parse_error_lists_node_index_name_and_op(rtx: Backend) -> None:
    with pytest.raises(OnnxParseError) as info:
        build_engine(unsupported_op(), backend=rtx, progress=False)
    err = info.value
    assert err.issues, "every parser error must be listed"
    first = err.issues[0]
    assert (first.node_index, first.node_name, first.op_type) == (1, "warp0", "FancyWarp")
    assert "FancyWarp" in str(err) and "plugin" in str(err)


def test_shape_tensor_input_takes_values(rtx: Backend) -> None:
    model = reshape_with_shape_input()
    with pytest.raises(ShapeError, match="shape tensor"):
        build_engine(model, backend=rtx, progress=False)
    built = build_engine(model, shapes={"shape": ((1, 1), (3, 4), (12, 12))}, backend=rtx, progress=False)
    shape_in = next(t for t in built.manifest.tensors if t.name == "shape")
    assert shape_in.is_shape_tensor and shape_in.location == "host"


def test_external_weights_by_path(rtx: Backend, tmp_path: Path) -> None:
    path = matmul_external(tmp_path)
    built = build_engine(path, shapes={"x": ((1, 64), (4, 64), (8, 64))}, backend=rtx, progress=False)
    assert built.manifest.outputs[0].name == "y"
    # the hash covers the weight file: changing it changes the model identity
    before = load_onnx(path).sha256
    weights = tmp_path / "mm.weights"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert load_onnx(path).sha256 != before


def test_external_weights_missing_file_is_clear(tmp_path: Path) -> None:
    path = matmul_external(tmp_path)
    (tmp_path / "mm.weights").unlink()
    with pytest.raises(ModelError, match=r"mm\.weights"):
        load_onnx(path)
    with pytest.raises(ModelError, match="not given as a path"):
        load_onnx(path.read_bytes())


def test_bad_model_sources(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_onnx(junk)
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    with pytest.raises(ModelError, match="empty graph"):
        load_onnx(empty)
    with pytest.raises(ModelError, match="directory"):
        load_onnx(tmp_path)


def test_placeholder_dim_names_are_made_distinct(rtx: Backend) -> None:
    # TensorRT assumes dims that share a name are equal (ITensor::setDimensionName, which the ONNX parser
    # calls with dim_param); two unrelated "?" dims must not share one.
    model = load_onnx(add_two(["?", 4], ["?", 4]))
    assert model.renamed_dims == {("a", 0): ("?", "a_dim0"), ("b", 0): ("?", "b_dim0")}
    trt = rtx.trt
    builder = trt.Builder(rtx.logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, rtx.logger)
    assert parser.parse(model.serialized())
    names = {network.get_input(i).get_dimension_name(0) for i in range(2)}  # type: ignore[attr-defined]
    assert names == {"a_dim0", "b_dim0"}
    # meaningful names are kept: a shared "batch" is intentional
    assert load_onnx(add_two(["batch", 4], ["batch", 4])).renamed_dims == {}


def test_rtx_compute_capability_targets_recorded(rtx: Backend) -> None:
    cfg = BuildConfig(compute_capabilities=("8.6", "sm89"))
    built = build_engine(conv_relu(dims=(1, 3, 8, 8)), config=cfg, backend=rtx, progress=False)
    assert built.manifest.target == {"compute_capabilities": ["SM86", "SM89"]}


def test_failed_build_carries_tensorrt_log(rtx: Backend) -> None:
    # TensorRT-RTX 1.7 cannot build FP32 GEMMs for SM75 (seen; tensorrt-facts.md).
    model = load_onnx(matmul_external_inline())
    with pytest.raises(BuildError) as info:
        build_engine(model, shapes={"x": (2, 64)}, config=BuildConfig(compute_capabilities=("7.5",)),
                     backend=rtx, progress=False)
    assert info.value.tensorrt_log, "the reason TensorRT logged must ride along"
    assert "TensorRT said" in str(info.value)


def matmul_external_inline() -> onnx.ModelProto:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def test_options_the_backend_lacks_raise_with_reason(rtx: Backend) -> None:
    model = conv_relu(dims=(1, 3, 8, 8))
    with pytest.raises(UnsupportedFeatureError, match="tactic_sources is not available on TensorRT-RTX"):
        build_engine(model, config=BuildConfig(tactic_sources=("CUBLAS",)), backend=rtx, progress=False)
    with pytest.raises(UnsupportedFeatureError, match="timing_cache"):
        build_engine(model, config=BuildConfig(timing_cache="tc.bin"), backend=rtx, progress=False)


def test_build_config_validates_values() -> None:
    with pytest.raises(ConfigError, match="between 0 and 5"):
        BuildConfig(optimization_level=7)
    with pytest.raises(ConfigError, match="memory pool 'vram' is not one of workspace"):
        BuildConfig(memory_pool_limits={"vram": 1})
    with pytest.raises(ConfigError, match="version_compatible"):
        BuildConfig(exclude_lean_runtime=True)
    with pytest.raises(ConfigError, match="precision 'int4' is not one of fp32, fp16, bf16, int8, fp8"):
        BuildConfig(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tactic source 'CUBLASS'"):
        BuildConfig(tactic_sources=("cublass",))
    with pytest.raises(ConfigError, match="compute capability 'sm8x'"):
        BuildConfig(compute_capabilities=("sm8x",))
    with pytest.raises(ConfigError, match="unknown BuildConfig options: precison"):
        BuildConfig.from_dict({"precison": "fp16"})
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("lots")
    assert BuildConfig(memory_pool_limits={"workspace": "1G"}).memory_pool_limits["workspace"] == 1 << 30
    assert parse_size("512M") == 512 << 20
    assert BuildConfig.from_dict(BuildConfig(refit=True).to_dict()) == BuildConfig(refit=True)


def test_workspace_and_level_apply(rtx: Backend) -> None:
    cfg = BuildConfig(memory_pool_limits={"workspace": "64M"}, optimization_level=1, builder_threads=1)
    built = build_engine(conv_relu(dims=(1, 3, 8, 8)), config=cfg, backend=rtx, progress=False)
    assert built.manifest.config["memory_pool_limits"] == {"workspace": 64 << 20}
    assert built.manifest.config["optimization_level"] == 1


def test_progress_callback_sees_phases_and_can_cancel(rtx: Backend) -> None:
    events: list[ProgressEvent] = []
    build_engine(conv_relu(dims=(1, 3, 8, 8)), backend=rtx, progress=events.append)
    assert any(e.kind == "start" and e.parent is None for e in events)
    assert any(e.kind == "finish" for e in events)

    def stop(event: ProgressEvent) -> bool:
        return event.kind != "step"

    with pytest.raises(BuildCancelledError, match="returned False"):
        build_engine(conv_relu(dims=(1, 3, 8, 8)), backend=rtx, progress=stop)

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BuildCancelledError):
        build_engine(conv_relu(dims=(1, 3, 8, 8)), backend=rtx, progress=False, cancel=cancel)


def test_plugin_libraries(rtx: Backend, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        build_engine(conv_relu(dims=(1, 3, 8, 8)), config=BuildConfig(plugins=(str(tmp_path / "no.so"),)),
                     backend=rtx, progress=False)
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not an ELF file")
    with pytest.raises(BuildError, match="could not load plugin library"):
        build_engine(conv_relu(dims=(1, 3, 8, 8)), config=BuildConfig(plugins=(str(fake),)),
                     backend=rtx, progress=False)


def test_model_proto_and_bytes_inputs(rtx: Backend) -> None:
    model = conv_relu(dims=(1, 3, 8, 8))
    a = build_engine(model, backend=rtx, progress=False).manifest
    b = build_engine(model.SerializeToString(), backend=rtx, progress=False).manifest
    assert a.onnx["sha256"] == b.onnx["sha256"]
    assert a.tensors == b.tensors


def test_tqdm_progress_bar_draws_nested_phases(capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit.builder.progress import TqdmProgress

    bar = TqdmProgress(leave=True)
    bar(ProgressEvent("start", "Building", None, 0, 2))
    bar(ProgressEvent("start", "Tactics", "Building", 0, 5))
    bar(ProgressEvent("step", "Building", None, 0, 0))
    bar(ProgressEvent("finish", "Tactics", None, 0, 0))
    bar(ProgressEvent("step", "Building", None, 1, 0))
    bar(ProgressEvent("finish", "Building", None, 0, 0))
    err = capsys.readouterr().err
    assert "Building" in err and "2/2" in err and "Tactics" in err


def test_known_build_failures_are_explained(rtx: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from trtkit.builder import diagnostics

    monkeypatch.setattr(diagnostics, "device_count", lambda: 0)
    myelin = ["Error Code 1: Myelin (MyelinCheckException: graph_jit.cpp:278: CHECK(status == CUDA_SUCCESS))"]
    known = diagnostics.known_build_failure
    assert "refit (--refit) needs a GPU" in (known(rtx, BuildConfig(refit=True), myelin) or "")
    assert known(rtx, BuildConfig(), myelin) is None  # no option to blame: TensorRT's own message stays
    cuda = ["Error Code 1: Cuda Runtime (cudaError 35: CUDA driver version is insufficient)"]
    assert "'current'" in (known(rtx, BuildConfig(compute_capabilities=("current",)), cuda) or "")
    lean = ["Unable to load library: libnvinfer_lean.so.1"]
    assert "--versionCompatible" in (known(rtx, BuildConfig(version_compatible=True), lean) or "")
    monkeypatch.setattr(diagnostics, "device_count", lambda: 1)  # with a GPU the cause is something else
    assert known(rtx, BuildConfig(refit=True), myelin) is None
