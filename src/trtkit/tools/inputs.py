"""Inputs for accuracy checks: generated from a seed, or read from an ``.npz``; checked before anything is allocated.

:func:`generate_inputs` resolves every input's shape first, refuses 0-size dims and shapes whose arrays would not
fit in memory (before allocating), then draws the values (``val_range`` sets their range).
:func:`check_engine_shapes` checks shapes against an engine manifest's profiles before anything runs.
:func:`trtkit.tools.compare.compare` uses all of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np

from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.dtypes import lookup, random_array
from trtkit.errors import ConfigError, InputError, ShapeError
from trtkit.manifest import Manifest
from trtkit.profiles import format_shape, parse_shape_spec
from trtkit.tools.metrics import Array

__all__ = [
    "ValRange",
    "check_engine_shapes",
    "check_input_bytes",
    "generate_inputs",
    "load_inputs",
    "parse_val_range",
    "resolve_input_shapes",
]

ValRange: TypeAlias = tuple[float, float] | Mapping[str, tuple[float, float]]
"""``(lo, hi)`` for every input, or a mapping of input name -> ``(lo, hi)`` (unnamed inputs keep the default)."""

_FALLBACK_LIMIT: Final = 16 << 30


def load_inputs(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Read inputs from an ``.npz`` file (one array per input name)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"inputs file {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read inputs from {str(p)!r}: {exc}; expected an .npz written by "
                         "numpy.savez with one array per input name") from exc


def shapes_arg(shapes: str | Mapping[str, Sequence[int]] | None) -> dict[str, tuple[int, ...]]:
    """``shapes`` as given to :func:`generate_inputs` -> shapes by name (ShapeError for anything else)."""
    if shapes is None:
        return {}
    if isinstance(shapes, str):
        return parse_shape_spec(shapes)
    if not isinstance(shapes, Mapping):
        raise ShapeError(f"shapes must be a string such as 'x:1x3x224x224' or a mapping of input name -> dims, "
                         f"got {type(shapes).__name__}")
    out: dict[str, tuple[int, ...]] = {}
    for name, dims in shapes.items():
        if isinstance(dims, str | bytes) or not isinstance(dims, Sequence) or \
                any(isinstance(d, bool) or not isinstance(d, int | np.integer) for d in dims):
            raise ShapeError(f"shape for input {name!r} must be a sequence of ints such as (1, 3, 224, 224), "
                             f"got {dims!r}")
        out[str(name)] = tuple(int(d) for d in dims)
    return out


def _dynamic_hint(name: str, shape: Sequence[int], dim_names: Sequence[str | None]) -> str:
    """A pasteable ``--shapes`` flag: each dynamic dim set to 1, and which dims those are."""
    dims = [str(d) if d >= 0 else "1" for d in shape]
    named = [f"{dim_names[i] if i < len(dim_names) and dim_names[i] else f'dim {i}'} (axis {i})"
             for i, d in enumerate(shape) if d < 0]
    quoted = f"'{name}'" if ":" in name or "," in name else name
    return (f"--shapes {quoted}:{'x'.join(dims)} (the 1 stands for the dynamic {', '.join(named)}: put your "
            "size there)")


def resolve_input_shapes(model: ModelSource | OnnxModel,
                         shapes: str | Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of every model input: static dims from the model, dynamic ones from ``shapes``; allocates nothing.

    Raises:
        ShapeError: an unknown input name, a dynamic input without a shape, a shape that contradicts the model,
            or a dim below 1 (0-size inputs compare nothing).
    """
    m = load_onnx(model)
    given = shapes_arg(shapes)
    infos = m.inputs()
    unknown = sorted(set(given) - {i.name for i in infos})
    if unknown:
        raise ShapeError(f"shapes name input(s) {', '.join(map(repr, unknown))} that the model does not have; "
                         f"its inputs are {', '.join(i.describe() for i in infos)}")
    out: dict[str, tuple[int, ...]] = {}
    for info in infos:
        if info.name in given:
            shape = given[info.name]
            if len(shape) != len(info.shape) or any(d >= 0 and d != s for d, s in zip(info.shape, shape,
                                                                                        strict=False)):
                raise ShapeError(f"shape {format_shape(shape)} for input {info.describe()} does not fit the model")
        elif info.dynamic_axes:
            raise ShapeError(
                f"input {info.describe()} has dynamic dims; give its shape, e.g. "
                f"{_dynamic_hint(info.name, info.shape, info.dim_names)}, or pass inputs from an .npz file"
            )
        else:
            shape = info.shape
        if any(d < 1 for d in shape):
            raise ShapeError(f"input {info.name!r} would have shape {format_shape(shape)}: every dim must be at "
                             "least 1 (a 0-size input compares nothing); give sizes >= 1 in --shapes")
        out[info.name] = tuple(shape)
    return out


