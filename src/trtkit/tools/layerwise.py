"""Layer-wise comparison: mark intermediate tensors as outputs on both sides and find the first that diverges.

:func:`compare_layerwise` marks every intermediate tensor of the reference ONNX model (or the ones named) as a
graph output, runs the reference on ONNX Runtime (CPU) and the candidate (a second ONNX model on ONNX Runtime,
or a debug TensorRT engine built from the reference with the same tensors marked), matches the tensors by name
and reports, in topological order, the first whose error exceeds the tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from trtkit import deps
from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.model import ModelSource, OnnxModel, iter_graphs, load_onnx
from trtkit.errors import ConfigError, DependencyError, EngineIncompatibleError, InputError
from trtkit.manifest import BuiltEngine, Manifest, read_engine_file
from trtkit.runtime.compat import run_blocker
from trtkit.runtime.loading import load_engine
from trtkit.text import safe
from trtkit.tools.metrics import DEFAULT_TOLERANCES, Array, OutputComparison, Tolerance, compare_outputs
from trtkit.tools.runners import run_onnxruntime

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FUSION_NOTE",
    "LayerwiseReport",
    "Marked",
    "TensorComparison",
    "compare_layerwise",
    "debug_build",
    "mark_outputs",
]

FUSION_NOTE: Final = ("engine side: a debug build from the reference ONNX model with every compared tensor "
                      "marked as an output; marked tensors cannot be fused away, so the kernels (and their "
                      "rounding) differ from the engine built without them. The debug engine is not cached")
_EXACT: Final = Tolerance(rtol=0.0, atol=0.0)
_COARSENESS: Final = {"float64": "fp32", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_ORDER: Final = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class TensorComparison:
    """One tensor of both sides, judged by :attr:`tolerance`; ``passed`` is False only when it exceeds it."""

    name: str
    op: str
    """The op type of the node producing it in the reference (``domain.Op`` outside the default domain)."""
    max_abs: float
    max_rel: float
    cosine: float
    passed: bool
    shape: tuple[int, ...] = ()
    dtype: str = ""
    """The candidate's dtype."""
    status: Literal["pass", "fail", "not_checked"] = "pass"
    """``"not_checked"``: the reference is all within ``atol`` of zero (passed, but meant nothing)."""
    failures: tuple[str, ...] = ()
    tolerance: Tolerance | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "op": self.op, "shape": list(self.shape), "dtype": self.dtype,
                "max_abs": self.max_abs, "max_rel": self.max_rel, "cosine": self.cosine, "passed": self.passed,
                "status": self.status, "failures": list(self.failures),
                "tolerance": self.tolerance.to_dict() if self.tolerance else None}


