"""The public surface: what `import trtkit` exports, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import trtkit


def test_all_names_resolve_and_report_package_module() -> None:
    for name in trtkit.__all__:
        obj = getattr(trtkit, name)
        assert obj is not None, name
        if isinstance(obj, type):
            assert obj.__module__.startswith("trtkit"), name


def test_every_error_derives_from_root() -> None:
    for name in trtkit.__all__:
        obj = getattr(trtkit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, trtkit.TrtkitError), name


def test_import_loads_neither_tensorrt_nor_cuda_nor_onnx() -> None:
    code = (
        "import sys, trtkit\n"
        "heavy = [m for m in ('tensorrt', 'tensorrt_rtx', 'cuda', 'cuda.core', 'cuda.bindings', 'onnx',"
        " 'numpy', 'torch', 'cupy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_missing_backend_error_says_what_to_install(monkeypatch: object) -> None:
    import pytest

    from trtkit import backend

    mp = pytest.MonkeyPatch()
    try:
        mp.setitem(backend._MODULES, "tensorrt", "trtkit_no_such_module")
        mp.setattr(backend, "_backends", {})
        with pytest.raises(trtkit.DependencyError, match=r"pip install 'trtkit\[tensorrt\]'"):
            backend.get_backend("tensorrt")
        with pytest.raises(trtkit.ConfigError, match="unknown backend"):
            backend.get_backend("onnxruntime")
    finally:
        mp.undo()
