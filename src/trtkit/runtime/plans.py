"""Is this file a TensorRT plan? A cheap look at its first bytes, before anything is deserialized.

TensorRT plans start with the tag ``ftrt``, TensorRT-RTX plans with ``vtrt`` (seen on 1.7). :func:`not_a_plan`
names what a file is instead when it is recognisably something else (text, JSON, an ONNX model, an archive, an
Ultralytics engine with a metadata prefix, a file too small to hold a plan); :func:`check_plan` raises it as one
:class:`~trtkit.errors.EngineFileError` line.
"""

from __future__ import annotations

import json

from trtkit.errors import EngineFileError

__all__ = ["MIN_PLAN_BYTES", "PLAN_TAGS", "check_plan", "not_a_plan", "plan_tag"]

PLAN_TAGS = {b"ftrt": "TensorRT", b"vtrt": "TensorRT-RTX"}
"""The first four bytes of a plan, by the TensorRT that wrote it."""
MIN_PLAN_BYTES = 64
"""No plan is smaller (a TensorRT-RTX plan header alone is 64 bytes; real plans are kilobytes)."""

_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt checkpoint or a .zip?)"),
    (b"\x7fELF", "a shared library or executable (ELF)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF", "an HDF5 file (Keras?)"),
    (b"\x80\x02", "a Python pickle"), (b"\x80\x03", "a Python pickle"), (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)


def plan_tag(data: bytes) -> str | None:
    """The TensorRT flavour whose plan tag ``data`` starts with, or None."""
    return PLAN_TAGS.get(bytes(data[:4]))


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the head
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


def _json_kind(data: bytes) -> str | None:
    stripped = data.lstrip()
    if stripped[:1] not in (b"{", b"["):
        return None
    try:
        value = json.loads(data.decode("utf-8")) if len(data) <= 1 << 24 else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "a JSON-like text file" if _looks_like_text(data[:4096]) else None
    if isinstance(value, dict) and {"plan_sha256", "plan_size"} & value.keys():
        return "a trtkit manifest (JSON); give the engine file it describes, the same name without .json"
    return "a JSON file"


def _onnx_like(data: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, a small varint): 0x08 then 3..15; no plan starts so.
    return len(data) > 2 and data[0] == 0x08 and 3 <= data[1] <= 15 and data[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42)


def _ultralytics_offset(data: bytes) -> int | None:
    if len(data) < 12:
        return None
    n = int.from_bytes(data[:4], "little")
    start = 4 + n
    if 0 < n < len(data) and data[4:5] == b"{" and data[start : start + 4] in PLAN_TAGS:
        return start
    return None


def not_a_plan(data: bytes) -> str | None:
    """What ``data`` is, when it is recognisably not a TensorRT plan; None when it may be one."""
    if plan_tag(data):
        return None
    if len(data) < MIN_PLAN_BYTES:
        return f"only {len(data)} bytes, too small to be a TensorRT plan"
    offset = _ultralytics_offset(data)
    if offset is not None:
        return (f"an Ultralytics engine: {offset} bytes of JSON metadata before the TensorRT plan. Load the plan "
                f"that starts at byte {offset} (data[{offset}:]), or export a plain engine")
    kind = _json_kind(data)
    if kind:
        return kind
    if _onnx_like(data):
        return "an ONNX model; build an engine from it first: `trtkit build MODEL.onnx` or Engine.from_onnx(...)"
    for sig, what in _SIGNATURES:
        if data.startswith(sig):
            return what
    if _looks_like_text(data[:4096]):
        return "a text file"
    return None


def check_plan(data: bytes, source: str) -> None:
    """Raise one EngineFileError line when ``data`` (read from ``source``) is recognisably not a TensorRT plan."""
    what = not_a_plan(data)
    if what is not None:
        raise EngineFileError(f"{source} is not a TensorRT engine plan: it is {what}")
