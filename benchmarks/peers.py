#!/usr/bin/env python3
"""trtkit side by side with its peers, on the TensorRT runtime double (tests/support/trt_double.py), one GPU.

    PYTHONPATH=src python3 benchmarks/peers.py OUT.json                       # on the GPU machine
    PEERS_DRY=1 PYTHONPATH=src python3 benchmarks/peers.py OUT.json           # CPU-only dry run (stubs the GPU)

Copied from ../shared/bench/peers.py (the yardstick) and kept working across trtkit's layout changes; the
pool-scaling section (section 3) is trtkit's own addition.

Needs: numpy, cuda-bindings, cuda-core, torch (CUDA), cupy, polygraphy (``pip install --no-deps polygraphy``).
Every path drives the same double engine (affine op y = 2x + 1, input x float32 [8, 4]).

Section 1, host cost per call (us/call), best of PEERS_ROUNDS interleaved rounds of PEERS_CALLS calls, each
round ended by one device sync (as benchmarks/runtime_overhead.py does). Two settings:
  host_*  the double's execute_async_v3 made a no-op (it still calls any IOutputAllocator, as TensorRT does);
  e2e_*   the double really runs its op (two CuPy kernels) on the bound device memory.
Paths:
  a   raw TensorRT API loop: set_input_shape, 2x set_tensor_address, execute_async_v3, cudaStreamSynchronize
  a'  the same without the per-call sync (one sync per round)
  b   NVIDIA TensorRT python samples idiom, samples/python/common_runtime.py as of TensorRT 10.14 / 11.0:
      pinned host buffers (cudaMallocHost) + device buffers (cudaMalloc) preallocated at [8, 4]; per call:
      set_input_shape, copy the numpy input into the pinned buffer, set every tensor address, cudaMemcpyAsync
      H2D, execute_async_v3, cudaMemcpyAsync D2H, cudaStreamSynchronize, copy the output (cuda.bindings.runtime)
  b'  the same idiom as of TensorRT 10.0-10.13 (host arrays cached; numpy arrays passed to cudaMemcpyAsync)
  c*  Polygraphy TrtRunner.infer(feed_dict): numpy in/out; numpy with check_inputs=False; torch CUDA in ->
      torch CPU out; torch CUDA in -> torch CUDA out (copy_outputs_to_host=False)
  d*  trtkit: engine(x) numpy; engine(x) torch CUDA; engine.infer(x, outputs={"y": y}) torch;
      Context.infer(x, outputs={"y": y}) torch; Context.infer(x) numpy
Section 2, multi-stream scaling: execute_async_v3 launches one spin kernel (1 block x 32 threads, busy-waits
PEERS_SPIN_US on %globaltimer, then writes y = 2x + 1) on the given stream. Inferences/s over PEERS_MS_SECONDS for
1, 2, 4, 8 workers (best of PEERS_MS_ROUNDS interleaved rounds): raw (N contexts + N streams, one thread,
round-robin enqueue then sync all), trtkit (one Context per thread, own stream), Polygraphy (one TrtRunner per
thread). Each worker does request -> response (it waits for its result before the next call).

Whatever the double lacks that Polygraphy or the samples call is added at run time to the double's module
object (never to the file), following the real TensorRT API; every patch is listed in the output ("patches").
Environment knobs: see CONFIG below (PEERS_*).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import faulthandler
import glob
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import site
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

T_START = time.perf_counter()
# the double lives in tests/support (trtkit's layout since issue 10)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "support"))
DRY = os.environ.get("PEERS_DRY", "0") == "1"


def _env_int(name: str, gpu: int, dry: int) -> int:
    return int(os.environ.get(name, dry if DRY else gpu))


def _env_float(name: str, gpu: float, dry: float) -> float:
    return float(os.environ.get(name, dry if DRY else gpu))


CONFIG: dict[str, Any] = {
    "PEERS_DRY": DRY,
    "PEERS_CALLS": _env_int("PEERS_CALLS", 5000, 200),          # calls per timed round (section 1)
    "PEERS_ROUNDS": _env_int("PEERS_ROUNDS", 7, 2),             # interleaved rounds, best kept (section 1)
    "PEERS_WARMUP": _env_int("PEERS_WARMUP", 500, 20),          # warm-up calls per path and setting
    "PEERS_MS_SECONDS": _env_float("PEERS_MS_SECONDS", 2.0, 0.2),  # window per multi-stream point
    "PEERS_MS_ROUNDS": _env_int("PEERS_MS_ROUNDS", 2, 1),       # interleaved rounds, best kept (section 2)
    "PEERS_MS_WORKERS": [int(v) for v in os.environ.get("PEERS_MS_WORKERS", "1,2,4,8").split(",") if v],
    "PEERS_SPIN_US": _env_float("PEERS_SPIN_US", 50.0, 50.0),
    "PEERS_SECTIONS": os.environ.get("PEERS_SECTIONS", "1,2,3"),
    "PEERS_POOL_SPIN_US": _env_float("PEERS_POOL_SPIN_US", 1000.0, 1000.0),  # section 3: GPU-filling kernel
    "PEERS_POOL_SECONDS": _env_float("PEERS_POOL_SECONDS", 3.0, 0.2),  # window per section-3 point
    "PEERS_POOL_THREADS": _env_int("PEERS_POOL_THREADS", 8, 2),       # client threads calling the pool
    "PEERS_POOL_CONTEXTS": _env_int("PEERS_POOL_CONTEXTS", 2, 1),     # contexts per device
    "PEERS_SKIP": [v for v in os.environ.get("PEERS_SKIP", "").split(",") if v],  # path names to leave out
    "PEERS_S1_BUDGET_S": _env_float("PEERS_S1_BUDGET_S", 110.0, 60.0),  # section 1 stops adding rounds here
    "PEERS_BUDGET_S": _env_float("PEERS_BUDGET_S", 215.0, 120.0),      # section 2 stops adding rounds here
    "PEERS_TIMEOUT_S": _env_float("PEERS_TIMEOUT_S", 275.0, 170.0),    # watchdog: dump stacks, write, exit
    "PEERS_LIBCUDART": os.environ.get("PEERS_LIBCUDART", ""),   # force the libcudart Polygraphy loads
    "PEERS_REEXEC": os.environ.get("PEERS_REEXEC", "0") == "1",  # re-exec with LD_LIBRARY_PATH set first
    "PEERS_SWITCH_INTERVAL": os.environ.get("PEERS_SWITCH_INTERVAL", ""),  # sys.setswitchinterval (default: Python's)
    "PEERS_MAX_CONNECTIONS": os.environ.get("PEERS_MAX_CONNECTIONS", ""),  # sets CUDA_DEVICE_MAX_CONNECTIONS
}

RESULTS: dict[str, Any] = {"script": "peers.py", "dry": DRY, "config": CONFIG, "patches": [], "errors": []}
OUT_PATH = sys.argv[1] if len(sys.argv) > 1 else None
_write_lock = threading.Lock()


def log(msg: str) -> None:
    print(f"[peers {time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.perf_counter() - T_START


def write_json() -> None:
    RESULTS["elapsed_s"] = round(elapsed(), 2)
    if not OUT_PATH:
        return
    with _write_lock:
        tmp = OUT_PATH + ".tmp"
        with open(tmp, "w") as f:
            json.dump(RESULTS, f, indent=2, default=str)
        os.replace(tmp, OUT_PATH)


def record_error(where: str, exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    RESULTS["errors"].append({"where": where, "error": f"{type(exc).__name__}: {exc}", "traceback": text})
    log(f"ERROR in {where}: {type(exc).__name__}: {exc}")
    return f"{type(exc).__name__}: {exc}"


def _watchdog() -> None:
    RESULTS["timed_out"] = True
    log(f"watchdog: over PEERS_TIMEOUT_S={CONFIG['PEERS_TIMEOUT_S']} s; stacks follow, partial results written")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    with contextlib.suppress(Exception):
        write_json()
    with contextlib.suppress(Exception):
        print_tables()
        sys.stdout.flush()
    os._exit(3)


# ================================================================================================================
# libcudart for polygraphy.cuda
# ================================================================================================================
# polygraphy/cuda/cuda.py (0.53.6), Cuda.__init__: glob "libcudart.so*" in, in order, the LD_LIBRARY_PATH entries
# (read from os.environ when polygraphy.cuda.wrapper() is first called), /usr/local/cuda/lib64, /usr/lib, /lib, then
# <each sys.path dir>/nvidia/cuda_runtime/lib and find_spec("nvidia.cuda_runtime")/lib (the CUDA 12 wheel layout);
# the first dir with a match wins and ctypes.CDLL(<full path>) loads it; with no match it tries the bare
# "libcudart.so" through the loader. The CUDA 13 wheel (nvidia-cuda-runtime 13.x, a dependency of torch cu130)
# installs site-packages/nvidia/cu13/lib/libcudart.so.13, which that search does not look at, and there is no
# unversioned libcudart.so. So: find it, and put its dir first in os.environ["LD_LIBRARY_PATH"] before Polygraphy's
# wrapper is created (Polygraphy reads the variable itself, so no re-exec is needed; PEERS_REEXEC=1 re-execs anyway
# so that the dynamic loader sees it too).


def _site_dirs() -> list[str]:
    dirs: list[str] = []
    with contextlib.suppress(Exception):
        dirs += site.getsitepackages()
    with contextlib.suppress(Exception):
        dirs.append(site.getusersitepackages())
    dirs += [p for p in sys.path if p]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(os.path.join(d, "nvidia"))]


def libcudart_candidates() -> list[str]:
    found: list[str] = []
    for d in _site_dirs():
        found += glob.glob(os.path.join(d, "nvidia", "**", "libcudart.so*"), recursive=True)
    found = [p for p in dict.fromkeys(found) if os.path.isfile(p)]

    def key(p: str) -> tuple[int, int]:
        m = re.search(r"libcudart\.so\.(\d+)", os.path.basename(p))
        return (int(m.group(1)) if m else -1, -len(p))

    return sorted(found, key=key, reverse=True)  # highest CUDA major first


def loaded_libs(fragment: str) -> list[str]:
    """Files mapped into this process whose path contains ``fragment`` (Linux /proc/self/maps)."""
    out: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and fragment in parts[5]:
                out.append(parts[5].strip())
    return list(dict.fromkeys(out))


def choose_libcudart() -> dict[str, Any]:
    info: dict[str, Any] = {"candidates": libcudart_candidates(), "loaded_before": loaded_libs("libcudart")}
    chosen = CONFIG["PEERS_LIBCUDART"] or None
    if chosen is None:
        loaded = {os.path.realpath(p) for p in info["loaded_before"]}
        same = [c for c in info["candidates"] if os.path.realpath(c) in loaded]
        chosen = (same or info["candidates"] or info["loaded_before"] or [None])[0]
    info["chosen"] = chosen
    if chosen:
        d = os.path.dirname(chosen)
        old = os.environ.get("LD_LIBRARY_PATH", "")
        if d not in old.split(os.pathsep):
            os.environ["LD_LIBRARY_PATH"] = d + (os.pathsep + old if old else "")
    info["LD_LIBRARY_PATH"] = os.environ.get("LD_LIBRARY_PATH", "")
    return info


def maybe_reexec() -> None:
    if not CONFIG["PEERS_REEXEC"] or os.environ.get("PEERS_REEXECED") == "1":
        return
    cands = [CONFIG["PEERS_LIBCUDART"]] if CONFIG["PEERS_LIBCUDART"] else libcudart_candidates()
    if not cands:
        return
    d = os.path.dirname(cands[0])
    old = os.environ.get("LD_LIBRARY_PATH", "")
    if d in old.split(os.pathsep):
        return
    env = dict(os.environ, LD_LIBRARY_PATH=d + (os.pathsep + old if old else ""), PEERS_REEXECED="1")
    log(f"re-exec with LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}")
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)


# ================================================================================================================
# Dry mode: a host-memory stand-in for the CUDA runtime (cuda.bindings.runtime-like, and libcudart for Polygraphy)
# ================================================================================================================


class FakeCudart:
    """What the script calls of cuda.bindings.runtime, on host memory. Dry mode only."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2
        cudaMemcpyDeviceToDevice = 3
        cudaMemcpyDefault = 4

    cudaStreamNonBlocking = 1
    cudaStream_t = int

    def __init__(self) -> None:
        self._bufs: dict[int, Any] = {}
        self._streams = 0x5000
        self._lock = threading.Lock()

    @staticmethod
    def _addr(p: Any) -> int:
        if p is None:
            return 0
        data = getattr(p, "ctypes", None)
        if data is not None and hasattr(p, "__array_interface__"):
            return int(p.ctypes.data)
        return int(p)

    def _ok(self, *vals: Any) -> tuple[Any, ...]:
        return (self.cudaError_t.cudaSuccess, *vals)

    def cudaMalloc(self, n: int) -> tuple[Any, ...]:
        buf = (ctypes.c_char * max(int(n), 1))()
        addr = ctypes.addressof(buf)
        with self._lock:
            self._bufs[addr] = buf
        return self._ok(addr)

    cudaMallocHost = cudaMalloc

    def cudaFree(self, p: Any) -> tuple[Any, ...]:
        with self._lock:
            self._bufs.pop(self._addr(p), None)
        return self._ok()

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst: Any, src: Any, n: int, kind: Any, stream: Any) -> tuple[Any, ...]:
        ctypes.memmove(self._addr(dst), self._addr(src), int(n))
        return self._ok()

    def cudaMemcpy(self, dst: Any, src: Any, n: int, kind: Any) -> tuple[Any, ...]:
        ctypes.memmove(self._addr(dst), self._addr(src), int(n))
        return self._ok()

    def cudaStreamCreate(self) -> tuple[Any, ...]:
        with self._lock:
            self._streams += 16
            return self._ok(self._streams)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Any, ...]:
        return self.cudaStreamCreate()

    def cudaStreamSynchronize(self, s: Any) -> tuple[Any, ...]:
        return self._ok()

    def cudaStreamDestroy(self, s: Any) -> tuple[Any, ...]:
        return self._ok()

    def cudaDeviceSynchronize(self) -> tuple[Any, ...]:
        return self._ok()

    def cudaGetErrorName(self, e: Any) -> tuple[Any, ...]:
        return self._ok(str(e).encode())


