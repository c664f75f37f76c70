"""Triton export: configs parse with Triton's own ModelConfig schema and match the engine.

Engines are built for real with TensorRT-RTX on the CPU; configs are parsed with ``tritonclient``'s
``model_config_pb2`` (the protobuf Triton itself reads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from trtkit import dtypes
from trtkit.builder import build_engine
from trtkit.cli.main import main
from trtkit.errors import ConfigError, EngineFileError, EngineIncompatibleError
from trtkit.files import sha256_bytes
from trtkit.manifest import Manifest, TensorInfo, manifest_path, read_engine_file, write_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.tools.triton import TritonExportError, export_triton, triton_config

# tritonclient comes with the dev extra (CI); the GPU machine lacks it, where these CPU tests are not run.
mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")

# ---- helpers ----------------------------------------------------------------------------------------------


def _model(batch: int | str) -> onnx.ModelProto:
    """x[B,3,8,8] float32 -> y = relu(x) [B,3,8,8] float32, z = mean over H,W as float16 [B,3]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 8, 8])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT16, [batch, 3])
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"]),
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Cast", ["m"], ["z"], to=TensorProto.FLOAT16),
        ],
        "triton_test",
        [x],
        [y, z],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _build(tmp: Path, batch: int | str, shapes: Any) -> Path:
    built = build_engine(_model(batch), shapes=shapes, backend="tensorrt_rtx", progress=False)
    return built.save(tmp / "model.engine")


def _range(lo: int, opt: int, hi: int) -> tuple[tuple[int, ...], ...]:
    return ((lo, 3, 8, 8), (opt, 3, 8, 8), (hi, 3, 8, 8))


def _parse(path_or_text: Path | str) -> Any:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return text_format.Parse(text, mc.ModelConfig())


def _io(config: Any) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (mc.DataType.Name(t.data_type), list(t.dims)) for t in [*config.input, *config.output]}


def _params(config: Any) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def triton_config_of(engine: Path, **options: Any) -> str:
    _, manifest = read_engine_file(engine, require_manifest=True)
    assert manifest is not None
    return triton_config(manifest, name="m", **options).text


def _fake_engine(tmp: Path, tensors: list[TensorInfo], profiles: list[Profile], *, backend: str = "tensorrt",
                 name: str = "fake.engine") -> Path:
    """A plan + manifest as trtkit writes them, for cases RTX cannot build on the CPU (full TensorRT, fp8 ...)."""
    plan = b"not a real plan, " + os.urandom(32)
    manifest = Manifest(
        backend=backend, backend_version="10.9.0.34" if backend == "tensorrt" else "1.7.1.116",
        target={"gpu": "NVIDIA L4", "compute_capability": "8.9"}, compatibility={}, onnx={"name": "fake"},
        config={}, profiles=tuple(profiles), tensors=tuple(tensors), plan_sha256=sha256_bytes(plan),
        plan_size=len(plan),
    )
    return write_engine_file(tmp / name, plan, manifest)


# ---- engines built with TensorRT-RTX on the CPU -----------------------------------------------------------


@pytest.fixture(scope="module")
def static_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("static"), 1, None)


@pytest.fixture(scope="module")
def dynamic_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("dynamic"), "N", {"x": _range(1, 4, 16)})


@pytest.fixture(scope="module")
def multi_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("multi"), "N", [{"x": _range(1, 2, 4)}, {"x": _range(1, 8, 16)}])


@pytest.fixture(scope="module")
def multi_engine_min2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("multi2"), "N", [{"x": _range(1, 2, 4)}, {"x": _range(2, 8, 16)}])


