"""trtkit's own TensorRT usage, found by reading trtkit's source, checked against each real binding.

What counts as "used" is read from the source (AST), never from a hand-kept list:

* **protocols** - the Protocol classes in ``trtkit/backend/protocols.py``. A Protocol whose docstring starts with
  ``trt.ClassName`` mirrors that class; one starting "The ``tensorrt`` module" mirrors the module. Methods must
  be methods; a ``@property`` without setter must be readable (a settable property reads too); a property
  with a setter, or an annotated attribute, must be a settable property; module members must exist (a ``def``
  one must be callable). Flavour conventions: "(TensorRT-RTX only)" / "(TensorRT only)" in the Protocol's
  docstring restricts the whole Protocol; the same words in a comment on a member's first line (or the comment
  lines right above it) or in the member's docstring restrict that member alone.
* **lookups** - ``<x>.enum("Enum", "MEMBER")`` calls with literal names (an ``IfExp`` of two literals counts
  as both), attribute chains on ``trt`` / ``<expr>.trt`` (and ``module`` / ``m`` inside the ``trtkit/backend``
  package), and ``getattr`` / ``hasattr`` on those with a literal name. A lookup is *optional* (reported per
  version, never failed) when its absence is handled by construction: ``hasattr``, ``getattr`` with a default,
  ``enum(..., option=...)`` (raises UnsupportedFeatureError naming the user's option), anything inside
  ``Backend._detect_features``, inside an ``if``/``while``/conditional/``and`` whose test reads ``features``
  (or a local alias of ``<x>.features``), or inside a ``try`` whose handler catches UnsupportedFeatureError or
  AttributeError. Every other lookup is *required*: it must resolve on every version of every flavour.
  Lookups with computed names cannot be checked statically; they are listed in the report.
* **overrides** - classes deriving from a TensorRT class (``base = <x>.IFoo; class _Y(base)`` or
  ``class _Y(trt.IFoo)``): each non-dunder method must exist on the real base class, or TensorRT never calls it.
  ``trt.IOutputAllocator`` exposes no methods to Python at all (its trampoline overrides C++ virtuals only), so
  for it the surface probe calls each C++ virtual of the trampoline through the vtable on a recording subclass;
  a method passes when the trampoline was seen calling it.
"""

from __future__ import annotations

import _conformance as C
import pytest

pytestmark = pytest.mark.conformance

parametrize_targets = pytest.mark.parametrize("target", C.TARGETS, ids=C.TARGET_IDS)


@parametrize_targets
def test_protocols(target: C.Target) -> None:
    surf = C.surface(target)
    uses, problems = C.protocol_uses()
    relevant = [u for u in uses if u.only in (None, target.flavor)]
    bad = list(problems)
    for use in relevant:
        why = C.use_conforms(use, C.real_kind(surf, use.owner, use.name))
        if why is not None:
            bad.append(f"{use.where}: {use.label} ({use.kind}{', ' + use.only + ' only' if use.only else ''}): "
                       f"{why}")
    C.record(target, "protocols", len(relevant), len(bad))
    assert relevant, "no Protocol members found in trtkit/backend/protocols.py: the reader is broken"
    assert not bad, f"{len(bad)} of {len(relevant)} members trtkit's Protocols declare do not conform to " \
        f"{target.id} ({surf['version']}):\n  " + "\n  ".join(bad)


@parametrize_targets
def test_lookups(target: C.Target) -> None:
    surf = C.surface(target)
    found, dynamic = C.lookups()
    C.EXTRA["dynamic_lookups"] = dynamic
    table = C.EXTRA.setdefault("lookup_rows", {})
    bad = []
    for lk in found:
        present = C.resolve(surf, lk.path) is not None
        row = table.setdefault((lk.label, lk.optional), {})
        row[target.id] = row.get(target.id, True) and present
        if not present and lk.optional is None:
            bad.append(f"{lk.where}: {lk.label} (via {lk.via}) is missing and the lookup is unconditional")
    C.EXTRA["lookup_table"] = sorted(((label, why, present) for (label, why), present in table.items()),
                                     key=lambda row: (row[0], row[1] or ""))
    C.record(target, "lookups", len(found), len(bad))
    assert any(lk.optional is None for lk in found), "no required lookups found: the scanner is broken"
    assert not bad, f"{len(bad)} TensorRT names trtkit looks up unconditionally are missing on {target.id} " \
        f"({surf['version']}):\n  " + "\n  ".join(bad)


