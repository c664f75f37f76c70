"""Graph preparation inside builds: ``sanitize`` auto / always / never, ``freeze``, the manifest record, the cache key.

The orchestration tests swap :func:`trtkit.builder.prepare.prepare` for a small stand-in (an opset upgrade and
frozen inputs written here), so they check when the builder prepares and what it records whatever the real
preparation does; the end-to-end tests at the bottom use the real one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder import build as build_module
from trtkit.builder import preparation as preparation_module
from trtkit.builder.model import OnnxModel, load_onnx
from trtkit.builder.prepare import Prepared, PrepareOptions
from trtkit.cache import EngineCache
from trtkit.errors import ConfigError, OnnxParseError
from trtkit.profiles import Profile

BACKEND_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
OPSET6_ADD = BACKEND_DATA / "pytorch-operator" / "test_operator_add_broadcast" / "model.onnx"
"""Opset 6 Add with the old ``broadcast`` attribute: TensorRT's parser refuses it, opset 17 builds."""


def scaled() -> onnx.ModelProto:
    """y = x[N, 4] * sr (a float scalar input): ``sr`` is the input users always pass as the same constant."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "sr"], ["y"], name="scale")], "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("sr", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class StandIn:
    """A stand-in for ``prepare``: freezes inputs and upgrades opsets below 7 (or to ``upgrade_opset``)."""

    def __init__(self, change: bool = True) -> None:
        self.calls: list[PrepareOptions] = []
        self.change = change

    def __call__(self, model: OnnxModel, options: PrepareOptions, profiles: Sequence[Profile] = ()) -> Prepared:
        self.calls.append(options)
        proto = model.proto_with_weights()
        steps: list[str] = []
        for name, value in options.freeze.items():
            (vi,) = [v for v in proto.graph.input if v.name == name]
            dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            proto.graph.input.remove(vi)
            proto.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
            steps.append(f"froze input {name}")
        opset = model.opsets()["ai.onnx"]
        target = options.upgrade_opset or (17 if opset < 7 else None)
        if self.change and target is not None and target != opset:
            proto = version_converter.convert_version(proto, target)
            steps.append(f"opset {opset} -> {target}")
        return Prepared(load_onnx(proto), tuple(steps), {"steps": steps, "stand_in": True})


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    fake = StandIn()
    monkeypatch.setattr(build_module, "prepare", fake)
    monkeypatch.setattr(preparation_module, "prepare", fake)
    return fake


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """trtkit's warnings (TensorRT's own log, on trtkit.tensorrt, is not trtkit's)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("trtkit.") and r.name != "trtkit.tensorrt"]


# ---- the config ------------------------------------------------------------------------------------------------


