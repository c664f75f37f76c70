"""Graph preparation: turn a model TensorRT's parser rejects into one it takes, and say what changed.

The steps, in order, each optional: opset upgrade (``onnx.version_converter``), frozen inputs (an input becomes
an initializer), specialization (dims that every profile fixes become static), small legal rewrites
(:mod:`trtkit.builder.rewrites`), dynamic-quantization lowering (opt-in), and constant folding with onnxslim
followed by inlining ``If`` nodes whose condition became constant. Each step that changes the graph adds one
line to :attr:`Prepared.steps`; :attr:`Prepared.record` is what the manifest keeps.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final

from trtkit.builder import rewrites
from trtkit.builder.model import OnnxModel, load_onnx
from trtkit.deps import available, require
from trtkit.errors import ConfigError, ModelError
from trtkit.profiles import Profile
from trtkit.text import safe

if TYPE_CHECKING:
    import onnx

__all__ = ["DEFAULT_UPGRADE_OPSET", "MIN_PARSER_OPSET", "PrepareOptions", "Prepared", "library_versions",
           "prepare"]

MIN_PARSER_OPSET: Final[int] = 7
"""The lowest default-domain opset TensorRT's parser takes as is: it refuses opset-6 broadcasting
("Pre-opset 7 broadcasting is unsupported"), measured with TensorRT-RTX 1.7 on ONNX's backend test models."""
DEFAULT_UPGRADE_OPSET: Final[int] = 17
"""The opset a model below :data:`MIN_PARSER_OPSET` is upgraded to when no target is given."""
FOLD_LIBRARY: Final = "onnxslim"
_FOLD_MAX_BYTES: Final = 16 << 20
"""Constants that would fold larger than this stay computed in the graph (TensorRT folds them at build time):
folding a model's ``ConstantOfShape`` weights would otherwise turn a 9 kB model into hundreds of MB."""
_INSTALL: Final = "pip install onnxslim; or, from a trtkit clone: pip install '.[sanitize]'"
_MAX_FOLD_ROUNDS: Final = 3


@dataclass(frozen=True)
class PrepareOptions:
    """What :func:`prepare` does.

    Attributes:
        upgrade_opset: the opset to upgrade to; None upgrades only a model below :data:`MIN_PARSER_OPSET`
            (to :data:`DEFAULT_UPGRADE_OPSET`). A model already at or above the target is left as it is.
        specialize: dims that every profile fixes (min == max, the same in all profiles) become static.
        freeze: input name -> value (a number or nested list); the input becomes a constant.
        fold: constant folding, shape inference and dead-node removal (onnxslim), then ``If`` nodes whose
            condition is constant are replaced by the branch taken.
        rewrites: small legal rewrites for forms the parser rejects (PReLU slopes that do not broadcast).
        lower_dynamic_quant: DynamicQuantizeLinear + ConvInteger/MatMulInteger become float Conv/MatMul with
            dequantized weights (results differ from ONNX Runtime's by the quantization error).
    """

    upgrade_opset: int | None = None
    specialize: bool = True
    freeze: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    fold: bool = True
    rewrites: bool = True
    lower_dynamic_quant: bool = False


@dataclass(frozen=True)
class Prepared:
    """The prepared model, one line per change, and a JSON-able record for the manifest."""

    model: OnnxModel
    steps: tuple[str, ...]
    record: dict[str, object]


def _onnx() -> ModuleType:
    return require("onnx", purpose="preparing ONNX models", install="pip install onnx")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    """The versions of the libraries preparation uses (part of the engine cache key)."""
    return {"onnx": _version("onnx"), FOLD_LIBRARY: _version(FOLD_LIBRARY)}


def _default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _op_counts(proto: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in proto.graph.node)


# --- opset upgrade -------------------------------------------------------------------------------------------


def _upgrade(proto: onnx.ModelProto, target: int | None) -> tuple[onnx.ModelProto, str | None]:
    mod = _onnx()
    before = _default_opset(proto)
    newest = int(mod.defs.onnx_opset_version())
    if target is not None and not MIN_PARSER_OPSET <= target <= newest:
        raise ConfigError(f"upgrade_opset must be between {MIN_PARSER_OPSET} and {newest} (onnx "
                          f"{mod.__version__}), got {target}")
    if target is None:
        target = DEFAULT_UPGRADE_OPSET if 0 < before < MIN_PARSER_OPSET else None
    if target is None or before == 0 or before >= target:
        return proto, None
    try:
        out: onnx.ModelProto = mod.version_converter.convert_version(proto, target)
    except Exception as exc:  # the converter raises bare RuntimeError/ValueError naming the node
        line = " ".join(str(exc).split())[:300]
        raise ModelError(f"upgrading the model from opset {before} to {target} failed: {line}") from exc
    need = int(mod.helper.find_min_ir_version_for([mod.helper.make_opsetid("", target)]))
    out.ir_version = max(int(out.ir_version), need)
    return out, f"opset {before} -> {target}"


