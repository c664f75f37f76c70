"""02 - Dynamic shapes: several optimization profiles, written as trtexec flags or as Python values.

Needs a TensorRT backend; no GPU with TensorRT-RTX.

    python examples/02_dynamic_shapes_profiles.py [OUT_DIR]

The files go to OUT_DIR; without it, to a temporary directory that is removed on exit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from trtkit import ShapeError, build_engine
from trtkit.profiles import profiles_from_trtexec
from trtkit.samples import tiny_cnn_path


def main() -> int:
    if len(sys.argv) > 1:
        return build_profiles(Path(sys.argv[1]))
    with tempfile.TemporaryDirectory(prefix="trtkit-example-") as tmp:  # removed on exit; pass OUT_DIR to keep
        return build_profiles(Path(tmp))


def build_profiles(out_dir: Path) -> int:
    """Build an engine with two profiles into OUT_DIR, then show a profile being refused."""
    model = tiny_cnn_path()

    # trtexec syntax: the i-th --minShapes/--optShapes/--maxShapes belong to profile i.
    # Profile 0 serves single images at low latency, profile 1 large batches.
    profiles = profiles_from_trtexec(
        min_shapes=["image:1x3x32x32", "image:8x3x64x64"],
        opt_shapes=["image:1x3x64x64", "image:16x3x64x64"],
        max_shapes=["image:2x3x128x128", "image:32x3x64x64"],
    )
    # The same profiles as Python values: {input: (min, opt, max)}, one mapping per profile.
    same = [
        {"image": ((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))},
        {"image": ((8, 3, 64, 64), (16, 3, 64, 64), (32, 3, 64, 64))},
    ]
    built = build_engine(model, shapes=same, progress=False)
    assert list(built.manifest.profiles) == profiles
    built.save(out_dir / "tiny_cnn_2profiles.engine")
    for i, profile in enumerate(built.manifest.profiles):
        rng = profile["image"]
        print(f"profile {i}: image min {rng.min} opt {rng.opt} max {rng.max}")

    # Profiles are checked against the model before TensorRT sees them; the error says what to change.
    try:
        build_engine(model, shapes={"image": ((1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))}, progress=False)
    except ShapeError as exc:
        print(f"rejected as expected: {exc}")
    else:
        raise AssertionError("a profile with opt < min should be rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
