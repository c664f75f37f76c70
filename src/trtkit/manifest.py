"""Engine files: a raw TensorRT plan with a JSON manifest beside it.

``model.engine`` stays a plain TensorRT plan that trtexec, C++ and Triton load as they are.
``model.engine.manifest.json`` records how it was built: trtkit version, backend and version, target GPU or
compute capabilities, compatibility flags, ONNX hash, build config, profiles and every I/O tensor. The
manifest holds the plan's SHA-256 and a checksum over its own content, so corruption of either is detected.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from trtkit._version import __version__
from trtkit.errors import EngineFileError, TrtkitError
from trtkit.files import atomic_write, os_error_line, pending_path, replace_pair, sha256_bytes
from trtkit.profiles import Profile

__all__ = [
    "MANIFEST_SUFFIX",
    "BuiltEngine",
    "Manifest",
    "TensorInfo",
    "manifest_path",
    "read_engine_file",
    "read_manifest",
    "validate_manifest",
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


@dataclass(frozen=True, repr=False)
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
        """Read a manifest's JSON object: its schema version, every field's type (a wrong one is named, with
        what was expected), then its checksum.

        Raises:
            EngineFileError: another schema version, a field that is missing or has the wrong type, or a
                checksum that does not match (a corrupt or hand-edited manifest).
        """
        if not isinstance(d, Mapping):
            raise EngineFileError(f"{source} is not a JSON object; rebuild the engine")
        if d.get("schema") != SCHEMA:
            raise EngineFileError(
                f"{source} has manifest schema {_short(d.get('schema'))}; this trtkit reads schema {SCHEMA}. "
                "Rebuild the engine with this trtkit version."
            )
        validate_manifest(d, source)
        stored = d.get("checksum")
        body = {k: v for k, v in d.items() if k != "checksum"}
        if stored != _checksum(body):
            raise EngineFileError(
                f"{source} is corrupt or was edited by hand (its checksum does not match its content). "
                "Rebuild the engine, or delete the manifest to load the plan as a bare TensorRT plan."
            )
        profiles = []
        for i, p in enumerate(d["profiles"]):
            try:
                profiles.append(Profile.from_dict(p))
            except (TrtkitError, KeyError, TypeError, ValueError) as exc:
                raise EngineFileError(f"{source}: field 'profiles[{i}]' is not a valid profile ({exc}); "
                                      "rebuild the engine") from exc
        return cls(
            backend=d["backend"]["name"],
            backend_version=d["backend"]["version"],
            target=dict(d["target"]),
            compatibility=dict(d["compatibility"]),
            onnx=dict(d["onnx"]),
            config=dict(d["config"]),
            profiles=tuple(profiles),
            tensors=tuple(TensorInfo.from_dict(t) for t in d["tensors"]),
            plan_sha256=d["plan"]["sha256"],
            plan_size=d["plan"]["size"],
            trtkit_version=d["trtkit_version"],
            created=d.get("created", ""),
            extra=dict(d.get("extra", {})),
        )

    def __repr__(self) -> str:
        return (f"Manifest({self.backend} {self.backend_version}, inputs=[{_tensors(self.inputs)}], "
                f"outputs=[{_tensors(self.outputs)}], plan={_size(self.plan_size)} "
                f"sha256={self.plan_sha256[:12]}, created={self.created!r})")

    def _repr_html_(self) -> str:
        return _html("Manifest", self, [])


# ---- schema ----------------------------------------------------------------------------------------------------
# A field spec is a type check: a Python type, a tuple of allowed literal values, or a nested dict / list spec.


class _Spec:
    def __init__(self, kind: str, what: str, item: Any = None, optional: bool = False) -> None:
        self.kind, self.what, self.item, self.optional = kind, what, item, optional


def _obj(fields: Mapping[str, _Spec], optional: bool = False) -> _Spec:
    return _Spec("object", "an object", fields, optional)


def _list(item: _Spec, optional: bool = False) -> _Spec:
    return _Spec("list", "a list", item, optional)


_STR = _Spec("str", "a string")
_INT = _Spec("int", "an integer")
_SIZE = _Spec("size", "an integer >= 0")
_DIM = _Spec("dim", "an integer >= -1")
_BOOL = _Spec("bool", "true or false")
_SHA = _Spec("sha", "a 64-digit hex SHA-256")
_MAP = _Spec("map", "an object")
_MODE = _Spec("enum", "'input' or 'output'", ("input", "output"))
_LOCATION = _Spec("enum", "'device' or 'host'", ("device", "host"), optional=True)
_PROFILE = _Spec("profile", "an object of input name -> {'min', 'opt', 'max'} lists of integers")

MANIFEST_SCHEMA: Final = _obj({
    "schema": _INT, "trtkit_version": _STR, "created": _Spec("str", "a string", optional=True),
    "backend": _obj({"name": _STR, "version": _STR}),
    "target": _MAP, "compatibility": _MAP, "onnx": _MAP, "config": _MAP,
    "profiles": _list(_PROFILE),
    "tensors": _list(_obj({"name": _STR, "mode": _MODE, "dtype": _STR, "shape": _list(_DIM),
                           "location": _LOCATION, "is_shape_tensor": _Spec("bool", "true or false", optional=True)})),
    "plan": _obj({"sha256": _SHA, "size": _SIZE}),
    "extra": _Spec("map", "an object", optional=True),
    "checksum": _STR,
})
"""The manifest's schema (version :data:`SCHEMA`), checked by :func:`validate_manifest`."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ok(spec: _Spec, v: Any) -> bool:
    k = spec.kind
    if k in ("object", "map", "profile"):
        return isinstance(v, Mapping)
    if k == "list":
        return isinstance(v, list)
    if k == "str":
        return isinstance(v, str)
    if k == "bool":
        return isinstance(v, bool)
    if k == "int":
        return _is_int(v)
    if k == "size":
        return _is_int(v) and v >= 0
    if k == "dim":
        return _is_int(v) and v >= -1
    if k == "sha":
        return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
    return isinstance(v, str) and v in spec.item  # enum


