"""trtkit.tools.quantize through NVIDIA ModelOpt (INT8 and FP8), for real with TensorRT-RTX on the CPU.

ModelOpt pulls in PyTorch, so it is not in the dev extra: these tests run where ``nvidia-modelopt[onnx]`` is
installed and skip elsewhere with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from test_quantize import weight_cnn

from trtkit.backend import Backend
from trtkit.builder import build_engine
from trtkit.errors import ConfigError
from trtkit.tools.quantize import quantize, resolve_quantizer

pytest.importorskip("modelopt.onnx.quantization",
                    reason="NVIDIA ModelOpt is not installed (pip install 'nvidia-modelopt[onnx]')")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("modelopt") / "cnn.onnx"
    onnx.save(weight_cnn(), path)
    return path


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 3, 16, 16)).astype(np.float32)


def test_auto_picks_modelopt_when_installed() -> None:
    assert resolve_quantizer("auto", "int8")[0] == "modelopt"
    assert resolve_quantizer("auto", "fp8")[0] == "modelopt"


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "method"), [("int8", "minmax"), ("int8", "entropy"), ("fp8", "minmax")])
def test_modelopt_quantizes_and_builds(rtx: Backend, cnn: Path, precision: str, method: str) -> None:
    result = quantize(cnn, {"image": _images(16, 1)}, precision=precision, method=method,  # type: ignore[arg-type]
                      quantizer="modelopt", val_data={"image": _images(4, 2)})
    assert result.quantizer == "modelopt" and result.precision == precision and result.method == method
    assert result.quantized_ops.get("Conv", 0) > 0
    assert result.accuracy is not None and result.accuracy.ran
    built = build_engine(result.model, backend=rtx, progress=False)
    assert precision in built.manifest.extra["precision"]["model_carries"]["quantized"]


def test_percentile_is_not_a_modelopt_method(cnn: Path) -> None:
    with pytest.raises(ConfigError, match="minmax or entropy"):
        quantize(cnn, {"image": _images(2, 1)}, method="percentile", quantizer="modelopt")
