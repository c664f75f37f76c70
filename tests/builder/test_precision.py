"""Precision: FP16/BF16 by model conversion on TensorRT-RTX, target checks, Q/DQ detection, accuracy checks.

Builds run for real on TensorRT-RTX (CPU-only machines build engines); conversion uses onnxconverter-common.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend, Features, get_backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.config import DEFAULT_FP32_OPS, resolve_fp32_ops
from trtkit.builder.conversion import convert_model
from trtkit.builder.precision import model_precisions, plan_precision
from trtkit.errors import ConfigError, UnsupportedFeatureError
from trtkit.tools.metrics import DEFAULT_TOLERANCES
from trtkit.tools.quantize import check_conversion

pytest.importorskip("onnxconverter_common", reason="onnxconverter-common is in the dev extra")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")


def _rtx() -> Backend:
    try:
        return get_backend("tensorrt_rtx")
    except Exception as exc:  # pragma: no cover - CI always has tensorrt_rtx
        pytest.skip(f"tensorrt_rtx is not installed: {exc}")


# ---- models -----------------------------------------------------------------------------------------------


class _Net:
    """A small ONNX graph writer with He-initialised weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def init(self, array: np.ndarray[Any, Any], kind: str = "w") -> str:
        name = self._name(kind)
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv_bn_relu(self, x: str, cin: int, cout: int, stride: int = 1, relu: bool = True) -> str:
        w = self.rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        y = self.node("Conv", [x, self.init(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])
        bn = [self.init(1 + 0.1 * self.rng.standard_normal(cout)), self.init(0.1 * self.rng.standard_normal(cout)),
              self.init(0.1 * self.rng.standard_normal(cout)), self.init(1 + 0.1 * self.rng.random(cout))]
        y = self.node("BatchNormalization", [y, *bn], epsilon=1e-5)
        return self.node("Relu", [y]) if relu else y

    def model(self, x: str, y: str, in_shape: list[int], out_shape: list[int]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "resnet_like",
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)], self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def resnet_like(widths: tuple[int, ...] = (32, 64, 128, 256), classes: int = 100) -> onnx.ModelProto:
    """A ResNet-18-shaped CNN (random weights): stem, two residual blocks per stage, pooling, softmax head."""
    net = _Net()
    x = net.conv_bn_relu("image", 3, widths[0])
    cin = widths[0]
    for i, w in enumerate(widths):
        for b in range(2):
            stride = 2 if (b == 0 and i > 0) else 1
            y = net.conv_bn_relu(x, cin, w, stride)
            y = net.conv_bn_relu(y, w, w, relu=False)
            skip = x if (stride == 1 and cin == w) else net.conv_bn_relu(x, cin, w, stride, relu=False)
            x = net.node("Relu", [net.node("Add", [y, skip])])
            cin = w
    x = net.node("Flatten", [net.node("GlobalAveragePool", [x])])
    fc = net.rng.standard_normal((cin, classes)) * np.sqrt(1.0 / cin)
    x = net.node("Gemm", [x, net.init(fc), net.init(np.zeros(classes))])
    x = net.node("Softmax", [x], axis=1)
    return net.model("image", x, [1, 3, 64, 64], [1, classes])


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "resnet_like.onnx"
    onnx.save(resnet_like(), str(path))
    return path


@pytest.fixture(scope="module")
def rtx_engines(cnn: Path) -> dict[str, Any]:
    be = _rtx()
    return {p: build_engine(cnn, config=BuildConfig(precision=p), backend=be, progress=False)  # type: ignore[arg-type]
            for p in ("fp32", "fp16")}


def _image() -> dict[str, np.ndarray[Any, Any]]:
    return {"image": np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)}


# ---- building on TensorRT-RTX ---------------------------------------------------------------------------------


def test_fp16_engine_is_about_half_the_fp32_engine(cnn: Path, rtx_engines: dict[str, Any]) -> None:
    weights = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(cnn)).graph.initializer)
    fp32, fp16 = rtx_engines["fp32"].plan, rtx_engines["fp16"].plan
    assert len(fp32) > weights  # the FP32 engine holds FP32 weights
    assert 0.4 <= len(fp16) / len(fp32) <= 0.65


def test_fp16_manifest_records_the_conversion(rtx_engines: dict[str, Any]) -> None:
    rec = rtx_engines["fp16"].manifest.extra["precision"]
    assert rec["method"] == "convert"
    assert rec["model_carries"] == {"float": ["fp32"], "quantized": [], "qdq_nodes": 0}
    conv = rec["conversion"]
    assert conv["tool"] == "onnxconverter-common" and conv["version"][0].isdigit()
    assert conv["precision"] == "fp16" and conv["keep_io_types"] is True
    assert conv["fp32_ops"] == list(DEFAULT_FP32_OPS)
    assert conv["kept_fp32_nodes"] == {"Softmax": 1}  # the only default-listed op in the model
    # graph I/O keep FP32 by default
    tensors = {t.name: t.dtype for t in rtx_engines["fp16"].manifest.tensors}
    assert set(tensors.values()) == {"float32"}
    assert rtx_engines["fp32"].manifest.extra["precision"]["conversion"] is None


