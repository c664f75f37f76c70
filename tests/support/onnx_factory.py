"""Tiny ONNX models for tests, made with onnx.helper (no files, no downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(graph: onnx.GraphProto, domains: Sequence[tuple[str, int]] = ()) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, v) for d, v in domains)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="trtkit-tests")
    model.ir_version = 9
    return model


def conv_relu(dims: Sequence[int | str] = ("N", 3, "H", "W"), channels: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x[dims] -> Conv 3x3 (pad 1) -> Relu -> y."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu0")],
        "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    return _model(graph)


def add_two(dims_a: Sequence[int | str], dims_b: Sequence[int | str]) -> onnx.ModelProto:
    """a + b -> y (broadcasting), two inputs."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add0")],
        "add_two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(dims_a)),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, list(dims_b))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return _model(graph)


def unsupported_op() -> onnx.ModelProto:
    """Relu followed by an op from a custom domain that neither TensorRT nor a plugin implements."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
         helper.make_node("FancyWarp", ["r"], ["y"], name="warp0", domain="com.example")],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _model(graph, domains=[("com.example", 1)])


def reshape_with_shape_input() -> onnx.ModelProto:
    """y = Reshape(x, shape): ``shape`` is an int64[2] shape-tensor input."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape0")],
        "reshape_shape_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return _model(graph)


def matmul_external(tmp: Path, k: int = 64, n: int = 32) -> Path:
    """x[B, k] @ W[k, n] with W stored in an external data file next to the model; returns the .onnx path."""
    w = numpy_helper.from_array(np.arange(k * n, dtype=np.float32).reshape(k, n) / (k * n), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm0")],
        "matmul_external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", n])],
        [w],
    )
    model = _model(graph)
    path = tmp / "mm.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="mm.weights",
              size_threshold=0)
    return path


def deep_conv_chain(layers: int = 1000, channels: int = 4) -> onnx.ModelProto:
    """x[1, channels, 16, 16] -> ``layers`` x (Conv 3x3 + Relu) -> y: small weights, but a TensorRT-RTX CPU build
    of it takes seconds (most of it in one phase), long enough to interrupt."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    prev = "x"
    for i in range(layers):
        w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == layers - 1 else f"r{i}"
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}")]
        prev = out
    graph = helper.make_graph(
        nodes, "deep_conv_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return _model(graph)
