"""Model paths that are not regular ONNX files are refused before reading; external data stays inside the
model's directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import matmul_external

from trtkit.builder.model import MAX_MODEL_FILE, load_onnx
from trtkit.errors import ModelError


def test_device_file_is_refused_without_reading() -> None:
    # reading /dev/zero never ends: the check must come before any read
    with pytest.raises(ModelError, match="not a regular file"):
        load_onnx("/dev/zero")


def test_fifo_is_refused_without_opening(tmp_path: Path) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    # opening a FIFO for reading blocks until a writer comes; a guard thread unblocks it if the check failed
    def unblock() -> None:
        with open(fifo, "wb"):
            pass

    guard = threading.Timer(30, unblock)
    guard.start()
    try:
        with pytest.raises(ModelError, match="not a regular file"):
            load_onnx(fifo)
    finally:
        guard.cancel()


def test_oversized_file_is_refused_with_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with big.open("wb") as f:
        f.truncate(MAX_MODEL_FILE + 1)  # sparse: no disk space used
    with pytest.raises(ModelError) as info:
        load_onnx(big)
    assert str(MAX_MODEL_FILE) in str(info.value) and "external data" in str(info.value)


def _relocate(model_path: Path, location: str) -> Path:
    proto = onnx.load(str(model_path), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    out = model_path.with_name("moved.onnx")
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_the_model_directory_is_named(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64 * 32 * 4)
    path = _relocate(matmul_external(folder), location)
    with pytest.raises(ModelError) as info:
        load_onnx(path)
    assert repr(location) in str(info.value)
    assert "directory" in str(info.value) or "absolute" in str(info.value)


def test_external_data_linked_from_elsewhere_is_accepted(tmp_path: Path) -> None:
    # hub caches keep the weights as links into a blob folder: the written location is what counts
    folder = tmp_path / "snapshot"
    folder.mkdir()
    path = matmul_external(folder)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (folder / "mm.weights").rename(blobs / "abc")
    (folder / "mm.weights").symlink_to(blobs / "abc")
    assert load_onnx(path).files()[1] == folder / "mm.weights"
