"""Tensor specs and the checks run before anything reaches the GPU (pure Python; CI tests them without CUDA).

:func:`describe_tensors` reads an engine's I/O tensors into :class:`TensorSpec`; for each call,
:func:`validate_inputs` checks the :class:`ArrayInfo` of every input (made by :mod:`trtkit.runtime.io`) and
reports every mismatch at once, and :func:`select_profile` picks the tightest optimization profile.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from trtkit import dtypes
from trtkit.backend import CudaEngine
from trtkit.dtypes import DType
from trtkit.errors import InputError
from trtkit.profiles import Shape, ShapeRange, format_shape
from trtkit.text import safe

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ArrayInfo",
    "TensorSpec",
    "describe_tensors",
    "np_dtype",
    "select_profile",
    "shape_tensor_values",
    "trt_mode",
    "validate_inputs",
]


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor. ``-1`` in ``shape`` marks a dynamic dim; ``profiles[i]`` is its range in
    optimization profile ``i`` (inputs only; values for shape tensors)."""

    name: str
    mode: Literal["input", "output"]
    dtype: DType
    shape: Shape
    location: Literal["device", "host"] = "device"
    is_shape_tensor: bool = False
    profiles: tuple[ShapeRange, ...] = ()
    format: str = "LINEAR"
    """TensorRT's ``TensorFormat`` name; trtkit binds only ``LINEAR`` (row-major) tensors."""

    @property
    def is_input(self) -> bool:
        return self.mode == "input"

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)

    def describe(self) -> str:
        return f"{safe(self.name)} ({self.dtype.name} [{', '.join(str(d) for d in self.shape)}])"

    def __repr__(self) -> str:
        return f"TensorSpec({self.mode} {self.name!r}: {self.dtype.name}[{format_shape(self.shape)}])"


class ArrayInfo(NamedTuple):
    """What trtkit learned about one array passed in: where it lives, its layout, its address.

    A named tuple: one is made per array per call, and tuples are the cheapest record Python builds.
    """

    kind: Literal["host", "device"]
    shape: Shape
    dtype: str
    """trtkit dtype name, or the foreign name when TensorRT has no such type (e.g. ``float64``)."""
    contiguous: bool = True
    device: int = -1
    ptr: int = 0
    pinned: bool = False
    obj: object = None
    """The array itself (host arrays: as NumPy), kept alive for the call."""


def trt_mode(value: object) -> str:
    """The member name of a TensorRT enum value (``TensorIOMode.INPUT`` -> ``"INPUT"``)."""
    return str(getattr(value, "name", value)).rsplit(".", 1)[-1].upper()


def np_dtype(spec: TensorSpec) -> np.dtype[np.generic]:
    """The NumPy dtype of a tensor (raw bytes ``V<n>`` where NumPy has no such type, e.g. float8)."""
    import numpy as np

    return np.dtype(spec.dtype.numpy_name) if spec.dtype.numpy_name else np.dtype(f"V{spec.dtype.itemsize}")


def describe_tensors(engine: CudaEngine) -> tuple[TensorSpec, ...]:
    """Read every I/O tensor of a deserialized engine (inputs first, engine order kept)."""
    n_prof = int(engine.num_optimization_profiles)
    specs: list[TensorSpec] = []
    for i in range(int(engine.num_io_tensors)):
        name = engine.get_tensor_name(i)
        mode = trt_mode(engine.get_tensor_mode(name))
        if mode not in ("INPUT", "OUTPUT"):
            continue
        is_input = mode == "INPUT"
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        location: Literal["device", "host"] = (
            "host" if trt_mode(engine.get_tensor_location(name)) == "HOST" else "device")
        is_shape = bool(engine.is_shape_inference_io(name)) if is_input else False
        ranges: list[ShapeRange] = []
        if is_input:
            for p in range(n_prof):
                if is_shape:
                    lo, opt, hi = engine.get_tensor_profile_values(p, name)  # positional: keywords are swapped
                else:
                    lo, opt, hi = engine.get_tensor_profile_shape(name, p)
                ranges.append(ShapeRange(tuple(lo), tuple(opt), tuple(hi)))
        specs.append(TensorSpec(
            name=name, mode="input" if is_input else "output", dtype=dtypes.from_trt(engine.get_tensor_dtype(name)),
            shape=shape, location=location, is_shape_tensor=is_shape, profiles=tuple(ranges),
            format=trt_mode(engine.get_tensor_format(name)),
        ))
    return tuple([s for s in specs if s.is_input] + [s for s in specs if not s.is_input])


