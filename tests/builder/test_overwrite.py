"""No build output overwrites what the build reads: the model, its external weight files (Python API)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import conv_relu, matmul_external

from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.model import load_onnx
from trtkit.errors import ConfigError


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
def test_save_converted_model_onto_the_model_is_refused(rtx: Backend, tmp_path: Path, spelling: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "cnn.onnx"
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), model)
    target: str | Path = model
    if spelling == "relative":
        monkeypatch.chdir(tmp_path)
        target = os.path.join(".", "sub", "..", "cnn.onnx")
        (tmp_path / "sub").mkdir()
    elif spelling == "symlink":
        target = tmp_path / "link.onnx"
        target.symlink_to(model)
    before = model.read_bytes()
    with pytest.raises(ConfigError, match=r"save_converted_model .* is also an input"):
        build_engine(model, config=BuildConfig(precision="fp16"), backend=rtx, progress=False,
                     save_converted_model=target)
    assert model.read_bytes() == before


def test_save_converted_model_onto_external_weights_is_refused(rtx: Backend, tmp_path: Path) -> None:
    path = matmul_external(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"mm\.weights"):
        build_engine(path, shapes={"x": (2, 64)}, config=BuildConfig(precision="fp16"), backend=rtx,
                     progress=False, save_converted_model=tmp_path / "mm.weights")
    # a converted model saved as X writes its big weights to X.data: that must not be an input either
    (tmp_path / "w.onnx.data").symlink_to(tmp_path / "mm.weights")
    with pytest.raises(ConfigError, match="is also an input"):
        build_engine(path, shapes={"x": (2, 64)}, config=BuildConfig(precision="fp16"), backend=rtx,
                     progress=False, save_converted_model=tmp_path / "w.onnx")
    (tmp_path / "w.onnx.data").unlink()
    assert _snapshot(tmp_path) == before


def test_model_files_lists_the_weight_files(tmp_path: Path) -> None:
    path = matmul_external(tmp_path)
    assert load_onnx(path).files() == [path, tmp_path / "mm.weights"]
    assert load_onnx(conv_relu()).files() == []


def test_onnx_output_whose_weight_file_is_an_input_is_refused(tmp_path: Path) -> None:
    """An ONNX output X may get its weights in X.data (save_onnx): that must not be an input either."""
    model = load_onnx(matmul_external(tmp_path))
    (tmp_path / "w.onnx.data").symlink_to(tmp_path / "mm.weights")
    with pytest.raises(ConfigError, match="is also an input"):
        model.refuse_onnx_overwrite(tmp_path / "w.onnx", what="the reduced model")
    model.refuse_onnx_overwrite(tmp_path / "other.onnx", what="the reduced model")
