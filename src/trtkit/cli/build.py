"""``trtkit build MODEL.onnx -o OUT.engine``: build an engine with trtexec-style flags.

``--precision int8 --calib DATA`` quantizes the model to Q/DQ first (:mod:`trtkit.tools.quantize`) and builds in
one step through the engine cache, where the quantized model is kept beside the engine: a second call with the
same model, data and options neither quantizes nor builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import click

from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.config import QUANTIZED_PRECISIONS, choices
from trtkit.builder.model import OnnxModel, load_onnx, save_onnx
from trtkit.cache import EngineCache
from trtkit.cli._options import build_options, make_config, split_multi
from trtkit.engine import QuantizeOptions, build_cached
from trtkit.files import refuse_overwrite
from trtkit.manifest import BuiltEngine
from trtkit.profiles import Profile, profiles_from_trtexec
from trtkit.text import safe
from trtkit.tools.quantize import Quantizer, QuantizeResult, QuantMethod
from trtkit.tools.report import EXIT_MISMATCH, EXIT_OK

_DATA = "an .npz (one array per input, samples on axis 0), a directory of NAME.npy files, or a loader.py[:FUNC]"
_SHOWN = 6


def quantization_line(record: Mapping[str, object], cached: bool = False) -> str:
    """One line from ``manifest.extra["quantization"]``: quantizer, nodes by op, float nodes, accuracy."""
    raw_ops = record.get("quantized_ops")
    ops: Mapping[str, object] = raw_ops if isinstance(raw_ops, Mapping) else {}
    total = sum(int(n) for n in ops.values() if isinstance(n, int))
    by_op = ", ".join(f"{safe(str(op))} x{n}" for op, n in ops.items()) or "nothing"
    floats = record.get("float_nodes")
    left = len(floats) if isinstance(floats, list) else 0
    line = (f"{'(cached) ' if cached else ''}quantized to {record.get('precision')} with {record.get('quantizer')} "
            f"{record.get('version')} ({record.get('method')}): {total} nodes ({by_op}); {left} compute node"
            f"{'' if left == 1 else 's'} left in float; calibration data sha256 {str(record.get('data_digest'))[:12]}")
    accuracy = record.get("accuracy")
    if isinstance(accuracy, Mapping):
        cos = accuracy.get("min_cosine")
        worst = f"worst cosine {cos:.6f}" if isinstance(cos, float) else "cosine not checked"
        verdict = "FAILED accuracy" if accuracy.get("status") == "mismatch" else f"accuracy {accuracy.get('status')}"
        line += f"; {verdict}: {worst} against FP32 on ONNX Runtime ({accuracy.get('precision')} tolerance)"
    else:
        line += "; accuracy not checked"
    return line


def placement_line(record: Mapping[str, object], engine: Path) -> str:
    """Where INT8 took hold: TensorRT's own placement when the build log showed it, else what the Q/DQ model says
    and how to see the engine's."""
    found = record.get("placement")
    if isinstance(found, Mapping) and found.get("summary"):
        return f"placement: {safe(str(found['summary']))}"
    nodes = record.get("qdq_compute_nodes")
    fed, left = (nodes.get("quantized"), nodes.get("float")) if isinstance(nodes, Mapping) else ([], [])
    fed = fed if isinstance(fed, list) else []
    left = left if isinstance(left, list) else []
    shown = ", ".join(safe(str(n)) for n in left[:_SHOWN]) + (f" and {len(left) - _SHOWN} more"
                                                             if len(left) > _SHOWN else "")
    return (f"placement (from the Q/DQ model; TensorRT decides at build time): {len(fed)} of {len(fed) + len(left)} "
            "Conv/ConvTranspose/MatMul/Gemm nodes have Q/DQ on data and weights"
            + (f"; without: {shown}" if left else "")
            + f". TensorRT's placement: rebuild with --profilingVerbosity detailed (TensorRT-RTX prints it while "
            f"building), or `trtkit inspect {engine} --layers` on a GPU that runs the engine")


