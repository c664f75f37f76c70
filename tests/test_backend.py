"""The backend adapter: selection, feature detection, log bridging."""

from __future__ import annotations

import logging
import shlex
import sys
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


def _pip_targets(hint: str) -> list[str]:
    """The package arguments of every ``pip install`` in ``hint``, quotes removed as a shell would."""
    targets: list[str] = []
    for part in hint.split("pip install ")[1:]:
        words = shlex.split(part.split(")")[0].split("  ")[0].split(";")[0])
        targets.extend(w for w in words if not w.startswith("-"))
    return targets


def test_install_hints_name_packages_pip_can_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """trtkit is not on PyPI, so ``pip install 'trtkit[tensorrt]'`` fails: every hint names the package itself
    (a hint may add the extra for a trtkit clone, ``pip install '.[rtx]'``)."""
    from trtkit.backend import install_hint
    from trtkit.builder.precision import INSTALL_FP16, INSTALL_MODELOPT
    from trtkit.errors import DependencyError
    from trtkit.tools import torch_export

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
    with pytest.raises(DependencyError) as info:
        torch_export._torch()
    hints = {
        "tensorrt": (install_hint("tensorrt"), "tensorrt>=10.1"),
        "tensorrt_rtx": (install_hint("tensorrt_rtx"), "tensorrt-rtx-cu12"),
        "fp16": (INSTALL_FP16, "onnxconverter-common"),
        "modelopt": (INSTALL_MODELOPT, "nvidia-modelopt[onnx]"),
        "torch": (str(info.value), "torch"),
    }
    for what, (hint, package) in hints.items():
        targets = _pip_targets(hint)
        assert targets and targets[0] == package, (what, hint)
        assert not any(t.startswith("trtkit") for t in targets), (what, hint)
