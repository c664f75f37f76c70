"""Array families: one adapter per family (NumPy, PyTorch, CuPy, DLPack, ``__cuda_array_interface__``).

An array's type is classified once (:func:`adapter_of`, cached per type). Its adapter describes it without
copying (:class:`~trtkit.runtime.tensors.ArrayInfo`: pointer, shape, dtype, contiguity, device), orders it
against its producer's stream, makes outputs in the caller's family (:class:`OutputMaker`) and wraps results
back into that family. :func:`prepare_inputs` is the one entry a call makes here: it takes the inputs as given
and returns them described and validated.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, TypeAlias

from trtkit import dtypes
from trtkit.errors import InputError
from trtkit.profiles import format_shape
from trtkit.runtime.memory.arrays import find_owner, view_device_array
from trtkit.runtime.tensors import ArrayInfo, TensorSpec, validate_inputs

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "ADAPTERS",
    "ArrayAdapter",
    "CallInputs",
    "OutputMaker",
    "adapter_of",
    "check_output",
    "describe_array",
    "normalize_inputs",
    "prepare_inputs",
    "torch_current_stream",
]

_NP_TO_TRTKIT: Final[dict[str, str]] = {d.numpy_name: d.name for d in dtypes.all_dtypes() if d.numpy_name}


class _Flags(Protocol):
    c_contiguous: bool


class _CupyDevice(Protocol):
    id: int


class _CupyMemory(Protocol):
    ptr: int


class _CupyArray(Protocol):
    """What trtkit reads of a CuPy array."""

    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    flags: _Flags
    device: _CupyDevice
    data: _CupyMemory


class TorchTensor(Protocol):
    """What trtkit reads of a PyTorch tensor (its attributes: DLPack export would cost about 15 us)."""

    shape: tuple[int, ...]
    dtype: object
    device: object

    def get_device(self) -> int: ...

    def is_contiguous(self) -> bool: ...

    def data_ptr(self) -> int: ...


class OutputMaker(NamedTuple):
    """Makes an output in the caller's family with no trtkit code per output:
    ``array = empty(shape, dtype=dtypes[trtkit_name], **options)``, then ``pointer(array)``."""

    empty: Callable[..., object]
    dtypes: Mapping[str, object]
    options: Mapping[str, object]
    pointer: Callable[[object], int]


class _DtypeMap(dict[str, object]):
    """trtkit dtype name -> the family's dtype, filled on first use of each name."""

    def __init__(self, convert: Callable[[str], object]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, name: str) -> object:
        value = self[name] = self._convert(name)
        return value


def _c_contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None) -> bool:
    if strides is None:
        return True
    expect = 1
    for d, s in zip(reversed(shape), reversed(strides), strict=True):
        if d != 1 and s != expect:
            return False
        expect *= d
    return True


_DTYPE_NAMES: dict[object, str] = {}
"""trtkit dtype names by NumPy dtype object (``dtype.name`` is computed in Python on every access)."""


def _numpy_info(arr: NDArray[np.generic]) -> ArrayInfo:
    dt = arr.dtype
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _NP_TO_TRTKIT.get(dt.name, dt.name)
        if not dt.isnative:  # TensorRT reads native byte order: refused by the dtype check, never uploaded
            name = f"{name} (byte-swapped: x.astype(x.dtype.newbyteorder('=')))"
        _DTYPE_NAMES[dt] = name
    return ArrayInfo("host", arr.shape, name, bool(arr.flags.c_contiguous), -1, 0,
                     arr.base is not None and find_owner(arr) is not None, arr)


