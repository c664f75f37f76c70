"""Calibration data for :func:`trtkit.tools.quantize.quantize`: read, checked against the model, digested.

Every check runs before any quantization work, and each failure is one line naming the input, what was found and
what was expected.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.dtypes import lookup
from trtkit.errors import InputError, UnsupportedFeatureError
from trtkit.profiles import InputInfo, Profile, ProfilesLike, format_shape, normalize_profiles
from trtkit.text import safe
from trtkit.tools.inputs import data_loader_feeds, load_inputs

__all__ = ["CalibrationData", "CalibrationSet", "iter_feeds", "load_calibration"]

CalibrationData: TypeAlias = (
    "npt.NDArray[np.generic] | Mapping[str, npt.ArrayLike] | Iterable[Mapping[str, npt.ArrayLike]]"
)
"""One array (single-input models), a mapping of input name to array, or an iterable of such mappings."""

_Array: TypeAlias = npt.NDArray[np.generic]


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration (or validation) inputs, checked against a model.

    Attributes:
        feeds: input name -> the samples stacked on axis 0 (one array per input).
        digest: sha256 hex over the names, dtypes, shapes and bytes (independent of the mapping's order).
        source: where the data came from: ``"x.npz"``, ``"dir/"``, ``"loader.py"`` or ``"<arrays>"``.
        samples: the number of items along axis 0 (or of feeds a loader yielded).
    """

    feeds: Mapping[str, npt.NDArray[np.generic]]
    digest: str
    source: str
    samples: int


