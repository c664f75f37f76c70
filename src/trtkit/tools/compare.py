"""Accuracy checks: run ONNX Runtime (CPU) as the reference and compare an engine or a second ONNX model with it.

:func:`compare` feeds the same inputs to the reference ONNX model and to the candidate (a TensorRT engine, or
another ONNX model such as an FP16 conversion) and reports, per output, the maximum and mean absolute error,
the maximum relative error, the number of elements outside tolerance (``numpy.isclose`` semantics) and the
cosine similarity, judged by a :class:`Tolerance`. :func:`trtkit.tools.quantize.check_conversion` uses the same
engine for FP32-vs-converted checks.

The metrics, :class:`~trtkit.tools.metrics.Tolerance` and the per-output verdicts live in
:mod:`trtkit.tools.metrics` (plain NumPy).

Exit codes of ``trtkit compare`` (also :attr:`CompareReport.exit_code`): 0 within tolerance, 1 error,
2 usage error, 3 the engine cannot run on this machine, 4 outputs differ beyond tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from trtkit import deps
from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.dtypes import lookup, random_array
from trtkit.errors import ConfigError, DependencyError, EngineIncompatibleError, InputError, ModelError, ShapeError
from trtkit.log import get_logger
from trtkit.manifest import BuiltEngine, Manifest, read_engine_file
from trtkit.profiles import format_shape, parse_shape_spec
from trtkit.runtime.compat import run_blocker
from trtkit.runtime.loading import load_engine
from trtkit.tools.metrics import (
    DEFAULT_TOLERANCES,
    Array,
    OutputComparison,
    Tolerance,
    compare_outputs,
    cosine_similarity,
    max_abs_error,
    max_rel_error,
    mean_abs_error,
    mismatch_count,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "EXIT_CANNOT_RUN",
    "EXIT_ERROR",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "CompareReport",
    "CpuOutputs",
    "OutputComparison",
    "Tolerance",
    "compare",
    "compare_outputs",
    "cosine_similarity",
    "generate_inputs",
    "load_inputs",
    "max_abs_error",
    "max_rel_error",
    "mean_abs_error",
    "mismatch_count",
    "run_onnxruntime",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CANNOT_RUN: Final = 3
EXIT_MISMATCH: Final = 4

_log = get_logger("compare")

ComparePrecision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]
Evaluator = Literal["auto", "onnxruntime", "reference"]

_ORT_INSTALL: Final = "pip install onnxruntime"


# ---- report ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareReport:
    """The result of :func:`compare` and :func:`trtkit.tools.quantize.check_conversion`.

    ``status`` is ``"pass"`` (every output within tolerance), ``"mismatch"`` or ``"not_run"`` (the engine cannot
    run on this machine; :attr:`reason` says why and :attr:`outputs` is empty).
    """

    reference: str
    candidate: str
    precision: str
    tolerance: Tolerance
    inputs: Mapping[str, tuple[tuple[int, ...], str]]
    """Input name -> (shape, dtype) of what was fed."""
    outputs: tuple[OutputComparison, ...] = ()
    reason: str | None = None
    seed: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    """``evaluator``: what ran an ONNX candidate (``"onnxruntime"`` or ``"onnx-reference"``)."""

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

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status, "exit_code": self.exit_code, "reason": self.reason,
            "reference": self.reference, "candidate": self.candidate, "precision": self.precision,
            "tolerance": self.tolerance.to_dict(), "seed": self.seed,
            "inputs": {n: {"shape": list(s), "dtype": d} for n, (s, d) in self.inputs.items()},
            "outputs": [o.to_dict() for o in self.outputs], **dict(self.extra),
        }

    def format(self) -> str:
        """A human-readable table."""
        lines = [f"reference: {self.reference}", f"candidate: {self.candidate}"]
        feeds = ", ".join(f"{n} {d}[{format_shape(s)}]" for n, (s, d) in self.inputs.items())
        src = f" (generated, seed {self.seed})" if self.seed is not None else ""
        lines.append(f"inputs:    {feeds}{src}")
        lines.append(f"tolerance: {self.precision}: {self.tolerance.describe()}")
        if not self.ran:
            lines.append(f"NOT RUN: the engine cannot run on this machine: {self.reason}")
            lines.append("(`trtkit doctor` shows what this machine has; the ONNX Runtime reference did run.)")
            return "\n".join(lines)
        lines.append(f"  {'output':<20} {'shape':<16} {'max abs':>10} {'max rel':>10} {'mean abs':>10} "
                     f"{'mismatch':>16} {'cosine':>10}")
        for o in self.outputs:
            if o.problem is not None:
                lines.append(f"  {o.name:<20} FAIL: {o.problem}")
                continue
            mism = f"{o.mismatches}/{o.size}" if self.tolerance.elementwise else "-"
            lines.append(
                f"  {o.name:<20} {format_shape(o.shape):<16} {o.max_abs:>10.3g} {o.max_rel:>10.3g} "
                f"{o.mean_abs:>10.3g} {mism:>16} {o.cosine:>10.6f}" + ("" if o.passed else
                                                                         "  FAIL: " + "; ".join(o.failures))
            )
        failed = sum(not o.passed for o in self.outputs)
        lines.append("PASS: every output is within tolerance" if self.passed
                     else f"FAIL: {failed} of {len(self.outputs)} output(s) differ beyond tolerance")
        return "\n".join(lines)


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
    m = load_onnx(model)
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
        out[info.name] = random_array(lookup(info.dtype), tuple(shape), rng)
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


class CpuOutputs(dict[str, Array]):
    """Outputs by name from :func:`run_onnxruntime`; :attr:`evaluator` names what computed them:
    ``"onnxruntime"`` (its CPU execution provider) or ``"onnx-reference"`` (ONNX's reference evaluator)."""

    def __init__(self, outputs: Mapping[str, Array], evaluator: str) -> None:
        super().__init__(outputs)
        self.evaluator = evaluator


def _run_ort(m: OnnxModel, feeds: Mapping[str, Array]) -> dict[str, Array]:
    ort = deps.require("onnxruntime", purpose="ONNX Runtime, the accuracy reference,", install=_ORT_INSTALL)
    source: str | bytes = str(m.path) if m.path is not None else m.serialized()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, dict(feeds))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"ONNX Runtime could not run {m.name}: {type(exc).__name__}: {exc}") from exc
    return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}


