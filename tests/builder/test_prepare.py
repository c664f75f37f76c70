"""Graph preparation (trtkit.builder.prepare): every transformation is run on ONNX Runtime (or ONNX's reference
evaluator where ONNX Runtime cannot run the original) against the original, on random inputs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend
from trtkit.builder import prepare as prep
from trtkit.builder.model import OnnxModel, load_onnx
from trtkit.builder.prepare import MIN_PARSER_OPSET, PrepareOptions, library_versions, prepare
from trtkit.errors import ConfigError, ModelError
from trtkit.profiles import Profile, ShapeRange

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")

DATA = Path(__file__).resolve().parents[1] / "data"
BACKEND_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SILERO = DATA / "silero_vad_16k_op15.onnx"


def _run_ort(model: OnnxModel | onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    proto = model.proto if isinstance(model, OnnxModel) else model
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return list(sess.run(None, {k: v for k, v in feeds.items() if k in names}))


def _run_original(model: OnnxModel, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The original on ONNX Runtime, or on ONNX's reference evaluator where ONNX Runtime refuses it."""
    try:
        return _run_ort(model, feeds)
    except Exception:
        from onnx.reference import ReferenceEvaluator

        names = {i.name for i in model.inputs()}
        return list(ReferenceEvaluator(model.proto).run(None, {k: v for k, v in feeds.items() if k in names}))


def _random_feeds(model: OnnxModel, sizes: Mapping[str, Sequence[int]] = {}, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for info in model.inputs():
        shape = tuple(sizes.get(info.name, [d if d > 0 else 2 for d in info.shape]))
        dtype = helper.tensor_dtype_to_np_dtype(
            next(v for v in model.proto.graph.input if v.name == info.name).type.tensor_type.elem_type)
        if dtype.kind == "f":
            feeds[info.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[info.name] = rng.integers(0, 3, shape).astype(dtype)
    return feeds


def _assert_agree(a: Sequence[np.ndarray], b: Sequence[np.ndarray], rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=True)


def _builds(rtx: Backend, model: OnnxModel, shapes: Mapping[str, tuple[int, ...]] = {}) -> str:
    """Parse and build with TensorRT-RTX on the CPU: "OK" or the parser's first error."""
    trt: Any = rtx.trt
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.serialized()):
        return str(parser.get_error(0))
    cfg = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if any(d < 0 for d in t.shape):
            dynamic = True
            profile.set_shape(t.name, shapes[t.name], shapes[t.name], shapes[t.name])
    if dynamic:
        cfg.add_optimization_profile(profile)
    return "OK" if builder.build_serialized_network(network, cfg) is not None else "build failed"


def _backend_model(name: str) -> OnnxModel:
    path = next(BACKEND_DATA.glob(f"*/{name}/model.onnx"), None)
    if path is None:
        pytest.skip(f"onnx's backend test model {name} is not in this onnx wheel")
    return load_onnx(path)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: Sequence[onnx.TensorProto] = (), opset: int = 17) -> OnnxModel:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


# --- opset upgrade -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test_operator_add_broadcast", "test_GLU", "test_Linear", "test_Softsign"])
def test_opset6_models_are_upgraded_agree_and_build(rtx: Backend, name: str) -> None:
    model = _backend_model(name)
    assert model.opsets()["ai.onnx"] < MIN_PARSER_OPSET
    assert _builds(rtx, model) != "OK"  # the parser refuses opset-6 broadcasting
    p = prepare(model, PrepareOptions(fold=False))
    assert p.steps[0] == f"upgraded opset {model.opsets()['ai.onnx']} -> 17"
    assert p.model.opsets()["ai.onnx"] == 17 and p.model.proto.ir_version >= 8
    feeds = _random_feeds(model)
    _assert_agree(_run_original(model, feeds), _run_ort(p.model, feeds))
    assert _builds(rtx, p.model) == "OK"


