"""Reading ONNX models: from a path, bytes or ``onnx.ModelProto``, with external weight files.

:func:`load_onnx` is the one place a model argument becomes an :class:`OnnxModel`. It also prepares a model for
TensorRT's parser: dim names that TensorRT would take for one shared symbol (several dims all named ``"?"``, for
instance) are made distinct. :func:`iter_graphs` walks a graph with its subgraphs; :func:`save_onnx` writes a
model, with external weights where protobuf's 2 GiB limit requires them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, TypeAlias

from trtkit.deps import require
from trtkit.dtypes import from_onnx
from trtkit.errors import ModelError, UnsupportedFeatureError
from trtkit.files import file_mode, move_into_place, os_error_line, refuse_overwrite
from trtkit.profiles import InputInfo

if TYPE_CHECKING:
    import onnx

__all__ = [
    "MAX_MODEL_FILE",
    "PROTOBUF_LIMIT",
    "ModelSource",
    "OnnxModel",
    "iter_graphs",
    "load_onnx",
    "needs_external_data",
    "save_onnx",
]

ModelSource: TypeAlias = "str | os.PathLike[str] | bytes | onnx.ModelProto"

# Placeholders exporters write for "unknown". TensorRT treats dims with equal names as one symbol, so two
# unrelated "?" dims would be forced equal. Any other name (``batch``, ``p2o.DynamicDimension.0``) is a
# deliberate symbol and is kept.
_PLACEHOLDERS = frozenset({"?", "unk", "unknown", "none", "null", "n/a", "-1", "dynamic", "*", "-"})
PROTOBUF_LIMIT: Final = 2**31 - 1
"""Protobuf's limit on one serialized message (2 GiB): larger models keep their weights in external files."""
MAX_MODEL_FILE: Final = PROTOBUF_LIMIT
"""The largest ONNX file read: protobuf cannot decode more (weights beyond it live in external data files)."""
_SAVE_HEADROOM: Final = 1 << 20  # the saved file adds a little to ByteSize()


