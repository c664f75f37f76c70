"""What real TensorRT requires of a runtime, on a real GPU, against the strict TensorRT test double.

Each test names the rule it checks; tests/support/trt_double.py cites the TensorRT documentation for each behaviour.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.errors import (
    EngineFileError,
    EngineIncompatibleError,
    ExecutionError,
    InputError,
    UnsupportedFeatureError,
)
from trtkit.runtime import load_engine

pytestmark = pytest.mark.gpu

RESHAPE = trt_double.make_plan(
    op="reshape", inputs=[("x", "FLOAT", (-1,)), ("shape", "INT64", (2,))], outputs=[("y", "FLOAT", (-1, -1))],
    shape_tensors=["shape"], profiles=[{"x": ((1,), (12,), (64,)), "shape": ((1, 1), (3, 4), (64, 64))}])
AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}, {"x": ((1, 4), (2, 4), (4, 4))}])


def _be(flavor: str = "tensorrt", **kw: object) -> Backend:
    return Backend.from_module(flavor, trt_double.make_module(flavor, **kw))  # type: ignore[arg-type]


def test_shape_tensor_inputs_are_bound_in_host_memory_before_infer_shapes() -> None:
    x = np.arange(12, dtype=np.float32)
    with load_engine(RESHAPE, backend=_be()) as le:
        for dims in ((3, 4), (4, 3), (2, 6), (3, 4)):
            y = le.infer({"x": x, "shape": np.array(dims, np.int64)})["y"]
            np.testing.assert_array_equal(y, x.reshape(dims))
        import torch

        out = le.infer({"x": torch.from_numpy(x).cuda(), "shape": [6, 2]})["y"]
        np.testing.assert_array_equal(out.numpy(), x.reshape(6, 2))


def test_infer_shapes_failures_are_execution_errors() -> None:
    with load_engine(RESHAPE, backend=_be()) as le, pytest.raises(ExecutionError, match=r"infer_shapes\(\) failed"):
        le.infer({"x": np.zeros(12, np.float32), "shape": np.array([5, 5], np.int64)})


def test_failing_runtime_factory_is_an_execution_error() -> None:
    with pytest.raises(ExecutionError, match="could not create a Runtime"):
        load_engine(AFFINE, backend=_be(fail_factory=True))


def test_host_code_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    plan = trt_double.make_plan(host_code=True)
    with pytest.raises(EngineIncompatibleError, match="allow_host_code=True"):
        load_engine(plan, backend=_be())
    with load_engine(plan, backend=_be(), allow_host_code=True) as le:
        np.testing.assert_allclose(le.infer(np.ones((2, 4), np.float32))["y"], 3.0)


def test_lean_runtime_library_is_loaded_through_load_runtime(tmp_path: Path) -> None:
    lean = tmp_path / "libnvinfer_lean.so.10"
    lean.write_bytes(trt_double.MAGIC)
    with load_engine(AFFINE, backend=_be(), lean_runtime=lean) as le:
        assert getattr(le._runtime, "_lean", False)
        np.testing.assert_allclose(le.infer(np.ones((2, 4), np.float32))["y"], 3.0)
    bad = tmp_path / "not-a-runtime.so"
    bad.write_bytes(b"\x7fELF")
    with pytest.raises(EngineFileError, match="could not load the lean runtime"):
        load_engine(AFFINE, backend=_be(), lean_runtime=bad)


def test_plugins_are_registered_before_deserializing(tmp_path: Path) -> None:
    bundled = trt_double.make_plan(plugins=["EfficientNMS_TRT"])
    with load_engine(bundled, backend=_be()) as le:  # init_libnvinfer_plugins registers the bundled ones
        assert le.infer(np.ones((1, 4), np.float32))["y"].shape == (1, 4)
    custom = trt_double.make_plan(plugins=["FancyWarp"])
    with pytest.raises(EngineIncompatibleError, match="plugins=\\[PATH\\]"):
        load_engine(custom, backend=_be())
    lib = tmp_path / "libfancy.so"
    trt_double.make_plugin_library(lib, ["FancyWarp"])
    with load_engine(custom, backend=_be(), plugins=[lib]) as le:
        assert le.infer(np.ones((1, 4), np.float32))["y"].shape == (1, 4)


def test_unaligned_device_inputs_are_staged_and_unaligned_outputs_refused() -> None:
    import torch

    base = torch.arange(36, dtype=torch.float32, device="cuda").reshape(9, 4)
    x = base[1:]  # 16 bytes into its allocation: not 256-byte aligned
    assert x.data_ptr() % 256
    with load_engine(AFFINE, backend=_be()) as le:
        y = le.infer(x)["y"]
        np.testing.assert_allclose(y.numpy(), x.cpu().numpy() * 2 + 1)
        out = torch.empty(9, 4, device="cuda")[1:]
        with pytest.raises(InputError, match="256-byte aligned"):
            le.infer(x, outputs={"y": out})


def test_every_shape_change_updates_the_device_memory_partition() -> None:
    with load_engine(AFFINE, backend=_be()) as le:
        for n in (3, 7, 3, 7, 64, 1):
            x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
            np.testing.assert_allclose(le.infer(x)["y"], x * 2 + 1, rtol=1e-6)


def test_graphs_are_dropped_on_a_profile_switch() -> None:
    mod = trt_double.make_module()
    be = Backend.from_module("tensorrt", mod)
    with load_engine(AFFINE, backend=be) as le, le.create_context(cuda_graph=True) as ctx:
        small = np.ones((3, 4), np.float32)  # profile 1 (max 4 rows)
        big = np.ones((7, 4), np.float32)  # profile 0
        for x in (small, small, small, big, small, small, small):
            np.testing.assert_allclose(ctx.infer(x)["y"], 3.0)
        ctx.stream.sync()
        assert ctx.graph_stats["captured"] >= 1
        assert mod._state.violations == []


def test_vectorized_io_formats_are_refused_at_load() -> None:
    plan = trt_double.make_plan(formats={"x": "CHW4"})
    with pytest.raises(UnsupportedFeatureError, match="vectorized format CHW4"):
        load_engine(plan, backend=_be())


def test_rtx_captures_only_after_eager_kernel_specialization() -> None:
    mod = trt_double.make_module("tensorrt_rtx")
    be = Backend.from_module("tensorrt_rtx", mod)
    be.features = dataclasses.replace(be.features, supported_compute_capabilities=None)  # the double runs on 9.0
    plan = trt_double.make_plan(version=mod.__version__)
    with load_engine(plan, backend=be) as le, le.create_context(cuda_graph=True) as ctx:
        for _ in range(4):
            np.testing.assert_allclose(ctx.infer(np.ones((3, 4), np.float32))["y"], 3.0)
        ctx.stream.sync()
        assert ctx.graph_stats["captured"] == 1
        assert mod._state.violations == []