def test_model_at_or_above_the_target_opset_is_not_converted() -> None:
    model = load_onnx(SILERO)
    p = prepare(model, PrepareOptions(upgrade_opset=13, fold=False, specialize=False))
    assert p.steps == () and p.record["opset"] == {"before": 15, "after": 15}


def test_upgrade_to_a_newer_opset_keeps_the_results() -> None:
    model = _backend_model("test_operator_add_size1_broadcast")
    p = prepare(model, PrepareOptions(upgrade_opset=20, fold=False))
    assert p.model.opsets()["ai.onnx"] == 20
    feeds = _random_feeds(model)
    _assert_agree(_run_original(model, feeds), _run_ort(p.model, feeds))


@pytest.mark.parametrize("bad", [3, 10_000, True, "17"])
def test_bad_upgrade_opset_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="upgrade_opset"):
        prepare(load_onnx(SILERO), PrepareOptions(upgrade_opset=bad))  # type: ignore[arg-type]


def test_a_failing_conversion_is_one_model_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        raise RuntimeError("Unsupported op\n  in node Foo")

    monkeypatch.setattr(onnx.version_converter, "convert_version", boom)
    with pytest.raises(ModelError) as err:
        prepare(_backend_model("test_GLU"), PrepareOptions())
    assert "\n" not in str(err.value) and "opset 6 to 17 failed: Unsupported op in node Foo" in str(err.value)


# --- frozen inputs -----------------------------------------------------------------------------------------


def _silero_feeds(batch: int = 1, seq: int = 512) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"input": rng.standard_normal((batch, seq)).astype(np.float32),
            "state": (rng.standard_normal((2, batch, 128)) * 0.1).astype(np.float32)}


def test_freeze_makes_an_input_a_constant_with_the_same_results() -> None:
    model = load_onnx(SILERO)
    p = prepare(model, PrepareOptions(freeze={"sr": 16000}, fold=False))
    assert [i.name for i in p.model.inputs()] == ["input", "state"]
    assert p.steps == ("froze input sr = 16000",)
    assert p.record["frozen"] == {"sr": 16000}
    feeds = _silero_feeds()
    _assert_agree(_run_ort(model, {**feeds, "sr": np.array(16000, np.int64)}), _run_ort(p.model, feeds))
    assert [i.name for i in model.inputs()] == ["input", "state", "sr"]  # the original is unchanged


def test_freeze_checks_names_shapes_and_values() -> None:
    model = load_onnx(SILERO)
    with pytest.raises(ConfigError, match=r"no such input \(its inputs: input, state, sr\)"):
        prepare(model, PrepareOptions(freeze={"rate": 16000}))
    with pytest.raises(ConfigError, match="has shape 2; the input is a scalar"):
        prepare(model, PrepareOptions(freeze={"sr": [16000, 8000]}))
    with pytest.raises(ConfigError, match="not a whole number"):
        prepare(model, PrepareOptions(freeze={"sr": 1.5}))
    with pytest.raises(ConfigError, match="number or a nested list"):
        prepare(model, PrepareOptions(freeze={"sr": "16000"}))
    with pytest.raises(ConfigError, match="has shape 2x2; the input is 2x\\?x128"):
        prepare(model, PrepareOptions(freeze={"state": [[1.0, 2.0], [3.0, 4.0]]}))


def test_freeze_a_tensor_takes_its_dtype_from_the_input() -> None:
    model = load_onnx(SILERO)
    state = np.zeros((2, 1, 128), np.float64).tolist()
    p = prepare(model, PrepareOptions(freeze={"state": state, "sr": [16000]}, fold=False))
    init = {t.name: t for t in p.model.proto.graph.initializer}
    assert init["state"].data_type == TensorProto.FLOAT and init["sr"].data_type == TensorProto.INT64
    assert list(init["sr"].dims) == [] and "froze input state = float32[2x1x128]" in p.steps
    feeds = _silero_feeds()
    feeds["state"] = np.zeros((2, 1, 128), np.float32)
    _assert_agree(_run_ort(model, {**feeds, "sr": np.array(16000, np.int64)}), _run_ort(p.model, feeds))


