"""A real Triton Inference Server, from the ``nvidia-pytriton`` wheel, to check and serve exports.

The wheel ships ``pytriton/tritonserver/bin/tritonserver`` (its libraries in ``nvidia_pytriton.libs``), the
Python backend and its stubs, but no TensorRT backend. :class:`TritonServer` starts that binary on free
loopback ports (HTTP, gRPC; metrics off unless asked), in its own process group, with a log file, and stops
it by its process id (SIGTERM to the group, then SIGKILL). :func:`check_with_triton` loads one model of a
repository in such a server and turns Triton's answer into a :class:`TritonVerdict`.

Install with ``pip install nvidia-pytriton`` (from a trtkit clone: ``pip install '.[serve]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from trtkit.errors import ConfigError, DependencyError, TritonServerError

__all__ = [
    "ModelState",
    "TritonInstall",
    "TritonServer",
    "TritonServerError",
    "TritonVerdict",
    "check_with_triton",
    "find_tritonserver",
]

INSTALL_HINT: Final = "pip install nvidia-pytriton (or, in a clone of trtkit: pip install '.[serve]')"
NO_TENSORRT_BACKEND: Final = "unable to find backend library for backend 'tensorrt'"
LOOPBACK: Final = "127.0.0.1"
_NO_GPU: Final = "has kind KIND_GPU but no GPUs are available"
_POLL_FAILED: Final = re.compile(r"Poll failed for model directory '(?P<name>[^']*)': (?P<reason>.*?)\"?$")


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel's Triton server lives."""

    binary: Path
    libs: Path
    """``nvidia_pytriton.libs``: goes on ``LD_LIBRARY_PATH``."""
    backends: Path
    """The wheel's backend directory (the Python backend, without its stub)."""
    stubs: Path
    """``python_backend_stubs/<X.Y>/triton_python_backend_stub`` per Python version."""


