"""Where quantization took hold: layers that compute in INT8 and those TensorRT kept in float, from the engine
inspector's JSON or from TensorRT's verbose build log, and ``trtkit inspect --layers`` on an INT8 engine.

The rule is NVIDIA's TensorRT Engine Explorer's (NVIDIA/TensorRT tools/experimental/trt-engine-explorer:
``trex/layer.py`` takes a layer's precision from its first input, ``trex/lint.py`` flags Scale layers with Int8 on
one side as unfused Q/DQ and Int8 convolutions with float outputs as still INT8). The inspector samples follow
NVIDIA's documented JSON (developer guide, "Engine Inspector": detailed CaskConvolution records with
``"Format/Datatype"`` and ``"Weights": {"Type": "Int8", ...}``). The TensorRT 8-10 log lines follow the
"Engine Layer Information" block trtexec --verbose prints (``Layer(TYPE): NAME, Tactic: T, in[Int8(dims)] ->
out[Int8(dims)]``, newer: ``in (Int8[dims])``); the TensorRT-RTX ``Layers:`` block is captured live here."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtkit.cli.inspect as inspect_cli
from trtkit.backend import Backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.cli import main
from trtkit.tools.layers import parse_engine_information
from trtkit.tools.placement import layers_from_build_log, placement, placement_kind, qdq_fed_nodes


def _t(name: str, fmt: str, dims: list[int] | None = None) -> dict[str, Any]:
    return {"Name": name, "Location": "Device", "Dimensions": dims or [1, 64, 28, 28], "Format/Datatype": fmt}


INT8_NC32 = "Thirty-two wide channel vectorized row major Int8 format"
FP32 = "Row major linear FP32 format"

QDQ_ENGINE_10 = {
    "Layers": [
        {"Name": "input_quantize", "LayerType": "Scale", "ParameterType": "Scale",
         "Inputs": [_t("input", FP32)], "Outputs": [_t("input_q", INT8_NC32)]},
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
         "Inputs": [_t("input_q", INT8_NC32)], "Outputs": [_t("relu1_out", INT8_NC32)],
         "Weights": {"Type": "Int8", "Count": 36864}, "TacticName": "sm80_xmma_fprop_implicit_gemm_i8i8_i8i32_f32"},
        {"Name": "conv2", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
         "Inputs": [_t("relu1_out", INT8_NC32)], "Outputs": [_t("conv2_out", FP32)],
         "Weights": {"Type": "Int8", "Count": 36864}},
        {"Name": "Reformatting CopyNode for Input Tensor 0 to softmax", "LayerType": "Reformat",
         "Inputs": [_t("conv2_out", FP32)], "Outputs": [_t("r", "Channel major FP32 format")]},
        {"Name": "softmax", "LayerType": "Softmax", "Inputs": [_t("r", FP32)], "Outputs": [_t("prob", FP32)]},
        {"Name": "dequantize_tail", "LayerType": "Scale", "Inputs": [_t("relu1_out", INT8_NC32)],
         "Outputs": [_t("tail", FP32)]},
        {"Name": "shape_math", "LayerType": "ElementWise", "Inputs": [_t("s", "Row major linear Int32 format", [4])],
         "Outputs": [_t("s2", "Row major linear Int32 format", [4])]},
    ],
    "Bindings": ["input", "prob", "tail"],
}


def test_layers_of_a_qdq_engine_by_kind() -> None:
    info = parse_engine_information(json.dumps(QDQ_ENGINE_10))
    kinds = {layer.name: placement_kind(layer) for layer in info}
    assert kinds == {
        "input_quantize": "conversion",  # FP32 -> Int8: an unfused quantize
        "conv1 + relu1": "quantized",
        "conv2": "quantized",  # Int8 input and weights, float output: still an INT8 convolution
        "Reformatting CopyNode for Input Tensor 0 to softmax": "conversion",
        "softmax": "float",
        "dequantize_tail": "conversion",  # Int8 -> FP32 without Int8 weights: an unfused dequantize
        "shape_math": "other",
    }
    found = placement(info)
    assert [x.name for x in found.quantized] == ["conv1 + relu1", "conv2"] and found.precisions == ["int8"]
    line = found.summary()
    assert line.startswith("INT8 took hold in 2 of 3 computing layers (CaskConvolution x2); kept in float: softmax")
    assert "3 conversion layers" in line and "engine inspector" in line and "\n" not in line
    assert found.to_dict()["float"] == ["softmax"]


def test_a_float_engine_has_nothing_quantized() -> None:
    info = parse_engine_information(json.dumps({"Layers": [QDQ_ENGINE_10["Layers"][4]], "Bindings": []}))
    found = placement(info)
    assert not found.quantized and [x.name for x in found.float] == ["softmax"]


TRT10_LOG = (
    "Engine Layer Information:\n"
    "Layer(Reformat): Reformatting CopyNode for Input Tensor 0 to Conv_0 + PWN(Clip_3), Tactic: 0x0000000000000000, "
    "inputs[Float(1,3,512,768)] -> Reformatted Input Tensor 0 to Conv_0 + PWN(Clip_3)[Int8(1,3,512,768)]\n"
    "Layer(CaskConvolution): Conv_0 + PWN(Clip_3), Tactic: 0x02d9f5211e4d2d82, Reformatted Input Tensor 0 to "
    "Conv_0 + PWN(Clip_3)[Int8(1,3,512,768)] -> 395[Int8(1,32,256,384)]\n"
    "Layer(CaskConvolution): Conv_8, Tactic: 0x9dcdcc67441d3742, 395[Int8(1,32,256,384)] -> 666[Int8(1,16,256,384)]\n"
    "Layer(CaskConvolution): /head/Conv, input (Float[-1,16,43,77]) -> hidden (Float[-1,2,43,77])\n"
)


def test_tensorrt_10_build_log_layers() -> None:
    info = layers_from_build_log(["some other message", TRT10_LOG, "Engine Layer Information:\nnot a layer"])
    assert info is not None and [x.type for x in info] == ["Reformat", "CaskConvolution", "CaskConvolution",
                                                          "CaskConvolution"]
    assert [x.name for x in info][1:] == ["Conv_0 + PWN(Clip_3)", "Conv_8", "/head/Conv"]
    assert info[1].inputs[0].dtype == "int8" and info[1].outputs[0].dims == (1, 32, 256, 384)
    assert info[3].inputs[0].dtype == "float32" and info[3].inputs[0].name == "input"
    found = placement(info, "build log")
    assert [x.name for x in found.quantized] == ["Conv_0 + PWN(Clip_3)", "Conv_8"]
    assert [x.name for x in found.float] == ["/head/Conv"] and len(found.conversions) == 1


def test_no_layer_information_in_the_log() -> None:
    assert layers_from_build_log(["[MemUsageStats] Peak memory usage", "Layers:\n\nI/O Tensors:"]) is None


# ---- TensorRT-RTX, live: its verbose build log lists the layers on a machine without a GPU ------------------


def _qdq_cnn() -> onnx.ModelProto:
    """x -> 2 x (Q/DQ -> Conv with DQ'd INT8 weights -> Relu) -> Conv with float weights -> y."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [numpy_helper.from_array(np.array(0, np.int8), "z")], "x"
    for i, cin in enumerate((3, 16)):
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), f"s{i}"),
                  numpy_helper.from_array(rng.integers(-60, 60, (16, cin, 3, 3)).astype(np.int8), f"wq{i}"),
                  numpy_helper.from_array(np.full(16, 0.005, np.float32), f"ws{i}"),
                  numpy_helper.from_array(np.zeros(16, np.int8), f"wz{i}")]
        nodes += [helper.make_node("QuantizeLinear", [x, f"s{i}", "z"], [f"q{i}"], name=f"q{i}"),
                  helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", "z"], [f"d{i}"], name=f"d{i}"),
                  helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}", f"wz{i}"], [f"w{i}"], name=f"wd{i}",
                                   axis=0),
                  helper.make_node("Conv", [f"d{i}", f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    inits.append(numpy_helper.from_array((rng.standard_normal((8, 16, 1, 1)) * 0.1).astype(np.float32), "wf"))
    nodes.append(helper.make_node("Conv", [x, "wf"], ["y"], name="head"))
    graph = helper.make_graph(nodes, "qdq_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_qdq_fed_nodes_of_the_model() -> None:
    assert qdq_fed_nodes(_qdq_cnn()) == (["conv0", "conv1"], ["head"])


def _build_log(rtx: Backend, verbosity: str | None) -> list[str]:
    with rtx.capture(logging.DEBUG) as cap:
        build_engine(_qdq_cnn(), backend=rtx, progress=False,
                     config=BuildConfig(precision="int8", profiling_verbosity=verbosity))  # type: ignore[arg-type]
    return [message for _, message in cap.records]


def test_tensorrt_rtx_prints_the_layers_with_detailed_verbosity(rtx: Backend) -> None:
    info = layers_from_build_log(_build_log(rtx, "detailed"))
    assert info is not None and info.detailed
    found = placement(info, "build log")
    quantized = " ".join(x.name + str(x.details.get("Metadata")) for x in found.quantized)
    assert "conv0" in quantized and "conv1" in quantized and "head" not in quantized
    assert any("head" in str(x.details.get("Metadata")) for x in found.float)


def test_tensorrt_rtx_without_detailed_verbosity_shows_one_opaque_layer(rtx: Backend) -> None:
    info = layers_from_build_log(_build_log(rtx, None))
    assert info is not None and {(x.type or "").lower() for x in info} == {"myelin"}


# ---- trtkit inspect --layers on an INT8 engine ---------------------------------------------------------------


@pytest.fixture
def int8_engine(rtx: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real INT8 engine file; loading it and the inspector's answer are replaced (no GPU runs it here)."""
    path = build_engine(_qdq_cnn(), backend=rtx, progress=False, config=BuildConfig(precision="int8")).save(
        tmp_path / "cnn.int8.engine")

    class Loaded:
        inputs: tuple[Any, ...] = ()
        outputs: tuple[Any, ...] = ()

    @contextlib.contextmanager
    def load(*args: Any, **kwargs: Any) -> Iterator[Loaded]:
        yield Loaded()

    monkeypatch.setattr(inspect_cli, "_layers_backend", lambda manifest, backend, device: (rtx, None))
    monkeypatch.setattr(inspect_cli, "load_engine", load)
    monkeypatch.setattr(inspect_cli, "engine_layers", lambda le: parse_engine_information(QDQ_ENGINE_10))
    return path


def test_inspect_layers_marks_int8_and_float_layers(int8_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(int8_engine), "--layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(x for x in lines if x.split()[:2] == ["#", "type"])
    assert "runs in" in head
    rows = {line.split()[-1]: line for line in lines if line.startswith("    ") and line.split()[0].isdigit()}
    assert " INT8 " in rows["conv2"] and " float " in rows["softmax"] and " convert " in rows["dequantize_tail"]
    assert lines[-1].strip().startswith("INT8 took hold in 2 of 3 computing layers")


def test_inspect_layers_json_has_the_placement(int8_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(int8_engine), "--layers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["placement"]["quantized"] == ["conv1 + relu1", "conv2"]
    assert data["placement"]["float"] == ["softmax"]