class FakePolygraphyLib:
    """Stands in for the ctypes CDLL of libcudart inside polygraphy.cuda.Cuda (dry mode only): Polygraphy's own
    Python code runs unchanged, its C calls land here, on host memory."""

    def __init__(self, rt: FakeCudart) -> None:
        self._rt = rt
        self._name = "FAKE-libcudart (dry mode)"

    def cudaStreamCreate(self, pptr: Any) -> int:
        pptr._obj.value = self._rt.cudaStreamCreate()[1]
        return 0

    def cudaStreamSynchronize(self, ptr: Any) -> int:
        return 0

    def cudaStreamDestroy(self, ptr: Any) -> int:
        return 0

    def cudaMalloc(self, pptr: Any, nbytes: Any) -> int:
        pptr._obj.value = self._rt.cudaMalloc(nbytes.value)[1]
        return 0

    def cudaFree(self, ptr: Any) -> int:
        self._rt.cudaFree(ptr.value or 0)
        return 0

    def cudaMemcpyAsync(self, dst: Any, src: Any, nbytes: Any, kind: Any, stream: Any) -> int:
        ctypes.memmove(dst.value, src.value, nbytes.value)
        return 0

    def cudaMemcpy(self, dst: Any, src: Any, nbytes: Any, kind: Any) -> int:
        ctypes.memmove(dst.value, src.value, nbytes.value)
        return 0


def _host_view(addr: int, shape: tuple[int, ...], dtype: str) -> Any:
    import numpy as np

    dt = np.dtype(dtype)
    n = max(1, math.prod(shape))
    raw = (ctypes.c_byte * (n * dt.itemsize)).from_address(int(addr))
    return np.frombuffer(raw, dtype=dt, count=math.prod(shape)).reshape(shape)


def _host_run_op(ctx: Any, stream: int) -> None:
    """Dry mode: the double's affine op with NumPy on the (host) memory at the bound addresses."""
    import numpy as np
    import trt_double

    h = ctx.engine._h
    if h["op"] != "affine":
        raise RuntimeError("dry mode emulates only the affine op")
    a, b = h["params"]["a"], h["params"]["b"]
    ins = [_host_view(ctx._addresses[t["name"]], ctx._shapes[t["name"]], trt_double._NP[t["dtype"]])
           for t in h["inputs"]]
    for i, t in enumerate(h["outputs"]):
        x = ins[min(i, len(ins) - 1)]
        y = _host_view(ctx._addresses[t["name"]], x.shape, trt_double._NP[t["dtype"]])
        np.multiply(x, a, out=y)
        np.add(y, b, out=y)


# ================================================================================================================
# Patches to the double's module object (run time only), each recorded
# ================================================================================================================


def record_patch(pid: str, target: str, what: str, why: str, evidence: str, kind: str = "fidelity") -> None:
    RESULTS["patches"].append({"id": pid, "kind": kind, "target": target, "what": what, "why": why,
                               "evidence": evidence})


_ORIG_EXECUTE: dict[int, Any] = {}


_ITEMSIZE: dict[tuple[int, str], int] = {}


def _itemsize(ctx: Any, name: str) -> int:
    key = (id(ctx.engine), name)
    size = _ITEMSIZE.get(key)
    if size is None:
        import numpy as np
        import trt_double

        size = _ITEMSIZE[key] = int(np.dtype(trt_double._NP[ctx.engine._by_name[name]["dtype"]] or "uint16").itemsize)
    return size


def _outalloc_pre(ctx: Any, stream_handle: Any) -> list[tuple[Any, str, tuple[int, ...]]] | None:
    """P4: for each output with an IOutputAllocator and a known shape, ask it for memory as enqueueV3 does."""
    pending = []
    h = int(stream_handle)
    for name, alloc in ctx._out_alloc.items():
        shape = ctx.get_tensor_shape(name)
        if -1 in shape:
            continue  # unknown / data-dependent: the double's own op calls the allocator (op "nonzero")
        addr = alloc.reallocate_output_async(name, ctx._addresses.get(name, 0),
                                             max(1, math.prod(shape) * _itemsize(ctx, name)), 256, h)
        if not addr:
            import trt_double

            ctx.engine._runtime._log(trt_double.Severity.ERROR, f"enqueueV3: output allocator returned null for {name}")
            return None
        ctx._addresses[name] = int(addr)
        pending.append((alloc, name, shape))
    return pending


def _outalloc_post(pending: list[tuple[Any, str, tuple[int, ...]]]) -> None:
    for alloc, name, shape in pending:
        alloc.notify_shape(name, shape)