def _run_reference(m: OnnxModel, feeds: Mapping[str, Array]) -> dict[str, Array]:
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in m.proto.graph.output]
    try:
        # From the path, onnx loads external weights beside the model.
        results = ReferenceEvaluator(str(m.path) if m.path is not None else m.proto).run(names, dict(feeds))
    except Exception as exc:  # the evaluator raises whatever its NumPy op implementations raise
        raise ModelError(f"ONNX's reference evaluator could not run {m.name}: {type(exc).__name__}: {exc}") from exc
    return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}


def run_onnxruntime(
    model: ModelSource | OnnxModel, inputs: Mapping[str, npt.ArrayLike], *, evaluator: Evaluator = "onnxruntime"
) -> CpuOutputs:
    """Run ``model`` on the CPU; returns outputs by name, with ``.evaluator`` saying what ran it.

    Inputs are cast to the model's declared input types (a converted model may take float16).
    ``evaluator``: ``"onnxruntime"`` (its CPU execution provider), ``"reference"`` (ONNX's reference
    evaluator: NumPy arithmetic in the model's own types, FP16 accumulation included; slow on large models) or
    ``"auto"`` (ONNX Runtime, falling back to the reference evaluator where ONNX Runtime is missing or cannot
    run the model).

    Raises:
        DependencyError: ``evaluator="onnxruntime"`` and onnxruntime is not installed.
        ModelError: the model cannot be loaded or run.
    """
    m = load_onnx(model)
    feeds = _cast_for(m, {k: np.asarray(v) for k, v in inputs.items()})
    if evaluator != "reference":
        try:
            return CpuOutputs(_run_ort(m, feeds), "onnxruntime")
        except (DependencyError, ModelError) as exc:
            if evaluator == "onnxruntime":
                raise
            _log.info("%s; using ONNX's reference evaluator", exc)
    return CpuOutputs(_run_reference(m, feeds), "onnx-reference")


_EVALUATOR_LABELS: Final = {"onnxruntime": "ONNX Runtime (CPU)", "onnx-reference": "ONNX's reference evaluator"}


def _is_onnx(candidate: object) -> bool:
    if isinstance(candidate, str | os.PathLike):
        return Path(candidate).suffix.lower() == ".onnx"
    return True  # bytes or onnx.ModelProto


def _precision_from(manifest: Manifest | None, building: bool) -> str:
    if manifest is not None:
        carries = manifest.extra.get("precision", {}).get("model_carries", {}).get("quantized", [])
        for quantized in ("fp8", "int8"):
            if quantized in carries:
                return quantized  # a Q/DQ model: judged by cosine, its error is not bounded per element
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
    """The backend to run with (default: the manifest's), or None and why it cannot be loaded."""
    try:
        return get_backend(name if name is not None else (manifest.backend if manifest else None)), None
    except DependencyError as exc:
        return None, exc.message


def _run_engine(source: Path | BuiltEngine, feeds: Mapping[str, Array], backend: Backend) -> dict[str, Array]:
    with load_engine(source, backend=backend) as loaded, loaded.create_context() as context:
        outputs = context.infer(dict(feeds))
        # NumPy outputs live in the engine's pinned pool: copy them before it closes.
        return {name: np.array(value, copy=True) for name, value in outputs.items()}


