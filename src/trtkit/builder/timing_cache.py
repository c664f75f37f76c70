"""A timing cache file that several processes can build with at once.

Before a build the file is loaded (under a file lock) into the builder config; after the build the
config's cache is merged with whatever is on disk by then (another process may have saved meanwhile) and
written back atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from trtkit.backend import BuilderConfig
from trtkit.errors import BuildError
from trtkit.files import HolderLock, atomic_write
from trtkit.log import get_logger

__all__ = ["TimingCacheFile"]

_log = get_logger("timing_cache")
LOCK_TIMEOUT_S = 600.0
"""How long to wait for another process's timing cache read or write before giving up with a message."""


class TimingCacheFile:
    """The timing cache at ``path``; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = HolderLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S, what="timing cache lock")

    def _read(self) -> bytes:
        return self.path.read_bytes() if self.path.is_file() else b""

    def attach(self, cfg: BuilderConfig) -> None:
        """Load the file (or start empty) and set it on the builder config."""
        with self._lock:
            blob = self._read()
        cache = cfg.create_timing_cache(blob)
        if cache is None and blob:
            _log.warning("timing cache %s is unreadable or from another TensorRT; starting empty", self.path)
            cache = cfg.create_timing_cache(b"")
        if cache is None:
            raise BuildError("TensorRT could not create a timing cache")
        if not cfg.set_timing_cache(cache, False):
            raise BuildError(f"TensorRT did not accept the timing cache {str(self.path)!r}")
        _log.debug("timing cache %s loaded (%d bytes)", self.path, len(blob))

    def save(self, cfg: BuilderConfig) -> None:
        """Merge the config's cache with the file's current content and write it back atomically."""
        cache = cfg.get_timing_cache()
        if cache is None:
            raise BuildError("TensorRT returned no timing cache after the build")
        with self._lock:
            on_disk = self._read()
            if on_disk:
                other = cfg.create_timing_cache(on_disk)
                if other is not None and not cache.combine(other, True):
                    _log.warning("could not merge timing cache %s; overwriting it", self.path)
            data = memoryview(cache.serialize())  # type: ignore[arg-type]
            atomic_write(self.path, data)
        _log.debug("timing cache %s saved (%d bytes)", self.path, data.nbytes)
