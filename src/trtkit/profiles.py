"""Optimization profiles: typed min/opt/max shape ranges, trtexec's ``x:1x3x224x224`` syntax, validation.

A :class:`Profile` maps each input name to a :class:`ShapeRange`. For shape-tensor inputs (inputs whose
*values* are shapes) the range holds values, not dims, exactly as in trtexec.

Everything here is pure Python: profiles are checked against the model's inputs before any build starts.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from trtkit.errors import ShapeError

__all__ = [
    "InputInfo",
    "Profile",
    "ProfilesLike",
    "Shape",
    "ShapeRange",
    "format_shape",
    "normalize_profiles",
    "parse_shape_spec",
    "profiles_from_trtexec",
    "resolve_profiles",
]

Shape: TypeAlias = tuple[int, ...]


def format_shape(shape: Sequence[int | str]) -> str:
    """Format dims as trtexec does: ``1x3x224x224``; dynamic dims print as ``-1`` or their name."""
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def _as_shape(value: Any, what: str) -> Shape:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ShapeError(f"{what}: expected a sequence of ints such as (1, 3, 224, 224), got {value!r}")
    dims = []
    for d in value:
        if isinstance(d, bool) or (not isinstance(d, int) and not hasattr(d, "__index__")):
            raise ShapeError(f"{what}: dims must be ints, got {value!r}")
        dims.append(int(d))
    return tuple(dims)


@dataclass(frozen=True)
class ShapeRange:
    """The min, opt and max shape of one input in one profile (values, for shape-tensor inputs)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for attr in ("min", "opt", "max"):
            object.__setattr__(self, attr, _as_shape(getattr(self, attr), attr))
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ShapeError(
                f"min {format_shape(self.min)}, opt {format_shape(self.opt)} and max "
                f"{format_shape(self.max)} must have the same rank"
            )

    @classmethod
    def fixed(cls, shape: Sequence[int]) -> ShapeRange:
        """A range whose min, opt and max are all ``shape``."""
        s = _as_shape(shape, "shape")
        return cls(s, s, s)

    @property
    def is_fixed(self) -> bool:
        return self.min == self.opt == self.max

    def contains(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` has this rank and lies within min and max on every dim."""
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    def __str__(self) -> str:
        if self.is_fixed:
            return format_shape(self.opt)
        return f"{format_shape(self.min)} .. {format_shape(self.opt)} .. {format_shape(self.max)}"

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class Profile:
    """One optimization profile: a :class:`ShapeRange` per input name."""

    ranges: Mapping[str, ShapeRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checked: dict[str, ShapeRange] = {}
        for name, rng in dict(self.ranges).items():
            if not isinstance(name, str):
                raise ShapeError(f"profile input names must be strings, got {name!r}")
            checked[name] = _as_range(rng, name)
        object.__setattr__(self, "ranges", MappingProxyType(checked))

    def __getitem__(self, name: str) -> ShapeRange:
        return self.ranges[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __contains__(self, name: object) -> bool:
        return name in self.ranges

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.ranges.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and dict(self.ranges) == dict(other.ranges)

    def __str__(self) -> str:
        return ", ".join(f"{name}: {rng}" for name, rng in self.ranges.items())

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {name: rng.to_dict() for name, rng in self.ranges.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Sequence[int]]]) -> Profile:
        return cls({n: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for n, r in data.items()})


def _as_range(value: Any, name: str) -> ShapeRange:
    if isinstance(value, ShapeRange):
        return value
    if isinstance(value, str):
        return ShapeRange.fixed(_parse_dims(value, name))
    if isinstance(value, Sequence) and len(value) == 3 and all(
        isinstance(v, Sequence) and not isinstance(v, str) for v in value
    ):
        return ShapeRange(
            _as_shape(value[0], f"{name} min"), _as_shape(value[1], f"{name} opt"),
            _as_shape(value[2], f"{name} max"),
        )
    return ShapeRange.fixed(_as_shape(value, name))


# ---- trtexec syntax ----------------------------------------------------------------------------------------


def _parse_dims(text: str, name: str) -> Shape:
    text = text.strip()
    if text in ("", "scalar"):
        return ()
    try:
        return tuple(int(part) for part in text.split("x"))
    except ValueError:
        raise ShapeError(
            f"cannot read dims {text!r} of input {name!r}: write them as trtexec does, e.g. 1x3x224x224"
        ) from None


def parse_shape_spec(spec: str) -> dict[str, Shape]:
    """Parse trtexec's ``name:dims[,name:dims...]``, e.g. ``"x:1x3x224x224,mask:1x128"``.

    Names that contain ``:`` or ``,`` can be quoted with single quotes, as in trtexec: ``'input:0':1x3``.
    """
    result: dict[str, Shape] = {}
    i, n = 0, len(spec)
    while i < n:
        if spec[i] == "'":
            end = spec.find("'", i + 1)
            if end < 0:
                raise ShapeError(f"unterminated quote in shape spec {spec!r}")
            name = spec[i + 1 : end]
            i = end + 1
            if i >= n or spec[i] != ":":
                raise ShapeError(f"expected ':' after quoted name {name!r} in shape spec {spec!r}")
        else:
            colon = spec.find(":", i)
            if colon < 0:
                raise ShapeError(
                    f"cannot read shape spec {spec!r}: expected name:dims, e.g. x:1x3x224x224"
                )
            name = spec[i:colon].strip()
            i = colon
        comma = spec.find(",", i)
        end = n if comma < 0 else comma
        dims_text = spec[i + 1 : end]
        if not name:
            raise ShapeError(f"empty input name in shape spec {spec!r}")
        if name in result:
            raise ShapeError(f"input {name!r} appears twice in shape spec {spec!r}")
        result[name] = _parse_dims(dims_text, name)
        i = end + 1
    return result


def profiles_from_trtexec(
    shapes: Sequence[str] = (),
    min_shapes: Sequence[str] = (),
    opt_shapes: Sequence[str] = (),
    max_shapes: Sequence[str] = (),
) -> list[Profile]:
    """Build profiles from trtexec-style flags.

    The i-th occurrence of each flag belongs to profile i. Within a profile an input given only by
    ``--shapes`` is fixed; otherwise a missing ``opt`` defaults to ``max`` (or ``min``), and a missing
    ``min``/``max`` defaults to ``opt``.
    """
    count = max(len(shapes), len(min_shapes), len(opt_shapes), len(max_shapes))
    profiles: list[Profile] = []
    for i in range(count):
        fixed = parse_shape_spec(shapes[i]) if i < len(shapes) else {}
        mins = parse_shape_spec(min_shapes[i]) if i < len(min_shapes) else {}
        opts = parse_shape_spec(opt_shapes[i]) if i < len(opt_shapes) else {}
        maxs = parse_shape_spec(max_shapes[i]) if i < len(max_shapes) else {}
        ranges: dict[str, ShapeRange] = {}
        for name in dict.fromkeys([*mins, *opts, *maxs]):
            opt = opts.get(name) or maxs.get(name) or mins[name]
            ranges[name] = ShapeRange(mins.get(name, opt), opt, maxs.get(name, opt))
        for name, shape in fixed.items():
            if name in ranges:
                raise ShapeError(
                    f"input {name!r} is given both by --shapes and by --min/opt/maxShapes in profile {i}"
                )
            ranges[name] = ShapeRange.fixed(shape)
        profiles.append(Profile(ranges))
    return profiles


ProfilesLike: TypeAlias = "Profile | Mapping[str, Any] | str | Sequence[Profile | Mapping[str, Any] | str] | None"


def normalize_profiles(value: Any) -> list[Profile]:
    """Accept the forms users write and return a list of :class:`Profile`.

    Accepted: ``None``; a :class:`Profile`; a trtexec string ``"x:1x3x224x224"``; a mapping of input name to
    a shape ``(1, 3, 224, 224)``, a ``(min, opt, max)`` triple of shapes, a :class:`ShapeRange` or a dims
    string; or a list of any of these (one profile each).
    """
    if value is None:
        return []
    if isinstance(value, Profile):
        return [value]
    if isinstance(value, str):
        return [Profile({name: ShapeRange.fixed(dims) for name, dims in parse_shape_spec(value).items()})]
    if isinstance(value, Mapping):
        return [Profile(dict(value))]
    if isinstance(value, Sequence):
        out: list[Profile] = []
        for item in value:
            out.extend(normalize_profiles(item))
        return out
    raise ShapeError(
        f"cannot use {type(value).__name__} as shapes; expected a Profile, a mapping of input name to shape "
        "or (min, opt, max), a trtexec string like 'x:1x3x224x224', or a list of these"
    )


# ---- validation against the model ----------------------------------------------------------------------


@dataclass(frozen=True)
class InputInfo:
    """A model input as TensorRT sees it: ``-1`` marks a dynamic dim."""

    name: str
    shape: Shape
    dtype: str
    dim_names: tuple[str | None, ...] = ()
    is_shape_tensor: bool = False

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if d < 0]

    def describe(self) -> str:
        dims = [
            (self.dim_names[i] or "?") if d < 0 and i < len(self.dim_names) else str(d)
            for i, d in enumerate(self.shape)
        ]
        kind = " shape tensor" if self.is_shape_tensor else ""
        return f"{self.name} ({self.dtype}{kind} [{', '.join(dims)}])"


def _example_flags(info: InputInfo) -> str:
    dims = [f"<{(info.dim_names[i] if i < len(info.dim_names) and info.dim_names[i] else 'd' + str(i))}>"
            if d < 0 else str(d) for i, d in enumerate(info.shape)]
    spec = f"{info.name}:{'x'.join(dims)}"
    return f"--minShapes={spec} --optShapes={spec} --maxShapes={spec}"


def _shape_tensor_len(info: InputInfo) -> int | None:
    if any(d < 0 for d in info.shape):
        return None
    return math.prod(info.shape)


def _check_range(info: InputInfo, rng: ShapeRange, where: str) -> None:
    if info.is_shape_tensor:
        want = _shape_tensor_len(info)
        if want is not None and len(rng.min) != want:
            raise ShapeError(
                f"{where}: input {info.name!r} is a shape tensor of {want} values, so its profile gives "
                f"values, not dims; got {len(rng.min)} values ({rng})"
            )
    else:
        if len(rng.min) != len(info.shape):
            raise ShapeError(
                f"{where}: input {info.describe()} has rank {len(info.shape)}, but the profile gives rank "
                f"{len(rng.min)} ({rng})"
            )
        for axis, dim in enumerate(info.shape):
            if dim >= 0:
                for label, shape in (("min", rng.min), ("opt", rng.opt), ("max", rng.max)):
                    if shape[axis] != dim:
                        raise ShapeError(
                            f"{where}: input {info.describe()}: dim {axis} is fixed to {dim} by the model, "
                            f"but the profile's {label} is {format_shape(shape)}"
                        )
    for axis, (lo, mid, hi) in enumerate(zip(rng.min, rng.opt, rng.max, strict=True)):
        if not lo <= mid <= hi:
            raise ShapeError(
                f"{where}: input {info.name!r} at position {axis} needs min <= opt <= max, got "
                f"{lo} / {mid} / {hi} (min {format_shape(rng.min)}, opt {format_shape(rng.opt)}, "
                f"max {format_shape(rng.max)})"
            )
        if not info.is_shape_tensor and lo < 0:
            raise ShapeError(f"{where}: input {info.name!r} has a negative dim in its range ({rng})")


def resolve_profiles(profiles: Sequence[Profile], inputs: Sequence[InputInfo]) -> list[Profile]:
    """Check ``profiles`` against the model's ``inputs`` and complete them.

    Returns the profiles with every input present (static inputs not named are filled in as fixed). An input
    left out whose dynamic dims all share their ONNX names with dims of inputs given takes its range from
    them (TensorRT keeps equally named dims equal). With no profiles, one is derived when the model leaves
    nothing open.

    Raises:
        ShapeError: unknown input names, wrong rank, changed static dims, min > opt or opt > max, dynamic
            dims or shape-tensor values left without a range, different ranges for dims sharing a name.
    """
    by_name = {info.name: info for info in inputs}
    listing = "; ".join(info.describe() for info in inputs) or "none"
    for index, profile in enumerate(profiles):
        for name in profile:
            if name not in by_name:
                close = difflib.get_close_matches(name, list(by_name), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ShapeError(
                    f"profile {index} names input {name!r}, which the model does not have.{hint} "
                    f"The model's inputs are: {listing}"
                )
            _check_range(by_name[name], profile[name], f"profile {index}")

    open_inputs = [i for i in inputs if i.is_shape_tensor or i.dynamic_axes]
    if not profiles:
        if open_inputs:
            raise ShapeError(_missing_message(open_inputs, None))
        return [Profile({i.name: ShapeRange.fixed(i.shape) for i in inputs})] if inputs else []

    completed: list[Profile] = []
    for index, profile in enumerate(profiles):
        given = dict(profile.ranges)
        _check_shared_dims(inputs, given, index)
        derived = _derive_from_shared_dims(open_inputs, given)
        missing = [i for i in open_inputs if i.name not in given and i.name not in derived]
        if missing:
            raise ShapeError(_missing_message(missing, index))
        ranges = {i.name: given.get(i.name) or derived.get(i.name) or ShapeRange.fixed(i.shape) for i in inputs}
        completed.append(Profile(ranges))
    return completed


def _named_axes(info: InputInfo) -> list[tuple[int, str]]:
    """``(axis, name)`` of the dynamic dims that carry a name; TensorRT holds equally named dims equal."""
    if info.is_shape_tensor:
        return []
    return [(a, n) for a, n in enumerate(info.dim_names) if n and a < len(info.shape) and info.shape[a] < 0]


def _check_shared_dims(inputs: Sequence[InputInfo], ranges: Mapping[str, ShapeRange], index: int) -> None:
    seen: dict[str, tuple[str, int, tuple[int, int, int]]] = {}
    for info in inputs:
        rng = ranges.get(info.name)
        if rng is None or len(rng.min) != len(info.shape):
            continue
        for axis, dim_name in _named_axes(info):
            values = (rng.min[axis], rng.opt[axis], rng.max[axis])
            if dim_name not in seen:
                seen[dim_name] = (info.name, axis, values)
                continue
            other, other_axis, other_values = seen[dim_name]
            if values != other_values:
                raise ShapeError(
                    f"profile {index}: inputs {other!r} (dim {other_axis}) and {info.name!r} (dim {axis}) share "
                    f"the dynamic dim {dim_name!r}, which TensorRT keeps equal, but the profile gives them "
                    f"different sizes: min/opt/max {'/'.join(map(str, other_values))} for {other!r} and "
                    f"{'/'.join(map(str, values))} for {info.name!r}. Give both the same min, opt and max"
                )


def _derive_from_shared_dims(open_inputs: Sequence[InputInfo],
                             ranges: Mapping[str, ShapeRange]) -> dict[str, ShapeRange]:
    """Ranges for inputs left out whose every dynamic dim shares a name with a dim of an input given."""
    known: dict[str, tuple[int, int, int]] = {}
    for info in open_inputs:
        rng = ranges.get(info.name)
        if rng is not None and len(rng.min) == len(info.shape):
            for axis, dim_name in _named_axes(info):
                known.setdefault(dim_name, (rng.min[axis], rng.opt[axis], rng.max[axis]))
    derived: dict[str, ShapeRange] = {}
    for info in open_inputs:
        if info.name in ranges or info.is_shape_tensor:
            continue
        named = dict(_named_axes(info))
        if len(named) != len(info.dynamic_axes) or not all(n in known for n in named.values()):
            continue
        dims = [[known[named[a]][k] if a in named else d for a, d in enumerate(info.shape)] for k in range(3)]
        derived[info.name] = ShapeRange(tuple(dims[0]), tuple(dims[1]), tuple(dims[2]))
    return derived


def _missing_message(missing: Sequence[InputInfo], index: int | None) -> str:
    where = "no shapes were given" if index is None else f"profile {index} leaves them out"
    parts = []
    for info in missing:
        if info.is_shape_tensor:
            parts.append(f"input {info.describe()} is a shape tensor: give its values")
        else:
            axes = ", ".join(
                f"{a} ({info.dim_names[a]})" if a < len(info.dim_names) and info.dim_names[a] else str(a)
                for a in info.dynamic_axes
            )
            parts.append(f"input {info.describe()} has dynamic dims at {axes}")
    flags = " ".join(_example_flags(i) for i in missing)
    return (
        f"the model has inputs whose sizes are open and {where}:\n  "
        + "\n  ".join(parts)
        + f"\nGive a range for each, e.g. on the command line: {flags}\n"
        "(or --shapes=NAME:DIMS for a fixed shape; in Python: shapes={'NAME': (min, opt, max)})"
    )
