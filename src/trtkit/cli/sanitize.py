"""``trtkit sanitize MODEL -o OUT.onnx``: prepare a graph for TensorRT's parser and save it, as
``polygraphy surgeon sanitize`` does (opset upgrade, frozen inputs, fixed shapes, constant folding, rewrites)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import click

from trtkit.builder import BuildConfig
from trtkit.builder.model import OnnxModel, iter_graphs, load_onnx, save_onnx
from trtkit.builder.preparation import check_freeze, prepare_options
from trtkit.builder.prepare import prepare
from trtkit.cli._options import echo_json, parse_freeze
from trtkit.profiles import profiles_from_trtexec
from trtkit.text import safe


def _ops(model: OnnxModel) -> Counter[str]:
    """Op types of every node, subgraphs included."""
    return Counter(node.op_type for graph in iter_graphs(model.proto.graph) for node in graph.node)


def _opset(model: OnnxModel) -> int | None:
    return model.opsets().get("ai.onnx")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{safe(op)} x{n}" for op, n in counter.most_common()) or "none"


@click.command("sanitize")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The prepared model to write (never the input).")
@click.option("--freeze", multiple=True, metavar="NAME:VALUE",
              help="Replace an input by a constant (repeatable): VALUE a number, a comma list or JSON, e.g. sr:16000.")
@click.option("--shapes", multiple=True, metavar="SPEC",
              help="Input shapes, trtexec syntax (x:1x3x224x224,y:...): the dims they fix become static.")
@click.option("--fold/--no-fold", default=True, show_default=True,
              help="Constant folding, shape inference and dead-node removal.")
@click.option("--upgrade-opset", type=int, default=None, metavar="N",
              help="Convert to this opset (default: only when below what TensorRT's parser takes).")
@click.option("--lower-dynamic-quant", is_flag=True,
              help="DynamicQuantizeLinear + ConvInteger/MatMulInteger become float Conv/MatMul.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sanitize_command(model: Path, output: Path, freeze: tuple[str, ...], shapes: tuple[str, ...], fold: bool,
                     upgrade_opset: int | None, lower_dynamic_quant: bool, as_json: bool) -> int:
    """Prepare MODEL for TensorRT's ONNX parser and write it to OUTPUT.

    Prints nodes before and after, the ops removed, the opset and each step taken.
    """
    config = BuildConfig(sanitize="always", freeze=parse_freeze(freeze), upgrade_opset=upgrade_opset,
                         lower_dynamic_quant=lower_dynamic_quant)
    profiles = profiles_from_trtexec(shapes, (), (), ())
    onnx_model = load_onnx(model)
    onnx_model.refuse_onnx_overwrite(output, what="the sanitized model")
    check_freeze(config, onnx_model, profiles)
    started = time.perf_counter()
    prepared = prepare(onnx_model, replace(prepare_options(config), fold=fold), profiles)
    seconds = time.perf_counter() - started
    save_onnx(prepared.model.proto_with_weights(), output)

    before, after = _ops(onnx_model), _ops(prepared.model)
    removed, added = before - after, after - before
    summary = {
        "model": str(model),
        "output": str(output),
        "seconds": round(seconds, 3),
        "nodes": {"before": sum(before.values()), "after": sum(after.values())},
        "opset": {"before": _opset(onnx_model), "after": _opset(prepared.model)},
        "ops_removed": dict(removed.most_common()),
        "ops_added": dict(added.most_common()),
        "steps": list(prepared.steps),
        "record": prepared.record,
    }
    if as_json:
        echo_json(summary)
        return 0
    lines = [
        f"sanitized {safe(model)} -> {safe(output)} in {seconds:.2f} s",
        f"  nodes: {sum(before.values())} -> {sum(after.values())} (subgraphs included); "
        f"opset {_opset(onnx_model)} -> {_opset(prepared.model)}",
        f"  ops removed: {_counts(removed)}",
    ]
    if added:
        lines.append(f"  ops added: {_counts(added)}")
    lines += [f"  - {safe(step)}" for step in prepared.steps] or ["  nothing to change"]
    click.echo("\n".join(lines))
    return 0
