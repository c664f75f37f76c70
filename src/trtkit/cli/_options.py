"""Helpers shared by several commands, and the build flags: one table maps each flag to its BuildConfig field."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from trtkit.builder import BuildConfig, parse_size
from trtkit.builder.config import (
    Converter,
    HardwareCompatibility,
    MemoryPool,
    Precision,
    ProfilingVerbosity,
    TacticSource,
    choices,
    resolve_fp32_ops,
)

F = TypeVar("F", bound=Callable[..., object])


def split_multi(values: tuple[str, ...]) -> list[str]:
    """Flatten repeated, comma-separated option values."""
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def parse_pools(values: tuple[str, ...]) -> dict[str, int]:
    """trtexec's ``--memPoolSize=workspace:1G,tactic_dram:512M`` (a plain number means MiB, as trtexec)."""
    pools: dict[str, int] = {}
    for item in split_multi(values):
        if ":" not in item:
            raise click.BadParameter(f"{item!r}: expected POOL:SIZE, e.g. workspace:1G", param_hint="--memPoolSize")
        name, size = item.split(":", 1)
        size = size.strip()
        try:
            plain = size.replace(".", "", 1)
            pools[name.strip().lower()] = int(float(size) * (1 << 20)) if plain.isascii() and plain.isdigit() \
                else parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--memPoolSize") from exc
    return pools


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_freeze(values: tuple[str, ...]) -> dict[str, object] | None:
    """``--freeze NAME:VALUE`` (repeatable): VALUE a number, a comma list (``1,1,2,2``) or JSON (``[[1,2],[3,4]]``).

    The name is what comes before the last colon, so names with colons (``input:0``) work."""
    frozen: dict[str, object] = {}
    for item in values:
        name, sep, text = item.rpartition(":")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise click.BadParameter(f"{item!r}: expected NAME:VALUE, e.g. sr:16000 or scales:1,1,2,2",
                                     param_hint="--freeze")
        if name in frozen:
            raise click.BadParameter(f"input {name!r} is frozen twice", param_hint="--freeze")
        try:
            if text.startswith("["):
                frozen[name] = json.loads(text)
            elif "," in text:
                frozen[name] = [_number(part.strip()) for part in text.split(",") if part.strip()]
            else:
                frozen[name] = _number(text)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {text!r} is not a number, a comma list of numbers or a JSON list",
                                     param_hint="--freeze") from None
    return frozen or None


_SANITIZE = {None: "auto", True: "always", False: "never"}


