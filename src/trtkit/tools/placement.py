"""Where quantization took hold in an engine: which layers compute in INT8/FP8 and which TensorRT kept in float.

The rule follows NVIDIA's TensorRT Engine Explorer (TREx, ``tools/experimental/trt-engine-explorer`` in
NVIDIA/TensorRT): a layer's precision is its first input's (``trex/layer.py``), and a layer with INT8 on one
side only is an unfused quantize or dequantize (``trex/lint.py``, QDQLinter). The layers come from the engine
inspector (:func:`trtkit.tools.layers.engine_layers`, needs the engine loaded on a GPU) or from TensorRT's
verbose build log (:func:`layers_from_build_log`), which TensorRT-RTX prints on a machine without a GPU too.
:func:`qdq_fed_nodes` says what is known from the Q/DQ model alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from trtkit.tools.layers import EngineLayers, LayerInfo, LayerTensor, dtype_from_format

if TYPE_CHECKING:
    import onnx

__all__ = ["Placement", "PlacementKind", "layers_from_build_log", "placement", "placement_kind", "qdq_fed_nodes"]


PlacementKind = Literal["quantized", "float", "conversion", "other"]
"""``quantized``: computes in INT8/FP8; ``float``: kept in float; ``conversion``: quantizes, dequantizes or
reformats between a quantized and a float type (or only changes the layout); ``other``: integer or boolean
(shape) arithmetic, or unknown types."""
_QUANTIZED: Final = {"int8": "int8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "int4": "int4",
                     "float4_e2m1": "fp4"}
_FLOATS: Final = {"float32", "float16", "bfloat16"}


def _weight_dtypes(layer: LayerInfo) -> list[str]:
    """Element types of a layer's weights: TensorRT 10's ``"Weights": {"Type": "Int8"}`` or the ``Constants``
    records TensorRT-RTX prints."""
    found: list[str | None] = []
    for key in ("Weights", "Bias"):
        w = layer.details.get(key)
        if isinstance(w, Mapping) and w.get("Type") is not None:
            found.append(dtype_from_format(str(w["Type"])))
    constants = layer.details.get("Constants")
    if isinstance(constants, list):
        found += [LayerTensor.from_json(c).dtype for c in constants if isinstance(c, Mapping)]
    return [d for d in found if d is not None]


def placement_kind(layer: LayerInfo) -> PlacementKind:
    """How ``layer`` computes, from its tensors' types (see the module docstring for the rule's source).

    Quantized: its first input is INT8/FP8 and so is its first output or its weights (a convolution with INT8
    input and weights that writes float is still an INT8 convolution). Conversion: a ``Reformat`` layer, or one
    side quantized and the other not (an unfused quantize or dequantize). Float: a float first input.
    """
    first_in = layer.inputs[0].dtype if layer.inputs else None
    first_out = layer.outputs[0].dtype if layer.outputs else None
    q_in, q_out = first_in in _QUANTIZED, first_out in _QUANTIZED
    if (layer.type or "").lower() == "reformat":
        return "conversion"
    if q_in and (q_out or any(d in _QUANTIZED for d in _weight_dtypes(layer))):
        return "quantized"
    if q_in != q_out and first_in is not None and first_out is not None:
        return "conversion"
    if first_in in _FLOATS:
        return "float"
    return "other"


@dataclass(frozen=True)
class Placement:
    """The layers of an engine by :func:`placement_kind`: where quantization took hold."""

    quantized: tuple[LayerInfo, ...]
    float: tuple[LayerInfo, ...]
    conversions: tuple[LayerInfo, ...]
    other: tuple[LayerInfo, ...]
    source: str
    """Where the layers came from: ``"engine inspector"`` or ``"build log"``."""

    @property
    def precisions(self) -> list[str]:
        """The quantized types the quantized layers compute in (``["int8"]``)."""
        found = [_QUANTIZED.get(t.dtype or "") for layer in self.quantized for t in layer.inputs[:1]]
        return list(dict.fromkeys(p for p in found if p is not None))

    def summary(self, limit: int = 5) -> str:
        """One line: how many of the computing layers run quantized (by type), which stayed in float."""
        label = "/".join(p.upper() for p in self.precisions) or "INT8"
        computing = len(self.quantized) + len(self.float)
        by_type = ", ".join(f"{t} x{n}" for t, n in _count(layer.type or "?" for layer in self.quantized))
        line = f"{label} took hold in {len(self.quantized)} of {computing} computing layers"
        line += f" ({by_type})" if by_type else ""
        if self.float:
            names = [_short(layer) for layer in self.float[:limit]]
            more = f" and {len(self.float) - limit} more" if len(self.float) > limit else ""
            line += f"; kept in float: {', '.join(names)}{more}"
        if self.conversions:
            line += f"; {len(self.conversions)} conversion layers (quantize, dequantize, reformat)"
        return line + f" [from the {self.source}]"

    def to_dict(self) -> dict[str, object]:
        """JSON-able: layer names by kind, the precisions, the source and :meth:`summary`."""
        return {"source": self.source, "precisions": self.precisions,
                "quantized": [_label(x) for x in self.quantized], "float": [_label(x) for x in self.float],
                "conversions": [_label(x) for x in self.conversions], "other": [_label(x) for x in self.other],
                "summary": self.summary()}


def _count(items: Iterable[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _onnx_nodes(layer: LayerInfo) -> list[str]:
    """The ONNX nodes a layer came from, when TensorRT says (TensorRT-RTX's ``Metadata``)."""
    return re.findall(r"\[ONNX Layer: ([^\]]*)\]", str(layer.details.get("Metadata") or ""))


def _label(layer: LayerInfo) -> str:
    """A layer's name, with the ONNX nodes it came from when TensorRT says."""
    nodes = _onnx_nodes(layer)
    return f"{layer.name} ({'+'.join(nodes)})" if nodes else layer.name


def _short(layer: LayerInfo) -> str:
    """For the summary line: the ONNX nodes a layer computes (Q/DQ nodes left out), else its name."""
    nodes = [n for n in _onnx_nodes(layer) if not n.endswith(("QuantizeLinear", "DequantizeLinear"))]
    if not nodes:
        return layer.name
    return "+".join(nodes[:2]) + ("+..." if len(nodes) > 2 else "")


def placement(layers: EngineLayers | Sequence[LayerInfo], source: str = "engine inspector") -> Placement:
    """Sort an engine's layers by :func:`placement_kind`. Needs detailed layer information (types)."""
    items = tuple(layers)
    kinds = [placement_kind(layer) for layer in items]

    def of(kind: PlacementKind) -> tuple[LayerInfo, ...]:
        return tuple(layer for layer, k in zip(items, kinds, strict=True) if k == kind)

    return Placement(of("quantized"), of("float"), of("conversion"), of("other"), source)


# TensorRT-RTX, verbose log, ProfilingVerbosity.DETAILED (seen with TensorRT-RTX 1.7 on a machine without GPU):
#   Layers:
#   Name: conv0_myl0_1, LayerType: correlation, Inputs: [ { Name: t, Dimensions: [1,4,32,32], ..., Datatype: Int8,
#   Format: (NHWC) Channel major format }], Constants: [ {...} ], Outputs: [ {...} ], TacticName: ..., StreamId: 0,
#   Metadata: [ONNX Layer: conv0][ONNX Layer: xd0]
# TensorRT 8-10, verbose log (trtexec --verbose; quoted in many public logs):
#   Engine Layer Information:
#   Layer(CaskConvolution): Conv_0, Tactic: 0x02d9f5211e4d2d82, in[Int8(1,3,512,768)] -> out[Int8(1,32,256,384)]
#   (newer: "in (Int8[1,3,512,768]) -> out (Int8[1,32,256,384])")
_BRACES = r"\s*(?:\{[^{}]*\}\s*,?\s*)*"  # a list of { ... } records
_RTX_LAYER = re.compile(rf"^Name: (?P<name>.*?), LayerType: (?P<type>[^,]*), Inputs: \[(?P<inputs>{_BRACES})\], "
                        rf"(?:Constants: \[(?P<constants>{_BRACES})\], )?Outputs: \[(?P<outputs>{_BRACES})\]"
                        r"(?P<rest>.*)$")
_RTX_TENSOR = re.compile(r"\{\s*Name: (?P<name>.*?), Dimensions: \[(?P<dims>[^\]]*)\].*?Datatype: (?P<dtype>\w+)"
                         r"(?:, Format: (?P<format>[^}]*?))?\s*\}")
_TRT_LAYER = re.compile(r"^Layer\((?P<type>[^)]*)\): (?P<rest>.*)$")
_TRT_TENSOR = re.compile(r"(?P<name>[^,\[]*?)\s*"
                         r"(?:\[(?P<dt1>\w+)\((?P<d1>[^)]*)\)\]|\((?P<dt2>\w+)\[(?P<d2>[^\]]*)\]\))")


def _dims(text: str) -> list[int]:
    return [int(d) for d in re.findall(r"-?\d+", text.split(":")[0] if ":" in text and "," not in text else text)]


def _rtx_tensors(text: str | None) -> list[dict[str, object]]:
    return [{"Name": m["name"].strip(), "Dimensions": _dims(m["dims"]), "DataType": m["dtype"],
             "Format": (m["format"] or "").strip() or None} for m in _RTX_TENSOR.finditer(text or "")]


def _trt_tensors(text: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for m in _TRT_TENSOR.finditer(text):
        dtype, dims = (m["dt1"], m["d1"]) if m["dt1"] else (m["dt2"], m["d2"])
        out.append({"Name": m["name"].strip(" ,"), "Dimensions": [int(d) for d in re.findall(r"-?\d+", dims)],
                    "DataType": dtype})
    return out


def _parse_log_line(line: str) -> dict[str, object] | None:
    rtx = _RTX_LAYER.match(line)
    if rtx:
        meta = re.search(r"Metadata: (.*)$", rtx["rest"])
        kernel = re.search(r"TacticName: ([^,]*)", rtx["rest"])
        return {"Name": rtx["name"], "LayerType": rtx["type"], "Inputs": _rtx_tensors(rtx["inputs"]),
                "Constants": _rtx_tensors(rtx["constants"]), "Outputs": _rtx_tensors(rtx["outputs"]),
                "TacticName": kernel[1].strip() if kernel else None, "Metadata": meta[1].strip() if meta else ""}
    m = _TRT_LAYER.match(line)
    if not m:
        return None
    rest = m["rest"]
    if ", Tactic: " in rest:
        name, after = rest.split(", Tactic: ", 1)
        tactic, _, io = after.partition(", ")
    else:
        name, _, io = rest.partition(", ")
        tactic = ""
    ins, _, outs = io.rpartition(" -> ")
    return {"Name": name, "LayerType": m["type"], "Inputs": _trt_tensors(ins), "Outputs": _trt_tensors(outs),
            "TacticValue": tactic or None}


def layers_from_build_log(messages: Sequence[str]) -> EngineLayers | None:
    """The engine's layers from TensorRT's verbose build log (the messages of a build captured at VERBOSE), or
    None when the log has none. TensorRT-RTX prints per-layer types only with
    ``ProfilingVerbosity.DETAILED`` (``Layers:``); otherwise, as TensorRT 8-10 do, ``Engine Layer
    Information:`` (TensorRT-RTX: one opaque Myelin layer)."""
    for header in ("Layers:", "Engine Layer Information:"):
        for message in messages:
            text = message.strip()
            if not text.startswith(header):
                continue
            records = []
            for line in text[len(header):].strip("\n").splitlines():
                if not line.strip():
                    break
                record = _parse_log_line(line.strip())
                if record is not None:
                    records.append(record)
            if records:
                return EngineLayers(tuple(LayerInfo.from_json(r) for r in records), "detailed", (), {})
    return None


_COMPUTE_OPS: Final = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def qdq_fed_nodes(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Compute nodes (Conv, ConvTranspose, MatMul, Gemm) of a Q/DQ model: those whose data and weight inputs
    both come from DequantizeLinear (TensorRT can run them quantized), and those left in float. What is known
    before TensorRT builds; the engine's real placement comes from :func:`placement`."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    fed: list[str] = []
    left: list[str] = []
    for node in model.graph.node:
        if node.op_type not in _COMPUTE_OPS:
            continue
        inputs = [i for i in node.input[:2] if i]
        label = node.name or (node.output[0] if node.output else node.op_type)
        both = len(inputs) == 2 and all(producers.get(i) == "DequantizeLinear" for i in inputs)
        (fed if both else left).append(label)
    return fed, left
