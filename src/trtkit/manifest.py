"""Engine files: a raw TensorRT plan with a JSON manifest beside it.

``model.engine`` stays a plain TensorRT plan that trtexec, C++ and Triton load as they are.
``model.engine.manifest.json`` records how it was built: trtkit version, backend and version, target GPU or
compute capabilities, compatibility flags, ONNX hash, build config, profiles and every I/O tensor. The
manifest holds the plan's SHA-256 and a checksum over its own content, so corruption of either is detected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from trtkit._version import __version__
from trtkit.errors import EngineFileError
from trtkit.files import atomic_write, sha256_bytes
from trtkit.profiles import Profile

__all__ = [
    "MANIFEST_SUFFIX",
    "BuiltEngine",
    "Manifest",
    "TensorInfo",
    "manifest_path",
    "read_engine_file",
    "write_engine_file",
]

MANIFEST_SUFFIX: Final = ".manifest.json"
SCHEMA: Final = 1


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of an engine. ``-1`` in ``shape`` marks a dynamic dim."""

    name: str
    mode: Literal["input", "output"]
    dtype: str
    shape: tuple[int, ...]
    location: Literal["device", "host"] = "device"
    is_shape_tensor: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "location": self.location,
            "is_shape_tensor": self.is_shape_tensor,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        return cls(
            name=str(d["name"]),
            mode=d["mode"],
            dtype=str(d["dtype"]),
            shape=tuple(int(x) for x in d["shape"]),
            location=d.get("location", "device"),
            is_shape_tensor=bool(d.get("is_shape_tensor", False)),
        )


@dataclass(frozen=True)
class Manifest:
    """What trtkit knows about an engine it built. Stored as JSON beside the plan."""

    backend: str
    backend_version: str
    target: Mapping[str, Any]
    """``{"gpu": name, "compute_capability": "8.9"}`` for full TensorRT, ``{"compute_capabilities": [...]}``
    for TensorRT-RTX."""
    compatibility: Mapping[str, Any]
    onnx: Mapping[str, Any]
    config: Mapping[str, Any]
    profiles: tuple[Profile, ...]
    tensors: tuple[TensorInfo, ...]
    plan_sha256: str
    plan_size: int
    trtkit_version: str = __version__
    created: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Room for later additions (precision conversion records, ...)."""

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors if t.mode == "input")

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors if t.mode == "output")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema": SCHEMA,
            "trtkit_version": self.trtkit_version,
            "created": self.created,
            "backend": {"name": self.backend, "version": self.backend_version},
            "target": dict(self.target),
            "compatibility": dict(self.compatibility),
            "onnx": dict(self.onnx),
            "config": dict(self.config),
            "profiles": [p.to_dict() for p in self.profiles],
            "tensors": [t.to_dict() for t in self.tensors],
            "plan": {"sha256": self.plan_sha256, "size": self.plan_size},
            "extra": dict(self.extra),
        }
        body["checksum"] = _checksum(body)
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "manifest") -> Manifest:
        if d.get("schema") != SCHEMA:
            raise EngineFileError(
                f"{source} has manifest schema {d.get('schema')!r}; this trtkit reads schema {SCHEMA}. "
                "Rebuild the engine with this trtkit version."
            )
        stored = d.get("checksum")
        body = {k: v for k, v in d.items() if k != "checksum"}
        if stored != _checksum(body):
            raise EngineFileError(
                f"{source} is corrupt or was edited by hand (its checksum does not match its content). "
                "Rebuild the engine, or delete the manifest to load the plan as a bare TensorRT plan."
            )
        try:
            return cls(
                backend=str(d["backend"]["name"]),
                backend_version=str(d["backend"]["version"]),
                target=dict(d["target"]),
                compatibility=dict(d["compatibility"]),
                onnx=dict(d["onnx"]),
                config=dict(d["config"]),
                profiles=tuple(Profile.from_dict(p) for p in d["profiles"]),
                tensors=tuple(TensorInfo.from_dict(t) for t in d["tensors"]),
                plan_sha256=str(d["plan"]["sha256"]),
                plan_size=int(d["plan"]["size"]),
                trtkit_version=str(d["trtkit_version"]),
                created=str(d.get("created", "")),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineFileError(f"{source} is missing field {exc}; rebuild the engine") from exc


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return sha256_bytes(canonical)


def manifest_path(plan_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.manifest.json``."""
    p = Path(plan_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def write_engine_file(path: str | os.PathLike[str], plan: bytes | memoryview, manifest: Manifest) -> Path:
    """Write the plan and its manifest atomically; returns the plan path."""
    p = Path(path)
    if p.is_dir():
        raise EngineFileError(f"{str(p)!r} is a directory; give a file name such as model.engine")
    if manifest.plan_size != len(plan):
        raise EngineFileError("internal: manifest plan size does not match the plan written")
    atomic_write(p, plan)
    atomic_write(manifest_path(p), manifest.to_json().encode())
    return p


def read_engine_file(
    path: str | os.PathLike[str], *, require_manifest: bool = False
) -> tuple[bytes, Manifest | None]:
    """Read a plan and, when present, its manifest; check that they belong together.

    A plan without a manifest (written by trtexec, C++ or another tool) is returned with ``None``.

    Raises:
        EngineFileError: the file is missing or empty, the manifest is corrupt, or the plan does not match
            the manifest (truncated or replaced).
    """
    p = Path(path)
    if not p.is_file():
        raise EngineFileError(f"engine file {str(p)!r} does not exist")
    plan = p.read_bytes()
    if not plan:
        raise EngineFileError(f"engine file {str(p)!r} is empty; rebuild it")
    mp = manifest_path(p)
    if not mp.is_file():
        if require_manifest:
            raise EngineFileError(f"engine file {str(p)!r} has no manifest {mp.name!r} beside it")
        return plan, None
    try:
        data = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineFileError(f"manifest {str(mp)!r} is not valid JSON ({exc}); rebuild the engine") from exc
    if not isinstance(data, dict):
        raise EngineFileError(f"manifest {str(mp)!r} is not a JSON object; rebuild the engine")
    manifest = Manifest.from_dict(data, source=f"manifest {str(mp)!r}")
    check_plan(plan, manifest, str(p))
    return plan, manifest


def check_plan(plan: bytes | memoryview, manifest: Manifest, source: str) -> None:
    """Raise EngineFileError unless ``plan`` is the one ``manifest`` describes."""
    if len(plan) != manifest.plan_size:
        raise EngineFileError(
            f"engine file {source!r} is {len(plan)} bytes but its manifest says {manifest.plan_size}: "
            "the file is truncated or was replaced. Rebuild the engine."
        )
    if sha256_bytes(plan) != manifest.plan_sha256:
        raise EngineFileError(
            f"engine file {source!r} does not match its manifest (SHA-256 differs): it is corrupt or was "
            "replaced. Rebuild the engine."
        )


@dataclass(frozen=True)
class BuiltEngine:
    """An engine file in memory: the raw plan and the manifest describing it (what the builder returns)."""

    plan: bytes
    manifest: Manifest

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (the raw plan) and ``path + ".manifest.json"``; returns the plan path."""
        return write_engine_file(path, self.plan, self.manifest)
