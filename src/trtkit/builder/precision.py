"""Precision: FP16/BF16 builds on TensorRT 10, 11 and TensorRT-RTX, quantized models, accuracy checks.

TensorRT 10 lowers precision with builder flags. TensorRT 11 and TensorRT-RTX build strongly typed networks
only: the precision comes from the ONNX model's own tensor types. trtkit therefore converts the model before
parsing (:func:`convert_model`) with NVIDIA ModelOpt AutoCast when it is installed, else with
onnxconverter-common (FP16 only), keeps numerically sensitive ops in FP32 (:data:`DEFAULT_FP32_OPS`) and
records what it did in the manifest (``extra["precision"]``). Models that already carry Q/DQ nodes build as
they are (:func:`model_precisions` says what they carry); :func:`quantize` makes such a model from
calibration data through ModelOpt. :func:`check_conversion` compares the converted model with the FP32 one
on the CPU. See ``docs/precision.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from trtkit.errors import DependencyError, InputError, ModelError, UnsupportedFeatureError
from trtkit.log import get_logger

if TYPE_CHECKING:
    import numpy as np

    from trtkit.backend import Backend, Features
    from trtkit.builder.build import BuildConfig
    from trtkit.builder.model import ModelSource, OnnxModel
    from trtkit.tools.compare import CompareReport, Tolerance

__all__ = [
    "DEFAULT_FP32_OPS",
    "Conversion",
    "check_conversion",
    "check_target",
    "convert_model",
    "converted_model_path",
    "model_precisions",
    "plan_precision",
    "quantize",
    "resolve_fp32_ops",
]

_log = get_logger("precision")

LowPrecision = Literal["fp16", "bf16"]
Converter = Literal["auto", "modelopt", "onnxconverter-common"]

DEFAULT_FP32_OPS: Final[tuple[str, ...]] = (
    # exponentials, logs and powers leave FP16's range (max 65504) first
    "Exp", "Log", "Pow", "Reciprocal", "Softplus",
    # softmax and normalizations: sums of many exponentials or squares
    "Softmax", "LogSoftmax", "LayerNormalization", "GroupNormalization", "LpNormalization",
    # accumulating reductions
    "ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceL1", "ReduceL2", "CumSum",
    # coordinate and index arithmetic (also blocked by onnxconverter-common's own default list)
    "Range", "Resize", "TopK", "NonMaxSuppression", "RoiAlign",
)
"""Op types kept in FP32 by default when converting to FP16/BF16; reasons in ``docs/precision.md``."""

FP16_MAX: Final = 65504.0
_INSTALL_FP16: Final = "pip install 'trtkit[fp16]'  (onnxconverter-common)"
_INSTALL_MODELOPT: Final = "pip install 'trtkit[modelopt]'  (NVIDIA ModelOpt; pulls in PyTorch)"
# Lowest compute capability with native support, per precision (NVIDIA's TensorRT support matrix).
_MIN_CC: Final = {"bf16": (8, 0), "fp8": (8, 9), "fp4": (10, 0)}
_QUANT_TYPES: Final = {3: "int8", 2: "uint8", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8", 21: "uint4", 22: "int4",
                       23: "fp4"}
_FLOAT_TYPES: Final = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}


# ---- policy -------------------------------------------------------------------------------------------------


def resolve_fp32_ops(spec: Iterable[str] | None) -> tuple[str, ...]:
    """The op types to keep in FP32.

    ``None`` gives :data:`DEFAULT_FP32_OPS`. Entries ``+Op`` add to the default list and ``-Op`` remove from
    it; plain names replace the list; ``none`` alone keeps nothing in FP32.
    """
    if spec is None:
        return DEFAULT_FP32_OPS
    items = [s.strip() for s in spec if s.strip()]
    if [i.lower() for i in items] == ["none"]:
        return ()
    if items and all(i[0] in "+-" for i in items):
        ops = list(DEFAULT_FP32_OPS)
        for item in items:
            name = item[1:].strip()
            if item[0] == "+" and name not in ops:
                ops.append(name)
            elif item[0] == "-" and name in ops:
                ops.remove(name)
        return tuple(ops)
    if any(i[0] in "+-" for i in items):
        raise UnsupportedFeatureError(
            f"fp32_ops {items}: either list op types to replace the default list, or give only +Op/-Op "
            "entries to change it, not both"
        )
    return tuple(dict.fromkeys(items))


def plan_precision(features: Features, config: BuildConfig) -> Literal["none", "builder_flags", "convert"]:
    """How a build reaches ``config.precision``: nothing to do, TensorRT 10's builder flags, or converting
    the ONNX model (TensorRT 11, TensorRT-RTX, or TensorRT 10 with ``strongly_typed=True``)."""
    if config.precision == "fp32":
        return "none"
    if features.precision_flags and not config.strongly_typed:
        return "builder_flags"
    return "convert"


def _parse_cc(value: str) -> tuple[int, int] | None:
    v = value.strip().upper().replace("_", "").replace("SM", "")
    if v == "CURRENT":
        return None
    if "." in v:
        major, minor = v.split(".", 1)
        return int(major), int(minor)
    return (int(v[:-1]), int(v[-1])) if v.isdigit() and len(v) >= 2 else None


def _targets(backend: Backend, config: BuildConfig) -> list[tuple[str, tuple[int, int]]]:
    """The GPUs an engine will be built for, as far as known before the build."""
    from trtkit.errors import TrtkitError
    from trtkit.gpu import current_device, device_info

    found: list[tuple[str, tuple[int, int]]] = []
    ccs = config.compute_capabilities if backend.features.compute_capability_targets else None
    if ccs is not None:
        for text in ccs:
            cc = _parse_cc(text)
            if cc is not None:
                found.append((f"compute capability {cc[0]}.{cc[1]}", cc))
                continue
            with contextlib.suppress(TrtkitError):
                info = device_info(current_device())
                found.append((f"the current GPU ({info.name}, {info.cc_string})", info.compute_capability))
        return found
    if backend.features.compute_capability_targets:
        return found  # TensorRT-RTX's default targets: it checks them itself
    with contextlib.suppress(TrtkitError):
        info = device_info(current_device())
        found.append((f"{info.name} (compute capability {info.cc_string})", info.compute_capability))
    return found


def check_target(backend: Backend, config: BuildConfig, carries: Iterable[str] = ()) -> None:
    """Raise UnsupportedFeatureError when the target GPUs cannot run ``config.precision`` or a quantized
    precision the model carries (``carries``): BF16 needs compute capability 8.0, FP8 8.9, FP4 10.0."""
    needed = [p for p in dict.fromkeys([config.precision, *carries]) if p in _MIN_CC]
    if not needed:
        return
    targets = _targets(backend, config)
    for precision in needed:
        low = [label for label, cc in targets if cc < _MIN_CC[precision]]
        if low:
            need = ".".join(str(x) for x in _MIN_CC[precision])
            what = f"precision={precision}" if precision == config.precision else f"the model's {precision} Q/DQ"
            raise UnsupportedFeatureError(
                f"{what} cannot be built for {', '.join(low)} on {backend.label}: {precision.upper()} needs "
                f"compute capability {need} or newer. Drop those targets (compute_capabilities) or use "
                + ("precision=fp16" if precision == "bf16" else "another quantization")
            )


# ---- what a model carries ------------------------------------------------------------------------------------


def _graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def model_precisions(model: Any) -> dict[str, Any]:
    """The precisions an ONNX model (``ModelProto`` or :class:`~trtkit.onnx_model.OnnxModel`) carries.

    Returns ``{"float": [...], "quantized": [...], "qdq_nodes": n}``: float types of its tensors (fp32, fp16,
    bf16) and the quantized types of its QuantizeLinear/DequantizeLinear nodes (int8, uint8, fp8, int4, fp4).
    """
    proto = getattr(model, "proto", model)
    floats: set[str] = set()
    quant: set[str] = set()
    qdq = 0
    for graph in _graphs(proto.graph):
        elem: dict[str, int] = {t.name: t.data_type for t in graph.initializer}
        for v in [*graph.input, *graph.output, *graph.value_info]:
            elem.setdefault(v.name, v.type.tensor_type.elem_type)
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.HasField("t"):
                        elem[node.output[0]] = attr.t.data_type
        for t in elem.values():
            if t in _FLOAT_TYPES:
                floats.add(_FLOAT_TYPES[t])
        for node in graph.node:
            if node.op_type == "Cast":
                for attr in node.attribute:
                    if attr.name == "to" and attr.i in _FLOAT_TYPES:
                        floats.add(_FLOAT_TYPES[attr.i])
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            qdq += 1
            types = [elem.get(node.input[2], 0)] if len(node.input) > 2 and node.input[2] else []
            if node.op_type == "DequantizeLinear":
                types.append(elem.get(node.input[0], 0))
            else:
                types += [a.i for a in node.attribute if a.name == "output_dtype"]
                if not any(t in _QUANT_TYPES for t in types):
                    types.append(2)  # QuantizeLinear without zero point or output_dtype: uint8
            quant.update(_QUANT_TYPES[t] for t in types if t in _QUANT_TYPES)
    order = ["fp32", "fp16", "bf16", "fp64", "int8", "uint8", "fp8", "int4", "uint4", "fp4"]
    return {
        "float": [p for p in order if p in floats],
        "quantized": [p for p in order if p in quant],
        "qdq_nodes": qdq,
    }


# ---- conversion --------------------------------------------------------------------------------------------


@dataclass
class Conversion:
    """An ONNX model converted to FP16/BF16 and the record of what was done (stored in the manifest)."""

    model: OnnxModel
    record: dict[str, Any]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the converted model (weights inline below 2 GiB, else in ``<name>.data`` beside it)."""
        import onnx

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        big = self.model.proto.ByteSize() > (2**31 - 1) - (1 << 20)
        onnx.save_model(self.model.proto, str(p), save_as_external_data=big, location=f"{p.name}.data")
        return p