def _quantize_options(method: str | None, quantizer: str, exclude_ops: tuple[str, ...],
                      exclude_nodes: tuple[str, ...], no_check: bool) -> QuantizeOptions:
    return QuantizeOptions(method=method, quantizer=quantizer,  # type: ignore[arg-type]
                           exclude_ops=tuple(split_multi(exclude_ops)), exclude_nodes=tuple(split_multi(exclude_nodes)),
                           check_accuracy=not no_check)


@click.command("build")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "--saveEngine", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Engine file to write (default: MODEL with .engine).")
@click.option("--saveConvertedModel", "--save-converted-model", "save_converted_model",
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ONNX model converted for fp16/bf16 (or quantized with --calib) here, for inspection.")
@click.option("--calib", "calib", default=None, metavar="DATA",
              help=f"With --precision int8/fp8: quantize MODEL to Q/DQ on this calibration data, then build (through "
                   f"the engine cache): {_DATA}.")
@click.option("--quant-method", "quant_method", type=click.Choice(choices(QuantMethod)), default=None,
              help="With --calib: calibration method (default: the quantizer's).")
@click.option("--quantizer", type=click.Choice(choices(Quantizer)), default="auto", show_default=True,
              help="With --calib: auto (ModelOpt when installed, else ONNX Runtime), onnxruntime or modelopt.")
@click.option("--exclude-ops", "exclude_ops", multiple=True, metavar="A,B",
              help="With --calib: op types to leave in float (comma-separated, repeatable).")
@click.option("--exclude-nodes", "exclude_nodes", multiple=True, metavar="N1,N2",
              help="With --calib: node names to leave in float (comma-separated, repeatable).")
@click.option("--no-accuracy-check", "no_check", is_flag=True,
              help="With --calib: skip the FP32 vs Q/DQ accuracy check on ONNX Runtime.")
@click.option("--cache-dir", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --calib: the engine cache (default: $TRTKIT_CACHE_DIR or the user cache directory).")
@build_options
def build_command(model: Path, output: Path | None, save_converted_model: Path | None, calib: str | None,
                  quant_method: str | None, quantizer: str, exclude_ops: tuple[str, ...],
                  exclude_nodes: tuple[str, ...], no_check: bool, cache_dir: Path | None, *,
                  shapes: tuple[str, ...], min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...],
                  max_shapes: tuple[str, ...], backend: str | None, progress: bool | None, **opts: object) -> int:
    """Build a TensorRT engine from MODEL (an .onnx file).

    Writes OUTPUT (a raw TensorRT plan that trtexec, C++ and Triton load) and OUTPUT.manifest.json. With
    --precision int8 --calib DATA: quantizes first, prints what was quantized and where INT8 took hold; exit
    status 4 when the Q/DQ model fails the int8 accuracy tolerance (the engine is still written).
    """
    config = make_config(opts)
    profiles = profiles_from_trtexec(shapes, min_shapes, opt_shapes, max_shapes)
    quant_flags = [flag for flag, given in (("--quant-method", quant_method), ("--quantizer", quantizer != "auto"),
                                            ("--exclude-ops", exclude_ops), ("--exclude-nodes", exclude_nodes),
                                            ("--no-accuracy-check", no_check), ("--cache-dir", cache_dir)) if given]
    if calib is None and quant_flags:
        raise click.UsageError(f"{', '.join(quant_flags)} appl{'ies' if len(quant_flags) == 1 else 'y'} with --calib "
                               "DATA (quantize, then build)")
    if calib is not None and config.precision not in QUANTIZED_PRECISIONS:
        raise click.UsageError(f"--calib quantizes the model before the build: add --precision int8 (or fp8); got "
                               f"--precision {config.precision}")
    out = output or model.with_suffix(".engine")
    onnx_model = load_onnx(model)
    # checked before the build: the engine, its manifest or the converted model must not land on the model
    # or its external weight files (a model named *.engine with no -o would be its own default output)
    for path, what in ((out, "the engine"), (out.with_name(f"{out.name}.manifest.json"), "the engine's manifest")):
        onnx_model.refuse_overwrite(path, what=what)
        if save_converted_model is not None:
            refuse_overwrite(path, [save_converted_model], what=what)
    if calib is not None:
        if save_converted_model is not None:
            onnx_model.refuse_onnx_overwrite(save_converted_model, what="--saveConvertedModel")
        return _build_quantized(onnx_model, out, calib, save_converted_model, cache_dir, profiles, config,
                                backend, progress,
                                _quantize_options(quant_method, quantizer, exclude_ops, exclude_nodes, no_check))
    built = build_engine(onnx_model, shapes=profiles, config=config, backend=backend, progress=progress,
                         save_converted_model=save_converted_model)
    built.save(out)
    _report(built, out)
    conversion = built.manifest.extra.get("precision", {}).get("conversion")
    if conversion:
        kept = ", ".join(f"{op} x{n}" for op, n in conversion["kept_fp32_nodes"].items()) or "none"
        click.echo(f"converted the model to {conversion['precision']} with {conversion['tool']} "
                   f"{conversion['version']}; nodes kept in FP32: {kept}"
                   + (f"; converted model {conversion['saved_to']}" if conversion.get("saved_to") else ""))
    return 0


def _report(built: BuiltEngine, out: Path, hit: bool = False) -> None:
    m = built.manifest
    click.echo(
        f"{'reused the cached engine for' if hit else 'built'} {out} ({m.plan_size / 1e6:.2f} MB) with {m.backend} "
        f"{m.backend_version}, {len(m.profiles)} profile(s); manifest {out.name}.manifest.json"
    )
    preparation = m.extra.get("preparation")
    if preparation and preparation.get("trigger") != "retry":  # a retry's change was logged as a warning
        steps = "; ".join(safe(step) for step in preparation.get("steps", [])) or "nothing changed"
        click.echo(f"prepared the model ({preparation.get('trigger')}): {steps}")


def _build_quantized(onnx_model: OnnxModel, out: Path, calib: str, save_qdq: Path | None, cache_dir: Path | None,
                     profiles: list[Profile], config: BuildConfig, backend: str | None, progress: bool | None,
                     options: QuantizeOptions) -> int:
    """Quantize (on a cache miss), build, write the engine; print the quantization and placement lines."""
    quantized: list[QuantizeResult] = []

    def on_quantized(result: QuantizeResult) -> None:
        quantized.append(result)
        click.echo(quantization_line(result.manifest_record()))
        if save_qdq is not None:
            save_onnx(result.model.proto_with_weights(), save_qdq)

    result = build_cached(onnx_model, shapes=profiles, config=config, cache=EngineCache(cache_dir),
                          backend=backend, progress=progress, calibration_data=calib, quantize_options=options,
                          on_quantized=on_quantized)
    built, hit = result.engine, result.hit
    record = built.manifest.extra.get("quantization") or {}
    if hit:
        click.echo(quantization_line(record, cached=True))
        if save_qdq is not None and result.model_path is not None:
            save_onnx(load_onnx(result.model_path).proto_with_weights(), save_qdq)
    built.save(out)
    _report(built, out, hit)
    if save_qdq is not None:
        click.echo(f"quantized model {save_qdq}")
    click.echo(placement_line(record, out))
    accuracy = record.get("accuracy")
    if isinstance(accuracy, Mapping) and accuracy.get("status") == "mismatch":
        click.echo(f"trtkit: warning: the Q/DQ model fails the {accuracy.get('precision')} tolerance against FP32 "
                   "(FAILED accuracy above); the engine was written. Try --quant-method entropy or percentile, "
                   "--exclude-ops/--exclude-nodes, or more calibration data", err=True)
        return EXIT_MISMATCH
    return EXIT_OK
