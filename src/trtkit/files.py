"""Small file helpers shared by the engine files, the engine cache, the timing cache and the Triton export.

* :func:`atomic_write`: readers see the old file or the whole new one; the mode follows the umask; an OS error
  becomes one clear :class:`~trtkit.errors.EngineFileError` line.
* :func:`replace_pair`: a file and the record describing it (a plan and its manifest) replaced as one unit.
* :func:`move_into_place`: files written in a staging folder moved onto their targets, undone on an error.
* :class:`HolderLock`: an inter-process lock that records who holds it, says so to waiters, times out with a
  message, and removes its lock file when released.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from trtkit.errors import ConfigError, EngineFileError, LockTimeoutError, TrtkitError

__all__ = [
    "HolderLock",
    "LockTimeoutError",
    "atomic_write",
    "file_mode",
    "move_into_place",
    "os_error_line",
    "pending_path",
    "refuse_overwrite",
    "replace_pair",
    "sha256_bytes",
]

_log = logging.getLogger("trtkit.files")
_CHUNK = 1 << 30


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new regular file gets from ``open()``: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def os_error_line(exc: OSError, path: str | os.PathLike[str], action: str = "write") -> str:
    """One line saying what went wrong with ``path`` and what to do about it."""
    p = str(path)
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return f"cannot {action} {p!r}: the disk is full (or over quota); free some space or choose another path"
    if code == errno.EISDIR:
        return f"cannot {action} {p!r}: it is a directory; give a file name such as model.engine"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot {action} {p!r}: permission denied; choose a path you can write or fix its permissions"
    if code == errno.EROFS:
        return f"cannot {action} {p!r}: the file system is read-only; choose another path"
    if code == errno.ENOTDIR:
        return f"cannot {action} {p!r}: a parent of this path is a file, not a directory; choose another path"
    if code == errno.ENAMETOOLONG:
        return f"cannot {action} {p!r}: the file name is too long; choose a shorter path"
    reason = exc.strerror or type(exc).__name__
    return f"cannot {action} {p!r}: {reason}; check the path and the disk"


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def atomic_write(path: Path, data: bytes | memoryview, *,
                 error: type[TrtkitError] = EngineFileError, shown: Path | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part.

    The new file gets ``0o666 & ~umask`` (as ``open()`` would give it), not the temporary file's 0600.

    Raises:
        EngineFileError (or ``error``): one line naming the path and the fault (disk full, permission denied,
            a directory given as the file, ...); ``shown`` is the path named (default ``path``). No temporary
            file is left behind.
    """
    path = Path(path)
    name = shown if shown is not None else path
    if path.is_dir():
        raise error(os_error_line(IsADirectoryError(errno.EISDIR, "Is a directory"), name))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a parent is a file
        raise error(os_error_line(NotADirectoryError(errno.ENOTDIR, "Not a directory"), name)) from exc
    except OSError as exc:
        raise error(os_error_line(exc, name)) from exc
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise error(os_error_line(exc, name)) from exc
    closed = False
    try:
        os.fchmod(fd, file_mode())
        view = memoryview(data).cast("B")
        while view.nbytes:
            written = os.write(fd, view[:_CHUNK])
            view = view[written:]
        os.fsync(fd)
        closed = True
        os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        if not closed:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise error(os_error_line(exc, name)) from exc
        raise
    _fsync_dir(path.parent)


