"""trtkit.tools.quantize for real: ONNX Runtime's static quantization, TensorRT-RTX builds on the CPU, and the
accuracy check on ONNX Runtime. No PyTorch or ModelOpt needed (their path: test_quantize_modelopt.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend
from trtkit.builder import build_engine
from trtkit.deps import available
from trtkit.errors import ConfigError, DependencyError, InputError, UnsupportedFeatureError
from trtkit.tools.quantize import QuantizeResult, load_calibration, quantize, resolve_quantizer

CLS_MODEL = Path(__file__).parents[1] / "data" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
NO_MODELOPT = pytest.mark.skipif(available("modelopt.onnx"), reason="ModelOpt is installed: auto picks it")


def weight_cnn(widths: tuple[int, ...] = (64, 128, 256), size: int = 16, classes: int = 64,
               seed: int = 0) -> onnx.ModelProto:
    """A weight-dominated CNN: 3x3 conv + ReLU stages with a residual block each, pooling and a Gemm head.
    Input ``image[1, 3, size, size]``, output ``logits[1, classes]``."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv(x: str, cin: int, cout: int, name: str, stride: int = 1, relu: bool = True) -> str:
        w = init(f"{name}.w", rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin)))
        b = init(f"{name}.b", rng.standard_normal(cout) * 0.05)
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}.out"], name=name, pads=[1, 1, 1, 1],
                                      strides=[stride, stride]))
        if not relu:
            return f"{name}.out"
        nodes.append(helper.make_node("Relu", [f"{name}.out"], [f"{name}.relu"], name=f"{name}_relu"))
        return f"{name}.relu"

    x, cin = "image", 3
    for i, w in enumerate(widths):
        x = conv(x, cin, w, f"stage{i}", stride=2 if i else 1)
        y = conv(conv(x, w, w, f"stage{i}_a"), w, w, f"stage{i}_b", relu=False)
        nodes.append(helper.make_node("Add", [y, x], [f"stage{i}.sum"], name=f"stage{i}_add"))
        nodes.append(helper.make_node("Relu", [f"stage{i}.sum"], [f"stage{i}.res"], name=f"stage{i}_res"))
        x, cin = f"stage{i}.res", w
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"))
    fc = init("fc.w", rng.standard_normal((cin, classes)) * np.sqrt(1.0 / cin))
    nodes.append(helper.make_node("Gemm", ["flat", fc, init("fc.b", np.zeros(classes))], ["logits"], name="fc"))
    graph = helper.make_graph(nodes, "weight_cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def matmul_model(k: int = 64, n: int = 32) -> onnx.ModelProto:
    """``y = x @ W`` with a dynamic batch: ``x[N, k]`` float32."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def images(count: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quantize") / "cnn.onnx"
    onnx.save(weight_cnn(), path)
    return path


@pytest.fixture(scope="module")
def cnn_int8(cnn: Path) -> QuantizeResult:
    return quantize(cnn, {"image": images(16, seed=1)}, val_data={"image": images(4, seed=2)})


# ---- the quantized model: what TensorRT fuses, how accurate, how small ------------------------------------------


@NO_MODELOPT
def test_cnn_quantizes_every_conv_and_gemm_and_stays_accurate_on_held_out_inputs(cnn_int8: QuantizeResult) -> None:
    assert cnn_int8.quantizer == "onnxruntime" and cnn_int8.precision == "int8" and cnn_int8.method == "minmax"
    assert cnn_int8.quantized_ops["Conv"] == 9 and cnn_int8.quantized_ops["Gemm"] == 1
    assert cnn_int8.float_nodes == ()
    assert cnn_int8.accuracy is not None and cnn_int8.accuracy.passed
    assert min(o.cosine for o in cnn_int8.accuracy.outputs) >= 0.99
    ops = {n.op_type for n in cnn_int8.model.proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # TensorRT's parser rejects int32 DequantizeLinear: biases stay float
    inits = {t.name: t for t in cnn_int8.model.proto.graph.initializer}
    dq_inputs = [inits[n.input[0]] for n in cnn_int8.model.proto.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_inputs and all(t.data_type == TensorProto.INT8 for t in dq_inputs)


@pytest.mark.slow
@NO_MODELOPT
def test_int8_engine_is_at_most_half_the_fp32_engine(rtx: Backend, cnn: Path, cnn_int8: QuantizeResult) -> None:
    fp32 = build_engine(cnn, backend=rtx, progress=False)
    int8 = build_engine(cnn_int8.model, backend=rtx, progress=False)
    assert len(int8.plan) <= 0.5 * len(fp32.plan)
    assert "int8" in int8.manifest.extra["precision"]["model_carries"]["quantized"]


@pytest.mark.slow
@NO_MODELOPT
def test_real_mobilenet_cls_model_quantizes_builds_and_keeps_depthwise_convs_in_float(rtx: Backend) -> None:
    shape = (1, 3, 48, 192)
    calib = np.random.default_rng(3).uniform(-1, 1, (8, *shape[1:])).astype(np.float32)
    result = quantize(CLS_MODEL, {"x": calib}, profiles={"x": shape})
    grouped = {n.name for n in onnx.load(CLS_MODEL).graph.node
               if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    assert grouped and grouped <= set(result.float_nodes)
    assert result.quantized_ops["Conv"] > 0
    assert any("depthwise" in note for note in result.notes)
    assert result.accuracy is not None and result.accuracy.status in ("pass", "mismatch")
    built = build_engine(result.model, shapes={"x": shape}, backend=rtx, progress=False)
    assert "int8" in built.manifest.extra["precision"]["model_carries"]["quantized"]


def test_result_summary_and_manifest_record(cnn_int8: QuantizeResult) -> None:
    lines = cnn_int8.summary_lines()
    assert "Conv 9" in lines[0] and "Gemm 1" in lines[0]
    assert any(line.startswith("left in float") for line in lines)
    assert lines[-1].startswith("accuracy: PASS")
    record = json.loads(json.dumps(cnn_int8.manifest_record()))
    assert record["quantizer"] == "onnxruntime" and record["precision"] == "int8"
    assert record["data_digest"] == load_calibration({"image": images(16, seed=1)}, weight_cnn()).digest
    assert set(record["quantized_nodes"]) >= {"stage0", "fc"}
    assert record["accuracy"]["status"] == "pass"


def test_exclusions_leave_nodes_in_float(cnn: Path) -> None:
    data = {"image": images(4, seed=1)}
    by_op = quantize(cnn, data, exclude_ops=["Gemm"], check_accuracy=False)
    assert "fc" in by_op.float_nodes and "Gemm" not in by_op.quantized_ops and by_op.accuracy is None
    by_name = quantize(cnn, data, exclude_nodes=["stage1_a"], check_accuracy=False)
    assert by_name.float_nodes == ("stage1_a",)
    with pytest.raises(ConfigError, match="no_such_node"):
        quantize(cnn, data, exclude_nodes=["no_such_node"])


def test_methods_entropy_and_percentile_run(tmp_path: Path) -> None:
    path = tmp_path / "mm.onnx"
    onnx.save(matmul_model(), path)
    data = {"x": np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)}
    for method in ("entropy", "percentile"):
        result = quantize(path, data, method=method, quantizer="onnxruntime")
        assert result.method == method and result.quantized_ops == {"MatMul": 1}


def _input_scale(result: QuantizeResult) -> float:
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.proto.graph.initializer}
    q = next(n for n in result.model.proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    return float(inits[q.input[1]])


def test_entropy_clips_outliers_that_minmax_keeps(tmp_path: Path) -> None:
    """Entropy calibration picks a threshold below a rare outlier; minmax spans it."""
    import inspect

    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        pytest.skip("this ONNX Runtime's quantize_static takes no calibration_cache_path: its own entropy runs")
    path = tmp_path / "mm.onnx"
    onnx.save(matmul_model(), path)
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    x[0, 0] = 200.0
    minmax = quantize(path, {"x": x}, method="minmax", quantizer="onnxruntime", check_accuracy=False)
    entropy = quantize(path, {"x": x}, method="entropy", quantizer="onnxruntime", check_accuracy=False)
    assert _input_scale(minmax) == pytest.approx(200.0 / 127, rel=1e-3)
    assert _input_scale(entropy) < 0.5 * _input_scale(minmax)


def test_a_failing_accuracy_is_reported_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Calibrated on tiny values, checked on large ones: the activations clip, and the result says so."""
    path = tmp_path / "mm.onnx"
    onnx.save(matmul_model(), path)
    rng = np.random.default_rng(0)
    calib = {"x": rng.uniform(-0.01, 0.01, (8, 64)).astype(np.float32)}
    val = {"x": (rng.standard_normal((4, 64)) * 100).astype(np.float32)}
    with caplog.at_level(logging.WARNING, logger="trtkit"):
        result = quantize(path, calib, val_data=val, quantizer="onnxruntime")
    assert result.accuracy_failed and result.accuracy is not None and result.accuracy.status == "mismatch"
    assert result.summary_lines()[-1].startswith("FAILED accuracy")
    assert any("FAILED accuracy" in r.getMessage() for r in caplog.records)


def test_output_path_is_written_and_never_the_model(cnn: Path, tmp_path: Path) -> None:
    data = {"image": images(2, seed=1)}
    with pytest.raises(ConfigError):
        quantize(cnn, data, output_path=cnn)
    out = tmp_path / "cnn.int8.onnx"
    result = quantize(cnn, data, output_path=out, check_accuracy=False)
    assert out.is_file() and result.model.path == out
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(out).graph.node}


