"""Serving on a GPU through a real Triton: ``trtkit serve`` (PyTriton) and a ``--runtime python`` export
(the wheel's tritonserver with its Python backend), both running an engine of the runtime double.

Processes the tests cannot patch run the double through ``tests/support/double_site`` (sitecustomize).
Needs nvidia-pytriton and tritonclient[http,grpc] (wheels carried to the GPU machine; see docs/serving.md).
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from support.triton_server import (
    DOUBLE_SITE,
    assert_gone,
    batch_stats,
    double_engine,
    double_env,
    http_json,
    pids_listening_on,
    preload,
    start_serve,
    stop_process,
    wait_ready,
)

from trtkit.tools.triton import export_triton
from trtkit.tools.triton_server import TritonServer, verdict_of

pytestmark = pytest.mark.gpu

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
pytest.importorskip("pytriton")


def _http(url: str, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return np.asarray(client.infer(model, [inp]).as_numpy("y"))


def _grpc(url: str, model: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return np.asarray(client.infer(model, [inp]).as_numpy("y"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_trtkit_serve_answers_http_and_grpc_and_stops_on_signal(tmp_path: Path, sig: int) -> None:
    engine = double_engine(tmp_path / "affine.engine")
    served = start_serve(engine, tmp_path / "serve.log", "--instances", "2", "--max-queue-delay-us", "200")
    try:
        x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        np.testing.assert_allclose(_http(served.http_url, "affine", x), x * 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(_grpc(served.grpc_url, "affine", x), x * 2 + 1, rtol=1e-6)
        status, config = http_json(f"{served.http_url}/v2/models/affine/config")
        assert status == 200 and isinstance(config, dict)
        assert config["max_batch_size"] == 64  # the profile's max batch
        assert "dynamic_batching" in config
        assert http_json(f"{served.http_url}/v2/health/ready")[0] == 200
        assert sum(batch_stats(served.http_url, "affine").values()) >= 2
    finally:
        status = stop_process(served.proc, sig)
    assert status == 0, served.log.read_text()[-3000:]
    assert "stopped" in served.log.read_text()
    assert_gone(served.proc.pid, served.ports)


def test_trtkit_serve_with_two_instances_answers_every_concurrent_request(tmp_path: Path) -> None:
    # Two instances drive two contexts of one engine from two PyTriton threads at once; a few sequential requests
    # do not show what a concurrent load does (an earlier double failed 7 to 28 % of these).
    engine = double_engine(tmp_path / "affine.engine")
    served = start_serve(engine, tmp_path / "serve.log", "--instances", "2", "--max-queue-delay-us", "500")
    failures: list[str] = []

    def one(i: int) -> None:
        x = np.full((1 + i % 4, 4), float(i), np.float32)
        try:
            y = _http(served.http_url, "affine", x) if i % 2 else _grpc(served.grpc_url, "affine", x)
            if not np.array_equal(y, x * 2 + 1):
                failures.append(f"request {i}: wrong output {y.ravel()[:4]}")
        except Exception as exc:  # the request failed: keep the server's reason
            failures.append(f"request {i}: {str(exc)[-600:]}")

    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(400)))
        formed = batch_stats(served.http_url, "affine")
    finally:
        stop_process(served.proc)
    assert not failures, f"{len(failures)} of 400 failed, e.g. {failures[:2]}"
    assert sum(formed.values()) < 400, f"Triton formed no batches: {formed}"  # the load really overlapped
    assert_gone(served.proc.pid, served.ports)


def test_python_backend_export_runs_the_engine_in_triton(tmp_path: Path) -> None:
    engine = double_engine(tmp_path / "affine.engine")
    export = export_triton(engine, tmp_path / "repo", name="affine_py", runtime="python", instances=2,
                           max_queue_delay_us=200)
    preload(export.model_dir, DOUBLE_SITE / "sitecustomize.py")
    env = {k: v for k, v in double_env().items() if k in ("PYTHONPATH", "TRTKIT_BACKEND")}
    server = TritonServer(tmp_path / "repo", env=env, start_timeout=120)
    with server:
        verdict = verdict_of(server, "affine_py")
        assert verdict.status == "loaded", server.log_text()[-3000:]
        wait_ready(server.url, "affine_py")
        x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
        np.testing.assert_allclose(_http(server.url, "affine_py", x), x * 2 + 1, rtol=1e-6)
        np.testing.assert_allclose(_grpc(f"127.0.0.1:{server.grpc_port}", "affine_py", x), x * 2 + 1, rtol=1e-6)
        pid, ports = server.pid, (server.http_port, server.grpc_port)
    assert pid is not None
    assert_gone(pid, ports)


def test_python_api_serves_a_loaded_engine_with_several_instances(tmp_path: Path, trt_double_backend: object) -> None:
    import trtkit
    from trtkit.runtime import load_engine

    engine = double_engine(tmp_path / "affine.engine")
    with load_engine(engine) as loaded:
        serving = trtkit.serve(loaded, name="api", instances=3, max_queue_delay_us=200, http_port=0, grpc_port=0,
                               metrics_port=0, block=False)
        try:
            [server_pid] = pids_listening_on(serving.http_port)  # tritonserver, started by PyTriton
            assert serving.config.instances == 3 and serving.config.max_batch_size == 64
            x = np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32)
            np.testing.assert_allclose(_http(serving.http_url, "api", x), x * 2 + 1, rtol=1e-6)
            np.testing.assert_allclose(_grpc(serving.grpc_url, "api", x), x * 2 + 1, rtol=1e-6)
        finally:
            serving.stop()
        assert_gone(server_pid, (serving.http_port, serving.grpc_port, serving.metrics_port))
        # The engine was the caller's: still open and usable after the server stopped.
        np.testing.assert_allclose(loaded.infer({"x": x})["y"], x * 2 + 1, rtol=1e-6)
