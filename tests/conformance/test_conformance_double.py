"""The test double (tests/support/trt_double.py) is never more lenient than real TensorRT.

For each real binding, ``trt_double.make_module(flavor, version=<that version>)`` is compared with it:

* every public (no leading underscore) attribute of the double's module namespace must exist on the real
  module; test-only state (counters, knobs) must be underscore-private;
* every public member of each double class must exist on the real class of the same name with the same kind:
  method, readable property, settable property, class, enum member. Plain attributes (class attributes and
  ``self.x = ...`` in any method, read from the double's source) count as settable properties, so a double
  that lets code assign what TensorRT only lets it read is reported;
* a double method's parameter names must match one real overload positionally (``self`` aside); the double may
  leave out trailing parameters only where the real ones have defaults, and may give a default only where the
  real one has one;
* enum classes: the double's members must be a subset of the real members (also for nested enums such as
  ``ILogger.Severity``); other attributes of Python's Enum machinery are not compared.
"""

from __future__ import annotations

from pathlib import Path

import _conformance as C
import pytest

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("target", C.TARGETS, ids=C.TARGET_IDS)
def test_double(target: C.Target) -> None:
    from support import trt_double

    surf = C.surface(target)
    version = surf["version"] if target.rtx else target.version
    ns = trt_double.make_module(target.flavor, version=version)
    checked, bad = C.double_mismatches(ns, surf, Path(trt_double.__file__).read_text())
    C.record(target, "double", checked, len(bad))
    assert checked > 20, f"only {checked} members of the double were compared: the reader is broken"
    assert not bad, (f"trt_double.make_module({target.flavor!r}, version={version!r}) is more lenient than "
                     f"{target.id} in {len(bad)} of {checked} members:\n  " + "\n  ".join(bad))
