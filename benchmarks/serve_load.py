"""Load test of serving through a real Triton: ``trtkit serve`` and a ``--runtime python`` export.

Needs a GPU (engines run on the runtime double, which computes on device memory), nvidia-pytriton and
tritonclient[http,grpc]. For each server: HTTP and gRPC requests whose outputs are checked, then a bounded
concurrent load on 127.0.0.1 (``--requests`` from ``--threads`` client threads, per protocol) reporting
throughput, p50/p99 latency, failed requests and the batch sizes Triton formed (``/v2/models/NAME/stats``).

    python benchmarks/serve_load.py --out results/serve_load.json [--requests 2000 --threads 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
from support.triton_server import (
    DOUBLE_SITE,
    assert_gone,
    batch_stats,
    double_engine,
    double_env,
    preload,
    serving,
    stop_process,
)

import trtkit
from trtkit.tools.triton import export_triton
from trtkit.tools.triton_server import TritonServer


def _clients(protocol: str, url: str) -> Callable[[], Any]:
    if protocol == "http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client
    return lambda: client.InferenceServerClient(url)


def _infer(protocol: str, client: Any, model: str, x: np.ndarray) -> np.ndarray:
    mod = sys.modules["tritonclient.http" if protocol == "http" else "tritonclient.grpc"]
    inp = mod.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return np.asarray(client.infer(model, [inp]).as_numpy("y"))


def check_outputs(protocol: str, url: str, model: str) -> dict[str, Any]:
    """A few requests of several batch sizes; outputs must equal 2x + 1."""
    client = _clients(protocol, url)()
    checked = 0
    for n in (1, 3, 8):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        y = _infer(protocol, client, model, x)
        np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)
        checked += 1
    return {"protocol": protocol, "requests_checked": checked, "outputs_correct": True}


def load(protocol: str, url: str, http_url: str, model: str, requests: int, threads: int) -> dict[str, Any]:
    """``requests`` single-row requests from ``threads`` threads (each with its own client)."""
    make = _clients(protocol, url)
    local = threading.local()
    before = batch_stats(http_url, model)

    errors: list[str] = []

    def one(i: int) -> tuple[float, bool]:
        if not hasattr(local, "client"):
            local.client = make()
        x = np.full((1, 4), float(i % 97), np.float32)
        t0 = time.perf_counter()
        try:
            y = _infer(protocol, local.client, model, x)
            ok = bool(np.allclose(y, x * 2 + 1))
            if not ok and len(errors) < 5:
                errors.append(f"wrong output for {x[0, 0]}: {np.asarray(y).ravel()[:8]}")
        except Exception as exc:
            ok = False
            if len(errors) < 5:
                text = str(exc)
                errors.append(f"{type(exc).__name__}: {text[:200]} ... {text[-1200:]}")  # the cause is at the end
        return time.perf_counter() - t0, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    after = batch_stats(http_url, model)
    lat = np.array([r[0] for r in results]) * 1000.0
    formed = {str(b): after.get(b, 0) - before.get(b, 0) for b in sorted(after) if after.get(b, 0) - before.get(b, 0)}
    return {
        "protocol": protocol, "requests": requests, "threads": threads,
        "failed": sum(1 for r in results if not r[1]),
        "throughput_rps": requests / wall, "wall_s": wall,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "batches_formed": formed,
        "executions": sum(formed.values()),
        "error_samples": errors,
    }


def log_errors(log: Path, limit: int = 3) -> list[str]:
    """The first ``limit`` distinct tracebacks in a server log (what the clients saw only as an error name)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    found: list[str] = []
    i = 0
    while i < len(lines) and len(found) < limit:
        if lines[i].lstrip().startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            block = "\n".join(lines[i:j + 1])
            if block not in found:
                found.append(block)
            i = j + 1
        else:
            i += 1
    return found


def run_serve(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    engine = double_engine(tmp / "affine.engine")
    extra = ["--instances", str(args.instances), "--max-queue-delay-us", str(args.max_queue_delay_us)]
    with serving(engine, tmp / "serve.log", *extra) as served:
        out: dict[str, Any] = {"server": "trtkit serve", "pid": served.proc.pid}
        out["checks"] = [check_outputs("http", served.http_url[7:], "affine"),
                         check_outputs("grpc", served.grpc_url, "affine")]
        out["load"] = [load(p, served.http_url[7:] if p == "http" else served.grpc_url, served.http_url, "affine",
                            args.requests, args.threads) for p in ("http", "grpc")]
    status = stop_process(served.proc)
    assert_gone(served.proc.pid, served.ports)
    if any(r["failed"] for r in out["load"]):
        out["server_log_errors"] = log_errors(tmp / "serve.log")
    out["exit_status"] = status
    out["left_running"] = False
    return out


def run_python_backend(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    engine = double_engine(tmp / "affine_py.engine")
    export = export_triton(engine, tmp / "repo", name="affine_py", runtime="python", instances=args.instances,
                           max_queue_delay_us=args.max_queue_delay_us)
    preload(export.model_dir, DOUBLE_SITE / "sitecustomize.py")
    env = double_env()
    env_extra = {k: env[k] for k in ("PYTHONPATH", "TRTKIT_BACKEND")}
    server = TritonServer(tmp / "repo", load=("affine_py",), env=env_extra, start_timeout=120)
    with server:
        from support.triton_server import wait_ready

        wait_ready(server.url, "affine_py", timeout=120)
        out: dict[str, Any] = {"server": "tritonserver (wheel) + Python backend", "pid": server.pid,
                               "triton_version": server.version}
        out["checks"] = [check_outputs("http", server.url[7:], "affine_py"),
                         check_outputs("grpc", f"127.0.0.1:{server.grpc_port}", "affine_py")]
        out["load"] = [load(p, server.url[7:] if p == "http" else f"127.0.0.1:{server.grpc_port}", server.url,
                            "affine_py", args.requests, args.threads) for p in ("http", "grpc")]
        pid, ports = server.pid, (server.http_port, server.grpc_port)
    assert pid is not None
    assert_gone(pid, ports)
    out["left_running"] = False
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON results file")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-queue-delay-us", type=int, default=500)
    parser.add_argument("--only", choices=("serve", "python"), default=None)
    args = parser.parse_args()
    from importlib.metadata import version

    results: dict[str, Any] = {
        "benchmark": "serve_load", "python": platform.python_version(), "numpy": np.__version__,
        "trtkit": trtkit.__version__, "nvidia_pytriton": version("nvidia-pytriton"),
        "tritonclient": version("tritonclient"),
        "engine": "runtime double, affine y = 2x + 1, x float32 [N, 4], profile N 1..64 (opt 8)",
        "options": vars(args) | {"out": str(args.out)},
    }
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        if args.only in (None, "serve"):
            results["trtkit_serve"] = run_serve(Path(tmp), args)
        if args.only in (None, "python"):
            results["python_backend"] = run_python_backend(Path(tmp), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    failed = sum(r["failed"] for key in ("trtkit_serve", "python_backend") if key in results
                 for r in results[key]["load"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