# --- frozen inputs -------------------------------------------------------------------------------------------


def _freeze(proto: onnx.ModelProto, freeze: Mapping[str, object]) -> tuple[list[str], dict[str, object]]:
    _onnx()
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name for t in proto.graph.initializer}
    inputs = {v.name: v for v in proto.graph.input if v.name not in inits}
    unknown = [n for n in freeze if n not in inputs]
    if unknown:
        names = ", ".join(safe(n) for n in inputs) or "none"
        raise ConfigError(f"cannot freeze {', '.join(repr(safe(str(n))) for n in unknown)}: the model has no such "
                          f"input (its inputs: {names})")
    steps: list[str] = []
    record: dict[str, object] = {}
    for name, value in freeze.items():
        v = inputs[name]
        tt = v.type.tensor_type
        if not v.type.HasField("tensor_type"):
            raise ConfigError(f"cannot freeze input {safe(name)!r}: it is not a tensor")
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if isinstance(value, str | bytes) or value is None:
            raise ConfigError(f"freeze value for {safe(name)!r} must be a number or a nested list of numbers, "
                              f"got {value!r}")
        try:
            raw = np.asarray(value)
            if raw.dtype.kind not in "biuf":
                raise TypeError(raw.dtype)
            arr = raw.astype(dtype)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"freeze value for {safe(name)!r} must be a number or a nested list of numbers of "
                              f"one shape, got {value!r}") from exc
        if raw.dtype.kind == "f" and dtype.kind in "iub" and not np.array_equal(arr, raw):
            raise ConfigError(f"freeze value for {safe(name)!r} is not a whole number; the input is {dtype.name}")
        declared = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        if tt.HasField("shape"):
            if arr.size == 1 and all(d == 1 for d in declared):
                arr = arr.reshape((1,) * len(declared))  # 5 for a [1] or [1, 1] input, [5] for a scalar
            if len(declared) != arr.ndim or any(d > 0 and d != s for d, s in zip(declared, arr.shape, strict=True)):
                want = "x".join(str(d) if d > 0 else "?" for d in declared) or "a scalar"
                got = "x".join(map(str, arr.shape)) or "a scalar"
                raise ConfigError(f"freeze value for {safe(name)!r} has shape {got}; the input is {want}")
        proto.graph.input.remove(v)
        proto.graph.initializer.append(numpy_helper.from_array(arr, name))
        shown = arr.tolist()
        record[name] = shown
        text = repr(shown) if arr.size <= 8 else f"{arr.dtype.name}[{'x'.join(map(str, arr.shape))}]"
        steps.append(f"froze input {safe(name)} = {text}")
    return steps, record


# --- specialization ------------------------------------------------------------------------------------------


def _fixed_dims(name: str, rank: int, profiles: Sequence[Profile]) -> dict[int, int]:
    """Axis -> size for the dims of ``name`` that every profile fixes to one size."""
    fixed: dict[int, int] | None = None
    for p in profiles:
        if name not in p or len(p[name].min) != rank:
            return {}
        rng = p[name]
        here = {i: lo for i, (lo, hi) in enumerate(zip(rng.min, rng.max, strict=True)) if lo == hi}
        fixed = here if fixed is None else {i: s for i, s in fixed.items() if here.get(i) == s}
    return fixed or {}


def _specialize(proto: onnx.ModelProto, profiles: Sequence[Profile]) -> list[str]:
    if not profiles:
        return []
    onnx = _onnx()
    ints = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}
    inits = {t.name for t in proto.graph.initializer}
    changed: list[str] = []
    for v in proto.graph.input:
        tt = v.type.tensor_type
        if v.name in inits or not tt.HasField("shape"):
            continue
        if tt.elem_type in ints and len(tt.shape.dim) <= 1:
            continue  # may be a shape tensor, whose profile gives values, not dims
        dims = tt.shape.dim
        for axis, size in _fixed_dims(v.name, len(dims), profiles).items():
            d = dims[axis]
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            d.dim_value = size  # clears dim_param (a oneof)
            changed.append(f"{safe(v.name)}[{axis}]={size}")
    if not changed:
        return []
    return [f"made {len(changed)} dim(s) static from the profiles: {', '.join(changed)}"]


# --- folding -------------------------------------------------------------------------------------------------


def _slim(proto: onnx.ModelProto) -> onnx.ModelProto:
    slim = require(FOLD_LIBRARY, purpose="constant folding", install=_INSTALL)
    # graph fusions (Conv+BN, Gemm) are TensorRT's job; keep to folding, CSE and dead-node removal
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        out: onnx.ModelProto | None = slim.slim(proto, skip_optimizations=["graph_fusion"],
                                                 size_threshold=_FOLD_MAX_BYTES)
    if out is None:
        raise RuntimeError("onnxslim returned no model")
    return out


