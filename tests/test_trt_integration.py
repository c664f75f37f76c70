"""End to end against a real TensorRT on a GPU it supports: build, load, run, compare with ONNX Runtime.

These run wherever such a pair exists (full TensorRT on any recent NVIDIA GPU, or TensorRT-RTX on the compute
capabilities it supports) and skip elsewhere with the exact reason: on the machines trtkit is developed on,
full TensorRT cannot be installed and TensorRT-RTX refuses their GPUs (compute capability 9.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.onnx_factory import conv_relu, reshape_with_shape_input

from trtkit.backend import Backend, available_backends, get_backend
from trtkit.errors import EngineIncompatibleError, InputError
from trtkit.runtime.compat import run_blocker
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path

pytestmark = pytest.mark.trt_integration


def _runnable() -> tuple[Backend | None, str]:
    reasons = []
    names = available_backends()
    if not names:
        return None, "no TensorRT backend is installed (neither tensorrt nor tensorrt_rtx imports)"
    for name in names:
        be = get_backend(name)
        blocker = run_blocker(be)
        if blocker is None:
            return be, ""
        reasons.append(blocker)
    return None, "; ".join(reasons)


@pytest.fixture(scope="module")
def backend() -> Backend:
    be, reason = _runnable()
    if be is None:
        pytest.skip(f"no TensorRT engine can run here: {reason}")
    return be


def _reference(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_cnn_path()), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["probs"], {"image": x})[0])


def test_sample_model_matches_onnxruntime(backend: Backend, tmp_path: Path) -> None:
    from trtkit import Engine
    from trtkit.cache import EngineCache

    engine = Engine.from_onnx(tiny_cnn_path(), shapes=TINY_CNN_SHAPES, backend=backend,
                              cache=EngineCache(tmp_path))
    for shape in [(1, 3, 32, 32), (4, 3, 64, 64), (16, 3, 128, 96)]:
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        probs = engine(x)["probs"]
        assert isinstance(probs, np.ndarray) and probs.shape == (shape[0], 10)
        np.testing.assert_allclose(probs, _reference(x), rtol=1e-2, atol=1e-3)  # TF32 is on by default


def test_shapes_outside_every_profile_are_refused(backend: Backend, tmp_path: Path) -> None:
    from trtkit import Engine
    from trtkit.cache import EngineCache

    engine = Engine.from_onnx(tiny_cnn_path(), shapes=TINY_CNN_SHAPES, backend=backend,
                              cache=EngineCache(tmp_path))
    with pytest.raises(InputError, match="no optimization profile"):
        engine(np.zeros((32, 3, 64, 64), np.float32))


def test_torch_zero_copy_and_cuda_graphs(backend: Backend, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from trtkit.builder import build_engine
    from trtkit.runtime import load_engine

    built = build_engine(conv_relu(), shapes={"x": ((1, 3, 16, 16), (2, 3, 32, 32), (4, 3, 64, 64))},
                         backend=backend, progress=False)
    with load_engine(built, backend=backend) as le:
        ctx = le.create_context(cuda_graph=True)
        x = torch.randn(2, 3, 32, 32, device="cuda")
        first = torch.from_dlpack(ctx.infer({"x": x})["y"]).clone()
        for _ in range(3):
            again = torch.from_dlpack(ctx.infer({"x": x})["y"])
        ctx.stream.sync()
        torch.testing.assert_close(again, first)
        assert ctx.graph_stats["replayed"] + ctx.graph_stats["fallbacks"] >= 1
        ctx.close()


def test_manifest_from_another_tensorrt_is_refused(backend: Backend, tmp_path: Path) -> None:
    from trtkit.builder import build_engine
    from trtkit.manifest import _checksum, manifest_path
    from trtkit.runtime import load_engine

    path = build_engine(conv_relu(dims=(1, 3, 8, 8)), backend=backend, progress=False).save(tmp_path / "m.engine")
    data = json.loads(manifest_path(path).read_text())
    data["backend"]["version"] = "0.0.1"  # as if built by another TensorRT release
    data["checksum"] = _checksum({k: v for k, v in data.items() if k != "checksum"})
    manifest_path(path).write_text(json.dumps(data))
    with pytest.raises(EngineIncompatibleError, match="rebuild"):
        load_engine(path, backend=backend)


def test_shape_tensor_engine_runs_with_host_values(backend: Backend) -> None:
    """trtkit's builder makes engines with shape-tensor inputs; their values are bound in host memory."""
    from trtkit.builder import build_engine
    from trtkit.runtime import load_engine

    built = build_engine(reshape_with_shape_input(), shapes={"shape": ((1, 1), (3, 4), (12, 12))}, backend=backend,
                         progress=False)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    with load_engine(built, backend=backend) as le:
        for dims in ((3, 4), (4, 3), (6, 2)):
            np.testing.assert_array_equal(le.infer({"x": x, "shape": np.array(dims, np.int64)})["y"],
                                          x.reshape(dims))
