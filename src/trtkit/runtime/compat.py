"""Can this engine run here? Checks that combine an engine's manifest, the backend's limits and the GPUs present.

:func:`run_blocker` says why no engine of a backend can run on a device; :func:`check_compatibility` says why one
engine (by its manifest) cannot, before TensorRT is asked to deserialize it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, SupportsInt

from trtkit.backend import Backend, version_tuple
from trtkit.errors import CudaError, EngineIncompatibleError
from trtkit.gpu import device_info, no_gpu_reason

if TYPE_CHECKING:
    from trtkit.gpu import DeviceInfo
    from trtkit.manifest import Manifest

__all__ = ["check_compatibility", "run_blocker", "unsupported_gpu", "validity_reasons"]


def run_blocker(backend: Backend, device: int = 0) -> str | None:
    """Why engines of ``backend`` cannot run on CUDA device ``device``, or None when they can."""
    reason = no_gpu_reason()
    if reason is not None:
        return reason
    try:
        info = device_info(device)
    except CudaError as exc:
        return str(exc)
    return unsupported_gpu(backend, info)


def unsupported_gpu(backend: Backend, info: DeviceInfo) -> str | None:
    """Why ``backend`` runs no engine on the GPU ``info`` (TensorRT-RTX refuses some compute capabilities), or
    None. The one supported-GPU check: :func:`run_blocker` and :func:`check_compatibility` both ask it."""
    supported = backend.features.supported_compute_capabilities
    if supported is None or info.compute_capability in supported:
        return None
    ccs = ", ".join(f"{a}.{b}" for a, b in supported)
    return (f"{backend.label} does not run on {info.name} (compute capability {info.cc_string}); it supports "
            f"compute capabilities {ccs}. Use full TensorRT (pip install 'tensorrt>=10.1') on this GPU")


def _rebuild_hint(manifest: Manifest) -> str:
    model = manifest.onnx.get("name") or "MODEL.onnx"
    return (f" Rebuild it here: `trtkit build {model} ...` or Engine.from_onnx(..., on_incompatible='rebuild') "
            "(a cached engine is rebuilt automatically).")


def check_compatibility(manifest: Manifest | None, backend: Backend, device: DeviceInfo | None,
                        *, source: str = "engine") -> None:
    """Raise EngineIncompatibleError when an engine built as ``manifest`` says cannot run with ``backend`` on
    ``device`` (backend, version, compute capability). A bare plan (no manifest) passes; TensorRT checks it.
    """
    if device is not None:
        why = unsupported_gpu(backend, device)
        if why is not None:
            raise EngineIncompatibleError(why + ".")
    if manifest is None:
        return
    hint = _rebuild_hint(manifest)
    if manifest.backend != backend.name:
        raise EngineIncompatibleError(
            f"{source} was built with {manifest.backend} {manifest.backend_version}, but the active backend is "
            f"{backend.label}.{hint} Or select its backend with backend={manifest.backend!r} / TRTKIT_BACKEND."
        )
    built, here = version_tuple(manifest.backend_version), version_tuple(backend.version)
    if built != here:
        vc = bool(manifest.compatibility.get("version_compatible"))
        if not (vc and built[:1] == here[:1] and here >= built):
            why = ("version-compatible engines run only on the same major version or later"
                   if vc else "plans are tied to the TensorRT version that built them")
            raise EngineIncompatibleError(
                f"{source} was built with {backend.display_name} {manifest.backend_version}; this is "
                f"{backend.version} ({why}).{hint}"
            )
    if device is None:
        return
    target = manifest.target
    built_cc = target.get("compute_capability")
    if built_cc:
        hw = str(manifest.compatibility.get("hardware_compatibility") or "none")
        ok = built_cc == device.cc_string or (hw == "ampere_plus" and device.compute_capability >= (8, 0))
        if not ok:
            raise EngineIncompatibleError(
                f"{source} was built for compute capability {built_cc} ({target.get('gpu') or 'unknown GPU'}); "
                f"this GPU is {device.name} with {device.cc_string}.{hint} Or build with "
                "--hardwareCompatibilityLevel=ampere_plus to run on every Ampere or newer GPU."
            )
    cc_names = [str(c).upper() for c in target.get("compute_capabilities") or []]
    explicit = [c for c in cc_names if c.startswith("SM")]
    if explicit and "CURRENT" not in cc_names:
        mine = f"SM{device.compute_capability[0]}{device.compute_capability[1]}"
        if mine not in explicit:
            raise EngineIncompatibleError(
                f"{source} targets {', '.join(explicit)}; this GPU is {device.name} ({mine}).{hint} Or add "
                f"--computeCapabilities={device.cc_string}."
            )


def validity_reasons(backend: Backend, diagnostics: SupportsInt | None) -> list[str]:
    """Names of the ``EngineInvalidityDiagnostics`` bits set in ``diagnostics`` (TensorRT-RTX)."""
    members = getattr(getattr(backend.trt, "EngineInvalidityDiagnostics", None), "__members__", {})
    bits = int(diagnostics or 0)
    return [name for name, member in members.items() if bits & int(member)] or ([str(bits)] if bits else [])