def _memory_limit() -> int:
    """Half this machine's physical memory (16 GiB where it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_LIMIT
    return total // 2 if total > 0 else _FALLBACK_LIMIT


def _human(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if value < 1000 or unit == "EB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"  # pragma: no cover


def check_input_bytes(model: ModelSource | OnnxModel, shapes: Mapping[str, Sequence[int]],
                      limit: int | None = None) -> int:
    """The bytes the inputs of ``shapes`` take; ShapeError, before anything is allocated, when they exceed ``limit``
    (default: half this machine's memory)."""
    m = load_onnx(model)
    dtypes = {i.name: i.dtype for i in m.inputs()}
    cap = _memory_limit() if limit is None else limit
    sizes = {name: math.prod(int(d) for d in shape) * lookup(dtypes[name]).to_numpy().itemsize
             for name, shape in shapes.items() if name in dtypes}
    total = sum(sizes.values())
    if total > cap:
        biggest = max(sizes, key=lambda n: sizes[n])
        raise ShapeError(
            f"the inputs would need {_human(total)} ({biggest!r} {format_shape(tuple(shapes[biggest]))}: "
            f"{_human(sizes[biggest])}), more than the {_human(cap)} allowed (half this machine's memory); "
            "give smaller --shapes"
        )
    return total


def parse_val_range(specs: Sequence[str]) -> tuple[float, float] | dict[str, tuple[float, float]] | None:
    """CLI ``--val-range`` values (``LO,HI`` for every input, or ``NAME:LO,HI``; repeatable) -> ``val_range``.

    The name is split from the range at the last ':', so names such as ``input_1:0`` work.
    """
    overall: tuple[float, float] | None = None
    named: dict[str, tuple[float, float]] = {}
    for spec in specs:
        name, _, rng = spec.rpartition(":")
        parts = rng.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            lo, hi = (float(p.strip()) for p in parts)
        except ValueError:
            raise ConfigError(f"--val-range {spec!r}: expected LO,HI (e.g. -1,1 or 0,255) or NAME:LO,HI "
                              "(e.g. x:0,1)") from None
        if name:
            named[name.strip().strip("'\"")] = (lo, hi)
        else:
            overall = (lo, hi)
    if named and overall is not None:
        raise ConfigError("--val-range: give either one LO,HI for every input or NAME:LO,HI per input, not both")
    return named or overall


def _range_for(val_range: object, name: str) -> tuple[float, float] | None:
    if val_range is None:
        return None
    if isinstance(val_range, Mapping):
        return val_range.get(name)
    return val_range  # type: ignore[return-value]


def _check_range(val_range: object, names: Sequence[str]) -> None:
    if val_range is None:
        return
    pairs: Mapping[object, object]
    if isinstance(val_range, Mapping):
        unknown = sorted(str(n) for n in val_range if n not in names)
        if unknown:
            raise ConfigError(f"val_range names input(s) {', '.join(map(repr, unknown))} that the model does not "
                              f"have; its inputs are {', '.join(map(repr, names))}")
        pairs = val_range
    else:
        pairs = {"": val_range}
    for key, rng in pairs.items():
        where = f"val_range for {key!r}" if key else "val_range"
        ok = isinstance(rng, tuple | list) and len(rng) == 2 and all(
            not isinstance(v, bool) and isinstance(v, int | float | np.integer | np.floating) for v in rng)
        if not ok:
            raise ConfigError(f"{where} must be a pair (lo, hi) of numbers such as (-1.0, 1.0), got {rng!r}")
        lo, hi = float(rng[0]), float(rng[1])  # type: ignore[index]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ConfigError(f"{where} {rng!r}: expected finite numbers with lo <= hi, e.g. (-1.0, 1.0)")


def _draw(npd: np.dtype[np.generic], shape: tuple[int, ...], rng: np.random.Generator,
          bounds: tuple[float, float], name: str) -> Array:
    lo, hi = float(bounds[0]), float(bounds[1])
    if npd.kind == "f":
        top = float(np.finfo(npd).max)  # type: ignore[type-var]
        if lo < -top or hi > top:
            raise ConfigError(f"val_range ({lo:g}, {hi:g}) for input {name!r} exceeds what {npd.name} holds "
                              f"(+-{top:g})")
        return rng.uniform(lo, hi, shape).astype(npd)
    if npd.kind in "iu":
        info = np.iinfo(npd)  # type: ignore[type-var]
        ilo, ihi = math.ceil(lo), math.floor(hi)
        if ilo > ihi:
            raise ConfigError(f"val_range ({lo:g}, {hi:g}) for integer input {name!r} holds no integer")
        if ilo < info.min or ihi > info.max:
            raise ConfigError(f"val_range ({lo:g}, {hi:g}) for input {name!r} exceeds what {npd.name} holds "
                              f"({info.min}..{info.max})")
        return rng.integers(ilo, ihi, size=shape, endpoint=True).astype(npd)
    return random_array(npd, shape, rng)  # bools: fair coin flips whatever the range


def generate_inputs(
    model: ModelSource | OnnxModel,
    *,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    val_range: ValRange | None = None,
) -> dict[str, Array]:
    """Random inputs for ``model``'s inputs, reproducible from ``seed``.

    By default floats are standard normal, integers uniform in ``[0, 8)``, bools fair coin flips. ``val_range``
    ``(lo, hi)`` (or a mapping of input name -> ``(lo, hi)``) draws floats uniformly from ``[lo, hi)`` and
    integers uniformly from the integers in ``[lo, hi]``; bools stay coin flips. Dynamic dims take their size
    from ``shapes`` (trtexec syntax ``"x:1x3x224x224"`` or a mapping); static inputs need no entry.

    Raises:
        ShapeError: a dynamic input has no shape, a given shape contradicts the model or has a 0 dim, or the
            arrays would not fit in memory (checked before allocating).
        ConfigError: ``val_range`` is not a finite ``(lo, hi)`` pair with ``lo <= hi`` that the dtype holds.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    m = load_onnx(model)
    resolved = resolve_input_shapes(m, shapes)
    _check_range(val_range, list(resolved))
    check_input_bytes(m, resolved)
    rng = np.random.default_rng(int(seed))
    out: dict[str, Array] = {}
    for info in m.inputs():
        shape = resolved[info.name]
        npd = lookup(info.dtype).to_numpy()
        bounds = _range_for(val_range, info.name)
        out[info.name] = random_array(npd, shape, rng) if bounds is None else _draw(npd, shape, rng, bounds,
                                                                                    info.name)
    return out


def _engine_ranges(manifest: Manifest) -> str:
    return "; ".join(f"profile {i}: {p}" for i, p in enumerate(manifest.profiles)) or "no profiles"


def check_engine_shapes(manifest: Manifest, shapes: Mapping[str, Sequence[int]], source: str = "the engine") -> None:
    """ShapeError unless ``shapes`` fit the engine: static dims as built, dynamic dims inside one profile.

    Shape-tensor inputs are left out (their profile holds values, not shapes).
    """
    tensors = {t.name: t for t in manifest.inputs if not t.is_shape_tensor}
    for name, shape in shapes.items():
        t = tensors.get(name)
        if t is None:
            continue
        if len(shape) != len(t.shape) or any(d >= 0 and d != s for d, s in zip(t.shape, shape, strict=False)):
            raise ShapeError(f"input {name!r} shape {format_shape(tuple(shape))} does not fit {source}, built for "
                             f"{format_shape(t.shape)}; give shapes it accepts")
    if not manifest.profiles:
        return
    for profile in manifest.profiles:
        if all(profile[n].contains(tuple(s)) for n, s in shapes.items() if n in profile and n in tensors):
            return
    given = ", ".join(f"{n}:{format_shape(tuple(s))}" for n, s in shapes.items() if n in tensors)
    raise ShapeError(f"input shapes {given} lie outside every optimization profile of {source} "
                     f"({_engine_ranges(manifest)}); give shapes inside one (--shapes), or rebuild the engine "
                     "with a profile that covers them")
