"""``trtkit build MODEL.onnx -o OUT.engine``: build an engine with trtexec-style flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtkit.builder import build_engine
from trtkit.cli._options import make_config
from trtkit.profiles import profiles_from_trtexec


def build_options(f: Any) -> Any:
    """The BuildConfig flags, shared by commands that build."""
    options = [
        click.option("--shapes", "shapes", multiple=True, metavar="SPEC",
                     help="Fixed shapes, trtexec syntax: x:1x3x224x224[,y:...]. Repeat for more profiles."),
        click.option("--minShapes", "--min-shapes", "min_shapes", multiple=True, metavar="SPEC",
                     help="Minimum shapes of a profile (repeat the flag for each further profile)."),
        click.option("--optShapes", "--opt-shapes", "opt_shapes", multiple=True, metavar="SPEC",
                     help="Optimal shapes of a profile."),
        click.option("--maxShapes", "--max-shapes", "max_shapes", multiple=True, metavar="SPEC",
                     help="Maximum shapes of a profile."),
        click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
                     show_default=True, help="Precision policy."),
        click.option("--noTF32", "--no-tf32", "no_tf32", is_flag=True, help="Disable TF32 for FP32 math."),
        click.option("--keepIOTypes/--convertIOTypes", "--keep-io-types/--convert-io-types", "keep_io_types",
                     default=True, show_default=True,
                     help="fp16/bf16 by conversion: graph inputs and outputs keep their types (or convert too)."),
        click.option("--fp32Ops", "--fp32-ops", "fp32_ops", multiple=True, metavar="OPS",
                     help="fp16/bf16 by conversion: op types kept in FP32, comma-separated; +Op/-Op change the "
                          "default list, 'none' keeps none (default: trtkit.precision.DEFAULT_FP32_OPS)."),
        click.option("--precisionConverter", "--precision-converter", "converter",
                     type=click.Choice(["auto", "modelopt", "onnxconverter-common"]), default="auto",
                     show_default=True, help="Tool converting the model for fp16/bf16 (auto: ModelOpt if installed)."),
        click.option("--stronglyTyped", "--strongly-typed", "strongly_typed", is_flag=True,
                     help="Build a strongly typed network (TensorRT 10; 11 and RTX always are)."),
        click.option("--memPoolSize", "--mem-pool-size", "mem_pool_size", multiple=True, metavar="POOL:SIZE",
                     help="Memory pool limits, e.g. workspace:1G (a plain number is MiB, as in trtexec)."),
        click.option("--builderOptimizationLevel", "--optimization-level", "optimization_level",
                     type=click.IntRange(0, 5), default=None, help="Builder optimization level 0-5."),
        click.option("--timingCacheFile", "--timing-cache", "timing_cache", default=None, metavar="PATH",
                     help="Timing cache to load, merge and save (full TensorRT)."),
        click.option("--profilingVerbosity", "--profiling-verbosity", "profiling_verbosity",
                     type=click.Choice(["layer_names_only", "detailed", "none"]), default=None,
                     help="Layer information kept in the engine."),
        click.option("--hardwareCompatibilityLevel", "--hardware-compatibility", "hardware_compatibility",
                     type=click.Choice(["none", "ampere_plus", "same_compute_capability"]), default=None,
                     help="Build for other GPUs too."),
        click.option("--versionCompatible", "--version-compatible", "version_compatible", is_flag=True,
                     help="Engine loads on later TensorRT versions."),
        click.option("--excludeLeanRuntime", "--exclude-lean-runtime", "exclude_lean_runtime", is_flag=True,
                     help="With --versionCompatible: do not embed the lean runtime."),
        click.option("--refit", is_flag=True, help="Build a refittable engine."),
        click.option("--stripWeights", "--strip-weights", "strip_weights", is_flag=True,
                     help="Strip refittable weights from the plan."),
        click.option("--weightStreaming", "--weight-streaming", "weight_streaming", is_flag=True,
                     help="Allow weight streaming."),
        click.option("--maxAuxStreams", "--max-aux-streams", "max_aux_streams", type=click.IntRange(0),
                     default=None, help="Auxiliary streams per execution context."),
        click.option("--tacticSources", "--tactic-sources", "tactic_sources", multiple=True, metavar="NAMES",
                     help="Comma-separated trt.TacticSource names to enable (full TensorRT)."),
        click.option("--computeCapabilities", "--compute-capabilities", "compute_capabilities", multiple=True,
                     metavar="CCS", help="Target GPUs for TensorRT-RTX, e.g. 8.6,8.9,12.0 or current."),
        click.option("--builderThreads", "--builder-threads", "builder_threads", type=click.IntRange(1),
                     default=None, help="Threads the builder may use."),
        click.option("--plugins", "plugins", multiple=True, metavar="PATH",
                     help="Plugin library to load before parsing (repeatable)."),
        click.option("--backend", default=None, metavar="NAME",
                     help="tensorrt or tensorrt_rtx (default: $TRTKIT_BACKEND, else full TensorRT if present)."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar (default: when stderr is a terminal)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("build")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "--saveEngine", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Engine file to write (default: MODEL with .engine).")
@click.option("--saveConvertedModel", "--save-converted-model", "save_converted_model",
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ONNX model converted for fp16/bf16 here, for inspection.")
@build_options
def build_command(model: Path, output: Path | None, save_converted_model: Path | None, **opts: Any) -> int:
    """Build a TensorRT engine from MODEL (an .onnx file).

    Writes OUTPUT (a raw TensorRT plan that trtexec, C++ and Triton load) and OUTPUT.manifest.json.
    """
    config = make_config(opts)
    profiles = profiles_from_trtexec(opts["shapes"], opts["min_shapes"], opts["opt_shapes"], opts["max_shapes"])
    built = build_engine(model, shapes=profiles, config=config, backend=opts["backend"],
                         progress=opts["progress"], save_converted_model=save_converted_model)
    out = output or model.with_suffix(".engine")
    built.save(out)
    m = built.manifest
    click.echo(
        f"built {out} ({m.plan_size / 1e6:.2f} MB) with {m.backend} {m.backend_version}, "
        f"{len(m.profiles)} profile(s); manifest {out.name}.manifest.json"
    )
    conversion = m.extra.get("precision", {}).get("conversion")
    if conversion:
        kept = ", ".join(f"{op} x{n}" for op, n in conversion["kept_fp32_nodes"].items()) or "none"
        click.echo(f"converted the model to {conversion['precision']} with {conversion['tool']} "
                   f"{conversion['version']}; nodes kept in FP32: {kept}"
                   + (f"; converted model {conversion['saved_to']}" if conversion.get("saved_to") else ""))
    return 0
