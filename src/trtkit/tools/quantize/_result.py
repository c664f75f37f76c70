"""The result of :func:`trtkit.tools.quantize.quantize`: the Q/DQ model and what was quantized."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trtkit.builder.model import OnnxModel
from trtkit.text import safe
from trtkit.tools.compare import CompareReport
from trtkit.tools.quantize._types import QuantPrecision

if TYPE_CHECKING:
    import onnx

__all__ = ["COMPUTE_OPS", "QuantizeResult", "analyze_qdq"]

COMPUTE_OPS: Final = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
"""The ops whose inputs a quantizer puts Q/DQ pairs on to run them in INT8/FP8 (weights and activations)."""
_QDQ: Final = frozenset({"QuantizeLinear", "DequantizeLinear"})
_SHOWN: Final = 10


def analyze_qdq(proto: onnx.ModelProto) -> tuple[dict[str, int], tuple[str, ...], tuple[str, ...]]:
    """What a Q/DQ model quantizes: op type -> count and the names of the quantized nodes, and the compute nodes
    left in float.

    A Conv/ConvTranspose/MatMul/Gemm is quantized when its data and weight inputs come from DequantizeLinear;
    another node when its first input comes from DequantizeLinear and an output feeds QuantizeLinear (a Q/DQ
    node unit, as ONNX Runtime and TensorRT call it).
    """
    made_by_dq = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    into_q = {n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input}
    counts: Counter[str] = Counter()
    quantized: list[str] = []
    floats: list[str] = []
    for node in proto.graph.node:
        if node.op_type in _QDQ or not node.input:
            continue
        data_q = node.input[0] in made_by_dq
        if node.op_type in COMPUTE_OPS:
            if data_q and len(node.input) > 1 and node.input[1] in made_by_dq:
                counts[node.op_type] += 1
                quantized.append(node.name)
            else:
                floats.append(node.name)
        elif data_q and any(o in into_q for o in node.output):
            counts[node.op_type] += 1
            quantized.append(node.name)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), tuple(quantized), tuple(floats)


def _accuracy_line(report: CompareReport) -> str:
    cos = [o.cosine for o in report.outputs if o.cosine_checked and o.problem is None]
    worst = f"cosine {min(cos):.6f}" if cos else "cosine -"
    err = max((o.max_abs for o in report.outputs if o.problem is None), default=float("nan"))
    mean = max((o.mean_abs for o in report.outputs if o.problem is None), default=float("nan"))
    detail = (f"{worst} (worst output), max abs error {err:.3g}, mean abs error {mean:.3g}; tolerance "
              f"{report.precision}: {report.tolerance.describe()}; {report.extra.get('feeds_checked', 1)} feed(s) "
              f"from {report.extra.get('data_source', 'the calibration data')}")
    if report.passed:
        return f"accuracy: PASS, {detail}"
    if report.status == "not_checked":
        return f"accuracy: NOT CHECKED (the reference outputs are all near zero), {detail}"
    failures = "; ".join(f"{safe(o.name)}: {', '.join(o.failures)}" for o in report.outputs if o.failures)
    return f"FAILED accuracy: the Q/DQ model differs from FP32 beyond tolerance ({failures}); {detail}"


@dataclass(frozen=True)
class QuantizeResult:
    """A Q/DQ model and how it was made.

    Attributes:
        model: the Q/DQ model.
        precision: ``"int8"`` or ``"fp8"``.
        quantizer: ``"onnxruntime"`` or ``"modelopt"``.
        quantizer_version: the quantizer's package version.
        method: the calibration method used (``minmax``, ``entropy``, ``percentile``).
        data_digest: :attr:`CalibrationSet.digest` of the calibration data.
        quantized_ops: op type -> number of nodes that read dequantized (INT8/FP8) data.
        float_nodes: compute nodes (Conv, ConvTranspose, MatMul, Gemm) left in float.
        accuracy: FP32 against the Q/DQ model on ONNX Runtime (None only when the check was disabled).
        quantized_nodes: the names of the nodes counted in ``quantized_ops``.
        notes: what was done to the model before quantizing and why nodes stayed in float.
    """

    model: OnnxModel
    precision: QuantPrecision
    quantizer: str
    quantizer_version: str
    method: str
    data_digest: str
    quantized_ops: Mapping[str, int]
    float_nodes: tuple[str, ...]
    accuracy: CompareReport | None
    quantized_nodes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def accuracy_failed(self) -> bool:
        """True when the accuracy check ran and the Q/DQ model failed its tolerance."""
        return self.accuracy is not None and self.accuracy.status == "mismatch"

    def summary_lines(self) -> list[str]:
        """What ``trtkit quantize`` prints: counts by op, the nodes left in float, the accuracy line."""
        total = sum(self.quantized_ops.values())
        ops = ", ".join(f"{op} {n}" for op, n in self.quantized_ops.items()) or "nothing"
        lines = [f"quantized to {self.precision} with {self.quantizer} {self.quantizer_version} "
                 f"({self.method} calibration): {total} node(s): {ops}"]
        if self.float_nodes:
            shown = ", ".join(safe(n) for n in self.float_nodes[:_SHOWN])
            more = f" and {len(self.float_nodes) - _SHOWN} more" if len(self.float_nodes) > _SHOWN else ""
            lines.append(f"left in float: {len(self.float_nodes)} compute node(s): {shown}{more}")
        else:
            lines.append("left in float: no Conv/ConvTranspose/MatMul/Gemm node")
        lines += [f"note: {safe(n)}" for n in self.notes]
        if self.accuracy is None:
            lines.append("accuracy: not checked (check disabled)")
        else:
            lines.append(_accuracy_line(self.accuracy))
        return lines

    def manifest_record(self) -> dict[str, object]:
        """A JSON-able record for the engine manifest: quantizer, version, precision, method, data_digest,
        quantized_ops, quantized_nodes, float_nodes, accuracy (status, worst cosine, tolerance; None when not
        checked)."""
        accuracy: dict[str, object] | None = None
        if self.accuracy is not None:
            cos = [o.cosine for o in self.accuracy.outputs if o.cosine_checked and o.problem is None]
            accuracy = {"status": self.accuracy.status, "min_cosine": min(cos) if cos else None,
                        "max_abs": max((o.max_abs for o in self.accuracy.outputs if o.problem is None), default=None),
                        "tolerance": self.accuracy.tolerance.to_dict(), "precision": self.accuracy.precision}
        return {
            "quantizer": self.quantizer, "version": self.quantizer_version, "precision": self.precision,
            "method": self.method, "data_digest": self.data_digest, "quantized_ops": dict(self.quantized_ops),
            "quantized_nodes": list(self.quantized_nodes), "float_nodes": list(self.float_nodes),
            "notes": list(self.notes), "accuracy": accuracy,
        }

    def log_accuracy(self, logger: logging.Logger) -> None:
        """A warning on ``logger`` when the accuracy check failed."""
        if self.accuracy_failed:
            logger.warning("%s", self.summary_lines()[-1])
