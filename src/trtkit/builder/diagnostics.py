"""Parsing ONNX into a TensorRT network, and turning TensorRT's failures into messages a user can act on.

TensorRT reports parser failures as a list of errors and build failures only through its log. The functions
here group unsupported ops by type and domain, name the ONNX node behind a failing layer, and add a hint.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

from trtkit.backend import Backend, OnnxParser
from trtkit.builder.config import BuildConfig
from trtkit.builder.model import OnnxModel, iter_graphs
from trtkit.dtypes import onnx_non_numeric
from trtkit.errors import ModelError, OnnxParseError, ParserIssue, ShapeError
from trtkit.gpu import device_count
from trtkit.profiles import Profile

__all__ = ["build_failure_message", "known_build_failure", "parse_into", "without_no_gpu_noise"]


_ONNX_TYPE_KINDS: Final = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional",
                           "sparse_tensor_type": "a sparse tensor"}


def _check_model_inputs(model: OnnxModel) -> None:
    """Reject graph inputs TensorRT cannot take, naming the input, before the parser reports them vaguely."""
    inits = {t.name for t in model.proto.graph.initializer}
    for index, v in enumerate(model.proto.graph.input):
        if v.name in inits:
            continue
        kind = v.type.WhichOneof("value")
        if kind != "tensor_type":
            what = _ONNX_TYPE_KINDS.get(str(kind), "not a tensor")
            raise ModelError(
                f"model input {v.name!r} is {what}; TensorRT takes only tensors as engine inputs. Export the "
                "model with tensor inputs (or run the part that consumes this input outside TensorRT)"
            )
        tt = v.type.tensor_type
        non_numeric = onnx_non_numeric(tt.elem_type)
        if non_numeric is not None:
            raise ModelError(
                f"model input {v.name!r} has element type {non_numeric}, which TensorRT "
                "does not support; do that preprocessing outside the model"
            )
        if not tt.HasField("shape"):
            raise ShapeError(
                f"model input {v.name!r} has no shape in the ONNX model, not even a rank, so TensorRT would "
                "build it as a scalar. Give it a shape in the model (re-export with input shapes, or set "
                f"graph.input[{index}] to onnx.helper.make_tensor_value_info({v.name!r}, elem_type, "
                "['N', 3, 'H', 'W'])), then build with shapes for its dynamic dims"
            )


def parse_into(backend: Backend, parser: OnnxParser, model: OnnxModel) -> None:
    """Parse ``model`` with ``parser``; raise ModelError, ShapeError or OnnxParseError listing every error."""
    _check_model_inputs(model)
    data = model.serialized()
    with backend.capture() as cap:
        ok = parser.parse(data, str(model.path)) if model.path is not None else parser.parse(data)
    if ok:
        return
    nodes = list(model.proto.graph.node)
    issues: list[ParserIssue] = []
    seen: set[tuple[int, str, str, str, str]] = set()
    unsupported: dict[tuple[str, str], list[ParserIssue]] = {}
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        index = int(err.node())
        node = nodes[index] if 0 <= index < len(nodes) else None
        name = err.node_name() or (node.name if node is not None else "")
        op = err.node_operator() or (node.op_type if node is not None else "")
        code = getattr(err.code(), "name", str(err.code())).rsplit(".", 1)[-1]
        desc = err.desc()
        # UNSUPPORTED_NODE also covers an op the parser imports but not in this form (MaxPool with dilations):
        # only an empty description, or one saying so, means there is no importer at all.
        no_importer = code == "UNSUPPORTED_NODE" and op and desc.strip() in ("", "false")
        if no_importer:
            desc = f"TensorRT's ONNX parser has no importer for {op}"
        if (index, name, op, desc, code) in seen:
            continue  # the parser reports some nodes twice
        seen.add((index, name, op, desc, code))
        issue = ParserIssue(index, name, op, desc, code)
        issues.append(issue)
        if op and (no_importer or "No importer registered" in desc or "Plugin not found" in desc):
            domain = (node.domain if node is not None and node.op_type == op else "") or "ai.onnx"
            unsupported.setdefault((op, domain), []).append(issue)
    where = f" {str(model.path)!r}" if model.path else ""
    if unsupported:
        message = (
            f"{backend.label} cannot build the ONNX model{where}: neither its ONNX parser nor a loaded plugin "
            f"implements {'this op' if len(unsupported) == 1 else 'these ops'}: "
            + "; ".join(_describe_unsupported(op, domain, found) for (op, domain), found in unsupported.items())
            + ". " + _unsupported_hint(unsupported)
        )
    else:
        first = issues[0] if issues else None
        message = f"{backend.label} could not parse the ONNX model{where}" + (f": {first}" if first else "")
    raise OnnxParseError(message, issues, tensorrt_log=cap.lines)


def _node_ref(issue: ParserIssue) -> str:
    return f"node {issue.node_index} {issue.node_name!r}" if issue.node_name else f"node {issue.node_index}"


def _describe_unsupported(op: str, domain: str, found: Sequence[ParserIssue]) -> str:
    what = op if domain == "ai.onnx" else f"{op} (domain {domain})"
    if len(found) == 1:
        return f"{what} at {_node_ref(found[0])}"
    return f"{what} at {len(found)} nodes, first {_node_ref(found[0])}"


# ONNX Runtime's dynamic quantization (onnxruntime.quantization.quantize_dynamic) writes these.
_ORT_DYNAMIC_QUANT_OPS: Final = frozenset(
    {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul",
     "MatMulIntegerToFloat", "QLinearConv", "QLinearMatMul", "QAttention"}
)


def _unsupported_hint(unsupported: Mapping[tuple[str, str], Sequence[ParserIssue]]) -> str:
    ops = {op for op, _ in unsupported}
    domains = {domain for _, domain in unsupported}
    hints = []
    if ops & _ORT_DYNAMIC_QUANT_OPS:
        hints.append(
            "The model was quantized for ONNX Runtime (integer ops such as ConvInteger/MatMulInteger); build "
            "the float model instead, or quantize it with QuantizeLinear/DequantizeLinear pairs (e.g. NVIDIA "
            "ModelOpt), which TensorRT supports"
        )
    if "ai.onnx.ml" in domains:
        hints.append("ai.onnx.ml ops (classical ML models such as scikit-learn's) have no TensorRT implementation")
    if any(d.startswith("com.microsoft") for d in domains):
        hints.append("com.microsoft ops are ONNX Runtime extensions: export the model without ORT optimizations")
    hints.append("Otherwise load a plugin library that implements the op (--plugins), or replace it in the model")
    return ". ".join(hints)


_SOURCE_REF = re.compile(r"\s*In \S+ at /[^\s)]+")
_LAYER = re.compile(r"\bI[A-Za-z]*Layer ([^\s:]+)")
_CONTROL_FLOW: Final = ("If", "Loop", "Scan")


_NO_GPU_NOISE = re.compile(r"CUDA driver version is insufficient|cudaErrorInsufficientDriver|cudaErrorNoDevice|"
                           r"no CUDA-capable device", re.IGNORECASE)


def without_no_gpu_noise(lines: Sequence[str]) -> list[str]:
    """``lines`` without the CUDA-driver complaints TensorRT-RTX logs on a machine with no GPU, where they are
    noise (it builds without one). Unchanged on a machine with a GPU, or when nothing else is left."""
    kept = [line for line in lines if not _NO_GPU_NOISE.search(line)]
    if len(kept) == len(lines) or not kept or device_count() > 0:
        return list(lines)
    return kept


def build_failure_message(backend: Backend, name: str, model: OnnxModel, errors: Sequence[str],
                          profiles: Sequence[Profile]) -> str:
    """The message for a failed ``build_serialized_network``: TensorRT's first error, its ONNX node, a hint."""
    head = f"{backend.label} failed to build an engine from {name}"
    errors = without_no_gpu_noise(errors)
    if not errors:
        return head + " (build_serialized_network returned None and TensorRT logged no error)"
    first = _SOURCE_REF.sub("", errors[0]).strip().removeprefix("IBuilder::buildSerializedNetwork: ")
    message = f"{head}: {first}"
    layer = _LAYER.search(first)
    nodes = {n.name: n for n in model.proto.graph.node if n.name}
    if layer and layer.group(1) in nodes:
        node = nodes[layer.group(1)]
        message += f"\nThe failing layer comes from ONNX node {node.name!r} ({node.op_type})."
    shapes = "; ".join(f"profile {i}: {p}" for i, p in enumerate(profiles) if len(p))
    if "Internal Error" in first:
        message += f"\nThis is an internal error of {backend.label}, not a problem with the options given."
        counts = Counter(node.op_type for g in iter_graphs(model.proto.graph) for node in g.node)
        flow = [f"{op} x{counts[op]}" for op in _CONTROL_FLOW if counts.get(op)]
        if flow:
            message += (
                f" The model has control flow ({', '.join(flow)}, counting nested graphs), which TensorRT "
                "handles least well: try an export without it, or fold the branches that depend only on shapes "
                "(e.g. polygraphy surgeon sanitize --fold-constants with fixed input shapes)."
            )
    elif shapes and re.search(r"shape|dimension|reshape|profile|broadcast", first, re.IGNORECASE):
        message += (
            f"\nThe shapes given ({shapes}) do not fit the model there: check them against the sizes the model "
            "was made for (dims that must be multiples of a stride, fixed sizes, inputs that must agree)."
        )
    return message


