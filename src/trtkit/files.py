"""Small file helpers shared by the engine files, the engine cache and the timing cache."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from trtkit.errors import ConfigError

__all__ = ["atomic_write", "refuse_overwrite", "sha256_bytes"]


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_overwrite(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                     what: str = "the output") -> None:
    """Raise :class:`ConfigError` when ``output`` is one of ``inputs`` (compared as resolved real paths and, for
    existing files, by inode: symbolic and hard links, ``..`` and relative spellings of one file all match).
    Outputs never overwrite what a command reads."""
    out = Path(output).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if out == src or (out.exists() and src.exists() and os.path.samefile(out, src)):  # hard links too
            raise ConfigError(f"{what} {str(output)!r} is also an input ({str(item)!r}); writing it would destroy the "
                              "input. Choose another output path (-o / --output)")
