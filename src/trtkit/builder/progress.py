"""Build progress through TensorRT's ``IProgressMonitor``: a callback for code, a tqdm bar on a terminal.

A callback receives :class:`ProgressEvent` objects and may return ``False`` to cancel the build. TensorRT can
call the monitor from several threads, so events are delivered under a lock.

Ctrl-C: TensorRT's callbacks swallow a ``KeyboardInterrupt`` (``Exception caught in log()``), so during a build
:class:`SigintCancels` replaces the SIGINT handler with one that cancels the build through the monitor, and
delivers the interrupt to the previous handler (``KeyboardInterrupt`` by default) once TensorRT has returned.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Literal, Protocol, TypeAlias, TypeVar

from trtkit.backend import TrtModule

__all__ = [
    "ProgressCallback",
    "ProgressEvent",
    "SigintCancels",
    "TqdmProgress",
    "builds_running",
    "make_monitor",
    "run_interruptibly",
]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report from the builder.

    ``kind`` is ``"start"`` (a phase begins, ``total`` steps), ``"step"`` (``step`` of ``total`` done) or
    ``"finish"``. Phases nest: ``parent`` names the enclosing phase, or is None at the top level.
    """

    kind: Literal["start", "step", "finish"]
    phase: str
    parent: str | None
    step: int
    total: int


ProgressCallback: TypeAlias = Callable[[ProgressEvent], "bool | None"]


class _Bar(Protocol):
    """The part of a ``tqdm`` bar used here."""

    n: int

    def set_postfix_str(self, s: str, refresh: bool = ...) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


class TqdmProgress:
    """A progress callback that draws one tqdm bar per top-level build phase on stderr."""

    def __init__(self, *, leave: bool = False) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._leave = leave
        self._bars: dict[str, _Bar] = {}
        self._parents: dict[str, str | None] = {}

    def __call__(self, event: ProgressEvent) -> bool:
        if event.kind == "start":
            self._parents[event.phase] = event.parent
            if event.parent is None:
                self._bars[event.phase] = self._tqdm(
                    total=event.total, desc=event.phase, leave=self._leave, file=sys.stderr, unit="step"
                )
            else:
                top = self._top(event.phase)
                if top in self._bars:
                    self._bars[top].set_postfix_str(event.phase, refresh=True)
        elif event.kind == "step" and event.phase in self._bars:
            bar = self._bars[event.phase]
            bar.n = event.step + 1
            bar.refresh()
        elif event.kind == "finish" and event.phase in self._bars:
            self._bars.pop(event.phase).close()
        return True

    def _top(self, phase: str) -> str:
        seen = 0
        while self._parents.get(phase) is not None and seen < 64:
            phase = self._parents[phase] or phase
            seen += 1
        return phase

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class _MonitorState:
    def __init__(self, callback: ProgressCallback | None, cancel: threading.Event | None,
                 interrupt: threading.Event | None = None) -> None:
        self.callback = callback
        self.cancel = cancel or threading.Event()
        self.interrupt = interrupt or threading.Event()
        self.lock = threading.Lock()
        self.reason: str | None = None
        self.error: BaseException | None = None

    def interrupted(self) -> None:
        self.reason = "interrupted (Ctrl-C)"
        self.interrupt.set()

    def deliver(self, event: ProgressEvent) -> bool:
        if self.interrupt.is_set():
            self.reason = self.reason or "interrupted (Ctrl-C)"
            return False
        if self.cancel.is_set():
            self.reason = self.reason or "cancelled"
            return False
        if self.callback is None:
            return True
        try:
            with self.lock:
                keep_going = self.callback(event)
        except KeyboardInterrupt:
            self.interrupted()
            return False
        except BaseException as exc:  # a failing callback must not crash TensorRT's thread
            self.error = exc
            self.reason = f"the progress callback raised {type(exc).__name__}: {exc}"
            self.cancel.set()
            return False
        if keep_going is False:
            self.reason = "the progress callback returned False"
            self.cancel.set()
            return False
        return True


