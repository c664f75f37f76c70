"""trtkit's callback objects, driven through each real binding's trampolines, and trtkit's factories.

One subprocess per binding (``_probe.py behaviour``) builds ``Backend.from_module(flavor, real_module)`` and:

* **gpu_allocator** - ``trtkit.runtime.memory.make_gpu_allocator(trt, pool, fallback, stream_index=
  be.features.gpu_allocator_stream_index)`` over a fake pool (``trtkit.runtime.memory.to_stream`` patched to return
  ``("stream", handle)``: no CUDA). TensorRT calls the C++ virtual ``allocateAsync(size, alignment, flags,
  stream)``; the probe calls that virtual through the object's vtable (found by the trampoline's symbol in the
  unstripped binding), and also through the Python-visible base method
  ``trt.IGpuAsyncAllocator.allocate_async(alloc, 1000, 256, 0, 0x1234)``. Both must reach the pool as 1000
  bytes on stream 0x1234, and the free as ``deallocate_async`` on stream 0x4321. The raw tuple a bare override
  receives is shown in the report; its stream position must equal the backend's ``gpu_allocator_stream_index``.
* **output_allocator** - ``trt.IOutputAllocator`` exposes no Python methods (the base cannot be called from
  Python), so ``reallocateOutputAsync("y", 0, 4096, 256, 0x1234)`` and ``notifyShape("y", Dims64{2, 3})`` are
  called through the vtable: the pool must see 4096 bytes on stream 0x1234, the returned address must be the
  buffer's, and the allocator must record shape (2, 3).
* **logger** - ``trt.ILogger.log(be.logger, Severity.ERROR, "boom")`` must land in a ``be.capture()`` block
  at ERROR (VERBOSE at DEBUG).
* **progress** - ``trt.IProgressMonitor.phase_start/step_complete/phase_finish`` on ``make_monitor``'s object:
  ``step_complete`` returns True, then False once the callback returns False.
* **create_runtime / create_builder** - over the stub core, TensorRT's factories raise ``TypeError: factory
  function returned nullptr``; ``Backend.create_runtime()`` must raise ExecutionError and
  ``Backend.create_builder()`` BuildError, naming what failed. TensorRT-RTX creates both without a GPU, so
  there is no failure to surface there and the check skips.
"""

from __future__ import annotations

from typing import Any

import _conformance as C
import pytest

pytestmark = pytest.mark.conformance

parametrize_targets = pytest.mark.parametrize("target", C.TARGETS, ids=C.TARGET_IDS)

STREAM, FREE_STREAM, SIZE = 0x1234, 0x4321, 1000


def _part(target: C.Target, name: str) -> dict[str, Any]:
    part: dict[str, Any] = C.behaviour(target)[name]
    if not part["ok"]:
        pytest.fail(f"{name} on {target.id} raised {part['error']}\n{part.get('traceback', '')}")
    return part


def _values(args: list[dict[str, Any]]) -> list[Any]:
    return [a["value"] for a in args]


def _order(args: list[dict[str, Any]]) -> str:
    vals = _values(args)
    names = {SIZE: "size", 256: "alignment", STREAM: "stream", 0: "flags"}
    types = {a["type"] for a in args}
    return f"({', '.join(names.get(v, repr(v)) for v in vals)})  raw={tuple(vals)} types={sorted(types)}"


@parametrize_targets
def test_gpu_allocator(target: C.Target) -> None:
    raw = _part(target, "raw_allocator_args")
    received = raw["via_cxx"]["allocate_async"]
    C.EXTRA.setdefault("allocator_order", {})[target.id] = _order(received)
    part = _part(target, "gpu_allocator")
    bad = []
    actual_index = _values(received).index(STREAM)
    if actual_index != part["stream_index"]:
        bad.append(f"features.gpu_allocator_stream_index is {part['stream_index']} but TensorRT passes the stream "
                   f"at index {actual_index}: {_order(received)}")
    if _values(raw["via_python_base"]["allocate_async"]) != _values(received):
        bad.append(f"the Python base method passes {_values(raw['via_python_base']['allocate_async'])}, the C++ "
                   f"virtual {_values(received)}")
    for route in ("cxx", "python_base"):
        r = part[route]
        if r["allocations"] != [[SIZE, ["stream", STREAM]]]:
            bad.append(f"{route}: allocate_async reached the pool as {r['allocations']}, expected "
                       f"[[{SIZE}, ['stream', {STREAM}]]]")
        if len(r["frees"]) != 1 or r["frees"][0][1] != ["stream", FREE_STREAM]:
            bad.append(f"{route}: deallocate_async freed {r['frees']}, expected one free on stream {FREE_STREAM}")
        if r["free_returned"]["value"] is not True:
            bad.append(f"{route}: deallocate_async returned {r['free_returned']}")
    cxx = part["cxx"]
    if cxx["allocations"] and cxx["returned"]["value"] != 0x100000:
        bad.append(f"the address TensorRT got back is {cxx['returned']}, not the pool buffer's 0x100000")
    if cxx["frees"] and cxx["frees"][0][0] != 0x100000:
        bad.append(f"deallocate_async freed buffer {cxx['frees'][0][0]:#x}, not 0x100000")
    C.record(target, "gpu_allocator", 8, len(bad))
    assert not bad, f"trtkit's IGpuAsyncAllocator on {target.id}:\n  " + "\n  ".join(bad)


