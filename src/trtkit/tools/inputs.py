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
from typing import TYPE_CHECKING, Final, TypeAlias

import numpy as np

from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.dtypes import RANDOM_INT_HIGH, lookup, random_array
from trtkit.errors import ConfigError, InputError, ShapeError
from trtkit.manifest import Manifest
from trtkit.profiles import format_shape, parse_shape_spec
from trtkit.tools.metrics import Array

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ValRange",
    "check_engine_shapes",
    "check_input_bytes",
    "data_loader_feeds",
    "generate_inputs",
    "integer_input_rules",
    "load_inputs",
    "parse_val_range",
    "resolve_input_shapes",
    "run_data_loader",
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

    The range may be bracketed, as Polygraphy writes it: ``NAME:[LO,HI]``. The name is split from the range at
    the last ':', so names such as ``input_1:0`` work.
    """
    overall: tuple[float, float] | None = None
    named: dict[str, tuple[float, float]] = {}
    for spec in specs:
        name, _, rng = spec.rpartition(":")
        parts = rng.strip().removeprefix("[").removesuffix("]").split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            lo, hi = (float(p.strip()) for p in parts)
        except ValueError:
            raise ConfigError(f"--val-range {spec!r}: expected LO,HI (e.g. -1,1 or 0,255) or NAME:LO,HI "
                              "(e.g. x:0,1 or x:[0,1])") from None
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
        top = float(np.finfo(npd).max)  # type: ignore[type-var, arg-type, unused-ignore]
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



# ---- integer inputs: ranges that fit their use -------------------------------------------------------------------

# op -> (input index that holds indices, input index of the data they index, or None for OneHot's depth)
_INDEX_USES: Final[Mapping[str, tuple[int, int | None]]] = {
    "Gather": (1, 0), "GatherElements": (1, 0), "GatherND": (1, 0), "ScatterElements": (1, 0),
    "ScatterND": (1, 0), "OneHot": (0, None),
}
# op -> input indices that hold shapes, sizes, axes or counts
_SHAPE_USES: Final[Mapping[str, frozenset[int]]] = {
    "Reshape": frozenset({1}), "Expand": frozenset({1}), "Tile": frozenset({1}), "ConstantOfShape": frozenset({0}),
    "Slice": frozenset({1, 2, 3, 4}), "Range": frozenset({0, 1, 2}), "Resize": frozenset({3}),
    "TopK": frozenset({1}), "Pad": frozenset({1, 3}), "Unsqueeze": frozenset({1}), "Squeeze": frozenset({1}),
    "Split": frozenset({1}), "Upsample": frozenset({1}),
}
_PASS_THROUGH: Final = frozenset({"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"})


def _known_shapes(m: OnnxModel, resolved: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    out = {t.name: tuple(int(d) for d in t.dims) for t in m.proto.graph.initializer}
    for vi in [*m.proto.graph.value_info, *m.proto.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    out.update({n: tuple(s) for n, s in resolved.items()})
    return out


def _index_bound(m: OnnxModel, node: onnx.NodeProto, data_index: int | None,
                 shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """The size of the axis that ``node``'s indices index (OneHot: its depth), or None when unknown."""
    if data_index is None:  # OneHot: the depth is input 1
        depth = next((t for t in m.proto.graph.initializer if len(node.input) > 1 and t.name == node.input[1]), None)
        if depth is None:
            return None
        from onnx import numpy_helper

        return int(numpy_helper.to_array(depth).reshape(-1)[0])
    data = shapes.get(node.input[data_index])
    if not data:
        return None
    if node.op_type == "GatherND":
        return min(data)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return data[axis % len(data)]


def integer_input_rules(model: ModelSource | OnnxModel, shapes: Mapping[str, Sequence[int]] | None = None
                        ) -> dict[str, tuple[str, int | None]]:
    """How each integer input is generated, from the ops it feeds (through Cast/Reshape/Unsqueeze/...):

    - ``("index", n)``: it indexes a tensor (Gather, GatherElements, GatherND, Scatter*, OneHot): values in
      ``[0, n)``, ``n`` the size of the indexed axis (the smallest over its uses); ``n`` None when that size is
      unknown, and then every value is 0;
    - ``("shape", None)``: it holds shapes, sizes or axes (Reshape, Expand, Slice, Range, Resize, TopK, ...):
      values from the engine profile's opt values, else it must be given (``--load-inputs``, ``--data-loader``);
    - ``("count", 8)``: anything else: uniform in ``[0, 8)``.
    """
    m = load_onnx(model)
    graph = m.proto.graph
    consumers: dict[str, list[tuple[int, int]]] = {}
    for i, node in enumerate(graph.node):
        for j, name in enumerate(node.input):
            consumers.setdefault(name, []).append((i, j))
    known = _known_shapes(m, shapes or {})
    rules: dict[str, tuple[str, int | None]] = {}
    for info in m.inputs():
        if lookup(info.dtype).to_numpy().kind not in "iu":
            continue
        bounds: list[int | None] = []
        shape_like = False
        todo, seen = [info.name], {info.name}
        while todo:
            for i, j in consumers.get(todo.pop(), []):
                node = graph.node[i]
                use = _INDEX_USES.get(node.op_type)
                if use is not None and j == use[0]:
                    bounds.append(_index_bound(m, node, use[1], known))
                elif j in _SHAPE_USES.get(node.op_type, frozenset()):
                    shape_like = True
                elif node.op_type in _PASS_THROUGH and j == 0:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            todo.append(out)
        if bounds:
            sizes = [b for b in bounds if b is not None]
            rules[info.name] = ("index", min(sizes) if len(sizes) == len(bounds) else None)
        elif shape_like:
            rules[info.name] = ("shape", None)
        else:
            rules[info.name] = ("count", RANDOM_INT_HIGH)
    return rules


