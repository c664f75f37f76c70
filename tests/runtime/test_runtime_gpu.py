"""Runtime on a real GPU, with the TensorRT runtime test double doing the engine's work on device memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.errors import InputError

pytestmark = pytest.mark.gpu

AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (1 << 16, 4))}, {"x": ((1, 4), (2, 4), (4, 4))}])
NONZERO = trt_double.make_plan(op="nonzero", inputs=[("x", "FLOAT", (-1, 3))], outputs=[("idx", "INT64", (2, -1))],
                               profiles=[{"x": ((1, 3), (4, 3), (64, 3))}])
ADD = trt_double.make_plan(op="add", inputs=[("a", "FLOAT", (-1, 4)), ("b", "FLOAT", (-1, 4))],
                           outputs=[("s", "FLOAT", (-1, 4))],
                           profiles=[{"a": ((1, 4), (8, 4), (64, 4)), "b": ((1, 4), (8, 4), (64, 4))}])


@pytest.fixture(scope="module")
def mod():
    return trt_double.make_module()


@pytest.fixture(scope="module")
def be(mod):
    return Backend.from_module("tensorrt", mod)


@pytest.fixture(scope="module")
def eng(be):
    from trtkit.runtime import load_engine

    with load_engine(AFFINE, backend=be) as le:
        yield le


def test_numpy_round_trip_and_profile_switch(eng) -> None:
    for n in (3, 4, 7, 1000, 2):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        y = eng.infer({"x": x})["y"]
        assert isinstance(y, np.ndarray) and y.shape == (n, 4)
        np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)


def test_two_inputs_by_sequence(be) -> None:
    from trtkit.runtime import load_engine

    with load_engine(ADD, backend=be) as le:
        a, b = np.ones((5, 4), np.float32), np.arange(20, dtype=np.float32).reshape(5, 4)
        np.testing.assert_array_equal(le.infer([a, b])["s"], a + b)


def test_pinned_inputs_and_caller_outputs(eng) -> None:
    x = eng.empty_pinned("x", shape=(16, 4))
    x[...] = np.arange(64, dtype=np.float32).reshape(16, 4)
    out = eng.empty_pinned("y", shape=(16, 4))
    res = eng.infer({"x": x}, outputs={"y": out})
    assert res["y"] is out
    np.testing.assert_array_equal(out, x * 2 + 1)


def test_torch_zero_copy_on_caller_stream(eng) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.engine import Engine

    e = Engine(eng)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x = torch.randn(32, 4, device="cuda")
        y = e(x)["y"]
        assert isinstance(y, torch.Tensor) and y.device == x.device and y.shape == (32, 4)
        torch.testing.assert_close(y, x * 2 + 1)
    s.synchronize()


def test_cupy_round_trip(eng) -> None:
    cp = pytest.importorskip("cupy")
    from trtkit.engine import Engine

    x = cp.arange(40, dtype=cp.float32).reshape(10, 4)
    y = Engine(eng)({"x": x})["y"]
    assert isinstance(y, cp.ndarray)
    cp.testing.assert_allclose(y, x * 2 + 1)


def test_cuda_array_output_buffer_provided(eng) -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(8, 4, device="cuda")
    out = torch.empty(8, 4, device="cuda")
    ctx = eng.create_context(stream=torch.cuda.current_stream().cuda_stream)
    ctx.infer({"x": x}, outputs={"y": out})
    torch.cuda.current_stream().synchronize()
    assert torch.all(out == 3)
    ctx.close()


def test_bad_inputs_launch_nothing_and_leak_nothing(eng, mod) -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(8, 4, device="cuda")
    eng.infer({"x": x})
    torch.cuda.synchronize()
    before, runs = eng.pool.stats().in_use, mod._state.executions
    bad = [
        {"x": torch.ones(8, 8, device="cuda")[:, ::2]},      # non-contiguous
        {"x": torch.ones(8, 4, device="cuda", dtype=torch.float16)},
        {"x": torch.ones(8, 4, 1, device="cuda")},
        {"x": torch.ones(1 << 17, 4, device="cuda")},       # outside every profile
        {"xx": x},
        {"x": np.ones((4, 4), np.float64)},
    ]
    for inputs in bad:
        with pytest.raises(InputError):
            eng.infer(inputs)
    # a wrong output buffer is refused too, and nothing runs
    with pytest.raises(InputError, match="output buffer"):
        eng.infer({"x": np.ones((8, 4), np.float32)}, outputs={"y": np.empty((8, 5), np.float32)})
    torch.cuda.synchronize()
    assert mod._state.executions == runs
    assert eng.pool.stats().in_use == before


def test_async_handle(eng) -> None:
    ctx = eng.create_context()
    x = np.full((6, 4), 2.0, np.float32)
    h1 = ctx.infer_async({"x": x})
    h2 = ctx.infer_async({"x": x + 1})
    np.testing.assert_array_equal(h1.wait()["y"], 5.0)
    np.testing.assert_array_equal(h2.wait()["y"], 7.0)
    ctx.close()


def test_many_threads(eng) -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(50):
                n = int(rng.integers(1, 64))
                x = rng.standard_normal((n, 4)).astype(np.float32)
                np.testing.assert_allclose(eng.infer({"x": x})["y"], x * 2 + 1, rtol=1e-6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_cuda_graph_capture_replay_and_shape_change(eng) -> None:
    ctx = eng.create_context(cuda_graph=True)
    x = eng.empty_pinned("x", shape=(8, 4))
    for i in range(5):
        x[...] = i
        np.testing.assert_array_equal(ctx.infer({"x": x})["y"], 2 * i + 1)
    assert ctx.graph_stats["captured"] == 1 and ctx.graph_stats["replayed"] == 3
    z = np.full((3, 4), 5.0, np.float32)  # other shape: must not replay the 8x4 graph
    for _ in range(3):
        np.testing.assert_array_equal(ctx.infer({"x": z})["y"], 11.0)
    assert ctx.graph_stats["captured"] == 2
    ctx.close()


def test_graph_falls_back_for_data_dependent_shapes(be) -> None:
    from trtkit.runtime import load_engine

    with load_engine(NONZERO, backend=be) as le:
        ctx = le.create_context(cuda_graph=True)
        x = np.array([[0, 1, 0], [2, 0, 3]], np.float32)
        for _ in range(3):
            idx = ctx.infer({"x": x})["idx"]
            np.testing.assert_array_equal(idx, np.stack(np.nonzero(x)))
        assert ctx.graph_stats["captured"] == 0
        ctx.close()


def test_output_allocator_with_device_inputs(be) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.engine import Engine
    from trtkit.runtime import load_engine

    with load_engine(NONZERO, backend=be) as le:
        x = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0], [0, 0, 0]], device="cuda")
        idx = Engine(le)(x)["idx"]
        assert idx.shape == (2, 3)
        assert idx.cpu().tolist() == torch.stack(torch.nonzero(x, as_tuple=True)).cpu().tolist()


def test_leak_10000_calls_back_to_baseline(eng) -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(16, 4, device="cuda")
    xn = np.ones((16, 4), np.float32)
    for _ in range(10):
        eng.infer({"x": x})
        eng.infer({"x": xn})
    torch.cuda.synchronize()
    base = eng.pool.stats()
    for _ in range(10_000):
        y = eng.infer({"x": x})["y"]
        del y
    for _ in range(2_000):
        eng.infer({"x": xn})
    torch.cuda.synchronize()
    after = eng.pool.stats()
    report = f"pool stats before={base.to_dict()} after 10000 device + 2000 numpy calls={after.to_dict()}"
    print(report)
    if os.environ.get("TRTKIT_STATS_OUT"):
        Path(os.environ["TRTKIT_STATS_OUT"]).write_text(report + "\n")
    assert after.in_use == base.in_use
    assert after.reserved == base.reserved


def test_cli_run_and_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str], trt_double_backend: Backend) -> None:
    from trtkit.cli.main import main

    eng_path = tmp_path / "affine.engine"
    eng_path.write_bytes(AFFINE)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["run", str(eng_path), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out)["y"], x * 2 + 1)
    capsys.readouterr()
    js = tmp_path / "bench.json"
    assert main(["bench", str(eng_path), "--shapes", "x:8x4", "--shapes", "x:64x4", "--iterations", "300",
                 "--json-file", str(js)]) == 0
    text = capsys.readouterr().out
    assert "Throughput:" in text and "GPU Compute Time:" in text and "percentile(99%)" in text
    import json

    data = json.loads(js.read_text())
    assert data["kind"] == "bench" and data["engine"] == str(eng_path)
    assert [d["shapes"]["x"] for d in data["results"]] == [[8, 4], [64, 4]]
    assert all(d["iterations"] == 300 and d["gpu_compute_ms"]["median"] > 0 for d in data["results"])
    # --json prints the same one object instead of the text report, like inspect --json / compare --json
    assert main(["bench", str(eng_path), "--shapes", "x:8x4", "--iterations", "50", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kind"] == "bench" and [d["shapes"]["x"] for d in printed["results"]] == [[8, 4]]


def test_cli_inspect_layers_and_engine_layers(be, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              trt_double_backend: Backend) -> None:
    """`trtkit inspect --layers` loads the engine and prints TensorRT's engine-inspector layers; dynamic dims
    are resolved through an execution context at the opt shapes, so precisions are known."""
    import json

    from trtkit.cli.main import main
    from trtkit.engine import Engine
    from trtkit.runtime import load_engine

    detailed = tmp_path / "detailed.engine"
    detailed.write_bytes(trt_double.make_plan(profiling_verbosity="DETAILED"))
    assert main(["inspect", str(detailed), "--layers"]) == 0
    text = capsys.readouterr().out
    assert "input  x" in text and "output y" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("0 ")]
    assert rows == [["0", "PointWise", "float32", "0x0000000000000000", "affine"]]

    assert main(["inspect", str(detailed), "--layers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verbosity"] == "detailed" and data["io_tensors"] == ["x", "y"]
    (layer,) = data["layers"]
    assert layer["type"] == "PointWise" and layer["precision"] == "float32"
    assert layer["outputs"][0]["dims"] == [8, 4]  # profile 0's opt shape, not -1

    names_only = tmp_path / "names.engine"
    names_only.write_bytes(AFFINE)  # built with TensorRT's default LAYER_NAMES_ONLY
    assert main(["inspect", str(names_only), "--layers"]) == 0
    text = capsys.readouterr().out
    assert "affine" in text and "--profilingVerbosity detailed" in text

    with load_engine(detailed.read_bytes(), backend=be) as le:
        layers = Engine(le).layers(shapes={"x": (3, 4)})
        assert layers.detailed and [x.name for x in layers] == ["affine"]
        assert layers[0].outputs[0].dims == (3, 4) and layers[0].precision == "float32"


def test_dlpack_handshake_orders_a_producer_on_another_stream(eng) -> None:
    """Context.infer on its own stream must wait for work the producer queued on another stream."""
    torch = pytest.importorskip("torch")
    producer = torch.cuda.Stream()
    x = torch.zeros(64, 4, device="cuda")
    torch.cuda.synchronize()
    ctx = eng.create_context()  # its own stream, not the producer's
    with torch.cuda.stream(producer):
        torch.cuda._sleep(50_000_000)  # keep the producer busy so a missing wait would read the zeros
        x.fill_(5.0)
        y = ctx.infer({"x": x})["y"]  # torch's DLPack export orders its current stream before ctx's
    ctx.stream.sync()
    assert torch.from_dlpack(y).eq(11.0).all().item()
    ctx.close()


def test_facade_torch_outputs_come_from_torch_not_the_pool(eng) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.engine import Engine

    e = Engine(eng)
    x = torch.randn(16, 4, device="cuda")
    e(x)
    before = eng.pool.stats().allocations
    for _ in range(100):
        y = e(x)["y"]
    torch.cuda.synchronize()
    assert eng.pool.stats().allocations == before
    torch.testing.assert_close(y, x * 2 + 1)


LARGE = trt_double.make_plan(profiles=[{"x": ((1, 4), (1 << 21, 4), (1 << 21, 4))}])


def test_large_pageable_arrays_take_the_parallel_path(be) -> None:
    from trtkit.runtime import load_engine, memory

    n = 1 << 21  # 32 MiB each way: above memory.PARALLEL_COPY_MIN
    assert n * 16 >= memory.PARALLEL_COPY_MIN
    with load_engine(LARGE, backend=be) as le:
        x = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
        out = np.full((n, 4), np.nan, np.float32)  # pageable, caller-provided
        res = le.infer({"x": x}, outputs={"y": out})
        assert res["y"] is out
        np.testing.assert_allclose(out, x * 2 + 1, rtol=1e-6)
        default = le.infer({"x": x})["y"]  # trtkit's pinned output
        np.testing.assert_allclose(default, x * 2 + 1, rtol=1e-6)


def test_cupy_producer_on_another_stream_is_ordered_through_dlpack(eng) -> None:
    """CuPy arrays take the DLPack path: CuPy's export orders its current stream before the context's."""
    cp = pytest.importorskip("cupy")
    x = cp.zeros((64, 4), dtype=cp.float32)
    cp.cuda.Device().synchronize()
    ctx = eng.create_context()
    producer = cp.cuda.Stream(non_blocking=True)
    with producer:
        a = cp.random.rand(2048, 2048)
        for _ in range(30):  # tens of milliseconds of work queued ahead of the fill
            a = (a @ a) * 1e-3
        x[...] = 5.0
        y = ctx.infer({"x": x})["y"]
    ctx.stream.sync()
    assert bool(cp.all(cp.from_dlpack(y) == 11.0))
    ctx.close()