class ArrayAdapter:
    """How trtkit reads one family of arrays; the base reads any array through DLPack / CAI or NumPy."""

    family = "other"
    is_array = True
    """False for objects that are not arrays of a known family (lists, scalars): read through NumPy."""

    def describe(self, obj: object, stream: int | None, ordered: bool) -> ArrayInfo:
        """Inspect ``obj`` without copying. CUDA arrays are viewed through DLPack or
        ``__cuda_array_interface__``; with ``stream`` given, the producer's pending work is ordered before
        ``stream`` as those protocols define. ``ordered=True`` says the caller already ordered it (families
        with their own attributes then skip the handshake). Other objects are read through NumPy."""
        import numpy as np

        if not isinstance(obj, np.ndarray):
            dl_device = getattr(obj, "__dlpack_device__", None)
            on_cpu = dl_device is not None and int(dl_device()[0]) == 1
            if not on_cpu and (dl_device is not None or hasattr(type(obj), "__cuda_array_interface__")):
                v = view_device_array(obj, stream)
                np_name = v.dtype.name if v.dtype is not None else "unknown"
                return ArrayInfo("device" if v.is_device else "host", v.shape, _NP_TO_TRTKIT.get(np_name, np_name),
                                 _c_contiguous(v.shape, v.strides), v.device_id if v.is_device else -1, v.ptr,
                                 obj=(obj, v.owner))
            return _numpy_info(np.from_dlpack(obj) if on_cpu else np.asarray(obj))  # type: ignore[arg-type]
        return _numpy_info(obj)

    def describe_ordering(self, obj: object, stream: int, producers: list[int]) -> ArrayInfo:
        """Describe ``obj``, whose producer's pending work must come before ``stream``: through the protocol's
        handshake, or (PyTorch) by noting the producer's stream in ``producers`` for the caller to wait on."""
        return self.describe(obj, stream, False)

    def in_caller(self, obj: object) -> tuple[int, OutputMaker] | None:
        """Where a call given ``obj`` runs for the facade: the caller's current stream in this family and how
        to make outputs there, on ``obj``'s device; None to run on trtkit's stream."""
        return None

    wraps = False
    """Whether results are wrapped back into this family (:meth:`wrap`)."""

    def wrap(self, arr: object) -> object:
        """``arr`` (a trtkit result) as an array of this family."""
        return arr


class _NumpyAdapter(ArrayAdapter):
    family = "numpy"

    def describe(self, obj: object, stream: int | None, ordered: bool) -> ArrayInfo:
        return _numpy_info(obj)  # type: ignore[arg-type]

    def describe_ordering(self, obj: object, stream: int, producers: list[int]) -> ArrayInfo:
        return _numpy_info(obj)  # type: ignore[arg-type]


_raw_torch_stream: Callable[[int], int] | None = None


def torch_current_stream(index: int) -> int:
    """PyTorch's current stream on CUDA device ``index`` (PyTorch must be imported already)."""
    global _raw_torch_stream
    if _raw_torch_stream is None:
        torch = sys.modules["torch"]
        # Triton and other libraries read the current stream this way: a plain int, about 0.2 us, against
        # several microseconds for torch.cuda.current_stream(device).
        _raw_torch_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
            lambda i: torch.cuda.current_stream(i).cuda_stream)
    return int(_raw_torch_stream(index))


class _TorchAdapter(ArrayAdapter):
    family = "torch"
    wraps = True

    def __init__(self) -> None:
        self._dtype_names: dict[object, str] = {}
        self._makers: dict[int, OutputMaker] = {}

    def describe(self, obj: object, stream: int | None, ordered: bool) -> ArrayInfo:
        if ordered:
            t: TorchTensor = obj  # type: ignore[assignment]  # this adapter is only handed torch tensors
            dev = t.get_device()
            if dev >= 0:
                dtype = t.dtype
                name = self._dtype_names.get(dtype)
                if name is None:
                    name = self._dtype_names[dtype] = str(dtype).removeprefix("torch.")
                return ArrayInfo("device", tuple(t.shape), name, t.is_contiguous(), dev, t.data_ptr(), False, t)
        return ArrayAdapter.describe(self, obj, stream, ordered)

    def describe_ordering(self, obj: object, stream: int, producers: list[int]) -> ArrayInfo:
        # PyTorch's own DLPack export costs about 15 us: read the attributes and note the producer's stream;
        # the caller waits for it once the call has passed validation.
        info = self.describe(obj, stream, True)
        if info.kind == "device":
            producer = torch_current_stream(info.device)
            if producer != stream:
                producers.append(producer)
        return info

    def in_caller(self, obj: object) -> tuple[int, OutputMaker] | None:
        t: TorchTensor = obj  # type: ignore[assignment]
        index = t.get_device()
        if index < 0:
            return None
        maker = self._makers.get(index)
        if maker is None:
            torch = sys.modules["torch"]
            maker = self._makers[index] = OutputMaker(
                torch.empty, _DtypeMap(lambda name: getattr(torch, name)), {"device": t.device},
                torch.Tensor.data_ptr)
        return torch_current_stream(index), maker

    def wrap(self, arr: object) -> object:
        return sys.modules["torch"].from_dlpack(arr)


