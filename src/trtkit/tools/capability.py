"""Which nodes of an ONNX model TensorRT's parser supports: ``trtkit inspect --capability``.

TensorRT's parser partitions a model with ``supports_model_v2`` into subgraphs of nodes it can import
(``num_subgraphs``, ``get_subgraph_nodes``; ``is_subgraph_supported`` says whether it also parsed the subgraph as
a whole, which it does only for a model it supports entirely). The nodes left out are grouped here into runs of
consecutive nodes (in the graph's topological order), each with the parser's reason. Only the parser
runs: no engine is built and no GPU is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from trtkit.backend import Backend, get_backend
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.errors import BuildError

__all__ = ["CapabilityReport", "NodeGroup", "check_capability"]

_NO_IMPORTER = ("Plugin not found", "No importer registered")


@dataclass(frozen=True)
class NodeGroup:
    """Nodes (indices into the model's top-level graph) that the parser supports, or not, together."""

    supported: bool
    nodes: tuple[int, ...]
    ops: dict[str, int]
    reasons: tuple[str, ...] = ()
    verified: bool = False
    """For a supported subgraph: the parser also parsed it as a whole (``is_subgraph_supported``). TensorRT
    leaves this False for every subgraph of a model it does not support as a whole."""

    def to_dict(self) -> dict[str, object]:
        return {"supported": self.supported, "verified": self.verified, "nodes": list(self.nodes),
                "first": self.nodes[0] if self.nodes else None, "last": self.nodes[-1] if self.nodes else None,
                "ops": dict(self.ops),
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class CapabilityReport:
    """What ``supports_model_v2`` said about a model: supported subgraphs and unsupported node groups."""

    model: str
    backend: str
    nodes: int
    supported: bool
    groups: tuple[NodeGroup, ...]
    """Supported subgraphs and unsupported groups, ordered by their first node."""

    @property
    def supported_groups(self) -> tuple[NodeGroup, ...]:
        return tuple(g for g in self.groups if g.supported)

    @property
    def unsupported_groups(self) -> tuple[NodeGroup, ...]:
        return tuple(g for g in self.groups if not g.supported)

    @property
    def supported_nodes(self) -> int:
        return sum(len(g.nodes) for g in self.supported_groups)

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "backend": self.backend, "nodes": self.nodes, "supported": self.supported,
                "supported_nodes": self.supported_nodes, "subgraphs": [g.to_dict() for g in self.groups]}

    def format(self) -> str:
        """A short text report: one line per subgraph, reasons under the unsupported ones."""
        verdict = "fully supported" if self.supported else (
            f"{self.supported_nodes} of {self.nodes} nodes supported, in {len(self.supported_groups)} subgraph(s); "
            f"{self.nodes - self.supported_nodes} not, in {len(self.unsupported_groups)} group(s)")
        lines = [f"capability of {self.model} with {self.backend}: {self.nodes} nodes, {verdict}"]
        for g in self.groups:
            span = f"node {g.nodes[0]}" if len(g.nodes) == 1 else f"nodes {g.nodes[0]}-{g.nodes[-1]}"
            if len(g.nodes) > 1 and g.nodes[-1] - g.nodes[0] + 1 != len(g.nodes):
                span += f" ({len(g.nodes)} of them)"
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(g.ops.items(), key=lambda kv: (-kv[1], kv[0])))
            label = ("supported  " if g.verified else "supported* ") if g.supported else "UNSUPPORTED"
            lines.append(f"  {label} {span}: {ops}")
            lines.extend(f"      reason: {r}" for r in g.reasons)
        if any(g.supported and not g.verified for g in self.groups):
            lines.append("  * the parser imports every node of this subgraph, but did not parse it as a whole "
                         "(TensorRT checks whole subgraphs only when the model is supported entirely)")
        return "\n".join(lines)


def _runs(indices: Sequence[int]) -> list[list[int]]:
    """Consecutive runs of sorted node indices."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _reason(op: str, desc: str) -> str:
    if not desc.strip() or desc.strip() == "false" or any(s in desc for s in _NO_IMPORTER):
        return f"{op}: the parser has no importer for it and no loaded plugin implements it"
    return f"{op}: {desc.strip()}"


def check_capability(model: ModelSource | OnnxModel, *, backend: str | Backend | None = None) -> CapabilityReport:
    """Ask TensorRT's parser which nodes of ``model`` it supports; no engine is built, no GPU is used.

    Raises:
        ModelError: the model cannot be read.
        BuildError: the backend could not create a network and parser.
    """
    m = load_onnx(model)
    be = get_backend(backend)
    be.init_plugins()
    builder = be.create_builder()
    with be.capture():
        network = builder.create_network(0)
        parser = be.trt.OnnxParser(network, be.logger) if network is not None else None
    if network is None or parser is None:
        raise BuildError(f"{be.label} could not create a network definition and ONNX parser")
    nodes = list(m.proto.graph.node)
    path = str(m.path) if m.path is not None else None
    with be.capture():
        ok = bool(parser.supports_model_v2(m.serialized(), path)) if path else bool(
            parser.supports_model_v2(m.serialized()))
    groups: list[NodeGroup] = []
    covered: set[int] = set()
    for s in range(int(parser.num_subgraphs)):
        members = tuple(sorted(int(i) for i in parser.get_subgraph_nodes(s)))
        if not members:
            continue
        covered.update(members)
        groups.append(NodeGroup(True, members, dict(Counter(nodes[i].op_type for i in members if i < len(nodes))),
                                verified=bool(parser.is_subgraph_supported(s))))
    errors: dict[int, list[str]] = {}
    for e in range(int(parser.num_errors)):
        err = parser.get_error(e)
        idx = int(err.node())
        reason = _reason(err.node_operator() or (nodes[idx].op_type if 0 <= idx < len(nodes) else "?"), err.desc())
        if reason not in errors.setdefault(idx, []):
            errors[idx].append(reason)
    for run in _runs([i for i in range(len(nodes)) if i not in covered]):
        reasons: list[str] = []
        for i in run:
            for r in errors.get(i, []):
                line = f"node {i} {nodes[i].name!r} {r}" if nodes[i].name else f"node {i} {r}"
                if line not in reasons:
                    reasons.append(line)
        if not reasons:
            missing = sorted({nodes[i].op_type for i in run if not parser.supports_operator(nodes[i].op_type)})
            reasons = ([f"the parser does not support {', '.join(missing)} (supports_operator)"] if missing else
                       ["left out of every supported subgraph; the parser gave no reason (often a node next to an "
                        "unsupported one, or a shape it cannot resolve)"])
        groups.append(NodeGroup(False, tuple(run), dict(Counter(nodes[i].op_type for i in run)), tuple(reasons)))
    groups.sort(key=lambda g: g.nodes[0])
    return CapabilityReport(model=m.name, backend=be.label, nodes=len(nodes),
                            supported=ok and len(covered) == len(nodes), groups=tuple(groups))
