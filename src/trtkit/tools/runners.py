"""Running ONNX models on the CPU: ONNX Runtime's CPU execution provider, or ONNX's reference evaluator.

:func:`run_onnxruntime` is the reference of :func:`trtkit.tools.compare.compare` and of
:func:`trtkit.tools.layerwise.compare_layerwise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from trtkit import deps
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.dtypes import lookup
from trtkit.errors import DependencyError, ModelError
from trtkit.log import get_logger
from trtkit.tools.metrics import Array

__all__ = ["EVALUATOR_LABELS", "CpuOutputs", "Evaluator", "cast_for", "run_onnxruntime"]

_log = get_logger("compare")

Evaluator = Literal["auto", "onnxruntime", "reference"]

_ORT_INSTALL: Final = "pip install onnxruntime"

EVALUATOR_LABELS: Final = {"onnxruntime": "ONNX Runtime (CPU)", "onnx-reference": "ONNX's reference evaluator"}


def cast_for(model: OnnxModel, feeds: Mapping[str, Array]) -> dict[str, Array]:
    """Cast ``feeds`` to ``model``'s declared input dtypes (a converted model may take float16)."""
    out = dict(feeds)
    for info in model.inputs():
        if info.name in out:
            want = lookup(info.dtype).to_numpy()
            if out[info.name].dtype != want:
                out[info.name] = out[info.name].astype(want)
    return out



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
    feeds = cast_for(m, {k: np.asarray(v) for k, v in inputs.items()})
    if evaluator != "reference":
        try:
            return CpuOutputs(_run_ort(m, feeds), "onnxruntime")
        except (DependencyError, ModelError) as exc:
            if evaluator == "onnxruntime":
                raise
            _log.info("%s; using ONNX's reference evaluator", exc)
    return CpuOutputs(_run_reference(m, feeds), "onnx-reference")
