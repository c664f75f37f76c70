"""Quantized and converted models: :func:`quantize` makes an INT8/FP8 Q/DQ model from calibration data through
NVIDIA ModelOpt; :func:`check_conversion` compares a converted (or quantized) model with the FP32 one on the CPU.

Both run models, so they are tools: the builder only converts (:mod:`trtkit.builder.conversion`) and builds.
See ``docs/precision.md``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from trtkit.builder.model import ModelSource, OnnxModel, load_onnx, save_onnx
from trtkit.builder.precision import INSTALL_MODELOPT
from trtkit.deps import require
from trtkit.errors import ConfigError, InputError, ModelError
from trtkit.tools.compare import CompareReport, compare
from trtkit.tools.metrics import DEFAULT_TOLERANCES, Tolerance

__all__ = ["CalibrationData", "QuantPrecision", "check_conversion", "quantize"]

QuantPrecision: TypeAlias = Literal["int8", "fp8"]
CalibrationData: TypeAlias = (
    "npt.NDArray[np.generic] | Mapping[str, npt.ArrayLike] | Iterable[Mapping[str, npt.ArrayLike]]"
)
"""One array (single-input models), a mapping of input name to array, or an iterable of such mappings."""


def _calibration_arrays(data: CalibrationData, input_names: Sequence[str]) -> dict[str, npt.NDArray[np.generic]]:
    if isinstance(data, np.ndarray):
        if len(input_names) != 1:
            raise InputError(f"one calibration array given, but the model has inputs {list(input_names)}; pass "
                             "a mapping of input name to array")
        return {input_names[0]: data}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    batches: dict[str, list[npt.NDArray[np.generic]]] = {}
    for item in data:
        if not isinstance(item, Mapping):
            raise InputError("calibration data must be an array, a mapping of input name to array, or an "
                             f"iterable of such mappings; got an item of type {type(item).__name__}")
        for k, v in item.items():
            batches.setdefault(str(k), []).append(np.asarray(v))
    if not batches:
        raise InputError("the calibration data iterator yielded nothing")
    return {k: np.concatenate(v, axis=0) for k, v in batches.items()}


def quantize(
    model: ModelSource | OnnxModel,
    calibration_data: CalibrationData,
    *,
    precision: QuantPrecision = "int8",
    calibration_method: str | None = None,
    op_types_to_exclude: Sequence[str] | None = None,
    output_path: str | os.PathLike[str] | None = None,
) -> OnnxModel:
    """Post-training quantization to INT8 or FP8 with NVIDIA ModelOpt: returns a Q/DQ model to build.

    ``calibration_data``: an array (single-input models), a mapping of input name to array (batches stacked
    on axis 0), or an iterable of input mappings (concatenated). TensorRT's implicit INT8 calibrators are not
    offered: deprecated in TensorRT 10.1 and removed in 11.

    Raises:
        ConfigError: a precision other than int8 or fp8, or ``output_path`` is the model or one of its weight
            files.
        DependencyError: ModelOpt is not installed.
        InputError: the calibration data has the wrong form.
        ModelError: ModelOpt failed on this model, or ``output_path`` cannot be written.
    """
    if precision not in ("int8", "fp8"):
        raise ConfigError(f"quantize supports int8 and fp8, not {precision!r}")
    mo = require("modelopt.onnx.quantization", purpose="quantize", install=INSTALL_MODELOPT)
    onnx = require("onnx", purpose="quantize", install="pip install onnx")
    src = load_onnx(model)
    if output_path is not None:
        src.refuse_onnx_overwrite(output_path, what="output_path")
    arrays = _calibration_arrays(calibration_data, [i.name for i in src.inputs()])
    with tempfile.TemporaryDirectory(prefix="trtkit-quantize-") as tmp:
        path = save_onnx(src.proto_with_weights(), os.path.join(tmp, "model.onnx"))
        out = os.path.join(tmp, f"model.{precision}.onnx")
        try:
            mo.quantize(onnx_path=str(path), quantize_mode=precision, calibration_data=arrays,
                        calibration_method=calibration_method,
                        op_types_to_exclude=list(op_types_to_exclude) if op_types_to_exclude else None,
                        output_path=out)
        except Exception as exc:
            raise ModelError(f"ModelOpt could not quantize {src.name} to {precision}: {exc}") from exc
        result = onnx.load(out)
    if output_path is not None:
        save_onnx(result, output_path)  # staged and moved in: a fault leaves any old file as it was
    return load_onnx(result)


def check_conversion(
    fp32_model: ModelSource | OnnxModel,
    converted_model: ModelSource | OnnxModel,
    *,
    inputs: Mapping[str, npt.ArrayLike] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    precision: str = "fp16",
    tolerance: Tolerance | None = None,
    evaluator: Literal["auto", "onnxruntime", "reference"] = "auto",
) -> CompareReport:
    """Run the FP32 model and the converted model on the CPU with the same inputs and compare the outputs.

    :func:`trtkit.tools.compare.compare` with a converted model as the candidate. Inputs are ``inputs`` or
    generated (seeded); dynamic dims need ``shapes``. The converted model runs on ONNX Runtime's CPU provider
    (which computes nodes that lack an FP16 kernel in FP32 after inserting casts), or on ONNX's reference
    evaluator where ONNX Runtime cannot run it or when ``evaluator="reference"`` (NumPy arithmetic in the model's
    own types; slow on large models). Outputs are judged by ``tolerance``, default
    ``trtkit.tools.metrics.DEFAULT_TOLERANCES[precision]``.

    Raises:
        ConfigError: no tolerance is known for ``precision``.
        ShapeError: dynamic dims without a shape.
        InputError: inputs that do not match the model.
    """
    if tolerance is None and precision not in DEFAULT_TOLERANCES:
        raise ConfigError(
            f"no default tolerance for precision {precision!r}; known: {', '.join(DEFAULT_TOLERANCES)}; "
            "or pass tolerance=Tolerance(...)"
        )
    return compare(fp32_model, converted_model, inputs=inputs, shapes=shapes, seed=seed,
                   precision=precision, tolerance=tolerance, evaluator=evaluator)  # type: ignore[arg-type]
