"""``trtkit serve`` and the Python-backend export on a machine without a GPU.

No engine runs here, so: the model config trtkit gives Triton (from real tensor specs of double plans), the
CLI's argument handling, a real PyTriton server serving a NumPy stand-in (startup, loopback ports, HTTP and
gRPC round trips, batching, metrics, shutdown), and a ``--runtime python`` export whose real ``model.py``
runs in the wheel's tritonserver with a NumPy stand-in engine (``tests/support/numpy_site``). The GPU versions
with the runtime double are in test_serve_gpu.py.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import trt_double
from support.triton_server import (
    assert_gone,
    batch_stats,
    double_engine,
    http_json,
    is_loopback,
    listening_addresses,
    pids_listening_on,
    preload,
    wait_ready,
)

from trtkit.cli.main import main
from trtkit.errors import ConfigError, UnsupportedFeatureError
from trtkit.runtime import TensorSpec, describe_tensors
from trtkit.tools.serve import ServeConfig, ServeTensor, serve_config, start_serving
from trtkit.tools.triton import export_triton
from trtkit.tools.triton_server import TritonServer, verdict_of

NUMPY2 = int(np.__version__.split(".")[0]) >= 2
NUMPY_SITE = Path(__file__).parents[1] / "support" / "numpy_site"


def _specs(**plan: Any) -> tuple[TensorSpec, ...]:
    """Real tensor specs, read from a double plan through trtkit's own describe_tensors (no GPU needed)."""
    mod = trt_double.make_module()
    engine = mod.Runtime(mod.ILogger()).deserialize_cuda_engine(trt_double.make_plan(**plan))
    return describe_tensors(engine)


# ---- the model config --------------------------------------------------------------------------------------


def test_an_engine_with_a_batch_dim_gets_dynamic_batching() -> None:
    cfg = serve_config(_specs(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}]), name="affine", instances=3)
    assert cfg.max_batch_size == 64
    assert cfg.preferred_batch_sizes == (8,)
    assert cfg.inputs == (ServeTensor("x", np.dtype("float32"), (4,)),)  # the batch dim is Triton's
    assert cfg.outputs == (ServeTensor("y", np.dtype("float32"), (4,)),)
    assert cfg.instances == 3 and cfg.notes == ()


def test_every_profile_bounds_the_batch() -> None:
    specs = _specs(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}, {"x": ((1, 4), (2, 4), (4, 4))}])
    assert serve_config(specs, name="m").max_batch_size == 4
    assert serve_config(specs, name="m", max_batch_size=2).max_batch_size == 2
    with pytest.raises(ConfigError, match=r"exceeds .* \(4\)"):
        serve_config(specs, name="m", max_batch_size=5)


@pytest.mark.parametrize(("plan", "why"), [
    ({"inputs": [("x", "FLOAT", (2, 4))], "outputs": [("y", "FLOAT", (2, 4))],
      "profiles": [{"x": ((2, 4), (2, 4), (2, 4))}]},
     "no dynamic leading dim"),
    ({"profiles": [{"x": ((2, 4), (8, 4), (64, 4))}]}, "min batch of 2"),
])
def test_an_engine_without_a_usable_batch_dim_is_served_whole(plan: dict[str, Any], why: str) -> None:
    cfg = serve_config(_specs(**plan), name="m")
    assert cfg.max_batch_size == 0 and cfg.preferred_batch_sizes == ()
    assert cfg.inputs[0].shape == tuple(_specs(**plan)[0].shape)  # full shapes
    assert any(why in note for note in cfg.notes)
    with pytest.raises(ConfigError, match="cannot batch"):
        serve_config(_specs(**plan), name="m", max_batch_size=4)


def test_dynamic_dims_stay_dynamic() -> None:
    specs = _specs(inputs=[("ids", "INT32", (-1, -1))], outputs=[("ids_out", "INT32", (-1, -1))],
                   profiles=[{"ids": ((1, 1), (4, 16), (8, 128))}], op="affine")
    cfg = serve_config(specs, name="m")
    assert cfg.max_batch_size == 8 and cfg.inputs[0].shape == (-1,) and cfg.inputs[0].dtype == np.int32


@pytest.mark.parametrize(("options", "match"), [
    ({"name": "my model"}, "not valid"), ({"name": ".."}, "not valid"), ({"name": ""}, "not valid"),
    ({"instances": 0}, "instances must be an integer >= 1"), ({"max_batch_size": -1}, ">= 0"),
    ({"max_queue_delay_us": -1}, ">= 0"), ({"instances": True}, "instances"),
])
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        serve_config(_specs(), **{"name": "m", **options})


def test_a_dtype_numpy_lacks_is_refused() -> None:
    specs = _specs(inputs=[("x", "BF16", (-1, 4))], outputs=[("y", "BF16", (-1, 4))])
    with pytest.raises(UnsupportedFeatureError, match="bfloat16"):
        serve_config(specs, name="m")


# ---- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--shapes", "--http-port", "--grpc-port", "--metrics-port", "--max-batch-size", "--instances",
                   "--device", "--address", "127.0.0.1"):
        assert option in out


def test_cli_shapes_apply_to_onnx_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = double_engine(tmp_path / "affine.engine")
    assert main(["serve", str(engine), "--shapes", "x:1x4"]) == 2
    assert "apply to an ONNX MODEL" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.engine")]) == 2


