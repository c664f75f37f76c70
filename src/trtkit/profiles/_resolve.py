"""Checking profiles against a model's inputs, and completing them (the public names are in
:mod:`trtkit.profiles`)."""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trtkit.errors import ShapeError
from trtkit.profiles._ranges import INT64_MAX, MAX_PROFILE_DIM, Profile, Shape, ShapeRange, format_shape
from trtkit.text import safe

__all__ = ["InputInfo", "resolve_profiles"]



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
        return f"{safe(self.name)} ({self.dtype}{kind} [{', '.join(safe(d) for d in dims)}])"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+/@%-]+", re.ASCII)
_PLAIN_SHELL = re.compile(r"[A-Za-z0-9_.+/@%:-]+", re.ASCII)


def _spec_name(name: str) -> str | None:
    """``name`` as written in a trtexec shape string: quoted when it holds ':' or anything but plain characters;
    ``None`` when it cannot be written at all (a name with a single quote)."""
    if "'" in name or not name.strip():
        return None
    return name if _PLAIN_NAME.fullmatch(name) else f"'{name}'"


def _shell_word(flag: str, names: Sequence[str]) -> str:
    """``flag`` as one shell word that reaches trtkit as a shape string naming ``names``: plain when the shell
    leaves what trtkit reads unchanged, else in double quotes, else in shell single quotes."""
    if all(_PLAIN_SHELL.fullmatch(n) for n in names):
        return flag  # the shell drops quotes around 'a:0', and trtkit splits a:0:1x3 at the last ':' anyway
    if not any(ch in flag for ch in '$`\\"!'):
        return f'"{flag}"'
    return shlex.quote(flag)


def _example_value(info: InputInfo) -> str | None:
    """The dims (values, for a shape tensor) to suggest: the model's fixed dims, 1 at each dynamic one."""
    if info.is_shape_tensor:
        count = _shape_tensor_len(info)
        return None if count is None else format_shape([1] * count)
    return format_shape([d if d >= 0 else 1 for d in info.shape])


def _example_flags(missing: Sequence[InputInfo]) -> tuple[str, list[str]]:
    """Flags a shell can paste, giving every input in ``missing`` a range, and the inputs they cannot cover."""
    specs, names, left_out = [], [], []
    for info in missing:
        name, value = _spec_name(info.name), _example_value(info)
        if name is None or value is None:
            left_out.append(info.name)
        else:
            specs.append(f"{name}:{value}")
            names.append(info.name)
    if not specs:
        return "", left_out
    joined = ",".join(specs)
    words = [_shell_word(f"--{kind}Shapes={joined}", names) for kind in ("min", "opt", "max")]
    return " ".join(words), left_out


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
        if not info.is_shape_tensor and lo < 1:
            raise ShapeError(
                f"{where}: input {info.name!r} has a {'zero' if lo == 0 else 'negative'}-size dim at position "
                f"{axis} in its range ({rng}); every dim must be at least 1"
            )
        if not info.is_shape_tensor and hi > MAX_PROFILE_DIM:
            raise ShapeError(
                f"{where}: input {info.name!r} has dim {hi} at position {axis} in its range ({rng}); TensorRT "
                f"accepts profile dims up to {MAX_PROFILE_DIM} (2**31 - 1)"
            )
    if not info.is_shape_tensor and math.prod(rng.max) > INT64_MAX:
        raise ShapeError(
            f"{where}: input {info.name!r} would hold {math.prod(rng.max)} elements at its max shape "
            f"{format_shape(rng.max)}, more than TensorRT can address ({INT64_MAX}); lower the max shape"
        )


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
    flags, left_out = _example_flags(missing)
    parts = []
    replace = []
    for info in missing:  # what is open, and (for the inputs the example flags cover) what to replace
        if info.is_shape_tensor:
            parts.append(f"input {info.describe()} is a shape tensor: give its values")
            what = f"the values of {safe(info.name)!r}"
        else:
            axes = ", ".join(
                f"{a} ({safe(info.dim_names[a])})" if a < len(info.dim_names) and info.dim_names[a] else str(a)
                for a in info.dynamic_axes
            )
            parts.append(f"input {info.describe()} has dynamic dims at {axes}")
            what = f"{safe(info.name)!r} dim{'s' if len(info.dynamic_axes) > 1 else ''} {axes}"
        if info.name not in left_out:
            replace.append(what)
    text = f"the model has inputs whose sizes are open and {where}:\n  " + "\n  ".join(parts)
    if flags:
        text += (
            f"\nGive a range for each, e.g. on the command line:\n  {safe(flags)}\n"
            f"These flags set each open size to 1: replace {'; '.join(replace)} with the sizes you need "
            "(min <= opt <= max)."
        )
    if left_out:
        text += (
            f"\nInput{'s' if len(left_out) > 1 else ''} {', '.join(repr(safe(n)) for n in left_out)} cannot be "
            "written as a shape flag here: give the range in Python, shapes={NAME: (min, opt, max)}."
        )
    return text + "\n(or --shapes=NAME:DIMS for a fixed shape; in Python: shapes={'NAME': (min, opt, max)})"
