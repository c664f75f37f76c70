"""One step from a float model to an INT8 engine: ``Engine.from_onnx(..., config=BuildConfig(precision="int8"),
calibration_data=...)`` quantizes (ONNX Runtime, the default install), builds with TensorRT-RTX on the CPU and
caches the quantized model beside the engine. Only loading is replaced, since no engine can run here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtkit.cache as cache_mod
import trtkit.engine as engine_mod
from trtkit import runtime
from trtkit.backend import Backend
from trtkit.builder import BuildConfig, BuiltEngine
from trtkit.builder.model import load_onnx
from trtkit.builder.precision import model_precisions
from trtkit.cache import EngineCache, step_model_path
from trtkit.engine import Engine, QuantizeOptions, build_cached, quantization_step
from trtkit.errors import ConfigError, InputError
from trtkit.manifest import read_engine_file
from trtkit.tools.quantize import load_calibration

INT8 = BuildConfig(precision="int8")


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[1,3,16,16] -> 3 x (Conv 3x3 + Relu) -> GlobalAveragePool -> Flatten -> MatMul -> y[1,10]."""
    rng = np.random.default_rng(seed)
    nodes, inits, x, cin = [], [], "x", 3
    for i, cout in enumerate((16, 32, 32)):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(cout)).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x, cin = f"r{i}", cout
    inits.append(numpy_helper.from_array((rng.standard_normal((32, 10)) * 0.2).astype(np.float32), "fcw"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
              helper.make_node("MatMul", ["flat", "fcw"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("int8")
    onnx.save(small_cnn(), d / "cnn.onnx")
    rng = np.random.default_rng(1)
    np.savez(d / "calib.npz", x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(d / "other.npz", x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(d / "wrong.npz", image=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    (d / "calib.cache").write_bytes(b"TRT-100100-EntropyCalibration2\ninput: 3c010a14\n")
    return {p.name: p for p in d.iterdir()}


class FakeLoaded:
    def __init__(self, backend: Backend, source: BuiltEngine) -> None:
        self.backend, self.plan, self.manifest = backend, source.plan, source.manifest


@pytest.fixture
def loads(rtx: Backend, monkeypatch: pytest.MonkeyPatch) -> list[BuiltEngine]:
    """Replaces loading (no engine runs here); records what would have been loaded."""
    loaded: list[BuiltEngine] = []

    def load(source: Any, **_: Any) -> FakeLoaded:
        loaded.append(source)
        return FakeLoaded(rtx, source)

    monkeypatch.setattr(runtime, "load_engine", load)
    return loaded


def _forbid_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "quantize", lambda *a, **k: pytest.fail("must not quantize"))
    monkeypatch.setattr(cache_mod, "build_engine", lambda *a, **k: pytest.fail("must not build"))


def test_one_step_quantizes_builds_and_caches_the_qdq_model(rtx: Backend, files: dict[str, Path], tmp_path: Path,
                                                            loads: list[BuiltEngine],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = EngineCache(tmp_path / "cache")
    Engine.from_onnx(files["cnn.onnx"], config=INT8, calibration_data=files["calib.npz"], cache=store, backend=rtx)
    (built,) = loads
    record = built.manifest.extra["quantization"]
    assert record["quantizer"] == "onnxruntime" and record["precision"] == "int8" and record["method"]
    assert record["data_digest"] == load_calibration(files["calib.npz"], files["cnn.onnx"]).digest
    assert record["quantized_nodes"] and sum(record["quantized_ops"].values()) >= 4
    assert record["accuracy"]["status"] == "pass"
    assert record["qdq_compute_nodes"]["quantized"]  # Conv/MatMul nodes fed by Q/DQ
    assert record["source_onnx"]["sha256"] == load_onnx(files["cnn.onnx"]).sha256
    assert built.manifest.extra["precision"]["model_carries"]["quantized"] == ["int8"]

    (entry,) = store.entries()
    kept = step_model_path(entry.path)
    assert kept.name == f"{entry.key}.engine.qdq.onnx" and load_onnx(kept).sha256 == record["model_sha256"]
    assert model_precisions(onnx.load(kept))["quantized"] == ["int8"]
    _, manifest = read_engine_file(entry.path)  # the manifest written to disk validates with the record
    assert manifest is not None and manifest.extra["quantization"] == record

    _forbid_work(monkeypatch)  # the second call is a hit: no quantization, no build
    Engine.from_onnx(files["cnn.onnx"], config=INT8, calibration_data=files["calib.npz"], cache=store, backend=rtx)
    assert loads[1].plan == built.plan and loads[1].manifest == built.manifest


def test_what_enters_the_key(rtx: Backend, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, model = EngineCache("unused"), load_onnx(files["cnn.onnx"])

    def key(data: str = "calib.npz", **options: Any) -> str:
        step = quantization_step(model, files[data], precision="int8", options=options or None)
        return store.key(model, [], INT8, rtx, step=step)

    base = key()
    assert key() == base
    assert key("other.npz") != base  # the calibration data's digest
    assert key(method="entropy") != base
    assert key(exclude_ops=["MatMul"]) != base and key(exclude_nodes=["conv0"]) != base
    assert key(check_accuracy=False) == base  # the check does not change the model
    assert store.key(model, [], INT8, rtx) != base  # a model that already carries Q/DQ builds without a step
    monkeypatch.setattr(engine_mod, "resolve_quantizer", lambda quantizer, precision: ("onnxruntime", "0.0.1"))
    assert key() != base  # the quantizer's version


def test_wrong_input_name_is_refused_in_one_line_before_any_work(rtx: Backend, files: dict[str, Path],
                                                                 tmp_path: Path, loads: list[BuiltEngine],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_work(monkeypatch)
    with pytest.raises(InputError) as info:
        Engine.from_onnx(files["cnn.onnx"], config=INT8, calibration_data=files["wrong.npz"],
                         cache=tmp_path / "c", backend=rtx)
    assert "'image'" in str(info.value) and "\n" not in str(info.value)
    assert not loads and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config": BuildConfig()}, r"config.precision is 'fp32'.*precision=\"int8\""),
        ({"quantize_options": {"method": "minmax"}, "calibration_data": None}, "applies with calibration_data="),
        ({"quantize_options": {"methd": "minmax"}}, "unknown quantize options methd"),
        ({"quantize_options": 3}, "QuantizeOptions, a mapping or None"),
    ],
)
def test_bad_arguments_are_config_errors(rtx: Backend, files: dict[str, Path], kwargs: dict[str, Any],
                                         match: str) -> None:
    args: dict[str, Any] = {"config": INT8, "calibration_data": files["calib.npz"], **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_cached(files["cnn.onnx"], backend=rtx, cache=False, **args)


def test_a_tensorrt_calibration_cache_names_the_qdq_path(rtx: Backend, files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"TensorRT INT8 calibration cache.*trtkit quantize.*calibration_data="):
        build_cached(files["cnn.onnx"], config=INT8, calibration_data=files["calib.cache"], backend=rtx, cache=False)


def test_bad_quantize_option_values(rtx: Backend) -> None:
    with pytest.raises(ConfigError, match="method 'fast'"):
        QuantizeOptions(method="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="quantizer 'tensorrt'"):
        QuantizeOptions(quantizer="tensorrt")  # type: ignore[arg-type]


def test_without_a_cache_and_with_detailed_layers_the_build_says_where_int8_took_hold(
        rtx: Backend, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT-RTX prints the engine's layers at build time with detailed profiling verbosity (no GPU needed):
    the record then says which layers compute in INT8 and which stayed in float."""
    monkeypatch.setenv("TRTKIT_CACHE_DIR", str(tmp_path / "cache"))
    result = build_cached(files["cnn.onnx"], config=BuildConfig(precision="int8", profiling_verbosity="detailed"),
                          calibration_data=files["calib.npz"], backend=rtx, cache=False)
    assert not result.hit and result.model_path is None and not (tmp_path / "cache").exists()
    where = result.engine.manifest.extra["quantization"]["placement"]
    assert where["source"] == "build log" and where["precisions"] == ["int8"]
    assert len(where["quantized"]) >= 3  # the three convolutions at least
    assert any("conv0" in name for name in where["quantized"])
    assert where["summary"].startswith("INT8 took hold in ")


def test_default_verbosity_records_no_placement_from_one_opaque_layer(rtx: Backend, files: dict[str, Path]) -> None:
    result = build_cached(files["cnn.onnx"], config=INT8, calibration_data=files["calib.npz"], backend=rtx,
                          cache=False)
    assert "placement" not in result.engine.manifest.extra["quantization"]
