"""Module entries of a call: which trtkit modules it enters, in order (tests/runtime/test_input_path_gpu.py,
benchmarks/input_path.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType

from support import trt_double

DOUBLE = trt_double.__name__


def trace_entries(call: Callable[[], object], until: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Run ``call`` under ``sys.setprofile``; return the trtkit and double functions called, in order, and the
    module entries ``(caller module, callee module, function)`` up to the first call of the double's ``until``."""
    functions: list[str] = []
    entries: list[tuple[str, str, str]] = []
    done = False

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal done
        if event != "call" or done:
            return
        callee = str(frame.f_globals.get("__name__", ""))
        if not (callee.startswith("trtkit.") or callee == DOUBLE):
            return
        name = frame.f_code.co_qualname
        functions.append(f"{callee}.{name}")
        back = frame.f_back
        caller = str(back.f_globals.get("__name__", "")) if back is not None else ""
        if caller != callee:
            entries.append((caller, callee, name))
        if callee == DOUBLE and name.endswith(until):
            done = True

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return functions, entries
