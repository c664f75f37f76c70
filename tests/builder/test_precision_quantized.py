"""precision="int8" / "fp8": explicit quantization only. The model must carry Q/DQ nodes of that type; the builder
never calibrates. TensorRT 10 (weakly typed) sets the INT8/FP8 builder flag for a Q/DQ network, strongly typed
networks (TensorRT 11, TensorRT-RTX, strongly_typed=True) need none. Asking for an implicit calibrator names
the Q/DQ path. Builds run for real on TensorRT-RTX."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend, Features
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.config import Precision, choices
from trtkit.builder.precision import plan_precision
from trtkit.errors import ConfigError, UnsupportedFeatureError


def _qdq_conv(kind: int = TensorProto.INT8, qdq: bool = True) -> onnx.ModelProto:
    """x -> [Q/DQ] -> Conv (weights [DQ'd]) -> Relu -> y; ``qdq=False`` gives the float model."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.2
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), helper.make_tensor("zp", kind, [], [0]),
             numpy_helper.from_array(np.full(16, 0.01, np.float32), "ws")]
    if qdq:
        inits.append(helper.make_tensor("wq", kind, [16, 3, 3, 3],
                                        np.clip(np.round(w / 0.01), -127, 127).astype(int).ravel().tolist()))
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="xq"),
                 helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="xd"),
                 helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], name="wd", axis=0),
                 helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    else:
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "qdq_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


def _features(rtx: Backend, **kw: Any) -> Features:
    return replace(rtx.features, **kw)


# ---- the option ----------------------------------------------------------------------------------------------


def test_int8_and_fp8_are_precisions_of_the_config_and_the_cli() -> None:
    assert {"int8", "fp8"} <= set(choices(Precision))  # the CLI's --precision choices come from the Literal
    assert BuildConfig(precision="int8").precision == "int8"
    assert BuildConfig.from_dict(BuildConfig(precision="fp8").to_dict()).precision == "fp8"


@pytest.mark.parametrize("option", ["int8_calibrator", "calibrator", "calibration_cache"])
def test_asking_for_an_implicit_calibrator_names_the_qdq_path(option: str) -> None:
    with pytest.raises(ConfigError) as constructed:
        BuildConfig(**{option: "calib.cache"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as loaded:
        BuildConfig.from_dict({"precision": "int8", option: "calib.cache"})
    for exc in (constructed.value, loaded.value):
        text = str(exc)
        assert option in text and "trtkit quantize" in text and "calibration_data=" in text
        assert "removed" in text and "\n" not in text


def test_other_unknown_options_keep_the_generic_error() -> None:
    with pytest.raises(ConfigError, match="unknown BuildConfig options: nope"):
        BuildConfig.from_dict({"nope": 1})
    with pytest.raises(TypeError):
        BuildConfig(nope=1)  # type: ignore[call-arg]


# ---- the plan ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "precision", "strongly_typed", "route", "builder_flags"),
    [
        (True, "int8", False, "builder_flags", ("INT8",)),  # TensorRT 10, weakly typed: BuilderFlag.INT8
        (True, "fp8", False, "builder_flags", ("FP8",)),
        (True, "int8", True, "none", ()),  # TensorRT 10 strongly typed: the Q/DQ types decide, no flag
        (False, "int8", False, "none", ()),  # TensorRT 11 / TensorRT-RTX
        (False, "fp8", True, "none", ()),
    ],
)
def test_plan_for_quantized_precisions(rtx: Backend, flags: bool, precision: str, strongly_typed: bool, route: str,
                                       builder_flags: tuple[str, ...]) -> None:
    features = _features(rtx, precision_flags=flags, always_strongly_typed=not flags)
    config = BuildConfig(precision=precision, strongly_typed=strongly_typed)  # type: ignore[arg-type]
    plan = plan_precision(features, config, carries=[precision], converters={})  # no converter is needed
    assert (plan.route, plan.builder_flags, plan.converter_identity) == (route, builder_flags, None)


@pytest.mark.parametrize(("precision", "carries"), [("int8", []), ("int8", ["fp8"]), ("fp8", ["int8"])])
def test_a_model_without_qdq_of_that_type_is_refused(rtx: Backend, precision: str, carries: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        plan_precision(rtx.features, BuildConfig(precision=precision), carries=carries)  # type: ignore[arg-type]
    text = str(info.value)
    assert f"precision={precision}" in text and "never calibrates" in text
    assert "trtkit quantize" in text and "--calib" in text and "calibration_data=" in text


def test_the_cache_key_plan_does_not_need_the_model(rtx: Backend) -> None:
    """EngineCache.key plans before any model is read (carries unknown): no refusal there."""
    assert plan_precision(rtx.features, BuildConfig(precision="int8")).route == "none"


# ---- real builds on TensorRT-RTX -----------------------------------------------------------------------------


def test_int8_build_of_a_float_model_fails_before_building(rtx: Backend) -> None:
    with pytest.raises(ConfigError, match=r"precision=int8 .* no Q/DQ nodes.*trtkit quantize"):
        build_engine(_qdq_conv(qdq=False), config=BuildConfig(precision="int8"), backend=rtx, progress=False)


def test_int8_build_of_a_qdq_model(rtx: Backend) -> None:
    built = build_engine(_qdq_conv(), config=BuildConfig(precision="int8", compute_capabilities=("8.6",)),
                         backend=rtx, progress=False)
    rec = built.manifest.extra["precision"]
    assert rec["method"] == "none" and rec["conversion"] is None  # RTX: strongly typed, nothing to set
    assert rec["model_carries"]["quantized"] == ["int8"]
    assert built.manifest.config["precision"] == "int8"


def test_fp8_build_checks_the_target_gpus(rtx: Backend) -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"fp8.*8\.6.*8\.9"):
        build_engine(_qdq_conv(TensorProto.FLOAT8E4M3FN), backend=rtx, progress=False,
                     config=BuildConfig(precision="fp8", compute_capabilities=("8.6",)))
