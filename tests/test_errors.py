"""A wrong argument value raises ConfigError wherever it is given, with a message that names the accepted values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trtkit import dtypes
from trtkit.backend import get_backend
from trtkit.builder import BuildConfig, parse_size
from trtkit.errors import ConfigError, TrtkitError
from trtkit.gpu import parse_compute_capability
from trtkit.tools.metrics import Tolerance

CASES: dict[str, tuple[Callable[[], object], str]] = {
    "precision": (lambda: BuildConfig(precision="fp64"), "fp32"),  # type: ignore[arg-type]
    "size": (lambda: parse_size("4 parsecs"), "4G"),
    "backend": (lambda: get_backend("onnxruntime"), "tensorrt"),
    "tolerance": (lambda: Tolerance(rtol=-1.0, atol=0.0), ">= 0"),
    "dtype": (lambda: dtypes.lookup("float128"), "float32"),
    "compute capability": (lambda: parse_compute_capability("ampere"), "8.6"),
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
