"""Helpers for tests and benchmarks that run a real Triton server (the ``nvidia-pytriton`` wheel's).

Server management itself is trtkit's (:mod:`trtkit.tools.triton_server`); this adds what only tests need:
engines made from the runtime double with a manifest, the environment that makes subprocesses run them on the
double (``double_site``), ``trtkit serve`` started as a subprocess, and stopping/checking processes by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support import trt_double
from trtkit.files import sha256_bytes
from trtkit.manifest import Manifest, TensorInfo, write_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.tools.triton_server import free_port, pid_alive, port_is_free

DOUBLE_SITE = Path(__file__).parent / "double_site"
SRC = Path(__file__).resolve().parents[2] / "src"


def double_engine(path: Path, *, max_batch: int = 64, opt_batch: int = 8) -> Path:
    """An affine engine (y = 2x + 1, x and y float32 [N, 4]) of the runtime double, with a trtkit manifest."""
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (opt_batch, 4), (max_batch, 4))}])
    manifest = Manifest(
        backend="tensorrt", backend_version=trt_double.__version__, target={}, compatibility={},
        onnx={"name": "affine"}, config={},
        profiles=(Profile({"x": ShapeRange((1, 4), (opt_batch, 4), (max_batch, 4))}),),
        tensors=(TensorInfo("x", "input", "float32", (-1, 4)), TensorInfo("y", "output", "float32", (-1, 4))),
        plan_sha256=sha256_bytes(plan), plan_size=len(plan),
    )
    return write_engine_file(path, plan, manifest)


def double_env() -> dict[str, str]:
    """Environment for a subprocess (and the Triton Python-backend stubs it starts) to run the double."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(DOUBLE_SITE), str(SRC), env.get("PYTHONPATH")) if p)
    env["TRTKIT_BACKEND"] = "tensorrt"
    return env


def preload(model_dir: Path, script: Path) -> Path:
    """Make every ``model.py`` of a ``--runtime python`` export in ``model_dir`` run ``script`` first (Triton's
    Python-backend stub ignores ``PYTHONPATH``, so ``sitecustomize`` does not reach it); returns ``model_dir``."""
    found = sorted(model_dir.glob("*/model.py"))
    assert found, f"no model.py under {model_dir}"
    for model_py in found:
        text = model_py.read_text()
        model_py.write_text(f"import runpy\nrunpy.run_path({str(script)!r})  # test only: trtkit's tests\n{text}")
    return model_dir


def http_json(url: str, body: object = None, timeout: float = 10.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(http_url: str, model: str, proc: subprocess.Popen[bytes] | None = None,
               timeout: float = 120.0) -> None:
    """Wait until ``model`` is ready (``GET /v2/models/NAME/ready``); fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before {model!r} was ready")
        with contextlib.suppress(OSError):
            if http_json(f"{http_url}/v2/models/{model}/ready", timeout=2.0)[0] == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{model!r} was not ready on {http_url} within {timeout} s")


@dataclass
class ServeProcess:
    """``trtkit serve`` running in a subprocess (its own process group)."""

    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    model: str
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def ports(self) -> tuple[int, int, int]:
        return self.http_port, self.grpc_port, self.metrics_port


def start_serve(engine: Path, log: Path, *args: str, model: str = "affine", env: dict[str, str] | None = None,
                timeout: float = 180.0) -> ServeProcess:
    """Start ``python -m trtkit serve ENGINE --name MODEL`` on free loopback ports and wait until it is ready."""
    ports = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "trtkit", "serve", str(engine), "--name", model, "--http-port", str(ports[0]),
           "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or double_env(),
                                start_new_session=True)
    served = ServeProcess(proc, *ports, model=model, log=log)
    try:
        wait_ready(served.http_url, model, proc, timeout)
    except BaseException:
        stop_process(proc)
        raise
    return served


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
    """Signal ``proc`` (by pid) and wait; SIGKILL its process group if it does not exit. Returns its status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return int(proc.returncode)


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def assert_gone(pid: int, ports: tuple[int, ...], timeout: float = 30.0) -> None:
    """The process ``pid`` and everything in its process group ended, and ``ports`` are free again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not group_members(pid) and all(port_is_free(p) for p in ports if p):
            return
        time.sleep(0.2)
    raise AssertionError(f"left running: pid {pid} alive={pid_alive(pid)}, group {group_members(pid)}, busy ports "
                         f"{[p for p in ports if p and not port_is_free(p)]}")


@contextlib.contextmanager
def serving(engine: Path, log: Path, *args: str, model: str = "affine") -> Iterator[ServeProcess]:
    served = start_serve(engine, log, *args, model=model)
    try:
        yield served
    finally:
        stop_process(served.proc)


def batch_stats(http_url: str, model: str) -> dict[int, int]:
    """Executions per batch size Triton formed (``GET /v2/models/NAME/stats``)."""
    status, body = http_json(f"{http_url}/v2/models/{model}/stats")
    if status != 200 or not isinstance(body, dict):
        return {}
    out: dict[int, int] = {}
    for stat in body.get("model_stats", []):
        for b in stat.get("batch_stats", []):
            out[int(b["batch_size"])] = out.get(int(b["batch_size"]), 0) + int(b["compute_infer"]["count"])
    return out


def listening_addresses(pid: int) -> set[str]:
    """``host:port`` of every TCP socket process ``pid`` listens on (from /proc; IPv4 and IPv6)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for table, v6 in (("tcp", False), ("tcp6", True)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                addr, port = fields[1].split(":")
                if v6 and addr == "0" * 24 + "01000000":
                    host = "::1"
                elif v6 and addr.startswith("0" * 16 + "FFFF0000"):
                    host = "::ffff:" + ".".join(str(int(addr[24 + i:26 + i], 16)) for i in (6, 4, 2, 0))
                elif v6:
                    host = addr  # raw /proc form; never loopback for is_loopback
                else:
                    host = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                found.add(f"{host}:{int(port, 16)}")
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host.startswith("127.") or host in ("::1",) or host.startswith("::ffff:127.")


def pids_listening_on(port: int) -> list[int]:
    """Processes with a TCP socket listening on ``port`` (any address)."""
    return sorted(int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()
                  and any(a.endswith(f":{port}") for a in listening_addresses(int(e.name))))
