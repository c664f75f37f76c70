"""Helpers shared by several commands."""

from __future__ import annotations

import json
from typing import Any

import click

from trtkit.builder import BuildConfig, parse_size


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
            pools[name.strip().lower()] = int(float(size) * (1 << 20)) if size.replace(".", "").isdigit() \
                else parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--memPoolSize") from exc
    return pools


def _fp32_ops(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--fp32Ops``: None for the default list, else the resolved list (``+Op``/``-Op`` edit the default)."""
    from trtkit.builder.precision import resolve_fp32_ops

    items = split_multi(values)
    return resolve_fp32_ops(items) if items else None


def make_config(opts: dict[str, Any]) -> BuildConfig:
    """Turn the build flags into a BuildConfig (UnsupportedFeatureError for bad values)."""
    return BuildConfig(
        precision=opts["precision"],
        tf32=not opts["no_tf32"],
        strongly_typed=opts["strongly_typed"],
        memory_pool_limits=parse_pools(opts["mem_pool_size"]),
        optimization_level=opts["optimization_level"],
        timing_cache=opts["timing_cache"],
        profiling_verbosity=opts["profiling_verbosity"],
        hardware_compatibility=opts["hardware_compatibility"],
        version_compatible=opts["version_compatible"],
        exclude_lean_runtime=opts["exclude_lean_runtime"],
        refit=opts["refit"],
        strip_weights=opts["strip_weights"],
        weight_streaming=opts["weight_streaming"],
        max_aux_streams=opts["max_aux_streams"],
        tactic_sources=tuple(split_multi(opts["tactic_sources"])) or None,
        compute_capabilities=tuple(split_multi(opts["compute_capabilities"])) or None,
        builder_threads=opts["builder_threads"],
        plugins=tuple(opts["plugins"]),
        keep_io_types=opts["keep_io_types"],
        fp32_ops=_fp32_ops(opts["fp32_ops"]),
        converter=opts["converter"],
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