def generate_inputs(
    model: ModelSource | OnnxModel,
    *,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    val_range: ValRange | None = None,
    shape_values: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Array]:
    """Random inputs for ``model``'s inputs, reproducible from ``seed``.

    By default floats are standard normal, bools fair coin flips, and integers follow their use
    (:func:`integer_input_rules`): indices in ``[0, size of the indexed axis)``, shape-like inputs the values in
    ``shape_values`` (an engine profile's opt values), anything else uniform in ``[0, 8)``. ``val_range``
    ``(lo, hi)`` (or a mapping of input name -> ``(lo, hi)``) draws floats uniformly from ``[lo, hi)`` and
    integers uniformly from the integers in ``[lo, hi]``; bools stay coin flips. Dynamic dims take their size
    from ``shapes`` (trtexec syntax ``"x:1x3x224x224"`` or a mapping); static inputs need no entry.

    Raises:
        ShapeError: a dynamic input has no shape, a given shape contradicts the model or has a 0 dim, or the
            arrays would not fit in memory (checked before allocating).
        ConfigError: ``val_range`` is not a finite ``(lo, hi)`` pair with ``lo <= hi`` that the dtype holds.
        InputError: a shape-like integer input has no ``val_range`` and no ``shape_values``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    m = load_onnx(model)
    resolved = resolve_input_shapes(m, shapes)
    _check_range(val_range, list(resolved))
    check_input_bytes(m, resolved)
    rng = np.random.default_rng(int(seed))
    rules = integer_input_rules(m, resolved)
    out: dict[str, Array] = {}
    for info in m.inputs():
        shape = resolved[info.name]
        npd = lookup(info.dtype).to_numpy()
        bounds = _range_for(val_range, info.name)
        kind, size = rules.get(info.name, ("count", RANDOM_INT_HIGH))
        if bounds is not None:
            out[info.name] = _draw(npd, shape, rng, bounds, info.name)
        elif kind == "index":
            out[info.name] = rng.integers(0, max(size or 1, 1), size=shape).astype(npd)
        elif kind == "shape":
            values = (shape_values or {}).get(info.name)
            if values is None:
                raise InputError(f"integer input {info.describe()} holds shapes, sizes or axes (it feeds "
                                 f"{_shape_use(m, info.name)}): random values would not fit; give its values "
                                 "(--load-inputs FILE.npz or --data-loader script.py), or --val-range "
                                 f"{info.name}:LO,HI")
            out[info.name] = np.broadcast_to(np.asarray(values, dtype=npd).reshape(-1)
                                             if len(shape) else np.asarray(values, npd).reshape(()), shape).copy()
        else:
            out[info.name] = random_array(npd, shape, rng)
    return out


def _shape_use(m: OnnxModel, name: str) -> str:
    ops = sorted({n.op_type for n in m.proto.graph.node if name in n.input and n.op_type in _SHAPE_USES})
    return ", ".join(ops) or "a shape through Cast/Reshape"


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


def data_loader_feeds(script: str | os.PathLike[str], *, first_only: bool = False,
                      what: str = "--data-loader") -> list[dict[str, Array]]:
    """The feeds yielded by a Polygraphy-style data loader: ``script.py`` with a function ``load_data()`` (or
    ``script.py:NAME`` for another function) that returns or yields dicts of input name -> array. With
    ``first_only``, the loader is not iterated past its first feed. ``what`` names the option in messages.

    The script runs in this process (it is code: run only scripts you trust).

    Raises:
        InputError: the script is missing, fails, has no such function, or yields nothing or no dict of arrays.
    """
    import importlib.util

    text = os.fspath(script)
    path_text, sep, func = text.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        path_text, func = text, "load_data"
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"{what}: script {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"trtkit_data_loader_{abs(hash(str(path.resolve())))}", path)
    if spec is None or spec.loader is None:
        raise InputError(f"{what}: cannot load {str(path)!r} as a Python script")
    module = importlib.util.module_from_spec(spec)
    feeds: list[dict[str, Array]] = []
    try:
        spec.loader.exec_module(module)
        loader = getattr(module, func, None)
        if not callable(loader):
            raise InputError(f"{what}: {str(path)!r} defines no function {func}(); define {func}() that "
                             "yields dicts of input name -> array")
        result = loader()
        for i, item in enumerate([result] if isinstance(result, Mapping) else result):
            if not isinstance(item, Mapping) or not item:
                raise InputError(f"{what}: {func}() in {str(path)!r} yielded {type(item).__name__} as feed {i}, "
                                 "not a dict of input name -> array")
            feeds.append({str(k): np.asarray(v) for k, v in item.items()})
            if first_only:
                break
    except InputError:
        raise
    except Exception as exc:  # the user's script raises whatever it raises
        raise InputError(f"{what} {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    if not feeds:
        raise InputError(f"{what}: {func}() in {str(path)!r} yielded nothing; yield at least one dict of input "
                         "name -> array")
    return feeds


def run_data_loader(script: str | os.PathLike[str]) -> dict[str, Array]:
    """The first feed yielded by a Polygraphy-style data loader (see :func:`data_loader_feeds`)."""
    return data_loader_feeds(script, first_only=True)[0]
