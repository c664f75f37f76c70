"""Values that used to be ignored silently are refused: unknown op types in fp32_ops, opsets no ONNX release
defines. And no-GPU noise stays out of a failed build's summary."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from support.onnx_factory import conv_relu, unsupported_op

from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine, diagnostics
from trtkit.builder.model import load_onnx
from trtkit.cli import main
from trtkit.errors import ConfigError, ModelError

STATIC = conv_relu(dims=(1, 3, 8, 8))


@pytest.mark.parametrize(("ops", "suggestion"), [
    (("Softmaxx",), "Softmax"),
    (("softmax",), "Softmax"),
    (("+LayerNorm",), "LayerNormalization"),
    (("-Exp", "+Frobnicate"), None),
])
def test_unknown_fp32_ops_are_refused_with_close_matches(rtx: Backend, ops: tuple[str, ...],
                                                         suggestion: str | None) -> None:
    with pytest.raises(ConfigError, match="fp32_ops: unknown op type") as info:
        build_engine(STATIC, config=BuildConfig(precision="fp16", fp32_ops=ops), backend=rtx, progress=False)
    if suggestion:
        assert f"did you mean {suggestion}" in str(info.value)


def test_known_and_model_op_types_are_accepted() -> None:
    from trtkit.builder.config import check_fp32_ops

    check_fp32_ops(["Softmax", "Conv", "LayerNormalization"])
    check_fp32_ops(["FancyWarp"], model_ops=[n.op_type for n in unsupported_op().graph.node])  # a custom op


def test_cli_fp32_ops_typo_is_one_line(rtx: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "s.onnx"
    onnx.save(STATIC, model)
    rc = main(["build", str(model), "--backend", "tensorrt_rtx", "--no-progress", "--precision", "fp16",
               "--fp32Ops", "Softmax,Sofmax"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "'Sofmax' (did you mean Softmax" in err
    assert not (tmp_path / "s.engine").exists()


@pytest.mark.parametrize("version", [99, 0, -1])
def test_opsets_no_onnx_release_defines_are_refused(version: int) -> None:
    model = conv_relu(dims=(1, 3, 8, 8))
    model.opset_import[0].version = version
    with pytest.raises(ModelError, match=f"opset {version}, which no ONNX release defines") as info:
        load_onnx(model)
    assert f"opsets 1 to {onnx.defs.onnx_opset_version()}" in str(info.value)


def test_no_gpu_noise_stays_out_of_the_summary(rtx: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = "[checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (cudaError 35: CUDA driver version " \
            "is insufficient for CUDA runtime version)"
    real = "IBuilder::buildSerializedNetwork: Error Code 4: Shape Error (reshape changes volume)"
    model = load_onnx(STATIC)
    monkeypatch.setattr(diagnostics, "device_count", lambda: 0)
    msg = diagnostics.build_failure_message(rtx, "m", model, [noise, real], [])
    assert "Shape Error" in msg and "insufficient" not in msg
    assert diagnostics.without_no_gpu_noise([noise]) == [noise]  # nothing else: kept
    monkeypatch.setattr(diagnostics, "device_count", lambda: 1)  # with a GPU it is not noise
    assert "insufficient" in diagnostics.build_failure_message(rtx, "m", model, [noise, real], [])
