"""``trtkit quantize MODEL.onnx -o MODEL.int8.onnx --calib DATA``: an INT8/FP8 Q/DQ model calibrated on your data."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.builder.config import choices
from trtkit.builder.model import load_onnx
from trtkit.errors import ConfigError
from trtkit.profiles import profiles_from_trtexec
from trtkit.tools.quantize import Quantizer, QuantMethod, QuantPrecision, quantize
from trtkit.tools.report import EXIT_MISMATCH, EXIT_OK

_DATA_HELP = "an .npz (one array per input, samples on axis 0), a directory of NAME.npy, or a loader.py[:FUNC]"


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@click.command("quantize")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The Q/DQ model to write (never MODEL itself).")
@click.option("--calib", "calib", required=True, metavar="DATA", help=f"Calibration data: {_DATA_HELP}.")
@click.option("--precision", type=click.Choice(choices(QuantPrecision)), default="int8", show_default=True,
              help="int8 (ONNX Runtime or ModelOpt) or fp8 (ModelOpt).")
@click.option("--method", type=click.Choice(choices(QuantMethod)), default=None,
              help="Calibration method (default: minmax with ONNX Runtime, entropy with ModelOpt).")
@click.option("--exclude-ops", "exclude_ops", multiple=True, metavar="A,B",
              help="Op types to leave in float (comma-separated, repeatable).")
@click.option("--exclude-nodes", "exclude_nodes", multiple=True, metavar="N1,N2",
              help="Node names to leave in float (comma-separated, repeatable).")
@click.option("--quantizer", type=click.Choice(choices(Quantizer)), default="auto", show_default=True,
              help="auto: ModelOpt when installed, else ONNX Runtime.")
@click.option("--val-data", "val_data", default=None, metavar="DATA",
              help=f"Held-out inputs for the accuracy check (default: the calibration data): {_DATA_HELP}.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Skip the FP32 vs Q/DQ accuracy check on ONNX Runtime.")
@click.option("--shapes", "shapes", multiple=True, metavar="SPEC",
              help="Shapes the data must fit, trtexec syntax: x:1x3x224x224 (repeat for more profiles).")
def quantize_command(model: Path, output: Path, calib: str, precision: str, method: str | None,
                     exclude_ops: tuple[str, ...], exclude_nodes: tuple[str, ...], quantizer: str,
                     val_data: str | None, no_check: bool, shapes: tuple[str, ...]) -> int:
    """Quantize MODEL (an .onnx file) to an INT8 or FP8 Q/DQ model that TensorRT builds.

    Checks the data against MODEL's inputs before any work, quantizes, then runs FP32 against the Q/DQ model on
    ONNX Runtime. Prints the nodes quantized by op, the compute nodes left in float and the accuracy. Exit
    status: 0 done, 4 the Q/DQ model was written but fails the int8/fp8 tolerance (FAILED accuracy), 1 an error.
    """
    source = load_onnx(model)
    for path in (output, output.with_name(f"{output.name}.data")):
        source.refuse_overwrite(path, what="the quantized model")
    for flag, value in (("--calib", calib), ("--val-data", val_data)):
        if value is not None and Path(value).resolve() == output.resolve():
            raise ConfigError(f"-o {output} is the {flag} data; write the quantized model elsewhere")
    profiles = profiles_from_trtexec(shapes, (), (), ()) if shapes else None
    result = quantize(source, calib, precision=precision, method=method, quantizer=quantizer,  # type: ignore[arg-type]
                      exclude_ops=_split(exclude_ops), exclude_nodes=_split(exclude_nodes), val_data=val_data,
                      check_accuracy=not no_check, output_path=output, profiles=profiles)
    click.echo(f"wrote {output}")
    for line in result.summary_lines():
        click.echo(line)
    return EXIT_MISMATCH if result.accuracy_failed else EXIT_OK