def _check(spec: _Spec, v: Any, where: str, source: str) -> None:
    if not _ok(spec, v):
        raise EngineFileError(f"{source}: field {where!r} should be {spec.what}, not {_short(v)}; rebuild the engine")
    if spec.kind == "object":
        for name, sub in spec.item.items():
            if name not in v:
                if not sub.optional:
                    raise EngineFileError(f"{source}: field {where + '.' + name if where else name!r} is missing; "
                                          "rebuild the engine")
                continue
            _check(sub, v[name], f"{where}.{name}" if where else name, source)
    elif spec.kind == "list":
        for i, item in enumerate(v):
            _check(spec.item, item, f"{where}[{i}]", source)
    elif spec.kind == "profile":
        for name, rng in v.items():
            if not isinstance(rng, Mapping):
                raise EngineFileError(f"{source}: field '{where}.{name}' should be {{'min', 'opt', 'max'}}, "
                                      f"not {_short(rng)}; rebuild the engine")
            for bound, dims in rng.items():
                _check(_list(_INT), dims, f"{where}.{name}.{bound}", source)


def validate_manifest(data: Any, source: str = "manifest") -> None:
    """Check ``data`` against :data:`MANIFEST_SCHEMA`; the error names the first wrong field and what it should be.

    Raises:
        EngineFileError: a field is missing or has the wrong type.
    """
    _check(MANIFEST_SCHEMA, data, "", source)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return sha256_bytes(canonical)


