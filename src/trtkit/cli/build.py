"""``trtkit build MODEL.onnx -o OUT.engine``: build an engine with trtexec-style flags."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.builder import build_engine
from trtkit.builder.model import load_onnx
from trtkit.cli._options import build_options, make_config
from trtkit.files import refuse_overwrite
from trtkit.profiles import profiles_from_trtexec
from trtkit.text import safe


@click.command("build")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "--saveEngine", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Engine file to write (default: MODEL with .engine).")
@click.option("--saveConvertedModel", "--save-converted-model", "save_converted_model",
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ONNX model converted for fp16/bf16 here, for inspection.")
@build_options
def build_command(model: Path, output: Path | None, save_converted_model: Path | None, *,
                  shapes: tuple[str, ...], min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...],
                  max_shapes: tuple[str, ...], backend: str | None, progress: bool | None, **opts: object) -> int:
    """Build a TensorRT engine from MODEL (an .onnx file).

    Writes OUTPUT (a raw TensorRT plan that trtexec, C++ and Triton load) and OUTPUT.manifest.json.
    """
    config = make_config(opts)
    profiles = profiles_from_trtexec(shapes, min_shapes, opt_shapes, max_shapes)
    out = output or model.with_suffix(".engine")
    onnx_model = load_onnx(model)
    # checked before the build: the engine, its manifest or the converted model must not land on the model
    # or its external weight files (a model named *.engine with no -o would be its own default output)
    for path, what in ((out, "the engine"), (out.with_name(f"{out.name}.manifest.json"), "the engine's manifest")):
        onnx_model.refuse_overwrite(path, what=what)
        if save_converted_model is not None:
            refuse_overwrite(path, [save_converted_model], what=what)
    built = build_engine(onnx_model, shapes=profiles, config=config, backend=backend, progress=progress,
                         save_converted_model=save_converted_model)
    built.save(out)
    m = built.manifest
    click.echo(
        f"built {out} ({m.plan_size / 1e6:.2f} MB) with {m.backend} {m.backend_version}, "
        f"{len(m.profiles)} profile(s); manifest {out.name}.manifest.json"
    )
    preparation = m.extra.get("preparation")
    if preparation and preparation.get("trigger") != "retry":  # a retry's change was logged as a warning
        steps = "; ".join(safe(step) for step in preparation.get("steps", [])) or "nothing changed"
        click.echo(f"prepared the model ({preparation.get('trigger')}): {steps}")
    conversion = m.extra.get("precision", {}).get("conversion")
    if conversion:
        kept = ", ".join(f"{op} x{n}" for op, n in conversion["kept_fp32_nodes"].items()) or "none"
        click.echo(f"converted the model to {conversion['precision']} with {conversion['tool']} "
                   f"{conversion['version']}; nodes kept in FP32: {kept}"
                   + (f"; converted model {conversion['saved_to']}" if conversion.get("saved_to") else ""))
    return 0