def find_tritonserver() -> TritonInstall:
    """Locate the ``tritonserver`` binary of the installed ``nvidia-pytriton`` wheel.

    Raises:
        DependencyError: PyTriton is not installed, or its wheel lacks the server.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(f"running a Triton Inference Server needs nvidia-pytriton: {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = TritonInstall(
        binary=root / "tritonserver" / "bin" / "tritonserver",
        libs=root.parent / "nvidia_pytriton.libs",
        backends=root / "tritonserver" / "backends",
        stubs=root / "tritonserver" / "python_backend_stubs",
    )
    missing = [str(p) for p in (found.binary, found.libs, found.backends) if not p.exists()]
    if missing:
        raise DependencyError(
            f"nvidia-pytriton at {str(root)!r} has no Triton server ({', '.join(missing)} missing); it ships "
            f"one in the manylinux x86_64 wheel. Reinstall it: {INSTALL_HINT}"
        )
    return found


def stub_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` changed so that the Python backend's stub runs this interpreter's environment.

    The stub embeds ``libpython3.X`` and finds its standard library and site-packages through the ``python3``
    on ``PATH``: this interpreter's directory goes first on ``PATH``, and its own ``libpython`` (when it has
    one, e.g. pyenv) first on ``LD_LIBRARY_PATH``, so the library and the standard library match.
    """
    out = dict(env)
    out["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname and (Path(libdir) / soname).exists():
        out["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    return out


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on now (the OS picks it; another process could take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` on ``host`` can be bound (no server left listening on it; closed connections still in
    TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
    return False


@dataclass(frozen=True)
class ModelState:
    """One entry of Triton's ``POST /v2/repository/index``."""

    name: str
    version: str
    state: str
    """READY, UNAVAILABLE, LOADING, UNLOADING, or '' for a model never loaded."""
    reason: str


class TritonServer:
    """One ``tritonserver`` process on free loopback ports; use it as a context manager.

    Args:
        repository: the model repository (``--model-repository``).
        control_mode: ``explicit`` (models load through :meth:`load`) or ``poll``/``none``.
        load: models to load at startup (explicit mode).
        python_backend: make the Python backend usable (its stub for this interpreter is copied into a
            private backend directory, and this interpreter's environment is put first on ``PATH``).
        metrics: serve Prometheus metrics (on another free loopback port).
        http_port: a fixed HTTP port; None picks a free one.
        grpc_port: a fixed gRPC port; None picks a free one.
        metrics_port: a fixed metrics port; None picks a free one.
        start_timeout: seconds to wait for the server to answer ``GET /v2``.
        env: extra environment variables for the server (and the Python backend's stubs).
        install: the server to run (default: :func:`find_tritonserver`).

    Raises:
        DependencyError: PyTriton is not installed.
        TritonServerError: the server exited or did not answer in time (the message has the errors it logged).
    """

    def __init__(self, repository: str | os.PathLike[str], *, control_mode: str = "explicit",
                 load: tuple[str, ...] = (), python_backend: bool = True, metrics: bool = False,
                 http_port: int | None = None, grpc_port: int | None = None, metrics_port: int | None = None,
                 start_timeout: float = 60.0, env: dict[str, str] | None = None,
                 install: TritonInstall | None = None) -> None:
        if control_mode not in ("explicit", "poll", "none"):
            raise ConfigError(f"control_mode must be 'explicit', 'poll' or 'none', got {control_mode!r}")
        self.install = install or find_tritonserver()
        self.repository = Path(repository).resolve()
        self.control_mode = control_mode
        self._load = tuple(load)
        self._python_backend = python_backend
        self._metrics = metrics
        self._ports = (http_port, grpc_port, metrics_port)
        self.start_timeout = start_timeout
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.version = ""

    # ---- life cycle ------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        """The HTTP endpoint, ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise TritonServerError("the Triton server was not started")
        return self._workdir / "tritonserver.log"

    def log_text(self) -> str:
        """What the server logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_errors(self, last: int = 3) -> str:
        """The last ``last`` error lines of the log (without the timestamp prefix), joined by ' | '."""
        lines = [ln.split("] ", 1)[-1].strip().strip('"') for ln in self.log_text().splitlines()
                 if ln.startswith("E") and "] " in ln and "CudaDriverHelper" not in ln]
        return " | ".join(lines[-last:])

    def _backend_dir(self) -> Path:
        if not self._python_backend:
            return self.install.backends
        assert self._workdir is not None
        backends = self._workdir / "backends"
        python = backends / "python"
        python.mkdir(parents=True)
        for item in (self.install.backends / "python").iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = self.install.stubs / version / "triton_python_backend_stub"
        if stub.is_file():
            shutil.copy2(stub, python / stub.name)
        return backends

    def _command(self) -> list[str]:
        http, grpc, metrics = (p if p is not None else free_port() for p in self._ports)
        self.http_port, self.grpc_port, self.metrics_port = http, grpc, metrics if self._metrics else 0
        cmd = [
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={self._backend_dir()}",
            f"--model-control-mode={self.control_mode}",
            f"--http-address={LOOPBACK}", f"--http-port={http}",
            f"--grpc-address={LOOPBACK}", f"--grpc-port={grpc}",
            "--allow-sagemaker=false", "--allow-vertex-ai=false",
            "--exit-on-error=false", "--strict-readiness=false", "--exit-timeout-secs=5",
        ]
        if self._metrics:
            cmd += ["--allow-metrics=true", f"--metrics-address={LOOPBACK}", f"--metrics-port={metrics}"]
        else:
            cmd.append("--allow-metrics=false")
        if self.control_mode == "poll":
            cmd.append("--repository-poll-secs=1")
        cmd += [f"--load-model={name}" for name in self._load]
        return cmd

    def start(self) -> TritonServer:
        """Start the server and wait until it answers; see the class for what can go wrong."""
        if self._proc is not None:
            raise TritonServerError("this Triton server was started already")
        self._workdir = Path(tempfile.mkdtemp(prefix="trtkit-triton-"))
        env = stub_environment({**os.environ, **self._env})
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(self.install.libs))
                                                 if p)
        cmd = self._command()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, cwd=self._workdir, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                errors = self.log_errors() or self.log_text()[-500:]
                self._cleanup()
                raise TritonServerError(f"tritonserver exited with status {self._proc.returncode} while "
                                        f"starting: {errors}")
            with contextlib.suppress(OSError, TritonServerError):
                if self._request("GET", "/v2", timeout=1.0)[0] == 200:
                    break
            if time.monotonic() > deadline:
                errors = self.log_errors()
                self.stop()
                raise TritonServerError(f"tritonserver did not answer on {self.url} within "
                                        f"{self.start_timeout:g} s" + (f"; it logged: {errors}" if errors else ""))
            time.sleep(0.1)
        status, body = self._request("GET", "/v2")
        self.version = str(json.loads(body).get("version", "")) if status == 200 else ""
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``timeout`` s. Returns its exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # The Python backend's stubs leave after the server (and free their shared memory): give them a moment,
        # then kill what is left of the process group.
        deadline = time.monotonic() + 10.0
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._cleanup()
        return proc.returncode

    def _cleanup(self) -> None:
        if self._workdir is not None and not os.environ.get("TRTKIT_KEEP_TRITON_LOGS"):
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- HTTP API --------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: object = None, timeout: float = 60.0) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TritonServerError(f"Triton at {self.url} did not answer {method} {path}: {exc}") from exc

    def index(self) -> list[ModelState]:
        """The repository's models and their states (``POST /v2/repository/index``)."""
        status, body = self._request("POST", "/v2/repository/index", {})
        if status != 200:
            raise TritonServerError(f"Triton refused the repository index ({status}): {body}")
        return [ModelState(str(m.get("name", "")), str(m.get("version", "")), str(m.get("state", "")),
                           str(m.get("reason", ""))) for m in json.loads(body)]

    def load(self, name: str) -> str | None:
        """Load model ``name``; None when it is ready, else Triton's error text."""
        quoted = urllib.parse.quote(name, safe="")
        status, body = self._request("POST", f"/v2/repository/models/{quoted}/load", {})
        if status == 200:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(body).get("error", body))
        return body

    def unload(self, name: str) -> None:
        """Unload model ``name`` (errors ignored: it may not be loaded)."""
        self._request("POST", f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/unload", {})

    def poll_failure(self, name: str) -> str | None:
        """The reason Triton logged for refusing ``name``'s directory (a config its validator rejected)."""
        for line in self.log_text().splitlines():
            match = _POLL_FAILED.search(line)
            if match and match.group("name") == name:
                return match.group("reason").strip()
        return None


# ---- verdicts ---------------------------------------------------------------------------------------------

Status = Literal["loaded", "accepted", "refused", "failed"]


@dataclass(frozen=True)
class TritonVerdict:
    """What a real Triton server said about one model.

    ``status``: ``loaded`` (ready to serve), ``accepted`` (the config passed Triton's checks and loading
    stopped only because this Triton has no TensorRT backend), ``refused`` (Triton rejected the config) or
    ``failed`` (the config was accepted and the model's own initialization failed, e.g. a Python-backend
    ``model.py`` without a GPU).
    """

    name: str
    status: Status
    reason: str
    triton_version: str

    @property
    def ok(self) -> bool:
        """The config is valid for Triton (``loaded`` or ``accepted``)."""
        return self.status in ("loaded", "accepted")

    def line(self) -> str:
        """One line for a terminal."""
        if self.status == "loaded":
            return f"model {self.name!r} loaded by Triton {self.triton_version}" + (
                f" ({self.reason})" if self.reason else "")
        if self.status == "accepted":
            return (f"config accepted by Triton {self.triton_version} (the TensorRT backend is not installed "
                    "here)")
        what = "refused by" if self.status == "refused" else "accepted, then failed to initialize in"
        return f"config {what} Triton {self.triton_version}: {self.reason}"


def verdict_of(server: TritonServer, name: str) -> TritonVerdict:
    """Load ``name`` in a running server (explicit mode) and classify Triton's answer."""
    error = server.load(name)
    if error is None:
        return TritonVerdict(name, "loaded", "", server.version)
    reason = _one_line(error)
    if NO_TENSORRT_BACKEND in error:
        return TritonVerdict(name, "accepted", reason, server.version)
    polled = server.poll_failure(name)
    if polled is not None or "failed to poll from model repository" in error:
        return TritonVerdict(name, "refused", _one_line(polled or error), server.version)
    state = {m.name: m for m in server.index()}.get(name)
    raw = state.reason if state is not None and state.reason else error
    # A model's own initialization fails as "Internal: ..." (the Python backend runs model.py's initialize only
    # after Triton accepted the config and its I/O); Triton's checks answer "Invalid argument: ..." and others.
    status: Status = "failed" if raw.lstrip().startswith("Internal") else "refused"
    return TritonVerdict(name, status, _one_line(raw.split("\nAt:\n")[0]), server.version)


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines).rstrip(";").strip()


def check_with_triton(repository: str | os.PathLike[str], name: str, *, timeout: float = 120.0,
                      install: TritonInstall | None = None) -> TritonVerdict:
    """Load model ``name`` of ``repository`` in the wheel's real ``tritonserver`` and report its verdict.

    A server is started for this call on free loopback ports and stopped before returning.

    Raises:
        DependencyError: PyTriton is not installed (``pip install nvidia-pytriton``).
        TritonServerError: the server did not start or answer.
    """
    if not Path(repository).is_dir():
        raise ConfigError(f"model repository {str(repository)!r} is not a directory")
    with TritonServer(repository, start_timeout=timeout, install=install) as server:
        verdict = verdict_of(server, name)
    if verdict.status != "refused" or _NO_GPU not in verdict.reason:
        return verdict
    # A GPU model on a machine without a GPU: check the rest of the config with CPU instances instead.
    with tempfile.TemporaryDirectory(prefix="trtkit-triton-cpu-") as tmp:
        src = Path(repository) / name
        dst = Path(tmp) / name
        dst.mkdir()
        for item in src.iterdir():
            if item.name != "config.pbtxt":
                (dst / item.name).symlink_to(item.resolve())
        text = (src / "config.pbtxt").read_text()
        text = re.sub(r"^\s*gpus: \[[^\]]*\]\n", "", text.replace("KIND_GPU", "KIND_CPU"), flags=re.M)
        (dst / "config.pbtxt").write_text(text)
        with TritonServer(tmp, start_timeout=timeout, install=install) as server:
            cpu = verdict_of(server, name)
    note = "checked with CPU instances: this machine has no GPU"
    return TritonVerdict(name, cpu.status, f"{cpu.reason} ({note})" if cpu.reason else note, cpu.triton_version)
