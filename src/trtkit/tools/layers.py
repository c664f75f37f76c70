"""An engine's layers after fusion, read from TensorRT's engine inspector.

:func:`parse_engine_information` turns the JSON of ``IEngineInspector.get_engine_information(JSON)`` into
typed records (pure, no TensorRT); :func:`engine_layers` asks a loaded engine for that JSON.

The JSON, as NVIDIA documents it (developer guide, "Engine Inspector"; "Migrating IEngineInspector Usage from
TensorRT 10.x to 11.x"):

* ``{"Layers": [...], "Bindings": ["x", "y"]}``; TensorRT 11 replaces ``Bindings`` (names) by
  ``"I/O Tensors"`` (objects with ``Name``, ``IOMode``, ``DataType``, ...).
* How much a layer says depends on the engine's ``ProfilingVerbosity``: ``LAYER_NAMES_ONLY`` (the default)
  gives each layer as its name, a string; ``DETAILED`` gives an object with ``Name``, ``LayerType``,
  ``Inputs``/``Outputs`` (``Name``, ``Dimensions``, ``Format/Datatype``), ``TacticName`` and/or ``TacticValue``,
  ``Origin`` and the layer's parameters; ``NONE`` gives nothing.
* Without an execution context whose input shapes are set, dims that depend on them read ``-1`` and formats
  read ``"N/A due to dynamic shapes"``; :func:`engine_layers` therefore sets one up at the opt shapes.

Where quantization took hold, from these records: :mod:`trtkit.tools.placement`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from trtkit import dtypes
from trtkit.errors import EngineFileError, ExecutionError, InputError, TrtkitError, UnsupportedFeatureError
from trtkit.log import get_logger

if TYPE_CHECKING:
    from trtkit.profiles import Shape
    from trtkit.runtime.loading import LoadedEngine

__all__ = ["EngineLayers", "LayerInfo", "LayerTensor", "Verbosity", "engine_layers", "parse_engine_information"]

_log = get_logger("layers")

Verbosity = Literal["detailed", "layer_names_only", "none"]

def dtype_from_format(text: str | None) -> str | None:
    """The element type named in a TensorRT format description ("Row major linear FP32 format",
    "Thirty-two wide channel vectorized row major Int8 format", "Half"), or None ("N/A due to dynamic shapes")."""
    if not text:
        return None
    for word in re.findall(r"[A-Za-z0-9]+", text):
        dtype = dtypes.find(word)
        if dtype is not None:
            return dtype.name
    return None


@dataclass(frozen=True)
class LayerTensor:
    """One input or output of a fused layer."""

    name: str
    dims: tuple[int, ...] | None
    format: str | None
    """TensorRT's description of layout and type, e.g. ``"Row major linear FP16 format"``."""
    dtype: str | None
    """trtkit dtype name read from :attr:`format`; None when TensorRT did not say (dynamic shapes)."""
    location: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> LayerTensor:
        fmt = d.get("Format/Datatype")
        dtype_text = d.get("DataType", d.get("Datatype"))  # the split keys some versions write
        if fmt is None and (dtype_text is not None or d.get("Format") is not None):
            fmt = " ".join(str(p) for p in (d.get("Format"), dtype_text) if p is not None)
        dims = d.get("Dimensions")
        return cls(
            name=str(d.get("Name", "")),
            dims=tuple(_int(x) for x in dims) if isinstance(dims, list) else None,
            format=str(fmt) if fmt is not None else None,
            dtype=dtype_from_format(str(dtype_text)) if dtype_text is not None else
            dtype_from_format(None if fmt is None else str(fmt)),
            location=str(d["Location"]) if "Location" in d else None,
        )

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "dims": list(self.dims) if self.dims is not None else None,
                "format": self.format, "dtype": self.dtype, "location": self.location}


def _int(value: object) -> int:
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"a dimension must be a number, got {type(value).__name__}")


def _unique(values: Sequence[str | None]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the built engine (after TensorRT fused the network's layers)."""

    name: str
    type: str | None = None
    """TensorRT's layer implementation, e.g. ``CaskConvolution``, ``Reformat``, ``Myelin``."""
    inputs: tuple[LayerTensor, ...] = ()
    outputs: tuple[LayerTensor, ...] = ()
    tactic_name: str | None = None
    tactic_value: str | None = None
    origin: str | None = None
    details: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)
    """The layer's record exactly as TensorRT wrote it (parameters, weights counts, ...)."""

    @property
    def tactic(self) -> str | None:
        """The kernel TensorRT chose: its name when known, else its tactic value."""
        return self.tactic_name or self.tactic_value

    @property
    def precision(self) -> str | None:
        """Element types the layer computes in, from its tensors' formats: ``"float16"``, or
        ``"float32 -> float16"`` where inputs and outputs differ (reformats, Q/DQ); None when unknown."""
        ins = _unique([t.dtype for t in self.inputs])
        outs = _unique([t.dtype for t in self.outputs])
        if ins and outs and ins != outs:
            return f"{'/'.join(ins)} -> {'/'.join(outs)}"
        both = outs or ins
        return "/".join(both) if both else None

    @classmethod
    def from_json(cls, item: object) -> LayerInfo:
        if isinstance(item, str):
            return cls(name=item)
        if not isinstance(item, Mapping):
            raise EngineFileError(f"unexpected layer record in TensorRT's engine information: {item!r}")

        def tensors(key: str) -> tuple[LayerTensor, ...]:
            value = item.get(key) or []
            return tuple(LayerTensor.from_json(t) for t in value if isinstance(t, Mapping))

        def text(key: str) -> str | None:
            value = item.get(key)
            return None if value is None else str(value)

        return cls(
            name=str(item.get("Name", "")),
            type=text("LayerType"),
            inputs=tensors("Inputs"),
            outputs=tensors("Outputs"),
            tactic_name=text("TacticName"),
            tactic_value=text("TacticValue"),
            origin=text("Origin"),
            details=dict(item),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "type": self.type, "precision": self.precision, "tactic": self.tactic,
            "tactic_name": self.tactic_name, "tactic_value": self.tactic_value, "origin": self.origin,
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
        }


@dataclass(frozen=True)
class EngineLayers:
    """Every layer of an engine, in execution order, and how much TensorRT kept about them."""

    layers: tuple[LayerInfo, ...]
    verbosity: Verbosity
    """``detailed``: types, tensors and tactics are known; ``layer_names_only``: only names (TensorRT's
    default); ``none``: nothing. Set at build time: ``BuildConfig(profiling_verbosity="detailed")``."""
    io_tensors: tuple[str, ...] = ()
    raw: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)
    """The whole JSON document TensorRT returned."""

    @property
    def detailed(self) -> bool:
        return self.verbosity == "detailed"

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> LayerInfo:
        return self.layers[index]

    def to_dict(self) -> dict[str, object]:
        return {"verbosity": self.verbosity, "io_tensors": list(self.io_tensors),
                "layers": [layer.to_dict() for layer in self.layers]}


