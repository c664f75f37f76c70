"""Graph rewrites for :mod:`trtkit.builder.prepare`: each keeps the model's ONNX meaning and changes a form
TensorRT's parser rejects.

- :func:`inline_constant_ifs`: an ``If`` whose condition is a constant becomes the branch taken.
- :func:`apply_rewrites`: PReLU slopes of shape ``[C]`` meant per channel become ``[C, 1, ...]``.
- :func:`lower_dynamic_quant`: DynamicQuantizeLinear + ConvInteger/MatMulInteger become float Conv/MatMul with
  dequantized weights (opt-in: the results differ from ONNX Runtime's by the activation quantization error).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from trtkit.deps import require

if TYPE_CHECKING:
    import numpy as np
    import onnx

__all__ = ["apply_rewrites", "inline_constant_ifs", "lower_dynamic_quant"]


def _onnx() -> ModuleType:
    return require("onnx", purpose="preparing ONNX models", install="pip install onnx")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray[Any, Any]]:
    """Initializers and ``Constant`` outputs of ``graph`` (those holding a plain tensor), as arrays."""
    _onnx()
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value" and attr.HasField("t"):
                out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def _names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {v.name for v in graph.output}
    for node in graph.node:
        names.update(node.output)
        names.update(node.input)
    return names


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


# --- If with a constant condition ----------------------------------------------------------------------------


def _inline(node: onnx.NodeProto, branch: onnx.GraphProto, taken: set[str]) -> tuple[list[onnx.NodeProto],
                                                                                       list[onnx.TensorProto]]:
    from onnx import helper

    produced = {t.name for t in branch.initializer} | {o for n in branch.node for o in n.output if o}
    rename = {name: _fresh(name, taken) for name in sorted(produced) if name in taken}
    nodes: list[onnx.NodeProto] = []
    for n in branch.node:
        copy = type(n)()
        copy.CopyFrom(n)
        for i, name in enumerate(copy.input):
            copy.input[i] = rename.get(name, name)
        for i, name in enumerate(copy.output):
            copy.output[i] = rename.get(name, name)
        nodes.append(copy)
    inits = []
    for t in branch.initializer:
        copy_t = type(t)()
        copy_t.CopyFrom(t)
        copy_t.name = rename.get(t.name, t.name)
        inits.append(copy_t)
    taken.update(produced)
    for out, result in zip(branch.output, node.output, strict=False):
        if result:
            nodes.append(helper.make_node("Identity", [rename.get(out.name, out.name)], [result],
                                          name=_fresh(f"{node.name or 'If'}_inlined", taken)))
    return nodes, inits


def inline_constant_ifs(graph: onnx.GraphProto) -> int:
    """Replace each ``If`` of ``graph`` whose condition is a constant by the branch taken; returns how many."""
    consts = _constants(graph)
    taken = _names(graph)
    count = 0
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        cond = consts.get(node.input[0]) if node.op_type == "If" and node.input else None
        if cond is None or cond.size != 1:
            new_nodes.append(node)
            continue
        name = "then_branch" if bool(cond.reshape(())) else "else_branch"
        branch = next((a.g for a in node.attribute if a.name == name), None)
        if branch is None:
            new_nodes.append(node)
            continue
        nodes, inits = _inline(node, branch, taken)
        new_nodes.extend(nodes)
        graph.initializer.extend(inits)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
    for node in graph.node:  # nested graphs: an inner If on an outer constant stays (its scope differs)
        for attr in node.attribute:
            if attr.HasField("g"):
                count += inline_constant_ifs(attr.g)
    return count


# --- PReLU slopes --------------------------------------------------------------------------------------------


def _shapes(proto: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name -> dims (``-1`` unknown) after ONNX shape inference; ranks unknown are left out."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # inference is a help; without it, only graph inputs have shapes
        inferred = proto
    g = inferred.graph
    out: dict[str, list[int]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        tt = v.type.tensor_type
        if v.type.HasField("tensor_type") and tt.HasField("shape"):
            out[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    return out


def _broadcasts(slope: tuple[int, ...], shape: list[int]) -> bool:
    """Whether ``slope`` broadcasts to ``shape`` one way (unknown dims are taken to match)."""
    if len(slope) > len(shape):
        return False
    return all(s == 1 or d < 0 or s == d for s, d in zip(reversed(slope), reversed(shape), strict=False))


def _prelu_slopes(proto: onnx.ModelProto, legacy: bool) -> int:
    """Reshape per-channel PReLU slopes ``[C]`` to ``[C, 1, ...]`` where they are meant per channel: in a model
    below opset 7 (whose PRelu took ``[C]`` per channel), or where ``[C]`` does not broadcast to the input."""
    _onnx()
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = _shapes(proto)
    taken = _names(graph)
    count = 0
    for node in graph.node:
        if node.op_type != "PRelu" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        slope = numpy_helper.to_array(inits[node.input[1]])
        shape = shapes.get(node.input[0])
        if shape is None or len(shape) < 3 or slope.ndim != 1 or slope.size <= 1:
            continue
        c = slope.size
        if shape[1] not in (-1, c) or (not legacy and _broadcasts(slope.shape, shape)):
            continue
        new = numpy_helper.from_array(slope.reshape((c,) + (1,) * (len(shape) - 2)),
                                      _fresh(f"{node.input[1]}_per_channel", taken))
        graph.initializer.append(new)
        node.input[1] = new.name
        count += 1
    return count


def apply_rewrites(proto: onnx.ModelProto, *, legacy: bool = False) -> list[str]:
    """Apply the small rewrites to ``proto`` in place; one line per kind that changed something.

    ``legacy``: the model came from an opset below 7, whose per-channel forms differ.
    """
    steps = []
    prelu = _prelu_slopes(proto, legacy)
    if prelu:
        steps.append(f"reshaped {prelu} per-channel PRelu slope(s) to [C, 1, ...] so they broadcast")
    return steps


# --- dynamic quantization ------------------------------------------------------------------------------------


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _lowerable(dql: onnx.NodeProto, graph: onnx.GraphProto, uses: dict[str, list[onnx.NodeProto]],
               consts: dict[str, Any]) -> list[onnx.NodeProto] | None:
    """The ConvInteger/MatMulInteger nodes fed by ``dql`` when every use of its ``y``/``zero_point`` can be
    lowered (weights constant, results only cast to float), else None."""
    onnx = _onnx()
    outputs = {v.name for v in graph.output}
    y = dql.output[0]
    zp = dql.output[2] if len(dql.output) > 2 else ""
    if y in outputs or (zp and zp in outputs):
        return None
    nodes = uses.get(y, [])
    if not nodes:
        return None
    for n in nodes:
        if n.op_type not in ("ConvInteger", "MatMulInteger") or n.input[0] != y or y in n.input[1:]:
            return None
        if len(n.input) < 2 or n.input[1] not in consts:
            return None
        if len(n.input) > 2 and n.input[2] not in ("", zp):
            return None
        if len(n.input) > 3 and n.input[3] and n.input[3] not in consts:
            return None
        users = uses.get(n.output[0], [])
        if n.output[0] in outputs or not users or not all(
                u.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in u.attribute)
                for u in users):
            return None
    if zp and any(u not in nodes for u in uses.get(zp, [])):
        return None
    return nodes


def _lower_one(dql: onnx.NodeProto, nodes: list[onnx.NodeProto], uses: dict[str, list[onnx.NodeProto]],
               consts: dict[str, Any], taken: set[str], inits: list[onnx.TensorProto]
               ) -> tuple[list[onnx.NodeProto], dict[str, onnx.NodeProto]]:
    """The float nodes replacing ``dql`` (placed where it was) and each lowered node (placed where it was)."""
    import numpy as np
    from onnx import helper, numpy_helper

    x = dql.input[0]
    base = dql.name or x
    scale = dql.output[1] if len(dql.output) > 1 and dql.output[1] else _fresh(f"{base}_scale", taken)

    def new(stem: str) -> str:
        return _fresh(f"{base}_{stem}", taken)

    zero, step, tiny = new("zero"), new("levels"), new("tiny")
    inits += [numpy_helper.from_array(np.array(0, np.float32), zero),
              numpy_helper.from_array(np.array(255, np.float32), step),
              numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, np.float32), tiny)]
    hi, lo, rmax, rmin, span, safe, xs = (new(s) for s in ("hi", "lo", "max", "min", "span", "safe", "scaled"))
    head = [
        helper.make_node("ReduceMax", [x], [rmax], keepdims=0, name=new("ReduceMax")),
        helper.make_node("ReduceMin", [x], [rmin], keepdims=0, name=new("ReduceMin")),
        helper.make_node("Max", [rmax, zero], [hi], name=new("Max")),
        helper.make_node("Min", [rmin, zero], [lo], name=new("Min")),
        helper.make_node("Sub", [hi, lo], [span], name=new("Sub")),
        # the scale DynamicQuantizeLinear computes: (max(x, 0) - min(x, 0)) / 255
        helper.make_node("Div", [span, step], [scale], name=new("Div")),
        helper.make_node("Max", [scale, tiny], [safe], name=new("MaxTiny")),
        helper.make_node("Div", [x, safe], [xs], name=new("Scale")),
    ]
    lowered: dict[str, onnx.NodeProto] = {}
    for n in nodes:
        w = np.asarray(consts[n.input[1]]).astype(np.float32)
        wzp = np.asarray(consts[n.input[3]]).astype(np.float32) if len(n.input) > 3 and n.input[3] else np.float32(0)
        if n.op_type == "ConvInteger" and wzp.ndim == 1:
            wzp = wzp.reshape((-1,) + (1,) * (w.ndim - 1))  # one zero point per output channel
        wname = _fresh(f"{n.input[1]}_dequantized", taken)
        inits.append(numpy_helper.from_array((w - wzp).astype(np.float32), wname))
        out = _fresh(f"{n.output[0]}_float", taken)
        op = "Conv" if n.op_type == "ConvInteger" else "MatMul"
        node = helper.make_node(op, [xs, wname], [out], name=n.name or _fresh(op, taken))
        node.attribute.extend(a for a in n.attribute)
        lowered[n.output[0]] = node
        for cast in uses[n.output[0]]:  # Cast(to=float) of the int32 result becomes Identity of the float one
            cast.op_type = "Identity"
            del cast.attribute[:]
            cast.input[0] = out
    return head, lowered


def lower_dynamic_quant(proto: onnx.ModelProto) -> list[str]:
    """Lower DynamicQuantizeLinear + ConvInteger/MatMulInteger in ``proto``'s main graph to float Conv/MatMul.

    ``Conv((x / s), W_q - zp_w)`` equals ``ConvInteger(q(x), W_q, zp_x, zp_w)`` up to the rounding of ``q(x)``,
    and the graph's following ``Cast`` and ``Mul`` by ``s * s_w`` stay as they are.
    """
    graph = proto.graph
    consts = _constants(graph)
    uses = _consumers(graph)
    taken = _names(graph)
    inits: list[onnx.TensorProto] = []
    replace: dict[int, list[onnx.NodeProto]] = {}
    lowered_ops = 0
    skipped = 0
    for node in list(graph.node):
        if node.op_type != "DynamicQuantizeLinear":
            continue
        targets = _lowerable(node, graph, uses, consts)
        if targets is None:
            skipped += 1
            continue
        head, lowered = _lower_one(node, targets, uses, consts, taken, inits)
        replace[id(node)] = head
        for n in targets:
            replace[id(n)] = [lowered[n.output[0]]]
        lowered_ops += len(targets)
    if not replace:
        return [f"left {skipped} DynamicQuantizeLinear node(s): their uses are not ConvInteger/MatMulInteger "
                "with constant weights cast to float"] if skipped else []
    new_nodes = [m for n in graph.node for m in replace.get(id(n), [n])]
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(inits)
    line = (f"lowered {lowered_ops} ConvInteger/MatMulInteger node(s) with dynamic quantization to float "
            "(results differ from ONNX Runtime's by the quantization error)")
    return [line] + ([f"left {skipped} DynamicQuantizeLinear node(s) that could not be lowered"] if skipped else [])

