"""TensorRT's log, bridged to Python logging: ``trtkit.tensorrt`` gets every message, and a failing call can
collect what TensorRT said during it (:class:`LogCapture`) to put into its exception.

TensorRT catches and prints any exception raised in its log callback (``Exception caught in log():
KeyboardInterrupt``). The bridge keeps a Ctrl-C instead: an active capture is marked interrupted, sets its
``on_interrupt`` event (a build's cancel) or raises ``KeyboardInterrupt`` when its block ends."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Final

from trtkit.backend.protocols import TrtLogger, TrtModule
from trtkit.log import get_logger

__all__ = ["LogCapture", "LogSink", "make_trt_logger"]

_trt_log = get_logger("tensorrt")

_SEVERITY_TO_LEVEL: Final[dict[str, int]] = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}


class LogCapture:
    """Messages TensorRT logged while a :meth:`Backend.capture` block was active."""

    def __init__(self, min_level: int, on_interrupt: threading.Event | None = None) -> None:
        self.min_level = min_level
        self.records: list[tuple[int, str]] = []
        self.on_interrupt = on_interrupt
        self.interrupted = False

    @property
    def lines(self) -> list[str]:
        """The captured messages, prefixed with their level name."""
        return [f"[{logging.getLevelName(level)}] {msg}" for level, msg in self.records]

    @property
    def errors(self) -> list[str]:
        """Only the messages of level ERROR and above."""
        return [msg for level, msg in self.records if level >= logging.ERROR]


class LogSink:
    """Receives TensorRT's messages, forwards them to ``trtkit.tensorrt`` and to active captures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: list[LogCapture] = []
        # Recent warnings and errors, numbered, for calls on the hot path that cannot afford a capture block:
        # take mark() before the call and read since(mark) only when it failed.
        self._seq = 0
        self._recent: collections.deque[tuple[int, int, str]] = collections.deque(maxlen=64)

    def emit(self, severity: object, message: str) -> None:
        name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
        level = _SEVERITY_TO_LEVEL.get(name, logging.INFO)
        if _trt_log.isEnabledFor(level):
            _trt_log.log(level, "%s", message)
        if level >= logging.WARNING:
            with self._lock:
                self._seq += 1
                self._recent.append((self._seq, level, message))
        if self._captures:
            with self._lock:
                for cap in self._captures:
                    if level >= cap.min_level:
                        cap.records.append((level, message))

    def interrupt(self) -> None:
        """A ``KeyboardInterrupt`` reached the log callback: hand it to the active captures."""
        with self._lock:
            captures = list(self._captures)
        for cap in captures:
            cap.interrupted = True
            if cap.on_interrupt is not None:
                cap.on_interrupt.set()

    def mark(self) -> int:
        return self._seq

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return [f"[{logging.getLevelName(level)}] {msg}" for seq, level, msg in self._recent if seq > mark]

    @contextlib.contextmanager
    def capture(self, min_level: int, on_interrupt: threading.Event | None = None) -> Iterator[LogCapture]:
        cap = LogCapture(min_level, on_interrupt)
        with self._lock:
            self._captures.append(cap)
        try:
            yield cap
        finally:
            with self._lock:
                self._captures.remove(cap)
        if cap.interrupted and on_interrupt is None:
            raise KeyboardInterrupt("interrupted (Ctrl-C) during a TensorRT call")


def make_trt_logger(module: TrtModule, sink: LogSink) -> TrtLogger:
    """A ``trt.ILogger`` of ``module`` that hands every message to ``sink``."""
    base = module.ILogger

    class _Bridge(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()

        def log(self, severity: object, msg: str) -> None:
            try:
                sink.emit(severity, msg)
            except KeyboardInterrupt:  # TensorRT would print and drop it
                sink.interrupt()

    return _Bridge()
