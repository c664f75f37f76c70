"""Which GPUs a build is for: the one answer behind the manifest's ``target``, the precision check and the
engine cache key.

TensorRT-RTX builds for the compute capabilities in ``BuildConfig.compute_capabilities`` (or its own default
list); full TensorRT builds for the GPU it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtkit.backend import Backend
from trtkit.builder.config import BuildConfig
from trtkit.errors import TrtkitError
from trtkit.gpu import DeviceInfo, current_device, device_info, parse_compute_capability, sm_name
from trtkit.log import get_logger

__all__ = ["BuildTarget", "build_target"]

_log = get_logger("builder")

ComputeCapability = tuple[int, int]


@dataclass(frozen=True)
class BuildTarget:
    """The GPUs an engine is built for, as far as known before the build."""

    backend: str
    """The backend's label, for messages."""
    compute_capabilities: tuple[ComputeCapability | None, ...] | None
    """TensorRT-RTX: the targets (None stands for the current GPU), ``()`` for its default list; None on
    full TensorRT, which builds for :attr:`device`."""
    device: DeviceInfo | None
    """The GPU the build runs on, where the target depends on it; None when it cannot be queried."""

    def to_dict(self) -> dict[str, object]:
        """The manifest's ``target`` (also part of the engine cache key)."""
        if self.compute_capabilities is not None:
            return {"compute_capabilities": [sm_name(cc) for cc in self.compute_capabilities] or ["default"]}
        if self.device is None:
            return {"gpu": None, "compute_capability": None}
        return {"gpu": self.device.name, "compute_capability": self.device.cc_string}

    def gpus(self) -> list[tuple[str, ComputeCapability]]:
        """``(label, compute capability)`` of every target known; TensorRT-RTX's defaults are left out."""
        if self.compute_capabilities is None:
            if self.device is None:
                return []
            return [(f"{self.device.name} (compute capability {self.device.cc_string})",
                     self.device.compute_capability)]
        found: list[tuple[str, ComputeCapability]] = []
        for cc in self.compute_capabilities:
            if cc is not None:
                found.append((f"compute capability {cc[0]}.{cc[1]}", cc))
            elif self.device is not None:
                found.append((f"the current GPU ({self.device.name}, {self.device.cc_string})",
                              self.device.compute_capability))
        return found


def _current_device(warn: bool) -> DeviceInfo | None:
    try:
        return device_info(current_device())
    except TrtkitError as exc:
        if warn:
            _log.warning("could not query the GPU the engine is built for: %s", exc)
        return None


def build_target(backend: Backend, config: BuildConfig) -> BuildTarget:
    """The GPUs a build with ``config`` on ``backend`` is for. Queries the current GPU only where the target
    depends on it (full TensorRT, or ``"current"`` among TensorRT-RTX's targets)."""
    if not backend.features.compute_capability_targets:
        return BuildTarget(backend.label, None, _current_device(warn=True))
    ccs = tuple(parse_compute_capability(c) for c in config.compute_capabilities or ())
    return BuildTarget(backend.label, ccs, _current_device(warn=False) if None in ccs else None)
