"""The option vocabularies of :mod:`trtkit.tools.quantize`."""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = ["QuantMethod", "QuantPrecision", "Quantizer"]

QuantPrecision: TypeAlias = Literal["int8", "fp8"]
QuantMethod: TypeAlias = Literal["minmax", "entropy", "percentile"]
Quantizer: TypeAlias = Literal["auto", "onnxruntime", "modelopt"]
