"""Accuracy checks: run ONNX Runtime (CPU) as the reference and compare an engine or a second ONNX model with it.

:func:`compare` feeds the same inputs to the reference ONNX model and to the candidate (a TensorRT engine, or
another ONNX model such as an FP16 conversion) and reports, per output, the maximum and mean absolute error,
the maximum relative error, the number of elements outside tolerance (``numpy.isclose`` semantics) and the
cosine similarity, judged by a :class:`Tolerance`. :func:`trtkit.tools.quantize.check_conversion` uses the same
engine for FP32-vs-converted checks.

The metrics, :class:`~trtkit.tools.metrics.Tolerance` and the per-output verdicts live in
:mod:`trtkit.tools.metrics` (plain NumPy); input generation and the checks made before anything runs in
:mod:`trtkit.tools.inputs`; :class:`CompareReport` in :mod:`trtkit.tools.report`.

Exit codes of ``trtkit compare`` (also :attr:`CompareReport.exit_code`): 0 within tolerance, 1 error,
2 usage error, 3 the engine cannot run on this machine, 4 outputs differ beyond tolerance, 5 nothing meaningful
was compared (an output's reference is all within ``atol`` of zero; no output failed).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.errors import ConfigError, DependencyError, EngineIncompatibleError, InputError, ModelError
from trtkit.files import refuse_overwrite
from trtkit.manifest import BuiltEngine, Manifest, read_engine_file
from trtkit.runtime.compat import run_blocker
from trtkit.runtime.loading import load_engine
from trtkit.tools.inputs import (
    ValRange,
    check_engine_shapes,
    check_input_bytes,
    generate_inputs,
    integer_input_rules,
    load_inputs,
    resolve_input_shapes,
    run_data_loader,
    shapes_arg,
)
from trtkit.tools.layerwise import LayerwiseReport, compare_layerwise
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
from trtkit.tools.references import load_references, save_references
from trtkit.tools.report import (
    EXIT_CANNOT_RUN,
    EXIT_ERROR,
    EXIT_MISMATCH,
    EXIT_NOT_CHECKED,
    EXIT_OK,
    EXIT_USAGE,
    CompareReport,
)
from trtkit.tools.runners import EVALUATOR_LABELS, CpuOutputs, Evaluator, run_onnxruntime

__all__ = [
    "DEFAULT_TOLERANCES",
    "EXIT_CANNOT_RUN",
    "EXIT_ERROR",
    "EXIT_MISMATCH",
    "EXIT_NOT_CHECKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CompareReport",
    "CpuOutputs",
    "OutputComparison",
    "Tolerance",
    "ValRange",
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

ComparePrecision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]


# ---- inputs ------------------------------------------------------------------------------------------------


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


def _given_feeds(inputs: object, data_loader: str | os.PathLike[str] | None, model: OnnxModel,
                 extra: dict[str, object]) -> dict[str, Array]:
    """Feeds from ``inputs`` (a mapping or an ``.npz``, checked against ``model``'s checksum) or ``data_loader``."""
    if data_loader is not None:
        extra["inputs_from"] = f"data loader {data_loader} (its first feed)"
        return run_data_loader(data_loader)
    if isinstance(inputs, str | os.PathLike):
        refs = load_references(inputs, kind="inputs", model=model)
        extra["inputs_from"] = refs.describe()
        return refs.arrays
    if isinstance(inputs, Mapping):
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    raise ConfigError(f"inputs must be a mapping of input name -> array or an .npz path, got {type(inputs).__name__}")


def _made_by(outputs: CpuOutputs, model: OnnxModel) -> str:
    return f"{EVALUATOR_LABELS[outputs.evaluator]} running {model.path or model.name} on {platform.node() or '?'}"


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


def _model_check(ref_model: OnnxModel, manifest: Manifest | None, engine_path: Path,
                 allow_other_model: bool) -> tuple[str, tuple[str, ...]]:
    """Whether the engine's manifest says it was built from ``ref_model``: ``"match"``, ``"unknown"`` (no
    manifest or no recorded hash) or ``"different"`` (only with ``allow_other_model``; else ModelError)."""
    recorded = manifest.onnx.get("sha256") if manifest is not None else None
    if not recorded:
        return "unknown", ()
    if recorded == ref_model.sha256:
        return "match", ()
    model = ref_model.path or ref_model.name
    text = (f"engine {str(engine_path)!r} was built from another model: its manifest records ONNX sha256 "
            f"{recorded} ({manifest.onnx.get('name', '?') if manifest else '?'}), and {str(model)!r} has sha256 "
            f"{ref_model.sha256}")
    if not allow_other_model:
        raise ModelError(text + "; rebuild the engine from this model (trtkit build MODEL), or pass "
                         "--allow-other-model (Python: allow_other_model=True) to compare anyway, e.g. an engine "
                         "built from a quantized or converted copy of MODEL")
    return "different", (text + " (compared anyway: allow_other_model)",)


def _feed_shapes(ref_model: OnnxModel, manifest: Manifest | None,
                 shapes: str | Mapping[str, Sequence[int]] | None) -> dict[str, tuple[int, ...]]:
    """The shapes to generate: ``shapes``, and the manifest's opt shapes for dynamic inputs it leaves out."""
    given = shapes_arg(shapes)
    dynamic = {i.name for i in ref_model.inputs() if i.dynamic_axes}
    opt = {n: s for n, s in _engine_shapes(manifest).items() if n in dynamic and n not in given}
    return resolve_input_shapes(ref_model, {**opt, **given})


def compare(
    model: ModelSource | OnnxModel,
    engine: str | os.PathLike[str] | ModelSource | OnnxModel | None = None,
    *,
    inputs: Mapping[str, npt.ArrayLike] | str | os.PathLike[str] | None = None,
    shapes: str | Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    val_range: ValRange | None = None,
    precision: ComparePrecision | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: Tolerance | None = None,
    backend: str | Backend | None = None,
    evaluator: Evaluator = "onnxruntime",
    allow_other_model: bool = False,
    data_loader: str | os.PathLike[str] | None = None,
    save_inputs: str | os.PathLike[str] | None = None,
    save_outputs: str | os.PathLike[str] | None = None,
    load_outputs: str | os.PathLike[str] | None = None,
    layerwise: bool = False,
    tensors: Sequence[str] | None = None,
) -> CompareReport:
    """Compare a TensorRT engine, or a second ONNX model, with ONNX Runtime running ``model`` on the CPU.

    Args:
        model: the reference ONNX model (path, bytes, ``onnx.ModelProto`` or :class:`~trtkit.builder.model.OnnxModel`).
        engine: an engine file (``.engine``/``.plan``, with or without a trtkit manifest); or an ``.onnx`` path,
            bytes, ``onnx.ModelProto`` or ``OnnxModel`` to run on the CPU too (e.g. an FP16 conversion); or None
            to build an engine from ``model`` here (only when this machine can run it).
        inputs: arrays by input name, or an ``.npz`` path (one written by ``save_inputs`` from another model is
            refused). None generates them from the model's inputs (see :func:`generate_inputs`) with ``seed``.
        shapes: shapes for dynamic dims when generating inputs (trtexec syntax or a mapping). Default: the
            opt shapes of the engine manifest's first profile.
        seed: seed for generated inputs.
        val_range: ``(lo, hi)`` for generated inputs (or input name -> ``(lo, hi)``): floats uniform in
            ``[lo, hi)``, integers uniform over the integers in ``[lo, hi]``. Default: floats standard normal,
            integers by their use (:func:`~trtkit.tools.inputs.integer_input_rules`).
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
        allow_other_model: compare an engine whose manifest records another ONNX model than ``model`` (e.g.
            one built from a quantized copy); the report notes it. Default: such an engine is refused.
        data_loader: ``script.py`` (or ``script.py:FUNC``) whose ``load_data()`` yields feed dicts; the first
            feed is used (instead of ``inputs``).
        save_inputs: write the inputs fed to this ``.npz``, with ``model``'s checksum.
        save_outputs: write the reference outputs to this ``.npz``, with ``model``'s checksum and the inputs'.
        load_outputs: use the reference outputs saved there (by ``save_outputs``, from ``model`` and these
            inputs) instead of running ``model``; references from another model or other inputs are refused.
        layerwise: also compare intermediate tensors (:func:`~trtkit.tools.layerwise.compare_layerwise`): the
            report's ``layerwise`` table names the first tensor beyond tolerance. It does not change the status.
        tensors: the tensors to compare layer-wise (default: every one); needs ``layerwise``.

    Before anything runs, the engine's manifest is checked to name ``model`` (its ONNX sha256) and the input
    shapes to lie inside the engine's profiles; generated inputs are checked to fit in memory before they are
    allocated.

    Returns:
        A :class:`CompareReport`; ``report.status`` is ``"not_run"`` with a reason when the engine cannot
        run here (no GPU, unsupported GPU, backend not installed), ``"not_checked"`` when an output's reference
        is all within ``atol`` of zero (nothing meaningful compared).

    Raises:
        DependencyError: onnxruntime is not installed (with ``evaluator="onnxruntime"``).
        ModelError: the model cannot be read, or the engine was built from another model (without
            ``allow_other_model``).
        InputError, ShapeError, ConfigError: the inputs, shapes, value range, precision or tolerance are wrong.
        TrtkitError: building, loading or running the engine failed.
    """
    for flag, value in (("allow_other_model", allow_other_model), ("layerwise", layerwise)):
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be True or False, got {value!r}")
    if evaluator not in ("auto", "onnxruntime", "reference"):
        raise ConfigError(f"evaluator must be 'auto', 'onnxruntime' or 'reference', got {evaluator!r}")
    ref_model = load_onnx(model)
    manifest: Manifest | None = None
    engine_path: Path | None = None
    onnx_candidate: OnnxModel | None = None
    notes: tuple[str, ...] = ()
    extra: dict[str, object] = {}
    if engine is not None and _is_onnx(engine):
        onnx_candidate = load_onnx(engine)
        candidate_name = str(onnx_candidate.path or onnx_candidate.name)
        candidate_label = ""  # set once it ran: it names the evaluator
    elif engine is not None:
        if not isinstance(engine, str | os.PathLike):
            raise ConfigError(f"engine must be a path to an engine file or an ONNX model, got "
                              f"{type(engine).__name__}")
        engine_path = Path(engine)
        _, manifest = read_engine_file(engine_path)
        candidate_label = f"engine {engine_path}"
        extra["model_check"], notes = _model_check(ref_model, manifest, engine_path, allow_other_model)
    else:
        candidate_label = f"an engine built here from {ref_model.path or ref_model.name}"

    building = engine is None
    given_tolerance = tolerance
    chosen = precision or _precision_from(manifest, building)
    if tolerance is None:
        if chosen not in DEFAULT_TOLERANCES:
            raise ConfigError(f"precision {chosen!r} is not one of {', '.join(DEFAULT_TOLERANCES)}; or pass "
                             "tolerance=Tolerance(...)")
        tolerance = DEFAULT_TOLERANCES[chosen]
    elif not isinstance(tolerance, Tolerance):
        raise ConfigError(f"tolerance must be a Tolerance(rtol, atol, min_cosine, max_mismatch), got "
                          f"{type(tolerance).__name__}")
    if rtol is not None or atol is not None:
        for label, given in (("rtol", rtol), ("atol", atol)):
            if given is not None and (isinstance(given, bool) or not isinstance(given, int | float)):
                raise ConfigError(f"{label} must be a number >= 0, got {given!r}")
        r = rtol if rtol is not None else (tolerance.rtol or 0.0)
        a = atol if atol is not None else (tolerance.atol or 0.0)
        tolerance = replace(tolerance, rtol=float(r), atol=float(a))

    if inputs is not None and data_loader is not None:
        raise ConfigError("give inputs (--load-inputs) or a data loader (--data-loader), not both")
    if tensors is not None and not layerwise:
        raise ConfigError("tensors (--tensors) name tensors for the layer-wise comparison: add layerwise=True "
                          "(--layerwise)")
    if save_outputs is not None and load_outputs is not None:
        raise ConfigError("--save-outputs writes the reference that --load-outputs would replace: give one")
    read = [p for p in (inputs, data_loader, load_outputs, engine_path, onnx_candidate and onnx_candidate.path)
            if isinstance(p, str | os.PathLike)]
    for target, flag in ((save_inputs, "--save-inputs"), (save_outputs, "--save-outputs")):
        if target is not None:
            ref_model.refuse_overwrite(target, what=flag)
            if onnx_candidate is not None:
                onnx_candidate.refuse_overwrite(target, what=flag)
            refuse_overwrite(target, read, what=flag)
    if save_inputs is not None and save_outputs is not None:
        refuse_overwrite(save_inputs, [save_outputs], what="--save-inputs")

    generated_seed: int | None = None
    source = f"engine {str(engine_path)!r}"
    if inputs is None and data_loader is None:
        wanted = _feed_shapes(ref_model, manifest, shapes)
        if manifest is not None:
            check_engine_shapes(manifest, wanted, source)
        check_input_bytes(ref_model, wanted)
        values = ({t.name: manifest.profiles[0][t.name].opt for t in manifest.inputs
                   if t.is_shape_tensor and manifest.profiles and t.name in manifest.profiles[0]}
                  if manifest is not None else {})
        feeds = generate_inputs(ref_model, shapes=wanted, seed=seed, val_range=val_range, shape_values=values)
        generated_seed = seed
        if val_range is not None:
            extra["val_range"] = val_range if not isinstance(val_range, Mapping) else dict(val_range)
        rules = integer_input_rules(ref_model, wanted)
        if rules:
            extra["integer_inputs"] = {n: k if k != "index" else f"index [0, {size or 1})"
                                       for n, (k, size) in rules.items()}
    else:
        feeds = _given_feeds(inputs, data_loader, ref_model, extra)
        empty = [n for n, v in feeds.items() if v.size == 0]
        if empty:
            raise InputError(f"input(s) {', '.join(map(repr, empty))} hold no elements (a 0-size dim): nothing "
                             "would be compared; give inputs with every dim >= 1")
        if manifest is not None:
            check_engine_shapes(manifest, {n: v.shape for n, v in feeds.items()}, source)
    _check_inputs(ref_model, feeds)
    feed_info = {n: (tuple(v.shape), v.dtype.name) for n, v in feeds.items()}

    expected: Mapping[str, Array]
    if load_outputs is not None:
        refs = load_references(load_outputs, kind="outputs", model=ref_model, inputs=feeds)
        expected, reference_label = refs.arrays, refs.describe()
    else:
        ran = run_onnxruntime(ref_model, feeds, evaluator="onnxruntime" if evaluator == "onnxruntime" else "auto")
        expected, reference_label = ran, _made_by(ran, ref_model)
        if save_outputs is not None:
            save_references(save_outputs, ran, ref_model, kind="outputs", inputs=feeds, made_by=reference_label)
            notes += (f"reference outputs saved to {save_outputs}",)
    if save_inputs is not None:
        save_references(save_inputs, feeds, ref_model, kind="inputs")
        notes += (f"inputs saved to {save_inputs}",)
    table: LayerwiseReport | None = None
    if layerwise:
        explicit = tolerance if (precision, rtol, atol, given_tolerance) != (None, None, None, None) else None
        table = compare_layerwise(ref_model, onnx_candidate if onnx_candidate is not None else engine_path,
                                  feeds, tensors=tensors, tolerance=explicit, backend=backend)

    def report(outputs: Sequence[OutputComparison] = (), reason: str | None = None, **more: object) -> CompareReport:
        return CompareReport(reference_label, candidate_label, chosen, tolerance, feed_info, tuple(outputs),
                             reason, generated_seed, {**extra, **more}, notes, table)

    if onnx_candidate is not None:
        _check_inputs(onnx_candidate, feeds)
        actual = run_onnxruntime(onnx_candidate, feeds, evaluator=evaluator)
        candidate_label = f"{EVALUATOR_LABELS[actual.evaluator]} running {candidate_name}"
        return report(compare_outputs(actual, expected, tolerance=tolerance), evaluator=actual.evaluator)

    be, missing = _resolve_backend(backend, manifest)
    if be is None:
        return report(reason=missing)
    blocker = run_blocker(be)
    if blocker is not None:
        return report(reason=blocker)
    built: Path | BuiltEngine
    if engine_path is not None:
        built = engine_path
    else:
        build_precision = chosen if chosen in ("fp16", "bf16") else "fp32"  # a Q/DQ model builds as it is
        config = BuildConfig(precision=build_precision, tf32=chosen != "fp32")  # type: ignore[arg-type]
        dynamic = {i.name for i in ref_model.inputs() if i.dynamic_axes}
        build_shapes = {n: tuple(v.shape) for n, v in feeds.items() if n in dynamic} or None
        built = build_engine(ref_model, shapes=build_shapes, config=config, backend=be, progress=False)
    try:
        engine_outputs = _run_engine(built, feeds, be)
    except EngineIncompatibleError as exc:
        return report(reason=exc.message)
    return report(compare_outputs(engine_outputs, expected, tolerance=tolerance))
