"""One message for "no GPU here", whichever entry point meets it, and it does not blame the driver's version."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from trtkit import gpu
from trtkit.backend import Backend
from trtkit.cli.main import main
from trtkit.engine import Engine
from trtkit.errors import CudaError
from trtkit.runtime.compat import run_blocker


class _Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class _NoGpuCudart:
    def __init__(self, status: _Status) -> None:
        self.status = status

    def cudaGetDeviceCount(self) -> tuple[_Status, int]:
        return self.status, 0

    def cudaGetDevice(self) -> tuple[_Status, int]:  # fails the same way without a driver or a device
        return self.status, 0

    def cudaGetErrorString(self, status: _Status) -> tuple[_Status, bytes]:
        return _Status.cudaSuccess, b"CUDA driver version is insufficient for CUDA runtime version"


@pytest.fixture(params=[_Status.cudaErrorInsufficientDriver, _Status.cudaErrorNoDevice])
def no_gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with cuda-python but no NVIDIA driver (or no device)."""
    monkeypatch.setattr(gpu, "cudart", lambda: _NoGpuCudart(request.param))
    monkeypatch.setattr(gpu, "_driver_present", lambda: False)


@pytest.fixture
def engine_file(rtx: Backend, tmp_path: Path) -> Path:
    from trtkit.builder import build_engine
    from trtkit.manifest import write_engine_file

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    built = build_engine(model.SerializeToString(), backend=rtx, progress=False)
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    return write_engine_file(tmp_path / "m.engine", built.plan, built.manifest)


def _assert_the_message(text: str) -> None:
    assert text.startswith(gpu.NO_GPU_MESSAGE) or f": {gpu.NO_GPU_MESSAGE}" in text
    assert "driver version is insufficient" not in text.lower()


def test_python_entry_points_say_the_same(no_gpu: None, rtx: Backend, engine_file: Path) -> None:
    with pytest.raises(CudaError) as loaded:
        Engine.load(engine_file, backend=rtx)
    _assert_the_message(loaded.value.message)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    with pytest.raises(CudaError) as built:
        Engine.from_onnx(model, backend=rtx, cache=False, progress=False)
    assert built.value.message == loaded.value.message
    blocker = run_blocker(rtx)  # what compare and demo report
    assert blocker == loaded.value.message


@pytest.mark.parametrize("command", [["run", "--input", "x={npy}"], ["bench"]])
def test_cli_entry_points_say_the_same(no_gpu: None, rtx: Backend, engine_file: Path, command: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args: list[Any] = [c.format(npy=engine_file.parent / "x.npy") for c in command]
    rc = main([args[0], str(engine_file), *args[1:], "--backend", "tensorrt_rtx"])
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1
    _assert_the_message(err)


def test_an_old_driver_is_called_an_old_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "cudart", lambda: _NoGpuCudart(_Status.cudaErrorInsufficientDriver))
    monkeypatch.setattr(gpu, "_driver_present", lambda: True)
    with pytest.raises(CudaError, match="driver on this machine is too old"):
        gpu.device_info(0)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY"])
def test_run_with_an_empty_input_file_is_a_usage_error_not_an_interrupt(content: bytes, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.npy"
    bad.write_bytes(content)
    rc = main(["run", str(tmp_path / "m.engine"), "--input", f"x={bad}"])
    err = capsys.readouterr().err
    assert rc == 2 and "trtkit: interrupted" not in err and "cannot read" in err


def test_run_with_an_npz_input_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "x.npz", x=np.ones(3))
    rc = main(["run", str(tmp_path / "m.engine"), "--input", f"x={tmp_path / 'x.npz'}"])
    assert rc == 2 and "npz archive" in capsys.readouterr().err
