"""The backend adapter: selection, feature detection, log bridging."""

from __future__ import annotations

import logging
import types

import pytest

from trtkit.backend import Backend, get_backend
from trtkit.errors import ConfigError, UnsupportedFeatureError


def test_rtx_features_come_from_its_api(rtx: Backend) -> None:
    f = rtx.features
    assert not f.precision_flags and f.always_strongly_typed
    assert f.compute_capability_targets and not f.timing_cache and not f.tactic_sources
    assert f.engine_validity and f.runtime_cache
    assert (9, 0) not in (f.supported_compute_capabilities or ())
    assert rtx.label.startswith("TensorRT-RTX ")


def test_tensorrt10_like_module_has_precision_flags() -> None:
    flags = types.SimpleNamespace(FP16=1, BF16=2, TF32=3, REFIT=4, STRIP_PLAN=5, VERSION_COMPATIBLE=6)
    fake = types.SimpleNamespace(__version__="10.13.0", BuilderFlag=flags, TacticSource=object())
    f = Backend.from_module("tensorrt", fake).features
    assert f.precision_flags and not f.always_strongly_typed and f.timing_cache and f.tactic_sources
    assert not f.compute_capability_targets and not f.weight_streaming
    assert f.supported_compute_capabilities is None


def test_environment_variable_selects_backend(rtx: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRTKIT_BACKEND", "rtx")
    assert get_backend() is rtx
    monkeypatch.setenv("TRTKIT_BACKEND", "bogus")
    with pytest.raises(ConfigError, match="TRTKIT_BACKEND"):
        get_backend()


def test_get_backend_passes_a_backend_through(rtx: Backend) -> None:
    assert get_backend(rtx) is rtx


def test_enum_lookup_reports_what_exists(rtx: Backend) -> None:
    assert rtx.enum("BuilderFlag", "TF32") is rtx.trt.BuilderFlag.TF32
    with pytest.raises(UnsupportedFeatureError, match=r"BuilderFlag.FP16 is not available on TensorRT-RTX.*TF32"):
        rtx.enum("BuilderFlag", "FP16")


def test_tensorrt_log_reaches_logging_and_captures(rtx: Backend, caplog: pytest.LogCaptureFixture) -> None:
    logger = rtx.logger
    severity = rtx.trt.ILogger.Severity  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, logger="trtkit.tensorrt"), rtx.capture() as cap:
        logger.log(severity.ERROR, "boom from tensorrt")
        logger.log(severity.INFO, "chatter")
    assert ("trtkit.tensorrt", logging.ERROR, "boom from tensorrt") in caplog.record_tuples
    assert cap.lines == ["[ERROR] boom from tensorrt"]