def validate_inputs(inputs: Sequence[TensorSpec], arrays: Mapping[str, ArrayInfo], *, device: int,
                    by_name: Mapping[str, TensorSpec] | None = None) -> None:
    """Check names, dtypes, ranks, fixed dims, layout and device; raise one InputError listing every problem.

    Dims outside every profile are reported by :func:`select_profile`. ``by_name`` (the specs by name) saves
    rebuilding it on every call.
    """
    problems: list[str] = []
    if by_name is None:
        by_name = {s.name: s for s in inputs}
    for name in arrays:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown input {name!r}{hint}")
    for spec in inputs:
        info = arrays.get(spec.name)
        if info is None:
            problems.append(f"missing input {spec.describe()}")
            continue
        if info.dtype != spec.dtype.name:
            problems.append(f"input {spec.name!r} has dtype {info.dtype}; the engine expects {spec.dtype.name}")
        if spec.location == "host" and info.kind == "device":
            problems.append(f"input {spec.name!r} is a shape tensor, which TensorRT reads on the CPU: pass it as "
                            "a NumPy array or a list of ints, not a CUDA array")
        if len(info.shape) != len(spec.shape):
            problems.append(f"input {spec.name!r} has rank {len(info.shape)} ({format_shape(info.shape)}); the "
                            f"engine expects rank {len(spec.shape)} ({format_shape(spec.shape)})")
        else:
            for axis, (got, want) in enumerate(zip(info.shape, spec.shape, strict=True)):
                if want >= 0 and got != want:
                    problems.append(f"input {spec.name!r} dim {axis} is {got}; the engine fixes it to {want} "
                                    f"({format_shape(spec.shape)})")
        if not info.contiguous:
            problems.append(f"input {spec.name!r} is not C-contiguous; pass a contiguous array "
                            "(np.ascontiguousarray(x), x.contiguous(), cupy.ascontiguousarray(x))")
        if info.kind == "device" and info.device != device:
            problems.append(f"input {spec.name!r} is on CUDA device {info.device}; the engine lives on device "
                            f"{device}. Move it there (x.to('cuda:{device}')) or load the engine with device="
                            f"{info.device}")
    if problems:
        raise InputError("the inputs do not match the engine:\n  - " + "\n  - ".join(problems))


def shape_tensor_values(arr: object) -> Shape:
    """The values of a shape-tensor input given on the host (NumPy array or sequence of ints)."""
    import numpy as np

    return tuple(int(v) for v in np.asarray(arr).reshape(-1))


def select_profile(inputs: Sequence[TensorSpec], shapes: Mapping[str, Shape], *, prefer: int | None = None,
                   values: Mapping[str, Shape] | None = None) -> int:
    """The tightest optimization profile containing every input shape and every shape-tensor value in
    ``values`` (smallest total max volume; ties go to ``prefer``, then the lowest index). Raises InputError
    listing the profiles when none fits."""
    dims = [s for s in inputs if not s.is_shape_tensor]
    given_values = values or {}
    shape_inputs = [s for s in inputs if s.is_shape_tensor and s.name in given_values]
    n = len(inputs[0].profiles) if inputs else 0
    if n == 0:
        return 0
    best, best_cost = -1, (math.inf, 1, 0)
    for p in range(n):
        if all(s.profiles[p].contains(shapes[s.name]) for s in dims) and all(
                s.profiles[p].contains(given_values[s.name]) for s in shape_inputs):
            cost = (sum(math.prod(s.profiles[p].max) for s in dims), 0 if p == prefer else 1, p)
            if cost < best_cost:
                best, best_cost = p, cost
    if best < 0:
        given = ", ".join([f"{s.name} {format_shape(shapes[s.name])}" for s in dims]
                          + [f"{s.name} values {list(given_values[s.name])}" for s in shape_inputs])
        listing = "\n".join(
            f"  profile {p}: " + ", ".join([f"{s.name}: {s.profiles[p]}" for s in dims]
                                           + [f"{s.name} values: {s.profiles[p]}" for s in shape_inputs])
            for p in range(n)
        )
        raise InputError(
            f"no optimization profile of the engine accepts these input shapes: {given}.\nThe engine's profiles:\n"
            f"{listing}\nUse shapes inside one profile, or rebuild the engine with a profile that covers them "
            "(--minShapes/--optShapes/--maxShapes, or shapes={name: (min, opt, max)})."
        )
    return best