# --- specialization ----------------------------------------------------------------------------------------


def _shape_if_model() -> OnnxModel:
    """y = Squeeze(x, 1) when x's dim 1 is 1, else x: an If on a dim's size (the issue's second case)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    one = numpy_helper.from_array(np.array(1, np.int64), "one")
    index = numpy_helper.from_array(np.array(1, np.int64), "index")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    then = helper.make_graph([helper.make_node("Squeeze", ["x", "axes"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "index"], ["c"]),
             helper.make_node("Equal", ["c", "one"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    return _model(nodes, [x], [y], [one, index, axes])


def test_specialize_makes_fixed_dims_static_so_a_shape_if_folds() -> None:
    model = _shape_if_model()
    profiles = [Profile({"x": ShapeRange((1, 1, 4), (4, 1, 4), (8, 1, 4))})]
    p = prepare(model, PrepareOptions(), profiles)
    assert p.steps[0] == "made 1 dim(s) static from the profiles: x[1]=1"
    dims = p.model.inputs()[0].shape
    assert dims == (-1, 1, 4)
    assert "If" not in {n.op_type for n in p.model.proto.graph.node}
    assert p.record["ops_removed"]["If"] == 1
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 1, 4)).astype(np.float32)}
    _assert_agree(_run_ort(model, feeds), _run_ort(p.model, feeds))


def test_specialize_leaves_dims_the_profiles_disagree_on() -> None:
    model = _shape_if_model()
    profiles = [Profile({"x": ShapeRange.fixed((2, 1, 4))}), Profile({"x": ShapeRange.fixed((2, 3, 4))})]
    p = prepare(model, PrepareOptions(fold=False), profiles)
    assert p.steps == ("made 1 dim(s) static from the profiles: x[0]=2",)
    assert p.model.inputs()[0].shape == (2, -1, 4)
    p = prepare(model, PrepareOptions(fold=False, specialize=False), profiles)
    assert p.steps == ()


# --- folding and If ----------------------------------------------------------------------------------------


def test_silero_freeze_specialize_fold_removes_every_if_agrees_and_builds(rtx: Backend) -> None:
    model = load_onnx(SILERO)
    profiles = [Profile({"input": ShapeRange.fixed((1, 512)), "state": ShapeRange.fixed((2, 1, 128))})]
    assert sum(n.op_type == "If" for n in model.proto.graph.node) == 3
    p = prepare(model, PrepareOptions(freeze={"sr": 16000}), profiles)
    assert not any(n.op_type == "If" for n in p.model.proto.graph.node)
    assert p.steps[-1].startswith("folded constants (onnxslim): 121 -> ") and p.steps[-1].endswith("removed 3 If")
    feeds = _silero_feeds()
    _assert_agree(_run_ort(model, {**feeds, "sr": np.array(16000, np.int64)}), _run_ort(p.model, feeds))
    assert _builds(rtx, p.model) == "OK"


@pytest.mark.parametrize("model_file", ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "silero_vad_16k_sequence.onnx"])
def test_folding_real_models_keeps_their_results(model_file: str) -> None:
    model = load_onnx(DATA / model_file)
    p = prepare(model, PrepareOptions())
    after = p.record["nodes"]
    assert isinstance(after, dict) and after["after"] < after["before"]
    sizes = {"x": (2, 3, 48, 192), "input": (4, 576)}
    feeds = _random_feeds(model, sizes)
    _assert_agree(_run_ort(model, feeds), _run_ort(p.model, feeds), rtol=1e-3, atol=1e-4)


def test_if_on_a_constant_is_inlined_without_the_folding_library(monkeypatch: pytest.MonkeyPatch) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Abs", ["n"], ["u"])], "then",
                             [], [helper.make_tensor_value_info("u", TensorProto.FLOAT, [2, 3])])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    nodes = [helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
             helper.make_node("Sigmoid", ["x"], ["t"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=other),
             helper.make_node("Add", ["r", "t"], ["y"])]
    model = _model(nodes, [x], [y])
    monkeypatch.setattr(prep, "available", lambda module: False)
    p = prepare(model, PrepareOptions())
    assert p.steps == ("replaced 1 If node(s) with a constant condition by the branch taken",)
    assert p.record["notes"] == ["constant folding skipped: onnxslim is not installed (pip install onnxslim; "
                                 "or, from a trtkit clone: pip install '.[sanitize]')"]
    assert "If" not in {n.op_type for n in p.model.proto.graph.node}
    onnx.checker.check_model(p.model.proto)
    feeds = _random_feeds(model)
    _assert_agree(_run_ort(model, feeds), _run_ort(p.model, feeds))


def test_a_folding_library_fault_leaves_the_graph_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(proto: onnx.ModelProto) -> onnx.ModelProto:
        raise ValueError("bad\ngraph")

    monkeypatch.setattr(prep, "_slim", boom)
    model = load_onnx(DATA / "silero_vad_16k_sequence.onnx")
    p = prepare(model, PrepareOptions())
    assert p.steps == ()  # nothing changed: an automatic retry would be pointless
    assert p.record["notes"] == ["constant folding failed (onnxslim: ValueError: bad graph); left unfolded"]


def test_a_model_that_needs_nothing_is_unchanged_and_says_nothing() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    p = prepare(model, PrepareOptions())
    assert p.steps == () and p.record["nodes"] == {"before": 1, "after": 1}
    assert p.record["ops_removed"] == {} and p.record["ops_added"] == {}


# --- rewrites ----------------------------------------------------------------------------------------------


def _prelu_reference(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    s = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return np.where(x < 0, x * s, x).astype(x.dtype)


@pytest.mark.parametrize("name", ["test_PReLU_1d_multiparam", "test_PReLU_2d_multiparam", "test_PReLU_3d_multiparam"])
def test_legacy_per_channel_prelu_slopes_are_reshaped_and_build(rtx: Backend, name: str) -> None:
    model = _backend_model(name)
    p = prepare(model, PrepareOptions(fold=False))
    assert p.steps == ("upgraded opset 6 -> 17",
                       "reshaped 1 per-channel PRelu slope(s) to [C, 1, ...] so they broadcast")
    assert _builds(rtx, p.model) == "OK"
    # ONNX Runtime cannot run the original; the recorded outputs of onnx's test set come from it
    folder = next(BACKEND_DATA.glob(f"*/{name}"))
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    _assert_agree([want], _run_ort(p.model, {p.model.inputs()[0].name: x}))
    slope = numpy_helper.to_array(next(t for t in model.proto.graph.initializer if t.name == "1"))
    _assert_agree([_prelu_reference(x, slope)], [want])


def test_prelu_slope_that_does_not_broadcast_is_read_per_channel() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    model = _model([helper.make_node("PRelu", ["x", "s"], ["y"])], [x], [y], [numpy_helper.from_array(slope, "s")])
    p = prepare(model, PrepareOptions(fold=False))
    assert p.steps == ("reshaped 1 per-channel PRelu slope(s) to [C, 1, ...] so they broadcast",)
    feeds = _random_feeds(model)
    _assert_agree([_prelu_reference(feeds["x"], slope)], _run_ort(p.model, feeds))
    assert prepare(model, PrepareOptions(fold=False, rewrites=False)).steps == ()


def test_prelu_slope_that_broadcasts_is_left_alone() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])  # [3] broadcasts on the last axis
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "s")]
    model = _model([helper.make_node("PRelu", ["x", "s"], ["y"])], [x], [y], inits)
    assert prepare(model, PrepareOptions(fold=False)).steps == ()


# --- dynamic quantization ----------------------------------------------------------------------------------


def _float_and_quantized(tmp_path: Path) -> tuple[OnnxModel, OnnxModel]:
    quantization = pytest.importorskip("onnxruntime.quantization")
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
             numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "M")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("MatMul", ["r", "M"], ["y"])]
    model = _model(nodes, [x], [y], inits)
    onnx.save(model.proto, tmp_path / "f.onnx")
    quantization.quantize_dynamic(tmp_path / "f.onnx", tmp_path / "q.onnx", weight_type=quantization.QuantType.QUInt8,
                                  op_types_to_quantize=["Conv", "MatMul"])
    return model, load_onnx(tmp_path / "q.onnx")


def _dequantized(model: OnnxModel, quantized: OnnxModel) -> onnx.ModelProto:
    """``model`` with each weight replaced by its quantized value, dequantized: what the lowering computes."""
    q = {t.name: numpy_helper.to_array(t) for t in quantized.proto.graph.initializer}
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    for t in proto.graph.initializer:
        if f"{t.name}_quantized" in q:
            w = (q[f"{t.name}_quantized"].astype(np.float32) - q[f"{t.name}_zero_point"]) * q[f"{t.name}_scale"]
            t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))
    return proto


def test_dynamic_quantization_is_lowered_within_the_quantization_error(rtx: Backend, tmp_path: Path) -> None:
    model, quantized = _float_and_quantized(tmp_path)
    ops = {n.op_type for n in quantized.proto.graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= ops
    assert _builds(rtx, quantized) != "OK"
    assert prepare(quantized, PrepareOptions()).model.proto.graph.node[1].op_type != "Conv"  # opt-in only
    p = prepare(quantized, PrepareOptions(lower_dynamic_quant=True))
    assert p.steps[0].startswith("lowered 2 ConvInteger/MatMulInteger node(s)")
    left = {n.op_type for n in p.model.proto.graph.node}
    assert not left & {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} and {"Conv", "MatMul"} <= left
    for seed in range(3):
        feeds = _random_feeds(quantized, seed=seed)
        lowered = _run_ort(p.model, feeds)[0]
        # exactly the float model with dequantized weights (only the activations' rounding is gone) ...
        _assert_agree(_run_ort(_dequantized(model, quantized), feeds), [lowered], rtol=1e-4, atol=1e-4)
        # ... so within the activation quantization error of ONNX Runtime's quantized result
        reference = _run_ort(quantized, feeds)[0]
        assert np.abs(lowered - reference).max() <= 0.03 * np.abs(reference).max()
    assert _builds(rtx, p.model) == "OK"


def test_dynamic_quantization_with_other_uses_is_left_and_said() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = _model(nodes, [x], [y])
    p = prepare(model, PrepareOptions(lower_dynamic_quant=True, fold=False))
    assert p.steps == ("left 1 DynamicQuantizeLinear node(s): their uses are not ConvInteger/MatMulInteger with "
                       "constant weights cast to float",)


# --- the record --------------------------------------------------------------------------------------------


def test_record_is_json_and_names_libraries_opsets_and_ops() -> None:
    model = _backend_model("test_operator_addconstant")
    p = prepare(model, PrepareOptions())
    rec = json.loads(json.dumps(p.record))
    assert rec["steps"] == list(p.steps)
    assert rec["libraries"] == library_versions() and set(rec["libraries"]) == {"onnx", "onnxslim"}
    assert rec["opset"] == {"before": 6, "after": 17}
    assert rec["nodes"]["before"] == len(model.proto.graph.node) and rec["frozen"] == {}
    assert p.model.path == model.path and p.model.sha256 != model.sha256


def test_options_must_be_prepare_options() -> None:
    with pytest.raises(ConfigError, match="PrepareOptions"):
        prepare(load_onnx(SILERO), {"fold": True})  # type: ignore[arg-type]
