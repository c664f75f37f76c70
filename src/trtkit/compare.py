"""Accuracy checks: run ONNX Runtime (CPU) as the reference and compare an engine or a second ONNX model with it.

:func:`compare` feeds the same inputs to the reference ONNX model and to the candidate (a TensorRT engine, or
another ONNX model such as an FP16 conversion) and reports, per output, the maximum absolute and relative
error, the number of elements outside tolerance (``numpy.isclose`` semantics) and the cosine similarity.

The metric functions (:func:`max_abs_error`, :func:`max_rel_error`, :func:`mismatch_count`,
:func:`cosine_similarity`) are plain NumPy and usable on their own.

Exit codes of ``trtkit compare`` (also :attr:`CompareReport.exit_code`): 0 within tolerance, 1 error,
2 usage error, 3 the engine cannot run on this machine, 4 outputs differ beyond tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from .dtypes import lookup
from .errors import DependencyError, EngineIncompatibleError, InputError, ModelError, ShapeError
from .profiles import format_shape, parse_shape_spec

if TYPE_CHECKING:
    from .backend import Backend
    from .builder import BuiltEngine
    from .manifest import Manifest
    from .onnx_model import ModelSource, OnnxModel

__all__ = [
    "DEFAULT_TOLERANCES",
    "EXIT_CANNOT_RUN",
    "EXIT_ERROR",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "CompareReport",
    "OutputComparison",
    "Tolerance",
    "compare",
    "compare_outputs",
    "cosine_similarity",
    "generate_inputs",
    "load_inputs",
    "max_abs_error",
    "max_rel_error",
    "mismatch_count",
    "run_onnxruntime",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CANNOT_RUN: Final = 3
EXIT_MISMATCH: Final = 4

Array = npt.NDArray[Any]
ComparePrecision = Literal["fp32", "tf32", "fp16", "bf16"]


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol + rtol * |expected|`` per element (``numpy.isclose``)."""

    rtol: float
    atol: float


DEFAULT_TOLERANCES: Final[Mapping[str, Tolerance]] = {
    # Reordered FP32 sums and Winograd/FFT kernels, not FP32 rounding (2^-24), set the error here.
    "fp32": Tolerance(rtol=1e-4, atol=1e-5),
    # TF32 rounds matmul/conv inputs to FP16's 10 mantissa bits (unit roundoff 2^-11 = 4.9e-4), so TF32 gets
    # FP16's tolerances: about 20 roundings' worth.
    "tf32": Tolerance(rtol=1e-2, atol=1e-3),
    "fp16": Tolerance(rtol=1e-2, atol=1e-3),
    # BF16 keeps 7 mantissa bits (unit roundoff 2^-8 = 3.9e-3), eight times coarser than FP16.
    "bf16": Tolerance(rtol=5e-2, atol=1e-2),
}
"""Default tolerances by precision (the same values as :data:`trtkit.precision.TOLERANCES`).

``tf32`` is FP32 with TF32 allowed, TensorRT's default for FP32 builds. Reasons in ``docs/guides/compare.md``.
"""

_INT_HIGH: Final = 8
"""Generated integer inputs are drawn from ``[0, _INT_HIGH)``."""


# ---- metrics (pure NumPy) ------------------------------------------------------------------------------------


def _pair(actual: npt.ArrayLike, expected: npt.ArrayLike) -> tuple[Array, Array]:
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise ShapeError(f"cannot compare arrays of shapes {a.shape} and {e.shape}")
    return a.astype(np.float64, copy=False), e.astype(np.float64, copy=False)


def max_abs_error(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """``max |actual - expected|`` in float64; 0.0 for empty arrays, NaN when either holds a NaN at that spot."""
    a, e = _pair(actual, expected)
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(e)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan, 0.0, np.abs(a - e))
        same_inf = np.isinf(a) & (a == e)
        diff = np.where(same_inf, 0.0, diff)
    return float(np.max(diff))


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


