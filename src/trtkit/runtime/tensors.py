"""Tensor specs and the checks run before anything reaches the GPU (pure Python; CI tests them without CUDA).

:func:`describe_tensors` reads an engine's I/O tensors into :class:`TensorSpec`; for each call,
:func:`normalize_inputs` accepts a dict, a sequence or one array, :func:`describe_array` inspects an array without
copying it, :func:`validate_inputs` reports every mismatch at once, and :func:`select_profile` picks the tightest
optimization profile.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from trtkit import dtypes
from trtkit.backend import CudaEngine
from trtkit.dtypes import DType
from trtkit.errors import InputError
from trtkit.profiles import Shape, ShapeRange, format_shape

__all__ = [
    "ArrayInfo",
    "torch_current_stream",
    "TensorSpec",
    "describe_array",
    "describe_tensors",
    "normalize_inputs",
    "select_profile",
    "shape_tensor_values",
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
        return f"{self.name} ({self.dtype.name} [{', '.join(str(d) for d in self.shape)}])"

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
    obj: Any = None


def _trt_mode(value: Any) -> str:
    return str(getattr(value, "name", value)).rsplit(".", 1)[-1].upper()


def describe_tensors(engine: CudaEngine) -> tuple[TensorSpec, ...]:
    """Read every I/O tensor of a deserialized engine (inputs first, engine order kept)."""
    n_prof = int(engine.num_optimization_profiles)
    specs: list[TensorSpec] = []
    for i in range(int(engine.num_io_tensors)):
        name = engine.get_tensor_name(i)
        mode = _trt_mode(engine.get_tensor_mode(name))
        if mode not in ("INPUT", "OUTPUT"):
            continue
        is_input = mode == "INPUT"
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        location: Literal["device", "host"] = (
            "host" if _trt_mode(engine.get_tensor_location(name)) == "HOST" else "device")
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
            format=_trt_mode(engine.get_tensor_format(name)),
        ))
    return tuple([s for s in specs if s.is_input] + [s for s in specs if not s.is_input])


def normalize_inputs(inputs: Sequence[TensorSpec], given: Any) -> dict[str, Any]:
    """Accept a mapping by name, a sequence in input order, or a single array for a one-input engine."""
    if type(given) is dict and all(type(k) is str for k in given):
        return given
    names = [s.name for s in inputs]
    if len(names) == 1 and _kind_of(type(given)) != "other":
        return {names[0]: given}
    if isinstance(given, Mapping):
        for key in given:
            if not isinstance(key, str):
                raise InputError(f"input names must be strings, got {key!r}; the engine's inputs are {names}")
        return dict(given)
    if isinstance(given, list | tuple):
        if len(given) != len(names):
            raise InputError(
                f"got {len(given)} input arrays but the engine has {len(names)} inputs ({', '.join(names)}); "
                "pass them in this order, or as a dict by name"
            )
        return dict(zip(names, given, strict=True))
    if len(names) != 1:
        raise InputError(
            f"a single array was passed but the engine has {len(names)} inputs ({', '.join(names)}); "
            "pass a dict by name or a sequence in this order"
        )
    return {names[0]: given}


_NP_TO_TRTKIT: dict[str, str] = {d.numpy_name: d.name for d in dtypes.all_dtypes() if d.numpy_name}


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = dtype.name if dtype is not None else "unknown"
        _DTYPE_NAMES[dtype] = name
    return name


def _c_contiguous(shape: Shape, strides: tuple[int, ...] | None) -> bool:
    if strides is None:
        return True
    expect = 1
    for d, s in zip(reversed(shape), reversed(strides), strict=True):
        if d != 1 and s != expect:
            return False
        expect *= d
    return True


def _is_trtkit_pinned(arr: Any) -> bool:
    """True for NumPy arrays in trtkit's pinned memory (they need no staging copy)."""
    from trtkit.runtime.memory.pools import find_owner

    return find_owner(arr) is not None


_numpy_module: Any = None
_TYPE_KIND: dict[type, str] = {}
_TORCH_DTYPES: dict[Any, str] = {}


def _numpy() -> Any:
    global _numpy_module
    if _numpy_module is None:
        import numpy

        _numpy_module = numpy
    return _numpy_module