@parametrize_targets
def test_overrides(target: C.Target) -> None:
    surf = C.surface(target)
    found = C.overrides()
    bases = {o.base for o in found}
    assert {"IGpuAsyncAllocator", "IOutputAllocator", "ILogger", "IProgressMonitor"} <= bases, \
        f"the scanner found overrides of {sorted(bases)} only"
    bad: list[str] = []
    via_trampoline: list[str] = []
    for o in found:
        cls = surf["classes"].get(o.base)
        if cls is None:
            bad.append(f"{o.where}: {o.cls}.{o.method}: base trt.{o.base} does not exist")
            continue
        entry = cls["members"].get(o.method)
        if entry is None and o.method in C.trampoline_methods(surf, o.base):
            via_trampoline.append(f"{o.base}.{o.method}")
            continue
        if entry is None:
            methods = [m for m, e in cls["members"].items() if e["kind"] == "method"]
            seen = sorted(C.trampoline_methods(surf, o.base))
            bad.append(f"{o.where}: {o.cls}.{o.method} overrides nothing: trt.{o.base} has no Python method "
                       f"{o.method} (it has {', '.join(methods) or 'none'})"
                       + (f" and its C++ trampoline calls only {', '.join(seen)}" if seen else ""))
        elif entry["kind"] != "method":
            bad.append(f"{o.where}: {o.cls}.{o.method}: trt.{o.base}.{o.method} is a {entry['kind']}")
    C.record(target, "overrides", len(found), len(bad),
             f"called by the C++ trampoline, not Python-visible: {', '.join(via_trampoline)}"
             if via_trampoline else "")
    assert not bad, f"{len(bad)} of {len(found)} overridden callback methods do not exist on {target.id}'s base " \
        "classes:\n  " + "\n  ".join(bad)


SELFTEST_SOURCE = '''
def run(be, config):
    f = be.features
    be.enum("LayerInformationFormat", "JSON")
    be.enum("LayerInformationFormat", "NOPE")
    be.enum("BuilderFlag", "FP16", option="precision")
    if f.precision_flags:
        be.enum("BuilderFlag", "BF16")
    try:
        be.trt.IRuntimeCache
    except AttributeError:
        pass
    be.trt.ILogger.Severity.LOUD
    hasattr(be.trt, "ComputeCapability")
    be.enum("BuilderFlag", config.name)
'''


def test_scanner_selftest() -> None:
    """The lookup reader and rule can fail: run them on a known snippet against a known surface."""
    found, dynamic = C.scan_lookups(SELFTEST_SOURCE, "snippet.py", {"trt"})
    required = {lk.label for lk in found if lk.optional is None}
    optional = {lk.label for lk in found if lk.optional is not None}
    assert required == {"trt.LayerInformationFormat.JSON", "trt.LayerInformationFormat.NOPE",
                        "trt.ILogger.Severity.LOUD"}, found
    assert optional == {"trt.BuilderFlag.FP16", "trt.BuilderFlag.BF16", "trt.IRuntimeCache",
                        "trt.ComputeCapability"}, found
    assert len(dynamic) == 1
    surf = {"attributes": {"LayerInformationFormat": {"kind": "class"}, "ILogger": {"kind": "class"}},
            "classes": {"LayerInformationFormat": {"members": {"JSON": {"kind": "enum member"}}, "nested": {}},
                        "ILogger": {"members": {"Severity": {"kind": "class"}},
                                    "nested": {"Severity": {"members": {"ERROR": {"kind": "enum member"}},
                                                            "nested": {}}}}}}
    missing = sorted(lk.label for lk in found if lk.optional is None and C.resolve(surf, lk.path) is None)
    assert missing == ["trt.ILogger.Severity.LOUD", "trt.LayerInformationFormat.NOPE"]
    assert C.params_conform([C.Param("name", False)], [C.Param("name", False), C.Param("i", True)]) is None
    assert C.params_conform([C.Param("name", False)], [C.Param("name", False), C.Param("i", False)]) is not None
    assert C.params_conform([C.Param("a", True)], [C.Param("a", False)]) is not None
    assert [p.name for p in C.parse_signature(
        "f(self: m.X, name: str, shape: typing.Sequence[typing.SupportsInt], s: m.E = <E.A: 0>) -> bool")] == \
        ["name", "shape", "s"]


PROTOCOL_SOURCE = '''
class Config(Protocol):
    """``trt.IBuilderConfig``."""

    level: int

    @property
    def num_profiles(self) -> int: ...
    # (TensorRT-RTX only)
    @property
    def num_ccs(self) -> int: ...
    @num_ccs.setter
    def num_ccs(self, value: int) -> None: ...
    def set_cc(self, cc: Any, index: int) -> bool: ...  # (TensorRT-RTX only)
    def set_flag(self, flag: Any) -> None: ...


class Ctx(Protocol):
    """``trt.IExecutionContext`` (TensorRT only)."""

    def execute_async_v3(self, stream: int) -> bool: ...


class Helper(Protocol):
    """Not a mirror."""
'''


def test_protocol_reader_selftest() -> None:
    """The Protocol reader maps kinds and both flavour conventions, and refuses an unmapped Protocol."""
    uses, problems = C.protocol_uses(PROTOCOL_SOURCE)
    got = {(u.owner, u.name, u.kind, u.only) for u in uses}
    assert got == {
        ("IBuilderConfig", "level", "settable property", None),
        ("IBuilderConfig", "num_profiles", "readable property", None),
        ("IBuilderConfig", "num_ccs", "settable property", "tensorrt_rtx"),
        ("IBuilderConfig", "set_cc", "method", "tensorrt_rtx"),
        ("IBuilderConfig", "set_flag", "method", None),
        ("IExecutionContext", "execute_async_v3", "method", "tensorrt"),
    }, got
    assert len(problems) == 1 and "Helper" in problems[0]
