"""Run in a subprocess with one real TensorRT binding importable; prints one JSON document on stdout.

Usage: ``python _probe.py surface tensorrt_bindings`` (or ``tensorrt_rtx``) dumps the module's whole Python
surface; ``python _probe.py behaviour tensorrt_bindings`` drives trtkit's callback objects through the real
pybind11 trampolines and tries trtkit's factories. Standalone on purpose: no pytest, no test helpers.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import json
import sys
import traceback
import types
from typing import Any

# ---- surface --------------------------------------------------------------------------------------------


def _signatures(obj: Any, name: str) -> list[str]:
    """Every overload's signature line of a pybind11 callable (``name(self: X, a: int, b: str = 0) -> R``)."""
    doc = getattr(obj, "__doc__", None) or ""
    lines = [ln.strip() for ln in doc.splitlines()]
    if len(lines) > 1 and lines[1] == "Overloaded function.":
        out = []
        for ln in lines:
            head, _, rest = ln.partition(". ")
            if head.isdigit() and rest.startswith(name + "("):
                out.append(rest)
        return out
    if lines and lines[0].startswith(name + "("):
        return [lines[0]]
    try:  # a plain Python function (e.g. defined in the package's __init__.py)
        return [name + str(inspect.signature(obj))]
    except (TypeError, ValueError):
        return []


def _is_enum(cls: type) -> bool:
    return isinstance(getattr(cls, "__members__", None), dict | types.MappingProxyType)


def _member_kind(owner: type, name: str) -> tuple[str, Any]:
    try:
        raw = inspect.getattr_static(owner, name)
    except AttributeError:
        raw = getattr(owner, name)
    if isinstance(raw, property):
        return ("settable property" if raw.fset is not None else "readable property"), raw
    if isinstance(raw, staticmethod | classmethod):
        return "method", getattr(owner, name)
    if isinstance(raw, type):
        return "class", raw
    if _is_enum(owner) and isinstance(getattr(owner, name, None), owner):
        return "enum member", raw
    if callable(raw) or type(raw).__name__ in ("instancemethod", "builtin_function_or_method"):
        return "method", getattr(owner, name)
    if type(raw).__name__ == "getset_descriptor" or type(raw).__name__ == "member_descriptor":
        return "readable property", raw
    return f"other:{type(raw).__name__}", raw


def _describe_class(cls: type, depth: int = 0) -> dict[str, Any]:
    info: dict[str, Any] = {
        "bases": [b.__name__ for b in cls.__mro__[1:] if b is not object and "pybind11" not in b.__name__],
        "enum": _is_enum(cls),
        "members": {},
        "init": _signatures(cls.__init__, "__init__") if "__init__" in dir(cls) else [],
        "nested": {},
    }
    if info["enum"]:
        info["enum_members"] = sorted(str(k) for k in cls.__members__)
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        kind, raw = _member_kind(cls, name)
        entry: dict[str, Any] = {"kind": kind}
        if kind == "method":
            entry["sigs"] = _signatures(raw, name)
        info["members"][name] = entry
        if kind == "class" and depth < 2 and raw.__module__ == cls.__module__:
            info["nested"][name] = _describe_class(raw, depth + 1)
    return info


def _output_trampolines(trt: Any) -> dict[str, Any]:
    """Which Python methods each C++ virtual of ``trt.IOutputAllocator``'s trampoline calls. The class exposes
    no methods to Python, so this is the only way to learn what a subclass may usefully override."""
    called: list[str] = []

    class Recorder(trt.IOutputAllocator):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)

        def reallocate_output(self, *args: Any) -> int:
            called.append("reallocate_output")
            return 0x7000

        def reallocate_output_async(self, *args: Any) -> int:
            called.append("reallocate_output_async")
            return 0x7000

        def notify_shape(self, *args: Any) -> None:
            called.append("notify_shape")

    rec = Recorder()
    out: dict[str, Any] = {}
    for method, args in (("reallocateOutput", ("y", 0, 16, 256)), ("reallocateOutputAsync", ("y", 0, 16, 256, 0)),
                         ("notifyShape", ("y", [1]))):
        called.clear()
        try:
            cxx_call(rec, method, *args)
        except RuntimeError as exc:  # no such virtual in this version
            out[method] = f"unavailable: {exc}"
        else:
            out[method] = list(called)
    return out


