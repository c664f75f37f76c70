"""Regenerate src/trtkit/data/tiny_cnn.onnx, the small model shipped with trtkit.

A 3-channel image classifier with dynamic batch, height and width:
Conv(3->8, 3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(8->10) -> Softmax.
Weights come from a fixed seed, so the file is reproducible.

    python tools/make_sample_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make() -> onnx.ModelProto:
    rng = np.random.default_rng(20261121)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2, "conv.weight")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "conv.bias")
    fw = numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32) * 0.3, "fc.weight")
    fb = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fc.bias")
    nodes = [
        helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [w, b, fw, fb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtkit")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "src" / "trtkit" / "data" / "tiny_cnn.onnx"
    onnx.save(make(), out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
