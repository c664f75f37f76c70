"""``trtkit compare MODEL.onnx [ENGINE|MODEL2.onnx]``: outputs against ONNX Runtime, with a CI-friendly exit status."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.cli._options import echo_json
from trtkit.tools.compare import DEFAULT_TOLERANCES, compare
from trtkit.tools.inputs import parse_val_range

_EPILOG = (
    "Exit status: 0 every output within tolerance, 1 error, 2 usage error, 3 the engine cannot run on this "
    "machine (reason printed), 4 outputs differ beyond tolerance, 5 not checked: no output failed but an "
    "output's reference is all within atol of zero, so nothing meaningful was compared (not a pass; feed other "
    "inputs or lower --atol). Default tolerances: "
    + "; ".join(f"{k}: {t.describe()}" for k, t in DEFAULT_TOLERANCES.items())
    + "."
)


@click.command("compare", epilog=_EPILOG)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("candidate", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--load-inputs", "--inputs", "inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE.npz",
              help="Inputs by name from an .npz file (default: random, from --seed); one saved from another model "
                   "is refused.")
@click.option("--data-loader", "data_loader", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="SCRIPT.py[:FUNC]",
              help="A script whose load_data() (or FUNC) yields dicts of input name -> array; the first is used.")
@click.option("--save-inputs", "save_inputs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.npz", help="Write the inputs fed, with MODEL's checksum.")
@click.option("--save-outputs", "save_outputs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.npz", help="Write the reference outputs, with MODEL's and the inputs' checksums.")
@click.option("--load-outputs", "load_outputs", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE.npz",
              help="Use reference outputs saved by --save-outputs (from MODEL and these inputs) instead of running "
                   "MODEL.")
@click.option("--layerwise", is_flag=True,
              help="Also compare every intermediate tensor (engine side: a debug build with them marked as "
                   "outputs) and show the first beyond tolerance; the exit status stays that of the outputs.")
@click.option("--tensors", default=None, metavar="A,B,...", help="With --layerwise: only these tensors.")
@click.option("--shapes", default=None, metavar="SPEC",
              help="Shapes for dynamic dims, trtexec syntax: x:1x3x224x224[,y:...] "
                   "(default: the opt shapes of the engine's first profile).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed for generated inputs.")
@click.option("--val-range", "--valRange", "val_range", multiple=True, metavar="[NAME:]LO,HI",
              help="Range of generated inputs: floats uniform in [LO, HI), integers uniform over the integers in "
                   "[LO, HI]; NAME:LO,HI or NAME:[LO,HI] for one input (repeatable; the name ends at the last "
                   "':'). Default: floats standard normal; integers by use: indices in [0, size of the indexed "
                   "axis), shape-like inputs the engine profile's values, others in [0, 8).")
@click.option("--precision", type=click.Choice(["auto", *DEFAULT_TOLERANCES]), default="auto", show_default=True,
              help="Picks the default tolerances; auto reads the engine manifest (int8/fp8 for a Q/DQ model, "
                   "tf32 for an FP32 build with TF32), tf32 when building, fp32 for two ONNX models.")
@click.option("--rtol", type=click.FloatRange(min=0), default=None, help="Relative tolerance (overrides).")
@click.option("--atol", type=click.FloatRange(min=0), default=None, help="Absolute tolerance (overrides).")
@click.option("--backend", default=None, metavar="NAME",
              help="tensorrt or tensorrt_rtx (default: the engine manifest's backend).")
@click.option("--allow-other-model", "allow_other_model", is_flag=True,
              help="Compare an engine whose manifest records another ONNX model than MODEL (e.g. one built from "
                   "a quantized copy); refused by default.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def compare_command(model: Path, candidate: Path | None, inputs: Path | None, data_loader: str | None,
                    save_inputs: Path | None, save_outputs: Path | None, load_outputs: Path | None,
                    layerwise: bool, tensors: str | None, shapes: str | None, seed: int,
                    val_range: tuple[str, ...], precision: str, rtol: float | None, atol: float | None,
                    backend: str | None, allow_other_model: bool, as_json: bool) -> int:
    """Compare CANDIDATE with ONNX Runtime (CPU) running MODEL on the same inputs.

    CANDIDATE is an engine file, or a second .onnx model (an FP16 conversion, say) also run with ONNX Runtime.
    Without CANDIDATE, an engine is built from MODEL and compared, when this machine can run engines.
    Reports per output the max absolute and relative error, the mean absolute error, the elements outside
    tolerance (|a - b| <= atol + rtol * |b|, as numpy.isclose) and the cosine similarity. An output passes
    when it has the reference's shape, no NaN/inf where the reference has none, at most the precision's
    max-mismatch fraction of elements outside tolerance, and a cosine of at least its min-cosine. An output
    whose reference is all within atol of zero is NOT CHECKED (exit 5), not passed.

    Before running, an engine's manifest must name MODEL (its ONNX sha256; --allow-other-model to compare
    anyway) and the input shapes must lie inside the engine's profiles.

    References across machines: --save-inputs in.npz --save-outputs ref.npz where ONNX Runtime runs, then
    --load-inputs in.npz --load-outputs ref.npz on the GPU machine; files made from another model are refused.
    """
    report = compare(
        model, candidate, inputs=inputs, shapes=shapes, seed=seed, val_range=parse_val_range(val_range),
        precision=None if precision == "auto" else precision,  # type: ignore[arg-type]
        rtol=rtol, atol=atol, backend=backend, allow_other_model=allow_other_model, data_loader=data_loader,
        save_inputs=save_inputs, save_outputs=save_outputs, load_outputs=load_outputs, layerwise=layerwise,
        tensors=[t.strip() for t in tensors.split(",") if t.strip()] if tensors is not None else None,
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.format())
    return report.exit_code
