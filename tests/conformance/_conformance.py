"""Helpers for the conformance suite: real TensorRT bindings without a GPU, and what trtkit uses of them.

* :func:`ensure_wheel` downloads ``tensorrt-cu12-bindings==V`` (about 1 MB, real pybind11 bindings) with pip for
  the running interpreter and unpacks it, once, under the cache directory (``TRTKIT_CONFORMANCE_CACHE``, else
  ``platformdirs.user_cache_dir("trtkit")/conformance``). ``tensorrt-cu12-libs`` is a download stub on PyPI,
  so :func:`ensure_stub` compiles three tiny libraries (``libnvinfer``, ``libnvonnxparser``,
  ``libnvinfer_plugin``) that export the 9 C entry points the bindings link against, returning NULL / 0.
* :func:`surface` / :func:`behaviour` run ``_probe.py`` in a subprocess (each TensorRT version is a different
  ``.so`` of the same module name) and return its JSON, cached for the session.
* The AST readers list what trtkit uses (Protocol mirrors, enum and attribute lookups, subclassed callbacks);
  the comparators check it, and the test double, against a surface.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PROBE = HERE / "_probe.py"

TRT_VERSIONS = ("10.1.0", "10.8.0.43", "10.16.1.11", "11.1.0.106", "11.4.0.106")
"""Full TensorRT versions checked: trtkit's floor (10.1), a middle 10.x, the newest 10.x, 11.1 (the last one
passing the allocator's stream before its flags) and the newest 11.x."""

CACHE_ENV = "TRTKIT_CONFORMANCE_CACHE"
PIP_TIMEOUT_S = 60

STUB_SOURCE = """\
#include <stddef.h>
/* Entry points tensorrt_bindings/tensorrt.so links against; every factory "fails" (NULL / 0). */
void* createInferBuilder_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return NULL; }
void* getBuilderPluginRegistry(int type) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
void* getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void* logger, const char* ns) { return 0; }
"""
STUB_LIBS = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")
STUB_MAJORS = ("10", "11")


@dataclasses.dataclass(frozen=True)
class Target:
    """One real binding to check: full TensorRT at a version (over the stub core), or TensorRT-RTX."""

    id: str
    flavor: str  # "tensorrt" | "tensorrt_rtx"
    version: str | None  # the wheel version; None for the installed tensorrt_rtx
    module: str  # import name inside the subprocess

    @property
    def rtx(self) -> bool:
        return self.flavor == "tensorrt_rtx"


TARGETS = (
    *(Target(f"trt-{v}", "tensorrt", v, "tensorrt_bindings") for v in TRT_VERSIONS),
    Target("rtx", "tensorrt_rtx", None, "tensorrt_rtx"),
)
TARGET_IDS = tuple(t.id for t in TARGETS)


# ---- cache, wheels, stub ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("trtkit")) / "conformance"


def _lock(path: Path) -> Any:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


class Unavailable(Exception):
    """A prerequisite is missing here (offline, no compiler, no tensorrt_rtx): the test skips with the reason."""


_wheel_failures: dict[str, Unavailable] = {}


def ensure_wheel(version: str) -> Path:
    """The unpacked ``tensorrt-cu12-bindings==version`` wheel (a directory to put on PYTHONPATH)."""
    if version in _wheel_failures:  # pip is asked once per session, not once per probe
        raise _wheel_failures[version]
    try:
        return _ensure_wheel(version)
    except Unavailable as exc:
        _wheel_failures[version] = exc
        raise