def surface(module_name: str) -> dict[str, Any]:
    trt = importlib.import_module(module_name)
    out: dict[str, Any] = {"module": module_name, "version": str(trt.__version__), "attributes": {}, "classes": {}}
    out["trampolines"] = {"IOutputAllocator": _output_trampolines(trt)}
    enum_types = tuple(v for v in vars(trt).values() if isinstance(v, type) and _is_enum(v))
    for name in sorted(dir(trt)):
        value = getattr(trt, name)
        if isinstance(value, type):
            kind = "class"
            out["classes"][name] = _describe_class(value)
        elif isinstance(value, types.ModuleType):
            kind = "module"
        elif isinstance(value, enum_types):
            kind = "enum member"
        elif callable(value):
            kind = "function"
        else:
            kind = f"other:{type(value).__name__}"
        entry: dict[str, Any] = {"kind": kind}
        if kind == "function":
            entry["sigs"] = _signatures(value, name)
        out["attributes"][name] = entry
    return out


# ---- behaviour ------------------------------------------------------------------------------------------


class _FakeBuffer:
    def __init__(self, pool: _FakePool, size: int, stream: Any) -> None:
        self.handle = 0x100000 + 0x1000 * len(pool.allocations)
        self.size = size
        self.pool = pool

    def close(self, stream: Any = None) -> None:
        self.pool.frees.append((self.handle, stream))


class _FakePool:
    """What trtkit's allocators need from a DevicePool: ``allocate(nbytes, stream)`` -> buffer."""

    def __init__(self) -> None:
        self.allocations: list[tuple[int, Any]] = []
        self.frees: list[tuple[int, Any]] = []

    def allocate(self, nbytes: int, stream: Any) -> _FakeBuffer:
        buf = _FakeBuffer(self, int(nbytes), stream)  # the first buffer is at 0x100000
        self.allocations.append((int(nbytes), stream))
        return buf


def _plain(value: Any) -> Any:
    """A JSON-able description of an argument as it reached Python: type name and value."""
    if isinstance(value, bool | int | float | str) or value is None:
        return {"type": type(value).__name__, "value": value}
    if isinstance(value, tuple | list):
        return {"type": type(value).__name__, "value": [_plain(v) for v in value]}
    return {"type": type(value).__name__, "value": repr(value)}


def _run(fn: Any) -> dict[str, Any]:
    try:
        result = fn()
    except BaseException as exc:  # report everything, including pytest-less assertion failures
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return {"ok": True, **result}


# ---- reaching the C++ side of a trampoline ----------------------------------------------------------------
# TensorRT calls a Python allocator through the C++ vtable of the binding's trampoline class
# (tensorrt::PyGpuAsyncAllocator, tensorrt::PyOutputAllocator). The wheels keep their local symbols, so the
# trampoline's methods can be found by name; the pybind11 instance holds the C++ object pointer right after
# the PyObject header (simple layout). A slot is only called after it was found in the object's own vtable.

_SYMBOLS = {
    "allocateAsync": "_ZN8tensorrt19PyGpuAsyncAllocator13allocateAsyncEmmjP11CUstream_st",
    "deallocateAsync": "_ZN8tensorrt19PyGpuAsyncAllocator15deallocateAsyncEPvP11CUstream_st",
    "reallocateOutputAsync": "_ZN8tensorrt17PyOutputAllocator21reallocateOutputAsyncEPKcPvmmP11CUstream_st",
    "notifyShape": "_ZN8tensorrt17PyOutputAllocator11notifyShapeEPKcRKN8nvinfer16Dims64E",
    "reallocateOutput": "_ZN8tensorrt17PyOutputAllocator16reallocateOutputEPKcPvmm",
}