_CUDA_FAILURE = re.compile(r"cuda", re.IGNORECASE)
_NO_GPU: Final = "this machine has no usable NVIDIA GPU (no GPU, or no driver for it)"


def known_build_failure(backend: Backend, config: BuildConfig, errors: Sequence[str]) -> str | None:
    """A one-line message with the fix for a build failure whose cause is known from the options, or None.

    These failures otherwise surface as TensorRT's internal text (``MyelinCheckException``, a missing
    ``libnvinfer_lean.so.1``, ``cudaError 35``) that does not say which option caused them.
    """
    text = "\n".join(errors)
    if config.version_compatible and "libnvinfer_lean" in text:
        rtx = backend.name == "tensorrt_rtx"
        return (f"version_compatible (--versionCompatible) needs TensorRT's lean runtime library libnvinfer_lean, "
                f"which {backend.label} could not load"
                + (" (TensorRT-RTX does not ship one)" if rtx else "")
                + ". Build without --versionCompatible"
                + ("" if rtx else ", or install the lean runtime: pip install tensorrt-lean"))
    if not _CUDA_FAILURE.search(text) or device_count() > 0:
        return None
    if "current" in {c.strip().lower() for c in config.compute_capabilities or ()}:
        return (f"compute capability 'current' means the GPU of this machine, and {_NO_GPU}. Name the target "
                "GPUs instead, e.g. --computeCapabilities 8.6,8.9 (compute_capabilities=('8.6', '8.9'))")
    options = [flag for flag, on in (("refit (--refit)", config.refit),
                                     ("strip_weights (--stripWeights)", config.strip_weights)) if on]
    if options:
        return (f"{' and '.join(options)} need{'s' if len(options) == 1 else ''} a GPU to build with "
                f"{backend.label} (the refittable kernels are compiled with CUDA), and {_NO_GPU}. Build on a "
                "machine with an NVIDIA GPU, or without these options")
    return None
