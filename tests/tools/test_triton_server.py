"""Exports checked by a real Triton Inference Server: the ``tritonserver`` of the nvidia-pytriton wheel, on
free loopback ports, without a GPU and without Triton's TensorRT backend.

A config Triton accepts stops at "unable to find backend library for backend 'tensorrt'" (verdict
``accepted``); one it rejects is refused earlier by Triton's validator. Triton validates model I/O and
instance groups only once the backend library is found, so those mutations are checked with the config's
platform swapped for the Python backend (present in the wheel) and an empty ``model.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.triton_server import assert_gone, group_members, is_loopback, listening_addresses
from test_triton import _batch_tensor, _build, _fake_engine, _range

from trtkit.cli.main import main
from trtkit.errors import ConfigError, DependencyError, EngineFileError, TritonExportError
from trtkit.manifest import TensorInfo, read_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.tools import triton_server
from trtkit.tools.triton import check_with_triton, export_triton, triton_config
from trtkit.tools.triton_server import TritonServer, TritonVerdict, find_tritonserver, verdict_of

pytest.importorskip("pytriton", reason="nvidia-pytriton (the serve extra, in dev) ships the Triton server")

EMPTY_MODEL_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("triton-repo")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TritonServer]:
    """One server for the module (explicit model control: each test writes its own models and loads them)."""
    with TritonServer(repo) as srv:
        yield srv
    assert srv.pid is not None
    assert_gone(srv.pid, (srv.http_port, srv.grpc_port))


@pytest.fixture(scope="module")
def dynamic_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("dyn"), "N", {"x": _range(1, 4, 16)})


def _write(repo: Path, name: str, config: str, *, python: bool = False) -> None:
    """A model directory written by hand (the Triton side of a mutation)."""
    model = repo / name
    shutil.rmtree(model, ignore_errors=True)
    (model / "1").mkdir(parents=True)
    config = re.sub(r'^name: ".*"$', f'name: "{name}"', config, flags=re.M)
    if python:
        config = config.replace('platform: "tensorrt_plan"', 'backend: "python"').replace("KIND_GPU", "KIND_CPU")
        (model / "1" / "model.py").write_text(EMPTY_MODEL_PY)
    else:
        (model / "1" / "model.plan").write_bytes(b"plan")
    (model / "config.pbtxt").write_text(config)


# ---- the server itself ------------------------------------------------------------------------------------


def test_server_uses_loopback_only_and_leaves_nothing_running(tmp_path: Path) -> None:
    srv = TritonServer(tmp_path, metrics=True)
    with srv:
        assert srv.pid is not None and srv.version
        listening = listening_addresses(srv.pid)
        ports = {int(a.rsplit(":", 1)[1]) for a in listening}
        assert {srv.http_port, srv.grpc_port, srv.metrics_port} <= ports
        assert listening and all(is_loopback(a) for a in listening), listening
        assert srv.index() == []
        pid, workdir = srv.pid, srv.log_path.parent
    assert_gone(pid, (srv.http_port, srv.grpc_port, srv.metrics_port))
    assert group_members(pid) == []
    assert not workdir.exists()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with busy, pytest.raises(triton_server.TritonServerError, match=r"exited with status 1 while starting: .*"):
        TritonServer(tmp_path, http_port=busy.getsockname()[1], start_timeout=60).start()


def test_missing_pytriton_is_a_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = triton_server.importlib.util.find_spec
    monkeypatch.setattr(triton_server.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(DependencyError, match="pip install nvidia-pytriton"):
        find_tritonserver()


# ---- the export matrix: every kind of export is accepted -----------------------------------------------------


def _static(tmp: Path) -> Path:
    return _build(tmp, 1, None)


def _multi(tmp: Path) -> Path:
    return _build(tmp, "N", [{"x": _range(1, 2, 4)}, {"x": _range(1, 8, 16)}])


def _multi_min2(tmp: Path) -> Path:
    return _build(tmp, "N", [{"x": _range(1, 2, 4)}, {"x": _range(2, 8, 16)}])


def _full_trt(tmp: Path) -> Path:
    return _fake_engine(tmp, [_batch_tensor("ids", "input", "int32", (-1, -1)),
                              _batch_tensor("logits", "output", "float32", (-1, -1, 7))],
                        [Profile({"ids": ShapeRange((1, 1), (8, 128), (32, 512))})])


def _odd_tensors(tmp: Path) -> Path:
    odd = 'in"put\\0 ünï'
    return _fake_engine(tmp, [_batch_tensor(odd, "input", "float32", (4,)),
                              _batch_tensor("out:0", "output", "float32", (4,))],
                        [Profile({odd: ShapeRange.fixed((4,))})])


def _scalars(tmp: Path) -> Path:
    return _fake_engine(tmp, [_batch_tensor("s_in", "input", "float32", (-1,)),
                              _batch_tensor("s_out", "output", "float32", (-1,))],
                        [Profile({"s_in": ShapeRange((1,), (4,), (8,))})])


MATRIX: dict[str, tuple[Callable[[Path], Path], dict[str, Any]]] = {
    "static": (_static, {}),
    "dynamic": (lambda tmp: _build(tmp, "N", {"x": _range(1, 4, 16)}), {}),
    "dynamic-capped": (lambda tmp: _build(tmp, "N", {"x": _range(1, 4, 16)}),
                       {"max_batch_size": 8, "preferred_batch_sizes": [2, 8], "max_queue_delay_us": 100}),
    "dynamic-no-batcher": (lambda tmp: _build(tmp, "N", {"x": _range(1, 4, 16)}), {"dynamic_batching": False}),
    "batching-off-with-queue": (lambda tmp: _build(tmp, "N", {"x": _range(1, 4, 16)}),
                                {"max_batch_size": 0, "dynamic_batching": True, "max_queue_delay_us": 50}),
    "multi-profile": (_multi, {"instances": 2}),
    "multi-profile-min2": (_multi_min2, {}),
    "full-tensorrt": (_full_trt, {}),
    "odd-tensor-names": (_odd_tensors, {}),
    "batch-only-scalars": (_scalars, {}),
    "odd-name": (_static, {"name": "resnet50-v1.2_fp16"}),
    "leading-dot-name": (_static, {"name": ".hidden-model"}),
    "leading-dash-name": (_static, {"name": "-dash"}),
    "version-0": (_static, {"version": 0}),
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_export_is_accepted_by_triton(case: str, repo: Path, server: TritonServer, tmp_path: Path) -> None:
    make, given = MATRIX[case]
    options = dict(given)
    name = options.pop("name", f"m-{case}")
    result = export_triton(make(tmp_path), repo, name=name, allow_rtx=True, force=True, **options)
    verdict = verdict_of(server, result.model_dir.name)
    assert verdict.status == "accepted", verdict
    assert "unable to find backend library for backend 'tensorrt'" in verdict.reason


# ---- mutations: refused by trtkit and by Triton -------------------------------------------------------------


def _dyn_manifest(engine: Path) -> Any:
    _, manifest = read_engine_file(engine, require_manifest=True)
    return manifest


def _manifest_with(tmp: Path, tensors: list[TensorInfo]) -> Any:
    engine = _fake_engine(tmp, tensors, [Profile({tensors[0].name: ShapeRange.fixed((2, 2))})])
    return _dyn_manifest(engine)


# (trtkit's call that must raise, the exception, how the valid config text is mutated for Triton, python
# backend for the Triton side, what Triton answers)
MUTATIONS: dict[str, tuple[Callable[[Path, Path], object], type[Exception], Callable[[str], str], bool, str]] = {
    "preferred-above-max": (
        lambda e, t: triton_config(_dyn_manifest(e), name="m", preferred_batch_sizes=[4, 17]), TritonExportError,
        lambda c: c.replace("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 4, 17 ]"), False,
        "dynamic batching preferred size must be <= max batch size"),
    "preferred-zero": (
        lambda e, t: triton_config(_dyn_manifest(e), name="m", preferred_batch_sizes=[0]), TritonExportError,
        lambda c: c.replace("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 0 ]"), False,
        "dynamic batching preferred size must be positive"),
    "preferred-without-batching": (
        lambda e, t: triton_config(_dyn_manifest(e), name="m", max_batch_size=0, preferred_batch_sizes=[4]),
        TritonExportError, lambda c: c.replace("max_batch_size: 16", "max_batch_size: 0"), False,
        "dynamic batching preferred size must be <= max batch size"),
    "negative-max-batch": (
        lambda e, t: triton_config(_dyn_manifest(e), name="m", max_batch_size=-1), ConfigError,
        lambda c: c.replace("max_batch_size: 16", "max_batch_size: -1"), False,
        "'max_batch_size' must be non-negative"),
    "zero-dim": (
        lambda e, t: triton_config(_manifest_with(t, [_batch_tensor("a", "input", "float32", (2, 0)),
                                                      _batch_tensor("b", "output", "float32", (2, 2))]), name="m"),
        TritonExportError, lambda c: c.replace("dims: [ 3, 8, 8 ]", "dims: [ 3, 0, 8 ]", 1), True,
        "dimension must be integer >= 1, or -1"),
    "dim-below-minus-one": (
        lambda e, t: triton_config(_manifest_with(t, [_batch_tensor("a", "input", "float32", (2, -3)),
                                                      _batch_tensor("b", "output", "float32", (2, 2))]), name="m"),
        EngineFileError, lambda c: c.replace("dims: [ 3, 8, 8 ]", "dims: [ 3, -3, 8 ]", 1), True,
        "dimension must be integer >= 1, or -1"),
    "type-triton-lacks": (
        lambda e, t: triton_config(_manifest_with(t, [_batch_tensor("a", "input", "float8_e4m3fn", (2, 2)),
                                                      _batch_tensor("b", "output", "float32", (2, 2))]), name="m"),
        TritonExportError, lambda c: c.replace("data_type: TYPE_FP32", "data_type: TYPE_INVALID", 1), True,
        "must specify 'data_type'"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_mutations_are_refused_by_trtkit_and_by_triton(case: str, dynamic_engine: Path, repo: Path,
                                                         server: TritonServer, tmp_path: Path) -> None:
    refuse, error, mutate, python, triton_says = MUTATIONS[case]
    with pytest.raises(error):
        refuse(dynamic_engine, tmp_path)

    valid = triton_config(_dyn_manifest(dynamic_engine), name="m").text
    _write(repo, f"ok-{case}", valid, python=python)
    assert verdict_of(server, f"ok-{case}").ok  # the unmutated config passes the same route
    _write(repo, f"bad-{case}", mutate(valid), python=python)
    verdict = verdict_of(server, f"bad-{case}")
    assert verdict.status == "refused", verdict
    assert triton_says in verdict.reason


def test_a_name_trtkit_refuses_cannot_be_reached_over_http(repo: Path, server: TritonServer,
                                                           dynamic_engine: Path) -> None:
    """Triton's validator takes any directory name, but its HTTP API does not percent-decode: tritonclient
    quotes "my model" as my%20model and Triton looks for that directory. trtkit keeps refusing such names."""
    with pytest.raises(TritonExportError, match="not a valid Triton model name"):
        export_triton(dynamic_engine, repo, name="my model", allow_rtx=True)
    _write(repo, "my model", triton_config(_dyn_manifest(dynamic_engine), name="m").text)
    assert verdict_of(server, "my model").status == "refused"


def test_instance_count_zero_is_where_trtkit_stays_stricter(dynamic_engine: Path, repo: Path,
                                                              server: TritonServer) -> None:
    """Recorded disagreement: Triton turns an instance count < 1 into 1 without a word; trtkit refuses it,
    since the model would not run with the count asked for."""
    with pytest.raises(ConfigError, match="instances must be an integer >= 1"):
        triton_config(_dyn_manifest(dynamic_engine), name="m", instances=0)
    valid = triton_config(_dyn_manifest(dynamic_engine), name="m").text
    _write(repo, "count0", valid.replace("count: 1", "count: 0"), python=True)
    assert verdict_of(server, "count0").status == "loaded"


# ---- check_with_triton and export-triton --check --------------------------------------------------------------


def test_check_with_triton_reports_acceptance_and_refusal(dynamic_engine: Path, tmp_path: Path) -> None:
    result = export_triton(dynamic_engine, tmp_path, name="dyn", allow_rtx=True)
    verdict = check_with_triton(tmp_path, "dyn")
    assert isinstance(verdict, TritonVerdict) and verdict.ok and verdict.status == "accepted"
    assert verdict.line().startswith("config accepted by Triton 2.") and "TensorRT backend is not installed" in \
        verdict.line()
    result.config_path.write_text(result.config_path.read_text().replace("[ 4 ]", "[ 64 ]"))
    refused = check_with_triton(tmp_path, "dyn")
    assert not refused.ok and "preferred size must be <= max batch size" in refused.line()


def test_cli_check(dynamic_engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export-triton", str(dynamic_engine), str(tmp_path / "repo"), "--name", "dyn", "--allow-rtx",
                 "--check"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("triton: ")]
    assert len(lines) == 1
    assert re.fullmatch(r"triton: config accepted by Triton 2\.\d+\.\d+ \(the TensorRT backend is not installed "
                        r"here\)", lines[0])


def test_cli_check_without_pytriton(dynamic_engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = triton_server.importlib.util.find_spec
    monkeypatch.setattr(triton_server.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else real(name, *a))
    code = main(["export-triton", str(dynamic_engine), str(tmp_path / "repo"), "--name", "dyn", "--allow-rtx",
                 "--check"])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "repo" / "dyn" / "config.pbtxt").is_file()  # the export itself is written
    errors = [ln for ln in err.splitlines() if ln.startswith("trtkit: error:")]
    assert len(errors) == 1 and "pip install nvidia-pytriton" in errors[0]


def test_python_runtime_export_is_accepted_and_fails_only_in_initialize_without_a_gpu(
        dynamic_engine: Path, tmp_path: Path) -> None:
    result = export_triton(dynamic_engine, tmp_path, name="dynpy", runtime="python")  # RTX plans are fine here
    version_dir = result.plan_path.parent
    assert sorted(p.name for p in version_dir.iterdir()) == ["model.plan", "model.plan.manifest.json", "model.py"]
    text = result.config_path.read_text()
    assert 'backend: "python"' in text and "tensorrt_plan" not in text
    assert 'key: "trtkit_requires"' in text
    verdict = check_with_triton(tmp_path, "dynpy")
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present: the GPU tests cover loading")
    assert verdict.status == "failed", verdict  # the config and I/O passed; model.py's initialize found no GPU
    assert "CudaError" in verdict.reason and "checked with CPU instances" in verdict.reason