class _CupyAdapter(ArrayAdapter):
    family = "cupy"
    wraps = True

    def __init__(self) -> None:
        self._maker: OutputMaker | None = None

    def describe(self, obj: object, stream: int | None, ordered: bool) -> ArrayInfo:
        if ordered:
            a: _CupyArray = obj  # type: ignore[assignment]  # this adapter is only handed CuPy arrays
            name = a.dtype.name
            return ArrayInfo("device", a.shape, _NP_TO_TRTKIT.get(name, name), bool(a.flags.c_contiguous),
                             a.device.id, a.data.ptr, False, obj)
        return ArrayAdapter.describe(self, obj, stream, ordered)

    def in_caller(self, obj: object) -> tuple[int, OutputMaker] | None:
        cupy = sys.modules["cupy"]
        if self._maker is None:
            self._maker = OutputMaker(cupy.empty, _DtypeMap(lambda name: dtypes.lookup(name).to_numpy()), {},
                                      operator.attrgetter("data.ptr"))
        return int(cupy.cuda.get_current_stream().ptr), self._maker

    def wrap(self, arr: object) -> object:
        return sys.modules["cupy"].from_dlpack(arr)


class _OtherAdapter(ArrayAdapter):
    is_array = False


_NUMPY, _TORCH, _CUPY, _OTHER = _NumpyAdapter(), _TorchAdapter(), _CupyAdapter(), _OtherAdapter()
_DLPACK, _CAI = ArrayAdapter(), ArrayAdapter()
_DLPACK.family, _CAI.family = "dlpack", "cai"

ADAPTERS: Final[dict[type, ArrayAdapter]] = {}
"""The adapter of every type seen so far: ``ADAPTERS.get(type(x)) or adapter_of(x)`` is one dict lookup."""


def adapter_of(obj: object) -> ArrayAdapter:
    """The adapter of ``obj``'s family (classified once per type)."""
    tp = type(obj)
    adapter = ADAPTERS.get(tp)
    if adapter is None:
        root = tp.__module__.split(".", 1)[0]
        np = sys.modules.get("numpy")  # no NumPy array exists before NumPy is imported
        if np is not None and issubclass(tp, np.ndarray):
            adapter = _NUMPY
        elif root == "torch" and hasattr(tp, "data_ptr") and hasattr(tp, "get_device"):
            adapter = _TORCH
        elif root == "cupy" and hasattr(tp, "data") and hasattr(tp, "device"):
            adapter = _CUPY
        elif hasattr(tp, "__dlpack__"):
            adapter = _DLPACK
        elif hasattr(tp, "__cuda_array_interface__"):
            adapter = _CAI
        else:
            adapter = _OTHER
        ADAPTERS[tp] = adapter
    return adapter


def describe_array(obj: object, stream: int | None = None, *, ordered: bool = False) -> ArrayInfo:
    """Inspect one array without copying it (see :meth:`ArrayAdapter.describe`)."""
    return (ADAPTERS.get(type(obj)) or adapter_of(obj)).describe(obj, stream, ordered)