def compare(
    model: ModelSource | OnnxModel,
    engine: str | os.PathLike[str] | ModelSource | OnnxModel | None = None,
    *,
    inputs: Mapping[str, npt.ArrayLike] | str | os.PathLike[str] | None = None,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    precision: ComparePrecision | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: Tolerance | None = None,
    backend: str | Backend | None = None,
    evaluator: Evaluator = "onnxruntime",
) -> CompareReport:
    """Compare a TensorRT engine, or a second ONNX model, with ONNX Runtime running ``model`` on the CPU.

    Args:
        model: the reference ONNX model (path, bytes, ``onnx.ModelProto`` or :class:`~trtkit.builder.model.OnnxModel`).
        engine: an engine file (``.engine``/``.plan``, with or without a trtkit manifest); or an ``.onnx`` path,
            bytes, ``onnx.ModelProto`` or ``OnnxModel`` to run on the CPU too (e.g. an FP16 conversion); or None
            to build an engine from ``model`` here (only when this machine can run it).
        inputs: arrays by input name, or an ``.npz`` path. None generates them from the model's inputs
            (see :func:`generate_inputs`) with ``seed``.
        shapes: shapes for dynamic dims when generating inputs (trtexec syntax or a mapping). Default: the
            opt shapes of the engine manifest's first profile.
        precision: selects the default tolerance (:data:`DEFAULT_TOLERANCES`) and labels the report. None: from
            the engine's manifest (``int8``/``fp8`` for a Q/DQ model, ``tf32`` for an FP32 build with TF32
            allowed), ``tf32`` when building, else ``fp32``.
        rtol: overrides the tolerance's relative tolerance.
        atol: overrides the tolerance's absolute tolerance.
        tolerance: replaces the precision's default tolerance (``rtol``/``atol`` still override it).
        backend: backend to run the engine with; default: the one named in the engine's manifest.
        evaluator: what runs an ONNX candidate (see :func:`run_onnxruntime`). The reference runs on ONNX
            Runtime, or with ``"auto"``/``"reference"`` falls back to ONNX's reference evaluator where ONNX
            Runtime is missing or cannot run it.

    Returns:
        A :class:`CompareReport`; ``report.status`` is ``"not_run"`` with a reason when the engine cannot
        run here (no GPU, unsupported GPU, backend not installed).

    Raises:
        DependencyError: onnxruntime is not installed (with ``evaluator="onnxruntime"``).
        ModelError, InputError, ShapeError, ConfigError: the model, inputs, precision or tolerance are wrong.
        TrtkitError: building, loading or running the engine failed.
    """
    ref_model = load_onnx(model)
    manifest: Manifest | None = None
    engine_path: Path | None = None
    onnx_candidate: OnnxModel | None = None
    if engine is not None and _is_onnx(engine):
        onnx_candidate = load_onnx(engine)
        candidate_name = str(onnx_candidate.path or onnx_candidate.name)
        candidate_label = ""  # set once it ran: it names the evaluator
    elif engine is not None:
        engine_path = Path(engine)  # type: ignore[arg-type]
        _, manifest = read_engine_file(engine_path)
        candidate_label = f"engine {engine_path}"
    else:
        candidate_label = f"an engine built here from {ref_model.path or ref_model.name}"

    building = engine is None
    chosen = precision or _precision_from(manifest, building)
    if tolerance is None:
        if chosen not in DEFAULT_TOLERANCES:
            raise ConfigError(f"precision {chosen!r} is not one of {', '.join(DEFAULT_TOLERANCES)}; or pass "
                             "tolerance=Tolerance(...)")
        tolerance = DEFAULT_TOLERANCES[chosen]
    if rtol is not None or atol is not None:
        r = rtol if rtol is not None else (tolerance.rtol or 0.0)
        a = atol if atol is not None else (tolerance.atol or 0.0)
        tolerance = replace(tolerance, rtol=float(r), atol=float(a))

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

    expected = run_onnxruntime(ref_model, feeds, evaluator="onnxruntime" if evaluator == "onnxruntime" else "auto")
    reference_label = f"{_EVALUATOR_LABELS[expected.evaluator]} running {ref_model.path or ref_model.name}"

    def report(outputs: Sequence[OutputComparison] = (), reason: str | None = None, **extra: object) -> CompareReport:
        return CompareReport(reference_label, candidate_label, chosen, tolerance, feed_info, tuple(outputs),
                             reason, generated_seed, extra)

    if onnx_candidate is not None:
        _check_inputs(onnx_candidate, feeds)
        actual = run_onnxruntime(onnx_candidate, feeds, evaluator=evaluator)
        candidate_label = f"{_EVALUATOR_LABELS[actual.evaluator]} running {candidate_name}"
        return report(compare_outputs(actual, expected, tolerance=tolerance), evaluator=actual.evaluator)

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
        build_precision = chosen if chosen in ("fp16", "bf16") else "fp32"  # a Q/DQ model builds as it is
        config = BuildConfig(precision=build_precision, tf32=chosen != "fp32")  # type: ignore[arg-type]
        dynamic = {i.name for i in ref_model.inputs() if i.dynamic_axes}
        build_shapes = {n: tuple(v.shape) for n, v in feeds.items() if n in dynamic} or None
        source = build_engine(ref_model, shapes=build_shapes, config=config, backend=be, progress=False)
    try:
        engine_outputs = _run_engine(source, feeds, be)
    except EngineIncompatibleError as exc:
        return report(reason=exc.message)
    return report(compare_outputs(engine_outputs, expected, tolerance=tolerance))
