""":func:`quantize`, :func:`resolve_quantizer` and :func:`check_conversion`."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import numpy.typing as npt

from trtkit.builder.config import choices
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx, save_onnx
from trtkit.builder.precision import INSTALL_MODELOPT
from trtkit.deps import available
from trtkit.errors import ConfigError, DependencyError, UnsupportedFeatureError
from trtkit.log import get_logger
from trtkit.profiles import ProfilesLike
from trtkit.text import safe
from trtkit.tools.compare import CompareReport, compare
from trtkit.tools.metrics import DEFAULT_TOLERANCES, Tolerance
from trtkit.tools.quantize._calibration import CalibrationData, CalibrationSet, iter_feeds, load_calibration
from trtkit.tools.quantize._modelopt import check_modelopt_method, modelopt_version, quantize_modelopt
from trtkit.tools.quantize._onnxruntime import (
    GROUPED_CONV_REASON,
    INSTALL_ONNXRUNTIME,
    QUANTIZED_OPS,
    grouped_convs,
    onnxruntime_version,
    prepared_for_quantization,
    quantize_onnxruntime,
)
from trtkit.tools.quantize._result import QuantizeResult, analyze_qdq
from trtkit.tools.quantize._types import Quantizer, QuantMethod, QuantPrecision

__all__ = ["check_conversion", "quantize", "resolve_quantizer"]

_log = get_logger("quantize")
ACCURACY_FEEDS: Final = 8
"""At most this many feeds of the validation (or calibration) data are compared; the worst one is reported."""
_DEFAULT_METHOD: Final = {"onnxruntime": "minmax", "modelopt": "entropy"}


def resolve_quantizer(quantizer: Quantizer = "auto", precision: QuantPrecision = "int8") -> tuple[str, str]:
    """The quantizer :func:`quantize` would use, and its version: ``("modelopt", v)`` when ModelOpt is installed
    (``"auto"``) or asked for, else ``("onnxruntime", v)``. Cheap (imports nothing, no model work): part of the
    engine cache key.

    Raises:
        ConfigError: an unknown quantizer or precision.
        UnsupportedFeatureError: fp8 with the ONNX Runtime quantizer (it makes INT8 only).
        DependencyError: the quantizer asked for is not installed, or fp8 without ModelOpt.
    """
    if quantizer not in choices(Quantizer):
        raise ConfigError(f"quantizer must be one of {', '.join(choices(Quantizer))}, got {quantizer!r}")
    if precision not in choices(QuantPrecision):
        raise ConfigError(f"quantization precision must be int8 or fp8, got {precision!r}")
    have_modelopt = "modelopt.onnx" in sys.modules or available("modelopt.onnx")
    if quantizer == "modelopt" or (quantizer == "auto" and have_modelopt):
        if not have_modelopt:
            raise DependencyError(f"quantizer=modelopt needs NVIDIA ModelOpt: {INSTALL_MODELOPT}")
        return "modelopt", modelopt_version()
    if precision == "fp8":
        if quantizer == "onnxruntime":
            raise UnsupportedFeatureError("ONNX Runtime's quantizer makes INT8 models only; FP8 needs NVIDIA "
                                          f"ModelOpt: {INSTALL_MODELOPT}, then --quantizer modelopt (or auto)")
        raise DependencyError(f"fp8 quantization needs NVIDIA ModelOpt (ONNX Runtime's quantizer makes INT8 "
                              f"only): {INSTALL_MODELOPT}")
    if not available("onnxruntime"):
        raise DependencyError(f"int8 quantization needs ONNX Runtime (or NVIDIA ModelOpt): {INSTALL_ONNXRUNTIME}")
    return "onnxruntime", onnxruntime_version()


def _names(option: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{option} must be a sequence of names such as ['Softmax'], got {value!r}")
    return tuple(v.strip() for v in value)


def _check_accuracy(fp32: OnnxModel, qdq: OnnxModel, data: CalibrationSet, label: str, precision: QuantPrecision,
                    profiles: ProfilesLike | None) -> CompareReport:
    """FP32 against Q/DQ on ONNX Runtime over up to :data:`ACCURACY_FEEDS` feeds; the worst report."""
    worst: CompareReport | None = None
    count = 0
    for feed in iter_feeds(data, fp32, profiles):
        if count == ACCURACY_FEEDS:
            break
        count += 1
        report = compare(fp32, qdq, inputs=feed, precision=precision, evaluator="onnxruntime")
        cos = min((o.cosine for o in report.outputs if o.cosine_checked), default=2.0)
        worst_cos = 2.0 if worst is None else min((o.cosine for o in worst.outputs if o.cosine_checked), default=2.0)
        if worst is None or (report.status == "mismatch") > (worst.status == "mismatch") or cos < worst_cos:
            worst = report
    assert worst is not None  # load_calibration refuses data without a feed
    return dataclasses.replace(worst, extra={**worst.extra, "feeds_checked": count, "data_source": label})


def quantize(
    model: ModelSource | OnnxModel,
    calibration_data: CalibrationSet | str | os.PathLike[str] | CalibrationData,
    *,
    precision: QuantPrecision = "int8",
    method: QuantMethod | None = None,
    quantizer: Quantizer = "auto",
    exclude_ops: Sequence[str] = (),
    exclude_nodes: Sequence[str] = (),
    val_data: CalibrationSet | str | os.PathLike[str] | CalibrationData | None = None,
    check_accuracy: bool = True,
    output_path: str | os.PathLike[str] | None = None,
    profiles: ProfilesLike | None = None,
) -> QuantizeResult:
    """Post-training quantization to an INT8 or FP8 Q/DQ model that TensorRT builds, calibrated on your data.

    Steps, in order: check the options and the quantizer (:func:`resolve_quantizer`); refuse an ``output_path``
    that is the model or its weight file; read and check the calibration data and ``val_data``
    (:func:`load_calibration`) before any work; prepare the model (opset >= 13, Constant weights as
    initializers, unnamed nodes named) and check ``exclude_nodes`` against it; quantize; compare FP32 with the
    Q/DQ model on ONNX Runtime (``check_accuracy``); write ``output_path``.

    With ONNX Runtime (INT8): Q/DQ pairs on the inputs of Conv, ConvTranspose, MatMul and Gemm, symmetric, weights
    per channel, biases in float; grouped (depthwise) convs stay in float (see ``docs/quantization.md``). With
    ModelOpt (INT8, FP8): ModelOpt's own placement.

    Args:
        model: the FP32 ONNX model.
        calibration_data: an ``.npz`` (one array per input, samples on axis 0), a directory of ``NAME.npy``, a
            data-loader script, arrays, or a :class:`CalibrationSet`.
        precision: ``"int8"`` or ``"fp8"`` (ModelOpt only).
        method: ``"minmax"``, ``"entropy"`` or ``"percentile"`` (ONNX Runtime only). Default: minmax with ONNX
            Runtime, entropy with ModelOpt (its default).
        quantizer: ``"auto"`` (ModelOpt when installed, else ONNX Runtime), ``"onnxruntime"`` or ``"modelopt"``.
        exclude_ops: op types to leave in float.
        exclude_nodes: node names to leave in float.
        val_data: held-out inputs for the accuracy check (default: the calibration data).
        check_accuracy: run the accuracy check. A Q/DQ model beyond the ``int8``/``fp8`` tolerance
            (:data:`~trtkit.tools.metrics.DEFAULT_TOLERANCES`) is returned, with a warning logged and
            :attr:`QuantizeResult.accuracy` failed; it is not raised.
        output_path: where to write the Q/DQ model (never the model itself).
        profiles: shape profiles the data must lie within (as for :func:`~trtkit.builder.build_engine`).

    Raises:
        ConfigError: a bad option, or ``output_path`` is the model or one of its weight files.
        InputError: calibration or validation data that does not fit the model or the profiles.
        DependencyError, UnsupportedFeatureError: see :func:`resolve_quantizer`.
        ModelError: the model cannot be read, or the quantizer failed on it.
    """
    kind, version = resolve_quantizer(quantizer, precision)
    ops, nodes = _names("exclude_ops", exclude_ops), _names("exclude_nodes", exclude_nodes)
    if method is None:
        method = _DEFAULT_METHOD[kind]  # type: ignore[assignment]
    if method not in choices(QuantMethod):
        raise ConfigError(f"method must be one of {', '.join(choices(QuantMethod))}, got {method!r}")
    if kind == "modelopt":
        check_modelopt_method(str(method))
    if not isinstance(check_accuracy, bool):
        raise ConfigError(f"check_accuracy must be True or False, got {check_accuracy!r}")
    src = load_onnx(model)
    if output_path is not None:
        src.refuse_onnx_overwrite(output_path, what="output_path")
    calib = load_calibration(calibration_data, src, profiles=profiles)
    val = load_calibration(val_data, src, profiles=profiles, what="validation data") if val_data is not None \
        else None
    proto, steps = prepared_for_quantization(src)  # names unnamed nodes as the report will name them
    graph_nodes = {n.name for n in proto.graph.node}
    unknown = [n for n in nodes if n not in graph_nodes]
    if unknown:
        raise ConfigError(f"exclude_nodes names {safe(unknown[0])!r}, which the model does not have; give node "
                          "names as the model spells them (or as trtkit quantize lists them)")
    notes = list(steps)
    if kind == "onnxruntime":
        grouped = [n for n in grouped_convs(proto) if n not in nodes and "Conv" not in ops]
        if grouped:
            notes.append(f"{len(grouped)} grouped/depthwise Conv node(s) left in float: {GROUPED_CONV_REASON}")
        op_types = [op for op in QUANTIZED_OPS if op not in ops]
        if not op_types:
            raise ConfigError(f"exclude_ops leaves nothing to quantize: ONNX Runtime's path quantizes "
                              f"{', '.join(QUANTIZED_OPS)}")
        qproto = quantize_onnxruntime(proto, calib, method=str(method), op_types=op_types,
                                      exclude_nodes=[*nodes, *grouped], profiles=profiles)
    else:
        qproto = quantize_modelopt(proto, calib, precision=precision, method=str(method), exclude_ops=ops,
                                   exclude_nodes=nodes)
    qmodel = load_onnx(qproto)
    counts, quantized, floats = analyze_qdq(qproto)
    accuracy = None
    if check_accuracy:
        data, label = (val, f"validation data {val.source}") if val is not None else \
            (calib, f"calibration data {calib.source}")
        accuracy = _check_accuracy(src, qmodel, data, label, precision, profiles)
    if output_path is not None:
        save_onnx(qproto, output_path)  # staged and moved in: a fault leaves any old file as it was
        qmodel = load_onnx(output_path)
    result = QuantizeResult(model=qmodel, precision=precision, quantizer=kind, quantizer_version=version,
                            method=str(method), data_digest=calib.digest, quantized_ops=counts, float_nodes=floats,
                            accuracy=accuracy, quantized_nodes=quantized, notes=tuple(notes))
    result.log_accuracy(_log)
    return result


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