# ---- report ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputComparison:
    """How one output of the candidate compares with the reference."""

    name: str
    shape: tuple[int, ...]
    """The reference output's shape."""
    dtype: str
    """The candidate output's dtype."""
    size: int
    max_abs: float
    max_rel: float
    mismatches: int
    cosine: float
    rtol: float
    atol: float
    problem: str | None = None
    """Why the output could not be compared element by element (missing, shape differs), else None."""

    @property
    def passed(self) -> bool:
        return self.problem is None and self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype, "size": self.size,
            "max_abs": self.max_abs, "max_rel": self.max_rel, "mismatches": self.mismatches,
            "cosine": self.cosine, "rtol": self.rtol, "atol": self.atol, "passed": self.passed,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class CompareReport:
    """The result of :func:`compare`.

    ``status`` is ``"pass"`` (every output within tolerance), ``"mismatch"`` or ``"not_run"`` (the engine cannot
    run on this machine; :attr:`reason` says why and :attr:`outputs` is empty).
    """

    reference: str
    candidate: str
    precision: str
    rtol: float
    atol: float
    inputs: Mapping[str, tuple[tuple[int, ...], str]]
    """Input name -> (shape, dtype) of what was fed."""
    outputs: tuple[OutputComparison, ...] = ()
    reason: str | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return self.reason is None

    @property
    def passed(self) -> bool:
        return self.ran and all(o.passed for o in self.outputs)

    @property
    def status(self) -> Literal["pass", "mismatch", "not_run"]:
        if not self.ran:
            return "not_run"
        return "pass" if self.passed else "mismatch"

    @property
    def exit_code(self) -> int:
        """0 pass, 3 not run here, 4 mismatch (see the module docstring)."""
        return {"pass": EXIT_OK, "not_run": EXIT_CANNOT_RUN, "mismatch": EXIT_MISMATCH}[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "exit_code": self.exit_code, "reason": self.reason,
            "reference": self.reference, "candidate": self.candidate, "precision": self.precision,
            "rtol": self.rtol, "atol": self.atol, "seed": self.seed,
            "inputs": {n: {"shape": list(s), "dtype": d} for n, (s, d) in self.inputs.items()},
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def format(self) -> str:
        """A human-readable table."""
        lines = [f"reference: {self.reference}", f"candidate: {self.candidate}"]
        feeds = ", ".join(f"{n} {d}[{format_shape(s)}]" for n, (s, d) in self.inputs.items())
        src = f" (generated, seed {self.seed})" if self.seed is not None else ""
        lines.append(f"inputs:    {feeds}{src}")
        lines.append(f"tolerance: {self.precision}: rtol {self.rtol:g}, atol {self.atol:g}")
        if not self.ran:
            lines.append(f"NOT RUN: the engine cannot run on this machine: {self.reason}")
            lines.append("(`trtkit doctor` shows what this machine has; the ONNX Runtime reference did run.)")
            return "\n".join(lines)
        header = f"  {'output':<20} {'shape':<16} {'max abs':>10} {'max rel':>10} {'mismatch':>16} {'cosine':>10}"
        lines.append(header)
        for o in self.outputs:
            if o.problem is not None:
                lines.append(f"  {o.name:<20} FAIL: {o.problem}")
                continue
            mism = f"{o.mismatches}/{o.size}"
            lines.append(
                f"  {o.name:<20} {format_shape(o.shape):<16} {o.max_abs:>10.3g} {o.max_rel:>10.3g} "
                f"{mism:>16} {o.cosine:>10.6f}" + ("" if o.passed else "  FAIL")
            )
        failed = sum(not o.passed for o in self.outputs)
        lines.append("PASS: every output is within tolerance" if self.passed
                     else f"FAIL: {failed} of {len(self.outputs)} output(s) differ beyond tolerance")
        return "\n".join(lines)


def compare_outputs(
    actual: Mapping[str, npt.ArrayLike], expected: Mapping[str, npt.ArrayLike], *, rtol: float, atol: float
) -> list[OutputComparison]:
    """Compare every output of ``expected`` (the reference) with the same-named output of ``actual``."""
    results: list[OutputComparison] = []
    for name, ref_like in expected.items():
        ref = np.asarray(ref_like)
        if name not in actual:
            results.append(OutputComparison(name, ref.shape, "-", ref.size, float("nan"), float("nan"), ref.size,
                                            float("nan"), rtol, atol, "the candidate has no output of this name"))
            continue
        got = np.asarray(actual[name])
        if got.shape != ref.shape:
            results.append(OutputComparison(
                name, ref.shape, got.dtype.name, ref.size, float("nan"), float("nan"), ref.size, float("nan"),
                rtol, atol, f"shape {format_shape(got.shape)} differs from the reference's {format_shape(ref.shape)}",
            ))
            continue
        results.append(OutputComparison(
            name=name, shape=ref.shape, dtype=got.dtype.name, size=ref.size,
            max_abs=max_abs_error(got, ref), max_rel=max_rel_error(got, ref),
            mismatches=mismatch_count(got, ref, rtol=rtol, atol=atol), cosine=cosine_similarity(got, ref),
            rtol=rtol, atol=atol,
        ))
    return results


# ---- inputs ------------------------------------------------------------------------------------------------


def load_inputs(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Read inputs from an ``.npz`` file (one array per input name)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"inputs file {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read inputs from {str(p)!r}: {exc}; expected an .npz written by "
                         "numpy.savez with one array per input name") from exc


def _shapes_arg(shapes: str | Mapping[str, Sequence[int]] | None) -> dict[str, tuple[int, ...]]:
    if shapes is None:
        return {}
    if isinstance(shapes, str):
        return parse_shape_spec(shapes)
    return {name: tuple(int(d) for d in dims) for name, dims in shapes.items()}


def generate_inputs(
    model: ModelSource | OnnxModel,
    *,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, Array]:
    """Random inputs for ``model``'s inputs, reproducible from ``seed``.

    Floats are standard normal, integers uniform in ``[0, 8)``, bools fair coin flips. Dynamic dims take their
    size from ``shapes`` (trtexec syntax ``"x:1x3x224x224"`` or a mapping); static inputs need no entry.

    Raises:
        ShapeError: a dynamic input has no shape, or a given shape contradicts the model.
    """
    from .onnx_model import OnnxModel, load_onnx

    m = model if isinstance(model, OnnxModel) else load_onnx(model)
    given = _shapes_arg(shapes)
    infos = m.inputs()
    unknown = sorted(set(given) - {i.name for i in infos})
    if unknown:
        raise ShapeError(f"shapes name input(s) {', '.join(map(repr, unknown))} that the model does not have; "
                         f"its inputs are {', '.join(i.describe() for i in infos)}")
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for info in infos:
        if info.name in given:
            shape = given[info.name]
            if len(shape) != len(info.shape) or any(d >= 0 and d != s for d, s in zip(info.shape, shape,
                                                                                        strict=False)):
                raise ShapeError(f"shape {format_shape(shape)} for input {info.describe()} does not fit the model")
        elif info.dynamic_axes:
            spec = "x".join(
                (f"<{info.dim_names[i] or 'n'}>" if i < len(info.dim_names) else "<n>") if d < 0 else str(d)
                for i, d in enumerate(info.shape)
            )
            raise ShapeError(
                f"input {info.describe()} has dynamic dims; give its shape, e.g. --shapes {info.name}:{spec} "
                "(Python: shapes={...}), or pass inputs from an .npz file"
            )
        else:
            shape = info.shape
        dtype = lookup(info.dtype).to_numpy()
        if dtype.kind == "f":
            out[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            out[info.name] = rng.integers(0, _INT_HIGH, size=shape).astype(dtype)
        elif dtype.kind == "b":
            out[info.name] = rng.random(shape) < 0.5
        else:  # pragma: no cover - the dtype table has no other NumPy kinds
            raise InputError(f"cannot generate values for input {info.describe()}")
    return out


def _check_inputs(model: OnnxModel, feeds: Mapping[str, Array]) -> None:
    names = [i.name for i in model.inputs()]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown {', '.join(map(repr, extra))}")
        raise InputError(f"inputs do not match the model: {'; '.join(parts)}; the model's inputs are "
                         f"{', '.join(i.describe() for i in model.inputs())}")


def _cast_for(model: OnnxModel, feeds: Mapping[str, Array]) -> dict[str, Array]:
    """Cast ``feeds`` to ``model``'s declared input dtypes (a converted model may take float16)."""
    out = dict(feeds)
    for info in model.inputs():
        if info.name in out:
            want = lookup(info.dtype).to_numpy()
            if out[info.name].dtype != want:
                out[info.name] = out[info.name].astype(want)
    return out


# ---- running -----------------------------------------------------------------------------------------------


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(
            f"ONNX Runtime is the accuracy reference and is not installed: pip install onnxruntime ({exc})"
        ) from exc
    return onnxruntime


def run_onnxruntime(model: ModelSource | OnnxModel, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, Array]:
    """Run ``model`` with ONNX Runtime's CPU execution provider; returns outputs by name.

    Raises:
        DependencyError: onnxruntime is not installed.
        ModelError: ONNX Runtime cannot load or run the model.
    """
    from .onnx_model import OnnxModel, load_onnx

    ort = _ort()
    m = model if isinstance(model, OnnxModel) else load_onnx(model)
    source: Any = str(m.path) if m.path is not None else m.serialized()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, {k: np.asarray(v) for k, v in inputs.items()})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"ONNX Runtime could not run {m.name}: {type(exc).__name__}: {exc}") from exc
    return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}


