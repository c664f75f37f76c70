"""Quantized and converted models: :func:`quantize` makes an INT8/FP8 Q/DQ model from calibration data, through
ONNX Runtime's static quantization (INT8, the default install) or NVIDIA ModelOpt (INT8 and FP8, when installed);
:func:`check_conversion` compares a converted (or quantized) model with the FP32 one on the CPU.

Both run models, so they are tools: the builder only converts (:mod:`trtkit.builder.conversion`) and builds.
See ``docs/quantization.md``.
"""

from trtkit.tools.quantize._api import check_conversion, quantize, resolve_quantizer
from trtkit.tools.quantize._calibration import CalibrationData, CalibrationSet, load_calibration
from trtkit.tools.quantize._result import QuantizeResult
from trtkit.tools.quantize._types import Quantizer, QuantMethod, QuantPrecision

__all__ = [
    "CalibrationData", "CalibrationSet", "QuantMethod", "QuantPrecision", "QuantizeResult", "Quantizer",
    "check_conversion", "load_calibration", "quantize", "resolve_quantizer",
]

for _obj in (CalibrationSet, QuantizeResult, check_conversion, load_calibration, quantize, resolve_quantizer):
    _obj.__module__ = __name__
del _obj