def _ensure_wheel(version: str) -> Path:
    root = cache_dir()
    unpacked = root / "unpacked" / version
    done = unpacked / ".complete"
    if done.exists():
        return unpacked
    with _lock(unpacked):
        if done.exists():
            return unpacked
        wheels = root / "wheels" / version
        found = sorted(wheels.glob("tensorrt_cu12_bindings-*.whl")) if wheels.is_dir() else []
        if not found:
            wheels.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--timeout", "20", "--retries", "1",
                   f"tensorrt-cu12-bindings=={version}", "-d", str(wheels)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise Unavailable(f"pip download tensorrt-cu12-bindings=={version} took over {PIP_TIMEOUT_S} s "
                                  "(offline?)") from None
            found = sorted(wheels.glob("tensorrt_cu12_bindings-*.whl"))
            if proc.returncode != 0 or not found:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise Unavailable(f"cannot download tensorrt-cu12-bindings=={version} with pip (offline, or no "
                                  f"wheel for this Python/platform): exit {proc.returncode}: {tail}")
        if unpacked.exists():
            shutil.rmtree(unpacked)
        with zipfile.ZipFile(found[-1]) as zf:
            zf.extractall(unpacked)
        if not (unpacked / "tensorrt_bindings").is_dir():
            raise Unavailable(f"{found[-1].name} has no tensorrt_bindings package")
        done.write_text(found[-1].name)
    return unpacked


def ensure_stub() -> Path:
    """A directory with ``lib{nvinfer,nvonnxparser,nvinfer_plugin}.so.{10,11}`` built from STUB_SOURCE."""
    key = hashlib.sha256(STUB_SOURCE.encode()).hexdigest()[:12]
    out = cache_dir() / "stub" / key
    done = out / ".complete"
    if done.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise Unavailable("no C compiler (cc, gcc or clang; or $CC) to build the stub TensorRT core libraries")
    with _lock(out):
        if done.exists():
            return out
        out.mkdir(parents=True, exist_ok=True)
        src = out / "stub.c"
        src.write_text(STUB_SOURCE)
        first = out / "libstub.so"
        try:
            proc = subprocess.run([cc, "-shared", "-fPIC", "-o", str(first), str(src)], capture_output=True,
                                  text=True, timeout=120)
        except OSError as exc:
            raise Unavailable(f"cannot run the C compiler {cc!r} to build the stub TensorRT core: {exc}") from exc
        if proc.returncode != 0:
            raise Unavailable(f"{cc} could not build the stub TensorRT core: {proc.stderr.strip()[-500:]}")
        for lib in STUB_LIBS:
            for major in STUB_MAJORS:
                shutil.copyfile(first, out / f"{lib}.so.{major}")
        done.write_text(cc)
    return out


# ---- probes -----------------------------------------------------------------------------------------------


def trtkit_dir() -> Path:
    """The trtkit package the parent process imports (the subprocesses import the same one)."""
    import trtkit

    return Path(trtkit.__file__).resolve().parent


_probe_cache: dict[tuple[str, str], Any] = {}


