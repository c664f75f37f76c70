"""CUDA graphs for one execution context: capture on the second call with the same shapes and addresses,
replay afterwards, at most :data:`_MAX_GRAPHS` kept (least recently captured dropped first)."""

from __future__ import annotations

import collections
from typing import Final, Protocol, cast

from trtkit.backend import Backend, ExecutionContext, LogCapture, RtxExecutionContext
from trtkit.log import get_logger
from trtkit.runtime.memory.streams import CudaStream, stream_handle

__all__ = ["GraphCache"]

_log = get_logger("runtime")
_MAX_GRAPHS: Final = 16

GraphKey = tuple[object, ...]


class _Graph(Protocol):
    def launch(self, stream: CudaStream) -> None: ...


class GraphCache:
    """The graphs of one context, by the shapes, profile, addresses and context memory they were captured with
    (a graph holds all of them, [DG] "CUDA Graphs")."""

    def __init__(self, backend: Backend) -> None:
        self._be = backend
        self._graphs: collections.OrderedDict[GraphKey, _Graph] = collections.OrderedDict()
        self._no_graph: set[GraphKey] = set()
        self.last_key: GraphKey | None = None
        self.stats = {"captured": 0, "replayed": 0, "fallbacks": 0}

    def launch(self, key: GraphKey, ctx: ExecutionContext, stream: CudaStream, capturable: bool) -> bool:
        """Replay the graph for ``key``, or capture one when ``key`` repeats the last call's; False when the
        caller must launch plainly. ``capturable`` is False for data-dependent output shapes."""
        graph = self._graphs.get(key)
        if graph is not None:
            graph.launch(stream)
            self.stats["replayed"] += 1
            return True
        # Capture on the second call with the same shapes and addresses: the first ran plainly, which also
        # flushes TensorRT's deferred shape updates before capture.
        if key == self.last_key and key not in self._no_graph:
            graph = self._capture(ctx, stream) if capturable else None
            if graph is not None:
                self._graphs[key] = graph
                while len(self._graphs) > _MAX_GRAPHS:
                    self._graphs.popitem(last=False)
                graph.launch(stream)
                self.stats["captured"] += 1
                return True
            self._no_graph.add(key)
            self.stats["fallbacks"] += 1
        self.last_key = key
        return False

    def drop(self) -> None:
        """Forget every graph (a profile switch takes effect at the next enqueue)."""
        self._graphs.clear()
        self.last_key = None

    def _capture(self, ctx: ExecutionContext, stream: CudaStream) -> _Graph | None:
        be = self._be
        builder = stream.create_graph_builder()  # type: ignore[attr-defined]
        # TensorRT-RTX says whether enqueue can be captured on a stream (not with runtime allocations or
        # data-dependent shapes): IExecutionContext::isStreamCapturable.
        if be.name == "tensorrt_rtx" and not cast(RtxExecutionContext, ctx).is_stream_capturable(
                stream_handle(builder.stream)):
            _log.info("%s says this context cannot be stream-captured; running without graphs", be.label)
            return None
        ok = False
        cap: LogCapture
        with be.capture() as cap:
            try:
                builder.begin_building("thread_local")
                ok = bool(ctx.execute_async_v3(stream_handle(builder.stream)))
            except Exception as exc:
                _log.debug("graph capture failed: %s", exc)
            finally:
                try:
                    builder.end_building()
                except Exception as exc:
                    _log.debug("ending graph capture failed: %s", exc)
                    ok = False
        if not ok:
            _log.info("CUDA graph capture not possible; running without graphs (%s)", "; ".join(cap.lines))
            return None
        try:
            graph: _Graph = builder.complete()
        except Exception as exc:
            _log.info("CUDA graph could not be instantiated (%s); running without graphs", exc)
            return None
        return graph