def patch_double(mod: Any) -> None:
    """Fidelity patches: real TensorRT API the double lacks and Polygraphy / the samples call."""
    import numpy as np

    DT = mod.DataType
    # P1 ---------------------------------------------------------------------------------------------------------
    aliases = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int8": "INT8", "int32": "INT32",
               "int64": "INT64", "bool": "BOOL", "uint8": "UINT8"}
    for alias, member in aliases.items():
        if not hasattr(mod, alias):
            setattr(mod, alias, DT[member])

    class _AbsentDataType:
        """Stands for a TensorRT DataType member the double does not have (no double engine produces it)."""

        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return f"<DataType.{self.name} (not in the double)>"

    for alias, member in {"fp8": "FP8", "int4": "INT4", "fp4": "FP4", "e8m0": "E8M0"}.items():
        if not hasattr(mod, alias):
            setattr(mod, alias, _AbsentDataType(member))
    record_patch(
        "P1", "module", "module-level DataType aliases trt.float32/float16/bfloat16/int8/int32/int64/bool/uint8 "
        "(the double's DataType members) and trt.fp8/int4/fp4/e8m0 (placeholders: the double has no such members "
        "and never produces them)",
        "Polygraphy's DataType importer (polygraphy/datatype/tensorrt.py) builds {trt.float32: ..., "
        "try_getattr(trt, 'fp8'): ...} on every conversion (several per infer call); without the aliases it cannot "
        "convert, and without fp8..e8m0 each lookup raises AttributeError inside Polygraphy, which real TensorRT "
        "never does; trt.nptype uses the aliases too",
        "NVIDIA/TensorRT python/src/infer/pyFoundationalTypes.cpp: m.attr(\"float32\") = DataType::kFLOAT; ... "
        "m.attr(\"uint8\") = DataType::kUINT8; m.attr(\"fp8\") = DataType::kFP8; m.attr(\"int4\"), "
        "m.attr(\"fp4\"), m.attr(\"e8m0\")")

    # P2 ---------------------------------------------------------------------------------------------------------
    def volume(iterable: Any) -> int:
        vol = 1
        for elem in iterable:
            vol *= elem
        return vol

    np_map = {DT.FLOAT: np.float32, DT.HALF: np.float16, DT.INT8: np.int8, DT.INT32: np.int32,
              DT.INT64: np.int64, DT.BOOL: np.bool_, DT.UINT8: np.uint8}

    def nptype(trt_type: Any) -> Any:
        if trt_type in np_map:
            return np_map[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    mod.volume = volume
    mod.nptype = nptype
    record_patch(
        "P2", "module", "trt.volume(iterable) and trt.nptype(DataType) (no numpy type for BF16/FP8: TypeError)",
        "the samples' allocate_buffers sizes buffers with trt.volume(shape) and trt.nptype(engine.get_tensor_dtype())",
        "NVIDIA/TensorRT python/packaging/bindings_wheel/tensorrt/__init__.py: def volume(iterable), "
        "def nptype(trt_type) (mapping float32..uint8, else TypeError)")

    # P3 ---------------------------------------------------------------------------------------------------------
    class TensorFormat(enum.Enum):
        LINEAR = 0
        CHW2 = 1
        HWC8 = 2
        CHW4 = 3
        CHW16 = 4
        CHW32 = 5
        DHWC8 = 6
        CDHW32 = 7
        HWC = 8
        DLA_LINEAR = 9
        DLA_HWC4 = 10
        HWC16 = 11
        DHWC = 12

    mod.TensorFormat = TensorFormat

    def get_tensor_format(self: Any, name: str, profile_index: int | None = None) -> Any:
        return TensorFormat.LINEAR  # the double's tensors are plain row-major (linear)

    mod.ICudaEngine.get_tensor_format = get_tensor_format
    record_patch(
        "P3", "ICudaEngine / module", "trt.TensorFormat enum (LINEAR=0 ... DHWC=12) and "
        "ICudaEngine.get_tensor_format(name[, profile_index]) -> TensorFormat.LINEAR",
        "TrtRunner.infer calls trt_util.get_tensor_format(engine, context, name) for every input and output and "
        "compares with trt.TensorFormat.HWC / LINEAR / CHW16; get_input_metadata (check_inputs) does too",
        "NVIDIA/TensorRT include/NvInferRuntime.h enum class TensorFormat {kLINEAR = 0, ..., kDHWC = 12}; "
        "python/src/infer/pyCore.cpp ICudaEngine.def(\"get_tensor_format\", (name) and (name, profile_index))")

    # P5 ---------------------------------------------------------------------------------------------------------
    def get_aliased_input_tensor(self: Any, name: str) -> Any:
        return None  # no output of the double aliases an input (nullptr -> None)

    mod.ICudaEngine.get_aliased_input_tensor = get_aliased_input_tensor
    record_patch(
        "P5", "ICudaEngine", "ICudaEngine.get_aliased_input_tensor(name) -> None",
        "TrtRunner.infer asks it for every output (falls back on AttributeError when absent; present in the "
        "TensorRT the double stands for, so Polygraphy takes the same branch as on real TensorRT >= 10.15)",
        "NVIDIA/TensorRT python/src/infer/pyCore.cpp .def(\"get_aliased_input_tensor\", ... getAliasedInputTensor) "
        "(added in 'TensorRT 10.15 OSS Release'); NvInferRuntime.h: returns nullptr if the output aliases no input")

    # P6 ---------------------------------------------------------------------------------------------------------
    class IDebugListener:
        """[PY] IDebugListener: process_debug_tensor(addr, location, type, shape, name, stream)."""

        def __init__(self) -> None:
            pass

    mod.IDebugListener = IDebugListener
    ctx_cls = mod.IExecutionContext

    def set_debug_listener(self: Any, listener: Any) -> bool:
        self._debug_listener = listener
        return True

    def get_debug_listener(self: Any) -> Any:
        return getattr(self, "_debug_listener", None)

    def set_all_tensors_debug_state(self: Any, flag: bool) -> bool:
        return True  # the plan marks no debug tensors: nothing to turn on, the listener is never called

    def set_tensor_debug_state(self: Any, name: str, flag: bool) -> bool:
        return False  # no tensor of the double is a debug tensor

    def get_debug_state(self: Any, name: str) -> bool:
        return False

    ctx_cls.set_debug_listener = set_debug_listener
    ctx_cls.get_debug_listener = get_debug_listener
    ctx_cls.set_all_tensors_debug_state = set_all_tensors_debug_state
    ctx_cls.set_tensor_debug_state = set_tensor_debug_state
    ctx_cls.get_debug_state = get_debug_state
    record_patch(
        "P6", "IExecutionContext / module", "trt.IDebugListener; IExecutionContext.set_debug_listener / "
        "get_debug_listener / set_all_tensors_debug_state / set_tensor_debug_state / get_debug_state (no debug "
        "tensors: the listener is never called)",
        "TrtRunner.activate installs a debug listener when the context has set_all_tensors_debug_state (real TensorRT "
        ">= 10.0 does), and infer clears its collected tensors on every call",
        "NVIDIA/TensorRT python/src/infer/pyCore.cpp: IDebugListener class; IExecutionContext .def("
        "\"set_debug_listener\"), \"get_debug_listener\", \"set_tensor_debug_state\", \"get_debug_state\", "
        "\"set_all_tensors_debug_state\" (since 'TensorRT 10.0 Release'); NvInferRuntime.h: bool "
        "setDebugListener(), bool setAllTensorsDebugState(bool)")

    # P7 ---------------------------------------------------------------------------------------------------------
    base = mod.ILogger

    class Logger(base):  # type: ignore[misc, valid-type]
        """[PY] tensorrt.Logger(min_severity=Logger.WARNING): the default logger, prints to stderr."""

        def __init__(self, min_severity: Any = None) -> None:
            base.__init__(self)
            self.min_severity = min_severity if min_severity is not None else base.Severity.WARNING

        def log(self, severity: Any, msg: str) -> None:
            if severity.value <= self.min_severity.value:
                print(f"[TRT] [{severity.name}] {msg}", file=sys.stderr)

    Logger.Severity = base.Severity
    for attr, value in base.Severity.__members__.items():
        setattr(Logger, attr, value)
    mod.Logger = Logger
    record_patch(
        "P7", "module", "trt.Logger(min_severity) with Logger.INTERNAL_ERROR ... Logger.VERBOSE",
        "the samples create TRT_LOGGER = trt.Logger(trt.Logger.WARNING) for their trt.Runtime",
        "NVIDIA/TensorRT python/src/infer/pyCore.cpp py::class_<DefaultLogger, ILogger>(m, \"Logger\"); "
        "tensorrt/__init__.py: Logger.Severity = ILogger.Severity; setattr(Logger, attr, value) per member")

    # P4 (execute_async_v3 wrapper; the benchmark's settings B1/B2 keep it) -------------------------------------------
    _ORIG_EXECUTE[id(mod)] = ctx_cls.execute_async_v3
    record_patch(
        "P4", "IExecutionContext.execute_async_v3",
        "for every output with an IOutputAllocator (set_output_allocator) and a known shape: "
        "reallocate_output_async(name, current_address, nbytes, 256, stream) before the op, its address bound, "
        "then notify_shape(name, shape) before returning; kept in the no-op and spin settings too",
        "TrtRunner binds no output address: it sets an IOutputAllocator on every output each call and reads the "
        "buffer and shape it was given; the double only calls allocators for data-dependent (nonzero) outputs",
        "NvInferRuntime.h IExecutionContext::setOutputAllocator: 'The allocator is called by enqueueV3()'; "
        "IOutputAllocator::reallocateOutputAsync(tensorName, currentMemory = the address set by setTensorAddress, "
        "size, alignment, stream); notifyShape 'Called by TensorRT sometime between when it calls reallocateOutput "
        "and enqueueV3 returns'; pyCore.cpp PyOutputAllocator calls the Python method reallocate_output_async("
        "name, int(currentMemory), size, alignment, int(stream))")
    install_execute(mod, "real")


def install_execute(mod: Any, setting: str, spin: Any = None) -> None:
    """'real': the double's op (+P4); 'noop': B1, nothing runs (+P4); 'spin': B2, the spin kernel (+P4)."""
    ctx_cls = mod.IExecutionContext
    orig = _ORIG_EXECUTE[id(mod)]
    if setting == "real":
        def execute_async_v3(self: Any, stream_handle: Any) -> bool:
            if not self._out_alloc:
                return bool(orig(self, stream_handle))
            pending = _outalloc_pre(self, stream_handle)
            if pending is None:
                return False
            ok = bool(orig(self, stream_handle))
            if ok:
                _outalloc_post(pending)
            return ok
    elif setting == "noop":
        def execute_async_v3(self: Any, stream_handle: Any) -> bool:
            if self._out_alloc:
                pending = _outalloc_pre(self, stream_handle)
                if pending is None:
                    return False
                _outalloc_post(pending)
            return True
    elif setting == "spin":
        execute_async_v3 = spin
    else:
        raise ValueError(setting)
    ctx_cls.execute_async_v3 = execute_async_v3


# ================================================================================================================
# The samples idiom (own code reproducing the call sequence of NVIDIA/TensorRT samples/python/common_runtime.py)
# ================================================================================================================


def _make_array_with_owner() -> Any:
    import numpy as np

    class ArrayWithOwner(np.ndarray):
        """A numpy view that keeps a reference to its owner (10.14+ samples)."""

        def __new__(cls, input_array: Any, owner: Any) -> Any:
            obj = np.asarray(input_array).view(cls)
            obj._owner = owner
            return obj

        def __array_finalize__(self, obj: Any) -> None:
            if obj is None:
                return
            self._owner = getattr(obj, "_owner", None)

    return ArrayWithOwner


class Samples:
    """Both generations of the samples' runtime helpers, bound to a cudart module (real or fake)."""

    def __init__(self, rt: Any, trt: Any) -> None:
        import numpy as np

        self.rt = rt
        self.trt = trt
        self.np = np
        self.ArrayWithOwner = _make_array_with_owner()
        try:
            from cuda.bindings import driver as cu_driver
        except ImportError:  # pragma: no cover
            cu_driver = None
        self.cu_driver = cu_driver

    # ---- TensorRT 10.14 / 11.0 generation ------------------------------------------------------------------------
    def cuda_call(self, call: Any) -> Any:
        rt, drv = self.rt, self.cu_driver

        def _cuda_get_error_enum(error: Any) -> Any:  # defined per call, as in the samples
            if drv is not None and isinstance(error, drv.CUresult):
                err, name = drv.cuGetErrorName(error)
                return name if err == drv.CUresult.CUDA_SUCCESS else "<unknown>"
            if isinstance(error, rt.cudaError_t):
                return rt.cudaGetErrorName(error)[1]
            raise RuntimeError(f"Unknown error type: {error}")

        err, res = call[0], call[1:]
        if err.value:
            raise RuntimeError(f"CUDA error code={err.value}({_cuda_get_error_enum(err)})")
        if len(res) == 1:
            return res[0]
        if len(res) == 0:
            return None
        return res

    def new_mem(self, size: int, dtype: Any) -> Any:
        """HostDeviceMem composed of PinnedHostMem and DeviceMem, as in the 10.14+ samples."""
        s = self
        np = self.np

        class DeviceMem:
            def __init__(self, nbytes: int) -> None:
                self._device_ptr = s.cuda_call(s.rt.cudaMalloc(nbytes))
                self._nbytes = nbytes

            @property
            def device_ptr(self) -> int:
                return self._device_ptr

        class PinnedHostMem:
            def __init__(self, n: int, dt: Any) -> None:
                self._dtype = np.dtype(dt)
                self._host_size = n
                self._nbytes = n * self._dtype.itemsize
                self._host_ptr = s.cuda_call(s.rt.cudaMallocHost(self._nbytes))

            @property
            def array(self) -> Any:  # a fresh view per access
                pointer_type = ctypes.POINTER(np.ctypeslib.as_ctypes_type(self._dtype))
                host_array = np.ctypeslib.as_array(ctypes.cast(self._host_ptr, pointer_type), (self._host_size,))
                return s.ArrayWithOwner(host_array, self)

            @array.setter
            def array(self, data: Any) -> None:
                host_array = self.array
                if data.size > self._host_size:
                    raise ValueError(f"Tried to fit an array of size {data.size} into host memory of size "
                                     f"{self._host_size}")
                np.copyto(host_array[:data.size], data.flat, casting="safe")

            @property
            def nbytes(self) -> int:
                return self._nbytes

        class HostDeviceMem:
            def __init__(self) -> None:
                dt = np.dtype(np.uint8) if dtype is None else np.dtype(dtype)
                self._host_mem = PinnedHostMem(size, dt)
                self._device_mem = DeviceMem(size * dt.itemsize)

            @property
            def host(self) -> Any:
                return self._host_mem.array

            @host.setter
            def host(self, data: Any) -> None:
                self._host_mem.array = data

            @property
            def device_ptr(self) -> int:
                return self._device_mem.device_ptr

            @property
            def nbytes(self) -> int:
                return self._host_mem.nbytes

        return HostDeviceMem()

    def new_stream(self) -> Any:
        s = self

        class CudaStreamContext:
            def __init__(self) -> None:
                self._stream = s.cuda_call(s.rt.cudaStreamCreate())

            @property
            def stream(self) -> Any:
                if self._stream is None:
                    raise RuntimeError("Stream not created. Use 'with' statement.")
                return self._stream

        return CudaStreamContext()

    def allocate_buffers_new(self, engine: Any, shapes: dict[str, tuple[int, ...]]) -> tuple[list[Any], list[Any],
                                                                                            list[int]]:
        return self._allocate(engine, shapes, self.new_mem, lambda m: int(m.device_ptr))

    def do_inference_new(self, context: Any, engine: Any, bindings: list[int], inputs: list[Any],
                         outputs: list[Any], stream: Any) -> list[Any]:
        rt = self.rt
        stream_handle = stream.stream

        def execute_async_func() -> None:
            context.execute_async_v3(stream_handle=stream_handle)

        for i in range(engine.num_io_tensors):
            context.set_tensor_address(engine.get_tensor_name(i), bindings[i])
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        [self.cuda_call(rt.cudaMemcpyAsync(inp.device_ptr, inp.host.ctypes.data, inp.nbytes, kind, stream_handle))
         for inp in inputs]
        execute_async_func()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        [self.cuda_call(rt.cudaMemcpyAsync(out.host.ctypes.data, out.device_ptr, out.nbytes, kind, stream_handle))
         for out in outputs]
        self.cuda_call(rt.cudaStreamSynchronize(stream_handle))
        return [out.host.copy() for out in outputs]

    # ---- TensorRT 10.0 - 10.13 generation -----------------------------------------------------------------------
    def check_cuda_err(self, err: Any) -> None:
        drv = self.cu_driver
        if drv is not None and isinstance(err, drv.CUresult) and err != drv.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"Cuda Error: {err}")
        if isinstance(err, self.rt.cudaError_t):
            if err != self.rt.cudaError_t.cudaSuccess:
                raise RuntimeError(f"Cuda Runtime Error: {err}")
        else:
            raise RuntimeError(f"Unknown error type: {err}")

    def cuda_call_old(self, call: Any) -> Any:
        err, res = call[0], call[1:]
        self.check_cuda_err(err)
        if len(res) == 1:
            res = res[0]
        return res

    def old_mem(self, size: int, dtype: Any) -> Any:
        s = self
        np = self.np

        class HostDeviceMem:
            def __init__(self) -> None:
                dt = np.dtype(dtype)
                nbytes = size * dt.itemsize
                host_mem = s.cuda_call_old(s.rt.cudaMallocHost(nbytes))
                pointer_type = ctypes.POINTER(np.ctypeslib.as_ctypes_type(dt))
                self._host = np.ctypeslib.as_array(ctypes.cast(host_mem, pointer_type), (size,))
                self._device = s.cuda_call_old(s.rt.cudaMalloc(nbytes))
                self._nbytes = nbytes

            @property
            def host(self) -> Any:
                return self._host

            @host.setter
            def host(self, data: Any) -> None:
                if data.size > self.host.size:
                    raise ValueError(f"Tried to fit an array of size {data.size} into host memory of size "
                                     f"{self.host.size}")
                np.copyto(self.host[:data.size], data.flat, casting="safe")

            @property
            def device(self) -> int:
                return self._device

            @property
            def nbytes(self) -> int:
                return self._nbytes

        return HostDeviceMem()

    def allocate_buffers_old(self, engine: Any, shapes: dict[str, tuple[int, ...]]) -> tuple[list[Any], list[Any],
                                                                                            list[int], Any]:
        stream = self.cuda_call_old(self.rt.cudaStreamCreate())
        ins, outs, bindings = self._allocate(engine, shapes, self.old_mem, lambda m: int(m.device))
        return ins, outs, bindings, stream

    def do_inference_old(self, context: Any, engine: Any, bindings: list[int], inputs: list[Any],
                         outputs: list[Any], stream: Any) -> list[Any]:
        rt = self.rt

        def execute_async_func() -> None:
            context.execute_async_v3(stream_handle=stream)

        for i in range(engine.num_io_tensors):
            context.set_tensor_address(engine.get_tensor_name(i), bindings[i])
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        [self.cuda_call_old(rt.cudaMemcpyAsync(inp.device, inp.host, inp.nbytes, kind, stream)) for inp in inputs]
        execute_async_func()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        [self.cuda_call_old(rt.cudaMemcpyAsync(out.host, out.device, out.nbytes, kind, stream)) for out in outputs]
        self.cuda_call_old(rt.cudaStreamSynchronize(stream))
        return [out.host for out in outputs]

    # ---- shared ------------------------------------------------------------------------------------------------
    def _allocate(self, engine: Any, shapes: dict[str, tuple[int, ...]], make: Any, dev: Any) -> tuple[
            list[Any], list[Any], list[int]]:
        """The samples' allocate_buffers, with each tensor's shape given (the samples read it from a static
        engine; their profile_idx variant reads get_tensor_profile_shape, which TensorRT defines for inputs only)."""
        trt, np = self.trt, self.np
        inputs, outputs, bindings = [], [], []
        for binding in [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]:
            shape = shapes[binding]
            mem = make(trt.volume(shape), np.dtype(trt.nptype(engine.get_tensor_dtype(binding))))
            bindings.append(dev(mem))
            (inputs if engine.get_tensor_mode(binding) == trt.TensorIOMode.INPUT else outputs).append(mem)
        return inputs, outputs, bindings


