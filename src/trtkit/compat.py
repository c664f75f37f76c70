"""Can engines run here? Checks that combine the backend's limits with the GPUs present."""

from __future__ import annotations

from .backend import Backend
from .errors import CudaError, DependencyError
from .gpu import device_count, device_info

__all__ = ["run_blocker"]


def run_blocker(backend: Backend, device: int = 0) -> str | None:
    """Why engines of ``backend`` cannot run on CUDA device ``device``, or None when they can."""
    try:
        count = device_count()
    except DependencyError as exc:
        return str(exc)
    if count == 0:
        return "this machine has no usable NVIDIA GPU or CUDA driver (cudaGetDeviceCount found none)"
    try:
        info = device_info(device)
    except CudaError as exc:
        return str(exc)
    supported = backend.features.supported_compute_capabilities
    if supported is not None and info.compute_capability not in supported:
        ccs = ", ".join(f"{a}.{b}" for a, b in supported)
        return (
            f"{backend.label} does not run on {info.name} (compute capability {info.cc_string}); it supports "
            f"compute capabilities {ccs}. Use full TensorRT (pip install 'trtkit[tensorrt]') on this GPU"
        )
    return None