def converted_model_path(plan_path: str | os.PathLike[str]) -> Path:
    """Where the converted model of an engine is kept beside it: ``model.engine`` -> ``model.engine.onnx``."""
    p = Path(plan_path)
    return p.with_name(p.name + ".onnx")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _pick_tool(precision: str, tool: Converter) -> str:
    modelopt = _has_module("modelopt.onnx.autocast") if tool in ("auto", "modelopt") else False
    if tool == "modelopt" or (tool == "auto" and modelopt):
        if not modelopt:
            raise DependencyError(f"converter=modelopt needs NVIDIA ModelOpt: {_INSTALL_MODELOPT}")
        return "modelopt"
    if precision == "bf16":
        raise UnsupportedFeatureError(
            "precision=bf16 on a strongly typed backend needs the model converted to BF16, and only NVIDIA "
            f"ModelOpt AutoCast does that (onnxconverter-common converts to FP16 only). Install it: "
            f"{_INSTALL_MODELOPT}; or build with precision=fp16"
        )
    if not _has_module("onnxconverter_common"):
        raise DependencyError(
            "precision=fp16 on a strongly typed backend converts the ONNX model first, which needs "
            f"onnxconverter-common or NVIDIA ModelOpt: {_INSTALL_FP16}, or {_INSTALL_MODELOPT}"
        )
    return "onnxconverter-common"


