"""The engine cache: content-addressed engines under the user's cache directory.

The key hashes everything that changes the engine: the ONNX model with its external weights, the build
options that matter, the profiles, the backend and its version, and the target GPU (or RTX compute
capabilities). Entries are written atomically under a per-key file lock, so concurrent processes that
want the same engine build it once. When the cache grows past its size cap, the least recently used
entries are removed.

A :class:`ModelStep` (e.g. quantization to Q/DQ, made by :mod:`trtkit.engine`) turns the model into the one
built, only on a miss: its identity is part of the key, its model is kept beside the plan as
``<key>.engine.<suffix>.onnx`` and its record goes into ``manifest.extra``.

Location: ``TRTKIT_CACHE_DIR``, else ``platformdirs.user_cache_dir("trtkit")/engines``.
Size cap: ``TRTKIT_CACHE_MAX_BYTES`` (accepts ``4G``), else 8 GiB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine, parse_size
from trtkit.builder.build import check_build_arguments
from trtkit.builder.conversion import converted_model_path
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx, save_onnx
from trtkit.builder.precision import PrecisionPlan, plan_precision
from trtkit.builder.prepare import library_versions
from trtkit.builder.progress import ProgressCallback
from trtkit.builder.target import build_target
from trtkit.errors import ConfigError, EngineFileError, LockTimeoutError, ModelError
from trtkit.files import HolderLock, os_error_line, sha256_bytes
from trtkit.log import get_logger
from trtkit.manifest import MANIFEST_SUFFIX, BuiltEngine, read_engine_file, write_engine_file
from trtkit.profiles import Profile, ProfilesLike, normalize_profiles

__all__ = ["CacheEntry", "EngineCache", "ModelStep", "default_cache_dir", "step_model_path"]

_log = get_logger("cache")
KEY_VERSION: Final = 1
DEFAULT_MAX_BYTES: Final = 8 << 30
DEFAULT_LOCK_TIMEOUT_S: Final = 3600.0
_STRAY = re.compile(r"^\.+([0-9a-f]{32})\.engine\..*\.(tmp|pending)$")
_LOCK = re.compile(r"^([0-9a-f]{32})\.lock$")
_BESIDE = re.compile(r"^([0-9a-f]{32})\.engine(\.[a-z0-9]+)?\.onnx(\.data)?$")  # converted or step models
_SUFFIX = re.compile(r"^[a-z0-9]+$")


def default_cache_dir() -> Path:
    """``$TRTKIT_CACHE_DIR`` or the platform's user cache directory for trtkit, plus ``engines``."""
    env = os.environ.get("TRTKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("trtkit")) / "engines"


@dataclass(frozen=True)
class ModelStep:
    """A step that turns the model into the one built, run by :meth:`EngineCache.get_or_build` only on a miss.

    Attributes:
        name: the key of its record in ``manifest.extra`` (e.g. ``"quantization"``).
        identity: JSON-able description of everything besides the model that decides the step's result (tool and
            version, options, data digest); part of the cache key.
        run: model -> (the model to build, a JSON-able record for ``manifest.extra[name]``).
        suffix: the step's model is kept beside the plan as ``<key>.engine.<suffix>.onnx`` (lowercase letters
            and digits).
        describe_build: when given, the build runs with TensorRT's log captured at VERBOSE, and this turns the
            log's messages into more of the record (e.g. where quantization took hold).
    """

    name: str
    identity: Mapping[str, object]
    run: Callable[[OnnxModel], tuple[OnnxModel, Mapping[str, object]]]
    suffix: str = "qdq"
    describe_build: Callable[[Sequence[str]], Mapping[str, object]] | None = None

    def __post_init__(self) -> None:
        if not _SUFFIX.match(self.suffix):
            raise ConfigError(f"ModelStep suffix {self.suffix!r} must be lowercase letters and digits, e.g. 'qdq'")


def step_model_path(plan_path: str | os.PathLike[str], suffix: str = "qdq") -> Path:
    """Where a :class:`ModelStep`'s model is kept beside its engine: ``KEY.engine`` -> ``KEY.engine.qdq.onnx``."""
    return Path(plan_path).with_name(f"{Path(plan_path).name}.{suffix}.onnx")


def _beside(plan: Path) -> list[Path]:
    """The files kept beside a plan: the converted model and any step model, with their weight files."""
    found = [converted_model_path(plan), *sorted(plan.parent.glob(f"{plan.name}.*.onnx"))]
    return [*found, *(m.with_name(m.name + ".data") for m in found)]


@dataclass(frozen=True)
class CacheEntry:
    """One cached engine: its key, plan path, bytes on disk (plan, manifest, converted or quantized model) and
    last use."""

    key: str
    path: Path
    size: int
    last_used: float


def _max_bytes(value: object, source: str) -> int:
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except ConfigError:
            raise ConfigError(f"{source} {value!r} is not a size; write e.g. 4G, 512M or a number of bytes") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source} must be a number of bytes or a size such as '4G', not "
                          f"{type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigError(f"{source} must be 0 or more bytes, not {value}; e.g. max_bytes='8G'")
    return value