def _fold(proto: onnx.ModelProto, notes: list[str]) -> tuple[onnx.ModelProto, list[str]]:
    """Fold; the changes made, one line each. What could not be done goes to ``notes`` (the record only: a
    step that changed nothing must not look like a change worth a retry)."""
    steps: list[str] = []
    if not available(FOLD_LIBRARY):
        notes.append(f"constant folding skipped: {FOLD_LIBRARY} is not installed ({_INSTALL})")
        inlined = rewrites.inline_constant_ifs(proto.graph)
        if inlined:
            steps.append(f"replaced {inlined} If node(s) with a constant condition by the branch taken")
        return proto, steps
    before_ifs = _count_control_flow(proto)
    before = len(proto.graph.node)
    inlined_total = 0
    current = proto
    for _ in range(_MAX_FOLD_ROUNDS):
        try:
            current = _slim(current)
        except Exception as exc:  # a library fault leaves the graph unfolded, and says so
            line = " ".join(str(exc).split())[:200]
            notes.append(f"constant folding failed ({FOLD_LIBRARY}: {type(exc).__name__}: {line}); left unfolded")
            break
        inlined = rewrites.inline_constant_ifs(current.graph)
        inlined_total += inlined
        if not inlined:
            break
    after_ifs = _count_control_flow(current)
    after = len(current.graph.node)
    if after != before or before_ifs != after_ifs:
        line = f"folded constants ({FOLD_LIBRARY}): {before} -> {after} nodes"
        gone = {op: before_ifs[op] - after_ifs.get(op, 0) for op in before_ifs if after_ifs.get(op, 0) < before_ifs[op]}
        if gone:
            line += "; removed " + ", ".join(f"{n} {op}" for op, n in sorted(gone.items()))
        steps.append(line)
    return current, steps


def _count_control_flow(proto: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in proto.graph.node if n.op_type in ("If", "Loop", "Scan"))


# --- the whole -----------------------------------------------------------------------------------------------


def _check_options(options: PrepareOptions) -> None:
    if not isinstance(options, PrepareOptions):
        raise ConfigError(f"options must be a PrepareOptions, got {type(options).__name__}")
    up = options.upgrade_opset
    if up is not None and (isinstance(up, bool) or not isinstance(up, int)):
        raise ConfigError(f"upgrade_opset must be an int or None, got {up!r}")
    if not isinstance(options.freeze, Mapping) or not all(isinstance(k, str) for k in options.freeze):
        raise ConfigError("freeze must map input names (strings) to values")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def prepare(model: OnnxModel, options: PrepareOptions, profiles: Sequence[Profile] = ()) -> Prepared:
    """Prepare ``model`` for TensorRT's parser as ``options`` say; ``profiles`` drive specialization.

    The input model is not changed. The prepared model carries its weights inline and keeps the original
    path (for its name).

    Raises:
        ConfigError: a frozen name the model does not have, a value of the wrong shape, a bad opset.
        ModelError: the opset upgrade failed (one line naming the node) or the result is not a valid model.
    """
    _check_options(options)
    onnx = _onnx()
    proto = model.proto_with_weights()
    opset_before = _default_opset(proto)
    nodes_before = len(proto.graph.node)
    ops_before = _op_counts(proto)
    steps: list[str] = []
    notes: list[str] = []

    proto, upgraded = _upgrade(proto, options.upgrade_opset)
    if upgraded:
        steps.append(f"upgraded {upgraded}")
    frozen_steps, frozen = _freeze(proto, options.freeze)
    steps += frozen_steps
    if options.specialize:
        steps += _specialize(proto, profiles)
    if options.rewrites:
        steps += rewrites.apply_rewrites(proto, legacy=0 < opset_before < MIN_PARSER_OPSET)
    if options.lower_dynamic_quant:
        steps += rewrites.lower_dynamic_quant(proto)
    if options.fold:
        proto, fold_steps = _fold(proto, notes)
        steps += fold_steps
    elif frozen_steps or any(s.startswith("made") for s in steps):
        with contextlib.suppress(Exception):  # shape inference helps the parser; it is not required
            proto = onnx.shape_inference.infer_shapes(proto)

    try:
        prepared = load_onnx(proto)
    except ModelError as exc:
        raise ModelError(f"the prepared model is not valid: {exc}") from exc
    prepared = replace(prepared, path=model.path)
    ops_after = _op_counts(proto)
    record: dict[str, object] = {
        "steps": list(steps),
        "notes": list(notes),
        "libraries": library_versions(),
        "nodes": {"before": nodes_before, "after": len(proto.graph.node)},
        "opset": {"before": opset_before, "after": _default_opset(proto)},
        "ops_removed": dict(sorted((ops_before - ops_after).items())),
        "ops_added": dict(sorted((ops_after - ops_before).items())),
        "frozen": {k: _jsonable(v) for k, v in frozen.items()},
    }
    return Prepared(model=prepared, steps=tuple(steps), record=record)