def _is_onnx(candidate: Any) -> bool:
    if isinstance(candidate, str | os.PathLike):
        return Path(candidate).suffix.lower() == ".onnx"
    return True  # bytes or onnx.ModelProto


def _precision_from(manifest: Manifest | None, building: bool) -> str:
    if manifest is not None:
        precision = str(manifest.config.get("precision", "fp32"))
        if precision == "fp32" and manifest.config.get("tf32", True):
            return "tf32"
        return precision
    return "tf32" if building else "fp32"


def _engine_shapes(manifest: Manifest | None) -> dict[str, tuple[int, ...]]:
    if manifest is None or not manifest.profiles:
        return {}
    shape_tensors = {t.name for t in manifest.inputs if t.is_shape_tensor}
    return {name: rng.opt for name, rng in manifest.profiles[0].ranges.items() if name not in shape_tensors}


def _resolve_backend(name: str | Backend | None, manifest: Manifest | None) -> tuple[Backend | None, str | None]:
    from .backend import Backend, get_backend

    if isinstance(name, Backend):
        return name, None
    try:
        return get_backend(name if name is not None else (manifest.backend if manifest else None)), None
    except DependencyError as exc:
        return None, exc.message


def _run_engine(source: Path | BuiltEngine, feeds: Mapping[str, Array], backend: Backend) -> dict[str, Array]:
    from .runtime import load_engine

    with load_engine(source, backend=backend) as loaded, loaded.create_context() as context:
        outputs = context.infer(dict(feeds))
        # NumPy outputs live in the engine's pinned pool: copy them before it closes.
        return {name: np.array(value, copy=True) for name, value in outputs.items()}