def manifest_path(plan_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.manifest.json``."""
    p = Path(plan_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def write_engine_file(path: str | os.PathLike[str], plan: bytes | memoryview, manifest: Manifest | None) -> Path:
    """Write the plan and its manifest as one unit; returns the plan path.

    After a crash or an I/O error at any point, :func:`read_engine_file` finds the old pair or the new one
    (see :func:`trtkit.files.replace_pair`). ``manifest=None`` writes a bare plan and removes a stale manifest
    first, so the old manifest never describes the new plan.

    Raises:
        EngineFileError: one line naming the path: a directory given as the file, the disk is full, the
            path cannot be written.
    """
    p = Path(path)
    if p.is_dir():
        raise EngineFileError(f"{str(p)!r} is a directory; give a file name such as model.engine")
    if manifest is None:
        mp = manifest_path(p)
        try:
            mp.unlink(missing_ok=True)
        except OSError as exc:
            raise EngineFileError(os_error_line(exc, mp, "remove")) from exc
        atomic_write(p, plan)
        return p
    if manifest.plan_size != len(plan):
        raise EngineFileError("internal: manifest plan size does not match the plan written")
    replace_pair(p, plan, manifest_path(p), manifest.to_json().encode())
    return p


def _read_bytes(p: Path, what: str) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise EngineFileError(os_error_line(exc, p, f"read the {what}")) from exc


def _recover(p: Path, manifest: Manifest) -> bytes | None:
    """The plan an interrupted :func:`write_engine_file` left pending, committed when the directory allows."""
    pending = pending_path(p, manifest.plan_sha256)
    if not pending.is_file():
        return None
    plan = _read_bytes(pending, "engine file")
    if len(plan) != manifest.plan_size or sha256_bytes(plan) != manifest.plan_sha256:
        return None
    with contextlib.suppress(OSError):  # read-only: the pending file still serves readers
        os.replace(pending, p)
    return plan


def read_manifest(path: str | os.PathLike[str]) -> Manifest | None:
    """The manifest beside the plan ``path`` (checked against its schema and checksum), or None."""
    mp = manifest_path(path)
    if not mp.is_file():
        return None
    try:
        data = json.loads(_read_bytes(mp, "manifest").decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EngineFileError(f"manifest {str(mp)!r} is not valid JSON ({exc}); rebuild the engine") from exc
    if not isinstance(data, dict):
        raise EngineFileError(f"manifest {str(mp)!r} is not a JSON object; rebuild the engine")
    return Manifest.from_dict(data, source=f"manifest {str(mp)!r}")


def read_engine_file(
    path: str | os.PathLike[str], *, require_manifest: bool = False
) -> tuple[bytes, Manifest | None]:
    """Read a plan and, when present, its manifest; check that they belong together.

    A plan without a manifest (written by trtexec, C++ or another tool) is returned with ``None``. A plan
    left pending by an interrupted :func:`write_engine_file` is found and committed.

    Raises:
        EngineFileError: the file is missing, not a regular file or empty, the manifest is corrupt, or the
            plan does not match the manifest (truncated or replaced).
    """
    p = Path(path)
    if p.exists() and not p.is_file():
        kind = "a directory" if p.is_dir() else "not a regular file"
        raise EngineFileError(f"engine file {str(p)!r} is {kind}; give the path of a .engine file")
    manifest = read_manifest(p)
    if not p.is_file():
        recovered = _recover(p, manifest) if manifest is not None else None
        if recovered is None:
            raise EngineFileError(f"engine file {str(p)!r} does not exist")
        return recovered, manifest
    plan = _read_bytes(p, "engine file")
    if not plan:
        raise EngineFileError(f"engine file {str(p)!r} is empty; rebuild it")
    if manifest is None:
        if require_manifest:
            raise EngineFileError(f"engine file {str(p)!r} has no manifest {manifest_path(p).name!r} beside it")
        return plan, None
    if len(plan) != manifest.plan_size or sha256_bytes(plan) != manifest.plan_sha256:
        recovered = _recover(p, manifest)
        if recovered is not None:
            return recovered, manifest
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


@dataclass(frozen=True, repr=False)
class BuiltEngine:
    """An engine file in memory: the raw plan and the manifest describing it (what the builder returns).

    Its repr is short (size, SHA-256, backend, tensors): the plan itself can be hundreds of megabytes.
    """

    plan: bytes
    manifest: Manifest

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (the raw plan) and ``path + ".manifest.json"``; returns the plan path."""
        return write_engine_file(path, self.plan, self.manifest)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"BuiltEngine(plan={_size(len(self.plan))} sha256={m.plan_sha256[:12]}, "
                f"backend={m.backend} {m.backend_version}, inputs=[{_tensors(m.inputs)}], "
                f"outputs=[{_tensors(m.outputs)}])")

    def _repr_html_(self) -> str:
        return _html("BuiltEngine", self.manifest, [("plan bytes", str(len(self.plan)))])


# ---- reprs -----------------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _tensor(t: TensorInfo) -> str:
    shape = ",".join("?" if d < 0 else str(d) for d in t.shape)
    return f"{ascii(t.name)[1:-1]}: {t.dtype}[{shape}]"


def _tensors(tensors: tuple[TensorInfo, ...], limit: int = 8) -> str:
    shown = ", ".join(_tensor(t) for t in tensors[:limit])
    return shown + (f", ... {len(tensors) - limit} more" if len(tensors) > limit else "")


def _html(title: str, m: Manifest, extra: list[tuple[str, str]]) -> str:
    rows = [("backend", f"{m.backend} {m.backend_version}"), ("plan", f"{_size(m.plan_size)}, sha256 "
            f"{m.plan_sha256[:12]}"), *extra, ("created", m.created or "?"), ("trtkit", m.trtkit_version)]
    rows += [(t.mode, _tensor(t)) for t in m.tensors[:32]]
    if len(m.tensors) > 32:
        rows.append(("", f"... {len(m.tensors) - 32} more tensors"))
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<b>{html.escape(title)}</b><table>{body}</table>"
