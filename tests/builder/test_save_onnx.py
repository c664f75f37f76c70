"""Converted and quantized models are written atomically: a fault while writing leaves the old files intact, a
model's weight file is replaced together with it, the umask gives the modes, and no output overwrites an input."""

from __future__ import annotations

import errno
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.builder import model as model_module
from trtkit.builder.model import save_onnx
from trtkit.errors import ConfigError, ModelError, TrtkitError
from trtkit.tools.quantize import quantize


def matmul(scale: float) -> onnx.ModelProto:
    """x[B, 64] @ W[64, 32], W = arange * scale (8 KiB of weights, enough to go to an external file)."""
    w = numpy_helper.from_array((np.arange(64 * 32, dtype=np.float32) * scale).reshape(64, 32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm0")], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 32])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def weights(path: Path) -> np.ndarray:
    """W of the model at ``path``, read with its external data as any ONNX consumer would."""
    return numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])


@pytest.fixture
def external(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make save_onnx take its >2 GiB path (weights in ``<name>.data``) for these small models."""
    monkeypatch.setattr(model_module, "needs_external_data", lambda proto: True)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _disk_full_midway(proto: Any, path: str, **kwargs: Any) -> None:
    """onnx.save_model that writes part of each file, then finds the disk full."""
    Path(path).write_bytes(b"\x08\x09partial")
    if kwargs.get("save_as_external_data"):
        Path(path).with_name(kwargs["location"]).write_bytes(b"partial weights")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("external_data", [False, True])
def test_fault_while_writing_leaves_the_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  external_data: bool) -> None:
    if external_data:
        monkeypatch.setattr(model_module, "needs_external_data", lambda proto: True)
    path = tmp_path / "m.onnx"
    save_onnx(matmul(1.0), path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ("m.onnx.data" in before) == external_data
    monkeypatch.setattr(onnx, "save_model", _disk_full_midway)
    with pytest.raises(ModelError, match="disk is full") as info:
        save_onnx(matmul(2.0), path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "old files intact, nothing left over"


def test_fault_moving_the_model_puts_its_old_weights_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          external: None) -> None:
    path = tmp_path / "m.onnx"
    save_onnx(matmul(1.0), path)
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ModelError, match=r"m\.onnx"):
        save_onnx(matmul(2.0), path)
    monkeypatch.setattr(os, "replace", real_replace)
    old = numpy_helper.to_array(matmul(1.0).graph.initializer[0])
    assert np.array_equal(weights(path), old), "the old model with its old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_new_pair_replaces_the_old_one(tmp_path: Path, external: None) -> None:
    path = tmp_path / "m.onnx"
    save_onnx(matmul(1.0), path)
    save_onnx(matmul(2.0), path)
    assert np.array_equal(weights(path), numpy_helper.to_array(matmul(2.0).graph.initializer[0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


@pytest.mark.parametrize("external_data", [False, True])
def test_saved_files_follow_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None,
                                      external_data: bool) -> None:
    if external_data:
        monkeypatch.setattr(model_module, "needs_external_data", lambda proto: True)
    save_onnx(matmul(1.0), tmp_path / "m.onnx")
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == ({"m.onnx": 0o644, "m.onnx.data": 0o644} if external_data else {"m.onnx": 0o644})


def test_directory_as_output_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        save_onnx(matmul(1.0), tmp_path)


@pytest.fixture
def fake_modelopt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for modelopt.onnx.quantization whose quantize() doubles the weights."""
    def fake_quantize(*, onnx_path: str, output_path: str, **_: Any) -> None:
        proto = onnx.load(onnx_path)
        w = proto.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, w.name))
        onnx.save(proto, output_path)

    mod = types.ModuleType("modelopt.onnx.quantization")
    mod.quantize = fake_quantize  # type: ignore[attr-defined]
    for name in ("modelopt", "modelopt.onnx"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", mod)


@pytest.mark.parametrize("target", ["m.onnx", "m.onnx.data", "link.onnx"])
def test_quantize_refuses_an_output_over_the_model(tmp_path: Path, fake_modelopt: None, external: None,
                                                   target: str) -> None:
    path = tmp_path / "m.onnx"
    save_onnx(matmul(1.0), path)
    (tmp_path / "link.onnx").symlink_to(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ConfigError, match=r"output_path .* is also an input"):
        quantize(path, np.zeros((2, 64), np.float32), output_path=tmp_path / target)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_quantize_writes_its_output_atomically(tmp_path: Path, fake_modelopt: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    save_onnx(matmul(1.0), src)
    save_onnx(matmul(5.0), out)  # an earlier result
    quantize(src, np.zeros((2, 64), np.float32), output_path=out)
    assert np.array_equal(weights(out), numpy_helper.to_array(matmul(2.0).graph.initializer[0]))

    before = out.read_bytes()
    real_save = onnx.save_model

    def disk_full_on_output(proto: Any, path: Any, **kwargs: Any) -> None:
        if Path(path).name == out.name:
            _disk_full_midway(proto, path, **kwargs)
        real_save(proto, path, **kwargs)

    monkeypatch.setattr(onnx, "save_model", disk_full_on_output)
    with pytest.raises(TrtkitError, match="disk is full"):
        quantize(src, np.zeros((2, 64), np.float32), output_path=out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]


def test_big_converted_model_is_saved_with_its_weights(tmp_path: Path, external: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A converted model over 2 GiB is kept in a temporary folder, its weights in a file there; saving it must
    write the weights beside the output, not name the temporary file."""
    pytest.importorskip("onnxconverter_common")
    from trtkit.builder import conversion
    from trtkit.builder.conversion import convert_model

    monkeypatch.setattr(conversion, "needs_external_data", lambda proto: True)
    converted = convert_model(matmul(0.5), "fp16", converter="onnxconverter")
    out = converted.save(tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "out.onnx.data"]
    assert weights(out).dtype == np.float16
    np.testing.assert_array_equal(weights(out), (np.arange(64 * 32) * 0.5).reshape(64, 32).astype(np.float16))
