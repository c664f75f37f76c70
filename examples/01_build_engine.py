"""01 - ONNX to engine: build the sample model shipped with trtkit and read the engine's manifest.

Needs a TensorRT backend; no GPU with TensorRT-RTX, which builds on the CPU.

    python examples/01_build_engine.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from trtkit import BuildConfig, build_engine
from trtkit.manifest import read_engine_file
from trtkit.profiles import format_shape
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trtkit-example-"))
    model = tiny_cnn_path()  # image[batch, 3, height, width] -> probs[batch, 10]

    # One optimization profile: batch 1-16, height and width 32-128 (opt 4x3x64x64).
    built = build_engine(model, shapes=TINY_CNN_SHAPES, config=BuildConfig(precision="fp32"), progress=False)
    path = built.save(out_dir / "tiny_cnn.engine")  # the raw plan plus tiny_cnn.engine.manifest.json

    # Reading it back checks that the plan matches its manifest (size and SHA-256).
    plan, manifest = read_engine_file(path, require_manifest=True)
    assert manifest is not None
    print(f"engine:   {path} ({len(plan)} bytes)")
    print(f"backend:  {manifest.backend} {manifest.backend_version}")
    print(f"target:   {dict(manifest.target)}")
    for t in manifest.tensors:
        print(f"{t.mode + ':':<9} {t.name} {t.dtype} {format_shape(t.shape)}")
    for i, profile in enumerate(manifest.profiles):
        print(f"profile {i}: {profile}")
    print(f"manifest: {path.name}.manifest.json (see also: trtkit inspect {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