def test_opset_below_13_and_constant_weights_are_prepared(tmp_path: Path) -> None:
    """As PP-OCR's paddle2onnx exports: opset 11, weights in Constant nodes. They come out as int8 initializers
    with per-channel scales."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=w, name="wconst"),
         helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])])
    path = tmp_path / "old.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7), path)
    result = quantize(path, {"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)}, quantizer="onnxruntime")
    assert result.quantized_ops == {"Conv": 1}
    assert result.model.opsets()["ai.onnx"] >= 13
    weights = [t for t in result.model.proto.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 4]
    assert len(weights) == 1
    scales = [n for n in result.model.proto.graph.node if n.op_type == "DequantizeLinear"
              and any(a.name == "axis" for a in n.attribute)]
    assert scales, "weights are quantized per channel"


# ---- which quantizer ---------------------------------------------------------------------------------------------


@NO_MODELOPT
def test_auto_picks_onnxruntime_without_modelopt() -> None:
    kind, version = resolve_quantizer()
    assert kind == "onnxruntime" and version


@NO_MODELOPT
def test_fp8_needs_modelopt() -> None:
    with pytest.raises(DependencyError, match="nvidia-modelopt"):
        resolve_quantizer("auto", "fp8")
    with pytest.raises(UnsupportedFeatureError, match="INT8"):
        resolve_quantizer("onnxruntime", "fp8")
    with pytest.raises(DependencyError, match="nvidia-modelopt"):
        resolve_quantizer("modelopt", "int8")


def test_bad_options_are_refused_before_any_work(cnn: Path) -> None:
    data = {"image": images(2, seed=1)}
    with pytest.raises(ConfigError, match="quantizer"):
        resolve_quantizer("tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="int8 or fp8"):
        quantize(cnn, data, precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="method"):
        quantize(cnn, data, method="kl", quantizer="onnxruntime")  # type: ignore[arg-type]


# ---- calibration data ------------------------------------------------------------------------------------------


def test_calibration_forms_give_the_same_data_and_digest(cnn: Path, tmp_path: Path) -> None:
    arr = images(4, seed=5)
    np.savez(tmp_path / "calib.npz", image=arr)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "image.npy", arr)
    loader = tmp_path / "loader.py"
    loader.write_text(f"import numpy as np\n_a = np.load({str(tmp_path / 'dir' / 'image.npy')!r})\n"
                      "def load_data():\n    for i in range(len(_a)):\n        yield {'image': _a[i:i + 1]}\n")
    sets = [load_calibration(src, cnn) for src in
            (tmp_path / "calib.npz", tmp_path / "dir", str(loader), arr, {"image": arr},
             [{"image": arr[i:i + 1]} for i in range(4)])]
    assert {s.digest for s in sets} == {sets[0].digest}
    assert [s.source for s in sets[:3]] == ["calib.npz", "dir/", "loader.py"]
    assert all(s.samples == 4 for s in sets)
    assert load_calibration(images(4, seed=6), cnn).digest != sets[0].digest


def test_digest_does_not_depend_on_the_mapping_order(tmp_path: Path) -> None:
    a = np.ones((2, 4), np.float32)
    b = np.zeros((2, 4), np.float32)
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert load_calibration({"a": a, "b": b}, model).digest == load_calibration({"b": b, "a": a}, model).digest
    assert load_calibration({"a": a, "b": b}, model).digest != load_calibration({"a": b, "b": a}, model).digest


@pytest.mark.parametrize(("data", "words"), [
    ({"images": images(2, 0)}, ["'images'", "does not have", "image (float32"]),
    ({"image": images(2, 0).astype(np.float64)}, ["'image'", "float64", "expected float32"]),
    ({"image": images(2, 0)[0]}, ["'image'", "rank 3", "expected rank 4"]),
    ({"image": images(2, 0, size=32)}, ["'image'", "2x3x32x32", "axis 2 to 16"]),
    ({}, ["lacks input", "image"]),
])
def test_data_that_does_not_fit_is_refused_in_one_line(cnn: Path, data: dict[str, np.ndarray],
                                                       words: list[str]) -> None:
    with pytest.raises(InputError) as err:
        load_calibration(data, cnn)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_data_outside_the_profiles_is_refused(tmp_path: Path) -> None:
    model = matmul_model()
    with pytest.raises(InputError, match="outside the profiles"):
        load_calibration([{"x": np.zeros((1, 64), np.float32)}], model, profiles={"x": [(2, 64), (2, 64), (3, 64)]})
    ok = load_calibration({"x": np.zeros((4, 64), np.float32)}, model, profiles={"x": [(2, 64), (2, 64), (3, 64)]},
                          what="validation data")
    assert ok.samples == 4  # fed two at a time: the profile's smallest batch


def test_broken_loader_scripts_are_refused(cnn: Path, tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("def load_data():\n    raise RuntimeError('no camera')\n")
    with pytest.raises(InputError, match="no camera"):
        load_calibration(str(script), cnn)
    with pytest.raises(InputError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz", cnn)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])])
    relu = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(InputError, match="different shapes"):
        load_calibration([{"x": np.zeros((1, 64), np.float32)}, {"x": np.zeros((1, 32), np.float32)}], relu)