# ================================================================================================================
# Timing
# ================================================================================================================


@dataclass
class Path:
    name: str
    label: str
    group: str
    syncs: bool
    fn: Callable[[], Any]
    check: Callable[[], Any] | None = None
    best: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None


def per_call_us(fn: Callable[[], Any], sync: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n * 1e6


def measure(paths: list[Path], setting: str, sync: Callable[[], Any], budget_end: float,
            on_round: Callable[[], None] = lambda: None) -> int:
    """Warm up, then PEERS_ROUNDS interleaved rounds; keeps each path's best. Returns the rounds done."""
    n, rounds = CONFIG["PEERS_CALLS"], CONFIG["PEERS_ROUNDS"]
    live = [p for p in paths if p.error is None]
    for p in list(live):
        try:
            per_call_us(p.fn, sync, CONFIG["PEERS_WARMUP"])
            p.rounds[setting] = []
        except Exception as exc:
            p.error = record_error(f"section1 {setting} warm-up {p.name}", exc)
            live.remove(p)
    done = 0
    for r in range(rounds):
        t_round = time.perf_counter()
        for p in list(live):
            try:
                us = per_call_us(p.fn, sync, n)
            except Exception as exc:
                p.error = record_error(f"section1 {setting} {p.name}", exc)
                live.remove(p)
                continue
            p.rounds[setting].append(round(us, 4))
            p.best[setting] = min(p.best.get(setting, math.inf), us)
        done += 1
        spent = time.perf_counter() - t_round
        log(f"section 1 {setting}: round {r + 1}/{rounds} took {spent:.1f} s")
        on_round()
        write_json()
        if r + 1 < rounds and elapsed() + spent > budget_end:
            log(f"section 1 {setting}: stopping after {done} rounds (time budget)")
            break
    return done


# ================================================================================================================
# Main
# ================================================================================================================


class Bench:
    def __init__(self) -> None:
        self.rt: Any = None
        self.torch: Any = None
        self.cp: Any = None
        self.np: Any = None
        self.skipped: dict[str, str] = {}
        self.keep: dict[str, Any] = {}  # objects that must outlive their section (runners, contexts)

    def cleanup(self) -> None:
        for key in ("runner_np", "runner_t", "runners_np", "runners_t"):
            obj = self.keep.get(key)
            for r in obj if isinstance(obj, list) else [obj] if obj is not None else []:
                with contextlib.suppress(Exception):
                    if r.is_active:
                        r.deactivate()

    # ---- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        import numpy as np

        self.np = np
        RESULTS["libcudart_search_at_start"] = {"candidates": libcudart_candidates()}
        if DRY:
            self.rt = FakeCudart()
        else:
            from cuda.bindings import runtime as rt

            self.rt = rt
            import torch

            self.torch = torch
            torch.cuda.init()
            import cupy as cp

            self.cp = cp
        # the double, patched, and installed as "tensorrt" before Polygraphy is imported
        import trt_double

        self.trt_double = trt_double
        if DRY:
            trt_double._run_op = _host_run_op
            record_patch("D1", "trt_double._run_op (dry mode only)",
                         "the affine op done with NumPy on host memory", "no GPU in dry mode", "-", kind="dry")
        mod = trt_double.make_module("tensorrt")
        self.mod = mod
        patch_double(mod)
        sys.modules["tensorrt"] = mod
        record_patch("S1", "sys.modules['tensorrt']", "the patched double module object installed as 'tensorrt'",
                     "Polygraphy imports tensorrt lazily (polygraphy.mod.trt_importer.lazy_import_trt)", "-",
                     kind="setup")
        self.plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}])
        self.a, self.b = 2.0, 1.0
        self.x_np = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
        self.expect = self.x_np * self.a + self.b
        # plain TensorRT runtime, as a samples / Polygraphy / raw user has it
        self.trt_logger = mod.Logger(mod.Logger.WARNING)
        self.runtime = mod.Runtime(self.trt_logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.plan)
        if self.engine is None:
            raise RuntimeError("the double refused the plan")
        self.env()
        self.setup_polygraphy_cuda()

    def _ck(self, res: Any, what: str) -> Any:
        err, *vals = res
        if int(err) != 0:
            raise RuntimeError(f"{what} failed: {err}")
        return vals[0] if len(vals) == 1 else (tuple(vals) if vals else None)

    def dev_sync(self) -> None:
        self._ck(self.rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def env(self) -> None:
        e: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                             "executable": sys.executable, "double_version": self.mod.__version__,
                             "CUDA_DEVICE_MAX_CONNECTIONS": os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS"),
                             "switchinterval_s": sys.getswitchinterval()}
        for dist in ("torch", "cupy-cuda13x", "cupy-cuda12x", "cupy", "cuda-bindings", "cuda-core", "cuda-python",
                     "numpy", "polygraphy", "onnx", "onnxruntime", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12",
                     "nvidia-cuda-nvrtc"):
            with contextlib.suppress(Exception):
                e[f"version:{dist}"] = importlib.metadata.version(dist)
        with contextlib.suppress(Exception):
            from trtkit._version import __version__ as tv

            e["version:trtkit"] = tv
        if DRY:
            e["gpu"] = "none (PEERS_DRY=1)"
        else:
            rt = self.rt
            props = self._ck(rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            e["gpu"] = name.rstrip("\x00")
            e["compute_capability"] = f"{props.major}.{props.minor}"
            e["sm_count"] = int(props.multiProcessorCount)
            with contextlib.suppress(Exception):
                e["cuda_driver_version"] = int(self._ck(rt.cudaDriverGetVersion(), "cudaDriverGetVersion"))
                e["cuda_runtime_version"] = int(self._ck(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
            e["torch_cuda"] = self.torch.version.cuda
        RESULTS["environment"] = e

    def setup_polygraphy_cuda(self) -> None:
        """Point polygraphy.cuda at the pip libcudart (see the comment above choose_libcudart)."""
        info = choose_libcudart()
        try:
            import polygraphy
            import polygraphy.cuda.cuda as pc

            info["polygraphy_version"] = polygraphy.__version__
            try:
                wrapper = pc.wrapper()
                info["polygraphy_loaded"] = getattr(wrapper.handle, "_name", str(wrapper.handle))
            except Exception as exc:
                info["polygraphy_load_error"] = f"{type(exc).__name__}: {exc}"
            if DRY:
                try:  # the real library loaded above; CUDA calls must fail here (no driver)
                    pc.wrapper().create_stream()
                    info["dry_cuda_probe"] = "cudaStreamCreate succeeded (a GPU is present?)"
                except Exception as exc:
                    info["dry_cuda_probe"] = f"reached CUDA, failed as expected without a GPU: {exc}"[:300]
                fake = pc.Cuda.__new__(pc.Cuda)
                fake.handle = FakePolygraphyLib(self.rt)
                pc.G_CUDA = fake
                record_patch("D2", "polygraphy.cuda.cuda.G_CUDA (dry mode only)",
                             "Polygraphy's Cuda wrapper with its ctypes libcudart replaced by host-memory stand-ins",
                             "no GPU in dry mode", "-", kind="dry")
        except Exception as exc:
            info["polygraphy_import_error"] = record_error("polygraphy import", exc)
        info["loaded_after"] = loaded_libs("libcudart")
        if len({os.path.realpath(p) for p in info["loaded_after"]}) > 1:
            info["note"] = "more than one libcudart file is mapped (harmless: they share the primary context)"
        RESULTS["polygraphy_cuda"] = info
        log(f"polygraphy libcudart: {info.get('polygraphy_loaded') or info.get('polygraphy_load_error')}")

    # ---- section 1 ---------------------------------------------------------------------------------------------
    def build_section1(self) -> list[Path]:
        np, rt, mod, eng = self.np, self.rt, self.mod, self.engine
        paths: list[Path] = []
        x_np = self.x_np
        nbytes = int(x_np.nbytes)

        def expect_close(y: Any, what: str) -> None:
            y = np.asarray(y, dtype=np.float32).reshape(-1)[: self.expect.size].reshape(self.expect.shape)
            if not np.allclose(y, self.expect, atol=1e-5):
                raise AssertionError(f"{what}: wrong output {y.ravel()[:4]} vs {self.expect.ravel()[:4]}")

        # a / a': raw TensorRT API loop on cudaMalloc'd buffers and a non-blocking cudart stream
        try:
            raw = eng.create_execution_context()
            h_raw = int(self._ck(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"))
            raw.set_optimization_profile_async(0, h_raw)
            dx = int(self._ck(rt.cudaMalloc(nbytes), "cudaMalloc"))
            dy = int(self._ck(rt.cudaMalloc(nbytes), "cudaMalloc"))
            self._ck(rt.cudaMemcpy(dx, x_np.ctypes.data, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "H2D")
            shape = tuple(x_np.shape)
            sync_stream = rt.cudaStreamSynchronize

            def raw_sync() -> None:
                raw.set_input_shape("x", shape)
                raw.set_tensor_address("x", dx)
                raw.set_tensor_address("y", dy)
                if not raw.execute_async_v3(h_raw):
                    raise RuntimeError("raw execute_async_v3 failed")
                sync_stream(h_raw)

            def raw_async() -> None:
                raw.set_input_shape("x", shape)
                raw.set_tensor_address("x", dx)
                raw.set_tensor_address("y", dy)
                if not raw.execute_async_v3(h_raw):
                    raise RuntimeError("raw execute_async_v3 failed")

            def raw_check() -> None:
                raw_sync()
                out = np.empty_like(x_np)
                self._ck(rt.cudaMemcpy(out.ctypes.data, dy, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "D2H")
                expect_close(out, "raw")

            paths.append(Path("a_raw_sync", "a  raw TRT API loop, sync each call", "a", True, raw_sync, raw_check))
            paths.append(Path("a2_raw_async", "a' raw TRT API loop, one sync per round", "a", False, raw_async,
                              raw_check))
        except Exception as exc:
            self.skipped["a_raw"] = record_error("setup raw loop", exc)

        # b / b': the samples idiom
        try:
            smp = Samples(rt, mod)
            s_ctx = eng.create_execution_context()
            io_shapes = {"x": tuple(x_np.shape), "y": tuple(x_np.shape)}
            s_in, s_out, s_bind = smp.allocate_buffers_new(eng, io_shapes)
            s_stream = smp.new_stream()

            def samples_new() -> Any:
                s_ctx.set_input_shape("x", x_np.shape)
                s_in[0].host = x_np
                return smp.do_inference_new(s_ctx, eng, s_bind, s_in, s_out, s_stream)

            s2_ctx = eng.create_execution_context()
            s2_in, s2_out, s2_bind, s2_stream = smp.allocate_buffers_old(eng, io_shapes)

            def samples_old() -> Any:
                s2_ctx.set_input_shape("x", x_np.shape)
                s2_in[0].host = x_np
                return smp.do_inference_old(s2_ctx, eng, s2_bind, s2_in, s2_out, s2_stream)

            paths.append(Path("b_samples_trt11", "b  TRT samples idiom (10.14+/11.0), numpy", "b", True, samples_new,
                              lambda: expect_close(samples_new()[0], "samples 10.14+")))
            paths.append(Path("b2_samples_trt10", "b' TRT samples idiom (10.0-10.13), numpy", "b", True,
                              samples_old, lambda: expect_close(samples_old()[0], "samples 10.0-10.13")))
        except Exception as exc:
            self.skipped["b_samples"] = record_error("setup samples idiom", exc)

        # c: Polygraphy
        try:
            from polygraphy.backend.trt import TrtRunner

            run_np = self.keep["runner_np"] = TrtRunner(eng, name="peers-numpy")
            run_np.activate()
            feed_np = {"x": x_np}
            paths.append(Path("c_polygraphy_numpy", "c  Polygraphy TrtRunner.infer, numpy", "c", True,
                              lambda: run_np.infer({"x": x_np}),
                              lambda: expect_close(run_np.infer(feed_np)["y"], "polygraphy numpy")))
            paths.append(Path("c2_polygraphy_numpy_nocheck", "c  Polygraphy infer(check_inputs=False), numpy", "c",
                              True, lambda: run_np.infer({"x": x_np}, check_inputs=False),
                              lambda: expect_close(run_np.infer(feed_np, check_inputs=False)["y"], "polygraphy")))
            if self.torch is not None:
                torch = self.torch
                run_t = self.keep["runner_t"] = TrtRunner(eng, name="peers-torch")
                run_t.activate()
                xt_p = torch.from_numpy(x_np).cuda()
                torch.cuda.synchronize()
                paths.append(Path("c3_polygraphy_torch_to_host", "c  Polygraphy infer, torch CUDA -> torch CPU",
                                  "c", True, lambda: run_t.infer({"x": xt_p}),
                                  lambda: expect_close(run_t.infer({"x": xt_p})["y"].numpy(), "polygraphy torch")))
                paths.append(Path("c4_polygraphy_torch_on_device",
                                  "c  Polygraphy infer, torch CUDA -> CUDA (no host copy)", "c", True,
                                  lambda: run_t.infer({"x": xt_p}, copy_outputs_to_host=False),
                                  lambda: expect_close(
                                      run_t.infer({"x": xt_p}, copy_outputs_to_host=False)["y"].cpu().numpy(),
                                      "polygraphy torch device")))
            else:
                self.skipped["c3/c4 polygraphy torch"] = "no torch (dry mode)"
        except Exception as exc:
            self.skipped["c_polygraphy"] = record_error("setup polygraphy", exc)

        # d: trtkit
        if DRY:
            self.skipped["d_trtkit"] = "dry mode: trtkit's runtime needs a CUDA device (cuda.core); API checked only"
            self.check_trtkit_api()
        else:
            try:
                paths += self.build_trtkit_paths(expect_close)
            except Exception as exc:
                self.skipped["d_trtkit"] = record_error("setup trtkit", exc)
        return [p for p in paths if p.name not in CONFIG["PEERS_SKIP"]]

    def check_trtkit_api(self) -> None:
        import inspect

        from trtkit.backend import Backend
        from trtkit.engine import Engine
        from trtkit.runtime import Context, LoadedEngine, load_engine

        be = Backend.from_module("tensorrt", self.mod)
        checks = {
            "Backend.features.user_managed_context_memory": be.features.user_managed_context_memory,
            "Backend.features.output_allocator": be.features.output_allocator,
            "load_engine(source, *, device, backend, max_contexts)": list(inspect.signature(load_engine).parameters),
            "Engine.infer(inputs, *, outputs, stream)": list(inspect.signature(Engine.infer).parameters),
            "Engine.create_context": list(inspect.signature(Engine.create_context).parameters),
            "LoadedEngine.ensure_current": callable(LoadedEngine.ensure_current),
            "Context.infer": list(inspect.signature(Context.infer).parameters),
        }
        RESULTS["dry_trtkit_api"] = checks

    def ensure_trtkit(self) -> tuple[Any, Any]:
        """trtkit's LoadedEngine and Engine on the patched double (as benchmarks/runtime_overhead.py sets them up)."""
        if getattr(self, "tk_engine", None) is None:
            from trtkit.backend import Backend
            from trtkit.engine import Engine
            from trtkit.runtime import load_engine

            be = Backend.from_module("tensorrt", self.mod)
            self.le = load_engine(self.plan, backend=be)
            self.tk_engine = Engine(self.le)
            torch_stream = self.torch.cuda.Stream()
            self.torch.cuda.set_stream(torch_stream)  # the caller's current stream (trtkit's facade runs on it)
            self.keep["torch_stream"] = torch_stream
        return self.le, self.tk_engine

    def build_trtkit_paths(self, expect_close: Callable[[Any, str], None]) -> list[Path]:
        torch = self.torch
        le, eng = self.ensure_trtkit()
        x_np = self.x_np
        x_t = torch.from_numpy(x_np).cuda()
        y_t = torch.empty_like(x_t)
        torch.cuda.synchronize()
        ctx_t = le.create_context()
        ctx_np = le.create_context()

        def sync_all() -> None:
            torch.cuda.synchronize()
            self.dev_sync()

        def chk_engine_np() -> None:
            expect_close(eng(x_np)["y"], "trtkit engine(x) numpy")

        def chk_engine_t() -> None:
            out = eng(x_t)["y"]
            sync_all()
            expect_close(out.cpu().numpy(), "trtkit engine(x) torch")

        def chk_infer_out() -> None:
            y_t.zero_()
            eng.infer(x_t, outputs={"y": y_t})
            sync_all()
            expect_close(y_t.cpu().numpy(), "trtkit engine.infer(x, outputs=y)")

        def chk_ctx_t() -> None:
            y_t.zero_()
            ctx_t.infer(x_t, outputs={"y": y_t})
            sync_all()
            expect_close(y_t.cpu().numpy(), "trtkit Context.infer torch")

        def chk_ctx_np() -> None:
            expect_close(ctx_np.infer(x_np)["y"], "trtkit Context.infer numpy")

        outs = {"y": y_t}
        return [
            Path("d_trtkit_engine_numpy", "d  trtkit engine(x), numpy", "d", True, lambda: eng(x_np), chk_engine_np),
            Path("d2_trtkit_engine_torch", "d  trtkit engine(x), torch CUDA", "d", False, lambda: eng(x_t),
                 chk_engine_t),
            Path("d3_trtkit_engine_infer_outputs", "d  trtkit engine.infer(x, outputs=y), torch", "d", False,
                 lambda: eng.infer(x_t, outputs=outs), chk_infer_out),
            Path("d4_trtkit_context_infer_torch", "d  trtkit Context.infer(x, outputs=y), torch", "d", False,
                 lambda: ctx_t.infer(x_t, outputs=outs), chk_ctx_t),
            Path("d5_trtkit_context_infer_numpy", "d  trtkit Context.infer(x), numpy", "d", True,
                 lambda: ctx_np.infer(x_np), chk_ctx_np),
        ]

    def section1(self) -> None:
        log("section 1: building paths")
        paths = self.build_section1()
        install_execute(self.mod, "real")
        for p in paths:  # correctness once, with the real op
            try:
                if p.check is not None:
                    p.check()
            except Exception as exc:
                p.error = record_error(f"section1 check {p.name}", exc)
        sync = self.dev_sync
        s1: dict[str, Any] = {"calls_per_round": CONFIG["PEERS_CALLS"], "rounds_requested": CONFIG["PEERS_ROUNDS"],
                              "skipped": self.skipped, "paths": {}}
        RESULTS["section1"] = s1
        budget_end = CONFIG["PEERS_S1_BUDGET_S"]
        self._fill_s1(s1, paths)
        try:
            measure(paths, "e2e", sync, budget_end - (budget_end - elapsed()) / 2,
                                            lambda: self._fill_s1(s1, paths))
        finally:
            install_execute(self.mod, "noop")
        try:
            measure(paths, "host", sync, budget_end, lambda: self._fill_s1(s1, paths))
        finally:
            install_execute(self.mod, "real")
        self._fill_s1(s1, paths)
        s1["p4_emulation_us_per_call"] = self.p4_cost()
        write_json()

    def p4_cost(self) -> float | None:
        """What P4 itself (the double emulating TensorRT's IOutputAllocator calls in Python) adds per call, with
        allocator methods that do nothing: part of the Polygraphy rows that real TensorRT would spend in C++."""
        try:
            mod = self.mod

            class Null(mod.IOutputAllocator):
                def __init__(self) -> None:
                    mod.IOutputAllocator.__init__(self)

                def reallocate_output_async(self, name: str, memory: Any, size: int, alignment: int,
                                            stream: Any) -> int:
                    return 256

                def notify_shape(self, name: str, shape: Any) -> None:
                    pass

            ctx = self.engine.create_execution_context()
            ctx.set_input_shape("x", self.x_np.shape)
            ctx.set_output_allocator("y", Null())
            n = max(1000, CONFIG["PEERS_CALLS"])
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(n):
                    _outalloc_post(_outalloc_pre(ctx, 0))  # type: ignore[arg-type]
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            return round(best, 3)
        except Exception as exc:
            record_error("p4 cost", exc)
            return None

    @staticmethod
    def _fill_s1(s1: dict[str, Any], paths: list[Path]) -> None:
        for k in ("host", "e2e"):
            s1[f"rounds_done_{k}"] = max([len(p.rounds.get(k, [])) for p in paths] or [0])
        base = {k: next((p.best.get(k) for p in paths if p.name == "a_raw_sync"), None) for k in ("host", "e2e")}
        base2 = {k: next((p.best.get(k) for p in paths if p.name == "a2_raw_async"), None) for k in ("host", "e2e")}
        for p in paths:
            d: dict[str, Any] = {"label": p.label.strip(), "group": p.group, "syncs_each_call": p.syncs,
                                 "error": p.error}
            for k in ("host", "e2e"):
                v = p.best.get(k)
                d[f"{k}_us"] = None if v is None else round(v, 3)
                d[f"{k}_ratio_to_a"] = None if v is None or not base[k] else round(v / base[k], 3)
                d[f"{k}_ratio_to_a2"] = None if v is None or not base2[k] else round(v / base2[k], 3)
                d[f"{k}_rounds_us"] = p.rounds.get(k, [])
            s1["paths"][p.name] = d

    # ---- section 2 ---------------------------------------------------------------------------------------------
    def make_spin(self) -> tuple[Any, dict[str, Any]]:
        np = self.np
        info: dict[str, Any] = {"spin_us_requested": CONFIG["PEERS_SPIN_US"], "block": 32, "grid": 1}
        if DRY:
            orig = _ORIG_EXECUTE[id(self.mod)]

            def spin_dry(self_: Any, stream_handle: Any) -> bool:
                if self_._out_alloc:
                    pending = _outalloc_pre(self_, stream_handle)
                    if pending is None:
                        return False
                    ok = bool(orig(self_, stream_handle))
                    _outalloc_post(pending)
                    return ok
                return bool(orig(self_, stream_handle))

            info["note"] = "dry mode: no kernel, the NumPy op instead"
            return spin_dry, info
        cp = self.cp
        src = r"""
extern "C" __global__ void peers_spin_affine(const float* x, float* y, int n, float a, float b,
                                             unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = x[i] * a + b;
}
"""
        kern = cp.RawKernel(src, "peers_spin_affine")
        spin_ns = np.uint64(int(CONFIG["PEERS_SPIN_US"] * 1000))
        fa, fb = np.float32(self.a), np.float32(self.b)
        streams: dict[int, Any] = {}
        grid, block = (1,), (32,)
        uint64, int32 = np.uint64, np.int32

        def spin_execute(self_: Any, stream_handle: Any) -> bool:
            h = int(stream_handle)
            pending = None
            if self_._out_alloc:
                pending = _outalloc_pre(self_, h)
                if pending is None:
                    return False
            es = streams.get(h)
            if es is None:
                es = streams[h] = cp.cuda.ExternalStream(h)
            addr = self_._addresses
            n = math.prod(self_._shapes["x"])
            with es:
                kern(grid, block, (uint64(addr["x"]), uint64(addr["y"]), int32(n), fa, fb, spin_ns))
            if pending:
                _outalloc_post(pending)
            return True

        # compile, check and time the kernel on one stream
        x = cp.asarray(self.x_np)
        y = cp.zeros_like(x)
        cp.cuda.Device().synchronize()
        s = cp.cuda.Stream(non_blocking=True)
        with s:
            kern(grid, block, (uint64(x.data.ptr), uint64(y.data.ptr), int32(x.size), fa, fb, spin_ns))
            s.synchronize()
            if not np.allclose(cp.asnumpy(y), self.expect, atol=1e-5):
                raise AssertionError("spin kernel wrote a wrong output")
            e0, e1 = cp.cuda.Event(), cp.cuda.Event()
            reps = 20
            e0.record(s)
            for _ in range(reps):
                kern(grid, block, (uint64(x.data.ptr), uint64(y.data.ptr), int32(x.size), fa, fb, spin_ns))
            e1.record(s)
            e1.synchronize()
        info["spin_us_measured"] = round(cp.cuda.get_elapsed_time(e0, e1) * 1000 / reps, 2)
        info["ideal_per_worker_per_s"] = round(1e6 / info["spin_us_measured"], 1)
        t0 = time.perf_counter()
        with s:
            for _ in range(200):
                kern(grid, block, (uint64(x.data.ptr), uint64(y.data.ptr), int32(x.size), fa, fb, np.uint64(0)))
        info["launch_us_host"] = round((time.perf_counter() - t0) / 200 * 1e6, 2)
        s.synchronize()
        return spin_execute, info

    def section3(self) -> None:
        """trtkit.EnginePool over 1 GPU and over every GPU, with a kernel that fills each GPU for
        PEERS_POOL_SPIN_US (so one GPU runs one call at a time and only more GPUs add throughput)."""
        np, cp, mod = self.np, self.cp, self.mod
        from trtkit.backend import Backend
        from trtkit.engine import Engine
        from trtkit.pool import EnginePool
        from trtkit.runtime import load_engine

        ndev = int(cp.cuda.runtime.getDeviceCount())
        s3: dict[str, Any] = {"devices_on_host": ndev, "spin_us": CONFIG["PEERS_POOL_SPIN_US"],
                              "threads": CONFIG["PEERS_POOL_THREADS"],
                              "contexts_per_device": CONFIG["PEERS_POOL_CONTEXTS"],
                              "window_s": CONFIG["PEERS_POOL_SECONDS"], "points": {}}
        RESULTS["section3"] = s3
        src = r"""
extern "C" __global__ void peers_fill_affine(const float* x, float* y, int n, float a, float b,
                                             unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    if (blockIdx.x == 0) for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = x[i] * a + b;
}
"""
        kern = cp.RawKernel(src, "peers_fill_affine")
        sms = {d: int(cp.cuda.runtime.getDeviceProperties(d)["multiProcessorCount"]) for d in range(ndev)}
        s3["sm_count"] = sms
        spin_ns = np.uint64(int(CONFIG["PEERS_POOL_SPIN_US"] * 1000))
        fa, fb = np.float32(self.a), np.float32(self.b)
        uint64, int32 = np.uint64, np.int32
        streams: dict[tuple[int, int], Any] = {}

        def fill_execute(self_: Any, stream_handle: Any) -> bool:
            dev = int(cp.cuda.runtime.getDevice())
            h = int(stream_handle)
            es = streams.get((dev, h))
            if es is None:
                es = streams[(dev, h)] = cp.cuda.ExternalStream(h, dev)
            addr = self_._addresses
            n = math.prod(self_._shapes["x"])
            with cp.cuda.Device(dev), es:  # 2 blocks of 1024 threads per SM: the whole GPU
                kern((2 * sms[dev],), (1024,), (uint64(addr["x"]), uint64(addr["y"]), int32(n), fa, fb, spin_ns))
            return True

        install_execute(mod, "spin", fill_execute)
        record_patch("B3", "IExecutionContext.execute_async_v3 (section 3)",
                     f"replaced by one CuPy RawKernel launch of 2 x SM-count blocks x 1024 threads that spin "
                     f"{CONFIG['PEERS_POOL_SPIN_US']} us then write y = 2x + 1, on the given stream and current device",
                     "pool scaling needs work that fills a GPU, so that only more GPUs add throughput", "-",
                     kind="benchmark")
        be = Backend.from_module("tensorrt", mod)
        engines = {d: Engine(load_engine(self.plan, backend=be, device=d)) for d in range(ndev)}
        x_np = self.x_np
        configs = [("1 GPU", [0])] + ([(f"{ndev} GPUs", list(range(ndev)))] if ndev > 1 else [])
        for label, devs in configs:
            pool = EnginePool([engines[d] for d in devs], contexts_per_device=CONFIG["PEERS_POOL_CONTEXTS"])
            try:
                y = pool(x_np)["y"]
                if not np.allclose(y, self.expect, atol=1e-5):
                    raise AssertionError(f"pool {label}: wrong output")
                before = {d: pool.stats[d].calls for d in devs}
                calls, dt, errors = _drive(lambda pool=pool: pool(x_np), CONFIG["PEERS_POOL_THREADS"],
                                           CONFIG["PEERS_POOL_SECONDS"])
                if errors:
                    raise errors[0]
                s3["points"][label] = {"devices": devs, "calls_per_s": round(calls / dt, 1),
                                       "calls_per_device": {d: pool.stats[d].calls - before[d] for d in devs}}
                log(f"section 3: {label}: {s3['points'][label]}")
            except Exception as exc:
                s3["points"][label] = {"error": record_error(f"section3 {label}", exc)}
            finally:
                pool._engines = []  # the engines are shared by the next point: close only the contexts
                pool.close()
        pts = s3["points"]
        if len(pts) == 2 and all("calls_per_s" in v for v in pts.values()):
            one, many = (v["calls_per_s"] for v in pts.values())
            s3["scaling"] = round(many / one, 2)
        write_json()

    def section2(self) -> None:
        np, rt, mod, eng = self.np, self.rt, self.mod, self.engine
        workers = CONFIG["PEERS_MS_WORKERS"]
        nmax = max(workers)
        s2: dict[str, Any] = {"workers": workers, "window_s": CONFIG["PEERS_MS_SECONDS"],
                              "rounds_requested": CONFIG["PEERS_MS_ROUNDS"], "variants": {}, "skipped": {}}
        RESULTS["section2"] = s2
        spin, info = self.make_spin()
        s2["spin"] = info
        log(f"section 2: spin kernel {info}")
        install_execute(mod, "spin", spin)
        variants: dict[str, dict[str, Any]] = {}
        x_np = self.x_np
        nbytes = int(x_np.nbytes)

        def expect_close(y: Any, what: str) -> None:
            y = np.asarray(y, dtype=np.float32).reshape(self.expect.shape)
            if not np.allclose(y, self.expect, atol=1e-5):
                raise AssertionError(f"{what}: wrong output")

        # (ii) raw: N contexts, N non-blocking streams, one thread
        try:
            ctxs, hs, outs = [], [], []
            for _ in range(nmax):
                h = int(self._ck(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "stream"))
                c = eng.create_execution_context()
                c.set_optimization_profile_async(0, h)
                c.set_input_shape("x", x_np.shape)
                dx = int(self._ck(rt.cudaMalloc(nbytes), "cudaMalloc"))
                dy = int(self._ck(rt.cudaMalloc(nbytes), "cudaMalloc"))
                self._ck(rt.cudaMemcpy(dx, x_np.ctypes.data, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "H2D")
                c.set_tensor_address("x", dx)
                c.set_tensor_address("y", dy)
                ctxs.append(c)
                hs.append(h)
                outs.append(dy)
            sync_stream = rt.cudaStreamSynchronize

            def raw_run(n: int, seconds: float) -> float:
                cs, hh = ctxs[:n], hs[:n]
                pairs = list(zip(cs, hh, strict=True))
                count = 0
                t0 = time.perf_counter()
                stop = t0 + seconds
                while True:
                    for c, h in pairs:
                        if not c.execute_async_v3(h):
                            raise RuntimeError("raw execute_async_v3 failed")
                    for h in hh:
                        sync_stream(h)
                    count += n
                    if time.perf_counter() >= stop:
                        break
                return count / (time.perf_counter() - t0)

            raw_run(nmax, 0.05)
            for dy in outs:
                out = np.empty_like(x_np)
                self._ck(rt.cudaMemcpy(out.ctypes.data, dy, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "D2H")
                expect_close(out, "raw multi-stream")
            variants["raw_nstreams_1thread"] = {"label": "raw: N ctx + N streams, 1 thread (upper bound)",
                                                "run": raw_run}
        except Exception as exc:
            s2["skipped"]["raw_nstreams_1thread"] = record_error("section2 setup raw", exc)

        # (i) trtkit: one Context per thread
        if DRY:
            s2["skipped"]["trtkit_*"] = "dry mode: trtkit's runtime needs a CUDA device"
        else:
            try:
                torch = self.torch
                le, tk_engine = self.ensure_trtkit()
                tk_ctxs = self.keep["tk_ctxs"] = [tk_engine.create_context() for _ in range(nmax)]
                xs = [torch.from_numpy(x_np).cuda() for _ in range(nmax)]
                ys = [torch.empty_like(xs[0]) for _ in range(nmax)]
                xnps = [x_np.copy() for _ in range(nmax)]
                torch.cuda.synchronize()

                def tk_torch_fn(i: int) -> Callable[[], Any]:
                    c, x, o = tk_ctxs[i], xs[i], {"y": ys[i]}
                    s = c.stream

                    def one() -> None:
                        c.infer(x, outputs=o)
                        s.sync()
                    return one

                def tk_np_fn(i: int) -> Callable[[], Any]:
                    c, x = tk_ctxs[i], xnps[i]
                    return lambda: c.infer(x)

                for i in range(nmax):
                    tk_torch_fn(i)()
                    expect_close(ys[i].cpu().numpy(), "trtkit multi-stream torch")
                    expect_close(tk_np_fn(i)()["y"], "trtkit multi-stream numpy")
                init = le.ensure_current

                def async_run(ctxs: list[Any], sync_inputs: bool = True,
                              after: Callable[[int, list[Any]], None] | None = None) -> Callable[[int, float], float]:
                    def run(n: int, seconds: float) -> float:
                        # the raw loop's pattern: N contexts (own streams) in one thread, launch all, then wait all
                        cs, xx, oo = ctxs[:n], xs[:n], [{"y": y} for y in ys[:n]]
                        count = 0
                        t0 = time.perf_counter()
                        stop = t0 + seconds
                        while True:
                            hs_ = [c.infer_async(x, outputs=o, sync_inputs=sync_inputs)
                                   for c, x, o in zip(cs, xx, oo, strict=True)]
                            for h_ in hs_:
                                h_.wait()
                            count += n
                            if time.perf_counter() >= stop:
                                break
                        rate = count / (time.perf_counter() - t0)
                        if after is not None:
                            after(n, cs)
                        return rate
                    return run

                tk_async_run = async_run(tk_ctxs)
                init()
                tk_async_run(nmax, 0.05)
                for i in range(nmax):
                    expect_close(ys[i].cpu().numpy(), "trtkit async multi-stream torch")
                variants["trtkit_async_1thread_torch"] = {
                    "label": "trtkit: N Contexts, 1 thread, infer_async then wait", "run": tk_async_run}
                # like the raw loop, no ordering against PyTorch's stream: sync_inputs=False (the tensors were made
                # and synchronized before the run)
                tk_async_unordered_run = async_run(tk_ctxs, sync_inputs=False)
                tk_async_unordered_run(nmax, 0.05)
                variants["trtkit_async_1thread_torch_unordered"] = {
                    "label": "trtkit: N Contexts, infer_async(sync_inputs=False)", "run": tk_async_unordered_run}
                # the same with CUDA graphs (create_context(cuda_graph=True)): each call replays the captured
                # launch instead of running execute_async_v3's host code
                tk_gctxs = self.keep["tk_gctxs"] = [tk_engine.create_context(cuda_graph=True) for _ in range(nmax)]

                def graph_stats(n: int, cs: list[Any]) -> None:
                    s2.setdefault("graph_stats", {})[str(n)] = [dict(c.graph_stats) for c in cs]

                tk_graph_run = async_run(tk_gctxs, after=graph_stats)
                tk_graph_run(nmax, 0.05)
                for i in range(nmax):
                    ys[i].zero_()
                tk_graph_run(nmax, 0.01)
                for i in range(nmax):
                    expect_close(ys[i].cpu().numpy(), "trtkit async multi-stream torch, CUDA graphs")
                variants["trtkit_async_1thread_torch_graphs"] = {
                    "label": "trtkit: N Contexts (cuda_graph=True), 1 thread, async", "run": tk_graph_run}
                variants["trtkit_ctx_per_thread_torch"] = {
                    "label": "trtkit: Context/thread, torch in+out, stream.sync()", "fns": tk_torch_fn, "init": init}
                variants["trtkit_ctx_per_thread_numpy"] = {
                    "label": "trtkit: Context/thread, Context.infer(numpy)", "fns": tk_np_fn, "init": init}
            except Exception as exc:
                s2["skipped"]["trtkit_*"] = record_error("section2 setup trtkit", exc)

        # (iii) Polygraphy: one TrtRunner per thread
        try:
            from polygraphy.backend.trt import TrtRunner
            runners_np = self.keep.setdefault("runners_np", [])
            for i in range(nmax):
                r = TrtRunner(eng, name=f"peers-ms-numpy-{i}")
                r.activate()
                runners_np.append(r)
            xnps_p = [x_np.copy() for _ in range(nmax)]

            def pg_np_fn(i: int) -> Callable[[], Any]:
                r, x = runners_np[i], xnps_p[i]
                return lambda: r.infer({"x": x})

            for i in range(nmax):
                expect_close(pg_np_fn(i)()["y"], "polygraphy multi-stream numpy")
            variants["polygraphy_runner_per_thread_numpy"] = {
                "label": "Polygraphy: TrtRunner/thread, numpy", "fns": pg_np_fn}
            if self.torch is not None:
                torch = self.torch
                runners_t = self.keep.setdefault("runners_t", [])
                for i in range(nmax):
                    r = TrtRunner(eng, name=f"peers-ms-torch-{i}")
                    r.activate()
                    runners_t.append(r)
                xts = [torch.from_numpy(x_np).cuda() for _ in range(nmax)]
                torch.cuda.synchronize()

                def pg_t_fn(i: int) -> Callable[[], Any]:
                    r, x = runners_t[i], xts[i]
                    return lambda: r.infer({"x": x}, copy_outputs_to_host=False)

                for i in range(nmax):
                    expect_close(pg_t_fn(i)()["y"].cpu().numpy(), "polygraphy multi-stream torch")
                variants["polygraphy_runner_per_thread_torch"] = {
                    "label": "Polygraphy: TrtRunner/thread, torch CUDA in, CUDA out", "fns": pg_t_fn}
            else:
                s2["skipped"]["polygraphy_runner_per_thread_torch"] = "no torch (dry mode)"
        except Exception as exc:
            s2["skipped"]["polygraphy_*"] = record_error("section2 setup polygraphy", exc)

        for name in list(variants):
            if name in CONFIG["PEERS_SKIP"]:
                variants.pop(name)
                s2["skipped"][name] = "PEERS_SKIP"

        # warm every worker function once more in its own thread (per-thread CUDA / torch state)
        for name, v in variants.items():
            if "fns" in v:
                try:
                    self._threads(v, nmax, 0.05)
                except Exception as exc:
                    v["error"] = record_error(f"section2 warm-up {name}", exc)

        best: dict[str, dict[int, float]] = {k: {} for k in variants}
        rounds_all: dict[str, dict[int, list[float]]] = {k: {n: [] for n in workers} for k in variants}
        window = CONFIG["PEERS_MS_SECONDS"]
        done = 0
        for r in range(CONFIG["PEERS_MS_ROUNDS"]):
            live = [k for k, v in variants.items() if not v.get("error")]
            points = max(1, len(live) * len(workers))
            est = points * (window + 0.15)
            if r > 0 and elapsed() + est > CONFIG["PEERS_BUDGET_S"]:
                log(f"section 2: stopping after {done} rounds (time budget)")
                break
            if r == 0 and elapsed() + est > CONFIG["PEERS_BUDGET_S"]:  # late start: shorten the window to fit
                window = max(0.3, (CONFIG["PEERS_BUDGET_S"] - elapsed()) / points - 0.15)
                s2["window_s"] = round(window, 3)
                log(f"section 2: window shortened to {window:.2f} s (time budget)")
            for n in workers:
                for k in live:
                    v = variants[k]
                    if v.get("error"):
                        continue
                    try:
                        thr = v["run"](n, window) if "run" in v else self._threads(v, n, window)
                    except Exception as exc:
                        v["error"] = record_error(f"section2 {k} n={n}", exc)
                        continue
                    rounds_all[k][n].append(round(thr, 1))
                    best[k][n] = max(best[k].get(n, 0.0), thr)
            done += 1
            log(f"section 2: round {r + 1}/{CONFIG['PEERS_MS_ROUNDS']} done")
            s2["rounds_done"] = done
            self._fill_s2(s2, variants, best, rounds_all, workers)
            write_json()
        s2["rounds_done"] = done
        self._fill_s2(s2, variants, best, rounds_all, workers)
        install_execute(mod, "real")
        write_json()

    def _fill_s2(self, s2: dict[str, Any], variants: dict[str, Any], best: dict[str, dict[int, float]],
                 rounds_all: dict[str, dict[int, list[float]]], workers: list[int]) -> None:
        for k, v in variants.items():
            b = best[k]
            one = b.get(1) or b.get(min(b)) if b else None
            s2["variants"][k] = {
                "label": v["label"],
                "error": v.get("error"),
                "throughput_per_s": {str(n): round(b[n], 1) for n in workers if n in b},
                "scaling_vs_1": {str(n): round(b[n] / one, 3) for n in workers if n in b and one},
                "rounds_per_s": {str(n): rounds_all[k][n] for n in workers},
            }

    def _threads(self, v: dict[str, Any], n: int, seconds: float) -> float:
        """n threads, each calling its own worker function until the window closes; completed calls per second."""
        fns = [v["fns"](i) for i in range(n)]
        init = v.get("init")
        counts = [0] * n
        errors: list[BaseException] = []
        stop = threading.Event()
        barrier = threading.Barrier(n + 1)

        def loop(i: int) -> None:
            try:
                if init is not None:
                    init()
                fn = fns[i]
                fn()  # this thread's first call (per-thread CUDA state) before the window opens
                barrier.wait()
                c = 0
                is_set = stop.is_set
                while not is_set():
                    fn()
                    c += 1
                counts[i] = c
            except BaseException as exc:
                errors.append(exc)
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.abort()

        threads = [threading.Thread(target=loop, args=(i,), daemon=True, name=f"peers-worker-{i}") for i in range(n)]
        for t in threads:
            t.start()
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            stop.set()
            for t in threads:
                t.join(timeout=10)
            raise (errors[0] if errors else RuntimeError("worker threads did not start")) from None
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        t1 = time.perf_counter()
        if errors:
            raise errors[0]
        if any(t.is_alive() for t in threads):
            raise RuntimeError("a worker thread did not finish")
        return sum(counts) / (t1 - t0)


# ================================================================================================================
# Report
# ================================================================================================================


def _fmt(v: Any, spec: str = "8.2f") -> str:
    return format(v, spec) if isinstance(v, int | float) else f"{'-':>{int(spec.split('.')[0])}}"


def _drive(call: Callable[[], Any], threads: int, seconds: float) -> tuple[int, float, list[BaseException]]:
    """Call ``call`` in a loop from ``threads`` threads for ``seconds``: (calls made, elapsed s, errors)."""
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            while not stop.is_set():
                call()
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in workers:
        t.join(timeout=30)
    return sum(counts), time.perf_counter() - t0, errors


def print_section3() -> None:
    s3 = RESULTS.get("section3")
    if not s3:
        return
    print(f"\n3) trtkit.EnginePool: calls/s with {s3['threads']} client threads, {s3['contexts_per_device']} contexts "
          f"per device, a kernel filling the GPU for {s3['spin_us']} us per call ({s3['devices_on_host']} GPUs here)")
    for label, d in s3["points"].items():
        print(f"  {label:<10} " + (f"{d['calls_per_s']:>10} calls/s  per device {d['calls_per_device']}"
                                   if "calls_per_s" in d else f"FAILED: {d.get('error')}"))
    if "scaling" in s3:
        print(f"  scaling: {s3['scaling']}x")


def print_tables() -> None:
    env = RESULTS.get("environment", {})
    print(f"\ntrtkit vs peers on the TensorRT double ({'DRY RUN, no GPU' if DRY else env.get('gpu')}); "
          f"torch {env.get('version:torch')}, cupy {env.get('version:cupy-cuda13x') or env.get('version:cupy')}, "
          f"polygraphy {env.get('version:polygraphy')}, cuda-bindings {env.get('version:cuda-bindings')}")
    s1 = RESULTS.get("section1")
    if s1:
        print(f"\n1) per-call cost, us/call (best of {s1.get('rounds_done_host')}/{s1.get('rounds_done_e2e')} rounds "
              f"of {s1['calls_per_round']} calls); host = execute_async_v3 no-op, e2e = the double's CuPy op")
        print(f"{'path':<52} {'sync':>4} {'host us':>8} {'x(a)':>6} {'e2e us':>8} {'x(a)':>6}")
        for _name, d in s1["paths"].items():
            lab = d["label"][:52]
            if d.get("error") and d.get("host_us") is None and d.get("e2e_us") is None:
                print(f"{lab:<52} FAILED: {d['error'][:60]}")
                continue
            print(f"{lab:<52} {'yes' if d['syncs_each_call'] else 'no':>4} {_fmt(d['host_us'])} "
                  f"{_fmt(d['host_ratio_to_a'], '6.2f')} {_fmt(d['e2e_us'])} {_fmt(d['e2e_ratio_to_a'], '6.2f')}")
        if s1.get("p4_emulation_us_per_call") is not None:
            print(f"  note: Polygraphy rows include {s1['p4_emulation_us_per_call']:.2f} us/call of the double's own "
                  "IOutputAllocator emulation (P4; TensorRT does that part in C++)")
        for k, why in s1.get("skipped", {}).items():
            print(f"  skipped {k}: {str(why)[:100]}")
    s2 = RESULTS.get("section2")
    if s2 and s2.get("variants"):
        ws = s2["workers"]
        spin = s2.get("spin", {})
        print(f"\n2) multi-stream: inferences/s (scaling vs 1 worker), spin kernel {spin.get('spin_us_requested')} us "
              f"requested / {spin.get('spin_us_measured', '-')} us measured (at most "
              f"{spin.get('ideal_per_worker_per_s', '-')}/s per worker), window {s2['window_s']} s, best of "
              f"{s2.get('rounds_done')} rounds; each worker waits for its result before the next call")
        print(f"{'variant':<58}" + "".join(f"{'N=' + str(n):>17}" for n in ws))
        for _k, d in s2["variants"].items():
            cells = ""
            for n in ws:
                t = d["throughput_per_s"].get(str(n))
                sc = d["scaling_vs_1"].get(str(n))
                cells += f"{(f'{t:9.0f} ({sc:.2f})' if t is not None and sc is not None else '-'):>17}"
            print(f"{d['label'][:58]:<58}{cells}" + (f"  ERROR: {d['error'][:50]}" if d.get("error") else ""))
        for k, why in s2.get("skipped", {}).items():
            print(f"  skipped {k}: {str(why)[:100]}")
    print_section3()
    print("\npatches to the double (see OUT.json 'patches' for the evidence):")
    for p in RESULTS["patches"]:
        print(f"  {p['id']} [{p['kind']}] {p['target']}: {p['what'][:110]}")
    if RESULTS["errors"]:
        print(f"\n{len(RESULTS['errors'])} error(s); tracebacks in OUT.json 'errors'")
        for e in RESULTS["errors"]:
            print(f"  {e['where']}: {e['error'][:120]}")
    pc = RESULTS.get("polygraphy_cuda", {})
    print(f"\npolygraphy libcudart: {pc.get('polygraphy_loaded') or pc.get('polygraphy_load_error')}")
    print(f"elapsed {elapsed():.1f} s" + (f"; JSON: {OUT_PATH}" if OUT_PATH else ""))


def main() -> int:
    maybe_reexec()
    if CONFIG["PEERS_MAX_CONNECTIONS"]:  # read by the driver when the CUDA context is created: before any CUDA use
        os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = CONFIG["PEERS_MAX_CONNECTIONS"]
    if CONFIG["PEERS_SWITCH_INTERVAL"]:
        sys.setswitchinterval(float(CONFIG["PEERS_SWITCH_INTERVAL"]))
    timer = threading.Timer(CONFIG["PEERS_TIMEOUT_S"], _watchdog)
    timer.daemon = True
    timer.start()
    RESULTS["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS["reexeced"] = os.environ.get("PEERS_REEXECED") == "1"
    bench = Bench()
    rc = 0
    try:
        # B1 / B2 (benchmark settings, not fidelity) are recorded up front so a partial run still lists them
        record_patch("B1", "IExecutionContext.execute_async_v3 (section 1 'host' setting)",
                     "replaced by a no-op returning True (still calls IOutputAllocators, P4)",
                     "measure each path's own host work, as benchmarks/runtime_overhead.py does", "-",
                     kind="benchmark")
        record_patch("B2", "IExecutionContext.execute_async_v3 (section 2)",
                     f"replaced by one CuPy RawKernel launch (1 block x 32 threads) that spins "
                     f"{CONFIG['PEERS_SPIN_US']} us on %globaltimer then writes y = 2x + 1, on the given stream; no "
                     "Python-side checks (still calls IOutputAllocators, P4)",
                     "multi-stream scaling needs device work of a known length on each stream", "-", kind="benchmark")
        bench.setup()
        write_json()
        sections = CONFIG["PEERS_SECTIONS"].split(",")
        if "1" in sections:
            try:
                bench.section1()
            except Exception as exc:
                record_error("section 1", exc)
                rc = 1
        if "2" in sections:
            try:
                bench.section2()
            except Exception as exc:
                record_error("section 2", exc)
                rc = 1
        if "3" in sections and not DRY:
            try:
                bench.section3()
            except Exception as exc:
                record_error("section 3", exc)
                rc = 1
    except Exception as exc:
        record_error("setup", exc)
        rc = 2
    finally:
        timer.cancel()
        with contextlib.suppress(Exception):
            bench.cleanup()
        write_json()
        print_tables()
    if RESULTS["errors"]:
        rc = rc or 1
    sys.stdout.flush()
    sys.stderr.flush()
    # daemon worker threads and CUDA teardown order: leave without running finalizers that may touch CUDA late
    os._exit(rc)


if __name__ == "__main__":
    main()
