"""A wrong argument value raises ConfigError wherever it is given, with a message that names the accepted values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trtkit import dtypes
from trtkit.backend import get_backend
from trtkit.builder import BuildConfig, parse_size
from trtkit.cache import EngineCache
from trtkit.engine import Engine, load_engine
from trtkit.errors import ConfigError, TrtkitError
from trtkit.gpu import parse_compute_capability
from trtkit.samples import tiny_cnn_path
from trtkit.tools.metrics import Tolerance

CASES: dict[str, tuple[Callable[[], object], str]] = {
    "precision": (lambda: BuildConfig(precision="fp64"), "fp32"),  # type: ignore[arg-type]
    "size": (lambda: parse_size("4 parsecs"), "4G"),
    "backend": (lambda: get_backend("onnxruntime"), "tensorrt"),
    "tolerance": (lambda: Tolerance(rtol=-1.0, atol=0.0), ">= 0"),
    "dtype": (lambda: dtypes.lookup("float128"), "float32"),
    "compute capability": (lambda: parse_compute_capability("ampere"), "8.6"),
    "facade config as a dict": (lambda: Engine.from_onnx(tiny_cnn_path(), config={"precision": "fp16"}),  # type: ignore[arg-type]
                                "BuildConfig(**"),
    "facade device": (lambda: Engine.from_onnx(tiny_cnn_path(), device="0"), "int >= 0"),  # type: ignore[arg-type]
    "load device": (lambda: load_engine(b"ftrt" + bytes(100), device=-1), "int >= 0"),
    "cache config": (lambda: EngineCache().get_or_build(tiny_cnn_path(), config=[1]), "BuildConfig"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_argument_value_is_a_config_error(case: str) -> None:
    call, accepted = CASES[case]
    with pytest.raises(ConfigError) as info:
        call()
    assert isinstance(info.value, TrtkitError) and isinstance(info.value, ValueError)
    assert accepted in str(info.value)  # says what would have been accepted



def test_lock_timeout_is_public_a_trtkit_error_and_a_timeout() -> None:
    """``except trtkit.LockTimeoutError``, ``except TrtkitError`` and ``except TimeoutError`` all catch it (the
    raising itself is tested in test_files.py)."""
    import trtkit
    import trtkit.errors
    import trtkit.files

    assert trtkit.LockTimeoutError is trtkit.errors.LockTimeoutError is trtkit.files.LockTimeoutError
    assert issubclass(trtkit.LockTimeoutError, TrtkitError) and issubclass(trtkit.LockTimeoutError, TimeoutError)
    assert "LockTimeoutError" in (trtkit.errors.__doc__ or ""), "listed in the error tree users read"