def _seconds(value: object, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{source} {value!r} is not a number of seconds; e.g. 600") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{source} must be a number of seconds (0 or more) or None, not {value!r}")
    return float(value)


class EngineCache:
    """Engines keyed by content; see the module docstring.

    Args:
        directory: where entries live; defaults to :func:`default_cache_dir`.
        max_bytes: size cap in bytes (or ``"4G"``); defaults to ``TRTKIT_CACHE_MAX_BYTES`` or 8 GiB.
        lock_timeout: seconds to wait for another process building the same engine before raising
            :class:`~trtkit.errors.LockTimeoutError` (None: wait for ever); defaults to
            ``TRTKIT_CACHE_LOCK_TIMEOUT`` or one hour.

    Methods: :meth:`get_or_build` (the usual entry point), :meth:`get`, :meth:`put`, :meth:`remove`,
    :meth:`entries`, :meth:`size`, :meth:`evict` (apply the size cap), :meth:`prune` (remove what killed
    writers left, then apply the cap), :meth:`clear`, :meth:`key`, :meth:`path_for`, :meth:`lock`.

    Raises:
        ConfigError: ``directory`` is not a path or is a file, or ``max_bytes`` / ``lock_timeout`` is not a
            size / number of seconds.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 max_bytes: int | str | None = None, *, lock_timeout: float | str | None = "env") -> None:
        if directory is not None and not isinstance(directory, str | os.PathLike):
            raise ConfigError(f"the cache directory must be a path (str or pathlib.Path), not "
                              f"{type(directory).__name__} {directory!r}")
        source = "cache directory" if directory is not None else "cache directory ($TRTKIT_CACHE_DIR)"
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"{source} {str(self.directory)!r} is a file, not a directory; give a directory "
                              "(it is created when missing)")
        if max_bytes is None:
            env = os.environ.get("TRTKIT_CACHE_MAX_BYTES")
            self.max_bytes = _max_bytes(env, "TRTKIT_CACHE_MAX_BYTES") if env else DEFAULT_MAX_BYTES
        else:
            self.max_bytes = _max_bytes(max_bytes, "max_bytes")
        if lock_timeout == "env":
            env = os.environ.get("TRTKIT_CACHE_LOCK_TIMEOUT")
            self.lock_timeout = _seconds(env, "TRTKIT_CACHE_LOCK_TIMEOUT") if env else DEFAULT_LOCK_TIMEOUT_S
        else:
            self.lock_timeout = _seconds(lock_timeout, "lock_timeout")
        self._local = threading.Lock()

    def __repr__(self) -> str:
        return f"EngineCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # ---- keys ------------------------------------------------------------------------------------------------

    def key(self, model: OnnxModel, profiles: Sequence[Profile], config: BuildConfig, backend: Backend, *,
            precision: PrecisionPlan | None = None, step: ModelStep | None = None) -> str:
        """The content address of the engine these inputs would build.

        ``precision``: the build's precision plan, by default :func:`~trtkit.builder.precision.plan_precision`'s
        (its converter and the converter's version are part of the key). Unless ``config.sanitize`` is
        ``"never"``, the preparation options and :func:`~trtkit.builder.prepare.library_versions` are part of it
        too (a build may prepare the graph); with ``"never"`` the key is what it was before graph preparation.
        ``step``: a :class:`ModelStep` run before the build; its name and identity are part of the key.
        """
        plan = precision or plan_precision(backend.features, config)
        material = {
            "v": KEY_VERSION,
            "onnx": model.sha256,
            "config": config.cache_dict(),
            "profiles": [p.to_dict() for p in profiles],
            "backend": backend.name,
            "backend_version": backend.version,
            "target": build_target(backend, config).to_dict(),
            "converter": plan.converter_identity,
        }
        if config.sanitize != "never":  # the build may prepare the graph: the libraries doing it count too
            material["preparation"] = library_versions()
        if step is not None:
            material["step"] = {"name": step.name, "identity": dict(step.identity)}
        return sha256_bytes(json.dumps(material, sort_keys=True).encode())[:32]

    def path_for(self, key: str) -> Path:
        """The plan path of entry ``key`` (its manifest and converted model sit beside it)."""
        return self.directory / f"{key}.engine"

    # ---- entries ---------------------------------------------------------------------------------------------

    def get(self, key: str) -> BuiltEngine | None:
        """The cached engine for ``key``, or None. Needs no write access: a read-only cache still hits.

        A corrupt entry is removed (when the directory allows) and reported as a miss.
        """
        path = self.path_for(key)
        if not path.is_file() and not path.with_name(path.name + MANIFEST_SUFFIX).is_file():
            return None
        try:
            plan, manifest = read_engine_file(path, require_manifest=True)
        except EngineFileError as exc:
            _log.warning("dropping corrupt cache entry %s: %s", path.name, exc)
            try:
                with self.lock(key, timeout=0):  # not while another process writes it
                    self.remove(key)
            except (LockTimeoutError, EngineFileError, OSError):
                pass
            return None
        assert manifest is not None
        with contextlib.suppress(OSError):  # a read-only cache still hits
            os.utime(path)  # last use, for the size cap
        return BuiltEngine(plan=plan, manifest=manifest)

    def put(self, key: str, engine: BuiltEngine) -> Path:
        """Store ``engine`` under ``key`` (under the key's lock), then enforce the size cap.

        Raises:
            EngineFileError: the entry could not be written (disk full, read-only directory, ...).
        """
        with self.lock(key):
            return self._put_locked(key, engine)

    def _put_locked(self, key: str, engine: BuiltEngine) -> Path:
        path = write_engine_file(self.path_for(key), engine.plan, engine.manifest)
        self.evict(keep=key)
        return path

    def remove(self, key: str) -> None:
        """Delete the entry ``key`` (plan, manifest, and the converted or quantized model kept beside it)."""
        path = self.path_for(key)
        for p in (path, path.with_name(path.name + MANIFEST_SUFFIX), *_beside(path)):
            p.unlink(missing_ok=True)

    def _files(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.directory) as it:
                return list(it)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise EngineFileError(os_error_line(exc, self.directory, "read the cache directory")) from exc

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        items = self._files()
        beside: dict[str, list[Path]] = {}  # key -> models kept beside its plan (converted, quantized, weights)
        for item in items:
            m = _BESIDE.match(item.name)
            if m:
                beside.setdefault(m.group(1), []).append(Path(item.path))
        out: list[CacheEntry] = []
        for item in items:
            if not item.name.endswith(".engine"):
                continue
            plan = Path(item.path)
            try:
                st = plan.stat()
                size = st.st_size + plan.with_name(plan.name + MANIFEST_SUFFIX).stat().st_size
            except FileNotFoundError:
                continue
            for model in beside.get(plan.stem, []):
                with contextlib.suppress(FileNotFoundError):
                    size += model.stat().st_size
            out.append(CacheEntry(plan.stem, plan, size, st.st_mtime))
        out.sort(key=lambda e: e.last_used)
        return out

    def strays(self) -> list[tuple[Path, int]]:
        """Temporary and pending files (with their sizes) that writers left or are writing now, and step models
        whose engine was never committed (a writer died between the two)."""
        out: list[tuple[Path, int]] = []
        for item in self._files():
            if _STRAY.match(item.name) or self._orphan(item.name):
                try:
                    out.append((Path(item.path), item.stat().st_size))
                except FileNotFoundError:
                    continue
        return out

    def size(self) -> int:
        """Bytes on disk: every entry plus temporary files (a killed writer's count until pruned)."""
        return sum(e.size for e in self.entries()) + sum(size for _, size in self.strays())

    def remove_strays(self) -> list[Path]:
        """Remove what killed writers left: temporary and pending files, and lock files, of keys nobody holds.

        A key's files are touched only while its lock can be taken at once, so a writer at work is never
        disturbed. Returns the files removed.
        """
        removed: list[Path] = []
        keys: dict[str, list[Path]] = {}
        for item in self._files():
            m = _STRAY.match(item.name) or _LOCK.match(item.name) or self._orphan(item.name)
            if m:
                keys.setdefault(m.group(1), []).append(Path(item.path))
        for key, paths in keys.items():
            try:
                with self.lock(key, timeout=0):
                    if any(p.name.endswith(".pending") for p in paths):
                        self.get(key)  # commits a pending plan that its manifest describes
                    for p in paths:
                        if (p.suffix in (".tmp", ".pending") or self._orphan(p.name)) and p.exists():
                            p.unlink()
                            removed.append(p)
            except (LockTimeoutError, OSError):
                continue  # a writer holds the key, or the directory is read-only
            lock = self.directory / f"{key}.lock"
            if lock in paths:
                removed.append(lock)  # released locks remove their file
        for p in removed:
            _log.info("removed stray cache file %s", p.name)
        return removed

    def _orphan(self, name: str) -> re.Match[str] | None:
        """A step model (``KEY.engine.SUFFIX.onnx``) whose plan is absent."""
        m = _BESIDE.match(name)
        return m if m and m.group(2) and not self.path_for(m.group(1)).is_file() else None

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the cache fits ``max_bytes``; returns removed keys.

        Entries another process holds the lock of are skipped.
        """
        removed: list[str] = []
        entries = self.entries()
        total = sum(e.size for e in entries) + sum(size for _, size in self.strays())
        if total > self.max_bytes:
            self.remove_strays()
            entries = self.entries()
            total = sum(e.size for e in entries) + sum(size for _, size in self.strays())
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.key == keep:
                continue
            try:
                with self.lock(entry.key, timeout=0):
                    self.remove(entry.key)
            except LockTimeoutError:
                continue
            total -= entry.size
            removed.append(entry.key)
            _log.info("evicted cache entry %s (%d bytes)", entry.key, entry.size)
        return removed

    def prune(self, max_bytes: int | str | None = None) -> tuple[list[str], list[Path]]:
        """Remove stray files, then evict down to ``max_bytes`` (default: the cap); returns (keys, files)."""
        strays = self.remove_strays()
        if max_bytes is None:
            return self.evict(), strays
        cap = self.max_bytes
        self.max_bytes = _max_bytes(max_bytes, "max_bytes")
        try:
            return self.evict(), strays
        finally:
            self.max_bytes = cap

    def clear(self) -> list[str]:
        """Remove every entry nobody is writing, and stray files; returns the removed keys."""
        removed = self.prune(0)[0]
        return removed

    def lock(self, key: str, *, timeout: float | str | None = "default") -> HolderLock:
        """An inter-process lock for ``key`` (it names its holder to waiters; see :class:`~trtkit.files.HolderLock`)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineFileError(os_error_line(exc, self.directory, "create the cache directory")) from exc
        wait = self.lock_timeout if timeout == "default" else timeout
        return HolderLock(self.directory / f"{key}.lock", timeout=wait if not isinstance(wait, str) else None,
                          what=f"engine cache lock of {key}")

    def __iter__(self) -> Iterator[CacheEntry]:
        """The entries, least recently used first (as :meth:`entries`)."""
        return iter(self.entries())

    # ---- get or build ------------------------------------------------------------------------------------------

    def get_or_build(
        self,
        model: ModelSource | OnnxModel,
        *,
        shapes: ProfilesLike = None,
        config: BuildConfig | None = None,
        backend: str | Backend | None = None,
        progress: bool | ProgressCallback | None = None,
        step: ModelStep | None = None,
    ) -> tuple[BuiltEngine, bool]:
        """Return ``(engine, hit)``: the cached engine, or a fresh build stored in the cache.

        Two processes asking for the same key build it once: the second waits for the first's lock, then
        finds the entry. A hit needs no write access (a read-only cache works); when the cache cannot be
        written, the engine is built and returned without being stored (a warning is logged).

        ``step``: a :class:`ModelStep` (e.g. quantization) run on a miss only, before the build; its model is
        kept beside the plan (:func:`step_model_path`) and its record is ``manifest.extra[step.name]``. A hit
        runs neither the step nor the build.

        Raises:
            LockTimeoutError: another process held the key's lock for longer than ``lock_timeout``; the
                message names it (pid, host, whether it is stopped).
        """
        config = check_build_arguments(config, progress)
        be = get_backend(backend)
        onnx_model = load_onnx(model)
        profiles = normalize_profiles(shapes)
        key = self.key(onnx_model, profiles, config, be, step=step)
        found = self.get(key)  # no lock for a hit: entries are replaced as a unit, and a read-only cache works
        if found is not None:
            _log.info("engine cache hit %s", key)
            return found, True
        try:
            lock = self.lock(key)
            lock.acquire()
        except LockTimeoutError:
            raise
        except (EngineFileError, OSError) as exc:
            msg = exc.message if isinstance(exc, EngineFileError) else os_error_line(exc, self.directory, "lock")
            _log.warning("engine cache %s is not writable (%s); building without caching", self.directory, msg)
            return run_step_and_build(onnx_model, step, shapes=profiles, config=config, backend=be,
                                      progress=progress)[0], False
        try:
            found = self.get(key)  # another process may have built it while we waited
            if found is not None:
                _log.info("engine cache hit %s", key)
                return found, True
            # A model converted for fp16/bf16 is kept beside its engine as <key>.engine.onnx.
            converted = converted_model_path(self.path_for(key)) if config.precision in ("fp16", "bf16") else None
            built, stepped = run_step_and_build(onnx_model, step, shapes=profiles, config=config, backend=be,
                                                progress=progress, save_converted_model=converted)
            try:
                if step is not None and stepped is not None:  # the step's model first, then the engine commits it
                    _save_step_model(stepped, step_model_path(self.path_for(key), step.suffix))
                self._put_locked(key, built)
            except EngineFileError as exc:
                _log.warning("could not store the engine in the cache: %s", exc.message)
                return built, False
            _log.info("engine cache stored %s", key)
            return built, False
        finally:
            lock.release()


def run_step_and_build(model: OnnxModel, step: ModelStep | None, *, shapes: ProfilesLike, config: BuildConfig,
                       backend: Backend, progress: bool | ProgressCallback | None = None,
                       save_converted_model: Path | None = None) -> tuple[BuiltEngine, OnnxModel | None]:
    """Run ``step`` (if any) on ``model``, build the result, and record the step in ``manifest.extra[step.name]``
    with the source model's SHA-256. Returns the engine and the step's model (None without a step)."""
    if step is None:
        return build_engine(model, shapes=shapes, config=config, backend=backend, progress=progress,
                            save_converted_model=save_converted_model), None
    stepped, record = step.run(model)
    with backend.capture(logging.DEBUG if step.describe_build is not None else logging.CRITICAL + 1) as cap:
        built = build_engine(stepped, shapes=shapes, config=config, backend=backend, progress=progress,
                             save_converted_model=save_converted_model)
    described = step.describe_build([message for _, message in cap.records]) if step.describe_build else {}
    extra = {**built.manifest.extra,
             step.name: {**record, **described, "source_onnx": {"name": model.name, "sha256": model.sha256},
                         "model_sha256": stepped.sha256}}
    return BuiltEngine(plan=built.plan, manifest=dataclasses.replace(built.manifest, extra=extra)), stepped


def _save_step_model(model: OnnxModel, path: Path) -> None:
    try:  # the cache's own file: a failure is the cache's write failure
        save_onnx(model.proto_with_weights(), path)
    except ModelError as exc:
        raise EngineFileError(exc.message) from exc
