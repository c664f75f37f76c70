"""Converting an ONNX model to mixed FP16/BF16 for a strongly typed build.

:func:`convert_model` runs NVIDIA ModelOpt AutoCast or onnxconverter-common, keeps numerically sensitive ops
in FP32 (:data:`~trtkit.builder.config.DEFAULT_FP32_OPS`) and records what it did. :func:`prepare_model` is the
builder's precision step: it follows a :class:`~trtkit.builder.precision.PrecisionPlan`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final

from trtkit import dtypes
from trtkit.builder.config import DEFAULT_FP32_OPS, Converter
from trtkit.builder.model import ModelSource, OnnxModel, iter_graphs, load_onnx, needs_external_data, save_onnx
from trtkit.builder.precision import (
    INSTALL_FP16,
    INSTALL_MODELOPT,
    ConverterTool,
    LowPrecision,
    ModelPrecisions,
    PrecisionPlan,
    installed_converters,
    pick_converter,
)
from trtkit.deps import require
from trtkit.errors import ConfigError, DependencyError, ModelError, UnsupportedFeatureError
from trtkit.log import get_logger

if TYPE_CHECKING:
    import onnx

__all__ = ["Conversion", "PreparedModel", "convert_model", "converted_model_path", "prepare_model"]

_log = get_logger("precision")

FP16_MAX: Final = 65504.0
_FLOAT: Final = dtypes.lookup("float32").onnx_type


JsonDict = dict[str, object]


@dataclass
class Conversion:
    """An ONNX model converted to FP16/BF16 and the record of what was done (stored in the manifest)."""

    model: OnnxModel
    record: JsonDict
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the converted model (weights inline below 2 GiB, else in ``<name>.data`` beside it).

        A converted model over 2 GiB lives in a temporary folder with its weights in a file there; its proto only
        names that file, so the weights are loaded back before saving, or the saved model would name a file that
        is not beside it.
        """
        return save_onnx(self.model.proto_with_weights(), path)


def converted_model_path(plan_path: str | os.PathLike[str]) -> Path:
    """Where the converted model of an engine is kept beside it: ``model.engine`` -> ``model.engine.onnx``."""
    p = Path(plan_path)
    return p.with_name(p.name + ".onnx")


def _onnx() -> ModuleType:
    return require("onnx", purpose="converting ONNX models", install="pip install onnx")


def _out_of_range_nodes(proto: onnx.ModelProto) -> list[str]:
    """Nodes reading a constant that FP16 cannot hold (|x| > 65504): they stay in FP32."""
    import numpy as np
    from onnx import numpy_helper

    big = {t.name for t in proto.graph.initializer
           if t.data_type == _FLOAT and np.abs(numpy_helper.to_array(t)).max(initial=0.0) > FP16_MAX}
    return [n.name for n in proto.graph.node if big.intersection(n.input)]


def _constants_to_initializers(proto: onnx.ModelProto) -> None:
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


def _kept_fp32(proto: onnx.ModelProto) -> dict[str, int]:
    """Compute nodes of a converted model that still produce FP32, by op type."""
    try:
        inferred = _onnx().shape_inference.infer_shapes(proto)
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
        if any(types.get(o, 0) == _FLOAT for o in node.output if o):
            kept[node.op_type] += 1
    return dict(sorted(kept.items()))


def _unique_node_names(proto: onnx.ModelProto) -> None:
    taken: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in taken:
            node.name = f"{node.op_type}_{i}" if f"{node.op_type}_{i}" not in taken else f"node_{i}_{id(node)}"
        taken.add(node.name)


def _convert_onnxconverter(proto: onnx.ModelProto, keep_io_types: bool,
                           fp32_ops: Sequence[str]) -> tuple[onnx.ModelProto, JsonDict]:
    float16 = require("onnxconverter_common.float16", purpose="converting to fp16", install=INSTALL_FP16)
    _unique_node_names(proto)
    _constants_to_initializers(proto)
    blocked = _out_of_range_nodes(proto)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted: onnx.ModelProto = float16.convert_float_to_float16(
            proto, keep_io_types=keep_io_types, op_block_list=list(fp32_ops), node_block_list=blocked,
            max_finite_val=FP16_MAX,
        )
    clamped = sum(1 for w in caught if "truncated" in str(w.message))
    return converted, {"nodes_out_of_fp16_range": blocked, "tiny_values_clamped": clamped}


