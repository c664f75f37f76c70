"""Install hints name a package pip can install: trtkit itself is not on PyPI, so ``trtkit[tensorrt]`` fails."""

from __future__ import annotations

import re

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.gpu import DeviceInfo
from trtkit.runtime.compat import unsupported_gpu

H100 = DeviceInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), total_memory=80 << 30)


def test_an_unsupported_gpu_names_the_tensorrt_package(rtx: Backend) -> None:
    why = unsupported_gpu(rtx, H100)
    assert why is not None and "9.0" in why
    assert "pip install 'tensorrt>=10.1'" in why
    assert "trtkit[" not in why


def test_from_torch_names_the_torch_package() -> None:
    doc = Engine.from_torch.__doc__ or ""
    assert "pip install torch" in doc
    assert not re.search(r"trtkit\[", doc)