def test_converted_model_is_within_fp16_tolerance(cnn: Path) -> None:
    conversion = convert_model(cnn, "fp16")
    report = check_conversion(cnn, conversion.model, inputs=_image(), precision="fp16")
    assert report.passed, report.format()
    assert report.outputs[0].max_abs > 0  # it really ran a different (FP16) model


def test_check_conversion_catches_a_wrong_model(cnn: Path) -> None:
    broken = onnx.load(str(cnn))
    fc = next(t for t in broken.graph.initializer if t.dims == [256, 100])
    fc.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(fc) * 1.3, fc.name))
    report = check_conversion(cnn, broken, inputs=_image(), precision="fp16")
    assert not report.passed
    assert "FAIL" in report.format()


def test_check_conversion_reports_its_tolerance_and_evaluator(cnn: Path) -> None:
    conversion = convert_model(cnn, "fp16")
    data = check_conversion(cnn, conversion.model, inputs=_image(), precision="bf16").to_dict()
    assert data["evaluator"] == "onnxruntime" and data["precision"] == "bf16"
    assert data["tolerance"] == {"rtol": 5e-2, "atol": 1e-2, "min_cosine": 0.99, "max_mismatch": 0.01}
    with pytest.raises(ConfigError, match="no default tolerance for precision 'int4'"):
        check_conversion(cnn, conversion.model, inputs=_image(), precision="int4")


def test_convert_io_types_makes_fp16_inputs(cnn: Path) -> None:
    conversion = convert_model(cnn, "fp16", keep_io_types=False)
    assert conversion.model.inputs()[0].dtype == "float16"
    assert conversion.model.outputs()[0].dtype == "float16"


def test_bf16_for_sm75_fails_with_one_clear_message(cnn: Path) -> None:
    config = BuildConfig(precision="bf16", compute_capabilities=("7.5", "8.6"))
    with pytest.raises(UnsupportedFeatureError) as info:
        build_engine(cnn, config=config, backend=_rtx(), progress=False)
    message = str(info.value)
    assert "bf16" in message and "7.5" in message and "8.0" in message
    assert "TensorRT said" not in message  # rejected before TensorRT was asked


def test_bf16_without_modelopt_names_the_package(cnn: Path) -> None:
    if importlib.util.find_spec("modelopt") is not None:  # pragma: no cover
        pytest.skip("ModelOpt is installed here, so bf16 converts")
    with pytest.raises(UnsupportedFeatureError, match=r"pip install 'nvidia-modelopt\[onnx\]'"):
        build_engine(cnn, config=BuildConfig(precision="bf16"), backend=_rtx(), progress=False)


def test_save_converted_model_and_cli(cnn: Path, tmp_path: Path) -> None:
    from trtkit.cli.main import main

    out, converted = tmp_path / "m.engine", tmp_path / "m.fp16.onnx"
    rc = main(["build", str(cnn), "-o", str(out), "--precision", "fp16", "--backend", "tensorrt_rtx",
               "--no-progress", "--fp32Ops", "+Gemm", "--saveConvertedModel", str(converted)])
    assert rc == 0
    manifest = json.loads((tmp_path / "m.engine.manifest.json").read_text())
    conv = manifest["extra"]["precision"]["conversion"]
    assert conv["saved_to"] == str(converted)
    assert conv["kept_fp32_nodes"] == {"Gemm": 1, "Softmax": 1}
    saved = onnx.load(str(converted))
    assert model_precisions(saved)["float"] == ["fp32", "fp16"]
    assert check_conversion(cnn, saved, inputs=_image()).passed