def _convert_modelopt(proto: onnx.ModelProto, precision: LowPrecision, keep_io_types: bool,
                      fp32_ops: Sequence[str]) -> tuple[onnx.ModelProto, JsonDict]:
    autocast = require("modelopt.onnx.autocast", purpose="converter=modelopt", install=INSTALL_MODELOPT)
    with tempfile.TemporaryDirectory(prefix="trtkit-autocast-") as tmp:
        path = save_onnx(proto, os.path.join(tmp, "model.onnx"))
        converted: onnx.ModelProto = autocast.convert_to_mixed_precision(
            onnx_path=str(path), low_precision_type=precision, op_types_to_exclude=list(fp32_ops),
            keep_io_types=keep_io_types,
        )
    return converted, {"data_max": 512, "init_max": FP16_MAX}


def _restore_io_types(original: onnx.ModelProto, converted: onnx.ModelProto) -> list[str]:
    """Give graph outputs back their original types where the converter changed them despite keep_io_types
    (onnxconverter-common 1.16 leaves an output FP16 when the node producing it is kept in FP32)."""
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
            converted.graph.node.append(_onnx().helper.make_node("Cast", [low], [out.name], to=want,
                                                                 name=f"{out.name}__trtkit_cast"))
        out.type.tensor_type.elem_type = want
        fixed.append(out.name)
    inputs = {v.name: v.type.tensor_type.elem_type for v in original.graph.input}
    changed = [v.name for v in converted.graph.input if inputs.get(v.name, v.type.tensor_type.elem_type)
               != v.type.tensor_type.elem_type]
    if changed:
        raise ModelError(f"the converter changed the types of graph inputs {changed} although keep_io_types=True")
    return fixed


def _convert(src: OnnxModel, precision: LowPrecision, tool: ConverterTool, version: str, keep_io_types: bool,
             ops: tuple[str, ...]) -> Conversion:
    proto = src.proto_with_weights()
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
    if needs_external_data(converted):
        tmp = tempfile.TemporaryDirectory(prefix="trtkit-converted-")
        out = load_onnx(save_onnx(converted, Path(tmp.name) / f"{src.name}.{precision}.onnx"))
    else:
        out = load_onnx(converted)
    present = {n.op_type for g in iter_graphs(src.proto.graph) for n in g.node}
    record: JsonDict = {
        "tool": tool,
        "version": version,
        "precision": precision,
        "keep_io_types": keep_io_types,
        "fp32_ops": list(ops),
        "fp32_ops_in_model": sorted(present.intersection(ops)),
        "kept_fp32_nodes": _kept_fp32(out.proto) if tmp is None else {},
        "source_sha256": src.sha256,
        "sha256": out.sha256,
        **details,
    }
    _log.info("converted %s to %s with %s %s", src.name, precision, tool, version)
    return Conversion(out, record, tmp)


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
    (default :data:`~trtkit.builder.config.DEFAULT_FP32_OPS`) stay in FP32, and so do nodes reading constants
    beyond FP16's range. Deterministic for the same model, options and tool version.

    Raises:
        ConfigError: a precision other than fp16 or bf16.
        UnsupportedFeatureError: bf16 without ModelOpt.
        DependencyError: no converter is installed.
        ModelError: the converter failed on this model.
    """
    if precision not in ("fp16", "bf16"):
        raise ConfigError(f"convert_model converts to fp16 or bf16, not {precision!r}")
    installed = installed_converters()
    tool = pick_converter(precision, converter, installed)
    ops = tuple(DEFAULT_FP32_OPS if fp32_ops is None else fp32_ops)
    return _convert(load_onnx(model), precision, tool, installed[tool], keep_io_types, ops)


@dataclass
class PreparedModel:
    """What :func:`prepare_model` hands the builder: the model to parse and the manifest record."""

    model: OnnxModel
    record: JsonDict
    conversion: Conversion | None = None


def prepare_model(plan: PrecisionPlan, model: OnnxModel, carries: ModelPrecisions,
                  save_converted_model: str | os.PathLike[str] | None = None) -> PreparedModel:
    """The builder's precision step, run after loading and before parsing: follows ``plan``.

    Converts the model when the plan's route is ``convert``, writes the converted model to
    ``save_converted_model`` when given, and returns the record stored as ``manifest.extra["precision"]``.
    """
    record: JsonDict = {"policy": dict(plan.policy), "method": plan.route, "model_carries": dict(carries),
                        "conversion": None}
    if plan.converter is None or plan.converter_version is None:
        return PreparedModel(model, record)
    conversion = _convert(model, plan.low_precision, plan.converter, plan.converter_version, plan.keep_io_types,
                          plan.fp32_ops)
    converted = dict(conversion.record)
    if save_converted_model is not None:
        converted["saved_to"] = str(conversion.save(save_converted_model))
    record["conversion"] = converted
    return PreparedModel(conversion.model, record, conversion)