def _elf_symbols(path: str, wanted: set[str]) -> dict[str, int]:
    import struct

    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{path} is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: dict[str, int] = {}
    for sec in sections:
        if sec[1] not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab = sections[sec[6]]
        str_off = strtab[4]
        for off in range(sec[4], sec[4] + sec[5], 24):
            st_name, _info, _other, _shndx, st_value, _size = struct.unpack_from("<IBBHQQ", data, off)
            if not st_value:
                continue
            end = data.index(b"\0", str_off + st_name)
            name = data[str_off + st_name:end].decode("ascii", "replace")
            if name in wanted:
                found[name] = st_value
    return found


def _load_base(path: str) -> int:
    import os

    real = os.path.realpath(path)
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == real and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
    raise RuntimeError(f"{path} is not mapped in this process")


def _vtable_slot(obj: Any, method: str) -> tuple[int, int]:
    """(this pointer, address of the trampoline method) for ``obj``, checked against obj's own vtable."""
    import ctypes

    mods = [sys.modules.get(c.__module__) for c in type(obj).__mro__]
    so = next(str(m.__file__) for m in mods if m is not None and str(getattr(m, "__file__", "")).endswith(".so"))
    sym = _SYMBOLS[method]
    addrs = _elf_symbols(so, {sym})
    if sym not in addrs:
        raise RuntimeError(f"symbol {sym} not found in {so}")
    target = _load_base(so) + addrs[sym]
    this = ctypes.c_void_p.from_address(id(obj) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not this:
        raise RuntimeError("no C++ object behind the Python instance")
    vtable = ctypes.c_void_p.from_address(this).value
    slots = [ctypes.c_void_p.from_address(vtable + 8 * i).value for i in range(24)]
    if target not in slots:
        raise RuntimeError(f"{method} is not in the object's vtable (layout changed?)")
    return this, target


class _Dims64(ctypes.Structure):
    """nvinfer1::Dims64: ``int32_t nbDims; int64_t d[MAX_DIMS = 8];``."""

    _fields_ = [("nbDims", ctypes.c_int32), ("d", ctypes.c_int64 * 8)]


def cxx_call(obj: Any, method: str, *args: Any) -> Any:
    """Call trampoline ``method`` on ``obj`` the way TensorRT's C++ code does (through the vtable)."""
    import ctypes as C

    this, addr = _vtable_slot(obj, method)
    if method == "allocateAsync":  # void* (size_t size, size_t alignment, AllocatorFlags flags, cudaStream_t)
        fn = C.PYFUNCTYPE(C.c_void_p, C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint32, C.c_void_p)(addr)
    elif method == "deallocateAsync":  # bool (void* memory, cudaStream_t)
        fn = C.PYFUNCTYPE(C.c_bool, C.c_void_p, C.c_void_p, C.c_void_p)(addr)
    elif method == "reallocateOutputAsync":  # void* (char const* name, void* current, size, align, stream)
        fn = C.PYFUNCTYPE(C.c_void_p, C.c_void_p, C.c_char_p, C.c_void_p, C.c_uint64, C.c_uint64, C.c_void_p)(addr)
        args = (args[0].encode(), *args[1:])
    elif method == "reallocateOutput":  # void* (char const* name, void* current, uint64 size, uint64 align)
        fn = C.PYFUNCTYPE(C.c_void_p, C.c_void_p, C.c_char_p, C.c_void_p, C.c_uint64, C.c_uint64)(addr)
        args = (args[0].encode(), *args[1:])
    elif method == "notifyShape":  # void (char const* name, Dims64 const& dims)
        dims = _Dims64(len(args[1]), (C.c_int64 * 8)(*args[1]))
        fn = C.PYFUNCTYPE(None, C.c_void_p, C.c_char_p, C.POINTER(_Dims64))(addr)
        args = (args[0].encode(), C.byref(dims))
    else:
        raise ValueError(method)
    return fn(this, *args)


def _recorder(trt: Any) -> tuple[Any, dict[str, Any]]:
    seen: dict[str, Any] = {}

    class Recorder(trt.IGpuAsyncAllocator):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IGpuAsyncAllocator.__init__(self)

        def allocate_async(self, *args: Any) -> int:
            seen["allocate_async"] = [_plain(a) for a in args]
            return 0x5000

        def deallocate_async(self, *args: Any) -> bool:
            seen["deallocate_async"] = [_plain(a) for a in args]
            return True

    return Recorder(), seen


def _raw_args_allocator(trt: Any) -> dict[str, Any]:
    """The argument tuples a bare Python override receives, independent of trtkit, by both routes."""
    rec, seen = _recorder(trt)
    cxx_call(rec, "allocateAsync", 1000, 256, 0, 0x1234)
    cxx_call(rec, "deallocateAsync", 0x5000, 0x1234)
    via_cxx = dict(seen)
    rec, seen = _recorder(trt)
    trt.IGpuAsyncAllocator.allocate_async(rec, 1000, 256, 0, 0x1234)
    trt.IGpuAsyncAllocator.deallocate_async(rec, None, 0x1234)
    return {"via_cxx": via_cxx, "via_python_base": dict(seen)}


def _spy(cls: type, names: tuple[str, ...], received: dict[str, Any]) -> None:
    for name in names:
        orig = getattr(cls, name)

        def spy(self: Any, *args: Any, _orig: Any = orig, _name: str = name) -> Any:
            received.setdefault(_name, []).append([_plain(a) for a in args])
            return _orig(self, *args)

        setattr(cls, name, spy)


def _pool_log(pool: _FakePool) -> dict[str, Any]:
    def conv(s: Any) -> Any:
        return list(s) if isinstance(s, tuple) else repr(s)

    return {"allocations": [[n, conv(s)] for n, s in pool.allocations],
            "frees": [[h, conv(s)] for h, s in pool.frees]}


def _gpu_allocator(trt: Any, be: Any) -> dict[str, Any]:
    import sys

    import trtkit.runtime.memory as memory

    # no CUDA here: the allocator's module resolves stream handles through to_stream
    sys.modules[memory.make_gpu_allocator.__module__].to_stream = lambda handle: ("stream", int(handle))
    index = be.features.gpu_allocator_stream_index
    out: dict[str, Any] = {"stream_index": index}
    for route in ("cxx", "python_base"):
        pool = _FakePool()
        alloc = memory.make_gpu_allocator(trt, pool, ("stream", "fallback"), stream_index=index)
        received: dict[str, Any] = {}
        _spy(type(alloc), ("allocate_async", "deallocate_async"), received)
        if route == "cxx":
            ptr = cxx_call(alloc, "allocateAsync", 1000, 256, 0, 0x1234)
            freed = cxx_call(alloc, "deallocateAsync", ptr, 0x4321)
        else:
            ptr = trt.IGpuAsyncAllocator.allocate_async(alloc, 1000, 256, 0, 0x1234)
            freed = trt.IGpuAsyncAllocator.deallocate_async(alloc, ptr, 0x4321)
        out[route] = {"received": received, "returned": _plain(ptr), "free_returned": _plain(freed),
                      **_pool_log(pool)}
    return out


def _output_allocator(trt: Any, be: Any) -> dict[str, Any]:
    import trtkit.runtime.memory as memory

    pool = _FakePool()
    alloc = memory.make_output_allocator(trt, pool, lambda handle: ("stream", int(handle)))
    received: dict[str, Any] = {}
    _spy(type(alloc), ("reallocate_output_async", "notify_shape"), received)
    ptr = cxx_call(alloc, "reallocateOutputAsync", "y", 0, 4096, 256, 0x1234)
    cxx_call(alloc, "notifyShape", "y", [2, 3])
    python_base = {name: hasattr(trt.IOutputAllocator, name)
                   for name in ("reallocate_output_async", "notify_shape", "reallocate_output")}
    dims = trt.Dims([2, 3])
    return {
        "received": received,
        "returned": _plain(ptr),
        "shapes": {k: list(v) for k, v in alloc.shapes.items()},
        "buffer_handles": {k: int(b.handle) for k, b in getattr(alloc, "buffers", {}).items()},
        "python_base_methods": python_base,
        "dims_ctor": [type(dims).__name__, list(dims)],
        **_pool_log(pool),
    }


def _logger(trt: Any, be: Any) -> dict[str, Any]:
    import logging

    logger = be.logger
    with be.capture(logging.DEBUG) as cap:
        trt.ILogger.log(logger, trt.ILogger.Severity.ERROR, "boom")
        trt.ILogger.log(logger, trt.ILogger.Severity.VERBOSE, "chatter")
    return {
        "is_ilogger": isinstance(logger, trt.ILogger),
        "records": [[logging.getLevelName(level), msg] for level, msg in cap.records],
    }


def _progress(trt: Any, be: Any) -> dict[str, Any]:
    import threading

    from trtkit.builder.progress import make_monitor

    events: list[list[Any]] = []
    answer = [True]

    def callback(event: Any) -> bool:
        events.append([event.kind, event.phase, event.parent, event.step, event.total])
        return answer[0]

    mon, state = make_monitor(trt, callback, threading.Event())
    base = trt.IProgressMonitor
    r_start = base.phase_start(mon, "p", None, 3)
    r_step = base.step_complete(mon, "p", 1)
    answer[0] = False
    r_cancel = base.step_complete(mon, "p", 2)
    r_finish = base.phase_finish(mon, "p")
    return {
        "events": events,
        "phase_start_returned": _plain(r_start),
        "step_complete_returned": _plain(r_step),
        "step_complete_after_false_returned": _plain(r_cancel),
        "phase_finish_returned": _plain(r_finish),
        "reason": state.reason,
    }


def _factory(be: Any, method: str) -> dict[str, Any]:
    factory = getattr(be, method)  # AttributeError while trtkit has no such method: reported as a failure
    try:
        obj = factory()
    except BaseException as exc:
        import trtkit.errors

        return {
            "raised": type(exc).__name__,
            "raised_mro": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc),
            "is_trtkit_error": isinstance(exc, trtkit.errors.TrtkitError),
        }
    return {"raised": None, "created": type(obj).__name__}