def move_into_place(moves: Sequence[tuple[Path, Path]], backup_dir: Path, *,
                    error: type[TrtkitError] = EngineFileError) -> None:
    """Move each staged file onto its target, in order (a model's weight file before the model that names it).

    The staged files are flushed to disk first. ``backup_dir`` (on the targets' file system, e.g. the staging
    folder) keeps hard links to the files replaced, so an OS error on a later move puts the earlier targets back:
    on an error every target holds its old content (or is absent, as before).

    Raises:
        EngineFileError (or ``error``): one line naming the target and the fault.
    """
    for src, dst in moves:
        try:
            fd = os.open(src, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise error(os_error_line(exc, dst)) from exc
    backups: list[Path | None] = []  # None: no old file, so an undo removes the target
    for index, (_, dst) in enumerate(moves):
        backup = backup_dir / f"old-{index}"
        try:
            os.link(dst, backup)
        except FileNotFoundError:
            backups.append(None)
        except OSError:  # no hard links here: this target cannot be put back, so an undo leaves it
            backups.append(dst)
        else:
            backups.append(backup)
    done: list[int] = []
    for index, (src, dst) in enumerate(moves):
        try:
            os.replace(src, dst)
        except OSError as exc:
            for undo in reversed(done):
                with contextlib.suppress(OSError):
                    old, target = backups[undo], moves[undo][1]
                    if old is None:
                        os.unlink(target)
                    elif old != target:
                        os.replace(old, target)
            raise error(os_error_line(exc, dst)) from exc
        done.append(index)
    for parent in dict.fromkeys(dst.parent for _, dst in moves):
        _fsync_dir(parent)


def pending_path(main: Path, digest: str) -> Path:
    """Where :func:`replace_pair` keeps the new ``main`` whose SHA-256 is ``digest`` until it is committed."""
    return main.with_name(f".{main.name}.{digest[:16]}.pending")


def _stale_pendings(main: Path) -> Iterator[Path]:
    for name in glob.glob(glob.escape(str(main.with_name(f".{main.name}."))) + "*.pending"):
        yield Path(name)


def replace_pair(main: Path, main_data: bytes | memoryview, record: Path, record_data: bytes, *,
                 error: type[TrtkitError] = EngineFileError) -> None:
    """Replace ``main`` and the ``record`` that describes it (holding ``main_data``'s SHA-256) as one unit.

    Steps: (1) write the new ``main`` beside it as :func:`pending_path`, (2) replace ``record``, (3) rename the
    pending file onto ``main``, (4) remove pending files left by earlier writers that died. A crash or an I/O
    error at any step leaves either the old pair, or the new record with the new ``main`` still pending;
    a reader that finds ``main`` not matching the record finishes step 3 (see ``trtkit.manifest``).
    ``main`` itself is a valid file (old or new) at every moment. Writers of one path must not run at once
    (the engine cache serialises them with its lock).
    """
    main, record = Path(main), Path(record)
    if main.is_dir():
        raise error(os_error_line(IsADirectoryError(errno.EISDIR, "Is a directory"), main))
    pending = pending_path(main, sha256_bytes(main_data))
    atomic_write(pending, main_data, error=error, shown=main)  # step 1
    try:
        atomic_write(record, record_data, error=error)  # step 2
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(pending)
        raise
    try:
        os.replace(pending, main)  # step 3; after a failure here a reader commits the pending file
    except OSError as exc:
        raise error(os_error_line(exc, main) + " (the new file is kept beside it and used when read)") from exc
    _fsync_dir(main.parent)
    for stale in _stale_pendings(main):  # step 4
        with contextlib.suppress(OSError):
            stale.unlink()


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


# ---- locks -----------------------------------------------------------------------------------------------------


def _holder_text(lock_path: str) -> str:
    """Who holds ``lock_path``, from what the holder wrote into it: 'pid 123 on host h (stopped), since ...'."""
    try:
        raw = Path(lock_path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "an unknown process"
    fields = dict(part.split("=", 1) for part in raw.split() if "=" in part)
    pid, host, since = fields.get("pid", ""), fields.get("host", ""), fields.get("since", "")
    if not pid.isdigit():
        return "an unknown process"
    text = f"pid {pid}" + (f" on host {host}" if host else "")
    if host == socket.gethostname():
        text += _process_state(int(pid))
    if since.replace(".", "", 1).isdigit():
        text += f", for {int(time.time() - float(since))} s"
    return text


def _process_state(pid: int) -> str:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return " (no longer running)"
    except OSError:
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return {"T": " (stopped)", "t": " (stopped by a debugger)", "Z": " (a zombie)"}.get(state, "")


def _write_holder(fd: int) -> None:
    text = f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.0f}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)


class HolderLock:
    """An inter-process lock on ``path`` (via filelock) that writes ``pid=… host=…`` into the lock file.

    A waiter logs who holds the lock after ``notice_s`` seconds and raises :class:`~trtkit.errors.LockTimeoutError`,
    naming the holder and whether it is stopped, after ``timeout`` seconds (None: wait for ever). The lock file is
    removed on release (filelock lets waiters on a removed file retry), so lock files do not pile up.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = None, what: str = "lock",
                 notice_s: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.what = what
        self.notice_s = notice_s
        self._lock = FileLock(self.path, on_acquired=_write_holder)

    def acquire(self) -> None:
        """Take the lock (see the class docstring for waiting and timing out)."""
        start = time.monotonic()
        noticed = False
        while True:
            waited = time.monotonic() - start
            step = self.notice_s if not noticed else 60.0
            if self.timeout is not None:
                step = min(step, max(self.timeout - waited, 0.0))
            try:
                self._lock.acquire(timeout=step)
                return
            except Timeout:
                waited = time.monotonic() - start
                if self.timeout is not None and waited >= self.timeout:
                    raise LockTimeoutError(
                        f"gave up after {waited:.0f} s waiting for the {self.what} {self.path!r}, held by "
                        f"{_holder_text(self.path)}; let that process finish (resume it if it is stopped) or end it, "
                        "then retry") from None
                _log.warning("waiting for the %s %s, held by %s", self.what, self.path, _holder_text(self.path))
                noticed = True

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._lock.release()

    def __enter__(self) -> HolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
