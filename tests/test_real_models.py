"""`trtkit build` on real third-party ONNX models (tests/data/README.md says where each comes from).

What a new user meets: a build either succeeds or prints one message naming the input and dims, or the node
and op, at fault; never a traceback, and never TensorRT's log twice. Patterns found on larger real models
(ONNX Runtime-quantized OCR, encoder/decoder with shared dim names, a Reshape that fixes a height) are
rebuilt here with onnx.helper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend
from trtkit.builder import build_engine
from trtkit.cli.main import main
from trtkit.errors import BuildError, ModelError, OnnxParseError, ShapeError
from trtkit.manifest import read_engine_file

DATA = Path(__file__).parent / "data"
CLS_CNN = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
VAD_LSTM = DATA / "silero_vad_16k_sequence.onnx"
VAD_IF = DATA / "silero_vad_16k_op15.onnx"
LOGREG = DATA / "logreg_iris.onnx"


def _build(model: Path, out: Path, *flags: str) -> int:
    return main(["build", str(model), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress", *flags])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: list[onnx.TensorProto] | None = None, domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model


def _assert_one_message(err: str) -> None:
    assert "Traceback" not in err
    assert "[trtkit.tensorrt]" not in err, "TensorRT's log was printed live besides the error carrying it"


# ---- real models ----------------------------------------------------------------------------------------


def test_cnn_with_dynamic_hw_without_shapes_names_input_and_dims(rtx: Backend, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = _build(CLS_CNN, tmp_path / "cls.engine")
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_message(err)
    assert "input x" in err and "dynamic dims at 0, 2" in err and "--minShapes=x:" in err
    assert not (tmp_path / "cls.engine").exists()


def test_cnn_with_dynamic_hw_builds_with_shape_flags(rtx: Backend, tmp_path: Path) -> None:
    out = tmp_path / "cls.engine"
    rc = _build(CLS_CNN, out, "--minShapes=x:1x3x48x32", "--optShapes=x:6x3x48x192", "--maxShapes=x:16x3x48x640")
    assert rc == 0
    plan, manifest = read_engine_file(out)
    assert manifest is not None and len(plan) > 100_000
    rng = manifest.profiles[0]["x"]
    assert (rng.min, rng.opt, rng.max) == ((1, 3, 48, 32), (6, 3, 48, 192), (16, 3, 48, 640))


def test_recurrent_model_builds_over_a_sequence_range(rtx: Backend, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(VAD_LSTM, tmp_path / "none.engine") == 1
    err = capsys.readouterr().err
    _assert_one_message(err)
    assert "input input" in err and "sequence_length" in err
    out = tmp_path / "vad.engine"
    rc = _build(VAD_LSTM, out, "--minShapes=input:1x576", "--optShapes=input:100x576", "--maxShapes=input:1000x576")
    assert rc == 0
    _, manifest = read_engine_file(out)
    assert manifest is not None
    assert manifest.profiles[0]["input"].max == (1000, 576)
    assert manifest.profiles[0]["h"].opt == (1, 1, 128)  # static inputs are filled in


def test_model_tensorrt_fails_on_gives_one_message_not_a_traceback(rtx: Backend, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """silero's nested If graph: TensorRT-RTX 1.7 stops with an internal error. Say so once, and why."""
    out = tmp_path / "vad.engine"
    rc = _build(VAD_IF, out, "--shapes=input:1x512,state:2x1x128")
    err = capsys.readouterr().err
    _assert_one_message(err)
    if rc == 0:  # a later TensorRT may build it; then the engine must be there
        assert out.exists()
        return
    assert rc == 1
    first = err.splitlines()[0]
    assert first.startswith("trtkit: error: TensorRT-RTX") and "silero_vad_16k_op15" in first
    assert "control flow (If x" in err
    assert err.count("Internal Error") == 2  # the headline and TensorRT's own line, once each


def test_ml_ops_name_every_node_and_op_and_say_why(rtx: Backend, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc = _build(LOGREG, tmp_path / "lr.engine")
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_message(err)
    headline = err.splitlines()[0]
    for op, node in (("LinearClassifier", 0), ("Normalizer", 1), ("ZipMap", 2)):
        assert f"{op} (domain ai.onnx.ml) at node {node}" in headline
    assert "ai.onnx.ml ops" in headline


# ---- patterns found on larger real models, rebuilt small ---------------------------------------------------


def _ort_dynamic_quantized(n_convs: int) -> onnx.ModelProto:
    """What onnxruntime.quantization.quantize_dynamic writes: DynamicQuantizeLinear + ConvInteger per conv."""
    nodes, inits = [], []
    prev = "x"
    for i in range(n_convs):
        inits.append(numpy_helper.from_array(np.ones((1, 1, 1, 1), np.uint8), f"w{i}"))
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [prev], [f"q{i}", f"s{i}", f"z{i}"], name=f"quant{i}"),
            helper.make_node("ConvInteger", [f"q{i}", f"w{i}", f"z{i}"], [f"c{i}"], name=f"conv{i}_quant"),
            helper.make_node("Cast", [f"c{i}"], [f"f{i}"], name=f"cast{i}", to=TensorProto.FLOAT),
        ]
        prev = f"f{i}"
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                  [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)


