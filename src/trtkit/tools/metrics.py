"""Accuracy metrics and per-output verdicts: plain NumPy, no TensorRT, no ONNX.

:func:`max_abs_error`, :func:`mean_abs_error`, :func:`max_rel_error`, :func:`mismatch_count` and
:func:`cosine_similarity` are usable on their own; :func:`compare_outputs` applies them to every output and
judges each with a :class:`Tolerance` (:data:`DEFAULT_TOLERANCES` holds one per precision).
:func:`trtkit.tools.compare.compare` runs the models whose outputs it compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from trtkit.errors import ConfigError, ShapeError
from trtkit.profiles import format_shape

__all__ = [
    "DEFAULT_TOLERANCES",
    "Array",
    "OutputComparison",
    "Tolerance",
    "compare_outputs",
    "cosine_similarity",
    "max_abs_error",
    "max_rel_error",
    "mean_abs_error",
    "mismatch_count",
]

Array: TypeAlias = npt.NDArray[np.generic]
"""A NumPy array of any element type."""
_F64: TypeAlias = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tolerance:
    """When an output passes.

    It passes when it has the reference's shape, holds no NaN or infinity where the reference holds another
    value, at most ``max_mismatch`` (a fraction) of its elements break ``|got - ref| <= atol + rtol * |ref|``
    (``numpy.isclose``; skipped when ``rtol`` and ``atol`` are None), and its cosine similarity to the
    reference is at least ``min_cosine``. When the reference is all within ``atol`` of zero the cosine means
    nothing and the output is "not checked" rather than passed (an ``atol`` of 0 checks an all-zero reference
    exactly).

    Raises:
        ConfigError: only one of ``rtol``/``atol`` is None, or a value is out of range.
    """

    rtol: float | None
    atol: float | None
    min_cosine: float = 0.0
    max_mismatch: float = 0.0

    def __post_init__(self) -> None:
        if (self.rtol is None) != (self.atol is None):
            raise ConfigError(f"Tolerance(rtol={self.rtol}, atol={self.atol}): give both rtol and atol, or neither "
                             "to check the cosine similarity only")
        if (self.rtol is not None and self.rtol < 0) or (self.atol is not None and self.atol < 0):
            raise ConfigError(f"Tolerance(rtol={self.rtol}, atol={self.atol}): tolerances must be >= 0")
        if not 0.0 <= self.max_mismatch <= 1.0:
            raise ConfigError(f"Tolerance(max_mismatch={self.max_mismatch}): expected a fraction in [0, 1]")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"Tolerance(min_cosine={self.min_cosine}): expected a value in [-1, 1]")

    @property
    def elementwise(self) -> bool:
        """Whether elements are checked against ``atol + rtol * |ref|`` (else only the cosine)."""
        return self.rtol is not None and self.atol is not None

    def describe(self) -> str:
        """``"rtol 0.01, atol 0.001, mismatched <= 1%, cosine >= 0.999"``."""
        parts = [f"rtol {self.rtol:g}, atol {self.atol:g}" if self.elementwise else "no elementwise bound"]
        if self.elementwise:
            parts.append(f"mismatched <= {self.max_mismatch * 100:g}%")
        if self.min_cosine > 0:
            parts.append(f"cosine >= {self.min_cosine:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, float | None]:
        return {"rtol": self.rtol, "atol": self.atol, "min_cosine": self.min_cosine,
                "max_mismatch": self.max_mismatch}


DEFAULT_TOLERANCES: Final[Mapping[str, Tolerance]] = {
    # Reordered FP32 sums and Winograd/FFT kernels, not FP32 rounding (2^-24), set the error here.
    "fp32": Tolerance(rtol=1e-4, atol=1e-5, min_cosine=0.99999),
    # TF32 rounds matmul/conv inputs to FP16's 10 mantissa bits (unit roundoff 2^-11 = 4.9e-4), so TF32 gets
    # FP16's tolerances: about 20 roundings' worth. Steep activations flip a few elements: hence the fraction.
    "tf32": Tolerance(rtol=1e-2, atol=1e-3, min_cosine=0.999, max_mismatch=0.01),
    "fp16": Tolerance(rtol=1e-2, atol=1e-3, min_cosine=0.999, max_mismatch=0.01),
    # BF16 keeps 7 mantissa bits (unit roundoff 2^-8 = 3.9e-3), eight times coarser than FP16.
    "bf16": Tolerance(rtol=5e-2, atol=1e-2, min_cosine=0.99, max_mismatch=0.01),
    # Quantization error is not bounded per element: cosine only.
    "int8": Tolerance(rtol=None, atol=None, min_cosine=0.98),
    "fp8": Tolerance(rtol=None, atol=None, min_cosine=0.98),
}
"""Default tolerances by precision.

