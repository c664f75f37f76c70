"""04 - Accuracy: compare with ONNX Runtime on the CPU, for a second ONNX model and for an engine.

The ONNX part runs anywhere onnxruntime is installed (pip install onnxruntime). The engine part builds an
engine (no GPU needed with TensorRT-RTX) and compares it where this machine can run it; elsewhere the report
says why not (``trtkit compare`` exits 3 then).

    python examples/04_compare_with_onnxruntime.py [OUT_DIR]

The files go to OUT_DIR; without it, to a temporary directory that is removed on exit.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from trtkit import build_engine
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path
from trtkit.tools.compare import compare


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 value (ties to even), kept as float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def main() -> int:
    if importlib.util.find_spec("onnxruntime") is None:
        print("skipped: ONNX Runtime is the accuracy reference and is not installed (pip install onnxruntime)")
        return 0
    if len(sys.argv) > 1:
        return compare_all(Path(sys.argv[1]))
    with tempfile.TemporaryDirectory(prefix="trtkit-example-") as tmp:  # removed on exit; pass OUT_DIR to keep
        return compare_all(Path(tmp))


def compare_all(out_dir: Path) -> int:
    """Write the rounded model and the engine into OUT_DIR and compare both with ONNX Runtime."""
    model = tiny_cnn_path()

    # A variant whose weights are rounded to bfloat16 values (still an FP32 model): what BF16 weights cost.
    proto = onnx.load(model)
    for init in proto.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(round_to_bf16(numpy_helper.to_array(init)), init.name))
    rounded = out_dir / "tiny_cnn_bf16_weights.onnx"
    onnx.save(proto, rounded)

    # Same generated inputs (seed 0) for both; dynamic dims need a shape.
    for precision in ("fp32", "bf16"):
        report = compare(model, rounded, shapes="image:2x3x64x64", precision=precision)
        print(f"--- weights rounded to bf16, judged at {precision} tolerances: {report.status.upper()}")
        print(report.format())

    # An engine: built here, compared where it can run.
    engine = build_engine(model, shapes=TINY_CNN_SHAPES, progress=False).save(out_dir / "tiny_cnn.engine")
    report = compare(model, engine)  # inputs take the profile's opt shape, 4x3x64x64
    print(f"--- engine vs ONNX Runtime: {report.status.upper()} (exit status {report.exit_code})")
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