def _kind_of(tp: type) -> str:
    """``numpy``, ``torch``, ``cupy``, ``dlpack``, ``cai`` or ``other``, cached per type."""
    kind = _TYPE_KIND.get(tp)
    if kind is None:
        family = tp.__module__.split(".", 1)[0]
        if issubclass(tp, _numpy().ndarray):
            kind = "numpy"
        elif family == "torch" and hasattr(tp, "data_ptr") and hasattr(tp, "get_device"):
            kind = "torch"
        elif family == "cupy" and hasattr(tp, "data") and hasattr(tp, "device"):
            kind = "cupy"
        elif hasattr(tp, "__dlpack__"):
            kind = "dlpack"
        elif hasattr(tp, "__cuda_array_interface__"):
            kind = "cai"
        else:
            kind = "other"
        _TYPE_KIND[tp] = kind
    return kind


def _torch_dtype_name(dtype: Any) -> str:
    name = _TORCH_DTYPES.get(dtype)
    if name is None:
        name = str(dtype).removeprefix("torch.")
        _TORCH_DTYPES[dtype] = name
    return name


_raw_torch_stream: Any = None


def torch_current_stream(index: int) -> int:
    """PyTorch's current stream on CUDA device ``index`` (PyTorch must be imported already)."""
    global _raw_torch_stream
    if _raw_torch_stream is None:
        import sys

        torch = sys.modules["torch"]
        # Triton and other libraries read the current stream this way: a plain int, about 0.2 us, against
        # several microseconds for torch.cuda.current_stream(device).
        _raw_torch_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
            lambda i: torch.cuda.current_stream(i).cuda_stream)
    return int(_raw_torch_stream(index))


def describe_array(obj: Any, stream: int | None = None, *, ordered: bool = False) -> ArrayInfo:
    """Inspect one array without copying it.

    CUDA arrays are viewed through DLPack or ``__cuda_array_interface__``; with ``stream`` given, the producer's
    pending work is ordered before ``stream`` as those protocols define. ``ordered=True`` says the caller already
    ordered it (the array was produced on ``stream``): PyTorch and CuPy arrays are then read through their own
    attributes, which skips the protocol's stream handshake. Other objects are read through NumPy.
    """
    kind = _kind_of(type(obj))
    if kind == "numpy":
        name = obj.dtype.name
        return ArrayInfo("host", obj.shape, _NP_TO_TRTKIT.get(name, name), bool(obj.flags.c_contiguous), -1, 0,
                         _is_trtkit_pinned(obj), obj)
    if ordered and kind == "torch":
        dev = obj.get_device()
        if dev >= 0:
            return ArrayInfo("device", tuple(obj.shape), _torch_dtype_name(obj.dtype), obj.is_contiguous(), dev,
                             obj.data_ptr(), False, obj)
    elif ordered and kind == "cupy":
        return ArrayInfo("device", obj.shape, _NP_TO_TRTKIT.get(_dtype_name(obj.dtype), str(obj.dtype)),
                         bool(obj.flags.c_contiguous), obj.device.id, obj.data.ptr, False, obj)
    np = _numpy()
    if not isinstance(obj, np.ndarray):
        dl_device = getattr(obj, "__dlpack_device__", None)
        on_cpu = dl_device is not None and int(dl_device()[0]) == 1
        if not on_cpu and (dl_device is not None or hasattr(type(obj), "__cuda_array_interface__")):
            from trtkit.runtime.memory.pools import view_device_array

            v = view_device_array(obj, stream)
            np_name = _dtype_name(v.dtype)
            return ArrayInfo("device" if v.is_device else "host", v.shape, _NP_TO_TRTKIT.get(np_name, np_name),
                             _c_contiguous(v.shape, v.strides), v.device_id if v.is_device else -1, v.ptr,
                             obj=(obj, v.owner))
        obj = np.from_dlpack(obj) if on_cpu else np.asarray(obj)
    name = obj.dtype.name
    return ArrayInfo("host", obj.shape, _NP_TO_TRTKIT.get(name, name), bool(obj.flags.c_contiguous), -1, 0,
                     _is_trtkit_pinned(obj), obj)


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


def shape_tensor_values(arr: Any) -> Shape:
    """The values of a shape-tensor input given on the host (NumPy array or sequence of ints)."""
    return tuple(int(v) for v in _numpy().asarray(arr).reshape(-1))


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
