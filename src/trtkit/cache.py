"""The engine cache: content-addressed engines under the user's cache directory.

The key hashes everything that changes the engine: the ONNX model with its external weights, the build
options that matter, the profiles, the backend and its version, and the target GPU (or RTX compute
capabilities). Entries are written atomically under a per-key file lock, so concurrent processes that
want the same engine build it once. When the cache grows past its size cap, the least recently used
entries are removed.

Location: ``TRTKIT_CACHE_DIR``, else ``platformdirs.user_cache_dir("trtkit")/engines``.
Size cap: ``TRTKIT_CACHE_MAX_BYTES`` (accepts ``4G``), else 8 GiB.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs
from filelock import FileLock

from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine, parse_size
from trtkit.builder.conversion import converted_model_path
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.builder.precision import PrecisionPlan, plan_precision
from trtkit.builder.progress import ProgressCallback
from trtkit.builder.target import build_target
from trtkit.errors import EngineFileError
from trtkit.files import sha256_bytes
from trtkit.log import get_logger
from trtkit.manifest import MANIFEST_SUFFIX, BuiltEngine, read_engine_file, write_engine_file
from trtkit.profiles import Profile, ProfilesLike, normalize_profiles

__all__ = ["CacheEntry", "EngineCache", "default_cache_dir"]

_log = get_logger("cache")
KEY_VERSION: Final = 1
DEFAULT_MAX_BYTES: Final = 8 << 30


def default_cache_dir() -> Path:
    """``$TRTKIT_CACHE_DIR`` or the platform's user cache directory for trtkit, plus ``engines``."""
    env = os.environ.get("TRTKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("trtkit")) / "engines"


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    last_used: float


class EngineCache:
    """Engines keyed by content; see the module docstring.

    Args:
        directory: where entries live; defaults to :func:`default_cache_dir`.
        max_bytes: size cap in bytes (or ``"4G"``); defaults to ``TRTKIT_CACHE_MAX_BYTES`` or 8 GiB.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 max_bytes: int | str | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        if max_bytes is None:
            max_bytes = os.environ.get("TRTKIT_CACHE_MAX_BYTES") or DEFAULT_MAX_BYTES
        self.max_bytes = parse_size(max_bytes)
        self._local = threading.Lock()

    def __repr__(self) -> str:
        return f"EngineCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # ---- keys ------------------------------------------------------------------------------------------------

    def key(self, model: OnnxModel, profiles: Sequence[Profile], config: BuildConfig, backend: Backend, *,
            precision: PrecisionPlan | None = None) -> str:
        """The content address of the engine these inputs would build.

        ``precision``: the build's precision plan, by default :func:`~trtkit.builder.precision.plan_precision`'s
        (its converter and the converter's version are part of the key).
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
        return sha256_bytes(json.dumps(material, sort_keys=True).encode())[:32]

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.engine"

    # ---- entries ---------------------------------------------------------------------------------------------

    def get(self, key: str) -> BuiltEngine | None:
        """The cached engine for ``key``, or None. A corrupt entry is removed and reported as a miss."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            plan, manifest = read_engine_file(path, require_manifest=True)
        except EngineFileError as exc:
            _log.warning("dropping corrupt cache entry %s: %s", path.name, exc)
            self.remove(key)
            return None
        assert manifest is not None
        os.utime(path)
        return BuiltEngine(plan=plan, manifest=manifest)

    def put(self, key: str, engine: BuiltEngine) -> Path:
        """Store ``engine`` under ``key`` atomically, then enforce the size cap."""
        path = write_engine_file(self.path_for(key), engine.plan, engine.manifest)
        self.evict(keep=key)
        return path

    def remove(self, key: str) -> None:
        """Delete the entry ``key`` (plan, manifest and converted model), if present."""
        path = self.path_for(key)
        for p in (path, path.with_name(path.name + MANIFEST_SUFFIX), converted_model_path(path)):
            p.unlink(missing_ok=True)

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        out: list[CacheEntry] = []
        if not self.directory.is_dir():
            return out
        for plan in self.directory.glob("*.engine"):
            try:
                st = plan.stat()
                mst = plan.with_name(plan.name + MANIFEST_SUFFIX).stat()
            except FileNotFoundError:
                continue
            out.append(CacheEntry(plan.stem, plan, st.st_size + mst.st_size, st.st_mtime))
        out.sort(key=lambda e: e.last_used)
        return out

    def size(self) -> int:
        return sum(e.size for e in self.entries())

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the cache fits ``max_bytes``; returns removed keys."""
        removed: list[str] = []
        entries = self.entries()
        total = sum(e.size for e in entries)
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.key == keep:
                continue
            with self.lock(entry.key):
                self.remove(entry.key)
            total -= entry.size
            removed.append(entry.key)
            _log.info("evicted cache entry %s (%d bytes)", entry.key, entry.size)
        return removed

    def clear(self) -> None:
        for entry in self.entries():
            self.remove(entry.key)

    def lock(self, key: str) -> FileLock:
        """An inter-process lock for ``key``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / f"{key}.lock"))

    def __iter__(self) -> Iterator[CacheEntry]:
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
    ) -> tuple[BuiltEngine, bool]:
        """Return ``(engine, hit)``: the cached engine, or a fresh build stored in the cache.

        Two processes asking for the same key build it once: the second waits for the first's lock, then
        finds the entry.
        """
        config = config or BuildConfig()
        be = get_backend(backend)
        onnx_model = load_onnx(model)
        profiles = normalize_profiles(shapes)
        key = self.key(onnx_model, profiles, config, be)
        with self.lock(key):
            found = self.get(key)
            if found is not None:
                _log.info("engine cache hit %s", key)
                return found, True
            # A model converted for fp16/bf16 is kept beside its engine as <key>.engine.onnx.
            converted = converted_model_path(self.path_for(key)) if config.precision != "fp32" else None
            if converted is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
            built = build_engine(onnx_model, shapes=profiles, config=config, backend=be, progress=progress,
                                 save_converted_model=converted)
            self.put(key, built)
            _log.info("engine cache stored %s", key)
            return built, False
