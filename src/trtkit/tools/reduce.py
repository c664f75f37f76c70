"""Reduce a failing ONNX model to a small subgraph that fails the same way: ``trtkit debug reduce``.

The nodes (``Constant`` nodes aside: they follow their consumers, as initializers) are bisected in topological
order, as ``polygraphy debug reduce`` does: the shortest failing prefix, then the shortest failing suffix of that,
then the failing node's ancestors, then single nodes are dropped while the failure stays. A subgraph's inputs
are the tensors its nodes read and do not make, typed from ONNX shape inference; its outputs are the tensors
its nodes make and do not read. The failure must stay the same: for ``parse`` the parser must still reject the
first op it rejected (same error code), for ``build`` the build must still fail after a clean parse.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from trtkit.backend import Backend, get_backend
from trtkit.builder.build import build_engine
from trtkit.builder.config import BuildConfig
from trtkit.builder.diagnostics import parse_into
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.deps import require
from trtkit.errors import (
    BuildCancelledError,
    BuildError,
    ConfigError,
    ModelError,
    OnnxParseError,
    TrtkitError,
    UnsupportedFeatureError,
)
from trtkit.runtime.compat import run_blocker
from trtkit.tools.compare import compare
from trtkit.tools.inputs import shapes_arg

if TYPE_CHECKING:
    import onnx

__all__ = ["FailsWhen", "ReduceReport", "reduce_model"]

FailsWhen = Literal["parse", "build", "compare"]
_ONNX_INSTALL = "pip install onnx"


@dataclass(frozen=True)
class ReduceReport:
    """What :func:`reduce_model` found: the reduced model and how it got there."""

    model: str
    fails_when: str
    failure: str
    """The original failure, one line."""
    nodes_before: int
    nodes_after: int
    ops: dict[str, int]
    """Op counts of the reduced model (its ``Constant`` nodes became initializers)."""
    checks: int
    """How many candidate subgraphs were tried."""
    seconds: float
    proto: onnx.ModelProto = field(repr=False, compare=False)

    def format(self) -> str:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])))
        return (f"reduced {self.model} from {self.nodes_before} to {self.nodes_after} node(s) that still fail to "
                f"{self.fails_when} ({self.checks} checks, {self.seconds:.1f} s); ops left: {ops}\n"
                f"  failure: {self.failure}")

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "fails_when": self.fails_when, "failure": self.failure,
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after, "ops": dict(self.ops),
                "checks": self.checks, "seconds": round(self.seconds, 3)}


def _first_line(error: TrtkitError) -> str:
    return str(error.message).splitlines()[0] if error.message else type(error).__name__


class _Graph:
    """The model's top-level graph, indexed for cutting subgraphs out of it."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.onnx = require("onnx", purpose="reducing a model", install=_ONNX_INSTALL)
        self.proto = proto
        g = proto.graph
        self.nodes = list(g.node)
        inferred = self.onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
        ig = inferred.graph
        self.types = {v.name: v for v in (*ig.value_info, *ig.input, *ig.output)}
        self.inits = {t.name: t for t in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.maker = {out: i for i, n in enumerate(self.nodes) for out in n.output if out}
        self.reads = [set(self._reads(n)) for n in self.nodes]
        self.candidates = [i for i, n in enumerate(self.nodes) if not self._constant(n)]

    @staticmethod
    def _constant(node: onnx.NodeProto) -> bool:
        return node.op_type == "Constant" and node.domain in ("", "ai.onnx") and not node.input

    def _reads(self, node: onnx.NodeProto) -> Iterator[str]:
        """The tensors a node reads, its subgraphs' reads from the outer scope included."""
        yield from (x for x in node.input if x)
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                made = {x.name for x in (*sub.input, *sub.initializer)} | {o for n in sub.node for o in n.output}
                yield from (x for n in sub.node for x in self._reads(n) if x not in made)

    def ancestors(self, keep: Sequence[int], last: int) -> list[int]:
        chosen, todo, allowed = {last}, [last], set(keep)
        while todo:
            for name in self.reads[todo.pop()]:
                i = self.maker.get(name)
                if i is not None and i in allowed and i not in chosen:
                    chosen.add(i)
                    todo.append(i)
        return sorted(chosen)

    def subgraph(self, keep: Sequence[int]) -> onnx.ModelProto | None:
        """The model of the nodes ``keep`` (and the constants they read); None when a boundary has no type."""
        h = self.onnx.helper
        nodes = [self.nodes[i] for i in sorted(keep)]
        made = {o for n in nodes for o in n.output if o}
        read: list[str] = []
        for i in sorted(keep):
            read.extend(x for x in sorted(self.reads[i]) if x not in read)
        inits, inputs = [], []
        for name in read:
            if name in made:
                continue
            if name in self.inits:
                inits.append(self.inits[name])
                continue
            producer = self.maker.get(name)
            if producer is not None and self._constant(self.nodes[producer]):
                value = next((a for a in self.nodes[producer].attribute if a.name == "value"), None)
                if value is None:
                    nodes.insert(0, self.nodes[producer])
                    continue
                tensor = self.onnx.TensorProto()
                tensor.CopyFrom(value.t)
                tensor.name = name
                inits.append(tensor)
                continue
            if name not in self.types or not self.types[name].type.tensor_type.elem_type:
                return None
            inputs.append(self.types[name])
        consumed = {x for i in keep for x in self.reads[i]}
        outs = [o for n in nodes for o in n.output if o and (o not in consumed or o in self.outputs)]
        outputs = [self.types[o] if o in self.types else h.make_empty_tensor_value_info(o) for o in outs]
        graph = h.make_graph(nodes, f"{self.proto.graph.name or 'model'}_reduced", inputs, outputs, inits)
        model: onnx.ModelProto = h.make_model(graph, opset_imports=list(self.proto.opset_import),
                             producer_name="trtkit debug reduce")
        model.ir_version = self.proto.ir_version
        return model


def _fix_shapes(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
    names = {v.name: v for v in proto.graph.input}
    for name, shape in shapes.items():
        if name not in names:
            raise ConfigError(f"shapes name {name!r}, which is not an input of the model; its inputs: "
                              + ", ".join(repr(n) for n in names))
        dims = names[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ConfigError(f"shape {list(shape)} for input {name!r} has rank {len(shape)}; the model's has "
                              f"rank {len(dims)}")
        for d, n in zip(dims, shape, strict=True):
            d.Clear()
            d.dim_value = int(n)


def _checker(fails_when: FailsWhen, be: Backend, config: BuildConfig,
             shapes: Mapping[str, Sequence[int]]) -> Callable[[onnx.ModelProto], tuple[str, str] | None]:
    """A function returning the failure's key and message for a model that fails, None for one that does not."""
    def check(proto: onnx.ModelProto) -> tuple[str, str] | None:
        if fails_when == "parse":
            builder = be.create_builder()
            with be.capture():
                network = builder.create_network(0)
                parser = be.trt.OnnxParser(network, be.logger)
            try:
                parse_into(be, parser, load_onnx(proto))
            except OnnxParseError as exc:
                first = exc.issues[0] if exc.issues else None
                return (f"{first.op_type}/{first.code}" if first else "parse", _first_line(exc))
            except ModelError:
                return None  # another failure (an input TensorRT cannot take)
            return None
        if fails_when == "build":
            try:
                build_engine(proto, config=config, backend=be, progress=False)
            except BuildCancelledError:
                raise
            except OnnxParseError:
                return None
            except BuildError as exc:
                return ("build", _first_line(exc))
            except TrtkitError:
                return None  # another failure: shapes the subgraph's inputs need, an input TensorRT cannot take
            return None
        report = compare(proto, None, shapes=dict(shapes) or None, backend=be)
        return ("compare", report.format().splitlines()[0]) if report.status == "mismatch" else None
    return check


def reduce_model(model: ModelSource | OnnxModel, *, fails_when: FailsWhen = "parse",
                 shapes: str | Mapping[str, Sequence[int]] | None = None, config: BuildConfig | None = None,
                 backend: str | Backend | None = None) -> ReduceReport:
    """Bisect ``model`` down to a small subgraph that still fails the same way.

    Args:
        model: the failing ONNX model.
        fails_when: ``"parse"`` (TensorRT's parser rejects it), ``"build"`` (it parses, the build fails) or
            ``"compare"`` (the engine's outputs disagree with ONNX Runtime: needs a GPU the backend runs on).
        shapes: fixed input shapes (trtexec syntax or a mapping); written into the model first, so the
            subgraphs' inputs get static shapes (needed to build a model with dynamic dims).
        config: build options for ``"build"`` (graph preparation is turned off: the model is reduced as it is).
        backend: the TensorRT backend.

    Raises:
        ConfigError: ``fails_when`` is unknown, or the model does not fail that way.
        UnsupportedFeatureError: ``"compare"`` on a machine where no engine can run.
    """
    if fails_when not in get_args(FailsWhen):
        raise ConfigError(f"fails_when must be one of {', '.join(get_args(FailsWhen))}, got {fails_when!r}")
    be = get_backend(backend)
    if fails_when == "compare":
        reason = run_blocker(be)
        if reason is not None:
            raise UnsupportedFeatureError(f"reducing a model whose engine disagrees with ONNX Runtime runs an "
                                          f"engine for every candidate, and {reason}")
    started = time.perf_counter()
    m = load_onnx(model)
    proto = m.proto_with_weights()
    fixed = shapes_arg(shapes)
    _fix_shapes(proto, fixed)
    cfg = dataclasses.replace(config or BuildConfig(), sanitize="never")
    check = _checker(fails_when, be, cfg, fixed)
    original = check(proto)
    if original is None:
        raise ConfigError(f"{m.name} does not fail to {fails_when} with {be.label}"
                          + ("" if fails_when != "build" or fixed else
                             " (give --shapes when the model has dynamic inputs)") + ": nothing to reduce")
    graph = _Graph(proto)
    checks = 1

    def fails(keep: Sequence[int]) -> bool:
        nonlocal checks
        sub = graph.subgraph(keep) if keep else None
        if sub is None:
            return False
        checks += 1
        found = check(sub)
        return found is not None and found[0] == original[0]

    nodes = graph.candidates
    lo, hi = 1, len(nodes)
    while lo < hi:  # the shortest failing prefix
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(nodes[:mid]) else (mid + 1, hi)
    end = hi
    lo, hi = 0, end - 1
    while lo < hi:  # the shortest failing suffix of it
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fails(nodes[mid:end]) else (lo, mid - 1)
    keep = list(nodes[lo:end])
    if len(keep) > 1:
        if not fails(keep):
            keep = list(nodes[:end])
        near = graph.ancestors(keep, keep[-1])
        if len(near) < len(keep) and fails(near):
            keep = near
    for i in list(keep):
        if len(keep) > 1 and len(keep) <= 64 and fails([k for k in keep if k != i]):
            keep.remove(i)
    reduced = graph.subgraph(keep) if fails(keep) else None
    if reduced is None:  # the bisection's assumptions did not hold: keep the whole model
        reduced = proto
    ops = Counter(n.op_type for n in reduced.graph.node)
    return ReduceReport(model=m.name, fails_when=fails_when, failure=original[1],
                        nodes_before=len(proto.graph.node), nodes_after=len(reduced.graph.node), ops=dict(ops),
                        checks=checks, seconds=time.perf_counter() - started, proto=reduced)