@dataclass(frozen=True)
class LayerwiseReport:
    """Every compared tensor in the reference's topological order, and the first that exceeds the tolerance."""

    tensors: tuple[TensorComparison, ...]
    first_failure: TensorComparison | None
    skipped: tuple[str, ...]
    """Tensors not compared: on one side only, inside subgraphs, or not numeric (see :attr:`skip_reasons`)."""
    notes: tuple[str, ...]
    skip_reasons: tuple[tuple[str, str], ...] = field(default=())
    """``(tensor, why)`` for every name in :attr:`skipped`."""
    reason: str | None = None
    """Why nothing was compared (the engine cannot run on this machine), else None."""

    @property
    def status(self) -> Literal["pass", "fail", "not_run"]:
        if self.reason is not None:
            return "not_run"
        return "fail" if self.first_failure is not None else "pass"

    def format(self, *, limit: int | None = None) -> str:
        """The table (tensor, op, max abs/rel error, cosine, verdict) with the first failure marked ``>>``;
        ``limit`` keeps that many rows around the first failure (default: every row)."""
        if self.reason is not None:
            return "\n".join([f"layer-wise comparison not run: {self.reason}", *self.notes])
        rows = list(enumerate(self.tensors))
        if limit is not None and len(rows) > limit:
            at = self.tensors.index(self.first_failure) if self.first_failure is not None else 0
            start = max(0, min(at - limit // 2, len(rows) - limit))
            rows = rows[start:start + limit]
        name_w = min(48, max([len("tensor"), *(len(safe(t.name)) for _, t in rows)]))
        op_w = max([len("op"), *(len(safe(t.op)) for _, t in rows)])
        lines = [f"   {'#':>4}  {'tensor':<{name_w}}  {'op':<{op_w}}  {'max abs':>10}  {'max rel':>10}  "
                 f"{'cosine':>10}  verdict"]
        for i, t in rows:
            mark = ">> " if t is self.first_failure else "   "
            verdict = {"pass": "ok", "fail": "FAIL", "not_checked": "~0 (not checked)"}[t.status]
            if t is self.first_failure:
                verdict += ": " + "; ".join(t.failures)
            name = safe(t.name)
            name = name if len(name) <= name_w else "..." + name[-(name_w - 3):]
            lines.append(f"{mark}{i:>4}  {name:<{name_w}}  {safe(t.op):<{op_w}}  {t.max_abs:>10.3g}  "
                         f"{t.max_rel:>10.3g}  {t.cosine:>10.6f}  {verdict}")
        failed = sum(1 for t in self.tensors if not t.passed)
        if self.first_failure is None:
            lines.append(f"all {len(self.tensors)} tensors within tolerance")
        else:
            lines.append(f"first tensor beyond tolerance: {safe(self.first_failure.name)} "
                         f"({safe(self.first_failure.op)}); {failed} of {len(self.tensors)} tensors fail")
        by_reason: dict[str, list[str]] = {}
        for name, why in self.skip_reasons:
            by_reason.setdefault(why, []).append(safe(name))
        for why, names in by_reason.items():
            shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
            lines.append(f"skipped {len(names)} ({why}): {shown}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "reason": self.reason, "tensors": [t.to_dict() for t in self.tensors],
                "first_failure": self.first_failure.name if self.first_failure else None,
                "skipped": [{"name": n, "why": w} for n, w in self.skip_reasons], "notes": list(self.notes)}


# ---- marking -------------------------------------------------------------------------------------------------


def _op(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The top-level nodes in a topological order, stable on the file's order (which ONNX requires be one)."""
    produced = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    needs = [{produced[x] for x in n.input if x in produced and produced[x] != i} for i, n in enumerate(graph.node)]
    users: dict[int, list[int]] = {}
    for i, deps_of in enumerate(needs):
        for d in deps_of:
            users.setdefault(d, []).append(i)
    waiting = [len(d) for d in needs]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    while ready:
        ready.sort()
        i = ready.pop(0)
        order.append(i)
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    order += [i for i in range(len(graph.node)) if i not in set(order)]  # a cycle: keep the file's order
    return [graph.node[i] for i in order]


def _subgraph_tensors(graph: onnx.GraphProto) -> list[str]:
    names: list[str] = []
    for node in graph.node:
        for attr in node.attribute:
            for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names += [o for sub in iter_graphs(g) for n in sub.node for o in n.output if o]
    return names


@dataclass(frozen=True)
class Marked:
    """A model with tensors marked as graph outputs (:func:`mark_outputs`)."""

    model: OnnxModel
    order: tuple[tuple[str, str], ...]
    """``(tensor, op)`` of every tensor of the top-level graph, topologically."""
    marked: tuple[str, ...]
    skip_reasons: tuple[tuple[str, str], ...]


def mark_outputs(model: ModelSource | OnnxModel, tensors: Sequence[str] | None = None) -> Marked:
    """A copy of ``model`` with ``tensors`` (default: every tensor a top-level node computes, but Constant
    outputs) added as graph outputs, typed by ONNX shape inference.

    Raises:
        ConfigError: a name in ``tensors`` is no tensor of the model.
    """
    onnx = deps.require("onnx", purpose="layer-wise comparison", install="pip install onnx")
    src = load_onnx(model)
    proto = src.proto_with_weights()
    graph = proto.graph
    nodes = _topological(graph)
    order = tuple((o, _op(n)) for n in nodes for o in n.output if o)
    inner = set(_subgraph_tensors(graph))
    skips: list[tuple[str, str]] = []
    if tensors is None:
        wanted = [name for (name, op) in order if op != "Constant"]
        skips += [(n, "inside a subgraph (If/Loop/Scan body): not compared") for n in sorted(inner)]
    else:
        known = {name for name, _ in order} | {v.name for v in graph.input}
        unknown = [t for t in tensors if t not in known and t not in inner]
        if unknown:
            raise ConfigError(f"no tensor named {', '.join(repr(safe(t)) for t in unknown)} in "
                              f"{safe(src.path or src.name)}; tensors are node outputs of its top-level graph")
        position = {name: i for i, (name, _) in enumerate(order)}
        wanted = sorted((t for t in dict.fromkeys(tensors) if t not in inner), key=lambda t: position.get(t, -1))
        skips += [(t, "inside a subgraph (If/Loop/Scan body): not compared") for t in tensors if t in inner]
    try:
        typed = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
        types = {v.name: v.type for v in [*typed.graph.value_info, *typed.graph.output, *typed.graph.input]}
    except Exception:  # shape inference fails on some models; ONNX Runtime takes untyped outputs
        types = {}
    present = {o.name for o in graph.output} | {v.name for v in graph.input}
    marked: list[str] = []
    for name in wanted:
        kind = types.get(name)
        if kind is not None and kind.WhichOneof("value") not in (None, "tensor_type"):
            skips.append((name, "not a tensor (a sequence or map)"))
            continue
        marked.append(name)
        if name in present:
            continue
        info = graph.output.add()
        info.name = name
        if kind is not None and kind.tensor_type.elem_type:
            info.type.tensor_type.elem_type = kind.tensor_type.elem_type
    return Marked(load_onnx(proto), order, tuple(marked), tuple(skips))


# ---- running -------------------------------------------------------------------------------------------------


def _tolerance_for(dtype: str, floor: str) -> Tolerance:
    """Exact for integers and booleans; for floats the coarser of ``floor`` and the dtype's precision."""
    own = _COARSENESS.get(dtype)
    if own is None:
        return _EXACT
    return DEFAULT_TOLERANCES[max(own, floor, key=_ORDER.index)]


def _floor(outputs: Mapping[str, Array]) -> str:
    found = {_COARSENESS.get(np.asarray(v).dtype.name, "fp32") for v in outputs.values()}
    return max(found | {"fp32"}, key=_ORDER.index)


def _engine_config(manifest: Manifest | None) -> tuple[BuildConfig, str]:
    cfg = manifest.config if manifest is not None else {}
    precision = str(cfg.get("precision", "fp32"))
    if precision in ("fp16", "bf16"):
        return BuildConfig(precision=precision), precision  # type: ignore[arg-type]
    tf32 = bool(cfg.get("tf32", True))
    return BuildConfig(precision="fp32", tf32=tf32), "tf32" if tf32 else "fp32"


def debug_build(marked: Marked, feeds: Mapping[str, Array], *, config: BuildConfig | None = None,
                backend: Backend) -> BuiltEngine:
    """Build the marked model as it is (never through the engine cache), with profiles at the feeds' shapes."""
    dynamic = {i.name for i in marked.model.inputs() if i.dynamic_axes}
    shapes = {n: tuple(np.asarray(v).shape) for n, v in feeds.items() if n in dynamic} or None
    return build_engine(marked.model, shapes=shapes, config=config, backend=backend, progress=False)


def _run_engine(built: BuiltEngine, feeds: Mapping[str, Array], backend: Backend) -> dict[str, Array]:
    with load_engine(built, backend=backend) as loaded, loaded.create_context() as context:
        return {name: np.array(v, copy=True) for name, v in context.infer(dict(feeds)).items()}


def _is_engine(candidate: object) -> bool:
    return isinstance(candidate, str | os.PathLike) and Path(candidate).suffix.lower() != ".onnx"


def compare_layerwise(
    reference: ModelSource | OnnxModel,
    candidate: ModelSource | OnnxModel | Path | None,
    feeds: Mapping[str, np.ndarray[Any, Any]],
    *,
    tensors: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
    backend: str | Backend | None = None,
) -> LayerwiseReport:
    """Compare ``candidate`` with ``reference`` tensor by tensor on ``feeds``.

    Args:
        reference: the ONNX model run on ONNX Runtime (CPU).
        candidate: a second ONNX model (run on ONNX Runtime too, e.g. an FP16 conversion), or an engine path
            (or None): then a debug engine is built from ``reference`` with the tensors marked as outputs, in
            the engine manifest's precision (None: FP32 with TF32), and run.
        feeds: input arrays by name (cast to each model's input types).
        tensors: the tensors to compare; default every tensor computed in the reference's top-level graph.
        tolerance: one tolerance for every tensor; default per tensor: exact for integers and booleans, for
            floats the default of the coarsest float type on the candidate side (``tf32`` for an engine).
        backend: the backend for the debug engine (default: the engine manifest's).

    Returns:
        A :class:`LayerwiseReport`; its ``reason`` says why nothing ran when no engine can run here.

    Raises:
        ConfigError: a tensor name is unknown, or the tolerance is not a Tolerance.
        InputError: ``feeds`` do not match the reference's inputs.
        ModelError: a model cannot be read or run.
    """
    if tolerance is not None and not isinstance(tolerance, Tolerance):
        raise ConfigError(f"tolerance must be a Tolerance, got {type(tolerance).__name__}")
    if isinstance(tensors, str):
        raise ConfigError("tensors must be a list of tensor names, not one string")
    ref = load_onnx(reference)
    names = [i.name for i in ref.inputs()]
    if sorted(feeds) != sorted(names):
        raise InputError(f"feeds {sorted(feeds)} do not match the inputs of {safe(ref.name)}: {names}")
    arrays = {n: np.asarray(v) for n, v in feeds.items()}
    ref_marked = mark_outputs(ref, tensors)
    notes: list[str] = []
    if _is_engine(candidate) or candidate is None:
        manifest = read_engine_file(Path(candidate))[1] if isinstance(candidate, str | os.PathLike) else None
        config, floor = _engine_config(manifest)
        try:
            be = get_backend(backend if backend is not None else (manifest.backend if manifest else None))
        except DependencyError as exc:
            return LayerwiseReport((), None, (), (FUSION_NOTE,), reason=exc.message)
        blocker = run_blocker(be)
        if blocker is not None:
            return LayerwiseReport((), None, (), (FUSION_NOTE,), reason=blocker)
        recorded = manifest.onnx.get("sha256") if manifest is not None else None
        if recorded and recorded != ref.sha256:
            notes.append("the engine's manifest records another ONNX model; the debug engine is built from the "
                         "reference model, with the engine's precision")
        try:
            actual = _run_engine(debug_build(ref_marked, arrays, config=config, backend=be), arrays, be)
        except EngineIncompatibleError as exc:
            return LayerwiseReport((), None, (), (FUSION_NOTE,), reason=exc.message)
        notes.append(FUSION_NOTE)
        cand_marked = ref_marked
    else:
        cand = load_onnx(candidate)
        selected = None
        if tensors is not None:
            theirs = {o for n in cand.proto.graph.node for o in n.output} | {v.name for v in cand.proto.graph.input}
            selected = [t for t in ref_marked.marked if t in theirs]
        cand_marked = mark_outputs(cand, selected)
        actual = dict(run_onnxruntime(cand_marked.model, arrays))
        floor = _floor(actual)
        notes.append("both sides on ONNX Runtime (CPU) with every compared tensor marked as an output")
    expected = dict(run_onnxruntime(ref_marked.model, arrays))
    return _judge(ref_marked, cand_marked, expected, actual, tolerance, floor, notes)


def _judge(ref: Marked, cand: Marked, expected: Mapping[str, Array], actual: Mapping[str, Array],
           tolerance: Tolerance | None, floor: str, notes: list[str]) -> LayerwiseReport:
    ops = dict(ref.order)
    skips = list(ref.skip_reasons)
    rows: list[TensorComparison] = []
    for name in ref.marked:
        if name not in expected:
            continue
        ref_value = np.asarray(expected[name])
        if name not in actual:
            skips.append((name, "on the reference side only"))
            continue
        got = np.asarray(actual[name])
        if not (np.issubdtype(got.dtype, np.number) or got.dtype == np.bool_) or ref_value.dtype.kind not in "biuf":
            skips.append((name, f"not numeric ({got.dtype.name})"))
            continue
        tol = tolerance or _tolerance_for(got.dtype.name, floor)
        c: OutputComparison = compare_outputs({name: got}, {name: ref_value}, tolerance=tol)[0]
        rows.append(TensorComparison(name, ops.get(name, "graph input"), c.max_abs, c.max_rel, c.cosine,
                                     c.status != "fail", tuple(ref_value.shape), got.dtype.name, c.status,
                                     c.failures, tol))
    skips += [(n, "on the candidate side only") for n in cand.marked if n in actual and n not in ops]
    first = next((t for t in rows if not t.passed), None)
    return LayerwiseReport(tuple(rows), first, tuple(n for n, _ in skips), tuple(notes), tuple(skips))