def converter_identity(backend: Backend, config: BuildConfig) -> str | None:
    """``"tool version"`` of the converter a build would use, or None when it converts nothing.

    Part of the engine cache key: ``converter="auto"`` picks ModelOpt when it is installed, which changes the
    model TensorRT builds.
    """
    if plan_precision(backend.features, config) != "convert":
        return None
    tool = _pick_tool(config.precision, config.converter)
    return f"{tool} {_tool_version(tool)}"


def _with_weights(model: OnnxModel) -> Any:
    """A copy of the model's proto with external weights loaded into it."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    if model.base_dir is not None and any(
        t.data_location == 1 for g in _graphs(proto.graph) for t in g.initializer
    ):
        onnx.external_data_helper.load_external_data_for_model(proto, str(model.base_dir))
    return proto


def _out_of_range_nodes(proto: Any) -> list[str]:
    """Nodes reading a constant that FP16 cannot hold (|x| > 65504): they stay in FP32."""
    import numpy as np
    from onnx import numpy_helper

    big = {t.name for t in proto.graph.initializer
           if t.data_type == 1 and np.abs(numpy_helper.to_array(t)).max(initial=0.0) > FP16_MAX}
    return [n.name for n in proto.graph.node if big.intersection(n.input)]


def _constants_to_initializers(proto: Any) -> None:
    """Turn top-level tensor ``Constant`` nodes into initializers (same values, same names).

    onnxconverter-common keeps initializers read only by FP32-kept nodes in FP32, but converts (and clamps)
    every Constant node's value, so a kept node would read a clamped constant.
    """
    keep = []
    for node in proto.graph.node:
        value = [a for a in node.attribute if a.name == "value" and a.HasField("t")]
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(value) == 1:
            tensor = proto.graph.initializer.add()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
        else:
            keep.append(node)
    if len(keep) != len(proto.graph.node):
        del proto.graph.node[:]
        proto.graph.node.extend(keep)


def _kept_fp32(proto: Any) -> dict[str, int]:
    """Compute nodes of a converted model that still produce FP32, by op type."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:  # only for the record
        _log.debug("type inference for the conversion record failed: %s", exc)
        inferred = proto
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    skip = {"Cast", "Constant", "ConstantOfShape", "Shape", "Identity"}
    kept: Counter[str] = Counter()
    for node in g.node:
        if node.op_type in skip:
            continue
        outs = [types.get(o, 0) for o in node.output if o]
        if any(t == 1 for t in outs):
            kept[node.op_type] += 1
    return dict(sorted(kept.items()))


