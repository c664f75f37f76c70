"""01 - ONNX to engine: build the sample model shipped with trtkit and read the engine's manifest.

Needs a TensorRT backend; no GPU with TensorRT-RTX, which builds on the CPU.

    python examples/01_build_engine.py [OUT_DIR]

The files go to OUT_DIR; without it, to a temporary directory that is removed on exit.
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
    if len(sys.argv) > 1:
        return build_and_read(Path(sys.argv[1]))
    with tempfile.TemporaryDirectory(prefix="trtkit-example-") as tmp:  # removed on exit; pass OUT_DIR to keep
        status = build_and_read(Path(tmp))
    print("(the engine was in a temporary directory, now removed: pass OUT_DIR to keep it)")
    return status


def build_and_read(out_dir: Path) -> int:
    """Build the engine into OUT_DIR, then read it back and print its manifest."""
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
