"""EnginePool on real GPUs, with the runtime double doing the engine's work on each device's memory.

The two-GPU tests need a host with two GPUs (the device tool's nvidia-h200-x2) and skip elsewhere, saying so.
Throughput scaling is measured by benchmarks/peers.py (section 3), not asserted here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.pool import EnginePool
from trtkit.runtime import load_engine

pytestmark = pytest.mark.gpu

AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}])


def gpu_count() -> int:
    from cuda.bindings import runtime as rt

    err, n = rt.cudaGetDeviceCount()
    return int(n) if int(err) == 0 else 0


def make_pool(devices: list[int], k: int = 2) -> EnginePool:
    be = Backend.from_module("tensorrt", trt_double.make_module())
    return EnginePool([Engine(load_engine(AFFINE, backend=be, device=d)) for d in devices], contexts_per_device=k)


@pytest.fixture(scope="module")
def two() -> Iterator[EnginePool]:
    n = gpu_count()
    if n < 2:
        pytest.skip(f"needs two CUDA GPUs; this host has {n}")
    with make_pool([0, 1]) as pool:
        yield pool


def x_of(seed: int, n: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_numpy_calls_from_many_threads_use_both_gpus(two: EnginePool) -> None:
    before = {d: two.stats[d].calls for d in two.devices}
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        try:
            for i in range(50):
                x = x_of(seed * 100 + i, 1 + (i % 8))
                np.testing.assert_allclose(two(x)["y"], x * 2 + 1, rtol=1e-6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    done = {d: two.stats[d].calls - before[d] for d in two.devices}
    assert sum(done.values()) == 400
    assert all(v > 0 for v in done.values()), done


def test_torch_inputs_stay_on_their_gpu_and_come_back_as_torch(two: EnginePool) -> None:
    torch = pytest.importorskip("torch")
    for dev in (1, 0, 1):
        before = two.stats[dev].calls
        x = torch.from_numpy(x_of(dev)).to(f"cuda:{dev}")
        y = two(x)["y"]
        assert isinstance(y, torch.Tensor) and y.device == x.device
        np.testing.assert_allclose(y.cpu().numpy(), x_of(dev) * 2 + 1, rtol=1e-6)
        assert two.stats[dev].calls == before + 1


def test_submit_and_ainfer_on_two_gpus(two: EnginePool) -> None:
    import asyncio

    futures = [two.submit(x_of(i)) for i in range(32)]
    for i, f in enumerate(futures):
        np.testing.assert_allclose(f.result(30)["y"], x_of(i) * 2 + 1, rtol=1e-6)

    async def main() -> list[dict[str, object]]:
        return await asyncio.gather(*(two.ainfer(x_of(i)) for i in range(16)))

    for i, out in enumerate(asyncio.run(main())):
        np.testing.assert_allclose(out["y"], x_of(i) * 2 + 1, rtol=1e-6)


def test_a_pool_on_one_gpu() -> None:
    torch = pytest.importorskip("torch")
    with make_pool([0], k=3) as pool:
        np.testing.assert_allclose(pool(x_of(1))["y"], x_of(1) * 2 + 1, rtol=1e-6)
        x = torch.from_numpy(x_of(2)).cuda()
        np.testing.assert_allclose(pool({"x": x})["y"].cpu().numpy(), x_of(2) * 2 + 1, rtol=1e-6)
        assert pool.stats[0].calls == 2
