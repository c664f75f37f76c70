"""05 - Run an engine on NumPy arrays: ``Engine.from_onnx`` builds (or loads from the engine cache), then
``engine(inputs)`` returns outputs by name.

Needs a GPU the backend runs on. Elsewhere it prints why it cannot run and exits 0 (``trtkit doctor`` says more).

    python examples/05_run_numpy.py
"""

from __future__ import annotations

import sys

import numpy as np

from trtkit import DependencyError
from trtkit.backend import get_backend
from trtkit.runtime.compat import run_blocker
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path


def cannot_run() -> str | None:
    """Why engines cannot run on this machine, or None when they can."""
    try:
        return run_blocker(get_backend())
    except DependencyError as exc:
        return exc.message


def main() -> int:
    reason = cannot_run()
    if reason is not None:
        print(f"skipped: this example runs an engine, and engines cannot run here: {reason}")
        return 0
    from trtkit import Engine

    with Engine.from_onnx(tiny_cnn_path(), shapes=TINY_CNN_SHAPES) as engine:  # built once, then cached
        rng = np.random.default_rng(0)
        # Any shape inside the profile (batch 1-16, height and width 32-128) works without rebuilding.
        for batch, size in ((1, 32), (4, 64), (16, 128)):
            image = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
            probs = engine({"image": image})["probs"]  # NumPy in, NumPy out
            sums = probs.sum(axis=1)  # softmax: each row sums to 1
            print(f"image {batch}x3x{size}x{size} -> probs {probs.shape}, row sums {sums.min():.4f}..{sums.max():.4f}")
            assert probs.shape == (batch, 10) and np.allclose(sums, 1.0, atol=1e-3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
