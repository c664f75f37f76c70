"""``trtkit cache list|prune|clear``: look at and trim the engine cache."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trtkit.cache import CacheEntry, EngineCache
from trtkit.cli._options import echo_json
from trtkit.errors import EngineFileError
from trtkit.manifest import read_manifest

F = TypeVar("F", bound=Callable[..., object])


def _cache_options(f: F) -> F:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)
    return click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
                        help="Cache directory (default: $TRTKIT_CACHE_DIR or the user cache directory).")(f)


def _size(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


def _describe(entry: CacheEntry) -> dict[str, Any]:
    info: dict[str, Any] = {"key": entry.key, "path": str(entry.path), "size": entry.size,
                            "last_used": _when(entry.last_used)}
    try:
        manifest = read_manifest(entry.path)
    except EngineFileError as exc:
        info["error"] = exc.message
        return info
    if manifest is not None:
        info.update(backend=manifest.backend, backend_version=manifest.backend_version,
                    onnx_sha256=manifest.onnx.get("sha256"), created=manifest.created,
                    inputs={t.name: list(t.shape) for t in manifest.inputs})
    return info


def _line(info: dict[str, Any]) -> str:
    if "error" in info:
        what = f"corrupt: {info['error']}"
    elif "backend" in info:
        inputs = ", ".join(f"{name}:{'x'.join('?' if d < 0 else str(d) for d in shape)}"
                           for name, shape in info["inputs"].items())
        what = f"{info['backend']} {info['backend_version']}  {inputs}"
    else:
        what = "no manifest"
    return ascii(f"{info['key']}  {_size(info['size']):>7}  {info['last_used']}  {what}")[1:-1]


@click.group("cache")
def cache_command() -> None:
    """The engine cache: list entries, prune it to its size cap, or clear it."""


@cache_command.command("list")
@_cache_options
def list_command(directory: Path | None, as_json: bool) -> int:
    """One line per cached engine, least recently used first: key, size, last use, backend, inputs."""
    cache = EngineCache(directory)
    entries = [_describe(e) for e in cache.entries()]
    strays = cache.strays()
    if as_json:
        echo_json({"directory": str(cache.directory), "max_bytes": cache.max_bytes, "size": cache.size(),
                   "entries": entries, "strays": [{"path": str(p), "size": s} for p, s in strays]})
        return 0
    for info in entries:
        click.echo(_line(info))
    note = f", {len(strays)} stray files ({_size(sum(s for _, s in strays))}; 'trtkit cache prune')" if strays else ""
    click.echo(f"{len(entries)} engines, {_size(cache.size())} of {_size(cache.max_bytes)} in "
               f"{str(cache.directory)!a}{note}", err=True)
    return 0


@cache_command.command("prune")
@_cache_options
@click.option("--max-bytes", "--maxBytes", "max_bytes", default=None, metavar="SIZE",
              help="Trim to this size (e.g. 2G) instead of the cap ($TRTKIT_CACHE_MAX_BYTES or 8G).")
def prune_command(directory: Path | None, as_json: bool, max_bytes: str | None) -> int:
    """Remove files that killed writers left, then the least recently used engines until the cache fits."""
    cache = EngineCache(directory)
    keys, files = cache.prune(max_bytes)
    _report(cache, keys, files, as_json)
    return 0


@cache_command.command("clear")
@_cache_options
def clear_command(directory: Path | None, as_json: bool) -> int:
    """Remove every cached engine (engines being built by another process are left alone)."""
    cache = EngineCache(directory)
    keys, files = cache.prune(0)
    _report(cache, keys, files, as_json)
    return 0


def _report(cache: EngineCache, keys: list[str], files: list[Path], as_json: bool) -> None:
    left = cache.entries()
    if as_json:
        echo_json({"directory": str(cache.directory), "removed": keys, "removed_files": [str(p) for p in files],
                   "remaining": len(left), "size": cache.size()})
        return
    for key in keys:
        click.echo(f"removed {key}")
    for p in files:
        click.echo(ascii(f"removed stray file {p.name}")[1:-1])
    click.echo(f"{len(keys)} engines removed, {len(left)} left ({_size(cache.size())}) in "
               f"{str(cache.directory)!a}", err=True)
