"""Ctrl-C stops a build: a real process receives SIGINT in the middle of a TensorRT-RTX build on the CPU.

TensorRT's callbacks swallow ``KeyboardInterrupt``; these tests show the build stops anyway, the Python API raises
``KeyboardInterrupt``, the CLI exits 130 and writes nothing. "Stopped early" is measured by the builder's own
progress events, not by a clock.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import deep_conv_chain

from trtkit.backend import Backend
from trtkit.builder import build_engine
from trtkit.builder.progress import ProgressEvent, SigintCancels

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_CHILD = textwrap.dedent("""
    import sys
    from trtkit.builder import build_engine

    def report(event):
        print(event.kind, event.parent or "-", event.phase, sep="|", flush=True)

    try:
        build_engine(sys.argv[1], backend="tensorrt_rtx", progress=report)
    except KeyboardInterrupt as exc:
        print("KeyboardInterrupt", exc, sep="|", flush=True)
        sys.exit(99)
    print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deep") / "deep.onnx"
    onnx.save(deep_conv_chain(), path)
    return path


def _read_until(proc: subprocess.Popen[bytes], fd: int, needle: bytes, seen: bytearray) -> None:
    """Read ``fd`` until ``needle`` appears (or the process ends); a generous guard, not a measurement."""
    while needle not in seen:
        ready, _, _ = select.select([fd], [], [], 120)
        assert ready, f"no {needle!r} within 120 s; got {bytes(seen[-500:])!r}"
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the process ended before {needle!r}: {bytes(seen[-2000:])!r}")
        seen += chunk


def _full_build_events(rtx: Backend, model: Path) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    build_engine(model, backend=rtx, progress=events.append)
    return events


def test_sigint_mid_build_raises_keyboard_interrupt_early(rtx: Backend, deep_model: Path) -> None:
    full = _full_build_events(rtx, deep_model)
    assert ("finish", "Building engine") in {(e.kind, e.phase) for e in full}

    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(deep_model)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    seen = bytearray()
    _read_until(proc, proc.stdout.fileno(), b"start|-|Building engine", seen)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    lines = (bytes(seen) + out).decode().splitlines()
    assert proc.returncode == 99, (lines[-5:], err.decode()[-2000:])
    assert lines[-1].startswith("KeyboardInterrupt|"), lines[-5:]
    assert "finished" not in lines
    events = lines[:-1]
    # The top-level phase never finished: TensorRT stopped at the next progress report after the signal.
    assert "finish|-|Building engine" not in events
    assert len(events) < len(full)
    assert b"Exception caught in log()" not in err


def test_cli_sigint_mid_build_exits_130_and_writes_nothing(rtx: Backend, deep_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep.engine"
    proc = subprocess.Popen([sys.executable, "-m", "trtkit", "build", str(deep_model), "-o", str(out),
                             "--backend", "tensorrt_rtx", "--progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = bytearray()
    _read_until(proc, proc.stderr.fileno(), b"Building engine", seen)  # the progress bar is drawn
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    err = (bytes(seen) + stderr).decode()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert b"built" not in stdout
    assert not out.exists()
    assert not out.with_name(out.name + ".manifest.json").exists()
    assert list(tmp_path.iterdir()) == []


def test_sigint_handler_is_restored_and_delivered_after_the_block() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), SigintCancels() as sigint:
        assert signal.getsignal(signal.SIGINT) is not before
        signal.raise_signal(signal.SIGINT)  # inside the block: only recorded
        assert sigint.fired
    assert signal.getsignal(signal.SIGINT) is before
    with SigintCancels() as quiet:
        pass
    assert not quiet.fired and signal.getsignal(signal.SIGINT) is before


def test_sigint_respects_a_custom_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        with SigintCancels():
            signal.raise_signal(signal.SIGINT)
            assert got == []  # deferred until TensorRT has returned
        assert got == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_returns_at_once_while_the_build_winds_down() -> None:
    """The waiting thread sees the interrupt within a poll; the worker (stuck, as in one long TensorRT phase)
    finishes later on its own."""
    import threading

    from trtkit.builder.progress import builds_running, run_interruptibly

    release, interrupted = threading.Event(), threading.Event()
    threading.Timer(0.2, interrupted.set).start()
    assert run_interruptibly(lambda: release.wait() or "plan", interrupted) is None
    assert builds_running()  # the worker is still inside its phase
    release.set()


def test_the_build_result_and_its_errors_come_back() -> None:
    import threading

    import pytest

    from trtkit.builder.progress import run_interruptibly

    assert run_interruptibly(lambda: b"plan", threading.Event()) == b"plan"

    def fail() -> bytes:
        raise RuntimeError("from the builder")

    with pytest.raises(RuntimeError, match="from the builder"):
        run_interruptibly(fail, threading.Event())


def test_the_build_thread_uses_the_callers_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full TensorRT builds for the current device, which is per thread: the worker must take the caller's.
    (No GPU here, so the CUDA calls are stood in for; the threads are real.)"""
    import threading

    from trtkit.builder import build
    from trtkit.builder.progress import run_interruptibly

    device_of: dict[int, int] = {}
    monkeypatch.setattr(build, "current_device", lambda: 3)
    monkeypatch.setattr(build, "set_device", lambda index: device_of.__setitem__(threading.get_ident(), index))

    def work() -> int:
        return device_of.get(threading.get_ident(), 0)

    assert run_interruptibly(build._on_this_device(work), threading.Event()) == 3


def test_sigint_while_parsing_stops_before_the_build(rtx: Backend, deep_model: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from trtkit.builder import build as build_module

    real_parse = build_module.parse_into
    started: list[object] = []

    def parse_then_sigint(*args: object) -> None:
        real_parse(*args)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)  # SigintCancels only records it

    monkeypatch.setattr(build_module, "parse_into", parse_then_sigint)
    monkeypatch.setattr(build_module, "run_interruptibly", lambda *a: started.append(a))
    with pytest.raises(KeyboardInterrupt):
        build_engine(deep_model, backend=rtx, progress=False)
    assert started == []
