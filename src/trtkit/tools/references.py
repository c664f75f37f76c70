"""Saved inputs and reference outputs for accuracy checks, so references made on one machine check another.

``trtkit compare --save-inputs in.npz --save-outputs ref.npz`` on a CPU machine, then ``trtkit compare MODEL
ENGINE --load-inputs in.npz --load-outputs ref.npz`` on the GPU machine (ONNX Runtime need not run there).

A file is a plain ``numpy.savez`` archive: one array per tensor name, plus the entry :data:`META_KEY`, a
``uint8`` array holding UTF-8 JSON: the format, what the file holds (``inputs`` or ``outputs``), the SHA-256 of
the model it was made from (the model and its external weights), the arrays' names, dtypes and shapes, and for
outputs the SHA-256 of the inputs that produced them. Files are read with ``allow_pickle=False`` and written
atomically; references made from another model, or outputs made from other inputs, are refused with one line.
An ``.npz`` without the metadata entry (``numpy.savez("in.npz", x=x)``) loads as inputs unchecked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from trtkit.builder.model import OnnxModel
from trtkit.errors import InputError, ModelError
from trtkit.files import atomic_write, refuse_overwrite
from trtkit.text import safe
from trtkit.tools.metrics import Array

__all__ = ["FORMAT", "META_KEY", "References", "feeds_digest", "load_references", "save_references"]

META_KEY: Final = "__trtkit_meta__"
FORMAT: Final = "trtkit-references/1"

Kind = Literal["inputs", "outputs"]


@dataclass(frozen=True)
class References:
    """Arrays read by :func:`load_references`; :attr:`meta` is empty for a plain ``.npz`` without metadata."""

    path: Path
    arrays: dict[str, Array]
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def model_sha256(self) -> str | None:
        value = self.meta.get("model_sha256")
        return str(value) if value else None

    def describe(self) -> str:
        """Where the arrays came from, for a report."""
        made = self.meta.get("made_by")
        return f"saved {self.meta.get('kind', 'arrays')} {self.path}" + (f" ({made})" if made else "")


def feeds_digest(feeds: Mapping[str, Array]) -> str:
    """SHA-256 over the inputs' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _describe_arrays(arrays: Mapping[str, Array]) -> dict[str, dict[str, object]]:
    return {n: {"dtype": np.asarray(a).dtype.name, "shape": list(np.shape(a))} for n, a in arrays.items()}


def save_references(path: str | os.PathLike[str], arrays: Mapping[str, Array], model: OnnxModel, *, kind: Kind,
                    inputs: Mapping[str, Array] | None = None, made_by: str | None = None,
                    protect: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``arrays`` (``kind``: the model's ``inputs`` or its reference ``outputs``) to ``path`` as ``.npz``.

    ``inputs``: the feeds that produced ``outputs`` (their digest is recorded). ``protect``: files this run reads
    (the model's files are always protected); writing over one is refused.

    Raises:
        ConfigError: ``path`` is one of the files read.
        InputError: a tensor name is the metadata key, or the file cannot be written.
    """
    p = Path(path)
    refuse_overwrite(p, [*model.files(), *protect], what=f"--save-{kind}")
    if META_KEY in arrays:
        raise InputError(f"a tensor is named {META_KEY!r}, the name kept for the metadata; rename it")
    meta: dict[str, object] = {
        "format": FORMAT, "kind": kind, "model_sha256": model.sha256, "model_name": model.name,
        "arrays": _describe_arrays(arrays),
    }
    if inputs is not None:
        meta["inputs_sha256"] = feeds_digest(inputs)
        meta["inputs"] = _describe_arrays(inputs)
    if made_by:
        meta["made_by"] = made_by
    buf = io.BytesIO()
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    entries: dict[str, Any] = {str(n): np.asarray(a) for n, a in arrays.items()}
    entries[META_KEY] = blob
    np.savez(buf, **entries)
    atomic_write(p, buf.getbuffer(), error=InputError)
    return p


def load_references(path: str | os.PathLike[str], *, kind: Kind, model: OnnxModel | None = None,
                    inputs: Mapping[str, Array] | None = None) -> References:
    """Read a file written by :func:`save_references` (or a plain ``.npz`` of inputs).

    With ``model``, a file made from another model is refused; with ``inputs``, outputs made from other inputs.

    Raises:
        InputError: the file is missing, unreadable, holds pickled objects, or holds the other ``kind``.
        ModelError: the file was made from another model than ``model``.
    """
    p = Path(path)
    flag = f"--load-{kind}"
    if not p.is_file():
        raise InputError(f"{flag}: file {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{flag}: cannot read {str(p)!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                         "expected an .npz written by numpy.savez (no pickled objects), one array per tensor "
                         "name") from exc
    blob = arrays.pop(META_KEY, None)
    meta: dict[str, object] = {}
    if blob is not None:
        try:
            loaded = json.loads(blob.astype(np.uint8).tobytes().decode())
            if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
                raise ValueError("not a trtkit reference file")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{flag}: {str(p)!r} has a {META_KEY!r} entry that trtkit cannot read ({exc})") from exc
        meta = loaded
    elif kind == "outputs":
        raise InputError(f"{flag}: {str(p)!r} carries no trtkit metadata, so nothing says which model and inputs "
                         "made it; save reference outputs with trtkit compare --save-outputs")
    refs = References(p, arrays, meta)
    if meta and meta.get("kind") != kind:
        raise InputError(f"{flag}: {str(p)!r} holds saved {meta.get('kind')}, not {kind}; pass it to "
                         f"--load-{meta.get('kind')}")
    if model is not None and refs.model_sha256 is not None and refs.model_sha256 != model.sha256:
        raise ModelError(f"{flag}: {str(p)!r} was made from another model: it records model sha256 "
                         f"{refs.model_sha256} ({safe(str(meta.get('model_name', '?')))}), and "
                         f"{safe(str(model.path or model.name))} has sha256 {model.sha256}; make the references "
                         "again from this model")
    if inputs is not None and meta.get("inputs_sha256") not in (None, feeds_digest(inputs)):
        raise InputError(f"{flag}: {str(p)!r} holds outputs of other inputs (inputs sha256 "
                         f"{meta.get('inputs_sha256')}, these inputs {feeds_digest(inputs)}); pass the inputs saved "
                         "with them (--load-inputs FILE from --save-inputs in the same run)")
    return refs