def _unique_node_names(proto: Any) -> None:
    taken: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in taken:
            node.name = f"{node.op_type}_{i}" if f"{node.op_type}_{i}" not in taken else f"node_{i}_{id(node)}"
        taken.add(node.name)


def _convert_onnxconverter(proto: Any, keep_io_types: bool, fp32_ops: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    from onnxconverter_common import float16

    _unique_node_names(proto)
    _constants_to_initializers(proto)
    blocked = _out_of_range_nodes(proto)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            proto, keep_io_types=keep_io_types, op_block_list=list(fp32_ops), node_block_list=blocked,
            max_finite_val=FP16_MAX,
        )
    clamped = sum(1 for w in caught if "truncated" in str(w.message))
    return converted, {"nodes_out_of_fp16_range": blocked, "tiny_values_clamped": clamped}


def _convert_modelopt(proto: Any, precision: str, keep_io_types: bool,
                      fp32_ops: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    with tempfile.TemporaryDirectory(prefix="trtkit-autocast-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        big = proto.ByteSize() > (2**31 - 1) - (1 << 20)
        onnx.save_model(proto, path, save_as_external_data=big, location="model.onnx.data")
        converted = convert_to_mixed_precision(
            onnx_path=path, low_precision_type=precision, op_types_to_exclude=list(fp32_ops),
            keep_io_types=keep_io_types,
        )
    return converted, {"data_max": 512, "init_max": FP16_MAX}


def _restore_io_types(original: Any, converted: Any) -> list[str]:
    """Give graph outputs back their original types where the converter changed them despite keep_io_types
    (onnxconverter-common 1.16 leaves an output FP16 when the node producing it is kept in FP32)."""
    from onnx import helper

    before = {v.name: v.type.tensor_type.elem_type for v in original.graph.output}
    producers = {o: n for n in converted.graph.node for o in n.output}
    fixed: list[str] = []
    for out in converted.graph.output:
        want = before.get(out.name)
        if want is None or out.type.tensor_type.elem_type == want:
            continue
        node = producers.get(out.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = want
        else:
            low = f"{out.name}__trtkit_low"
            if node is not None:
                node.output[list(node.output).index(out.name)] = low
            converted.graph.node.append(helper.make_node("Cast", [low], [out.name], to=want,
                                                         name=f"{out.name}__trtkit_cast"))
        out.type.tensor_type.elem_type = want
        fixed.append(out.name)
    inputs = {v.name: v.type.tensor_type.elem_type for v in original.graph.input}
    changed = [v.name for v in converted.graph.input if inputs.get(v.name, v.type.tensor_type.elem_type)
               != v.type.tensor_type.elem_type]
    if changed:
        raise ModelError(f"the converter changed the types of graph inputs {changed} although keep_io_types=True")
    return fixed


def _tool_version(tool: str) -> str:
    dist = {"modelopt": "nvidia-modelopt", "onnxconverter-common": "onnxconverter-common"}[tool]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def convert_model(
    model: ModelSource | OnnxModel,
    precision: LowPrecision,
    *,
    keep_io_types: bool = True,
    fp32_ops: Sequence[str] | None = None,
    converter: Converter = "auto",
) -> Conversion:
    """Convert an FP32 ONNX model to mixed FP16 or BF16 for a strongly typed build.

    Uses NVIDIA ModelOpt AutoCast when importable (``converter="auto"``), else onnxconverter-common (FP16
    only). Graph inputs and outputs keep their types unless ``keep_io_types=False``; op types in ``fp32_ops``
    (default :data:`DEFAULT_FP32_OPS`) stay in FP32, and so do nodes reading constants beyond FP16's range.
    Deterministic for the same model, options and tool version.

    Raises:
        UnsupportedFeatureError: bf16 without ModelOpt, or an unknown precision.
        DependencyError: no converter is installed.
        ModelError: the converter failed on this model.
    """
    from trtkit.builder.model import OnnxModel, load_onnx

    if precision not in ("fp16", "bf16"):
        raise UnsupportedFeatureError(f"convert_model converts to fp16 or bf16, not {precision!r}")
    ops = tuple(DEFAULT_FP32_OPS if fp32_ops is None else fp32_ops)
    src = model if isinstance(model, OnnxModel) else load_onnx(model)
    tool = _pick_tool(precision, converter)
    proto = _with_weights(src)
    try:
        if tool == "modelopt":
            converted, details = _convert_modelopt(proto, precision, keep_io_types, ops)
        else:
            converted, details = _convert_onnxconverter(proto, keep_io_types, ops)
    except (DependencyError, UnsupportedFeatureError):
        raise
    except Exception as exc:
        raise ModelError(f"{tool} could not convert {src.name} to {precision}: {type(exc).__name__}: {exc}") \
            from exc
    if keep_io_types:
        details["outputs_retyped"] = _restore_io_types(src.proto, converted)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if converted.ByteSize() > (2**31 - 1) - (1 << 20):
        import onnx

        tmp = tempfile.TemporaryDirectory(prefix="trtkit-converted-")
        path = Path(tmp.name) / f"{src.name}.{precision}.onnx"
        onnx.save_model(converted, str(path), save_as_external_data=True, location=f"{path.name}.data")
        out = load_onnx(path)
    else:
        out = load_onnx(converted)
    present = {n.op_type for g in _graphs(src.proto.graph) for n in g.node}
    record: dict[str, Any] = {
        "tool": tool,
        "version": _tool_version(tool),
        "precision": precision,
        "keep_io_types": keep_io_types,
        "fp32_ops": list(ops),
        "fp32_ops_in_model": sorted(present.intersection(ops)),
        "kept_fp32_nodes": _kept_fp32(out.proto) if tmp is None else {},
        "source_sha256": src.sha256,
        "sha256": out.sha256,
        **details,
    }
    _log.info("converted %s to %s with %s %s", src.name, precision, tool, record["version"])
    return Conversion(out, record, tmp)


@dataclass
class PreparedModel:
    """What :func:`prepare_model` hands the builder: the model to parse and the manifest record."""

    model: OnnxModel
    method: Literal["none", "builder_flags", "convert"]
    record: dict[str, Any]
    conversion: Conversion | None = None


def prepare_model(backend: Backend, config: BuildConfig, model: OnnxModel,
                  save_converted_model: str | os.PathLike[str] | None = None) -> PreparedModel:
    """The builder's precision step, run after loading and before parsing.

    Checks the target GPUs against the requested precision and the quantized types the model carries, then
    converts the model when the backend needs it (see :func:`plan_precision`), writes the converted model to
    ``save_converted_model`` when given, and returns the record stored as ``manifest.extra["precision"]``.
    """
    carries = model_precisions(model)
    check_target(backend, config, carries["quantized"])
    method = plan_precision(backend.features, config)
    if carries["qdq_nodes"] and backend.features.precision_flags and not config.strongly_typed:
        _log.warning("%s carries %d Q/DQ nodes; NVIDIA recommends building explicitly quantized models "
                     "strongly typed (strongly_typed=True) on %s", model.name, carries["qdq_nodes"], backend.label)
    record: dict[str, Any] = {
        "policy": {
            "precision": config.precision,
            "tf32": config.tf32,
            "keep_io_types": config.keep_io_types,
            "fp32_ops": list(resolve_fp32_ops(config.fp32_ops)),
            "converter": config.converter,
        },
        "method": method,
        "model_carries": carries,
        "conversion": None,
    }
    if method != "convert":
        return PreparedModel(model, method, record)
    precision: LowPrecision = "bf16" if config.precision == "bf16" else "fp16"
    conversion = convert_model(model, precision, keep_io_types=config.keep_io_types,
                               fp32_ops=resolve_fp32_ops(config.fp32_ops), converter=config.converter)
    record["conversion"] = dict(conversion.record)
    if save_converted_model is not None:
        record["conversion"]["saved_to"] = str(conversion.save(save_converted_model))
    return PreparedModel(conversion.model, method, record, conversion)


# ---- quantization ------------------------------------------------------------------------------------------


def _calibration_arrays(data: Any, input_names: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
    import numpy as np

    if isinstance(data, np.ndarray):
        if len(input_names) != 1:
            raise InputError(f"one calibration array given, but the model has inputs {list(input_names)}; pass "
                             "a mapping of input name to array")
        return {input_names[0]: data}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    batches: dict[str, list[np.ndarray[Any, Any]]] = {}
    for item in data:
        if not isinstance(item, Mapping):
            raise InputError("calibration data must be an array, a mapping of input name to array, or an "
                             f"iterable of such mappings; got an item of type {type(item).__name__}")
        for k, v in item.items():
            batches.setdefault(str(k), []).append(np.asarray(v))
    if not batches:
        raise InputError("the calibration data iterator yielded nothing")
    return {k: np.concatenate(v, axis=0) for k, v in batches.items()}


def quantize(
    model: ModelSource | OnnxModel,
    calibration_data: Any,
    *,
    precision: Literal["int8", "fp8"] = "int8",
    calibration_method: str | None = None,
    op_types_to_exclude: Sequence[str] | None = None,
    output_path: str | os.PathLike[str] | None = None,
) -> OnnxModel:
    """Post-training quantization to INT8 or FP8 with NVIDIA ModelOpt: returns a Q/DQ model to build.

    ``calibration_data``: an array (single-input models), a mapping of input name to array (batches stacked
    on axis 0), or an iterable of input mappings (concatenated). TensorRT's implicit INT8 calibrators are not
    offered: deprecated in TensorRT 10.1 and removed in 11.

    Raises:
        DependencyError: ModelOpt is not installed.
        InputError: the calibration data has the wrong form.
    """
    from trtkit.builder.model import OnnxModel, load_onnx

    if precision not in ("int8", "fp8"):
        raise UnsupportedFeatureError(f"quantize supports int8 and fp8, not {precision!r}")
    if not _has_module("modelopt.onnx.quantization"):
        raise DependencyError(f"quantize needs NVIDIA ModelOpt's ONNX quantization: {_INSTALL_MODELOPT}")
    import onnx
    from modelopt.onnx.quantization import quantize as mo_quantize

    src = model if isinstance(model, OnnxModel) else load_onnx(model)
    arrays = _calibration_arrays(calibration_data, [i.name for i in src.inputs()])
    with tempfile.TemporaryDirectory(prefix="trtkit-quantize-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        out = os.path.join(tmp, f"model.{precision}.onnx")
        proto = _with_weights(src)
        onnx.save_model(proto, path, save_as_external_data=proto.ByteSize() > 2**31 - (1 << 21))
        try:
            mo_quantize(onnx_path=path, quantize_mode=precision, calibration_data=arrays,
                        calibration_method=calibration_method,
                        op_types_to_exclude=list(op_types_to_exclude) if op_types_to_exclude else None,
                        output_path=out)
        except Exception as exc:
            raise ModelError(f"ModelOpt could not quantize {src.name} to {precision}: {exc}") from exc
        result = onnx.load(out)
    if output_path is not None:
        onnx.save_model(result, str(output_path))
    return load_onnx(result)


# ---- accuracy ------------------------------------------------------------------------------------------------


def check_conversion(
    fp32_model: ModelSource | OnnxModel,
    converted_model: ModelSource | OnnxModel,
    *,
    inputs: Mapping[str, Any] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    precision: str = "fp16",
    tolerance: Tolerance | None = None,
    evaluator: Literal["auto", "onnxruntime", "reference"] = "auto",
) -> CompareReport:
    """Run the FP32 model and the converted model on the CPU with the same inputs and compare the outputs.

    :func:`trtkit.compare.compare` with a converted model as the candidate. Inputs are ``inputs`` or
    generated (:func:`trtkit.compare.generate_inputs`, seeded); dynamic dims need ``shapes``. The converted
    model runs on ONNX Runtime's CPU provider (which computes nodes that lack an FP16 kernel in FP32 after
    inserting casts), or on ONNX's reference evaluator where ONNX Runtime cannot run it or when
    ``evaluator="reference"`` (NumPy arithmetic in the model's own types; slow on large models). Outputs are
    judged by ``tolerance``, default ``trtkit.compare.DEFAULT_TOLERANCES[precision]``.

    Raises:
        ShapeError: dynamic dims without a shape.
        InputError: inputs that do not match the model.
        UnsupportedFeatureError: no tolerance is known for ``precision``.
    """
    from trtkit.tools.compare import DEFAULT_TOLERANCES, compare

    if tolerance is None and precision not in DEFAULT_TOLERANCES:
        raise UnsupportedFeatureError(
            f"no default tolerance for precision {precision!r}; known: {', '.join(DEFAULT_TOLERANCES)}; "
            "or pass tolerance=Tolerance(...)"
        )
    return compare(fp32_model, converted_model, inputs=inputs, shapes=shapes, seed=seed,
                   precision=precision, tolerance=tolerance, evaluator=evaluator)  # type: ignore[arg-type]