def _env(target: Target) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(trtkit_dir().parent)]
    if not target.rtx:
        assert target.version is not None
        paths.insert(0, str(ensure_wheel(target.version)))
        stub = str(ensure_stub())
        env["LD_LIBRARY_PATH"] = os.pathsep.join([stub, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    elif importlib_find("tensorrt_rtx") is None:
        raise Unavailable("tensorrt_rtx is not installed (pip install -e '.[dev]' installs it)")
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    env.pop("TRTKIT_BACKEND", None)
    return env


def importlib_find(name: str) -> Any:
    import importlib.util

    return importlib.util.find_spec(name)


def run_probe(target: Target, mode: str) -> dict[str, Any]:
    """Run ``_probe.py mode`` for ``target`` once per session; skip the calling test if it cannot run here."""
    key = (target.id, mode)
    if key not in _probe_cache:
        try:
            env = _env(target)
            proc = subprocess.run([sys.executable, str(PROBE), mode, target.module], capture_output=True,
                                  text=True, env=env, timeout=120)
            marker = "\n@@PROBE-JSON@@\n"
            if proc.returncode != 0 or marker not in proc.stdout:
                _probe_cache[key] = RuntimeError(
                    f"probe {mode} for {target.id} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            else:
                _probe_cache[key] = json.loads(proc.stdout.split(marker, 1)[1])
        except Unavailable as exc:
            _probe_cache[key] = exc
    result = _probe_cache[key]
    if isinstance(result, Unavailable):
        pytest.skip(str(result))
    if isinstance(result, Exception):
        raise result
    return result  # type: ignore[no-any-return]


def surface(target: Target) -> dict[str, Any]:
    return run_probe(target, "surface")


def behaviour(target: Target) -> dict[str, Any]:
    return run_probe(target, "behaviour")


# ---- pybind11 signatures -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    has_default: bool
    star: str = ""  # "", "*" or "**"


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_signature(sig: str) -> list[Param]:
    """Parameters of a pybind11 signature line, without ``self``: ``f(self: X, a: int, b: int = 0) -> R``."""
    start = sig.index("(")
    depth = 0
    for i in range(start, len(sig)):
        if sig[i] in "([{":
            depth += 1
        elif sig[i] in ")]}":
            depth -= 1
            if depth == 0:
                end = i
                break
    else:
        raise ValueError(f"unbalanced signature: {sig}")
    params = []
    for raw in _split_top(sig[start + 1:end]):
        if raw == "/" or raw == "*":
            continue
        star = "**" if raw.startswith("**") else "*" if raw.startswith("*") else ""
        name = raw.lstrip("*").split(":", 1)[0].split("=", 1)[0].strip()
        params.append(Param(name, "=" in raw, star))
    if params and params[0].name == "self":
        params = params[1:]
    return params


def python_params(func: Any) -> list[Param]:
    sig = inspect.signature(func)
    out = []
    for p in list(sig.parameters.values()):
        star = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        out.append(Param(p.name, p.default is not p.empty, star))
    if out and out[0].name == "self":
        out = out[1:]
    return out


def fmt_params(params: list[Param]) -> str:
    return "(" + ", ".join(f"{p.star}{p.name}{'=…' if p.has_default else ''}" for p in params) + ")"


def params_conform(double: list[Param], real: list[Param]) -> str | None:
    """None when ``double`` may stand for ``real``; else why not.

    The double's parameters must be a prefix of the real ones with the same names in order; it may leave out
    only trailing parameters that have a default in the real binding, and may give a default only where the
    real binding has one. ``*args`` / ``**kwargs`` in the double are more lenient than any pybind11 signature.
    """
    if any(p.star for p in double) and not any(p.star for p in real):
        return "the double takes *args/**kwargs"
    if len(double) > len(real):
        return f"the double takes {len(double) - len(real)} more parameter(s)"
    for i, (d, r) in enumerate(zip(double, real, strict=False)):
        if d.name != r.name:
            return f"parameter {i + 1} is named {d.name!r}, TensorRT calls it {r.name!r}"
        if d.has_default and not r.has_default:
            return f"parameter {d.name!r} has a default in the double only"
    missing = [r.name for r in real[len(double):] if not r.has_default]
    if missing:
        return f"the double lacks required parameter(s) {missing}"
    return None


# ---- what trtkit uses: Protocol mirrors --------------------------------------------------------------------

RTX_ONLY = "(TensorRT-RTX only)"
TRT_ONLY = "(TensorRT only)"


@dataclasses.dataclass(frozen=True)
class Use:
    """One member trtkit expects on a TensorRT class (``owner``; ``None`` = the module)."""

    owner: str | None
    name: str
    kind: str  # "method" | "readable property" | "settable property" | "attribute" | "callable"
    where: str  # file:line
    only: str | None  # None, "tensorrt" or "tensorrt_rtx"

    @property
    def label(self) -> str:
        return f"{self.owner or 'trt'}.{self.name}"


def _flavor_marker(text: str) -> str | None:
    if RTX_ONLY in text:
        return "tensorrt_rtx"
    if TRT_ONLY in text:
        return "tensorrt"
    return None


def _member_marker(lines: list[str], node: ast.stmt) -> str | None:
    """Per-member convention: ``(TensorRT-RTX only)`` / ``(TensorRT only)`` in a comment on the member's first
    line (decorator or def) or on the comment lines right above it, or in the member's docstring."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    text = lines[node.lineno - 1] if "#" in lines[node.lineno - 1] else ""
    i = first - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        text += lines[i]
        i -= 1
    if isinstance(node, ast.FunctionDef):
        text += ast.get_docstring(node) or ""
    return _flavor_marker(text)


def _is_protocol(cls: ast.ClassDef) -> bool:
    return any((isinstance(b, ast.Name) and b.id == "Protocol") or (isinstance(b, ast.Attribute) and b.attr ==
                                                                     "Protocol") for b in cls.bases)


PROTOCOLS = "backend/protocols.py"
"""Where trtkit's Protocol types for the TensorRT surface live, relative to the trtkit package."""


def protocol_uses(text: str | None = None) -> tuple[list[Use], list[str]]:
    """Members of the Protocol classes in trtkit/backend/protocols.py (or ``text``), and problems reading them."""
    if text is None:
        text = (trtkit_dir() / PROTOCOLS).read_text()
    lines = text.splitlines()
    uses: list[Use] = []
    problems: list[str] = []
    for cls in ast.parse(text).body:
        if not isinstance(cls, ast.ClassDef) or not _is_protocol(cls):
            continue
        doc = ast.get_docstring(cls) or ""
        m = re.match(r"``trt\.([A-Za-z_]\w*)``", doc)
        if m:
            owner: str | None = m.group(1)
        elif doc.startswith("The ``tensorrt``"):
            owner = None
        else:
            problems.append(f"{PROTOCOLS}:{cls.lineno}: Protocol {cls.name} does not say what it mirrors (its "
                            "docstring must start with ``trt.ClassName`` or 'The ``tensorrt`` module')")
            continue
        only = _flavor_marker(doc)
        setters = {d.value.id for f in cls.body if isinstance(f, ast.FunctionDef) for d in f.decorator_list
                   if isinstance(d, ast.Attribute) and d.attr == "setter" and isinstance(d.value, ast.Name)}
        for node in cls.body:
            where = f"{PROTOCOLS}:{node.lineno}"
            member_only = _member_marker(lines, node) or only
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                kind = "attribute" if owner is None else "settable property"
                uses.append(Use(owner, node.target.id, kind, where, member_only))
            elif isinstance(node, ast.FunctionDef):
                decos = list(node.decorator_list)
                if any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in decos):
                    continue
                if node.name.startswith("__"):
                    continue
                if any(isinstance(d, ast.Name) and d.id == "property" for d in decos):
                    kind = "settable property" if node.name in setters else "readable property"
                else:
                    kind = "callable" if owner is None else "method"
                uses.append(Use(owner, node.name, kind, where, member_only))
    return uses, problems


def real_kind(surf: dict[str, Any], owner: str | None, name: str) -> str | None:
    if owner is None:
        entry = surf["attributes"].get(name)
        if entry is None and name.startswith("__"):
            return "attribute"
        return None if entry is None else str(entry["kind"])
    cls = surf["classes"].get(owner)
    if cls is None:
        return None
    entry = cls["members"].get(name)
    return None if entry is None else str(entry["kind"])


def use_conforms(use: Use, kind: str | None) -> str | None:
    """None when the real member satisfies ``use``; else why not."""
    if kind is None:
        return "missing"
    ok = {
        "method": {"method"},
        # trtkit only reads it: a settable property reads as well.
        "readable property": {"readable property", "settable property"},
        "settable property": {"settable property"},
        "callable": {"class", "function"},
        "attribute": None,
    }[use.kind]
    if ok is None or kind in ok:
        return None
    return f"is a {kind}, trtkit uses it as a {use.kind}"


# ---- what trtkit uses: lookups ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lookup:
    """``trt.<path>`` looked up somewhere in trtkit. ``optional`` names why absence is handled, or is None."""

    path: tuple[str, ...]
    where: str
    via: str  # "enum()", "attribute", "getattr", "hasattr"
    optional: str | None

    @property
    def label(self) -> str:
        return "trt." + ".".join(self.path)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_trt_expr(node: ast.AST, names: set[str]) -> bool:
    return (isinstance(node, ast.Name) and node.id in names) or (isinstance(node, ast.Attribute) and
                                                                  node.attr == "trt")


def _str_values(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        a, b = _str_values(node.body), _str_values(node.orelse)
        return None if a is None or b is None else a + b
    return None


def _mentions_features(node: ast.AST, aliases: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "features":
            return True
        if isinstance(sub, ast.Name) and sub.id in aliases:
            return True
    return False


def _guard(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    """Why a lookup at ``node`` may find nothing without harm: a features guard, an except clause for
    UnsupportedFeatureError/AttributeError, or feature detection itself."""
    func = node
    while func in parents and not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
        func = parents[func]
    aliases: set[str] = set()
    if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
        if func.name == "_detect_features":
            return "inside Backend._detect_features"
        for sub in ast.walk(func):
            if (isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Attribute)
                    and sub.value.attr == "features"):
                aliases |= {t.id for t in sub.targets if isinstance(t, ast.Name)}
    child, cur = node, parents.get(node)
    while cur is not None and cur is not func:
        if isinstance(cur, ast.If | ast.IfExp | ast.While) and child is not cur.test and _mentions_features(
                cur.test, aliases):
            return f"guarded by a features check (line {cur.lineno})"
        if isinstance(cur, ast.BoolOp) and child is not cur.values[0] and any(
                _mentions_features(v, aliases) for v in cur.values[:cur.values.index(child)]):  # type: ignore
            return f"guarded by a features check (line {cur.lineno})"
        if isinstance(cur, ast.Try) and child in cur.body:
            for h in cur.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(n, ast.Name) and n.id in ("UnsupportedFeatureError", "AttributeError")
                       for n in names):
                    return f"inside try/except {ast.unparse(h.type) if h.type else ''} (line {cur.lineno})"
        child, cur = cur, parents.get(cur)
    return None


def source_files() -> Iterator[Path]:
    yield from sorted(trtkit_dir().rglob("*.py"))


def lookups() -> tuple[list[Lookup], list[str]]:
    """Every ``trt.X[.Y...]`` trtkit looks up with literal names, and the dynamic ones it could not check.

    Module expressions recognised: the name ``trt`` and any ``<expr>.trt`` everywhere; in the backend package
    (the one place that imports TensorRT) also ``module`` and ``m``. Lookups: ``<x>.enum("Enum", "MEMBER")`` (and a
    local ``enum = backend.enum``), attribute chains on a module expression, ``getattr``/``hasattr`` on one.
    """
    found: list[Lookup] = []
    dynamic: list[str] = []
    root = trtkit_dir()
    for path in source_files():
        rel = path.relative_to(root.parent).as_posix()
        names = {"trt", "module", "m"} if path.parent == root / "backend" else {"trt"}
        f, d = scan_lookups(path.read_text(), rel, names)
        found += f
        dynamic += d
    return found, dynamic


def scan_lookups(source: str, rel: str, names: set[str]) -> tuple[list[Lookup], list[str]]:
    """The lookups in one module's ``source`` (see :func:`lookups`); ``names`` are the module expressions."""
    found: list[Lookup] = []
    dynamic: list[str] = []
    tree = ast.parse(source)
    parents = _parents(tree)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            f = node.func
            is_enum = (isinstance(f, ast.Attribute) and f.attr == "enum") or (isinstance(f, ast.Name) and
                                                                               f.id == "enum")
            if is_enum and len(node.args) >= 2:
                enum_names, members = _str_values(node.args[0]), _str_values(node.args[1])
                if enum_names is None or members is None:
                    dynamic.append(f"{where}: {ast.unparse(node)}")
                    continue
                option = next((k for k in node.keywords if k.arg == "option"), None)
                why = (f"enum(..., option={ast.unparse(option.value)}): raises UnsupportedFeatureError for "
                       "that option" if option is not None else _guard(node, parents))
                for e in enum_names:
                    for mem in members:
                        found.append(Lookup((e, mem), where, "enum()", why))
                continue
            if isinstance(f, ast.Name) and f.id in ("getattr", "hasattr") and len(node.args) >= 2:
                if not _is_trt_expr(node.args[0], names):
                    continue
                attr = _str_values(node.args[1])
                if attr is None:
                    if f.id == "getattr" and len(node.args) == 2:
                        dynamic.append(f"{where}: {ast.unparse(node)}")
                    continue
                if f.id == "hasattr":
                    why: str | None = "hasattr()"
                elif len(node.args) == 3:
                    why = "getattr() with a default"
                else:
                    why = _guard(node, parents)
                found.extend(Lookup((a,), where, f.id, why) for a in attr)
        elif isinstance(node, ast.Attribute):
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                continue  # not the outermost attribute of the chain
            chain: list[str] = []
            cur: ast.AST = node
            while isinstance(cur, ast.Attribute) and not _is_trt_expr(cur, names):
                chain.append(cur.attr)
                cur = cur.value
            if not chain or not _is_trt_expr(cur, names):
                continue
            if isinstance(parent, ast.Assign | ast.AnnAssign) and node in getattr(parent, "targets", [
                    getattr(parent, "target", None)]):
                continue
            found.append(Lookup(tuple(reversed(chain)), where, "attribute", _guard(node, parents)))
    return found, dynamic


def resolve(surf: dict[str, Any], path: tuple[str, ...]) -> str | None:
    """The kind of ``trt.<path>`` on a surface, or None where any step is missing."""
    entry = surf["attributes"].get(path[0])
    if entry is None:
        return None
    if len(path) == 1:
        return str(entry["kind"])
    cls = surf["classes"].get(path[0])
    for i, name in enumerate(path[1:], start=1):
        if cls is None or name not in cls["members"]:
            return None
        kind = str(cls["members"][name]["kind"])
        if i == len(path) - 1:
            return kind
        cls = cls["nested"].get(name)
    return None


# ---- what trtkit uses: subclassed callback bases ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Override:
    base: str
    cls: str
    method: str
    where: str


def overrides() -> list[Override]:
    """Methods of classes in trtkit deriving from a TensorRT class: ``base = <x>.IFoo; class _Y(base)`` or
    ``class _Y(trt.IFoo)``."""
    out: list[Override] = []
    root = trtkit_dir()
    for path in source_files():
        tree = ast.parse(path.read_text())
        rel = path.relative_to(root.parent).as_posix()
        for scope in ast.walk(tree):
            if not isinstance(scope, ast.FunctionDef | ast.Module):
                continue
            aliases: dict[str, str] = {}
            for node in ast.walk(scope) if isinstance(scope, ast.FunctionDef) else ():
                if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
                        and isinstance(node.value.value, ast.Name)):
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            aliases[t.id] = node.value.attr
            for node in ast.walk(scope):
                if not isinstance(node, ast.ClassDef):
                    continue
                for b in node.bases:
                    base = None
                    if isinstance(b, ast.Name) and b.id in aliases:
                        base = aliases[b.id]
                    elif isinstance(b, ast.Attribute) and _is_trt_expr(b.value, {"trt"}):
                        base = b.attr
                    if base is None:
                        continue
                    for fn in node.body:
                        if isinstance(fn, ast.FunctionDef) and not (fn.name.startswith("__") and
                                                                    fn.name.endswith("__")):
                            out.append(Override(base, node.name, fn.name, f"{rel}:{fn.lineno}"))
    return sorted(set(out), key=lambda o: (o.where, o.method))


def trampoline_methods(surf: dict[str, Any], base: str) -> set[str]:
    """Python method names the C++ trampoline of ``base`` was seen calling (see ``_probe._output_trampolines``)."""
    seen = surf.get("trampolines", {}).get(base, {})
    return {name for called in seen.values() if isinstance(called, list) for name in called}


# ---- the test double's surface -------------------------------------------------------------------------------


def _instance_attrs(source: str) -> dict[str, dict[str, int]]:
    """``self.X = ...`` targets assigned in each class's methods, by class name -> {attr: line}."""
    out: dict[str, dict[str, int]] = {}
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef):
            continue
        attrs = out.setdefault(cls.name, {})
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                    node, ast.AnnAssign | ast.AugAssign) else []
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        attrs.setdefault(t.attr, node.lineno)
    return out