``tf32`` is FP32 with TF32 allowed, TensorRT's default for FP32 builds. Reasons in ``docs/guides/compare.md``
and ``docs/precision.md``.
"""


# ---- metrics (pure NumPy) ------------------------------------------------------------------------------------


def _pair(actual: npt.ArrayLike, expected: npt.ArrayLike) -> tuple[_F64, _F64]:
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise ShapeError(f"cannot compare arrays of shapes {a.shape} and {e.shape}")
    return a.astype(np.float64, copy=False), e.astype(np.float64, copy=False)


def _abs_diff(a: _F64, e: _F64) -> _F64:
    """``|a - e|``, 0 where both are NaN or the same infinity."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
    return np.where((np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e)), 0.0, diff)


def max_abs_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """``max |actual - expected|`` in float64; 0.0 for empty arrays, NaN when either holds a NaN at that spot."""
    a, e = _pair(actual, expected)
    return float(np.max(_abs_diff(a, e))) if a.size else 0.0


def mean_abs_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """``mean |actual - expected|`` in float64; 0.0 for empty arrays, NaN when either holds a NaN at one spot only."""
    a, e = _pair(actual, expected)
    return float(np.mean(_abs_diff(a, e))) if a.size else 0.0


def max_rel_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """``max |actual - expected| / |expected|`` over elements where ``expected != 0``.

    Elements where the reference is exactly zero are left out (their error shows in :func:`max_abs_error`);
    0.0 when no element is left.
    """
    a, e = _pair(actual, expected)
    keep = e != 0
    if not np.any(keep):
        return 0.0
    a, e = a[keep], e[keep]
    with np.errstate(invalid="ignore"):
        rel = np.abs(a - e) / np.abs(e)
        rel = np.where((np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e)), 0.0, rel)
    return float(np.max(rel))


def mismatch_count(actual: npt.ArrayLike, expected: npt.ArrayLike, *, rtol: float, atol: float) -> int:
    """Elements where ``|actual - expected| > atol + rtol * |expected|`` (``numpy.allclose``'s test).

    NaN matches NaN; a NaN on one side only is a mismatch; infinities match when equal.
    """
    a, e = _pair(actual, expected)
    return int(np.count_nonzero(~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)))


def cosine_similarity(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """Cosine of the angle between the flattened arrays, in float64.

    1.0 when both are all zero, 0.0 when only one is; NaN when either holds a non-finite value.
    """
    a, e = _pair(actual, expected)
    a, e = a.ravel(), e.ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return float("nan")
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    if na == 0.0 and ne == 0.0:
        return 1.0
    if na == 0.0 or ne == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, e) / (na * ne), -1.0, 1.0))


