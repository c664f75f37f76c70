"""INT8 Q/DQ models through ONNX Runtime's static quantization, placed where TensorRT fuses them.

The form TensorRT takes (ONNX Runtime documents it for its TensorRT execution provider): QDQ format, symmetric
INT8 activations and weights, per-channel weights, no int32 bias quantization (TensorRT's parser rejects an
int32 DequantizeLinear). The placement (measured with TensorRT-RTX, figures in ``docs/quantization.md``):

- Q/DQ on the inputs of Conv, ConvTranspose, MatMul and Gemm (NVIDIA: quantize the inputs of weighted ops);
  ONNX Runtime also quantizes their outputs, which lets TensorRT fuse the following activation into the INT8
  kernel (removing those output pairs made the engine larger);
- grouped (depthwise) convolutions stay in float: TensorRT-RTX lowers an INT8 depthwise conv into generated
  kernels that carry int8 constants the size of the activation, so quantizing them makes the engine larger;
- weights held in ``Constant`` nodes become initializers first (ONNX Runtime would otherwise quantize them
  per tensor as activations, and the Q/DQ model would keep float weights);
- opsets below 13 are upgraded to 13 first (per-channel DequantizeLinear needs its ``axis``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trtkit.builder.model import OnnxModel, save_onnx
from trtkit.builder.prepare import PrepareOptions, prepare
from trtkit.deps import require
from trtkit.errors import ModelError
from trtkit.profiles import ProfilesLike
from trtkit.tools.quantize._calibration import CalibrationSet, iter_feeds

if TYPE_CHECKING:
    import onnx

__all__ = ["INSTALL_ONNXRUNTIME", "ORT_METHODS", "QUANTIZED_OPS", "onnxruntime_version", "quantize_onnxruntime"]

INSTALL_ONNXRUNTIME: Final = "pip install onnxruntime"
QUANTIZED_OPS: Final = ("Conv", "ConvTranspose", "MatMul", "Gemm")
"""The ops whose inputs get Q/DQ pairs: the weighted ops TensorRT runs in INT8."""
ORT_METHODS: Final = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
ENTROPY_BINS: Final = {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True}
"""Entropy calibration's histogram: 2048 bins searched for the threshold that keeps 128 quantized bins closest
(KL divergence). ``quantize_static`` forwards no bin counts and its entropy default (128 and 128) leaves one
candidate threshold, the full range: the same scales as minmax."""
MIN_QDQ_OPSET: Final = 13
"""Per-channel DequantizeLinear (its ``axis`` attribute) needs opset 13."""
GROUPED_CONV_REASON: Final = ("TensorRT-RTX gives an INT8 depthwise conv int8 constants the size of its "
                              "activation, which makes the engine larger than in float")


def onnxruntime_version() -> str:
    """The installed ONNX Runtime's version ("" when none is installed), read without importing it."""
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def _constants_to_initializers(proto: onnx.ModelProto) -> int:
    """Top-level ``Constant`` nodes holding a tensor become initializers; returns how many."""
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    keep, moved = [], 0
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(attrs) == 1 \
                and attrs[0].name == "value" and node.output[0] not in outputs:
            tensor = graph.initializer.add()
            tensor.CopyFrom(attrs[0].t)
            tensor.name = node.output[0]
            moved += 1
        else:
            keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def _opset(proto: onnx.ModelProto) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def grouped_convs(proto: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes with ``group`` > 1 (depthwise and grouped convolutions)."""
    return [n.name for n in proto.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def _name_nodes(proto: onnx.ModelProto) -> None:
    """Give unnamed nodes a name: exclusions and the report refer to nodes by name."""
    taken = {n.name for n in proto.graph.node if n.name}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def prepared_for_quantization(model: OnnxModel) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with its weights inline, opset >= 13, Constant weights as initializers and named nodes; and one
    line per change."""
    steps: list[str] = []
    before = _opset(model.proto)
    if 0 < before < MIN_QDQ_OPSET:
        options = PrepareOptions(upgrade_opset=MIN_QDQ_OPSET, specialize=False, fold=False, rewrites=False)
        proto = prepare(model, options).model.proto_with_weights()
        steps.append(f"upgraded opset {before} -> {MIN_QDQ_OPSET} (per-channel DequantizeLinear needs axis)")
    else:
        proto = model.proto_with_weights()
    moved = _constants_to_initializers(proto)
    if moved:
        steps.append(f"moved {moved} Constant node(s) into initializers (so weights quantize per channel)")
    _name_nodes(proto)
    return proto, steps


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over trtkit's feeds."""

    def __init__(self, feeds: Iterator[dict[str, Any]]) -> None:
        self._feeds = feeds

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._feeds

    def __len__(self) -> int:  # pragma: no cover - asked by some ONNX Runtime versions only
        return 0


def _entropy_ranges(q: Any, src: Path, reader: _Reader, op_types: Sequence[str], tmp: str) -> str | None:
    """Entropy ranges computed with :data:`ENTROPY_BINS`, saved where ``quantize_static(calibration_cache_path=)``
    reads them; None where this ONNX Runtime has no such parameter (its own entropy then runs)."""
    if "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        return None
    calibrate = require("onnxruntime.quantization.calibrate", purpose="entropy calibration",
                        install=INSTALL_ONNXRUNTIME)
    calibrator = calibrate.create_calibrator(src, list(op_types), augmented_model_path=os.path.join(tmp, "aug.onnx"),
                                             calibrate_method=q.CalibrationMethod.Entropy,
                                             extra_options=dict(ENTROPY_BINS))
    calibrator.collect_data(reader)
    cache = os.path.join(tmp, "entropy-ranges.json")
    calibrate.save_tensors_data(calibrator.compute_data(), cache)
    return cache


def quantize_onnxruntime(proto: onnx.ModelProto, data: CalibrationSet, *, method: str,
                         op_types: Sequence[str], exclude_nodes: Sequence[str],
                         profiles: ProfilesLike | None = None) -> onnx.ModelProto:
    """Static INT8 QDQ quantization of ``proto`` (already :func:`prepared_for_quantization`) with ONNX Runtime.

    Raises:
        DependencyError: onnxruntime is not installed.
        ModelError: ONNX Runtime failed on this model.
    """
    q = require("onnxruntime.quantization", purpose="quantizing with ONNX Runtime", install=INSTALL_ONNXRUNTIME)
    onnx_mod = require("onnx", purpose="quantizing", install="pip install onnx")
    extra: Mapping[str, object] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT's parser rejects int32 DequantizeLinear
    }
    reader = _Reader(iter_feeds(data, proto, profiles))
    ort_log = logging.getLogger()  # ONNX Runtime's quantizer warns on the root logger ("consider pre-processing")
    with tempfile.TemporaryDirectory(prefix="trtkit-quantize-") as tmp:
        src = save_onnx(proto, os.path.join(tmp, "model.onnx"))
        out = os.path.join(tmp, "model.int8.onnx")
        level = ort_log.level
        ort_log.setLevel(max(level, logging.ERROR))
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its histogram calibrators print progress
                cache = _entropy_ranges(q, src, reader, op_types, tmp) if method == "entropy" else None
                q.quantize_static(
                    str(src), out, reader, quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                    per_channel=True, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=list(exclude_nodes) or None,
                    calibrate_method=getattr(q.CalibrationMethod, ORT_METHODS[method]), extra_options=dict(extra),
                    **({"calibration_cache_path": cache} if cache else {}),
                )
        except Exception as exc:  # ONNX Runtime raises bare exceptions naming the node
            line = " ".join(str(exc).split())[:400]
            raise ModelError(f"ONNX Runtime could not quantize the model: {type(exc).__name__}: {line}") from exc
        finally:
            ort_log.setLevel(level)
        result: onnx.ModelProto = onnx_mod.load(out)
    return result
