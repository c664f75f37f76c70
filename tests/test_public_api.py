"""The public surface: the names trtkit's packages export (pinned, as httpx does), and that importing it stays
light. A change to these lists is a change to the API: say it in CHANGELOG.md."""

from __future__ import annotations
import __future__

import importlib
import subprocess
import sys
import types

import pytest

import trtkit

EXPORTS = {
    "trtkit": [
        "BuildCancelledError", "BuildConfig", "BuildError", "BuiltEngine", "ClosedError", "ConfigError",
        "CudaError", "DependencyError", "Engine", "EngineCache", "EngineFileError", "EngineIncompatibleError",
        "EnginePool", "ExecutionError", "InputError", "LockTimeoutError", "ModelError", "OnnxParseError", "Profile",
        "ShapeError", "ShapeRange", "TritonExportError", "TritonServerError", "TrtkitError",
        "UnsupportedFeatureError", "__version__", "build_engine", "load_engine", "serve",
    ],
    "trtkit.builder": ["BuildConfig", "BuiltEngine", "build_engine", "parse_size"],
    "trtkit.runtime": [
        "ArrayInfo", "Context", "InferHandle", "LoadedEngine", "TensorSpec", "check_compatibility",
        "describe_array", "describe_tensors", "load_engine", "normalize_inputs", "select_profile",
        "validate_inputs",
    ],
    "trtkit.tools": [
        "BenchResult", "CapabilityReport", "CompareReport", "EngineLayers", "LayerwiseReport", "ReduceReport",
        "Tolerance", "benchmark", "check_capability", "check_conversion", "compare", "compare_layerwise",
        "engine_layers", "export_onnx", "export_triton", "generate_inputs", "quantize", "reduce_model",
        "run_onnxruntime",
    ],
}


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_exported_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(EXPORTS[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_every_public_name_in_a_package_is_exported(package: str) -> None:
    """Nothing leaks: a public name bound in the package (other than a submodule) is in ``__all__``."""
    module = importlib.import_module(package)
    public = {name for name, value in vars(module).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType | __future__._Feature)
              and name not in ("TYPE_CHECKING", "Any")}
    assert public <= set(module.__all__)


def test_the_documented_entry_points_keep_their_paths() -> None:
    from trtkit.builder import build_engine
    from trtkit.engine import Engine
    from trtkit.runtime import load_engine

    assert trtkit.Engine is Engine
    assert trtkit.build_engine is build_engine
    assert load_engine.__module__ == "trtkit.runtime.loading"


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
        with pytest.raises(trtkit.DependencyError, match=r"pip install 'tensorrt>=10.1'"):
            backend.get_backend("tensorrt")
        with pytest.raises(trtkit.ConfigError, match="unknown backend"):
            backend.get_backend("onnxruntime")
    finally:
        mp.undo()
