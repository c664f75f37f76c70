"""``trtkit doctor``: a report that always exits 0 and says why engines cannot run and what to install."""

from __future__ import annotations

import json
import platform
from typing import Any

import pytest

import trtkit.gpu
import trtkit.runtime.compat
from trtkit import __version__
from trtkit.backend import Backend
from trtkit.cli import doctor
from trtkit.cli.main import main
from trtkit.errors import DependencyError
from trtkit.gpu import DeviceInfo


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["doctor", "--json", *args]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str, cc: tuple[int, int]) -> None:
    info = DeviceInfo(0, name, cc, 80 << 30)

    def device_info(index: int = 0) -> DeviceInfo:
        return info

    monkeypatch.setattr(trtkit.gpu, "device_count", lambda: 1)
    monkeypatch.setattr(trtkit.runtime.compat, "no_gpu_reason", lambda: None)
    for module in (trtkit.gpu, trtkit.runtime.compat):
        monkeypatch.setattr(module, "device_info", device_info)


def test_doctor_reports_python_trtkit_and_backend_versions(rtx: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys)
    assert data["trtkit"] == __version__
    assert data["python"]["version"] == platform.python_version()
    rows = {b["name"]: b for b in data["backends"]}
    assert rows["tensorrt_rtx"]["installed"] is True
    assert rows["tensorrt_rtx"]["version"] == rtx.trt.__version__
    assert rows["tensorrt_rtx"]["features"]["always_strongly_typed"] is True
    if not rows["tensorrt"]["installed"]:
        assert "pip install" in rows["tensorrt"]["install"]
    packages = {p["name"]: p["version"] for p in data["packages"]}
    assert packages["numpy"] == __import__("numpy").__version__


def test_doctor_on_a_machine_without_gpu_explains_and_exits_0(rtx: Backend, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trtkit.gpu, "device_count", lambda: 0)
    monkeypatch.setattr(trtkit.runtime.compat, "no_gpu_reason", lambda: trtkit.gpu.NO_GPU_MESSAGE)
    assert main(["doctor", "--backend", "rtx"]) == 0
    out = capsys.readouterr().out
    assert f"TensorRT-RTX {rtx.version}" in out
    assert "Build engines here: yes" in out
    assert "Run engines here:   no: this machine has no usable NVIDIA GPU or CUDA driver" in out
    assert "run them on a machine with a supported NVIDIA GPU" in out


def test_doctor_says_rtx_cannot_run_on_compute_capability_9(rtx: Backend, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", (9, 0))
    data = run_json(capsys, "--backend", "tensorrt_rtx")
    (g,) = data["gpus"]
    assert (g["name"], g["compute_capability"], g["memory_gib"]) == ("NVIDIA H100 80GB HBM3", "9.0", 80.0)
    assert g["can_run"]["tensorrt_rtx"] is False
    assert "compute capability 9.0" in g["reasons"]["tensorrt_rtx"]
    assert data["can_run"] is False
    assert any("pip install 'tensorrt>=10.1'" in fix for fix in data["fixes"])
    assert not any("trtkit[" in fix for fix in data["fixes"])  # trtkit is not on PyPI


def test_doctor_says_rtx_can_run_on_an_ada_gpu(rtx: Backend, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, "NVIDIA GeForce RTX 4090", (8, 9))
    assert main(["doctor", "--backend", "tensorrt_rtx"]) == 0
    out = capsys.readouterr().out
    assert "0: NVIDIA GeForce RTX 4090, compute capability 8.9" in out
    assert "tensorrt_rtx: can run engines" in out
    assert "Run engines here:   yes" in out


def test_doctor_names_missing_packages(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "onnxruntime" else real(dist))
    data = run_json(capsys)
    assert any(fix.startswith("pip install onnxruntime") for fix in data["fixes"])


def test_doctor_without_any_backend_still_exits_0(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str | None = None) -> Backend:
        raise DependencyError("no TensorRT backend is installed")

    monkeypatch.setattr(doctor, "get_backend", missing)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Build engines here: no" in out
    assert "Install a TensorRT backend: pip install 'tensorrt>=10.1'" in out
    assert "pip install tensorrt-rtx-cu12" in out and "'trtkit[" not in out