def compare(
    model: ModelSource,
    engine: str | os.PathLike[str] | ModelSource | None = None,
    *,
    inputs: Mapping[str, npt.ArrayLike] | str | os.PathLike[str] | None = None,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    precision: ComparePrecision | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    backend: str | Backend | None = None,
) -> CompareReport:
    """Compare a TensorRT engine, or a second ONNX model, with ONNX Runtime running ``model`` on the CPU.

    Args:
        model: the reference ONNX model (path, bytes or ``onnx.ModelProto``).
        engine: an engine file (``.engine``/``.plan``, with or without a trtkit manifest); or an ``.onnx`` path,
            bytes or ``onnx.ModelProto`` to run with ONNX Runtime too (e.g. an FP16 conversion); or None to build
            an engine from ``model`` here (only when this machine can run it).
        inputs: arrays by input name, or an ``.npz`` path. None generates them from the model's inputs
            (see :func:`generate_inputs`) with ``seed``.
        shapes: shapes for dynamic dims when generating inputs (trtexec syntax or a mapping). Default: the
            opt shapes of the engine manifest's first profile.
        precision: selects the default tolerances (:data:`DEFAULT_TOLERANCES`). None: from the engine's
            manifest (``tf32`` for an FP32 build with TF32 allowed), ``tf32`` when building, else ``fp32``.
        rtol: overrides the precision's relative tolerance.
        atol: overrides the precision's absolute tolerance.
        backend: backend to run the engine with; default: the one named in the engine's manifest.

    Returns:
        A :class:`CompareReport`; ``report.status`` is ``"not_run"`` with a reason when the engine cannot
        run here (no GPU, unsupported GPU, backend not installed).

    Raises:
        DependencyError: onnxruntime is not installed.
        ModelError, InputError, ShapeError: the model or inputs are wrong.
        TrtkitError: building, loading or running the engine failed.
    """
    from .manifest import read_engine_file
    from .onnx_model import load_onnx

    ref_model = load_onnx(model)
    manifest: Manifest | None = None
    engine_path: Path | None = None
    onnx_candidate: OnnxModel | None = None
    if engine is not None and _is_onnx(engine):
        onnx_candidate = load_onnx(engine)
        candidate_label = f"ONNX Runtime (CPU) running {onnx_candidate.path or onnx_candidate.name}"
    elif engine is not None:
        engine_path = Path(engine)  # type: ignore[arg-type]
        _, manifest = read_engine_file(engine_path)
        candidate_label = f"engine {engine_path}"
    else:
        candidate_label = f"an engine built here from {ref_model.path or ref_model.name}"

    building = engine is None
    chosen = precision or _precision_from(manifest, building)
    if chosen not in DEFAULT_TOLERANCES:
        raise InputError(f"precision {chosen!r} is not one of {', '.join(DEFAULT_TOLERANCES)}")
    tol = DEFAULT_TOLERANCES[chosen]
    r = tol.rtol if rtol is None else float(rtol)
    a = tol.atol if atol is None else float(atol)

    generated_seed: int | None = None
    if inputs is None:
        given_shapes = _shapes_arg(shapes)
        if not given_shapes:
            opt = _engine_shapes(manifest)
            dynamic = {i.name for i in ref_model.inputs() if i.dynamic_axes}
            given_shapes = {n: s for n, s in opt.items() if n in dynamic}
        feeds = generate_inputs(ref_model, shapes=given_shapes, seed=seed)
        generated_seed = seed
    elif isinstance(inputs, str | os.PathLike):
        feeds = load_inputs(inputs)
    else:
        feeds = {k: np.asarray(v) for k, v in inputs.items()}
    _check_inputs(ref_model, feeds)
    feed_info = {n: (tuple(v.shape), v.dtype.name) for n, v in feeds.items()}
    reference_label = f"ONNX Runtime (CPU) running {ref_model.path or ref_model.name}"

    def report(outputs: Sequence[OutputComparison] = (), reason: str | None = None, **extra: Any) -> CompareReport:
        return CompareReport(reference_label, candidate_label, chosen, r, a, feed_info, tuple(outputs), reason,
                             generated_seed, extra)

    expected = run_onnxruntime(ref_model, feeds)
    if onnx_candidate is not None:
        _check_inputs(onnx_candidate, feeds)
        actual = run_onnxruntime(onnx_candidate, _cast_for(onnx_candidate, feeds))
        return report(compare_outputs(actual, expected, rtol=r, atol=a))

    from .compat import run_blocker

    be, missing = _resolve_backend(backend, manifest)
    if be is None:
        return report(reason=missing)
    blocker = run_blocker(be)
    if blocker is not None:
        return report(reason=blocker)
    source: Path | BuiltEngine
    if engine_path is not None:
        source = engine_path
    else:
        from .builder import BuildConfig, build_engine

        build_precision = "fp32" if chosen in ("fp32", "tf32") else chosen
        config = BuildConfig(precision=build_precision, tf32=chosen != "fp32")  # type: ignore[arg-type]
        dynamic = {i.name for i in ref_model.inputs() if i.dynamic_axes}
        build_shapes = {n: tuple(v.shape) for n, v in feeds.items() if n in dynamic} or None
        source = build_engine(ref_model, shapes=build_shapes, config=config, backend=be, progress=False)
    try:
        actual = _run_engine(source, feeds, be)
    except EngineIncompatibleError as exc:
        return report(reason=exc.message)
    return report(compare_outputs(actual, expected, rtol=r, atol=a))
