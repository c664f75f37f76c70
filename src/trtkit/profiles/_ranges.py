"""Shapes, ranges and profiles, and trtexec's ``x:1x3x224x224`` syntax (the public names are in
:mod:`trtkit.profiles`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from trtkit.errors import ShapeError

__all__ = [
    "INT64_MAX", "MAX_PROFILE_DIM", "Profile", "ProfilesLike", "Shape", "ShapeRange", "complete_range", "format_shape",
    "normalize_profiles", "parse_shape_spec", "profiles_from_trtexec",
]

Shape: TypeAlias = tuple[int, ...]


def format_shape(shape: Sequence[int | str]) -> str:
    """Format dims as trtexec does: ``1x3x224x224``; dynamic dims print as ``-1`` or their name."""
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


INT64_MAX = 2**63 - 1
"""The largest value a shape or shape-tensor value can hold (TensorRT's dims are int64)."""
MAX_PROFILE_DIM = 2**31 - 1
"""The largest dim TensorRT accepts in an optimization profile (seen: 2**31 is refused as "inconsistent")."""


def _as_shape(value: Any, what: str) -> Shape:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ShapeError(f"{what}: expected a sequence of ints such as (1, 3, 224, 224), got {value!r}")
    dims = []
    for d in value:
        if isinstance(d, bool) or (not isinstance(d, int) and not hasattr(d, "__index__")):
            raise ShapeError(f"{what}: dims must be ints, got {_short(value)}")
        try:
            dim = int(d.__index__())
        except Exception:  # a foreign __index__ that fails is still a wrong dim, not a trtkit bug
            raise ShapeError(f"{what}: dims must be ints, got {_short(value)}") from None
        if not -INT64_MAX - 1 <= dim <= INT64_MAX:
            raise ShapeError(
                f"{what}: dim {dim} does not fit in TensorRT's 64-bit dims (largest {INT64_MAX}); "
                "give a realistic size"
            )
        dims.append(dim)
    return tuple(dims)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        """The inverse of :meth:`to_dict`; a missing ``opt`` defaults to ``max`` (see :func:`complete_range`)."""
        if not isinstance(data, Mapping) or not all(isinstance(r, Mapping) for r in data.values()):
            raise ShapeError(f"a profile is a mapping of input name to {{'min', 'opt', 'max'}}, got {_short(data)}")
        return cls({name: _range_from_mapping(rng, name) for name, rng in data.items()})


def _as_range(value: Any, name: str) -> ShapeRange:
    if isinstance(value, ShapeRange):
        return value
    if isinstance(value, str):
        return ShapeRange.fixed(_parse_dims(value, name))
    if isinstance(value, Mapping):
        return _range_from_mapping(value, name)
    if isinstance(value, Sequence) and value and all(
        isinstance(v, Sequence) and not isinstance(v, str | bytes) for v in value
    ):
        if len(value) != 3:
            raise ShapeError(
                f"input {name!r}: a range is (min, opt, max), three shapes, but {len(value)} were given "
                f"({_short(value)}); e.g. {{{name!r}: ((1, 3, 224, 224), (8, 3, 224, 224), (16, 3, 224, 224))}}, "
                f"or {{{name!r}: {{'min': ..., 'max': ...}}}} to let opt default to max"
            )
        return ShapeRange(
            _as_shape(value[0], f"{name} min"), _as_shape(value[1], f"{name} opt"),
            _as_shape(value[2], f"{name} max"),
        )
    return ShapeRange.fixed(_as_shape(value, name))


def _range_from_mapping(value: Mapping[Any, Any], name: str) -> ShapeRange:
    unknown = [k for k in value if k not in ("min", "opt", "max")]
    if unknown or not value:
        raise ShapeError(
            f"input {name!r}: a range mapping takes the keys 'min', 'opt' and 'max', got {_short(list(value))}"
        )
    got = {k: _as_shape(v, f"{name} {k}") for k, v in value.items()}
    return complete_range(got.get("min"), got.get("opt"), got.get("max"))


def complete_range(min: Shape | None, opt: Shape | None, max: Shape | None) -> ShapeRange:
    """A :class:`ShapeRange` from the parts given, by trtexec's rule: a missing ``opt`` is ``max`` (or ``min``
    when there is no ``max``); a missing ``min`` or ``max`` is ``opt``."""
    mid = opt if opt is not None else max if max is not None else min
    if mid is None:
        raise ShapeError("a range needs at least one of min, opt and max")
    return ShapeRange(min if min is not None else mid, mid, max if max is not None else mid)


# ---- trtexec syntax ----------------------------------------------------------------------------------------

_DIM = re.compile(r"-?[0-9]+", re.ASCII)


def _parse_dims(text: str, name: str) -> Shape:
    text = text.strip()
    if text in ("", "scalar"):
        return ()
    parts = text.split("x")
    bad = [part for part in parts if not _DIM.fullmatch(part)]
    if bad:
        raise ShapeError(
            f"cannot read dims {text!r} of input {name!r} ({bad[0]!r} is not a number in ASCII digits 0-9): "
            "write them as trtexec does, e.g. 1x3x224x224"
        )
    return _as_shape([int(part) for part in parts], f"input {name!r}")


def _split_items(spec: str) -> list[str]:
    """Split at the commas outside single quotes."""
    items, start, quoted = [], 0, False
    for i, ch in enumerate(spec):
        if ch == "'":
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(spec[start:i])
            start = i + 1
    if quoted:
        raise ShapeError(f"unterminated quote in shape spec {spec!r}: close the quoted name, e.g. 'input:0':1x3")
    items.append(spec[start:])
    return items


def parse_shape_spec(spec: str) -> dict[str, Shape]:
    """Parse trtexec's ``name:dims[,name:dims...]``, e.g. ``"x:1x3x224x224,mask:1x128"``.

    As in trtexec, the name ends at the **last** ``:`` of each item, so ``input_1:0:1x3x224x224`` names input
    ``input_1:0``. Names can also be quoted with single quotes: ``'input_1:0':1x3``; a name with ``,`` must be.
    """
    if not isinstance(spec, str):
        raise ShapeError(f"a shape spec is a string such as 'x:1x3x224x224', got {type(spec).__name__}")
    result: dict[str, Shape] = {}
    for item in _split_items(spec):
        text = item.strip()
        if text.startswith("'"):
            end = text.find("'", 1)
            name, rest = text[1:end], text[end + 1 :]
            if not rest.startswith(":"):
                raise ShapeError(f"expected ':' after quoted name {name!r} in shape spec {spec!r}")
            dims_text = rest[1:]
        else:
            name, colon, dims_text = text.rpartition(":")
            if not colon:
                raise ShapeError(f"cannot read shape spec {spec!r}: expected name:dims, e.g. x:1x3x224x224")
            if "'" in name:
                raise ShapeError(f"stray quote in input name {name!r} of shape spec {spec!r}: quote the whole name")
            name = name.strip()
        if not name:
            raise ShapeError(f"empty input name in shape spec {spec!r}")
        if name in result:
            raise ShapeError(f"input {name!r} appears twice in shape spec {spec!r}")
        result[name] = _parse_dims(dims_text, name)
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
            ranges[name] = complete_range(mins.get(name), opts.get(name), maxs.get(name))
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


