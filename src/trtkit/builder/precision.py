"""Precision: how a build reaches FP16/BF16 on TensorRT 10, 11 and TensorRT-RTX, decided once per build.

TensorRT 10 lowers precision with builder flags. TensorRT 11 and TensorRT-RTX build strongly typed networks
only: the precision comes from the ONNX model's own tensor types, so trtkit converts the model before parsing
(:mod:`trtkit.builder.conversion`) with NVIDIA ModelOpt AutoCast when it is installed, else with
onnxconverter-common (FP16 only). :func:`plan_precision` makes that decision once, as a :class:`PrecisionPlan`
that the builder config, the conversion step and the engine cache key follow. Models that already carry Q/DQ
nodes build as they are (:func:`model_precisions` says what they carry).

INT8 and FP8 are explicit quantization only: the model must carry Q/DQ nodes of that type (``trtkit quantize``
makes them); the builder never calibrates. On TensorRT 10 with a weakly typed network the INT8 (FP8) builder
flag is set, as NVIDIA's developer guide asks of Q/DQ networks ("Explicit Quantization"); strongly typed
networks (TensorRT 11, TensorRT-RTX, ``strongly_typed=True``) take their types from the Q/DQ nodes and need no
flag. See ``docs/precision.md`` and ``docs/quantization.md``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypedDict

from trtkit import dtypes
from trtkit.backend import Features
from trtkit.builder.config import (
    DEFAULT_FP32_OPS,
    QUANTIZED_PRECISIONS,
    BuildConfig,
    Converter,
    Precision,
    resolve_fp32_ops,
)
from trtkit.builder.model import OnnxModel, iter_graphs
from trtkit.builder.target import BuildTarget
from trtkit.deps import available
from trtkit.errors import ConfigError, DependencyError, UnsupportedFeatureError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_FP32_OPS",
    "ConverterTool",
    "ModelPrecisions",
    "PrecisionPlan",
    "Route",
    "installed_converters",
    "model_precisions",
    "pick_converter",
    "plan_precision",
]

Route: TypeAlias = Literal["none", "builder_flags", "convert"]
"""How a build reaches its precision: nothing to do (fp32, or Q/DQ on a strongly typed network), TensorRT 10's
builder flags, or converting the model (fp16/bf16 on a strongly typed network)."""
ConverterTool: TypeAlias = Literal["modelopt", "onnxconverter-common"]
LowPrecision: TypeAlias = Literal["fp16", "bf16"]

INSTALL_FP16: Final = "pip install onnxconverter-common"
INSTALL_MODELOPT: Final = "pip install 'nvidia-modelopt[onnx]'  (NVIDIA ModelOpt; pulls in PyTorch)"
# The module each converter is imported from, and the distribution its version is read from.
CONVERTER_MODULES: Final[dict[ConverterTool, str]] = {
    "modelopt": "modelopt.onnx.autocast", "onnxconverter-common": "onnxconverter_common"}
_DISTRIBUTIONS: Final[dict[ConverterTool, str]] = {
    "modelopt": "nvidia-modelopt", "onnxconverter-common": "onnxconverter-common"}
# Lowest compute capability with native support, per precision (NVIDIA's TensorRT support matrix).
_MIN_CC: Final = {"bf16": (8, 0), "fp8": (8, 9), "fp4": (10, 0)}


# ---- converters -----------------------------------------------------------------------------------------------


def installed_converters() -> dict[ConverterTool, str]:
    """The model converters importable here, with their versions (``"unknown"`` without package metadata)."""
    found: dict[ConverterTool, str] = {}
    for tool, module in CONVERTER_MODULES.items():
        if available(module):
            try:
                found[tool] = importlib.metadata.version(_DISTRIBUTIONS[tool])
            except importlib.metadata.PackageNotFoundError:
                found[tool] = "unknown"
    return found


def pick_converter(precision: LowPrecision, converter: Converter, installed: Iterable[ConverterTool]) -> ConverterTool:
    """The tool converting a model to ``precision``: the one named, or with ``auto`` ModelOpt if installed.

    Raises:
        DependencyError: the tool needed is not installed.
        UnsupportedFeatureError: bf16 without ModelOpt (onnxconverter-common converts to FP16 only).
    """
    have = set(installed)
    if converter == "modelopt" or (converter == "auto" and "modelopt" in have):
        if "modelopt" not in have:
            raise DependencyError(f"converter=modelopt needs NVIDIA ModelOpt: {INSTALL_MODELOPT}")
        return "modelopt"
    if precision == "bf16":
        raise UnsupportedFeatureError(
            "precision=bf16 on a strongly typed backend needs the model converted to BF16, and only NVIDIA "
            f"ModelOpt AutoCast does that (onnxconverter-common converts to FP16 only). Install it: "
            f"{INSTALL_MODELOPT}; or build with precision=fp16"
        )
    if "onnxconverter-common" not in have:
        raise DependencyError(
            "precision=fp16 on a strongly typed backend converts the ONNX model first, which needs "
            f"onnxconverter-common or NVIDIA ModelOpt: {INSTALL_FP16}, or {INSTALL_MODELOPT}"
        )
    return "onnxconverter-common"


# ---- the plan -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionPlan:
    """How one build reaches its precision; made by :func:`plan_precision`."""

    precision: Precision
    route: Route
    builder_flags: tuple[str, ...]
    """``trt.BuilderFlag`` members the builder config sets (route ``builder_flags``)."""
    converter: ConverterTool | None
    """The tool converting the model (route ``convert``), else None."""
    converter_version: str | None
    fp32_ops: tuple[str, ...]
    """Op types kept in FP32 when converting (``BuildConfig.fp32_ops`` resolved)."""
    keep_io_types: bool
    policy: Mapping[str, object]
    """The options behind the plan, as recorded in the manifest."""

    @property
    def low_precision(self) -> LowPrecision:
        """The precision a conversion converts to."""
        return "bf16" if self.precision == "bf16" else "fp16"

    @property
    def converter_identity(self) -> str | None:
        """``"tool version"`` of the converter, or None when the build converts nothing. Part of the engine
        cache key: ``converter="auto"`` picks ModelOpt when it is installed, which changes the model built."""
        return None if self.converter is None else f"{self.converter} {self.converter_version}"


def plan_precision(
    features: Features,
    config: BuildConfig,
    target: BuildTarget | None = None,
    carries: Iterable[str] | None = None,
    *,
    converters: Mapping[ConverterTool, str] | None = None,
) -> PrecisionPlan:
    """Decide how a build reaches ``config.precision``.

    Nothing for fp32; TensorRT 10's builder flags (weakly typed networks); converting the ONNX model for
    fp16/bf16 (TensorRT 11, TensorRT-RTX, or TensorRT 10 with ``strongly_typed=True``); nothing for int8/fp8 on
    a strongly typed network, whose types come from the model's Q/DQ nodes. ``carries``: the quantized
    precisions the model carries (``model_precisions(model)["quantized"]``), or None when the model is not known
    yet (the engine cache key). With ``target``, first checks that its GPUs can run the precision and the
    quantized precisions the model carries: BF16 needs compute capability 8.0, FP8 8.9, FP4 10.0.
    ``converters``: the installed converter tools and their versions (default :func:`installed_converters`).

    Raises:
        ConfigError: precision int8/fp8 and the model carries no Q/DQ nodes of that type (the builder never
            calibrates: quantize first).
        UnsupportedFeatureError: a target GPU cannot run the precision, or bf16 needs ModelOpt.
        DependencyError: the model must be converted and no converter is installed.
    """
    carried = None if carries is None else list(carries)
    if config.precision in QUANTIZED_PRECISIONS and carried is not None and config.precision not in carried:
        raise ConfigError(_unquantized_message(config.precision, carried))
    if target is not None:
        _check_target(target, config.precision, carried or ())
    route: Route = "none"
    weakly_typed = features.precision_flags and not config.strongly_typed
    if config.precision in QUANTIZED_PRECISIONS:
        route = "builder_flags" if weakly_typed else "none"
    elif config.precision != "fp32":
        route = "builder_flags" if weakly_typed else "convert"
    fp32_ops = resolve_fp32_ops(config.fp32_ops)
    tool: ConverterTool | None = None
    if route == "convert":
        installed = installed_converters() if converters is None else converters
        tool = pick_converter("bf16" if config.precision == "bf16" else "fp16", config.converter, installed)
        version: str | None = installed[tool]
    else:
        version = None
    policy = {"precision": config.precision, "tf32": config.tf32, "keep_io_types": config.keep_io_types,
              "fp32_ops": list(fp32_ops), "converter": config.converter}
    return PrecisionPlan(
        precision=config.precision, route=route,
        builder_flags=(config.precision.upper(),) if route == "builder_flags" else (),
        converter=tool, converter_version=version, fp32_ops=fp32_ops, keep_io_types=config.keep_io_types,
        policy=policy,
    )


def _unquantized_message(precision: str, carried: list[str]) -> str:
    has = f"it carries {', '.join(carried)} Q/DQ nodes only" if carried else "it carries no Q/DQ nodes"
    cli = f"trtkit build MODEL --precision {precision} --calib DATA"
    py = f'Engine.from_onnx(model, config=BuildConfig(precision="{precision}"), calibration_data=DATA)'
    return (f"precision={precision} builds a model quantized to {precision.upper()} (Q/DQ nodes), and {has}; "
            "the builder never calibrates. Quantize it first with `trtkit quantize MODEL -o "
            f"MODEL.{precision}.onnx --calib DATA{'' if precision == 'int8' else ' --precision fp8'}`, or quantize "
            f"and build in one step: `{cli}` (Python: {py})")


def _check_target(target: BuildTarget, precision: str, carries: Iterable[str]) -> None:
    needed = [p for p in dict.fromkeys([precision, *carries]) if p in _MIN_CC]
    if not needed:
        return
    gpus = target.gpus()
    for p in needed:
        low = [label for label, cc in gpus if cc < _MIN_CC[p]]
        if low:
            need = ".".join(str(x) for x in _MIN_CC[p])
            what = f"precision={p}" if p == precision else f"the model's {p} Q/DQ"
            raise UnsupportedFeatureError(
                f"{what} cannot be built for {', '.join(low)} on {target.backend}: {p.upper()} needs "
                f"compute capability {need} or newer. Drop those targets (compute_capabilities) or use "
                + ("precision=fp16" if p == "bf16" else "another quantization")
            )


# ---- what a model carries ------------------------------------------------------------------------------------


class ModelPrecisions(TypedDict):
    """What :func:`model_precisions` finds (recorded as ``manifest.extra["precision"]["model_carries"]``)."""

    float: list[str]
    quantized: list[str]
    qdq_nodes: int


def model_precisions(model: OnnxModel | onnx.ModelProto) -> ModelPrecisions:
    """The precisions an ONNX model carries: float types of its tensors (fp32, fp16, bf16) and the quantized
    types of its QuantizeLinear/DequantizeLinear nodes (int8, uint8, fp8, int4, fp4), and its Q/DQ count."""
    proto = model.proto if isinstance(model, OnnxModel) else model
    found: dict[dtypes.PrecisionKind, set[str]] = {"float": set(), "quantized": set()}
    qdq = 0
    uint8 = dtypes.lookup("uint8").onnx_type  # QuantizeLinear's output without zero point or output_dtype

    def add(types: Iterable[int], kind: dtypes.PrecisionKind) -> bool:
        hits = [p[1] for p in map(dtypes.onnx_precision, types) if p is not None and p[0] == kind]
        found[kind].update(hits)
        return bool(hits)

    for graph in iter_graphs(proto.graph):
        elem: dict[str, int] = {t.name: t.data_type for t in graph.initializer}
        for v in [*graph.input, *graph.output, *graph.value_info]:
            elem.setdefault(v.name, v.type.tensor_type.elem_type)
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.HasField("t"):
                        elem[node.output[0]] = attr.t.data_type
        add(elem.values(), "float")
        for node in graph.node:
            if node.op_type == "Cast":
                add([a.i for a in node.attribute if a.name == "to"], "float")
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            qdq += 1
            quant = [elem.get(node.input[2], 0)] if len(node.input) > 2 and node.input[2] else []
            if node.op_type == "DequantizeLinear":
                quant.append(elem.get(node.input[0], 0))
            else:
                quant += [a.i for a in node.attribute if a.name == "output_dtype"]
            if not add(quant, "quantized") and node.op_type == "QuantizeLinear":
                add([uint8], "quantized")
    return {
        "float": [p for p in dtypes.PRECISION_ORDER if p in found["float"]],
        "quantized": [p for p in dtypes.PRECISION_ORDER if p in found["quantized"]],
        "qdq_nodes": qdq,
    }