def test_constants_beyond_fp16_range_stay_fp32() -> None:
    # A BatchNormalization whose running variance (1e8) FP16 cannot hold, as in PaddleOCR's PP-OCRv4 detector.
    net = _Net()
    w = net.rng.standard_normal((8, 3, 3, 3)) * 3000
    y = net.node("Conv", ["x", net.init(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    mean = net.rng.standard_normal(8) * 300
    # the variance as a Constant node, as Paddle2ONNX writes weights
    var = net.node("Constant", [], value=numpy_helper.from_array(np.full(8, 1e8, np.float32)))
    y = net.node("BatchNormalization", [y, net.init(np.ones(8)), net.init(np.zeros(8)), net.init(mean), var],
                 epsilon=1e-5)
    model = net.model("x", y, [1, 3, 16, 16], [1, 8, 16, 16])
    conversion = convert_model(model, "fp16")
    assert conversion.record["nodes_out_of_fp16_range"] == [y + "_node"]
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    assert check_conversion(model, conversion.model, inputs=x).passed


# ---- decisions without a real TensorRT 10 ------------------------------------------------------------------


def _features(**kw: Any) -> Features:
    return replace(_rtx().features, **kw)


@pytest.mark.parametrize(
    ("flags", "precision", "strongly_typed", "expected"),
    [
        (True, "fp16", False, "builder_flags"),  # TensorRT 10: BuilderFlag.FP16
        (True, "bf16", False, "builder_flags"),
        (True, "fp16", True, "convert"),  # TensorRT 10 strongly typed: the model's types decide
        (False, "fp16", False, "convert"),  # TensorRT 11 / RTX
        (False, "bf16", True, "convert"),
        (True, "fp32", False, "none"),
        (False, "fp32", False, "none"),
    ],
)
def test_plan_precision(flags: bool, precision: str, strongly_typed: bool, expected: str) -> None:
    features = _features(precision_flags=flags, always_strongly_typed=not flags)
    config = BuildConfig(precision=precision, strongly_typed=strongly_typed)  # type: ignore[arg-type]
    plan = plan_precision(features, config, converters={"modelopt": "0.1", "onnxconverter-common": "1.16"})
    assert plan.route == expected
    assert plan.builder_flags == ((precision.upper(),) if expected == "builder_flags" else ())
    assert plan.converter_identity == ("modelopt 0.1" if expected == "convert" else None)


def test_plan_precision_picks_the_converter_installed() -> None:
    features = _features(precision_flags=False, always_strongly_typed=True)
    fp16, bf16 = BuildConfig(precision="fp16"), BuildConfig(precision="bf16")
    only_occ = {"onnxconverter-common": "1.16"}
    assert plan_precision(features, fp16, converters=only_occ).converter_identity == "onnxconverter-common 1.16"
    with pytest.raises(UnsupportedFeatureError, match=r"pip install 'nvidia-modelopt\[onnx\]'"):
        plan_precision(features, bf16, converters=only_occ)
    with pytest.raises(ImportError, match="onnxconverter-common"):
        plan_precision(features, fp16, converters={})


def test_resolve_fp32_ops() -> None:
    assert resolve_fp32_ops(None) == DEFAULT_FP32_OPS
    assert resolve_fp32_ops(["none"]) == ()
    assert resolve_fp32_ops(["Softmax", "Exp"]) == ("Softmax", "Exp")
    assert resolve_fp32_ops(["+Erf", "-Resize"]) == (*(o for o in DEFAULT_FP32_OPS if o != "Resize"), "Erf")
    with pytest.raises(ConfigError):
        resolve_fp32_ops(["Softmax", "+Erf"])


# ---- quantized models ---------------------------------------------------------------------------------------


def _qdq_model(kind: int) -> onnx.ModelProto:
    """x -> Q/DQ (activation) -> Conv with DQ'd weights -> y; quantized type ``kind`` (INT8 or FP8)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 20).astype(np.int8), "wq")
    if kind == TensorProto.FLOAT8E4M3FN:
        w = helper.make_tensor("wq", kind, [16, 3, 3, 3], rng.standard_normal(16 * 27).tolist())
    zero = helper.make_tensor("zp", kind, [], [0])
    inits = [w, zero, numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.full(16, 0.01, np.float32), "ws")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    return m


def test_model_precisions_reads_qdq_types() -> None:
    assert model_precisions(_qdq_model(TensorProto.INT8)) == {"float": ["fp32"], "quantized": ["int8"],
                                                              "qdq_nodes": 3}
    assert model_precisions(_qdq_model(TensorProto.FLOAT8E4M3FN))["quantized"] == ["fp8"]


def test_int8_qdq_model_builds_as_it_is_on_rtx() -> None:
    built = build_engine(_qdq_model(TensorProto.INT8), backend=_rtx(), progress=False,
                         config=BuildConfig(compute_capabilities=("8.6",)))
    rec = built.manifest.extra["precision"]
    assert rec["method"] == "none" and rec["conversion"] is None
    assert rec["model_carries"]["quantized"] == ["int8"]


def test_fp8_qdq_model_for_sm86_fails_clearly() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"fp8.*8\.6.*8\.9"):
        build_engine(_qdq_model(TensorProto.FLOAT8E4M3FN), backend=_rtx(), progress=False,
                     config=BuildConfig(compute_capabilities=("8.6",)))


def test_tolerances_are_ordered_by_precision() -> None:
    fp32, fp16, bf16 = DEFAULT_TOLERANCES["fp32"], DEFAULT_TOLERANCES["fp16"], DEFAULT_TOLERANCES["bf16"]
    assert fp32.rtol is not None and fp16.rtol is not None and bf16.rtol is not None
    assert fp32.rtol < fp16.rtol < bf16.rtol
    assert fp32.min_cosine > fp16.min_cosine > bf16.min_cosine
