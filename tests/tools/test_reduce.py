"""`trtkit debug reduce`: bisecting real models from tests/data down to the nodes that fail (TensorRT-RTX, CPU)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import helper

from trtkit.backend import Backend
from trtkit.builder.config import BuildConfig
from trtkit.cli import main
from trtkit.errors import ConfigError, UnsupportedFeatureError
from trtkit.tools.reduce import reduce_model

DATA = Path(__file__).resolve().parents[1] / "data"
PPOCR = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
SILERO = DATA / "silero_vad_16k_op15.onnx"


def with_unsupported_op(path: Path) -> tuple[onnx.ModelProto, int]:
    """``path``'s model with one custom-domain op (no TensorRT importer) inserted after its middle node."""
    m = onnx.load(str(path))
    g = m.graph
    mid = len(g.node) // 2
    t = g.node[mid].output[0]
    new = t + "__mystery"
    for n in list(g.node)[mid + 1:]:
        for k, x in enumerate(n.input):
            if x == t:
                n.input[k] = new
    for o in g.output:
        if o.name == t:
            o.name = new
    g.node.insert(mid + 1, helper.make_node("MysteryOp", [t], [new], name="inserted_mystery", domain="trtkit.test"))
    m.opset_import.append(helper.make_opsetid("trtkit.test", 1))
    return m, mid + 1


@pytest.mark.parametrize("path", [PPOCR, SILERO], ids=["ppocr", "silero"])
def test_parse_failure_reduced_to_the_unsupported_op(rtx: Backend, path: Path) -> None:
    model, _ = with_unsupported_op(path)
    report = reduce_model(model, fails_when="parse", backend=rtx)
    assert report.nodes_before == len(model.graph.node)
    assert report.nodes_after <= 3
    assert "MysteryOp" in report.ops
    assert "MysteryOp" in report.failure
    (inp,) = report.proto.graph.input  # the cut-off input is typed from shape inference
    assert inp.type.tensor_type.elem_type != onnx.TensorProto.UNDEFINED


def test_build_failure_reduced(rtx: Backend) -> None:
    # TensorRT-RTX cannot build FP32 GEMMs for compute capability 7.5 (seen): the classifier's MatMul fails.
    report = reduce_model(PPOCR, fails_when="build", shapes="x:1x3x48x192",
                          config=BuildConfig(compute_capabilities=("7.5",)), backend=rtx)
    assert report.nodes_after < report.nodes_before // 10
    assert "MatMul" in report.ops
    assert "Conv" not in report.ops


def test_model_that_does_not_fail_is_refused(rtx: Backend) -> None:
    with pytest.raises(ConfigError, match="does not fail to parse"):
        reduce_model(SILERO, fails_when="parse", backend=rtx)
    with pytest.raises(ConfigError, match="fails_when"):
        reduce_model(SILERO, fails_when="run", backend=rtx)  # type: ignore[arg-type]


def test_compare_needs_an_engine_to_run(rtx: Backend) -> None:
    with pytest.raises(UnsupportedFeatureError, match="runs an engine"):
        reduce_model(PPOCR, fails_when="compare", backend=rtx)


def test_cli_writes_the_reduced_model_and_refuses_the_input(rtx: Backend, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = with_unsupported_op(PPOCR)
    src = tmp_path / "broken.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "reduced.onnx"
    assert main(["debug", "reduce", str(src), "-o", str(out), "--fails-when", "parse", "--backend", "rtx"]) == 0
    text = capsys.readouterr().out
    assert f"from {len(model.graph.node)} to 1 node(s)" in text and "MysteryOp x1" in text
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["MysteryOp"]
    assert main(["debug", "reduce", str(src), "-o", str(src), "--fails-when", "parse", "--backend", "rtx"]) == 1
    assert "destroy the input" in capsys.readouterr().err
