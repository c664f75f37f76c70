"""The lean NumPy path (trtkit.runtime.host_path) on a real GPU, with the runtime double doing the engine's work.

A repeated NumPy call with the same names, dtypes and shapes must skip the TensorRT calls that would only repeat
state (set_input_shape, set_tensor_address, infer_shapes) and still check every input before anything reaches
the GPU; its results must be the caller's own arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.errors import InputError, ShapeError
from trtkit.runtime import Context, LoadedEngine, load_engine

pytestmark = pytest.mark.gpu

AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (1 << 16, 4))}])
ADD = trt_double.make_plan(op="add", inputs=[("a", "FLOAT", (-1, 4)), ("b", "FLOAT", (-1, 4))],
                           outputs=[("s", "FLOAT", (-1, 4))],
                           profiles=[{"a": ((1, 4), (8, 4), (64, 4)), "b": ((1, 4), (8, 4), (64, 4))}])
COUNTED = ("set_input_shape", "set_tensor_address", "infer_shapes", "execute_async_v3")


@pytest.fixture(scope="module")
def le() -> Iterator[LoadedEngine]:
    be = Backend.from_module("tensorrt", trt_double.make_module())
    with load_engine(AFFINE, backend=be) as engine:
        yield engine


def counted(ctx: Context) -> Counter[str]:
    """Count the TensorRT calls made on ``ctx``'s execution context from now on."""
    calls: Counter[str] = Counter()
    trt_ctx = ctx.trt_context
    for name in COUNTED:
        method = getattr(trt_ctx, name)

        def wrapper(*args: object, _m=method, _n=name) -> object:
            calls[_n] += 1
            return _m(*args)
        setattr(trt_ctx, name, wrapper)
    return calls


def x_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_a_repeated_call_makes_only_the_launch(le: LoadedEngine) -> None:
    with le.create_context() as ctx:
        ctx.infer(x_of(8))  # full path: binds and makes the plan
        calls = counted(ctx)
        allocations = le.pool.stats().allocations
        for seed in range(5):
            x = x_of(8, seed)
            y = ctx.infer(x)["y"]
            np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)
        assert calls == Counter({"execute_async_v3": 5})
        assert le.pool.stats().allocations == allocations  # no device allocation per call


def test_results_are_new_arrays_each_call(le: LoadedEngine) -> None:
    with le.create_context() as ctx:
        first = ctx.infer(x_of(8, 1))["y"]
        kept = first.copy()
        second = ctx.infer(x_of(8, 2))["y"]
        third = ctx.infer(x_of(8, 3))["y"]
        assert second is not third and not np.shares_memory(second, third)
        np.testing.assert_array_equal(first, kept)  # later calls did not write into it
        second[...] = 0  # the caller owns it: writing to it changes nothing for the next call
        np.testing.assert_allclose(ctx.infer(x_of(8, 2))["y"], x_of(8, 2) * 2 + 1, rtol=1e-6)


def test_a_new_shape_takes_the_full_path_and_is_correct(le: LoadedEngine) -> None:
    with le.create_context() as ctx:
        ctx.infer(x_of(8))
        calls = counted(ctx)
        for n in (3, 3, 8, 1000, 1000):
            x = x_of(n, n)
            np.testing.assert_allclose(ctx.infer(x)["y"], x * 2 + 1, rtol=1e-6)
        assert calls["set_input_shape"] == 3  # 8 -> 3, 3 -> 8, 8 -> 1000; the repeats set nothing
        assert calls["execute_async_v3"] == 5


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: x_of(8).astype(np.float64), id="dtype"),
    pytest.param(lambda: np.asfortranarray(np.ones((8, 4), np.float32)), id="not-contiguous"),
    pytest.param(lambda: np.ones((8, 5), np.float32), id="fixed-dim"),
    pytest.param(lambda: x_of(1 << 17), id="beyond-the-profile"),
    pytest.param(lambda: {"x": x_of(8), "z": x_of(8)}, id="unknown-name"),
    pytest.param(lambda: x_of(8).astype(">f4"), id="byte-order"),
])
def test_bad_input_after_a_good_one_is_refused_before_the_gpu(le: LoadedEngine, bad) -> None:
    with le.create_context() as ctx:
        ctx.infer(x_of(8))
        calls = counted(ctx)
        with pytest.raises((InputError, ShapeError)):
            ctx.infer(bad())
        assert calls["execute_async_v3"] == 0
        np.testing.assert_allclose(ctx.infer(x_of(8, 4))["y"], x_of(8, 4) * 2 + 1, rtol=1e-6)


def test_pinned_and_view_inputs_after_the_plan(le: LoadedEngine) -> None:
    with le.create_context() as ctx:
        ctx.infer(x_of(8))
        pinned = le.empty_pinned("x", shape=(8, 4))
        pinned[...] = x_of(8, 5)
        np.testing.assert_allclose(ctx.infer(pinned)["y"], pinned * 2 + 1, rtol=1e-6)
        batch = x_of(16, 6)
        view = batch[8:]  # a contiguous view of another array
        np.testing.assert_allclose(ctx.infer(view)["y"], view * 2 + 1, rtol=1e-6)


