"""Pools, pinned memory, stream ordering and TensorRT's allocator on a real GPU."""

from __future__ import annotations

import numpy as np
import pytest
from support import trt_double

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def pools():
    from trtkit.runtime import memory

    dev = memory.device(0)
    return memory.DevicePool(0), memory.PinnedPool(0), memory.new_stream(dev)


def test_pool_stats_reuse_and_release(pools) -> None:
    pool, _, s = pools
    base = pool.stats()
    bufs = [pool.allocate(1 << 20, s) for _ in range(4)]
    mid = pool.stats()
    assert mid.in_use >= base.in_use + (4 << 20) and mid.high_water >= mid.in_use
    for b in bufs:
        b.close(s)
    s.sync()
    freed = pool.stats()
    assert freed.in_use == base.in_use and freed.reserved >= 4 << 20  # cached, not returned
    again = pool.allocate(1 << 20, s)
    assert pool.stats().reserved == freed.reserved  # served from the cache
    again.close(s)
    pool.release()
    assert pool.stats().reserved < freed.reserved


def test_stream_ordered_free_then_reuse_keeps_data_order(pools) -> None:
    from trtkit.runtime import memory

    pool, pinned, s = pools
    host = pinned.empty((1 << 18,), np.float32, s)
    host[...] = 7.0
    a = pool.allocate(host.nbytes, s)
    memory.copy_async(int(a.handle), host.ctypes.data, host.nbytes, memory.stream_handle(s))
    back = pinned.empty((1 << 18,), np.float32, s)
    memory.copy_async(back.ctypes.data, int(a.handle), host.nbytes, memory.stream_handle(s))
    a.close(s)  # freed in stream order: after the copy back
    s.sync()
    assert np.all(back == 7.0)


def test_pinned_pool_kind(pools) -> None:
    _, pinned, _ = pools
    assert pinned.kind in ("PinnedMemoryResource", "LegacyPinnedMemoryResource")


@pytest.mark.parametrize(("flavor", "version"), [("tensorrt", "10.16.1.11"), ("tensorrt", "11.4.0.106"),
                                                 ("tensorrt_rtx", None)])
def test_gpu_async_allocator_both_argument_orders(pools, flavor: str, version: str | None) -> None:
    from trtkit.backend import Backend
    from trtkit.runtime import memory

    pool, _, s = pools
    mod = trt_double.make_module(flavor, version=version)
    be = Backend.from_module(flavor, mod)  # type: ignore[arg-type]
    alloc = memory.make_gpu_allocator(mod, pool, s, stream_index=be.features.gpu_allocator_stream_index)
    rt = mod.Runtime(None)
    rt.gpu_allocator = alloc
    s.sync()
    before = pool.stats().in_use
    addr = rt._alloc(4096)
    assert addr and addr % 256 == 0 and pool.stats().in_use >= before + 4096
    rt._free(addr)
    s.sync()
    assert pool.stats().in_use == before


def test_device_array_exports_dlpack_to_torch_and_cupy(pools) -> None:
    from trtkit.runtime import memory

    pool, pinned, s = pools
    host = pinned.empty((4, 3), np.float32, s)
    host[...] = np.arange(12).reshape(4, 3)
    buf = pool.allocate(host.nbytes, s)
    memory.copy_async(int(buf.handle), host.ctypes.data, host.nbytes, memory.stream_handle(s))
    arr = memory.DeviceArray(buf, (4, 3), np.dtype(np.float32), s)
    np.testing.assert_array_equal(arr.numpy(), host)
    torch = pytest.importorskip("torch")
    t = torch.from_dlpack(arr)
    assert t.shape == (4, 3) and t.dtype == torch.float32 and t.cpu().numpy().tolist() == host.tolist()
    cp = pytest.importorskip("cupy")
    c = cp.asarray(arr)
    assert c.shape == (4, 3) and float(c.sum()) == float(host.sum())