def test_many_unsupported_nodes_are_grouped_by_op_and_capped(rtx: Backend, tmp_path: Path) -> None:
    path = _save(_ort_dynamic_quantized(12), tmp_path / "q.onnx")
    with pytest.raises(OnnxParseError) as info:
        build_engine(path, backend=rtx, progress=False)
    exc = info.value
    assert len(exc.issues) == 24  # every parser error stays available
    headline = str(exc).splitlines()[0]
    assert "DynamicQuantizeLinear at 12 nodes, first node 0 'quant0'" in headline
    assert "ConvInteger at 12 nodes, first node 1 'conv0_quant'" in headline
    assert "quantized for ONNX Runtime" in headline
    assert len(str(exc).splitlines()) < 15
    assert len(str(exc).splitlines()) == 1 and str(exc).endswith("and 19 more; all in .issues)")  # 24 - 5 named
    assert "false [UNSUPPORTED_NODE]" not in str(exc)


def _encoder(src_len: str = "src_len") -> onnx.ModelProto:
    """Two inputs sharing the named dims batch and src_len, as exported encoders have (tokens and mask)."""
    nodes = [helper.make_node("Cast", ["src_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["src"], ["s"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["s", "m"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("src", TensorProto.INT64, ["batch", "src_len"]),
                          helper.make_tensor_value_info("src_mask", TensorProto.BOOL, ["batch", src_len])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "src_len"])])


def test_inputs_sharing_a_named_dim_must_agree(rtx: Backend, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _save(_encoder(), tmp_path / "enc.onnx")
    rc = _build(path, tmp_path / "enc.engine", "--shapes=src:4x16,src_mask:4x20")
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_message(err)
    assert "'src' (dim 1) and 'src_mask' (dim 1)" in err and "'src_len'" in err and "16/16/16" in err


def test_input_left_out_takes_its_range_from_shared_dim_names(rtx: Backend, tmp_path: Path) -> None:
    path = _save(_encoder(), tmp_path / "enc.onnx")
    built = build_engine(path, shapes={"src": ((1, 1), (4, 16), (16, 64))}, backend=rtx, progress=False)
    mask = built.manifest.profiles[0]["src_mask"]
    assert (mask.min, mask.opt, mask.max) == ((1, 1), (4, 16), (16, 64))


def test_input_with_an_unshared_dynamic_dim_still_needs_a_range(rtx: Backend, tmp_path: Path) -> None:
    path = _save(_encoder(src_len="mask_len"), tmp_path / "enc.onnx")
    with pytest.raises(ShapeError, match=r"src_mask .*dynamic dims at .*1 \(mask_len\)"):
        build_engine(path, shapes={"src": ((1, 1), (4, 16), (16, 64))}, backend=rtx, progress=False)


def test_build_error_names_the_onnx_node_and_the_shapes(rtx: Backend, tmp_path: Path) -> None:
    """Like PP-OCR's recognizer built with height 32 instead of 48: a Reshape fixed for one size fails."""
    shape = numpy_helper.from_array(np.array([0, 3, 16], np.int64), "target")
    model = _model([helper.make_node("Reshape", ["x", "target"], ["y"], name="head/reshape")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    path = _save(model, tmp_path / "r.onnx")
    built = build_engine(path, shapes={"x": (1, 3, 16)}, backend=rtx, progress=False)
    assert built.plan
    with pytest.raises(BuildError) as info:
        build_engine(path, shapes={"x": (1, 3, 12)}, backend=rtx, progress=False)
    message = info.value.message
    assert "ONNX node 'head/reshape' (Reshape)" in message
    assert "x: 1x3x12" in message
    assert info.value.tensorrt_log


def test_input_without_shape_is_refused_not_built_as_scalar(rtx: Backend, tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                            None)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = _save(model, tmp_path / "noshape.onnx")
    with pytest.raises(ShapeError, match="input 'x' has no shape"):
        build_engine(path, backend=rtx, progress=False)


def test_sequence_input_is_named(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model([helper.make_node("SequenceAt", ["s", "i"], ["y"])],
                   [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("i", TensorProto.INT64, [])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = _save(model, tmp_path / "seq.onnx")
    assert _build(path, tmp_path / "seq.engine") == 1
    err = capsys.readouterr().err
    _assert_one_message(err)
    assert "input 's' is a sequence" in err
    with pytest.raises(ModelError, match="input 's' is a sequence"):
        build_engine(path, backend=rtx, progress=False)