@dataclass(frozen=True)
class OutputComparison:
    """How one output of the candidate compares with the reference, judged by :attr:`tolerance`."""

    name: str
    shape: tuple[int, ...]
    """The reference output's shape."""
    dtype: str
    """The candidate output's dtype."""
    size: int
    max_abs: float
    max_rel: float
    mean_abs: float
    mismatches: int
    """Elements outside ``atol + rtol * |ref|`` (0 when the tolerance checks the cosine only)."""
    cosine: float
    """Cosine similarity over the elements finite in both outputs."""
    tolerance: Tolerance
    nonfinite: int = 0
    """Candidate elements that are NaN or infinite where the reference holds another value."""
    cosine_checked: bool = True
    """False when the reference is all within ``atol`` of zero (or has no finite element), where the cosine
    means nothing; the output is then :attr:`status` ``"not_checked"`` unless it fails otherwise."""
    problem: str | None = None
    """Why the output could not be compared element by element (missing, shape differs), else None."""

    @property
    def failures(self) -> tuple[str, ...]:
        """Why the output fails its tolerance; empty when it passes."""
        if self.problem is not None:
            return (self.problem,)
        t, found = self.tolerance, []
        if self.nonfinite:
            found.append(f"{self.nonfinite} NaN/inf where the reference has none")
        if self.mismatches > t.max_mismatch * self.size:
            found.append(f"{self.mismatches}/{self.size} elements outside tolerance "
                         f"(max {t.max_mismatch * 100:g}%)")
        if self.cosine_checked and not self.cosine >= t.min_cosine:
            found.append(f"cosine {self.cosine:.6f} < {t.min_cosine:g}")
        return tuple(found)

    @property
    def checked(self) -> bool:
        """Whether the comparison meant something: False when the reference holds no finite value farther than
        ``atol`` from zero (a candidate near zero matches it whatever it computes)."""
        return self.problem is not None or self.cosine_checked

    @property
    def status(self) -> Literal["pass", "fail", "not_checked"]:
        """``"fail"`` when :attr:`failures` is not empty, else ``"not_checked"`` when nothing meaningful was
        compared (see :attr:`checked`), else ``"pass"``."""
        if self.failures:
            return "fail"
        return "pass" if self.checked else "not_checked"

    @property
    def passed(self) -> bool:
        """True only for ``status == "pass"``: an output that was not really checked has not passed."""
        return self.status == "pass"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype, "size": self.size,
            "max_abs": self.max_abs, "max_rel": self.max_rel, "mean_abs": self.mean_abs,
            "mismatches": self.mismatches, "cosine": self.cosine, "nonfinite": self.nonfinite,
            "cosine_checked": self.cosine_checked, "tolerance": self.tolerance.to_dict(), "status": self.status,
            "passed": self.passed,
            "failures": list(self.failures), "problem": self.problem,
        }


def _compare_one(name: str, got: Array, ref: Array, tolerance: Tolerance) -> OutputComparison:
    a, e = _pair(got, ref)
    both = np.isfinite(a) & np.isfinite(e)
    nonfinite = int(np.count_nonzero(~np.isfinite(a) & ~(np.isnan(a) & np.isnan(e)) & (a != e)))
    mismatches = 0
    if tolerance.rtol is not None and tolerance.atol is not None:
        mismatches = mismatch_count(a, e, rtol=tolerance.rtol, atol=tolerance.atol)
    finite_ref = np.abs(e[np.isfinite(e)])
    # The cosine means something when the reference leaves the atol band around zero; with atol 0 an all-zero
    # reference is checked exactly (cosine 1 only when the candidate is all zero too).
    checked = finite_ref.size > 0 and (float(finite_ref.max()) > (tolerance.atol or 0.0) or tolerance.atol == 0)
    return OutputComparison(
        name=name, shape=ref.shape, dtype=got.dtype.name, size=ref.size,
        max_abs=max_abs_error(a, e), max_rel=max_rel_error(a, e), mean_abs=mean_abs_error(a, e),
        mismatches=mismatches, cosine=cosine_similarity(a[both], e[both]), tolerance=tolerance,
        nonfinite=nonfinite, cosine_checked=checked,
    )


def compare_outputs(
    actual: Mapping[str, npt.ArrayLike], expected: Mapping[str, npt.ArrayLike], *, tolerance: Tolerance
) -> list[OutputComparison]:
    """Compare every output of ``expected`` (the reference) with the same-named output of ``actual``."""
    nan = float("nan")
    results: list[OutputComparison] = []
    for name, ref_like in expected.items():
        ref = np.asarray(ref_like)
        if name not in actual:
            results.append(OutputComparison(name, ref.shape, "-", ref.size, nan, nan, nan, ref.size, nan, tolerance,
                                            problem="the candidate has no output of this name"))
            continue
        got = np.asarray(actual[name])
        if got.shape != ref.shape:
            results.append(OutputComparison(
                name, ref.shape, got.dtype.name, ref.size, nan, nan, nan, ref.size, nan, tolerance,
                problem=f"shape {format_shape(got.shape)} differs from the reference's {format_shape(ref.shape)}",
            ))
            continue
        results.append(_compare_one(name, got, ref, tolerance))
    return results