def test_cli_says_what_is_missing_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = double_engine(tmp_path / "affine.engine")
    assert main(["serve", str(engine), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("trtkit: error:")]
    assert len(errors) == 1
    # NumPy 2: PyTriton 0.7 cannot run (checked before anything loads); NumPy 1: no GPU to load the engine on.
    assert ("numpy<2" in errors[0]) if NUMPY2 else any(w in errors[0] for w in ("GPU", "CUDA", "TensorRT"))


# ---- a real PyTriton server with a NumPy stand-in ---------------------------------------------------------------


@pytest.mark.skipif(NUMPY2, reason="nvidia-pytriton 0.7 needs numpy<2: its Python-backend stub passes empty "
                                   "tensors with NumPy 2 (pip install 'numpy<2'; the dev extra resolves it)")
def test_pytriton_serves_a_callable_over_http_and_grpc_on_loopback() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    grpcclient = pytest.importorskip("tritonclient.grpc")
    cfg = ServeConfig("affine", (ServeTensor("x", np.dtype("float32"), (4,)),),
                      (ServeTensor("y", np.dtype("float32"), (4,)),), max_batch_size=64,
                      preferred_batch_sizes=(8,), max_queue_delay_us=2000, instances=2)
    calls: list[int] = []

    def stand_in(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(x))
        return {"y": x * 2 + 1}

    serving = start_serving(cfg, [stand_in, stand_in], http_port=0, grpc_port=0, metrics_port=0)
    try:
        [pid] = pids_listening_on(serving.http_port)
        listening = listening_addresses(pid)
        assert {serving.http_port, serving.grpc_port, serving.metrics_port} <= {
            int(a.rsplit(":", 1)[1]) for a in listening}
        assert all(is_loopback(a) for a in listening), listening
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        h = httpclient.InferenceServerClient(serving.http_url.removeprefix("http://"))
        hin = httpclient.InferInput("x", [3, 4], "FP32")
        hin.set_data_from_numpy(x)
        np.testing.assert_array_equal(h.infer("affine", [hin]).as_numpy("y"), x * 2 + 1)
        g = grpcclient.InferenceServerClient(serving.grpc_url)
        gin = grpcclient.InferInput("x", [3, 4], "FP32")
        gin.set_data_from_numpy(x)
        np.testing.assert_array_equal(g.infer("affine", [gin]).as_numpy("y"), x * 2 + 1)

        def one(i: int) -> bool:
            c = grpcclient.InferenceServerClient(serving.grpc_url)
            xi = np.full((1, 4), i, np.float32)
            inp = grpcclient.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(xi)
            return bool(np.array_equal(c.infer("affine", [inp]).as_numpy("y"), xi * 2 + 1))

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(one, range(64)))
        assert max(calls) > 1  # Triton's dynamic batcher joined requests
        assert http_json(f"{serving.http_url}/v2/health/ready")[0] == 200
        formed = batch_stats(serving.http_url, "affine")
        assert sum(b * n for b, n in formed.items()) == 3 + 3 + 64
        status, config = http_json(f"{serving.http_url}/v2/models/affine/config")
        assert status == 200 and isinstance(config, dict) and config["max_batch_size"] == 64
        assert "nv_inference_request_success" in _text(serving.metrics_url)
    finally:
        serving.stop()
    assert_gone(pid, (serving.http_port, serving.grpc_port, serving.metrics_port))


def _text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


# ---- the Python-backend export in a real Triton, with a NumPy stand-in engine ----------------------------------------


def test_python_backend_model_py_serves_in_triton(tmp_path: Path) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    grpcclient = pytest.importorskip("tritonclient.grpc")
    engine = double_engine(tmp_path / "affine.engine")
    result = export_triton(engine, tmp_path / "repo", name="affine_py", runtime="python", max_queue_delay_us=2000)
    # No GPU here: CPU instances (the export asks for GPU ones), and the stand-in engine instead of trtkit's.
    text = result.config_path.read_text()
    result.config_path.write_text(text.replace("KIND_GPU", "KIND_CPU"))
    preload(result.model_dir, NUMPY_SITE / "sitecustomize.py")
    server = TritonServer(tmp_path / "repo")
    with server:
        verdict = verdict_of(server, "affine_py")
        assert verdict.status == "loaded", server.log_text()[-2000:]
        wait_ready(server.url, "affine_py")
        x = np.arange(20, dtype=np.float32).reshape(5, 4)
        h = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        hin = httpclient.InferInput("x", [5, 4], "FP32")
        hin.set_data_from_numpy(x)
        np.testing.assert_array_equal(h.infer("affine_py", [hin]).as_numpy("y"), x * 2 + 1)

        def one(i: int) -> bool:
            c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
            xi = np.full((1 + i % 3, 4), i, np.float32)
            inp = grpcclient.InferInput("x", list(xi.shape), "FP32")
            inp.set_data_from_numpy(xi)
            return bool(np.array_equal(c.infer("affine_py", [inp]).as_numpy("y"), xi * 2 + 1))

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(one, range(48)))  # batches of several requests are split back correctly
        formed = batch_stats(server.url, "affine_py")
        assert sum(b * n for b, n in formed.items()) == 5 + sum(1 + i % 3 for i in range(48))
        pid, ports = server.pid, (server.http_port, server.grpc_port)
    assert pid is not None
    assert_gone(pid, ports)


def test_model_py_refuses_an_older_trtkit(tmp_path: Path) -> None:
    engine = double_engine(tmp_path / "affine.engine")
    result = export_triton(engine, tmp_path / "repo", name="old", runtime="python")
    model_py = result.plan_path.parent / "model.py"
    model_py.write_text(re.sub(r'TRTKIT_REQUIRES = "[^"]*"', 'TRTKIT_REQUIRES = "999.0.0"', model_py.read_text()))
    result.config_path.write_text(result.config_path.read_text().replace("KIND_GPU", "KIND_CPU"))
    with TritonServer(tmp_path / "repo") as server:
        verdict = verdict_of(server, "old")
    assert verdict.status == "failed"
    assert "exported by trtkit 999.0.0" in verdict.reason and "Install trtkit >= 999.0.0" in verdict.reason
