"""Reading TensorRT's engine-inspector JSON into layer records, and `trtkit inspect --layers` where no engine
can be loaded. The samples follow NVIDIA's documented output: the developer guide's "Engine Inspector" section
(detailed CaskConvolution example, names-only strings), the TensorRT 11 migration guide for IEngineInspector
("Bindings" became "I/O Tensors"), and trtexec --exportLayerInfo files quoted in NVIDIA/TensorRT#4020."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.cli import main
from trtkit.errors import EngineFileError
from trtkit.tools.layers import dtype_from_format, parse_engine_information

DETAILED_10 = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to conv1 + relu1",
            "LayerType": "Reformat",
            "Inputs": [{"Name": "input", "Location": "Device", "Dimensions": [16, 3, 224, 224],
                        "Format/Datatype": "Row major linear FP32 format"}],
            "Outputs": [{"Name": "Reformatted Input Tensor 0 to conv1 + relu1", "Location": "Device",
                         "Dimensions": [16, 3, 224, 224],
                         "Format/Datatype": "Channel major FP16 format where channel % 4 == 0"}],
            "ParameterType": "Reformat",
            "Origin": "REFORMAT",
            "TacticValue": "0x00000000000003ea",
            "StreamId": 0,
            "Metadata": "",
        },
        {
            "Name": "node_of_gpu_0/res4_0_branch2a_1 + node_of_gpu_0/res4_0_branch2a_bn_1",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "gpu_0/res3_3_branch2c_bn_3", "Dimensions": [16, 512, 28, 28],
                        "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
            "Outputs": [{"Name": "gpu_0/res4_0_branch2a_bn_2", "Dimensions": [16, 256, 28, 28],
                         "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
            "ParameterType": "Convolution",
            "Kernel": [1, 1],
            "OutMaps": 256,
            "Groups": 1,
            "Weights": {"Type": "Int8", "Count": 131072},
            "Activation": "RELU",
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32",
            "TacticValue": "0xa1b2c3d4e5f60718",
        },
        {
            "Name": "{ForeignNode[/attn/MatMul.../attn/Softmax]}",
            "LayerType": "Myelin",
            "Inputs": [{"Name": "h", "Location": "Device", "Dimensions": [-1, 128, 768],
                        "Format/Datatype": "N/A due to dynamic shapes"}],
            "Outputs": [{"Name": "a", "Location": "Device", "Dimensions": [-1, 128, 768],
                         "Format/Datatype": "N/A due to dynamic shapes"}],
            "TacticName": "",
        },
    ],
    "Bindings": ["input", "output"],
}

NAMES_ONLY_10 = {
    "Layers": [
        "Reformatting CopyNode for Input Tensor 0 to resnetv15_conv0_fwd + resnetv15_relu0_fwd",
        "resnetv15_conv0_fwd + resnetv15_batchnorm0_fwd + resnetv15_relu0_fwd + resnetv15_pool0_fwd",
        "resnetv15_dense0_fwd",
    ],
    "Bindings": ["data", "resnetv15_dense0_fwd"],
}


def test_detailed_layers_give_types_precisions_tactics_and_tensors() -> None:
    info = parse_engine_information(json.dumps(DETAILED_10, indent=2))
    assert info.verbosity == "detailed" and info.detailed
    assert len(info) == 3
    assert info.io_tensors == ("input", "output")

    reformat, conv, myelin = info
    assert reformat.type == "Reformat"
    assert reformat.precision == "float32 -> float16"
    assert reformat.tactic == "0x00000000000003ea"  # no TacticName: the value is all there is
    assert reformat.origin == "REFORMAT"
    assert reformat.inputs[0].dims == (16, 3, 224, 224) and reformat.inputs[0].location == "Device"

    assert conv.name.startswith("node_of_gpu_0/res4_0_branch2a_1")
    assert conv.type == "CaskConvolution"
    assert conv.precision == "int8"
    assert conv.tactic is not None and conv.tactic.startswith("sm80_xmma_fprop")  # the name beats the value
    assert conv.tactic_value == "0xa1b2c3d4e5f60718"
    assert conv.details["Kernel"] == [1, 1]  # parameters stay available
    assert [t.name for t in conv.outputs] == ["gpu_0/res4_0_branch2a_bn_2"]

    assert myelin.type == "Myelin"
    assert myelin.precision is None  # "N/A due to dynamic shapes" names no type
    assert myelin.inputs[0].dims == (-1, 128, 768)
    assert myelin.tactic is None

    dumped = info.to_dict()
    assert json.loads(json.dumps(dumped))["layers"][1]["precision"] == "int8"


def test_names_only_layers_keep_names_and_say_so() -> None:
    info = parse_engine_information(json.dumps(NAMES_ONLY_10))
    assert info.verbosity == "layer_names_only" and not info.detailed
    assert [layer.name for layer in info] == NAMES_ONLY_10["Layers"]
    assert all(layer.type is None and layer.precision is None and layer.tactic is None for layer in info)
    assert info.io_tensors == ("data", "resnetv15_dense0_fwd")


def test_tensorrt_11_io_tensors_replace_bindings() -> None:
    doc = {
        "Layers": ["conv + relu"],
        "I/O Tensors": [
            {"Name": "input_0", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, 224, 224],
             "Location": "Device", "IsShapeInferenceIO": False,
             "ProfileInfo": [{"MinShape": [1, 3, 224, 224], "OptShape": [1, 3, 224, 224],
                              "MaxShape": [1, 3, 224, 224], "Format": "Row major linear FP32 format (kLINEAR)"}]},
            {"Name": "output_0", "IOMode": "Output", "DataType": "Float", "Dimensions": [1, 1000],
             "Location": "Device", "IsShapeInferenceIO": False},
        ],
    }
    info = parse_engine_information(json.dumps(doc))
    assert info.io_tensors == ("input_0", "output_0")
    assert [layer.name for layer in info] == ["conv + relu"]


def test_split_format_and_datatype_keys_are_read() -> None:
    doc = {"Layers": [{"Name": "gemm", "LayerType": "MatrixMultiply",
                       "Inputs": [{"Name": "x", "Dimensions": [2, 16], "Format": "Row major linear",
                                   "DataType": "Half"}],
                       "Outputs": [{"Name": "y", "Dimensions": [2, 16], "Format": "Row major linear",
                                    "DataType": "Half"}]}]}
    (gemm,) = parse_engine_information(json.dumps(doc))
    assert gemm.precision == "float16"
    assert gemm.inputs[0].format == "Row major linear Half"


def test_no_layer_information() -> None:
    assert parse_engine_information(json.dumps({"Layers": [], "Bindings": ["x", "y"]})).verbosity == "none"
    assert parse_engine_information("").verbosity == "none"


@pytest.mark.parametrize("text", ["not json at all", json.dumps(["a", "b"]), json.dumps({"Layers": "conv"})])
def test_malformed_information_is_a_clear_error(text: str) -> None:
    with pytest.raises(EngineFileError, match=r"Layers|not JSON"):
        parse_engine_information(text)


@pytest.mark.parametrize(("fmt", "dtype"), [
    ("Row major linear FP32 format", "float32"),
    ("Channel major FP16 format where channel % 4 == 0", "float16"),
    ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
    ("Row major linear BF16 format", "bfloat16"),
    ("Float", "float32"),
    ("Half", "float16"),
    ("Row major linear Int64 format", "int64"),
    ("N/A due to dynamic shapes", None),
    (None, None),
])
def test_dtype_from_format(fmt: str | None, dtype: str | None) -> None:
    assert dtype_from_format(fmt) == dtype


# ---- `trtkit inspect --layers` where the engine cannot be loaded ---------------------------------------------


@pytest.fixture(scope="module")
def rtx_engine(rtx: Backend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trtkit.builder import build_engine

    d = tmp_path_factory.mktemp("layers")
    onnx.save(conv_relu(dims=(1, 3, 8, 8)), d / "cnn.onnx")
    return build_engine(d / "cnn.onnx", backend=rtx).save(d / "cnn.engine")


def test_inspect_layers_says_why_when_no_gpu_can_run_it(rtx: Backend, rtx_engine: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit.runtime.compat import run_blocker

    reason = run_blocker(rtx)
    if reason is None:
        pytest.skip("this machine can run TensorRT-RTX engines, so --layers does not refuse here")
    assert main(["inspect", str(rtx_engine), "--layers"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"cannot list the layers of {rtx_engine}" in captured.err
    assert reason in captured.err
    assert captured.out == ""


def test_inspect_layers_reports_the_blocker(rtx_engine: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit.runtime import compat

    monkeypatch.setattr(compat, "run_blocker", lambda backend, device=0: f"GPU {device} is busy elsewhere")
    assert main(["inspect", str(rtx_engine), "--layers", "--device", "3"]) == 1
    err = capsys.readouterr().err
    assert "GPU 3 is busy elsewhere" in err and "Traceback" not in err


def test_inspect_layers_without_the_backend_names_the_install(rtx_engine: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit import backend

    monkeypatch.setitem(backend._MODULES, "tensorrt", "trtkit_no_such_module")
    monkeypatch.setattr(backend, "_backends", {})
    assert main(["inspect", str(rtx_engine), "--layers", "--backend", "tensorrt"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'tensorrt>=10.1'" in err and "Traceback" not in err


def test_inspect_layers_of_an_onnx_model_is_a_usage_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(conv_relu(), tmp_path / "m.onnx")
    assert main(["inspect", str(tmp_path / "m.onnx"), "--layers"]) == 2
    assert "--layers" in capsys.readouterr().err
