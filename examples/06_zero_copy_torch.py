"""06 - Zero-copy I/O with PyTorch: CUDA tensors go in as they are (no host round trip) and outputs come back
as device arrays that ``torch.from_dlpack`` views without copying.

Needs a GPU the backend runs on and PyTorch with CUDA. Elsewhere it prints why it cannot run and exits 0.

    python examples/06_zero_copy_torch.py
"""

from __future__ import annotations

import importlib.util
import sys

from trtkit import DependencyError
from trtkit.backend import get_backend
from trtkit.runtime.compat import run_blocker
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path


def cannot_run() -> str | None:
    """Why this example cannot run on this machine, or None when it can."""
    try:
        reason = run_blocker(get_backend())
    except DependencyError as exc:
        return exc.message
    if reason is not None:
        return f"engines cannot run here: {reason}"
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch)"
    import torch

    if not torch.cuda.is_available():
        return "this PyTorch build has no CUDA support"
    return None


def main() -> int:
    reason = cannot_run()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    import numpy as np
    import torch

    from trtkit import Engine

    with Engine.from_onnx(tiny_cnn_path(), shapes=TINY_CNN_SHAPES) as engine:
        image = torch.randn(4, 3, 64, 64, device="cuda")
        # A CUDA tensor is bound in place and the output is a torch tensor on the same device, produced on
        # PyTorch's current stream: no host round trip, no copy.
        probs = engine({"image": image})["probs"]
        assert isinstance(probs, torch.Tensor) and probs.device == image.device
        print(f"input on {image.device}, output on {probs.device}: {tuple(probs.shape)} {probs.dtype}")

        # The same inputs through host memory give the same result.
        host = engine({"image": image.cpu().numpy()})["probs"]
        np.testing.assert_allclose(probs.cpu().numpy(), host, rtol=1e-5, atol=1e-6)
        print("device and host paths agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
