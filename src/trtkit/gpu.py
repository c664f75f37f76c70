"""The CUDA layer: the only module besides ``memory`` that imports cuda-python.

Device queries here use ``cuda.bindings.runtime``; streams, events and memory come from ``cuda.core``.
Everything is imported on first use. No driver or no GPU becomes one :class:`~trtkit.errors.CudaError`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from trtkit import deps
from trtkit.errors import ConfigError, CudaError, DependencyError

__all__ = [
    "DeviceInfo",
    "current_device",
    "cudart",
    "device_count",
    "check_device_index",
    "device_info",
    "NO_GPU_MESSAGE",
    "no_gpu_reason",
    "parse_compute_capability",
    "set_device",
    "sm_name",
]

_INSTALL = "pip install cuda-python"


@functools.cache
def cudart() -> Any:
    """``cuda.bindings.runtime``, or DependencyError naming the package to install."""
    return deps.require("cuda.bindings.runtime", purpose="this call", install=_INSTALL)


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-bindings ``(status, *values)`` tuple, raising CudaError on failure."""
    status, *values = result if isinstance(result, tuple) else (result,)
    if int(status) != 0:
        rt = cudart()
        name = getattr(status, "name", str(status))
        try:
            _, text = rt.cudaGetErrorString(status)
            detail = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # pragma: no cover - best effort only
            detail = ""
        if name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice"):
            raise CudaError(_no_gpu_text(f"{what}: {name}"))
        raise CudaError(f"{what} failed: {name} ({detail}).")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


NO_GPU_MESSAGE = (
    "this machine has no usable NVIDIA GPU or CUDA driver, so engines cannot run here (they can still be built "
    "with TensorRT-RTX); run them on a machine with a supported NVIDIA GPU and driver"
)
"""The one message for "no GPU here", whichever entry point (run, bench, load, from_onnx, compare) meets it."""


def _driver_present() -> bool:
    """Whether an NVIDIA driver library can be loaded (without it CUDA says "insufficient driver")."""
    import ctypes
    import sys

    try:
        ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return False
    return True


def _no_gpu_text(detail: str) -> str:
    if "InsufficientDriver" in detail and _driver_present():
        return (f"the NVIDIA driver on this machine is too old for the CUDA runtime trtkit uses ({detail}): update "
                "the NVIDIA driver, or install a cuda-python that matches it (`trtkit doctor` shows both versions)")
    return f"{NO_GPU_MESSAGE} ({detail})"


def no_gpu_reason() -> str | None:
    """Why no engine can run on this machine at all (no cuda-python, no driver, no GPU), or None."""
    try:
        rt = cudart()
    except DependencyError as exc:
        return exc.message
    status, count = rt.cudaGetDeviceCount()
    if int(status) == 0 and int(count) > 0:
        return None
    return _no_gpu_text(f"cudaGetDeviceCount: {getattr(status, 'name', status)}" if int(status)
                        else "cudaGetDeviceCount found no device")


def parse_compute_capability(text: str) -> tuple[int, int] | None:
    """``"8.6"``, ``"86"``, ``"sm86"``, ``"SM_86"``, ``"120"`` -> ``(8, 6)`` ...; ``"current"`` -> None.

    Raises:
        ConfigError: ``text`` is not a compute capability.
    """
    v = text.strip().upper().replace("_", "").replace("SM", "")
    if v == "CURRENT":
        return None
    major, dot, minor = v.partition(".")
    if dot and major.isdigit() and minor.isdigit():
        return int(major), int(minor)
    if not dot and v.isdigit() and len(v) >= 2:
        return int(v[:-1]), int(v[-1])
    raise ConfigError(f"cannot read compute capability {text!r}; write e.g. 8.6, 89, sm120 or current")


def sm_name(cc: tuple[int, int] | None) -> str:
    """``(8, 6)`` -> ``"SM86"`` (a ``trt.ComputeCapability`` member name); None -> ``"CURRENT"``."""
    return "CURRENT" if cc is None else f"SM{cc[0]}{cc[1]}"


@dataclass(frozen=True)
class DeviceInfo:
    """A CUDA device as trtkit records it in manifests and checks."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int

    @property
    def cc_string(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def device_count() -> int:
    """Number of CUDA devices; 0 when there is no driver or no GPU (never raises for that)."""
    try:
        rt = cudart()
    except DependencyError:
        return 0
    status, count = rt.cudaGetDeviceCount()
    return int(count) if int(status) == 0 else 0


def device_info(index: int = 0) -> DeviceInfo:
    """Describe CUDA device ``index``.

    Raises:
        CudaError: no driver, no GPU, or ``index`` out of range.
    """
    rt = cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not 0 <= index < int(count):
        raise CudaError(f"CUDA device {index} does not exist; this machine has {count} device(s)")
    props = check(rt.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(
        index=index,
        name=name.rstrip("\x00"),
        compute_capability=(int(props.major), int(props.minor)),
        total_memory=int(props.totalGlobalMem),
    )


def current_device() -> int:
    """The calling thread's current CUDA device: the one TensorRT's builder builds for."""
    return int(check(cudart().cudaGetDevice(), "cudaGetDevice"))


def set_device(index: int) -> None:
    """Make CUDA device ``index`` current on the calling thread (CudaError when it does not exist)."""
    device_info(index)
    check(cudart().cudaSetDevice(index), f"cudaSetDevice({index})")


def check_device_index(device: object) -> int:
    """``device`` as a CUDA device index: ConfigError unless it is an int >= 0 (whether it exists is checked when
    it is used)."""
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ConfigError(f"device must be a CUDA device index (an int >= 0), got {type(device).__name__} {device!r}")
    return device
