"""Device memory for the runtime: streams and copies, pools, arrays and the TensorRT allocator adapters."""

from trtkit.runtime.memory.allocators import make_gpu_allocator, make_output_allocator
from trtkit.runtime.memory.arrays import ArrayView, DeviceArray, host_array, view_device_array
from trtkit.runtime.memory.pools import DevicePool, PinnedPool, PoolStats
from trtkit.runtime.memory.streams import (
    PARALLEL_COPY_MIN,
    StreamLike,
    copy_async,
    device,
    host_copy,
    new_stream,
    stream_handle,
    to_stream,
)

__all__ = [
    "PARALLEL_COPY_MIN",
    "ArrayView",
    "DeviceArray",
    "DevicePool",
    "PinnedPool",
    "PoolStats",
    "StreamLike",
    "copy_async",
    "device",
    "host_array",
    "host_copy",
    "make_gpu_allocator",
    "make_output_allocator",
    "new_stream",
    "stream_handle",
    "to_stream",
    "view_device_array",
]