def _fp32_ops(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--fp32Ops``: None for the default list, else the resolved list (``+Op``/``-Op`` edit the default)."""
    items = split_multi(values)
    return resolve_fp32_ops(items) if items else None


def _names(values: tuple[str, ...]) -> tuple[str, ...] | None:
    return tuple(split_multi(values)) or None


@dataclass(frozen=True)
class ConfigFlag:
    """A command-line flag that sets the BuildConfig field ``field`` (also the click parameter's name)."""

    field: str
    decls: tuple[str, ...]
    help: str
    type: click.ParamType[object] | None = None
    default: object = None
    is_flag: bool = False
    multiple: bool = False
    metavar: str | None = None
    convert: Callable[[Any], object] | None = None
    """The flag's value -> the field's value; None when they are the same."""

    def option(self) -> Callable[[F], F]:
        """The click option."""
        if self.is_flag:
            return click.option(*self.decls, self.field, is_flag=True, help=self.help)
        return click.option(*self.decls, self.field, type=self.type, default=self.default, multiple=self.multiple,
                            metavar=self.metavar, help=self.help, show_default=self.default is not None)

    def value(self, opts: Mapping[str, object]) -> object:
        """The field's value from the parsed options."""
        raw = opts[self.field]
        return raw if self.convert is None else self.convert(raw)


CONFIG_FLAGS: tuple[ConfigFlag, ...] = (
    ConfigFlag("precision", ("--precision",), "Precision policy.",
               type=click.Choice(choices(Precision)), default="fp32"),
    ConfigFlag("tf32", ("--noTF32", "--no-tf32"), "Disable TF32 for FP32 math.", is_flag=True,
               convert=lambda no_tf32: not no_tf32),
    ConfigFlag("keep_io_types", ("--keepIOTypes/--convertIOTypes", "--keep-io-types/--convert-io-types"),
               "fp16/bf16 by conversion: graph inputs and outputs keep their types (or convert too).", default=True),
    ConfigFlag("fp32_ops", ("--fp32Ops", "--fp32-ops"),
               "fp16/bf16 by conversion: op types kept in FP32, comma-separated; +Op/-Op change the default list, "
               "'none' keeps none (default: trtkit.builder.config.DEFAULT_FP32_OPS).",
               multiple=True, metavar="OPS", convert=_fp32_ops),
    ConfigFlag("converter", ("--precisionConverter", "--precision-converter"),
               "Tool converting the model for fp16/bf16 (auto: ModelOpt if installed).",
               type=click.Choice(choices(Converter)), default="auto"),
    ConfigFlag("strongly_typed", ("--stronglyTyped", "--strongly-typed"),
               "Build a strongly typed network (TensorRT 10; 11 and RTX always are).", is_flag=True),
    ConfigFlag("memory_pool_limits", ("--memPoolSize", "--mem-pool-size"),
               f"Memory pool limits ({', '.join(choices(MemoryPool))}), e.g. workspace:1G (a plain number is MiB, as "
               "in trtexec).", multiple=True, metavar="POOL:SIZE", convert=parse_pools),
    ConfigFlag("optimization_level", ("--builderOptimizationLevel", "--optimization-level"),
               "Builder optimization level 0-5.", type=click.IntRange(0, 5)),
    ConfigFlag("timing_cache", ("--timingCacheFile", "--timing-cache"),
               "Timing cache to load, merge and save (full TensorRT).", metavar="PATH"),
    ConfigFlag("profiling_verbosity", ("--profilingVerbosity", "--profiling-verbosity"),
               "Layer information kept in the engine.", type=click.Choice(choices(ProfilingVerbosity))),
    ConfigFlag("hardware_compatibility", ("--hardwareCompatibilityLevel", "--hardware-compatibility"),
               "Build for other GPUs too.", type=click.Choice(choices(HardwareCompatibility))),
    ConfigFlag("version_compatible", ("--versionCompatible", "--version-compatible"),
               "Engine loads on later TensorRT versions.", is_flag=True),
    ConfigFlag("exclude_lean_runtime", ("--excludeLeanRuntime", "--exclude-lean-runtime"),
               "With --versionCompatible: do not embed the lean runtime.", is_flag=True),
    ConfigFlag("refit", ("--refit",), "Build a refittable engine.", is_flag=True),
    ConfigFlag("strip_weights", ("--stripWeights", "--strip-weights"), "Strip refittable weights from the plan.",
               is_flag=True),
    ConfigFlag("weight_streaming", ("--weightStreaming", "--weight-streaming"), "Allow weight streaming.",
               is_flag=True),
    ConfigFlag("max_aux_streams", ("--maxAuxStreams", "--max-aux-streams"), "Auxiliary streams per execution context.",
               type=click.IntRange(0)),
    ConfigFlag("tactic_sources", ("--tacticSources", "--tactic-sources"),
               f"Comma-separated tactic sources to enable (full TensorRT): {', '.join(choices(TacticSource))}.",
               multiple=True, metavar="NAMES", convert=_names),
    ConfigFlag("compute_capabilities", ("--computeCapabilities", "--compute-capabilities"),
               "Target GPUs for TensorRT-RTX, e.g. 8.6,8.9,12.0 or current.", multiple=True, metavar="CCS",
               convert=_names),
    ConfigFlag("builder_threads", ("--builderThreads", "--builder-threads"), "Threads the builder may use.",
               type=click.IntRange(1)),
    ConfigFlag("plugins", ("--plugins",), "Plugin library to load before parsing (repeatable).", multiple=True,
               metavar="PATH", convert=tuple),
    ConfigFlag("sanitize", ("--sanitize/--no-sanitize",),
               "Prepare the graph (opset upgrade, constant folding, ...) before parsing, or never. Default: only "
               "when the first parse or build fails, then retry once with a warning naming what changed.",
               convert=_SANITIZE.__getitem__),
    ConfigFlag("freeze", ("--freeze",),
               "Replace an input by a constant (repeatable): NAME:VALUE, VALUE a number, a comma list or JSON, "
               "e.g. sr:16000. The input leaves the engine's inputs.", multiple=True, metavar="NAME:VALUE",
               convert=parse_freeze),
    ConfigFlag("upgrade_opset", ("--upgrade-opset",),
               "When the graph is prepared: convert it to this opset (default: only below the parser's lowest).",
               type=click.INT, metavar="N"),
    ConfigFlag("lower_dynamic_quant", ("--lower-dynamic-quant",),
               "When the graph is prepared: DynamicQuantizeLinear + ConvInteger/MatMulInteger become float "
               "Conv/MatMul (results move by the quantization error; check with trtkit compare).", is_flag=True),
)
"""Every BuildConfig field as a flag, in ``--help`` order; :func:`build_options` and :func:`make_config` read it."""


def build_options(f: F) -> F:
    """The build flags, shared by commands that build: profiles, every :data:`CONFIG_FLAGS` entry, backend and
    progress."""
    options: list[Callable[[F], F]] = [
        click.option("--shapes", "shapes", multiple=True, metavar="SPEC",
                     help="Fixed shapes, trtexec syntax: x:1x3x224x224[,y:...]. Repeat for more profiles."),
        click.option("--minShapes", "--min-shapes", "min_shapes", multiple=True, metavar="SPEC",
                     help="Minimum shapes of a profile (repeat the flag for each further profile)."),
        click.option("--optShapes", "--opt-shapes", "opt_shapes", multiple=True, metavar="SPEC",
                     help="Optimal shapes of a profile."),
        click.option("--maxShapes", "--max-shapes", "max_shapes", multiple=True, metavar="SPEC",
                     help="Maximum shapes of a profile."),
        *(flag.option() for flag in CONFIG_FLAGS),
        click.option("--backend", default=None, metavar="NAME",
                     help="tensorrt or tensorrt_rtx (default: $TRTKIT_BACKEND, else full TensorRT if present)."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar (default: when stderr is a terminal)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_config(opts: Mapping[str, object]) -> BuildConfig:
    """Turn the build flags into a BuildConfig (ConfigError for bad values)."""
    return BuildConfig(**{flag.field: flag.value(opts) for flag in CONFIG_FLAGS})  # type: ignore[arg-type]


def echo_json(data: object) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2))
