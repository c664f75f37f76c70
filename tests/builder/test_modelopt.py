"""The NVIDIA ModelOpt paths of trtkit.builder.conversion and trtkit.tools.quantize, for real with TensorRT-RTX
on the CPU.

ModelOpt pulls in PyTorch, so it is not in the dev extra: these tests run where ``nvidia-modelopt[onnx]``
is installed and skip elsewhere with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from test_precision import resnet_like

from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.tools.quantize import check_conversion, quantize

pytest.importorskip("modelopt.onnx.autocast",
                    reason="NVIDIA ModelOpt is not installed (pip install 'nvidia-modelopt[onnx]')")

SHAPES = {"image": (1, 3, 64, 64)}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("modelopt") / "cnn.onnx"
    onnx.save(resnet_like(), path)
    return path


def _image(seed: int = 0) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).standard_normal(SHAPES["image"]).astype(np.float32)}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_conversion_builds_smaller_and_stays_accurate(rtx: Backend, cnn: Path, tmp_path: Path,
                                                               precision: str) -> None:
    fp32 = build_engine(cnn, shapes=SHAPES, backend=rtx, progress=False)
    converted = tmp_path / f"cnn.{precision}.onnx"
    built = build_engine(cnn, shapes=SHAPES, config=BuildConfig(precision=precision, converter="modelopt"),
                         backend=rtx, progress=False, save_converted_model=converted)
    record = built.manifest.extra["precision"]["conversion"]
    assert record["tool"] == "modelopt" and record["precision"] == precision
    assert 0.4 < len(built.plan) / len(fp32.plan) < 0.65  # weights dominate this model: about half
    assert check_conversion(cnn, converted, inputs=_image(), precision=precision).passed


def test_int8_calibration_gives_a_qdq_model_that_builds(rtx: Backend, cnn: Path) -> None:
    calibration = np.random.default_rng(1).standard_normal((16, 3, 64, 64)).astype(np.float32)
    q = quantize(cnn, {"image": calibration}, precision="int8", quantizer="modelopt").model
    ops = {n.op_type for n in q.proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    built = build_engine(q, shapes=SHAPES, backend=rtx, progress=False)
    assert "int8" in built.manifest.extra["precision"]["model_carries"]["quantized"]
    assert check_conversion(cnn, q, inputs=_image(), precision="int8").passed
