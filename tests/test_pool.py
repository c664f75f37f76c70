"""EnginePool scheduling, without a GPU: engines and contexts stand in for loaded ones (the real ones run in
tests/test_pool_gpu.py on the GPU machine)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

import trtkit.pool as pool_module
from trtkit.errors import ClosedError, ConfigError
from trtkit.pool import EnginePool
from trtkit.runtime.tensors import ArrayInfo


class FakeContext:
    """Records the device of each call; a call blocks while its engine's gate is closed."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.inputs = (SimpleNamespace(name="x"),)
        self.stream = SimpleNamespace(sync=lambda: None)
        self.closed = False

    def infer(self, named, *, outputs=None, stream=None, family=None):
        self.engine.running += 1
        self.engine.log.append(self.engine.device)
        try:
            assert self.engine.gate.wait(5), "gate never opened"
            return {"y": named["x"] * 2 + 1}
        finally:
            self.engine.running -= 1

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(self, device: int, log: list[int]) -> None:
        self.device = device
        self.log = log
        self.gate = threading.Event()
        self.gate.set()
        self.running = 0
        self.closed = False
        self.contexts: list[FakeContext] = []
        self.runtime = SimpleNamespace(ensure_current=lambda: None)

    def create_context(self) -> FakeContext:
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx

    def close(self) -> None:
        self.closed = True


def make(devices=(0, 1), k=1):
    log: list[int] = []
    engines = [FakeEngine(d, log) for d in devices]
    return EnginePool(engines, contexts_per_device=k), engines, log  # type: ignore[arg-type]


def wait_for(cond, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_results_are_the_context_results() -> None:
    pool, _, _ = make()
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(pool(x)["y"], x * 2 + 1)
    np.testing.assert_array_equal(pool(x=x)["y"], x * 2 + 1)
    np.testing.assert_array_equal(pool.submit({"x": x}).result(5)["y"], x * 2 + 1)


def test_calls_go_to_the_least_loaded_device() -> None:
    pool, engines, log = make(devices=(0, 1), k=2)
    engines[0].gate.clear()
    engines[1].gate.clear()
    x = np.ones(4, np.float32)
    futures = [pool.submit(x) for _ in range(4)]
    wait_for(lambda: len(log) == 4)
    assert sorted(log) == [0, 0, 1, 1]  # two on each: never three on one while the other has a free context
    engines[0].gate.set()
    engines[1].gate.set()
    for f in futures:
        f.result(5)
    assert pool.stats[0].calls == 2 and pool.stats[1].calls == 2
    assert pool.stats[0].running == pool.stats[1].running == 0


def test_a_call_waits_for_a_free_context() -> None:
    pool, engines, log = make(devices=(0,), k=1)
    engines[0].gate.clear()
    first = pool.submit(np.ones(4, np.float32))
    wait_for(lambda: engines[0].running == 1)
    second = pool.submit(np.ones(4, np.float32))
    time.sleep(0.05)
    assert engines[0].running == 1 and not second.done()  # one context: one call at a time
    engines[0].gate.set()
    first.result(5)
    second.result(5)
    assert log == [0, 0]


def test_inputs_on_a_gpu_run_on_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    class OnGpu:  # a CUDA array on device 1, as describe_array reports it
        def __init__(self, value):
            self.value = value

        def __mul__(self, k):
            return self.value * k

    def describe(obj, stream=None, *, ordered=False):
        return ArrayInfo("device", (4,), "float32", True, 1, 0x1000, False, obj)

    monkeypatch.setattr(pool_module, "describe_array", describe)
    pool, engines, log = make(devices=(0, 1), k=1)
    engines[1].gate.clear()
    busy = pool.submit(OnGpu(np.ones(4)))
    wait_for(lambda: engines[1].running == 1)
    waiting = pool.submit(OnGpu(np.ones(4)))  # device 0 is free, but the input lives on device 1
    time.sleep(0.05)
    assert log == [1] and not waiting.done()
    engines[1].gate.set()
    busy.result(5)
    waiting.result(5)
    assert log == [1, 1]
    unknown = make(devices=(0,), k=1)[0]
    with pytest.raises(ConfigError, match="device 1, which this pool does not use"):
        unknown(OnGpu(np.ones(4)))


def test_ainfer_in_asyncio() -> None:
    pool, _, _ = make()

    async def main():
        xs = [np.full(4, i, np.float32) for i in range(6)]
        return await asyncio.gather(*(pool.ainfer(x) for x in xs)), xs

    outs, xs = asyncio.run(main())
    for out, x in zip(outs, xs, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2 + 1)


def test_close_waits_for_running_calls_then_refuses_new_ones() -> None:
    pool, engines, _ = make(devices=(0,), k=1)
    engines[0].gate.clear()
    running = pool.submit(np.ones(4, np.float32))
    wait_for(lambda: engines[0].running == 1)
    closer = threading.Thread(target=pool.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # still waiting for the running call
    engines[0].gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert running.result(5)["y"].shape == (4,)
    assert all(c.closed for c in engines[0].contexts) and engines[0].closed
    with pytest.raises(ClosedError):
        pool(np.ones(4, np.float32))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"contexts_per_device": 0}, "contexts_per_device"),
    ({"contexts_per_device": True}, "contexts_per_device"),
])
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        EnginePool([FakeEngine(0, [])], **kwargs)  # type: ignore[list-item]


def test_one_engine_per_device() -> None:
    with pytest.raises(ConfigError, match="one engine per device"):
        EnginePool([FakeEngine(0, []), FakeEngine(0, [])])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="at least one engine"):
        EnginePool([])


@pytest.mark.parametrize("devices", [[], [0, 0], [-1], ["0"], [True]])
def test_device_lists_are_checked(devices, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rt = SimpleNamespace(cudaGetDeviceCount=lambda: (0, 2))
    monkeypatch.setattr(pool_module, "cudart", lambda: fake_rt)
    with pytest.raises(ConfigError, match="distinct CUDA device indices"):
        pool_module.resolve_devices(devices)


def test_a_missing_device_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rt = SimpleNamespace(cudaGetDeviceCount=lambda: (0, 2))
    monkeypatch.setattr(pool_module, "cudart", lambda: fake_rt)
    assert pool_module.resolve_devices("all") == [0, 1]
    assert pool_module.resolve_devices(1) == [1]
    with pytest.raises(ConfigError, match="no CUDA device 3: this host has 2"):
        pool_module.resolve_devices([0, 3])