def _double_member_kind(cls: type, name: str) -> tuple[str, Any]:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        return ("settable property" if raw.fset is not None else "readable property"), raw
    if isinstance(raw, staticmethod | classmethod):
        return "method", getattr(cls, name)
    if inspect.isfunction(raw):
        return "method", raw
    if isinstance(raw, type):
        return "class", raw
    import enum

    if isinstance(cls, enum.EnumMeta) and isinstance(getattr(cls, name), cls):
        return "enum member", raw
    return "settable property", raw  # a plain class attribute: any instance can rebind it


def double_mismatches(ns: Any, surf: dict[str, Any], double_source: str) -> tuple[int, list[str]]:
    """Compare a double module namespace with a real surface; (members checked, mismatch lines)."""
    import enum

    checked = 0
    bad: list[str] = []
    inst = _instance_attrs(double_source)

    def check_enum(label: str, dcls: type, rcls: dict[str, Any] | None) -> None:
        nonlocal checked
        if rcls is None or not rcls.get("enum"):
            bad.append(f"{label}: an enum in the double, not an enum in TensorRT")
            return
        for member in dcls.__members__:
            checked += 1
            if member not in rcls["enum_members"]:
                bad.append(f"{label}.{member}: enum member missing in TensorRT (it has "
                           f"{', '.join(rcls['enum_members'])})")

    for name, value in sorted(vars(ns).items()):
        if name.startswith("_"):
            continue
        checked += 1
        real = surf["attributes"].get(name)
        if not isinstance(value, type):
            if real is None:
                bad.append(f"trt.{name}: public module attribute ({type(value).__name__}) that TensorRT does not "
                           "have (make test-only state private: _name)")
            elif callable(value) != (real["kind"] in ("function", "class")):
                bad.append(f"trt.{name}: {type(value).__name__} in the double, {real['kind']} in TensorRT")
            continue
        rcls = surf["classes"].get(name)
        if rcls is None:
            bad.append(f"trt.{name}: class missing in TensorRT")
            continue
        if isinstance(value, enum.EnumMeta):
            check_enum(f"trt.{name}", value, rcls)
            continue
        members: dict[str, tuple[str, Any]] = {}
        skip = set(dir(object))
        for attr in dir(value):
            if attr.startswith("_") or attr in skip:
                continue
            members[attr] = _double_member_kind(value, attr)
        for klass in value.__mro__:
            for attr, _line in inst.get(klass.__name__, {}).items():
                if not attr.startswith("_") and attr not in members:
                    members[attr] = ("settable property", None)
        for attr, (kind, raw) in sorted(members.items()):
            checked += 1
            label = f"trt.{name}.{attr}"
            entry = rcls["members"].get(attr)
            if entry is None:
                bad.append(f"{label}: {kind} in the double, missing in TensorRT")
                continue
            if entry["kind"] != kind:
                bad.append(f"{label}: {kind} in the double, {entry['kind']} in TensorRT")
                continue
            if kind == "class" and isinstance(raw, enum.EnumMeta):
                check_enum(label, raw, rcls["nested"].get(attr))
            if kind == "method":
                dparams = python_params(raw)
                sigs = entry.get("sigs") or []
                reals = [parse_signature(s) for s in sigs]
                if not reals:
                    continue
                whys = [params_conform(dparams, r) for r in reals]
                if all(w is not None for w in whys):
                    shown = " | ".join(fmt_params(r) for r in reals)
                    bad.append(f"{label}{fmt_params(dparams)}: {whys[0]}; TensorRT: {attr}{shown}")
    return checked, bad


# ---- report ----------------------------------------------------------------------------------------------------

RESULTS: dict[tuple[str, str], dict[str, Any]] = {}
"""(target id, check) -> {"checked": n, "mismatches": n, "note": str}, filled by the tests."""
OUTCOMES: dict[tuple[str, str], str] = {}
"""(target id, check) -> "passed" | "failed" | "skipped", filled by the conftest."""
EXTRA: dict[str, Any] = {}


def record(target: Target, check: str, checked: int, mismatches: int, note: str = "") -> None:
    RESULTS[(target.id, check)] = {"checked": checked, "mismatches": mismatches, "note": note}