def make_monitor(trt: TrtModule, callback: ProgressCallback | None, cancel: threading.Event | None,
                 interrupt: threading.Event | None = None) -> tuple[object, _MonitorState]:
    """Return ``(monitor, state)``: a ``trt.IProgressMonitor`` forwarding to ``callback``.

    The build stops at the next progress report once ``cancel`` or ``interrupt`` (Ctrl-C) is set.
    ``state.reason`` says why the build was cancelled, if it was.
    """
    state = _MonitorState(callback, cancel, interrupt)
    base = trt.IProgressMonitor

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()

        # A KeyboardInterrupt raised anywhere in these methods would reach TensorRT, which prints and drops it.
        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                state.deliver(ProgressEvent("start", phase_name, parent_phase or None, 0, num_steps))
            except KeyboardInterrupt:
                state.interrupted()

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                return state.deliver(ProgressEvent("step", phase_name, None, step, 0))
            except KeyboardInterrupt:
                state.interrupted()
                return False

        def phase_finish(self, phase_name: str) -> None:
            try:
                state.deliver(ProgressEvent("finish", phase_name, None, 0, 0))
            except KeyboardInterrupt:
                state.interrupted()

    return _Monitor(), state


_Handler: TypeAlias = "Callable[[int, FrameType | None], object] | int | signal.Handlers | None"


class SigintCancels:
    """While active (a ``with`` block), SIGINT sets :attr:`event` instead of raising in TensorRT's callbacks.

    Installed only on the main thread and only over a Python-level handler (``SIG_IGN`` and ``SIG_DFL`` are
    respected). On leaving the block the previous handler comes back, and a SIGINT received meanwhile is handed
    to it: the default handler raises ``KeyboardInterrupt``, also in a notebook kernel.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: _Handler = None
        self._installed = False

    @property
    def fired(self) -> bool:
        """Whether SIGINT arrived (or a callback saw ``KeyboardInterrupt``) while the block ran."""
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> SigintCancels:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        previous = self._previous
        if self._installed:
            signal.signal(signal.SIGINT, previous)
            self._installed = False
        if not self.fired or isinstance(exc, KeyboardInterrupt):
            return
        if previous is signal.default_int_handler or not callable(previous):
            raise KeyboardInterrupt("the build was interrupted (Ctrl-C); nothing was written")
        previous(signal.SIGINT, None)


_T = TypeVar("_T")
_WORKERS: set[threading.Thread] = set()
_WORKERS_LOCK = threading.Lock()
_POLL_S = 0.05


def run_interruptibly(work: Callable[[], _T], interrupted: threading.Event) -> _T | None:
    """Run ``work`` (TensorRT's build) on a worker thread and wait for it here; None when ``interrupted`` is set
    first.

    Python runs signal handlers only on the main thread, between bytecodes: while that thread is inside
    ``build_serialized_network`` it runs none until TensorRT calls back, which can take as long as a build phase.
    Waiting here instead sees Ctrl-C within a poll. The worker, which the monitor cancels at TensorRT's next
    progress report, finishes in the background and its result is dropped.
    """
    box: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            with _WORKERS_LOCK:
                _WORKERS.discard(threading.current_thread())

    worker = threading.Thread(target=target, name="trtkit-build", daemon=True)
    with _WORKERS_LOCK:
        _WORKERS.add(worker)
    worker.start()
    while worker.is_alive():
        worker.join(_POLL_S)
        if interrupted.is_set() and worker.is_alive():
            return None
    if failure:
        raise failure[0]
    return box[0]


def builds_running() -> bool:
    """Whether an interrupted build is still winding down on a worker thread (see :func:`run_interruptibly`)."""
    with _WORKERS_LOCK:
        return any(t.is_alive() for t in _WORKERS)


@atexit.register
def _wait_for_cancelled_builds() -> None:
    # A daemon thread still inside TensorRT when the interpreter finalizes may abort the process: let the
    # cancelled builds reach their next progress report (the CLI exits at once with os._exit instead).
    with _WORKERS_LOCK:
        workers = list(_WORKERS)
    for worker in workers:
        worker.join()
