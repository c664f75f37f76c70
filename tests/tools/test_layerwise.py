"""trtkit.tools.layerwise: marking tensors, ONNX-vs-ONNX layer-wise comparison on the CPU, the engine side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.builder.model import load_onnx
from trtkit.errors import ConfigError, InputError
from trtkit.runtime.compat import run_blocker
from trtkit.tools.inputs import generate_inputs
from trtkit.tools.layerwise import FUSION_NOTE, compare_layerwise, debug_build, mark_outputs
from trtkit.tools.metrics import DEFAULT_TOLERANCES, Tolerance

pytest.importorskip("onnxruntime", reason="onnxruntime is the accuracy reference (pip install onnxruntime)")

DATA = Path(__file__).parent.parent / "data"
PPOCR = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
VAD = DATA / "silero_vad_16k_sequence.onnx"
VAD_IF = DATA / "silero_vad_16k_op15.onnx"


def ppocr_feeds() -> dict[str, np.ndarray]:
    return generate_inputs(load_onnx(PPOCR), shapes={"x": (1, 3, 48, 192)}, seed=0)


def with_initializers(path: Path) -> onnx.ModelProto:
    """The model with its Constant nodes' tensors moved into initializers (the PaddleOCR export keeps its
    weights in Constant nodes)."""
    proto = onnx.load(str(path))
    keep = []
    for node in proto.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            proto.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return proto


def perturbed(proto: onnx.ModelProto, initializer: str, delta: float) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for t in copy.graph.initializer:
        if t.name == initializer:
            value = numpy_helper.to_array(t).copy()
            value.flat[0] += delta
            t.CopyFrom(numpy_helper.from_array(value, t.name))
            return copy
    raise AssertionError(initializer)


def single_use_initializers(proto: onnx.ModelProto) -> list[tuple[str, str]]:
    """``(initializer, first output of its one consumer)`` in node order, for float initializers read once."""
    floats = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for x in node.input:
            if x in floats:
                uses.setdefault(x, []).append(node)
    return [(name, nodes[0].output[0]) for name, nodes in uses.items() if len(nodes) == 1]


def vad_feeds() -> dict[str, np.ndarray]:
    return generate_inputs(load_onnx(VAD), shapes={"input": (64, 576)}, seed=0)


CASES = [(PPOCR, ppocr_feeds, i) for i in (0, 40, 100, -1)] + [(VAD, vad_feeds, i) for i in (0, 4, -1)]


@pytest.mark.parametrize(("path", "feeds", "index"), CASES, ids=[f"{p.stem[:6]}-{i}" for p, _, i in CASES])
def test_perturbed_initializer_finds_exactly_the_first_affected_tensor(path: Path, feeds: Any, index: int) -> None:
    reference = with_initializers(path)
    initializer, consumer_output = single_use_initializers(reference)[index]
    report = compare_layerwise(reference, perturbed(reference, initializer, 0.5), feeds())
    assert report.first_failure is not None
    assert report.first_failure.name == consumer_output
    names = [t.name for t in report.tensors]
    at = names.index(consumer_output)
    assert all(t.max_abs == 0.0 and t.passed for t in report.tensors[:at])
    assert f">> {at:>4}  {consumer_output}" in report.format()
    assert report.first_failure.tolerance == DEFAULT_TOLERANCES["fp32"]


def test_identical_models_pass_with_every_tensor_compared() -> None:
    report = compare_layerwise(PPOCR, PPOCR, ppocr_feeds())
    assert report.status == "pass" and report.first_failure is None
    proto = onnx.load(str(PPOCR))
    computed = [o for n in proto.graph.node if n.op_type != "Constant" for o in n.output if o]
    assert [t.name for t in report.tensors] == computed  # the file's order is topological here
    assert all(t.max_abs == 0.0 for t in report.tensors)
    assert report.skipped == ()
    assert "all 258 tensors within tolerance" in report.format()


def test_fp16_conversion_table_and_tolerances() -> None:
    from trtkit.builder.conversion import convert_model

    conversion = convert_model(VAD, "fp16", converter="onnxconverter-common")
    feeds = generate_inputs(load_onnx(VAD), shapes={"input": (64, 576)}, seed=0)
    report = compare_layerwise(VAD, conversion.model, feeds)
    assert len(report.tensors) > 30
    ops = {t.op for t in report.tensors}
    assert {"Conv", "LSTM", "Sigmoid"} <= ops
    by_name = {t.name: t for t in report.tensors}
    assert by_name["/encoder.0/Conv_output_0"].dtype == "float16"
    # a float32 graph output fed by FP16 layers gets FP16's tolerance, not FP32's
    assert by_name["speech_probs"].dtype == "float32"
    assert by_name["speech_probs"].tolerance == DEFAULT_TOLERANCES["fp16"]
    assert 0.999 < by_name["speech_probs"].cosine <= 1.0
    reasons = dict(report.skip_reasons)
    casts = [n for n, why in reasons.items() if why == "on the candidate side only"]
    assert casts and all("cast" in n.lower() for n in casts)
    text = report.format()
    assert "max abs" in text and "cosine" in text and "candidate side only" in text
    json.dumps(report.to_dict())


def test_selected_tensors_in_topological_order() -> None:
    proto = onnx.load(str(PPOCR))
    outs = [n.output[0] for n in proto.graph.node if n.op_type == "Conv"][:3]
    report = compare_layerwise(PPOCR, PPOCR, ppocr_feeds(), tensors=[outs[2], outs[0], outs[1]])
    assert [t.name for t in report.tensors] == outs
    assert report.skipped == ()  # the graph outputs the candidate computes anyway are not "candidate only"
    assert [t.op for t in report.tensors[:3]] == ["Conv"] * 3


def test_one_tolerance_for_every_tensor() -> None:
    strict = Tolerance(rtol=0.0, atol=0.0)
    reference = with_initializers(PPOCR)
    proto = perturbed(reference, single_use_initializers(reference)[5][0], 1e-3)
    report = compare_layerwise(reference, proto, ppocr_feeds(), tolerance=strict)
    assert report.first_failure is not None and report.first_failure.tolerance == strict
    loose = compare_layerwise(reference, proto, ppocr_feeds(), tolerance=Tolerance(rtol=None, atol=None))
    assert loose.first_failure is None


def test_subgraph_tensors_are_skipped_and_said_so() -> None:
    model = load_onnx(VAD_IF)
    marked = mark_outputs(model)
    reasons = set(dict(marked.skip_reasons).values())
    assert reasons == {"inside a subgraph (If/Loop/Scan body): not compared"}
    assert len(marked.marked) < len(marked.order) + 1
    assert all(name not in dict(marked.skip_reasons) for name in marked.marked)


def test_marked_outputs_carry_types() -> None:
    marked = mark_outputs(PPOCR)
    types = {o.name: o.type.tensor_type.elem_type for o in marked.model.proto.graph.output}
    assert set(marked.marked) <= set(types)
    assert types["conv2d_53.tmp_0"] == onnx.TensorProto.FLOAT
    assert load_onnx(PPOCR).proto.graph.output[0].name == marked.model.proto.graph.output[0].name


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="no tensor named 'nope'"):
        compare_layerwise(PPOCR, PPOCR, ppocr_feeds(), tensors=["nope"])
    with pytest.raises(ConfigError, match="list of tensor names"):
        compare_layerwise(PPOCR, PPOCR, ppocr_feeds(), tensors="conv2d_53.tmp_0")
    with pytest.raises(ConfigError, match="Tolerance"):
        compare_layerwise(PPOCR, PPOCR, ppocr_feeds(), tolerance=0.1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="do not match"):
        compare_layerwise(PPOCR, PPOCR, {"y": np.zeros((1, 3, 8, 8), np.float32)})


def test_engine_side_ends_with_the_run_blocker(rtx: Backend, tmp_path: Path) -> None:
    blocker = run_blocker(rtx)
    if blocker is None:
        pytest.skip("this machine can run engines")
    model = conv_relu((1, 3, 8, 8))
    feeds = generate_inputs(load_onnx(model), seed=0)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not a plan")  # never read: no engine runs here, so nothing is built or loaded
    for candidate in (None, engine):
        report = compare_layerwise(model, candidate if candidate is None else str(engine), feeds, backend=rtx)
        assert report.status == "not_run" and report.reason == blocker
        assert report.format().splitlines()[0] == f"layer-wise comparison not run: {blocker}"
        assert FUSION_NOTE in report.notes


def test_debug_build_has_the_marked_outputs_and_skips_the_cache(rtx: Backend, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRTKIT_CACHE_DIR", str(cache))
    model = conv_relu((1, 3, 8, 8))
    marked = mark_outputs(model)
    built = debug_build(marked, generate_inputs(load_onnx(model), seed=0), backend=rtx)
    names = {t.name for t in built.manifest.outputs}
    assert set(marked.marked) <= names and len(names) > len(load_onnx(model).outputs())
    assert not cache.exists() or not any(cache.iterdir())
