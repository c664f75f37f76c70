"""The exceptions trtkit raises.

Every error trtkit raises derives from :class:`TrtkitError`, so ``except trtkit.TrtkitError`` catches them
all. Subclasses are grouped by what the user has to do about them::

    TrtkitError
    ├── ConfigError              an argument or option has a value trtkit does not accept (also a ValueError)
    ├── DependencyError          a package is missing: install it
    ├── UnsupportedFeatureError  the active backend or GPU cannot do what was asked
    ├── ModelError               the ONNX model cannot be read
    │   └── OnnxParseError       TensorRT's ONNX parser rejected nodes (lists every parser error)
    ├── ShapeError               optimization profiles or shapes are wrong (also a ValueError)
    ├── BuildError               TensorRT failed to build the engine (carries TensorRT's log)
    │   └── BuildCancelledError  the build was cancelled from the progress callback
    ├── EngineFileError          an engine file or its manifest is missing, corrupt or unreadable
    ├── EngineIncompatibleError  the engine was built for another TensorRT or GPU: rebuild it
    ├── InputError               inputs given to an engine are wrong (also a ValueError)
    ├── CudaError                a CUDA call failed, or there is no CUDA driver / GPU
    ├── ExecutionError           TensorRT failed while running the engine
    ├── TritonExportError        Triton would reject the exported model, or the target exists
    ├── TritonServerError        a Triton server trtkit started did not start, answer or stop in time
    ├── LockTimeoutError         another process held a trtkit lock too long (also a TimeoutError)
    └── ClosedError              the object was closed and cannot be used any more

TensorRT reports most failures only through its logger. trtkit captures what TensorRT logged during the
failing call and attaches it as :attr:`TrtkitError.tensorrt_log`; it is also appended to the message.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BuildCancelledError",
    "BuildError",
    "ClosedError",
    "ConfigError",
    "CudaError",
    "DependencyError",
    "EngineFileError",
    "EngineIncompatibleError",
    "ExecutionError",
    "InputError",
    "LockTimeoutError",
    "ModelError",
    "OnnxParseError",
    "ParserIssue",
    "ShapeError",
    "TritonExportError",
    "TritonServerError",
    "TrtkitError",
    "UnsupportedFeatureError",
]

_MAX_LOG_LINES = 20
_MAX_ISSUES_NAMED = 3


class TrtkitError(Exception):
    """Root of every exception raised by trtkit.

    Args:
        message: what was wrong, what was expected, and how to fix it.
        tensorrt_log: messages TensorRT logged (warnings and errors) during the failing call.
    """

    def __init__(self, message: str, *, tensorrt_log: Sequence[str] = ()) -> None:
        self.message = message
        self.tensorrt_log: tuple[str, ...] = tuple(tensorrt_log)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.tensorrt_log:
            return self.message
        lines = self.tensorrt_log[-_MAX_LOG_LINES:]
        skipped = len(self.tensorrt_log) - len(lines)
        head = f"\nTensorRT said ({skipped} earlier lines omitted):" if skipped else "\nTensorRT said:"
        return self.message + head + "".join(f"\n  {line}" for line in lines)


class ConfigError(TrtkitError, ValueError):
    """An argument or option has a value trtkit does not accept (unknown name, out of range, conflicting)."""


class DependencyError(TrtkitError, ImportError):
    """A package trtkit needs for this call is not installed; the message names the pip command."""


class UnsupportedFeatureError(TrtkitError):
    """The active backend, its version or the GPU cannot do what was asked."""


class ModelError(TrtkitError):
    """The ONNX model is missing, unreadable, empty or invalid."""


class ParserIssue:
    """One error reported by TensorRT's ONNX parser."""

    __slots__ = ("code", "desc", "node_index", "node_name", "op_type")

    def __init__(self, node_index: int, node_name: str, op_type: str, desc: str, code: str) -> None:
        self.node_index = node_index
        self.node_name = node_name
        self.op_type = op_type
        self.desc = desc
        self.code = code

    def __str__(self) -> str:
        where = f"node {self.node_index}" if self.node_index >= 0 else "model"
        if self.node_name:
            where += f" '{self.node_name}'"
        if self.op_type:
            where += f" ({self.op_type})"
        return f"{where}: {self.desc} [{self.code}]"

    def __repr__(self) -> str:
        return (
            f"ParserIssue(node_index={self.node_index}, node_name={self.node_name!r}, "
            f"op_type={self.op_type!r}, desc={self.desc!r}, code={self.code!r})"
        )


class OnnxParseError(ModelError):
    """TensorRT's ONNX parser rejected the model; :attr:`issues` lists every parser error."""

    def __init__(self, message: str, issues: Sequence[ParserIssue], *, tensorrt_log: Sequence[str] = ()):
        self.issues: tuple[ParserIssue, ...] = tuple(issues)
        # One line: the headline names the first node, op and reason; the rest are named briefly.
        others = [i for i in self.issues if f"node {i.node_index}" not in message]
        if others:
            named = ", ".join(f"node {i.node_index}" + (f" '{i.node_name}'" if i.node_name else "")
                              + (f" ({i.op_type})" if i.op_type else "") for i in others[:_MAX_ISSUES_NAMED])
            more = len(others) - min(len(others), _MAX_ISSUES_NAMED)
            message += f" (parser errors also at {named}{f' and {more} more' if more else ''}; all in .issues)"
        super().__init__(message, tensorrt_log=tensorrt_log)

    def _render(self) -> str:
        # The issues are TensorRT's parser errors already; its log (kept in .tensorrt_log) repeats them.
        return self.message if self.issues else super()._render()


class ShapeError(TrtkitError, ValueError):
    """Optimization profiles or input shapes are invalid for the model."""


class BuildError(TrtkitError):
    """TensorRT could not build the engine; :attr:`tensorrt_log` holds its reasons."""


class BuildCancelledError(BuildError):
    """The build was cancelled (the progress callback returned False, or Ctrl-C)."""


class EngineFileError(TrtkitError):
    """An engine plan or its manifest is missing, truncated, corrupt or does not match."""


class EngineIncompatibleError(TrtkitError):
    """The engine was built for another backend, TensorRT version or GPU; rebuild it for this one."""


class InputError(TrtkitError, ValueError):
    """Inputs passed to an engine do not match its tensors (names, dtypes, shapes, device, layout)."""


class CudaError(TrtkitError):
    """A CUDA call failed, or no CUDA driver or GPU is available."""


class ExecutionError(TrtkitError):
    """TensorRT failed while setting up or running an inference."""


class TritonExportError(TrtkitError):
    """The engine cannot be exported as asked: Triton would reject the model, or the target exists."""


class TritonServerError(TrtkitError):
    """A Triton server trtkit started (``export-triton --check``, the tests) did not start, did not answer, or did
    not stop in time; the message has the errors it logged."""


class LockTimeoutError(TrtkitError, TimeoutError):
    """Another process held a trtkit lock (an engine-cache entry, ...) longer than the timeout; the message
    names the holder (pid, host, whether it is stopped)."""


class ClosedError(TrtkitError):
    """The object was closed and can no longer be used."""
