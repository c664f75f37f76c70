"""File helpers: atomic writes honour the umask and fail with one line; locks name their holder."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_manifest import fake_engine

from trtkit.errors import EngineFileError, LockTimeoutError, TrtkitError
from trtkit.files import HolderLock, atomic_write
from trtkit.manifest import manifest_path, write_engine_file


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    os.umask(mask)
    atomic_write(tmp_path / "a.bin", b"data")
    plan = write_engine_file(tmp_path / "m.engine", *fake_engine(b"PLAN"))
    for p in (tmp_path / "a.bin", plan, manifest_path(plan)):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p.name


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    atomic_write(target, memoryview(b"new content"))
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_faults_are_trtkit_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineFileError, match="is a directory"):
        atomic_write(tmp_path, b"x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EngineFileError, match="is a file, not a directory"):
        atomic_write(tmp_path / "file" / "sub" / "out.bin", b"x")

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(TrtkitError, match="permission denied") as info:
        atomic_write(tmp_path / "out.bin", b"x")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


_HOLDER = textwrap.dedent("""
    import sys, time
    from trtkit.files import HolderLock
    with HolderLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_waiter_names_a_stopped_holder_and_times_out(tmp_path: Path) -> None:
    lock_path = tmp_path / "k.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)
        with pytest.raises(LockTimeoutError) as info:
            HolderLock(lock_path, timeout=0.5, notice_s=0.1, what="cache lock").acquire()
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "(stopped)" in message and "\n" not in message
        assert isinstance(info.value, TimeoutError)
    finally:
        holder.kill()
        holder.wait()
    with HolderLock(lock_path, timeout=5):  # the dead holder's lock is free again
        assert lock_path.exists()
    assert not lock_path.exists()  # released locks leave no file behind


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    lock_path = tmp_path / "k.lock"
    with HolderLock(lock_path):
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from trtkit import LockTimeoutError; from trtkit.files import HolderLock\n"
             "try:\n HolderLock(sys.argv[1], timeout=0.3).acquire()\nexcept LockTimeoutError: print('busy')",
             str(lock_path)], capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == "busy"
    with HolderLock(lock_path, timeout=5):
        pass
    assert not lock_path.exists()


@pytest.mark.parametrize("target", ["x.npy", "m.engine", "m.engine.manifest.json", "sub/../x.npy"])
def test_run_never_writes_its_outputs_over_what_it_reads(tmp_path: Path, target: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from trtkit.cli.main import main

    np.save(tmp_path / "x.npy", np.ones(3, np.float32))
    (tmp_path / "m.engine").write_bytes(b"plan")
    (tmp_path / "m.engine.manifest.json").write_bytes(b"{}")
    (tmp_path / "sub").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    rc = main(["run", str(tmp_path / "m.engine"), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / target)])
    assert rc == 1 and "is also an input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_run_writes_its_outputs_whole_where_asked_with_the_umask(tmp_path: Path, umask: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import numpy as np

    from trtkit.cli.main import main

    run_cli = sys.modules["trtkit.cli.run"]

    class _Loaded:
        def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"y": feeds["x"] * 2}

    monkeypatch.setattr(run_cli, "load_engine", lambda *a, **k: contextlib.nullcontext(_Loaded()))
    np.save(tmp_path / "x.npy", np.arange(3, dtype=np.float32))
    out = tmp_path / "y.bin"  # numpy.savez(path) would have written y.bin.npz
    assert main(["run", str(tmp_path / "m.engine"), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(out)]) == 0
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y"], [0, 2, 4])
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.bin"]
