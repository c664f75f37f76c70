"""The lean PyTorch path: CUDA tensors in, caller's output tensors out, when nothing changed since the last call.

A :class:`~trtkit.runtime.context.Context` makes a :class:`DevicePlan` after a call whose inputs and output
buffers were all PyTorch CUDA tensors and passed every check. The next call with tensors at the same addresses,
of the same shapes and dtypes, contiguous, on the same stream, runs the plan: no ``set_input_shape``,
``set_tensor_address`` or ``infer_shapes``, no validation beyond those comparisons; the ordering against the
tensors' producer stream and their lifetime are kept as on the full path. Anything else goes through the full
path. Like the NumPy plan (:mod:`trtkit.runtime.host_path`), it is tied to the context's binding generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from trtkit.runtime.io import ADAPTERS, ArrayAdapter, TorchTensor, adapter_of, torch_current_stream

if TYPE_CHECKING:
    from trtkit.runtime.tensors import ArrayInfo

__all__ = ["DevicePlan", "check_plan", "make_plan"]


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The tensors of the last validated PyTorch call: ``(name, shape, dtype, data_ptr)`` each."""

    generation: int
    tensor_type: type
    device: int
    single: str | None
    inputs: tuple[tuple[str, object, object, int], ...]
    outputs: tuple[tuple[str, object, object, int], ...]
    ordered: bool
    """The call needed no ordering against the tensors' producer (the caller's stream, or sync_inputs=False)."""
    on_caller_stream: bool
    """The facade's call: it runs on PyTorch's current stream, which must still be the context's stream."""


def _torch(obj: object) -> bool:
    return (ADAPTERS.get(type(obj)) or adapter_of(obj)).family == "torch"


def make_plan(generation: int, infos: Mapping[str, ArrayInfo], outputs: Mapping[str, object] | None,
              out_names: tuple[str, ...], ordered: bool, on_caller_stream: bool, device: int) -> DevicePlan | None:
    """The plan that repeats a device call that just passed the full path, or None when it is not one whose
    inputs and (given) outputs are all PyTorch tensors at 256-byte aligned addresses."""
    if not outputs or set(outputs) != set(out_names):
        return None
    entries: list[list[tuple[str, object, object, int]]] = [[], []]
    for is_out, name, obj in [*((False, n, i.obj) for n, i in infos.items()),
                              *((True, n, outputs[n]) for n in out_names)]:
        if not _torch(obj):
            return None
        t = cast(TorchTensor, obj)
        ptr = int(t.data_ptr())
        if ptr & 255 or t.get_device() != device:
            return None
        entries[is_out].append((name, t.shape, t.dtype, ptr))
    first = next(iter(infos.values())).obj
    return DevicePlan(generation, type(first), device, next(iter(infos)) if len(infos) == 1 else None,
                      tuple(entries[0]), tuple(entries[1]), ordered, on_caller_stream)


def check_plan(plan: DevicePlan, given: object, outputs: Mapping[str, object] | None, ordered: bool,
               family: ArrayAdapter | None, stream: int) -> tuple[list[object], int | None] | None:
    """Whether this call repeats ``plan`` on ``stream``: the tensors to keep alive until the stream used them
    and the producer stream to wait for (None: none), or None to take the full path."""
    tensor = plan.tensor_type
    if type(given) is dict:
        named: Mapping[str, object] = given
    elif plan.single is not None and type(given) is tensor:
        named = {plan.single: given}
    else:
        return None
    if outputs is None or len(named) != len(plan.inputs) or len(outputs) != len(plan.outputs):
        return None
    if plan.on_caller_stream != (family is not None and family.wraps):
        return None
    producer: int | None = None
    if plan.on_caller_stream:
        if torch_current_stream(plan.device) != stream:
            return None
        ordered = True
    if ordered != plan.ordered:
        return None
    refs: list[object] = []
    for source, expected in ((named, plan.inputs), (outputs, plan.outputs)):
        for name, shape, dtype, ptr in expected:
            obj = source.get(name)
            if type(obj) is not tensor:
                return None
            t = cast(TorchTensor, obj)
            if t.data_ptr() != ptr or t.shape != shape or t.dtype is not dtype or not t.is_contiguous():
                return None
            refs.append(t)
    if not ordered:
        producer = torch_current_stream(plan.device)
        if producer == stream:
            producer = None
    return refs, producer