def parse_engine_information(text: str | Mapping[str, object]) -> EngineLayers:
    """Parse the JSON of ``inspector.get_engine_information(trt.LayerInformationFormat.JSON)``.

    Accepts TensorRT 10's ``Bindings`` and TensorRT 11's ``I/O Tensors``, detailed layer objects and
    names-only strings. Raises EngineFileError when the text is not that JSON document.
    """
    if isinstance(text, Mapping):
        doc: object = text
    else:
        stripped = text.strip()
        if not stripped:
            return EngineLayers((), "none")
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise EngineFileError(
                f"TensorRT's engine inspector returned text that is not JSON ({exc}); expected an object with "
                f"\"Layers\". It began: {stripped[:120]!r}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("Layers", []), list):
        raise EngineFileError(
            "TensorRT's engine information has no \"Layers\" list; expected {\"Layers\": [...], ...} "
            f"(got {type(doc).__name__} with keys {sorted(doc) if isinstance(doc, Mapping) else []})")
    items = doc.get("Layers", [])
    layers = tuple(LayerInfo.from_json(item) for item in items)
    verbosity: Verbosity
    if not layers:
        verbosity = "none"
    elif all(isinstance(item, Mapping) for item in items):
        verbosity = "detailed"
    else:
        verbosity = "layer_names_only"
    if "I/O Tensors" in doc:
        io = tuple(str(t.get("Name", "")) if isinstance(t, Mapping) else str(t) for t in doc["I/O Tensors"])
    else:
        io = tuple(str(t) for t in doc.get("Bindings", []))
    return EngineLayers(layers, verbosity, io, dict(doc))


# ---- reading from an engine ---------------------------------------------------------------------------------


def _opt_shapes(loaded: LoadedEngine, profile: int) -> dict[str, Shape] | None:
    """Opt shapes of ``profile`` for a dynamic engine, or None when no context is needed or possible."""
    inputs = loaded.inputs
    if not any(s.is_dynamic for s in inputs) or any(s.is_shape_tensor for s in inputs):
        return None
    if not all(profile < len(s.profiles) for s in inputs):
        return None
    return {s.name: s.profiles[profile].opt for s in inputs}


def engine_layers(loaded: LoadedEngine, *, shapes: Mapping[str, Sequence[int]] | None = None,
                  profile: int = 0) -> EngineLayers:
    """Ask TensorRT's engine inspector for the layers of a loaded engine.

    For engines with dynamic shapes an execution context is set up at ``shapes`` (default: the opt shapes of
    ``profile``) so TensorRT reports concrete dims and formats; without one it reports ``-1`` and "N/A".

    Raises:
        UnsupportedFeatureError: the backend has no engine inspector.
        ExecutionError: TensorRT could not create the inspector or returned nothing.
        EngineFileError: TensorRT's answer is not the documented JSON.
    """
    be = loaded.backend
    engine = loaded.trt_engine
    if not hasattr(engine, "create_engine_inspector"):
        raise UnsupportedFeatureError(f"{be.label} has no engine inspector (ICudaEngine.create_engine_inspector)")
    fmt = be.enum("LayerInformationFormat", "JSON")
    with be.capture() as cap:
        inspector = engine.create_engine_inspector()
    if inspector is None:
        raise ExecutionError(f"{be.label} could not create an engine inspector for {loaded.source}",
                             tensorrt_log=cap.lines)
    ctx = None
    wanted: dict[str, Shape] | None
    if shapes is not None:
        wanted = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        missing = [s.name for s in loaded.inputs if s.name not in wanted]
        if missing:
            raise InputError(f"shapes= lacks input(s) {', '.join(missing)}; give a shape for every input")
    else:
        wanted = _opt_shapes(loaded, profile)
    if wanted is not None:
        try:
            ctx = loaded.create_context()
            ctx._ensure_shapes(tuple(wanted[s.name] for s in loaded.inputs))
            inspector.execution_context = ctx.trt_context
        except (TrtkitError, AttributeError) as exc:
            if ctx is not None:
                ctx.close()
                ctx = None
            if shapes is not None:
                raise
            _log.info("layer information without an execution context (dynamic dims read -1): %s", exc)
    try:
        with be.capture() as cap:
            text = inspector.get_engine_information(fmt)
    finally:
        if ctx is not None:
            ctx.close()
    if text is None:
        raise ExecutionError(f"{be.label} returned no engine information for {loaded.source}",
                             tensorrt_log=cap.lines)
    return parse_engine_information(str(text))