def _raw_factory(trt: Any, name: str, logger: Any) -> dict[str, Any]:
    try:
        obj = getattr(trt, name)(logger)
    except BaseException as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None, "created": type(obj).__name__}


def behaviour(module_name: str, backend_name: str) -> dict[str, Any]:
    trt = importlib.import_module(module_name)
    from trtkit.backend import Backend

    be = Backend.from_module(backend_name, trt)
    logger = be.logger
    return {
        "version": str(trt.__version__),
        "raw_allocator_args": _run(lambda: _raw_args_allocator(trt)),
        "gpu_allocator": _run(lambda: _gpu_allocator(trt, be)),
        "output_allocator": _run(lambda: _output_allocator(trt, be)),
        "logger": _run(lambda: _logger(trt, be)),
        "progress": _run(lambda: _progress(trt, be)),
        "raw_runtime": _run(lambda: _raw_factory(trt, "Runtime", logger)),
        "raw_builder": _run(lambda: _raw_factory(trt, "Builder", logger)),
        "create_runtime": _run(lambda: _factory(be, "create_runtime")),
        "create_builder": _run(lambda: _factory(be, "create_builder")),
    }


def main() -> None:
    mode, module_name = sys.argv[1], sys.argv[2]
    if mode == "surface":
        doc = surface(module_name)
    else:
        backend = "tensorrt_rtx" if module_name == "tensorrt_rtx" else "tensorrt"
        doc = behaviour(module_name, backend)
    sys.stdout.write("\n@@PROBE-JSON@@\n" + json.dumps(doc) + "\n")


if __name__ == "__main__":
    main()