def _onnx() -> ModuleType:
    return require("onnx", purpose="reading ONNX models", install="pip install onnx")


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph nested in its nodes' attributes (If, Loop, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from iter_graphs(attr.g)
            for g in attr.graphs:
                yield from iter_graphs(g)


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    for g in iter_graphs(graph):
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def needs_external_data(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` is too big to save with its weights inline (protobuf's 2 GiB limit)."""
    return int(proto.ByteSize()) > PROTOBUF_LIMIT - _SAVE_HEADROOM


def save_onnx(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``proto`` to ``path``: weights inline below 2 GiB, else in ``<name>.data`` beside it.

    The files are written in a staging folder beside ``path`` and then moved in (the weight file first), so a
    fault while writing leaves the old files as they were. New files get the mode the umask gives.

    Raises:
        ModelError: one line naming the path and the fault (disk full, permission denied, a directory, ...).
    """
    p = Path(path)
    if p.is_dir():
        raise ModelError(os_error_line(IsADirectoryError(errno.EISDIR, "Is a directory"), p))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp"))
    except OSError as exc:
        raise ModelError(os_error_line(exc, p)) from exc
    try:
        data_name = f"{p.name}.data"
        moves = [(staging / p.name, p)]
        try:
            _onnx().save_model(proto, str(staging / p.name), save_as_external_data=needs_external_data(proto),
                               location=data_name)
            if (staging / data_name).exists():  # the weight file goes first: the model names it
                moves.insert(0, (staging / data_name, p.with_name(data_name)))
            for staged, _ in moves:
                os.chmod(staged, file_mode())  # onnx writes weight files 0600 whatever the umask
        except OSError as exc:
            raise ModelError(os_error_line(exc, p)) from exc
        move_into_place(moves, staging, error=ModelError)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return p


@dataclass
class OnnxModel:
    """A loaded ONNX model, ready for TensorRT's parser.

    Attributes:
        proto: the model (external weights are not loaded into it; they stay in their files).
        path: the file it came from, or None for bytes / ModelProto input.
        sha256: hash of the model and all its external weight files; part of the engine cache key.
        renamed_dims: dim names changed so TensorRT does not equate unrelated dims, as
            ``{(tensor, axis): (old, new)}``.
    """

    proto: onnx.ModelProto
    path: Path | None
    sha256: str
    renamed_dims: dict[tuple[str, int], tuple[str, str]]

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.stem
        return self.proto.graph.name or "model"

    @property
    def base_dir(self) -> Path | None:
        """Where external weight files are resolved from."""
        return self.path.parent if self.path is not None else None

    def serialized(self) -> bytes:
        """The model as bytes for ``parser.parse``; external weights stay referenced by location."""
        if self.proto.ByteSize() > PROTOBUF_LIMIT:
            raise ModelError(
                "the model is larger than 2 GiB with its weights inline; save it with external data "
                "(onnx.save(model, path, save_as_external_data=True)) and pass the path"
            )
        data: bytes = self.proto.SerializeToString()
        return data

    def inputs(self) -> list[InputInfo]:
        """The graph inputs that are not initializers, as ONNX declares them (``-1`` = dynamic)."""
        inits = {t.name for t in self.proto.graph.initializer}
        return [_value_info(v) for v in self.proto.graph.input if v.name not in inits]

    def outputs(self) -> list[InputInfo]:
        return [_value_info(v) for v in self.proto.graph.output]

    def opsets(self) -> dict[str, int]:
        return {o.domain or "ai.onnx": o.version for o in self.proto.opset_import}

    def files(self) -> list[Path]:
        """The model file and its external weight files: what a build reads (empty for bytes or a proto)."""
        if self.path is None:
            return []
        base = self.path.parent
        return [self.path, *(base / location for location in _external_files(self.proto))]

    def refuse_overwrite(self, output: str | os.PathLike[str], *, what: str) -> None:
        """Raise :class:`~trtkit.errors.ConfigError` when writing ``output`` would overwrite this model's file
        or one of its external weight files."""
        refuse_overwrite(output, self.files(), what=what)

    def refuse_onnx_overwrite(self, output: str | os.PathLike[str], *, what: str) -> None:
        """:meth:`refuse_overwrite` for an ONNX output written by :func:`save_onnx`: ``output`` and the
        ``<name>.data`` weight file it may write beside it."""
        out = Path(output)
        for path in (out, out.with_name(f"{out.name}.data")):
            self.refuse_overwrite(path, what=what)

    def proto_with_weights(self) -> onnx.ModelProto:
        """A copy of :attr:`proto` with its external weights loaded into it."""
        mod = _onnx()
        proto: onnx.ModelProto = mod.ModelProto()
        proto.CopyFrom(self.proto)
        if self.base_dir is not None and next(_external_files(proto), None) is not None:
            mod.external_data_helper.load_external_data_for_model(proto, str(self.base_dir))
        return proto


def _value_info(v: onnx.ValueInfoProto) -> InputInfo:
    tt = v.type.tensor_type
    dims: list[int] = []
    names: list[str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
            names.append(None)
        else:
            dims.append(-1)
            names.append(d.dim_param or None)
    try:
        dtype = from_onnx(tt.elem_type).name
    except UnsupportedFeatureError:
        dtype = f"onnx-type-{tt.elem_type}"
    return InputInfo(v.name, tuple(dims), dtype, tuple(names))


def _external_files(proto: onnx.ModelProto) -> Iterator[str]:
    seen: set[str] = set()
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == _onnx().TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in seen:
                    seen.add(entry.value)
                    yield entry.value


def _external_path(base: Path, location: str) -> Path:
    """``base / location``, refused unless it stays inside ``base`` (as ONNX's checker requires)."""
    where = f"external data location {location!r}"
    if not location or "\0" in location:
        raise ModelError(f"the model has an invalid {where}")
    if os.path.isabs(location) or Path(location).drive:
        raise ModelError(f"{where} is an absolute path; ONNX requires external data paths relative to the "
                         f"model's directory {str(base)!r}, so this model could read any file. Re-save it with "
                         "relative locations")
    # checked on the written path, not on resolved links: weights linked from elsewhere (a hub cache) are fine
    normal = os.path.normpath(location)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise ModelError(f"{where} escapes the model's directory {str(base)!r}; ONNX requires external data "
                         "to stay inside the model's directory. Move the weight files beside the model and "
                         "re-save it")
    return base / location


def _read_model_file(path: Path) -> bytes:
    """The bytes of ``path``: a regular file of at most :data:`MAX_MODEL_FILE` bytes, checked before reading."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read ONNX file {str(path)!r}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"{str(path)!r} is a directory; pass the .onnx file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{str(path)!r} is not a regular file (a device, pipe or socket); pass an .onnx file")
    if st.st_size > MAX_MODEL_FILE:
        raise ModelError(f"{str(path)!r} is {st.st_size} bytes, over the {MAX_MODEL_FILE} bytes (2 GiB) an ONNX "
                         "file can hold with its weights inline; save larger models with external data "
                         "(onnx.save(model, path, save_as_external_data=True))")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_MODEL_FILE + 1)
    except OSError as exc:
        raise ModelError(f"cannot read ONNX file {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_MODEL_FILE:
        raise ModelError(f"{str(path)!r} grew past {MAX_MODEL_FILE} bytes while being read")
    return raw


def _hash_model(raw: bytes, proto: onnx.ModelProto, base: Path | None) -> str:
    h = hashlib.sha256()
    h.update(raw)
    for location in sorted(_external_files(proto)):
        if base is None:
            raise ModelError(
                f"the model references external weight file {location!r} but was not given as a path; "
                "pass the .onnx path so the weight files next to it can be found"
            )
        file = _external_path(base, location)
        if not file.exists():
            raise ModelError(
                f"external weight file {str(file)!r} referenced by the model does not exist; keep the "
                "weight files next to the .onnx file they were saved with"
            )
        if not file.is_file():
            raise ModelError(f"external weight file {str(file)!r} referenced by the model is not a regular file")
        h.update(location.encode())
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def _make_dims_distinct(proto: onnx.ModelProto) -> dict[tuple[str, int], tuple[str, str]]:
    """Rename placeholder dim names so unrelated dims are not equated by TensorRT."""
    renamed: dict[tuple[str, int], tuple[str, str]] = {}
    taken = {
        d.dim_param
        for v in [*proto.graph.input, *proto.graph.output]
        for d in v.type.tensor_type.shape.dim
        if d.dim_param
    }
    for v in [*proto.graph.input, *proto.graph.output]:
        for axis, d in enumerate(v.type.tensor_type.shape.dim):
            name = d.dim_param
            if not name or d.HasField("dim_value"):
                continue
            if name.strip() and name.strip().lower() not in _PLACEHOLDERS:
                continue
            base = re.sub(r"\W", "_", f"{v.name}_dim{axis}")
            new, k = base, 1
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            taken.add(new)
            d.dim_param = new
            renamed[(v.name, axis)] = (name, new)
    return renamed


def _check_opsets(proto: onnx.ModelProto) -> None:
    """Refuse a default-domain opset no ONNX release defines (TensorRT's parser would read it as another)."""
    onnx = _onnx()
    newest = int(onnx.defs.onnx_opset_version())
    for entry in proto.opset_import:
        if entry.domain not in ("", "ai.onnx"):
            continue
        if not 1 <= entry.version <= newest:
            raise ModelError(
                f"the model imports ONNX opset {entry.version}, which no ONNX release defines (opsets 1 to "
                f"{newest} exist, onnx {onnx.__version__}); re-export it with an opset in that range "
                "(e.g. torch.onnx.export(..., opset_version=17))"
            )


def load_onnx(source: ModelSource | OnnxModel) -> OnnxModel:
    """Load an ONNX model from a path, bytes or ``onnx.ModelProto`` (the proto is copied, not changed).

    An :class:`OnnxModel` is returned as it is: every function taking a model argument calls this.

    Raises:
        ModelError: the file is missing, is not ONNX, has an empty graph, or its external weight files are
            missing.
    """
    if isinstance(source, OnnxModel):
        return source
    onnx = _onnx()
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    path: Path | None = None
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        try:
            raw = proto.SerializeToString()
        except ValueError as exc:
            raise ModelError(
                f"the ModelProto cannot be serialized ({exc}); save it with external data and pass the path"
            ) from exc
    elif isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(raw)
        except DecodeError as exc:
            raise ModelError(f"the bytes given are not an ONNX model ({exc})") from exc
    elif isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            raise ModelError(f"ONNX file {str(path)!r} does not exist")
        raw = _read_model_file(path)
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(raw)
        except DecodeError as exc:
            raise ModelError(
                f"{str(path)!r} is not an ONNX model (protobuf could not decode it: {exc})"
            ) from exc
    else:
        raise ModelError(
            f"cannot load an ONNX model from {type(source).__name__}; pass a path, bytes or onnx.ModelProto"
        )

    if not proto.HasField("graph") or (len(proto.graph.node) == 0 and len(proto.graph.output) == 0):
        where = f" {str(path)!r}" if path else ""
        raise ModelError(
            f"the ONNX model{where} has an empty graph (no nodes and no outputs); is this the right file?"
        )
    if len(proto.graph.output) == 0:
        raise ModelError("the ONNX model declares no graph outputs; TensorRT needs at least one")
    _check_opsets(proto)
    digest = _hash_model(raw, proto, path.parent if path else None)
    renamed = _make_dims_distinct(proto)
    return OnnxModel(proto=proto, path=path, sha256=digest, renamed_dims=renamed)
