"""INT8 and FP8 Q/DQ models through NVIDIA ModelOpt (``modelopt.onnx.quantization.quantize``), when installed.

ModelOpt's calibration methods for int8/fp8 are ``"max"`` and ``"entropy"`` (its default); trtkit's ``minmax``
maps to ``"max"``. It has no percentile method.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from trtkit.builder.model import save_onnx
from trtkit.builder.precision import INSTALL_MODELOPT
from trtkit.deps import require
from trtkit.errors import ConfigError, ModelError
from trtkit.tools.quantize._calibration import CalibrationSet

if TYPE_CHECKING:
    import onnx

__all__ = ["MODELOPT_METHODS", "modelopt_version", "quantize_modelopt"]

MODELOPT_METHODS: Final = {"minmax": "max", "entropy": "entropy"}
"""trtkit's method -> ModelOpt's ``calibration_method`` (int8/fp8)."""


def modelopt_version() -> str:
    """The installed ModelOpt's version ("" when none is installed), read without importing it (it imports
    PyTorch)."""
    try:
        return importlib.metadata.version("nvidia-modelopt")
    except importlib.metadata.PackageNotFoundError:
        return ""


def check_modelopt_method(method: str) -> str:
    """ModelOpt's name for ``method`` (ConfigError for one it lacks)."""
    try:
        return MODELOPT_METHODS[method]
    except KeyError:
        raise ConfigError(f"ModelOpt calibrates int8/fp8 with minmax or entropy, not {method!r}; pick one of those, "
                          "or --quantizer onnxruntime for percentile (int8)") from None


def quantize_modelopt(proto: onnx.ModelProto, data: CalibrationSet, *, precision: str, method: str,
                      exclude_ops: Sequence[str], exclude_nodes: Sequence[str]) -> onnx.ModelProto:
    """Quantize ``proto`` with ModelOpt (its documented signature: ``quantize(onnx_path, quantize_mode=...,
    calibration_data=..., calibration_method=..., op_types_to_exclude=..., nodes_to_exclude=...,
    output_path=...)``).

    Raises:
        DependencyError: ModelOpt is not installed.
        ConfigError: a method ModelOpt lacks.
        ModelError: ModelOpt failed on this model.
    """
    mo_method = check_modelopt_method(method)
    mo = require("modelopt.onnx.quantization", purpose=f"{precision} quantization with ModelOpt",
                 install=INSTALL_MODELOPT)
    onnx_mod = require("onnx", purpose="quantizing", install="pip install onnx")
    with tempfile.TemporaryDirectory(prefix="trtkit-quantize-") as tmp:
        path = save_onnx(proto, os.path.join(tmp, "model.onnx"))
        out = os.path.join(tmp, f"model.{precision}.onnx")
        try:
            mo.quantize(onnx_path=str(path), quantize_mode=precision, calibration_data=dict(data.feeds),
                        calibration_method=mo_method, op_types_to_exclude=list(exclude_ops) or None,
                        nodes_to_exclude=list(exclude_nodes) or None, output_path=out)
        except Exception as exc:  # ModelOpt raises whatever its passes raise
            line = " ".join(str(exc).split())[:400]
            raise ModelError(f"ModelOpt could not quantize the model to {precision}: {type(exc).__name__}: "
                             f"{line}") from exc
        result: onnx.ModelProto = onnx_mod.load(out)
    return result