def normalize_inputs(inputs: Sequence[TensorSpec], given: object) -> dict[str, object]:
    """Accept a mapping by name, a sequence in input order, or a single array for a one-input engine."""
    if type(given) is dict and all(type(k) is str for k in given):
        return given
    names = [s.name for s in inputs]
    if len(names) == 1 and (ADAPTERS.get(type(given)) or adapter_of(given)).is_array:
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


CallInputs: TypeAlias = "tuple[dict[str, ArrayInfo], int | None, bool, OutputMaker | None, ArrayAdapter | None]"
"""What :func:`prepare_inputs` returns (a plain tuple: one is made per call): the inputs described and
validated; the caller's stream to run on (the facade with PyTorch / CuPy inputs), else None; whether the inputs
need no ordering against their producers; how to make outputs in the caller's family; the family to wrap
results into when they are not made in it."""


def prepare_inputs(specs: Sequence[TensorSpec], given: object, family: ArrayAdapter | None, stream: int,
                   stream_given: bool, ordered: bool, device: int, by_name: Mapping[str, TensorSpec],
                   producers: list[int]) -> CallInputs:
    """Normalize, describe and validate the inputs of one call on ``stream``.

    ``family`` (the facade's first input's adapter) asks to answer in the caller's family: with PyTorch or CuPy
    inputs and no ``stream_given``, the call runs on the caller's current stream, trusts the inputs' order there
    and makes outputs in the family. Producer streams still to be waited for are appended to ``producers``.
    """
    named = normalize_inputs(specs, given)
    caller: int | None = None
    maker: OutputMaker | None = None
    wrap: ArrayAdapter | None = None
    if family is not None and family.wraps:
        run = None if stream_given else family.in_caller(next(iter(named.values()), None))
        if run is not None:
            caller, maker = run
            stream, ordered = caller, True
        else:
            wrap = family
    infos: dict[str, ArrayInfo] = {}
    for name, obj in named.items():
        adapter = ADAPTERS.get(type(obj)) or adapter_of(obj)
        infos[name] = adapter.describe(obj, stream, True) if ordered else \
            adapter.describe_ordering(obj, stream, producers)
    validate_inputs(specs, infos, device=device, by_name=by_name)
    return infos, caller, ordered, maker, wrap


def check_output(obj: object, spec: TensorSpec, shape: tuple[int, ...], stream: int, ordered: bool,
                 producers: list[int], device: int) -> ArrayInfo:
    """Describe a caller-provided output buffer the call writes on ``stream``; InputError unless it is a
    contiguous array of ``shape`` and the output's dtype, on ``device`` and 256-byte aligned if on a GPU."""
    adapter = ADAPTERS.get(type(obj)) or adapter_of(obj)
    info = adapter.describe(obj, stream, True) if ordered else adapter.describe_ordering(obj, stream, producers)
    if info.shape != shape or info.dtype != spec.dtype.name or not info.contiguous:
        raise InputError(f"output buffer {spec.name!r} is {info.dtype}[{format_shape(info.shape)}]; this call "
                         f"needs a contiguous {spec.dtype.name}[{format_shape(shape)}]")
    if info.kind == "device":
        if info.device != device:
            raise InputError(f"output buffer {spec.name!r} is on device {info.device}, not {device}")
        if info.ptr & 255:
            raise InputError(
                f"output buffer {spec.name!r} starts at {info.ptr:#x}, which is not 256-byte aligned as TensorRT "
                "requires (NvInferRuntime.h, setTensorAddress); pass a buffer that starts an allocation "
                "(torch.empty / cupy.empty), not a view into the middle of one")
    return info


def wrap_results(family: ArrayAdapter, result: dict[str, object],
                 provided: Mapping[str, object] | None) -> dict[str, object]:
    """Results as arrays of ``family``, except the buffers the caller provided."""
    keep = provided or {}
    return {k: v if k in keep else family.wrap(v) for k, v in result.items()}