def test_two_inputs_by_name_and_in_order() -> None:
    be = Backend.from_module("tensorrt", trt_double.make_module())
    with load_engine(ADD, backend=be) as le2, le2.create_context() as ctx:
        a, b = np.ones((5, 4), np.float32), np.arange(20, dtype=np.float32).reshape(5, 4)
        ctx.infer({"a": a, "b": b})
        calls = counted(ctx)
        np.testing.assert_array_equal(ctx.infer({"b": b, "a": a})["s"], a + b)  # dict order does not matter
        np.testing.assert_array_equal(ctx.infer([a, b])["s"], a + b)  # a sequence takes the full path
        with pytest.raises(InputError, match="missing input"):
            ctx.infer({"a": a})
        assert calls["execute_async_v3"] == 2 and calls["set_tensor_address"] == 0


def test_an_async_call_in_flight_is_waited_for(le: LoadedEngine) -> None:
    with le.create_context() as ctx:
        ctx.infer(x_of(8))
        handle = ctx.infer_async(x_of(8, 7))
        y = ctx.infer(x_of(8, 8))["y"]  # reuses the staging buffers the async call may still read
        np.testing.assert_allclose(handle.wait()["y"], x_of(8, 7) * 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(y, x_of(8, 8) * 2 + 1, rtol=1e-6)


def test_the_facade_takes_the_lean_path(le: LoadedEngine) -> None:
    from trtkit.engine import Engine

    eng = Engine(le)
    eng(x_of(8))
    ctx = le._primary
    assert ctx is not None
    calls = counted(ctx)
    np.testing.assert_allclose(eng(x_of(8, 9))["y"], x_of(8, 9) * 2 + 1, rtol=1e-6)
    assert calls == Counter({"execute_async_v3": 1})


# ---- the PyTorch path (trtkit.runtime.device_path) --------------------------------------------------------------


def test_a_repeated_torch_call_with_the_same_tensors_makes_only_the_launch(le: LoadedEngine) -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(8, 4, device="cuda")
    y = torch.empty(8, 4, device="cuda")
    with le.create_context() as ctx:
        ctx.infer(x, outputs={"y": y})
        calls = counted(ctx)
        for _ in range(3):
            x.normal_()  # new values on PyTorch's stream: the context's stream must wait for them
            out = ctx.infer(x, outputs={"y": y})
            assert out["y"] is y
            ctx.stream.sync()
            torch.testing.assert_close(y, x * 2 + 1)
        assert calls == Counter({"execute_async_v3": 3})


def test_a_torch_call_that_changed_takes_the_full_path(le: LoadedEngine) -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(8, 4, device="cuda")
    y = torch.empty(8, 4, device="cuda")
    with le.create_context() as ctx:
        ctx.infer(x, outputs={"y": y})
        calls = counted(ctx)
        x2 = torch.randn(8, 4, device="cuda")  # another address: rebinds
        ctx.infer({"x": x2}, outputs={"y": y})
        ctx.stream.sync()
        torch.testing.assert_close(y, x2 * 2 + 1)
        assert calls["set_tensor_address"] == 1
        with pytest.raises(InputError):  # same address, another dtype: refused before the launch
            ctx.infer(x.view(torch.int32), outputs={"y": y})
        with pytest.raises(InputError):
            ctx.infer(x, outputs={"y": y.view(torch.int32)})
        with pytest.raises(InputError):  # same address and shape, not contiguous
            ctx.infer(x.t().contiguous().t(), outputs={"y": y})
        assert calls["execute_async_v3"] == 1


def test_the_facade_with_given_outputs_takes_the_lean_path(le: LoadedEngine) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.engine import Engine

    eng = Engine(le)
    x = torch.randn(8, 4, device="cuda")
    y = torch.empty(8, 4, device="cuda")
    eng.infer(x, outputs={"y": y})
    ctx = le._primary
    assert ctx is not None
    calls = counted(ctx)
    for _ in range(3):
        x.normal_()
        eng.infer(x, outputs={"y": y})
        torch.testing.assert_close(y, x * 2 + 1)  # on PyTorch's current stream: ordered, no sync needed
    assert calls == Counter({"execute_async_v3": 3})
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # another current stream: the call moves there (full path), still right
        x.normal_()
        eng.infer(x, outputs={"y": y})
        torch.testing.assert_close(y, x * 2 + 1)


def test_infer_async_repeats_keep_inputs_alive_and_order(le: LoadedEngine) -> None:
    torch = pytest.importorskip("torch")
    with le.create_context() as ctx:
        y = torch.empty(8, 4, device="cuda")
        x = torch.randn(8, 4, device="cuda")
        ctx.infer_async(x, outputs={"y": y}).wait()
        handles = []
        for i in range(6):
            x.fill_(float(i))
            handles.append(ctx.infer_async(x, outputs={"y": y}))
            handles[-1].wait()
            torch.testing.assert_close(y, torch.full_like(y, 2.0 * i + 1))


def test_a_closed_context_refuses_repeated_calls(le: LoadedEngine) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.errors import ClosedError

    x_np = x_of(8)
    x = torch.randn(8, 4, device="cuda")
    y = torch.empty(8, 4, device="cuda")
    ctx = le.create_context()
    ctx.infer(x_np)
    ctx.infer(x, outputs={"y": y})  # both lean plans exist now
    ctx.close()
    with pytest.raises(ClosedError):
        ctx.infer(x_np)
    with pytest.raises(ClosedError):
        ctx.infer(x, outputs={"y": y})
    with pytest.raises(ClosedError):
        ctx.infer_async(x, outputs={"y": y})
