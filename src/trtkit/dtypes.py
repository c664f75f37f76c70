"""The one dtype table: trtkit names, TensorRT ``DataType`` members, ONNX element types and NumPy dtypes.

trtkit names dtypes with short strings (``"float32"``, ``"float16"``, ``"bfloat16"`` ...). TensorRT is never
imported here: TensorRT enum values are matched by member name, so the table works with TensorRT 10, 11, RTX
and with test doubles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from trtkit.errors import ConfigError, UnsupportedFeatureError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "PRECISION_ORDER",
    "DType",
    "PrecisionKind",
    "all_dtypes",
    "find",
    "from_onnx",
    "from_trt",
    "lookup",
    "onnx_non_numeric",
    "onnx_precision",
    "random_array",
]

RANDOM_INT_HIGH: Final = 8
"""Random integer inputs are uniform in ``[0, RANDOM_INT_HIGH)``: valid as indices and shapes for most models."""


@dataclass(frozen=True)
class DType:
    """One element type as trtkit, TensorRT, ONNX and NumPy name it."""

    name: str
    """trtkit's name, also used in manifests and messages."""
    bits: int
    trt_name: str
    """Member name of ``trt.DataType``."""
    onnx_type: int
    """``onnx.TensorProto`` element type."""
    numpy_name: str | None
    """NumPy dtype name, or None where NumPy has no such type."""
    triton_name: str | None
    """Triton Inference Server's ``TYPE_*`` name, or None where Triton has no such type."""

    @property
    def itemsize(self) -> int:
        """Bytes per element (sub-byte types round up to 1)."""
        return max(1, self.bits // 8)

    def to_numpy(self) -> np.dtype[np.generic]:
        """The NumPy dtype; raises UnsupportedFeatureError for types NumPy lacks (bfloat16, fp8, ...)."""
        import numpy as np

        if self.numpy_name is None:
            raise UnsupportedFeatureError(
                f"dtype {self.name} has no NumPy equivalent; pass such tensors as device arrays "
                "(PyTorch, CuPy) through DLPack instead"
            )
        return np.dtype(self.numpy_name)

    def __str__(self) -> str:
        return self.name


_TABLE: Final[tuple[DType, ...]] = (
    DType("float32", 32, "FLOAT", 1, "float32", "TYPE_FP32"),
    DType("float16", 16, "HALF", 10, "float16", "TYPE_FP16"),
    DType("bfloat16", 16, "BF16", 16, None, "TYPE_BF16"),
    DType("int8", 8, "INT8", 3, "int8", "TYPE_INT8"),
    DType("int32", 32, "INT32", 6, "int32", "TYPE_INT32"),
    DType("int64", 64, "INT64", 7, "int64", "TYPE_INT64"),
    DType("bool", 8, "BOOL", 9, "bool", "TYPE_BOOL"),
    DType("uint8", 8, "UINT8", 2, "uint8", "TYPE_UINT8"),
    DType("float8_e4m3fn", 8, "FP8", 17, None, None),
    DType("int4", 4, "INT4", 22, None, None),
    DType("float4_e2m1", 4, "FP4", 23, None, None),
    DType("float8_e8m0", 8, "E8M0", 24, None, None),
)
_BY_NAME: Final = {d.name: d for d in _TABLE}
_BY_TRT: Final = {d.trt_name: d for d in _TABLE}
_BY_ONNX: Final = {d.onnx_type: d for d in _TABLE}
_ALIASES: Final = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16",
                   "bf16": "bfloat16", "fp8": "float8_e4m3fn", "fp4": "float4_e2m1", "e8m0": "float8_e8m0"}


PrecisionKind: TypeAlias = Literal["float", "quantized"]
# ONNX element types as precisions (what a model "carries"), including types TensorRT has no tensors of.
_ONNX_PRECISIONS: Final[dict[int, tuple[PrecisionKind, str]]] = {
    1: ("float", "fp32"), 10: ("float", "fp16"), 16: ("float", "bf16"), 11: ("float", "fp64"),
    3: ("quantized", "int8"), 2: ("quantized", "uint8"), 17: ("quantized", "fp8"), 18: ("quantized", "fp8"),
    19: ("quantized", "fp8"), 20: ("quantized", "fp8"), 21: ("quantized", "uint4"), 22: ("quantized", "int4"),
    23: ("quantized", "fp4"),
}
PRECISION_ORDER: Final = ("fp32", "fp16", "bf16", "fp64", "int8", "uint8", "fp8", "int4", "uint4", "fp4")
"""Precision names of :func:`onnx_precision`, widest float first."""
_ONNX_NON_NUMERIC: Final = {8: "string", 14: "complex64", 15: "complex128"}


def onnx_precision(elem_type: int) -> tuple[PrecisionKind, str] | None:
    """An ``onnx.TensorProto`` element type as a precision: ``1`` -> ``("float", "fp32")``, ``3`` ->
    ``("quantized", "int8")``, all FP8 variants -> ``("quantized", "fp8")``; None for other types."""
    return _ONNX_PRECISIONS.get(elem_type)


def onnx_non_numeric(elem_type: int) -> str | None:
    """``"string"``, ``"complex64"`` or ``"complex128"`` for those ONNX element types, else None."""
    return _ONNX_NON_NUMERIC.get(elem_type)


def all_dtypes() -> tuple[DType, ...]:
    """Every dtype trtkit knows."""
    return _TABLE


def find(name: str) -> DType | None:
    """Like :func:`lookup` (trtkit names, aliases, and TensorRT member names such as ``HALF``), or None."""
    key = name.lower()
    return _BY_NAME.get(_ALIASES.get(key, key)) or _BY_TRT.get(name.upper())


def lookup(name: str) -> DType:
    """Find a dtype by trtkit name or a common alias (``"fp16"``, ``"half"``, ``"bf16"`` ...)."""
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return _BY_NAME[key]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; expected one of {', '.join(_BY_NAME)}") from None


def from_trt(value: object) -> DType:
    """Map a ``trt.DataType`` member (from any backend) to a :class:`DType`."""
    member = getattr(value, "name", str(value)).rsplit(".", 1)[-1]
    try:
        return _BY_TRT[member]
    except KeyError:
        raise UnsupportedFeatureError(f"TensorRT data type {member} is not known to trtkit") from None


def from_onnx(elem_type: int) -> DType:
    """Map an ``onnx.TensorProto`` element type to a :class:`DType`."""
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise UnsupportedFeatureError(
            f"ONNX element type {elem_type} is not supported by TensorRT "
            "(TensorRT has no float64, uint16/32/64, string or complex tensors)"
        ) from None


def random_array(dtype: DType | np.dtype[np.generic], shape: tuple[int, ...],
                 rng: np.random.Generator) -> npt.NDArray[np.generic]:
    """Reproducible test data: floats standard normal, integers uniform in ``[0, RANDOM_INT_HIGH)``, bools fair
    coin flips. The one generator behind ``trtkit compare``, benchmarks and static buffers."""
    import numpy as np

    npd = dtype.to_numpy() if isinstance(dtype, DType) else np.dtype(dtype)
    if npd.kind == "f":
        return rng.standard_normal(shape).astype(npd)
    if npd.kind in "iu":
        return rng.integers(0, RANDOM_INT_HIGH, size=shape).astype(npd)
    if npd.kind == "b":
        return rng.random(shape) < 0.5
    raise UnsupportedFeatureError(f"cannot generate random values of dtype {npd}")