def test_static_engine(static_engine: Path, tmp_path: Path) -> None:
    result = export_triton(static_engine, tmp_path / "repo", name="static", allow_rtx=True)

    assert result.config_path == tmp_path / "repo" / "static" / "config.pbtxt"
    assert result.plan_path == tmp_path / "repo" / "static" / "1" / "model.plan"
    assert result.plan_path.read_bytes() == static_engine.read_bytes()
    config = _parse(result.config_path)
    assert config.name == "static"
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 0  # batch fixed to 1 in the model: nothing for Triton to batch
    assert _io(config) == {
        "x": ("TYPE_FP32", [1, 3, 8, 8]),
        "y": ("TYPE_FP32", [1, 3, 8, 8]),
        "z": ("TYPE_FP16", [1, 3]),
    }
    assert [t.name for t in config.input] == ["x"]
    assert [t.name for t in config.output] == ["y", "z"]
    assert not config.HasField("dynamic_batching")
    assert len(config.instance_group) == 1
    group = config.instance_group[0]
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU
    assert group.count == 1 and list(group.gpus) == [] and list(group.profile) == []
    params = _params(config)
    assert params["tensorrt_version"] == "1.7.1.116"
    assert params["trtkit_backend"] == "tensorrt_rtx"
    assert params["plan_sha256"] == sha256_bytes(static_engine.read_bytes())
    assert result.warnings and "TensorRT-RTX" in result.warnings[0]
    leftovers = [p.name for p in (tmp_path / "repo").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_dynamic_batch_engine(dynamic_engine: Path, tmp_path: Path) -> None:
    result = export_triton(dynamic_engine, tmp_path, name="dyn", allow_rtx=True)
    config = _parse(result.config_path)

    assert config.max_batch_size == 16  # the profile's max batch
    assert _io(config) == {"x": ("TYPE_FP32", [3, 8, 8]), "y": ("TYPE_FP32", [3, 8, 8]), "z": ("TYPE_FP16", [3])}
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [4]  # the profile's opt batch
    assert result.plan_path.read_bytes() == dynamic_engine.read_bytes()


def test_dynamic_batch_options(dynamic_engine: Path, tmp_path: Path) -> None:
    capped = _parse(triton_config_of(dynamic_engine, max_batch_size=8, max_queue_delay_us=250,
                                     preferred_batch_sizes=[8, 2]))
    assert capped.max_batch_size == 8
    assert list(capped.dynamic_batching.preferred_batch_size) == [2, 8]
    assert capped.dynamic_batching.max_queue_delay_microseconds == 250

    off = _parse(triton_config_of(dynamic_engine, max_batch_size=0))
    assert off.max_batch_size == 0
    assert _io(off)["x"] == ("TYPE_FP32", [-1, 3, 8, 8])
    assert not off.HasField("dynamic_batching")

    no_batcher = _parse(triton_config_of(dynamic_engine, dynamic_batching=False))
    assert no_batcher.max_batch_size == 16 and not no_batcher.HasField("dynamic_batching")

    with pytest.raises(TritonExportError, match="exceeds"):
        triton_config_of(dynamic_engine, max_batch_size=32)
    with pytest.raises(TritonExportError, match=r"outside 1\.\.max_batch_size"):
        triton_config_of(dynamic_engine, preferred_batch_sizes=[4, 17])
    with pytest.raises(TritonExportError, match="does not batch"):
        triton_config_of(dynamic_engine, max_batch_size=0, preferred_batch_sizes=[4])
    # Triton takes a dynamic batcher without batching (a request queue): follow it (tests/tools/test_triton_server.py)
    queue = _parse(triton_config_of(dynamic_engine, max_batch_size=0, max_queue_delay_us=50))
    assert queue.max_batch_size == 0 and queue.dynamic_batching.max_queue_delay_microseconds == 50
    assert not list(queue.dynamic_batching.preferred_batch_size)


def test_multi_profile_engine(multi_engine: Path, tmp_path: Path) -> None:
    result = export_triton(multi_engine, tmp_path, name="multi", allow_rtx=True, instances=2, gpus=[0, 1])
    config = _parse(result.config_path)

    # Each instance runs one profile and may get any request: the batch is capped by the smaller max (4).
    assert config.max_batch_size == 4
    assert _io(config)["x"] == ("TYPE_FP32", [3, 8, 8])
    assert list(config.dynamic_batching.preferred_batch_size) == [2]  # opt 8 of profile 1 exceeds 4
    groups = config.instance_group
    assert [list(g.profile) for g in groups] == [["0"], ["1"]]
    for g in groups:
        assert g.kind == mc.ModelInstanceGroup.KIND_GPU
        assert g.count == 2
        assert list(g.gpus) == [0, 1]
    assert any("smallest batch max" in note for note in result.config.notes)


def test_multi_profile_without_batch_one_turns_batching_off(multi_engine_min2: Path, tmp_path: Path) -> None:
    result = export_triton(multi_engine_min2, tmp_path, name="multi2", allow_rtx=True)
    config = _parse(result.config_path)

    assert config.max_batch_size == 0
    assert _io(config) == {
        "x": ("TYPE_FP32", [-1, 3, 8, 8]),
        "y": ("TYPE_FP32", [-1, 3, 8, 8]),
        "z": ("TYPE_FP16", [-1, 3]),
    }
    assert [list(g.profile) for g in config.instance_group] == [["0"], ["1"]]
    assert any("profile 1" in note for note in result.config.notes)
    with pytest.raises(TritonExportError, match="min batch 1"):
        export_triton(multi_engine_min2, tmp_path, name="multi2b", allow_rtx=True, max_batch_size=4)


# ---- refusals ---------------------------------------------------------------------------------------------


def test_rtx_plan_refused_without_override(static_engine: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineIncompatibleError, match="TensorRT-RTX") as info:
        export_triton(static_engine, tmp_path / "repo", name="m")
    assert "allow_rtx" in str(info.value)
    assert not (tmp_path / "repo").exists()


def test_existing_version_needs_force(dynamic_engine: Path, static_engine: Path, tmp_path: Path) -> None:
    export_triton(dynamic_engine, tmp_path, name="m", allow_rtx=True)
    with pytest.raises(TritonExportError, match="already exists"):
        export_triton(static_engine, tmp_path, name="m", allow_rtx=True)
    assert (tmp_path / "m" / "1" / "model.plan").read_bytes() == dynamic_engine.read_bytes()

    export_triton(static_engine, tmp_path, name="m", allow_rtx=True, force=True)
    assert (tmp_path / "m" / "1" / "model.plan").read_bytes() == static_engine.read_bytes()

    second = export_triton(dynamic_engine, tmp_path, name="m", version=2, allow_rtx=True)
    assert second.plan_path == tmp_path / "m" / "2" / "model.plan"
    assert (tmp_path / "m" / "1" / "model.plan").exists()


@pytest.mark.parametrize("name", ["", "my model", "../escape", "a/b", ".", "..", "x" * 256, "näme", "a+b",
                                  "model\n", "model\r\n", "a\nb", "model\x1b[31m"])
def test_invalid_model_names(static_engine: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(TritonExportError, match="not a valid Triton model name"):
        export_triton(static_engine, tmp_path, name=name, allow_rtx=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["resnet50-v1.2_fp16", ".hidden", "-x", "x" * 255])
def test_valid_model_name(static_engine: Path, tmp_path: Path, name: str) -> None:
    # A leading '.' or '-' is fine with Triton (checked against a real server in test_triton_server.py).
    result = export_triton(static_engine, tmp_path, name=name, allow_rtx=True)
    assert _parse(result.config_path).name == name


@pytest.mark.parametrize("version", [-1, 2**63, 2**64, 10**100, True, "1", 1.0])
def test_invalid_versions(static_engine: Path, tmp_path: Path, version: int) -> None:
    with pytest.raises(ConfigError, match="integer from 0 to 2\\^63-1"):
        export_triton(static_engine, tmp_path, name="m", version=version, allow_rtx=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [0, 2**63 - 1])
def test_version_bounds_are_accepted(static_engine: Path, tmp_path: Path, version: int) -> None:
    # Triton serves version directory "0" (checked against a real server in test_triton_server.py).
    result = export_triton(static_engine, tmp_path, name="m", version=version, allow_rtx=True)
    assert result.plan_path == tmp_path / "m" / str(version) / "model.plan"


def test_name_defaults_to_the_engine_file_stem(static_engine: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert static_engine.name == "model.engine"
    result = export_triton(static_engine, tmp_path / "py", allow_rtx=True)
    assert result.model_dir == tmp_path / "py" / "model" and _parse(result.config_path).name == "model"
    assert main(["export-triton", str(static_engine), str(tmp_path / "cli"), "--allow-rtx"]) == 0
    assert (tmp_path / "cli" / "model" / "1" / "model.plan").read_bytes() == static_engine.read_bytes()
    assert "Triton model 'model'" in capsys.readouterr().out


def test_a_stem_that_is_no_valid_name_says_where_it_came_from(static_engine: Path, tmp_path: Path) -> None:
    odd = tmp_path / "my model.engine"
    odd.write_bytes(static_engine.read_bytes())
    manifest_path(odd).write_bytes(manifest_path(static_engine).read_bytes())
    with pytest.raises(TritonExportError, match=r"taken from the engine file name 'my model\.engine'.*--name"):
        export_triton(odd, tmp_path / "repo", allow_rtx=True)


@pytest.mark.parametrize(("option", "match"), [
    ({"instances": 0}, "instances must be an integer >= 1"),
    ({"gpus": [0, 0]}, "distinct GPU indices"),
    ({"gpus": [-1]}, "distinct GPU indices"),
    ({"max_batch_size": -1}, "max_batch_size must be an integer >= 0"),
    ({"max_queue_delay_us": -5}, "max_queue_delay_us must be an integer >= 0"),
    ({"max_queue_delay_us": 2**64}, "max_queue_delay_us must be an integer >= 0"),
    ({"instances": 2**31}, "instances must be an integer >= 1"),
    ({"instances": "2"}, "instances must be an integer >= 1"),
    ({"gpus": [2**31]}, "distinct GPU indices"),
    ({"gpus": "0"}, "list of distinct GPU indices"),
    ({"preferred_batch_sizes": ["2"]}, "preferred_batch_sizes must be integers"),
    ({"dynamic_batching": "yes"}, "dynamic_batching must be True, False or None"),
    ({"force": 1}, "force must be True or False"),
    ({"dynamic_batching": False, "preferred_batch_sizes": [2]}, "dynamic batcher, which is turned off"),
])
def test_out_of_range_options_raise_config_error(dynamic_engine: Path, tmp_path: Path, option: dict[str, Any],
                                                 match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        export_triton(dynamic_engine, tmp_path, name="m", allow_rtx=True, **option)
    assert list(tmp_path.iterdir()) == []


def test_bare_plan_refused(static_engine: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.plan"
    bare.write_bytes(static_engine.read_bytes())
    assert not manifest_path(bare).exists()
    with pytest.raises(EngineFileError, match="no trtkit manifest"):
        export_triton(bare, tmp_path / "repo", name="m", allow_rtx=True)


def test_corrupt_plan_refused(static_engine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.engine"
    copy.write_bytes(static_engine.read_bytes()[:-1] + b"\0")
    manifest_path(copy).write_bytes(manifest_path(static_engine).read_bytes())
    with pytest.raises(EngineFileError, match="does not match its manifest"):
        export_triton(copy, tmp_path / "repo", name="m", allow_rtx=True)


# ---- full TensorRT manifests and edge cases (hand-written manifests) ---------------------------------------


def _batch_tensor(name: str, mode: str, dtype: str, shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(name, mode, dtype, shape)  # type: ignore[arg-type]


def test_full_tensorrt_engine_needs_no_override(tmp_path: Path) -> None:
    engine = _fake_engine(
        tmp_path,
        [_batch_tensor("ids", "input", "int32", (-1, -1)), _batch_tensor("logits", "output", "float32", (-1, -1, 7))],
        [Profile({"ids": ShapeRange((1, 1), (8, 128), (32, 512))})],
    )
    result = export_triton(engine, tmp_path / "repo", name="bert")
    config = _parse(result.config_path)

    assert result.warnings == ()
    assert config.max_batch_size == 32
    assert _io(config) == {"ids": ("TYPE_INT32", [-1]), "logits": ("TYPE_FP32", [-1, 7])}
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    params = _params(config)
    assert params["tensorrt_version"] == "10.9.0.34"
    assert params["compute_capability"] == "8.9"
    assert result.plan_path.read_bytes() == engine.read_bytes()


def test_every_dtype_maps_to_triton_schema_or_is_refused(tmp_path: Path) -> None:
    valid = set(mc.DataType.keys()) - {"TYPE_INVALID"}
    exported = []
    for dt in dtypes.all_dtypes():
        tensors = [_batch_tensor("a", "input", dt.name, (2,)), _batch_tensor("b", "output", dt.name, (2,))]
        engine = _fake_engine(tmp_path, tensors, [Profile({"a": ShapeRange.fixed((2,))})], name=f"{dt.name}.engine")
        _, manifest = read_engine_file(engine, require_manifest=True)
        assert manifest is not None
        assert dt.triton_name is None or dt.triton_name in valid, f"{dt.name}: {dt.triton_name} is not a Triton type"
        if dt.triton_name in valid:
            config = _parse(triton_config(manifest, name="m").text)
            assert _io(config) == {"a": (dt.triton_name, [2]), "b": (dt.triton_name, [2])}
            exported.append(dt.name)
        else:
            with pytest.raises(TritonExportError, match=dt.name):
                triton_config(manifest, name="m")
    assert {"float32", "float16", "bfloat16", "int8", "int32", "int64", "bool", "uint8"} <= set(exported)


def test_shape_tensor_input(tmp_path: Path) -> None:
    engine = _fake_engine(
        tmp_path,
        [
            _batch_tensor("data", "input", "float32", (-1, -1)),
            TensorInfo("new_shape", "input", "int32", (2,), "host", True),
            _batch_tensor("out", "output", "float32", (-1, -1)),
        ],
        [Profile({"data": ShapeRange((1, 4), (2, 8), (4, 16)), "new_shape": ShapeRange((1, 4), (2, 8), (4, 16))})],
    )
    result = export_triton(engine, tmp_path / "repo", name="reshaper")
    config = _parse(result.config_path)

    assert config.max_batch_size == 0
    by_name = {t.name: t for t in config.input}
    assert by_name["new_shape"].is_shape_tensor
    assert list(by_name["new_shape"].dims) == [2]
    assert not by_name["data"].is_shape_tensor
    assert list(by_name["data"].dims) == [-1, -1]
    assert any("shape tensor" in note for note in result.config.notes)


def test_batch_only_tensors_get_reshape(tmp_path: Path) -> None:
    engine = _fake_engine(
        tmp_path,
        [_batch_tensor("score_in", "input", "float32", (-1,)), _batch_tensor("score_out", "output", "float32", (-1,))],
        [Profile({"score_in": ShapeRange((1,), (4,), (8,))})],
    )
    config = _parse(export_triton(engine, tmp_path / "repo", name="scores").config_path)

    assert config.max_batch_size == 8
    for t in [*config.input, *config.output]:
        assert list(t.dims) == [1]
        assert t.HasField("reshape") and list(t.reshape.shape) == []


def test_tensor_names_are_escaped(tmp_path: Path) -> None:
    odd = 'in"put\\0 ünï'
    engine = _fake_engine(
        tmp_path,
        [_batch_tensor(odd, "input", "float32", (4,)), _batch_tensor("out:0", "output", "float32", (4,))],
        [Profile({odd: ShapeRange.fixed((4,))})],
    )
    config = _parse(export_triton(engine, tmp_path / "repo", name="odd").config_path)
    assert [t.name for t in config.input] == [odd]
    assert [t.name for t in config.output] == ["out:0"]


# ---- CLI --------------------------------------------------------------------------------------------------


def test_cli_export(dynamic_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    code = main(["export-triton", str(dynamic_engine), str(repo), "--name", "dyn", "--version", "3",
                 "--instances", "2", "--gpus", "0,2", "--max-batch-size", "8", "--max-queue-delay-us", "50",
                 "--allow-rtx"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "TensorRT-RTX" in captured.err  # the override is reported
    config = _parse(repo / "dyn" / "config.pbtxt")
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 50
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert [(g.count, list(g.gpus)) for g in config.instance_group] == [(2, [0, 2])]
    assert (repo / "dyn" / "3" / "model.plan").read_bytes() == dynamic_engine.read_bytes()


def test_cli_refuses_rtx_and_existing_version(dynamic_engine: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert main(["export-triton", str(dynamic_engine), str(repo), "--name", "dyn"]) == 1
    assert "TensorRT-RTX" in capsys.readouterr().err
    assert main(["export-triton", str(dynamic_engine), str(repo), "--name", "dyn", "--allow-rtx"]) == 0
    capsys.readouterr()
    assert main(["export-triton", str(dynamic_engine), str(repo), "--name", "dyn", "--allow-rtx"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export-triton", str(dynamic_engine), str(repo), "--name", "dyn", "--allow-rtx", "--force",
                 "--no-dynamic-batching"]) == 0
    assert not _parse(repo / "dyn" / "config.pbtxt").HasField("dynamic_batching")