def test_preparation_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="sanitize 'sometimes' is not one of auto, always, never"):
        BuildConfig(sanitize="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="upgrade_opset must be between 7 and"):
        BuildConfig(upgrade_opset=6)
    with pytest.raises(ConfigError, match="upgrade_opset must be between 7 and"):
        BuildConfig(upgrade_opset=10_000)
    with pytest.raises(ConfigError, match="freeze must be a mapping"):
        BuildConfig(freeze=[("sr", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"freeze\['sr'\] must be a number"):
        BuildConfig(freeze={"sr": "16000"})
    with pytest.raises(ConfigError, match="not a finite number"):
        BuildConfig(freeze={"sr": float("nan")})
    with pytest.raises(ConfigError, match="rectangular"):
        BuildConfig(freeze={"m": [[1, 2], [3]]})
    with pytest.raises(ConfigError, match="freeze, lower_dynamic_quant prepare the graph, which sanitize='never'"):
        BuildConfig(sanitize="never", freeze={"sr": 1}, lower_dynamic_quant=True)
    with pytest.raises(ConfigError, match="lower_dynamic_quant must be True or False"):
        BuildConfig(lower_dynamic_quant=1)  # type: ignore[arg-type]


def test_freeze_values_are_immutable_json_and_round_trip() -> None:
    config = BuildConfig(freeze={"sr": 16000, "scales": [1.0, 1.0, 2.0, 2.0], "m": np.eye(2)}, upgrade_opset=17)
    assert config.freeze == {"sr": 16000, "scales": (1.0, 1.0, 2.0, 2.0), "m": ((1.0, 0.0), (0.0, 1.0))}
    data = config.to_dict()
    assert data["freeze"] == {"sr": 16000, "scales": [1.0, 1.0, 2.0, 2.0], "m": [[1.0, 0.0], [0.0, 1.0]]}
    assert BuildConfig.from_dict(data) == config
    with pytest.raises(TypeError):
        config.freeze["sr"] = 1  # type: ignore[index]
    assert BuildConfig(freeze={}).freeze is None


# ---- when preparation runs ----------------------------------------------------------------------------------------


def test_auto_prepares_and_retries_once_after_a_parse_failure(rtx: Backend, stand_in: StandIn,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trtkit"):
        built = build_engine(OPSET6_ADD, backend=rtx, progress=False)
    assert len(stand_in.calls) == 1
    record = built.manifest.extra["preparation"]
    assert record["trigger"] == "retry" and record["steps"] == ["opset 6 -> 17"] and record["stand_in"]
    assert "Pre-opset 7 broadcasting" in record["first_error"]
    (warning,) = _warnings(caplog)
    assert "failed as it is (model: Assertion failed" in warning and "\n" not in warning
    assert warning.endswith("built it after preparing the model: opset 6 -> 17")
    assert built.manifest.onnx["sha256"] == load_onnx(OPSET6_ADD).sha256  # the manifest names the original


def test_never_does_not_prepare(rtx: Backend, stand_in: StandIn) -> None:
    with pytest.raises(OnnxParseError, match="Pre-opset 7 broadcasting"):
        build_engine(OPSET6_ADD, config=BuildConfig(sanitize="never"), backend=rtx, progress=False)
    assert stand_in.calls == []


def test_a_model_that_builds_is_not_prepared(rtx: Backend, stand_in: StandIn,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trtkit"):
        built = build_engine(conv_relu((1, 3, 8, 8)), backend=rtx, progress=False)
    assert stand_in.calls == [] and "preparation" not in built.manifest.extra and _warnings(caplog) == []


def test_always_prepares_a_model_that_builds(rtx: Backend, stand_in: StandIn) -> None:
    built = build_engine(conv_relu((1, 3, 8, 8)), config=BuildConfig(sanitize="always", upgrade_opset=18),
                         backend=rtx, progress=False)
    assert stand_in.calls == [PrepareOptions(upgrade_opset=18)]
    assert built.manifest.extra["preparation"]["trigger"] == "always"
    assert built.manifest.extra["preparation"]["steps"] == ["opset 17 -> 18"]


def test_auto_keeps_the_first_error_when_preparation_changes_nothing(rtx: Backend,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = StandIn(change=False)
    monkeypatch.setattr(preparation_module, "prepare", fake)
    with pytest.raises(OnnxParseError, match="Pre-opset 7 broadcasting") as info:
        build_engine(OPSET6_ADD, backend=rtx, progress=False)
    assert len(fake.calls) == 1 and "after preparing" not in str(info.value)


def test_auto_keeps_the_first_error_when_preparation_fails(rtx: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: OnnxModel, options: PrepareOptions, profiles: Sequence[Profile] = ()) -> Prepared:
        raise RuntimeError("folding library crashed")

    monkeypatch.setattr(preparation_module, "prepare", broken)
    with pytest.raises(OnnxParseError, match="Pre-opset 7") as info:
        build_engine(OPSET6_ADD, backend=rtx, progress=False)
    first = str(info.value).splitlines()[0]
    assert first.endswith("(trtkit could not prepare the graph: RuntimeError: folding library crashed)")


def test_a_second_failure_keeps_the_first_error_and_says_what_was_prepared(
        rtx: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def to_opset_6(model: OnnxModel, options: PrepareOptions, profiles: Sequence[Profile] = ()) -> Prepared:
        proto = model.proto_with_weights()  # "prepared" into another opset-6 model: still refused
        proto.graph.node[0].name = "renamed"
        return Prepared(load_onnx(proto), ("renamed a node",), {"steps": ["renamed a node"]})

    monkeypatch.setattr(preparation_module, "prepare", to_opset_6)
    with caplog.at_level(logging.WARNING, logger="trtkit"), pytest.raises(OnnxParseError) as info:
        build_engine(OPSET6_ADD, backend=rtx, progress=False)
    first = str(info.value).splitlines()[0]
    assert first.startswith("TensorRT-RTX") and "Pre-opset 7 broadcasting" in first
    assert "(preparing the model did not help: renamed a node; then model: Assertion failed" in first
    assert isinstance(info.value.__cause__, OnnxParseError)
    assert _warnings(caplog) == []  # the failure is the one message


# ---- frozen inputs ------------------------------------------------------------------------------------------------


def test_freeze_prepares_first_and_the_input_leaves_the_engine(rtx: Backend, stand_in: StandIn) -> None:
    built = build_engine(scaled(), shapes={"x": (2, 4)}, config=BuildConfig(freeze={"sr": 2.0}), backend=rtx,
                         progress=False)
    assert stand_in.calls == [PrepareOptions(freeze={"sr": 2.0})]
    assert [(t.name, t.mode) for t in built.manifest.tensors] == [("x", "input"), ("y", "output")]
    assert built.manifest.extra["preparation"]["trigger"] == "freeze"
    assert built.manifest.config["freeze"] == {"sr": 2.0}


def test_freeze_names_are_checked_against_the_model(rtx: Backend, stand_in: StandIn) -> None:
    with pytest.raises(ConfigError, match=r"freeze names 'rate', not an input of scaled; its inputs: 'x', 'sr'"):
        build_engine(scaled(), shapes={"x": (2, 4)}, config=BuildConfig(freeze={"rate": 2.0}), backend=rtx)
    with pytest.raises(ConfigError, match="profile 0 gives shapes for frozen input 'sr'"):
        build_engine(scaled(), shapes={"x": (2, 4), "sr": ()}, config=BuildConfig(freeze={"sr": 2.0}), backend=rtx)
    assert stand_in.calls == []


# ---- the cache key ------------------------------------------------------------------------------------------------


def test_cache_key_counts_preparation_options_and_library_versions(rtx: Backend, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import trtkit.cache as cache_module

    cache = EngineCache(tmp_path)
    model = load_onnx(scaled())
    configs = [BuildConfig(), BuildConfig(sanitize="always"), BuildConfig(sanitize="never"),
               BuildConfig(freeze={"sr": 2.0}), BuildConfig(freeze={"sr": 3.0}), BuildConfig(upgrade_opset=18),
               BuildConfig(lower_dynamic_quant=True)]
    keys = [cache.key(model, [], c, rtx) for c in configs]
    assert len(set(keys)) == len(keys)
    monkeypatch.setattr(cache_module, "library_versions", lambda: {"onnxslim": "999"})
    moved = [cache.key(model, [], c, rtx) for c in configs]
    assert [a == b for a, b in zip(keys, moved, strict=True)] == [c.sanitize == "never" for c in configs]


def test_cache_key_of_never_is_the_key_before_graph_preparation(rtx: Backend, tmp_path: Path) -> None:
    """sanitize="never" leaves the key material as it was before the preparation options existed."""
    cache = EngineCache(tmp_path)
    config = BuildConfig(sanitize="never")
    assert not {"sanitize", "freeze", "upgrade_opset", "lower_dynamic_quant"} & set(config.cache_dict())
    assert {"sanitize", "freeze", "upgrade_opset", "lower_dynamic_quant"} <= set(BuildConfig().cache_dict())
    model = load_onnx(scaled())
    assert cache.key(model, [], config, rtx) != cache.key(model, [], BuildConfig(), rtx)


# ---- end to end, with the real preparation ---------------------------------------------------------------------


def test_real_preparation_builds_an_opset_6_model_after_the_first_failure(rtx: Backend,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trtkit"):
        built = build_engine(OPSET6_ADD, backend=rtx, progress=False)
    record = built.manifest.extra["preparation"]
    assert record["trigger"] == "retry" and record["steps"]
    assert [w for w in _warnings(caplog) if "built it after preparing the model" in w]


def test_real_freeze_removes_the_input(rtx: Backend) -> None:
    built = build_engine(scaled(), shapes={"x": (2, 4)}, config=BuildConfig(freeze={"sr": 2.0}), backend=rtx,
                         progress=False)
    assert [t.name for t in built.manifest.tensors] == ["x", "y"]
    assert built.manifest.extra["preparation"]["steps"]