@parametrize_targets
def test_output_allocator(target: C.Target) -> None:
    part = _part(target, "output_allocator")
    bad = []
    if part["allocations"] != [[4096, ["stream", STREAM]]]:
        bad.append(f"reallocate_output_async reached the pool as {part['allocations']}, expected "
                   f"[[4096, ['stream', {STREAM}]]]")
    if part["returned"]["value"] != part["buffer_handles"].get("y"):
        bad.append(f"TensorRT got back {part['returned']}, the buffer is at {part['buffer_handles']}")
    if part["shapes"] != {"y": [2, 3]}:
        bad.append(f"notify_shape recorded {part['shapes']}, expected {{'y': [2, 3]}}")
    got = part["received"]
    realloc = got.get("reallocate_output_async", [[]])[0]
    if _values(realloc) != ["y", 0, 4096, 256, STREAM]:
        bad.append(f"reallocate_output_async received {_values(realloc)}, expected ['y', 0, 4096, 256, {STREAM}]")
    C.record(target, "output_allocator", 4, len(bad),
             "Python base has no methods: " + str(sorted(k for k, v in part["python_base_methods"].items() if not v)))
    assert not bad, f"trtkit's IOutputAllocator on {target.id}:\n  " + "\n  ".join(bad)


@parametrize_targets
def test_logger(target: C.Target) -> None:
    part = _part(target, "logger")
    bad = []
    if not part["is_ilogger"]:
        bad.append("Backend.logger is not a trt.ILogger")
    if ["ERROR", "boom"] not in part["records"]:
        bad.append(f"ILogger.log(ERROR, 'boom') was captured as {part['records']}")
    if ["DEBUG", "chatter"] not in part["records"]:
        bad.append(f"ILogger.log(VERBOSE, 'chatter') was captured as {part['records']}")
    C.record(target, "logger", 3, len(bad))
    assert not bad, f"trtkit's ILogger on {target.id}:\n  " + "\n  ".join(bad)


@parametrize_targets
def test_progress(target: C.Target) -> None:
    part = _part(target, "progress")
    bad = []
    expected = [["start", "p", None, 0, 3], ["step", "p", None, 1, 0], ["step", "p", None, 2, 0]]
    if part["events"][:3] != expected:
        bad.append(f"the callback saw {part['events']}, expected {expected} first")
    if part["step_complete_returned"] != {"type": "bool", "value": True}:
        bad.append(f"step_complete returned {part['step_complete_returned']} while the callback returned True")
    if part["step_complete_after_false_returned"] != {"type": "bool", "value": False}:
        bad.append(f"step_complete returned {part['step_complete_after_false_returned']} after the callback "
                   "returned False (TensorRT would not cancel)")
    if part["reason"] is None:
        bad.append("the monitor's state has no cancel reason")
    C.record(target, "progress", 4, len(bad))
    assert not bad, f"trtkit's IProgressMonitor on {target.id}:\n  " + "\n  ".join(bad)


def _factory(target: C.Target, what: str, error: str) -> None:
    b = C.behaviour(target)
    raw = b[f"raw_{what}"]
    assert raw["ok"], raw
    cls = what.capitalize()
    if raw["raised"] is None:
        pytest.skip(f"{target.id}: trt.{cls}(logger) succeeds here without a GPU ({raw['created']}), so there is "
                    "no factory failure to surface")
    assert raw["raised"] == "TypeError" and "nullptr" in raw["message"], raw
    part = b[f"create_{what}"]
    bad = []
    if not part["ok"]:
        bad.append(f"Backend.create_{what}() is not usable: {part['error']}")
    elif part["raised"] is None:
        bad.append(f"Backend.create_{what}() returned {part['created']} although trt.{cls}() raised")
    else:
        if error not in part["raised_mro"]:
            bad.append(f"Backend.create_{what}() raised {part['raised']} ({' < '.join(part['raised_mro'])}), "
                       f"expected trtkit.errors.{error}")
        if cls not in part["message"] or "nullptr" not in part["message"]:
            bad.append(f"the message does not say what failed (the {cls}, TensorRT's reason): {part['message']!r}")
    C.record(target, f"create_{what}", 2, len(bad))
    assert not bad, f"trt.{cls}(logger) raised {raw['raised']}: {raw['message']}; on {target.id}:\n  " + \
        "\n  ".join(bad)


@parametrize_targets
def test_create_runtime(target: C.Target) -> None:
    _factory(target, "runtime", "ExecutionError")


@parametrize_targets
def test_create_builder(target: C.Target) -> None:
    _factory(target, "builder", "BuildError")