def data_digest(feeds: Mapping[str, _Array]) -> str:
    """sha256 hex over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# ---- reading ---------------------------------------------------------------------------------------------------


def _loader_feeds(text: str) -> list[dict[str, _Array]]:
    """Every feed a data loader yields (the debugging tools' ``--data-loader`` form, all feeds)."""
    return data_loader_feeds(text, what="data loader")


def _read_directory(path: Path) -> dict[str, _Array]:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise InputError(f"calibration directory {str(path)!r} holds no .npy files; expected one NAME.npy per "
                         "model input (samples on axis 0)")
    out: dict[str, _Array] = {}
    for f in files:
        try:
            out[f.stem] = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read {str(f)!r}: {exc}; expected an array written by numpy.save") from exc
    return out


def _read(source: object, names: Sequence[str], what: str
          ) -> tuple[dict[str, _Array] | list[dict[str, _Array]], str]:
    """The arrays (stacked) or the feeds (a list), and a label for the source."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        path = Path(text)
        if text.endswith(".py") or ".py:" in text:
            return _loader_feeds(text), path.name.split(":")[0] if ":" in path.name else path.name
        if path.is_dir():
            return _read_directory(path), f"{path.name}/"
        if not path.exists():
            raise InputError(f"{what} {text!r} does not exist; give an .npz file, a directory of NAME.npy files "
                             "or a data-loader script (.py)")
        return load_inputs(path), path.name
    if isinstance(source, np.ndarray):
        if len(names) != 1:
            raise InputError(f"{what}: one array given, but the model has inputs {', '.join(map(repr, names))}; "
                             "pass a mapping of input name to array")
        return {names[0]: source}, "<arrays>"
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}, "<arrays>"
    if isinstance(source, Iterable) and not isinstance(source, bytes):
        feeds: list[dict[str, _Array]] = []
        for i, item in enumerate(source):
            if not isinstance(item, Mapping):
                raise InputError(f"{what}: item {i} is a {type(item).__name__}; expected a mapping of input name "
                                 "to array")
            feeds.append({str(k): np.asarray(v) for k, v in item.items()})
        if not feeds:
            raise InputError(f"{what}: the iterable yielded nothing")
        return feeds, "<arrays>"
    raise InputError(f"{what} must be a path (.npz, directory of .npy, data-loader .py), an array, a mapping of "
                     f"input name to array or an iterable of such mappings; got {type(source).__name__}")


# ---- checking --------------------------------------------------------------------------------------------------


def _expected_dtype(info: InputInfo) -> np.dtype[np.generic]:
    try:
        return lookup(info.dtype).to_numpy()
    except (UnsupportedFeatureError, KeyError) as exc:
        raise InputError(f"input {info.describe()} has a type calibration cannot feed") from exc


def _check_names(arrays: Mapping[str, _Array], infos: Sequence[InputInfo], what: str, where: str) -> None:
    known = {i.name for i in infos}
    listed = ", ".join(i.describe() for i in infos)
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise InputError(f"{what}{where} has input {safe(unknown[0])!r}, which the model does not have; its inputs "
                         f"are {listed}")
    missing = [i for i in infos if i.name not in arrays]
    if missing:
        raise InputError(f"{what}{where} lacks input {missing[0].describe()}; give one array per model input "
                         f"({listed})")


def _check_array(arr: _Array, info: InputInfo, what: str, where: str, *, stacked: bool) -> None:
    want = _expected_dtype(info)
    name = safe(info.name)
    if arr.dtype != want:
        raise InputError(f"{what}{where}: input {name!r} is {arr.dtype}, expected {want} (model input "
                         f"{info.describe()}); convert it with .astype(np.{want})")
    if arr.ndim != len(info.shape):
        raise InputError(f"{what}{where}: input {name!r} has shape {format_shape(arr.shape)} (rank {arr.ndim}), "
                         f"expected rank {len(info.shape)} like {info.describe()}"
                         + (" with the samples stacked on axis 0" if stacked else ""))
    if arr.ndim and arr.shape[0] == 0:
        raise InputError(f"{what}{where}: input {name!r} holds no samples (shape {format_shape(arr.shape)})")
    for axis, (got, dim) in enumerate(zip(arr.shape, info.shape, strict=True)):
        if dim < 0:
            continue
        if axis == 0 and stacked and got % dim == 0:
            continue
        if got != dim:
            extra = f" (or a multiple of {dim}: samples are stacked on axis 0)" if axis == 0 and stacked else ""
            raise InputError(f"{what}{where}: input {name!r} has shape {format_shape(arr.shape)}, but the model "
                             f"fixes axis {axis} to {dim}{extra}: expected {info.describe()}")


def _check_profiles(feed: Mapping[str, _Array], profiles: Sequence[Profile], what: str, where: str) -> None:
    if not profiles:
        return
    for p in profiles:
        if all(p[n].contains(a.shape) for n, a in feed.items() if n in p):
            return
    shapes = ", ".join(f"{safe(n)}:{format_shape(a.shape)}" for n, a in feed.items())
    ranges = "; ".join(str(p) for p in profiles)
    raise InputError(f"{what}{where}: a sample of shape {shapes} lies outside the profiles ({ranges}); give data "
                     "inside them or widen the profiles")


def _batch(info: InputInfo, profiles: Sequence[Profile]) -> int:
    """How many samples along axis 0 make one feed: the model's static batch, else the profiles' smallest min."""
    if not info.shape:
        return 1
    if info.shape[0] > 0:
        return info.shape[0]
    mins = [p[info.name].min[0] for p in profiles if info.name in p and p[info.name].min]
    return max(1, min(mins)) if mins else 1


def _split(arrays: Mapping[str, _Array], infos: Sequence[InputInfo], profiles: Sequence[Profile]
           ) -> Iterator[dict[str, _Array]]:
    count = min((a.shape[0] for a in arrays.values() if a.ndim), default=1)
    step = max((_batch(i, profiles) for i in infos), default=1)
    if any(a.ndim == 0 for a in arrays.values()):
        yield dict(arrays)
        return
    for start in range(0, count - step + 1, step):
        yield {n: a[start:start + step] for n, a in arrays.items()}


def iter_feeds(data: CalibrationSet, model: ModelSource | OnnxModel, profiles: ProfilesLike | None = None
               ) -> Iterator[dict[str, _Array]]:
    """The feeds to run: ``data.feeds`` split along axis 0 into the model's batch (1 for a dynamic batch, or the
    profiles' smallest batch)."""
    m = load_onnx(model)
    yield from _split(data.feeds, m.inputs(), normalize_profiles(profiles))


def load_calibration(source: CalibrationSet | str | os.PathLike[str] | CalibrationData,
                     model: ModelSource | OnnxModel, *, profiles: ProfilesLike | None = None,
                     what: str = "calibration data") -> CalibrationSet:
    """Read calibration data and check it against ``model``'s inputs (and ``profiles``) before any work.

    ``source``: an ``.npz`` file (one array per input, samples stacked on axis 0), a directory of ``NAME.npy``
    files (the same), a data-loader script (``loader.py`` whose ``load_data()`` yields feed dicts, or
    ``loader.py:FUNC``; the form of the debugging tools' ``--data-loader``), or arrays (one array for a
    single-input model, a mapping of input name to array, or an iterable of feed mappings). A
    :class:`CalibrationSet` is returned as it is. Separate feeds (a loader, an iterable) are concatenated on axis 0,
    so they must agree on their other dims. The samples are fed to the model in its batch: a static batch ``B``
    needs a multiple of ``B`` samples; a dynamic batch takes them one at a time (or the profiles' smallest batch).

    Raises:
        InputError: the data cannot be read, or names, dtypes, ranks or dims do not fit the model's inputs, or a
            sample lies outside every profile (one line naming the input, what was found and what was expected).
        ShapeError: ``profiles`` are malformed.
    """
    if isinstance(source, CalibrationSet):
        return source
    m = load_onnx(model)
    infos = m.inputs()
    names = [i.name for i in infos]
    by_name = {i.name: i for i in infos}
    profs = normalize_profiles(profiles)
    read, label = _read(source, names, what)
    where = f" ({label})" if label != "<arrays>" else ""
    if isinstance(read, list):
        for i, feed in enumerate(read):
            at = f"{where[:-1]}, feed {i})" if where else f" (feed {i})"
            _check_names(feed, infos, what, at)
            for name, arr in feed.items():
                _check_array(arr, by_name[name], what, at, stacked=False)
            _check_profiles(feed, profs, what, at)
        arrays: dict[str, _Array] = {}
        for name in names:
            parts = [feed[name] for feed in read]
            if any(p.ndim == 0 for p in parts) or len({p.shape[1:] for p in parts}) > 1:
                shapes = sorted({format_shape(p.shape) for p in parts})
                raise InputError(f"{what}{where}: the feeds give input {safe(name)!r} different shapes "
                                 f"({', '.join(shapes[:3])}); calibration feeds must agree on every dim but the "
                                 "first")
            arrays[name] = np.concatenate(parts, axis=0)
        samples = len(read)
    else:
        arrays = read
        _check_names(arrays, infos, what, where)
        for name, arr in arrays.items():
            _check_array(arr, by_name[name], what, where, stacked=True)
        counts = {a.shape[0] for a in arrays.values() if a.ndim}
        if len(counts) > 1:
            listed = ", ".join(f"{safe(n)}: {a.shape[0]}" for n, a in arrays.items() if a.ndim)
            raise InputError(f"{what}{where}: the inputs hold different numbers of samples on axis 0 ({listed}); "
                             "give every input the same number")
        split = list(_split(arrays, infos, profs))
        if not split:
            raise InputError(f"{what}{where}: fewer samples than one batch of the model")
        for feed in split:
            _check_profiles(feed, profs, what, where)
        samples = next(iter(counts), 1)
    return CalibrationSet(feeds=arrays, digest=data_digest(arrays), source=label, samples=samples)
