"""Export an engine as a Triton Inference Server model.

Writes ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/<version>/model.plan``.

The model configuration is derived from the engine's manifest alone (no GPU, no TensorRT, no Triton needed):
``platform: "tensorrt_plan"``, every I/O tensor with its Triton data type and dims, batching when every tensor
shares a leading dynamic batch dim, dynamic batching, instance groups (one per optimization profile when the
engine has several) and the TensorRT version in ``parameters``.

The config is written as protobuf text by hand so that trtkit does not depend on ``tritonclient``; the tests
parse it with Triton's own ``ModelConfig`` schema.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from trtkit import dtypes
from trtkit._version import __version__
from trtkit.errors import ConfigError, EngineFileError, EngineIncompatibleError, TritonExportError
from trtkit.files import atomic_write
from trtkit.manifest import Manifest, TensorInfo, manifest_path, read_engine_file
from trtkit.profiles import format_shape
from trtkit.tools.triton_python import MODEL_FILENAME, model_py
from trtkit.tools.triton_server import TritonVerdict, check_with_triton

__all__ = [
    "TritonConfig",
    "TritonExport",
    "TritonExportError",
    "TritonVerdict",
    "check_with_triton",
    "export_triton",
    "triton_config",
]

PLAN_FILENAME: Final = "model.plan"
CONFIG_FILENAME: Final = "config.pbtxt"
Runtime = Literal["tensorrt", "python"]
"""``tensorrt``: Triton's TensorRT backend loads the plan; ``python``: a Python-backend model runs it with trtkit."""

# Triton's validator takes any directory name, but its HTTP endpoint does not percent-decode the URL, so a name
# outside these characters cannot be reached by HTTP clients (tritonclient quotes it). Matched with fullmatch.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_MAX_NAME: Final = 255
_INT32_MAX: Final = 2**31 - 1
_INT64_MAX: Final = 2**63 - 1
_UINT64_MAX: Final = 2**64 - 1


@dataclass(frozen=True)
class TritonConfig:
    """A generated Triton model configuration and the decisions behind it."""

    text: str
    """The ``config.pbtxt`` content (protobuf text format of ``inference.ModelConfig``)."""
    max_batch_size: int
    """0 when Triton does not batch the model (dims are full shapes)."""
    preferred_batch_sizes: tuple[int, ...]
    dynamic_batching: bool
    notes: tuple[str, ...] = ()
    """Things the user should know (for example why batching is off); the CLI prints them."""


@dataclass(frozen=True)
class TritonExport:
    """Where :func:`export_triton` wrote the model."""

    model_dir: Path
    config_path: Path
    plan_path: Path
    version: int
    config: TritonConfig
    warnings: tuple[str, ...] = field(default=())


# ---- checks -----------------------------------------------------------------------------------------------


def _check_name(name: str, derived_from: str | None = None) -> None:
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        shown = repr(name) if isinstance(name, str) and len(name) <= 80 else (
            f"{name[:60]!r}... ({len(name)} characters)" if isinstance(name, str) else type(name).__name__)
        origin = f" (taken from {derived_from}; pass --name / name= to choose one)" if derived_from else ""
        raise TritonExportError(
            f"{shown}{origin} is not a valid Triton model name: it is a directory in the model repository and "
            "part of the URL clients call (/v2/models/NAME/infer), which Triton does not percent-decode. Use "
            f"letters, digits, '_', '-' and '.' (not '.' or '..' alone), at most {_MAX_NAME} characters (e.g. "
            "'resnet50' or 'resnet50_fp16')"
        )


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= _INT64_MAX:
        shown = repr(version) if not isinstance(version, int) or abs(version) < 10**30 else \
            f"an integer of {len(str(abs(version)))} digits"
        raise ConfigError(
            f"model version must be an integer from 0 to 2^63-1 ({_INT64_MAX}), got {shown}: Triton keeps "
            "versions as int64 and ignores version directories that are not numbers or have leading zeros"
        )


def _check_int(label: str, value: object, lo: int, hi: int) -> None:
    """ConfigError unless ``value`` is an int (not a bool) in ``lo..hi`` (Triton's field width)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{label} must be an integer >= {lo}" + (f" and <= {hi}" if hi < _UINT64_MAX else
                                                                   " and < 2^64") + f", got {value!r}")


def _check_rtx(manifest: Manifest, allow_rtx: bool, source: str) -> str | None:
    if manifest.backend != "tensorrt_rtx":
        return None
    message = (
        f"{source} was built with TensorRT-RTX {manifest.backend_version}; Triton's TensorRT backend "
        "(platform tensorrt_plan) loads full TensorRT plans only and would fail to deserialize it. Rebuild "
        "the engine with the full TensorRT of your Triton release (trtkit build --backend tensorrt)"
    )
    if not allow_rtx:
        raise EngineIncompatibleError(message + ", or pass allow_rtx=True (--allow-rtx) to write it anyway")
    return message


def _triton_type(t: TensorInfo) -> str:
    dt = dtypes.lookup(t.dtype)
    if dt.triton_name is None:
        carried = sorted(d.name for d in dtypes.all_dtypes() if d.triton_name is not None)
        raise TritonExportError(
            f"{t.mode} {t.name!r} has dtype {dt.name}, which Triton cannot carry (it takes "
            f"{', '.join(carried)} for TensorRT models). Keep the engine's I/O in one of those types and cast "
            "inside the model, e.g. quantize/dequantize after the input"
        )
    return dt.triton_name


# ---- batching ---------------------------------------------------------------------------------------------


def _batching_blocker(manifest: Manifest) -> str | None:
    """Why Triton cannot batch this engine, or None when every tensor has a leading batch dim of min 1."""
    if not manifest.inputs:
        return "the engine has no inputs"
    for t in manifest.tensors:
        if t.is_shape_tensor:
            return f"{t.mode} {t.name!r} is a shape tensor (batching shape tensors needs hand-written dims)"
        if not t.shape or t.shape[0] != -1:
            return f"{t.mode} {t.name!r} has no dynamic leading dim (shape {format_shape(t.shape)})"
    for index, profile in enumerate(manifest.profiles):
        for name, rng in profile.ranges.items():
            if rng.min and rng.min[0] != 1:
                return (
                    f"profile {index} gives input {name!r} a batch dim of at least {rng.min[0]}; Triton may send "
                    "a batch of 1, so every profile needs min batch 1"
                )
    return None


def _profile_max_batch(manifest: Manifest) -> int:
    """The largest batch every profile accepts (each instance serves one profile, any request may reach it)."""
    return min((rng.max[0] for p in manifest.profiles for rng in p.ranges.values() if rng.max), default=0)


def _profile_opt_batches(manifest: Manifest, limit: int) -> tuple[int, ...]:
    opts = {rng.opt[0] for p in manifest.profiles for rng in p.ranges.values() if rng.opt}
    return tuple(sorted(b for b in opts if 1 < b <= limit))


# ---- text format ------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept, quotes, backslashes and controls escaped)."""
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = [named.get(ch) or (f"\\{ord(ch):03o}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in text]
    return '"' + "".join(out) + '"'


def _ints(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor_block(t: TensorInfo, batching: bool) -> list[str]:
    dims = list(t.shape[1:] if batching else t.shape)
    if any(d == 0 or d < -1 for d in dims):
        raise TritonExportError(
            f"{t.mode} {t.name!r} has shape {format_shape(t.shape)}; Triton refuses it: every dimension must be "
            "an integer >= 1, or -1 for a variable-size dimension. Rebuild without empty (0) dims"
        )
    lines = ["  {", f"    name: {_quote(t.name)}", f"    data_type: {_triton_type(t)}"]
    if dims:
        lines.append(f"    dims: {_ints(dims)}")
    else:
        if t.is_shape_tensor:
            raise TritonExportError(
                f"{t.mode} {t.name!r} is a 0-d shape tensor; Triton's TensorRT backend needs shape tensors with "
                "one dim. Make it a 1-element 1-d tensor in the model"
            )
        # Triton needs non-empty dims: expose [1] to clients and hand the engine its true (scalar) shape.
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    if t.is_shape_tensor:
        lines.append("    is_shape_tensor: true")
    lines.append("  }")
    return lines


def triton_config(
    manifest: Manifest,
    *,
    name: str,
    max_batch_size: int | None = None,
    dynamic_batching: bool | None = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_delay_us: int | None = None,
    instances: int = 1,
    gpus: Sequence[int] | None = None,
    source: str = "the engine",
    runtime: Runtime = "tensorrt",
) -> TritonConfig:
    """Build the ``config.pbtxt`` text for an engine described by ``manifest``.

    Args:
        manifest: the engine's manifest (tensors, profiles, backend version).
        name: the Triton model name (also the directory name).
        max_batch_size: None derives it from the profiles (the smallest profile max of the batch dim, or 0
            when the engine cannot batch); 0 turns batching off (full dims); a positive value caps it.
        dynamic_batching: None enables Triton's dynamic batcher whenever the model batches.
        preferred_batch_sizes: None draws them from the profiles' opt batch sizes.
        max_queue_delay_us: how long the dynamic batcher may wait to form a batch.
        instances: execution instances per GPU (per profile when the engine has several profiles).
        gpus: GPU indices for the instances; None lets Triton use every GPU.
        runtime: ``tensorrt`` (``platform: "tensorrt_plan"``, one instance group per profile) or ``python``
            (``backend: "python"``, trtkit picks profiles; ``trtkit_requires`` recorded in ``parameters``).

    Raises:
        TritonExportError: a name, dtype or shape Triton would reject, or batching the engine cannot do.
        ConfigError: an option out of range (instances, gpus, max_batch_size, max_queue_delay_us), or
            batcher options with ``dynamic_batching=False``.
    """
    _check_name(name)
    if runtime not in ("tensorrt", "python"):
        raise ConfigError(f"runtime must be 'tensorrt' or 'python', got {runtime!r}")
    _check_int("instances", instances, 1, _INT32_MAX)
    if gpus is not None and (isinstance(gpus, str | bytes) or not isinstance(gpus, Sequence)):
        raise ConfigError(f"gpus must be a list of distinct GPU indices >= 0 such as [0, 1], got {gpus!r}")
    gpu_list = list(gpus) if gpus is not None else []
    if any(isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= _INT32_MAX for g in gpu_list) or \
            len(set(gpu_list)) != len(gpu_list):
        raise ConfigError(f"gpus must be distinct GPU indices >= 0, got {gpu_list!r}")
    if dynamic_batching is not None and not isinstance(dynamic_batching, bool):
        raise ConfigError(f"dynamic_batching must be True, False or None, got {dynamic_batching!r}")
    if max_queue_delay_us is not None:
        _check_int("max_queue_delay_us", max_queue_delay_us, 0, _UINT64_MAX)
    if preferred_batch_sizes is not None and (isinstance(preferred_batch_sizes, str | bytes)
                                              or not isinstance(preferred_batch_sizes, Sequence)):
        raise ConfigError(f"preferred_batch_sizes must be a list of integers such as [4, 8], got "
                          f"{preferred_batch_sizes!r}")
    notes: list[str] = []

    blocker = _batching_blocker(manifest)
    limit = 0 if blocker else _profile_max_batch(manifest)
    if max_batch_size is None:
        mbs = limit
        if blocker:
            notes.append(f"batching is off (max_batch_size 0, full dims): {blocker}")
    elif isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ConfigError(f"max_batch_size must be an integer >= 0, got {max_batch_size!r}")
    elif max_batch_size == 0:
        mbs = 0
    elif blocker:
        raise TritonExportError(
            f"max_batch_size={max_batch_size} asks Triton to batch {source}, but it cannot: {blocker}. "
            "Rebuild with a leading dynamic batch dim (min 1) on every input, or use max_batch_size 0"
        )
    elif max_batch_size > limit:
        raise TritonExportError(
            f"max_batch_size={max_batch_size} exceeds what {source}'s optimization profiles accept: the largest "
            f"batch every profile takes is {limit}. Use at most {limit}, or rebuild with a larger max shape"
        )
    else:
        mbs = max_batch_size
    if runtime == "tensorrt" and mbs and len(manifest.profiles) > 1 and len({r.max[0] for p in manifest.profiles
                                                   for r in p.ranges.values()}) > 1:
        notes.append(
            f"max_batch_size is {mbs}, the smallest batch max over the {len(manifest.profiles)} profiles: each "
            "instance serves one profile and Triton may route any request to any instance"
        )

    if mbs == 0 and preferred_batch_sizes:
        # Triton's own check; the dynamic batcher itself (a queue, no batching) is valid with max_batch_size 0.
        raise TritonExportError(
            "preferred batch sizes were given but the model does not batch (max_batch_size 0): Triton refuses "
            "them (\"dynamic batching preferred size must be <= max batch size\")" + (f"; {blocker}" if blocker else "")
        )
    use_dynamic = (bool(mbs) or max_queue_delay_us is not None) if dynamic_batching is None else dynamic_batching
    if not use_dynamic and (preferred_batch_sizes is not None or max_queue_delay_us is not None):
        raise ConfigError(
            "preferred batch sizes and max_queue_delay_us configure the dynamic batcher, which is turned off"
        )
    if preferred_batch_sizes is None:
        preferred = _profile_opt_batches(manifest, mbs) if use_dynamic else ()
    else:
        if any(isinstance(b, bool) or not isinstance(b, int) for b in preferred_batch_sizes):
            raise ConfigError(f"preferred_batch_sizes must be integers, got {list(preferred_batch_sizes)!r}")
        preferred = tuple(sorted(set(preferred_batch_sizes)))
        bad = [b for b in preferred if not 1 <= b <= mbs]
        if bad:
            raise TritonExportError(
                f"preferred batch sizes {bad} are outside 1..max_batch_size ({mbs}); Triton rejects them"
            )

    if runtime == "python":
        serve_with = f"# Runs with trtkit >= {__version__} in Triton's Python backend ({MODEL_FILENAME})."
    elif manifest.backend == "tensorrt":
        serve_with = f"# Serve it with a Triton release whose TensorRT is {manifest.backend_version}."
    else:
        serve_with = "# Triton's TensorRT backend cannot load TensorRT-RTX plans."
    lines = [
        f"# Generated by trtkit {__version__} from {manifest.backend} {manifest.backend_version} engine "
        f"(plan sha256 {manifest.plan_sha256[:16]}...).",
        serve_with,
        f"name: {_quote(name)}",
        'backend: "python"' if runtime == "python" else 'platform: "tensorrt_plan"',
        f"max_batch_size: {mbs}",
    ]
    for label, tensors in (("input", manifest.inputs), ("output", manifest.outputs)):
        blocks = [_tensor_block(t, mbs > 0) for t in tensors]
        lines.append(f"{label} [")
        for i, block in enumerate(blocks):
            if i < len(blocks) - 1:
                block[-1] += ","
            lines += block
        lines.append("]")
    if use_dynamic:
        lines.append("dynamic_batching {")
        if preferred:
            lines.append(f"  preferred_batch_size: {_ints(preferred)}")
        if max_queue_delay_us is not None:
            lines.append(f"  max_queue_delay_microseconds: {max_queue_delay_us}")
        lines.append("}")

    profiles: list[str | None] = [str(i) for i in range(len(manifest.profiles))]
    if len(profiles) < 2 or runtime == "python":
        profiles = [None]  # a single profile is Triton's default (profile 0)
    lines.append("instance_group [")
    for i, profile in enumerate(profiles):
        lines += ["  {", f"    count: {instances}", "    kind: KIND_GPU"]
        if gpu_list:
            lines.append(f"    gpus: {_ints(gpu_list)}")
        if profile is not None:
            lines.append(f"    profile: [ {_quote(profile)} ]")
        lines.append("  }," if i < len(profiles) - 1 else "  }")
    lines.append("]")

    params = {
        "tensorrt_version": manifest.backend_version,
        "trtkit_backend": manifest.backend,
        "trtkit_version": manifest.trtkit_version,
        "plan_sha256": manifest.plan_sha256,
    }
    if runtime == "python":
        params["trtkit_requires"] = __version__
    target = manifest.target
    if target.get("compute_capability"):
        params["compute_capability"] = str(target["compute_capability"])
    if manifest.compatibility.get("version_compatible"):
        params["version_compatible"] = "true"
    lines.append("parameters [")
    items = list(params.items())
    for i, (key, value) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"  {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}{sep}")
    lines.append("]")
    return TritonConfig(
        text="\n".join(lines) + "\n",
        max_batch_size=mbs,
        preferred_batch_sizes=tuple(preferred),
        dynamic_batching=use_dynamic,
        notes=tuple(notes),
    )


# ---- export -----------------------------------------------------------------------------------------------


def export_triton(
    engine: str | os.PathLike[str],
    repository: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: int = 1,
    max_batch_size: int | None = None,
    dynamic_batching: bool | None = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_delay_us: int | None = None,
    instances: int = 1,
    gpus: Sequence[int] | None = None,
    force: bool = False,
    allow_rtx: bool = False,
    runtime: Runtime = "tensorrt",
) -> TritonExport:
    """Write ``engine`` into the Triton model repository ``repository`` as model ``name`` (default: the engine
    file's stem, ``resnet50`` for ``resnet50.engine``).

    Steps, in order: check the name and version; read the plan and its manifest (checking that they match);
    refuse TensorRT-RTX plans unless ``allow_rtx`` (or ``runtime="python"``, which runs them with trtkit);
    generate the config (see :func:`triton_config` for the options); refuse an existing version directory
    unless ``force``; write ``<version>/model.plan`` (the plan byte for byte), with ``runtime="python"`` also
    its manifest and ``<version>/model.py`` (:mod:`trtkit.tools.triton_python`), and then ``config.pbtxt``,
    each atomically. ``config.pbtxt`` is shared by every version of the model and is replaced.

    Raises:
        TritonExportError: invalid name or option Triton would reject; the version exists and ``force`` is False.
        ConfigError: ``version`` is not an integer in 0..2^63-1, or an option has the wrong type or is out of
            range (see :func:`triton_config`).
        EngineFileError: the engine is missing, corrupt, or has no trtkit manifest (a bare plan's tensors can
            only be read by loading it on a GPU).
        EngineIncompatibleError: a TensorRT-RTX plan without ``allow_rtx``.
    """
    if not isinstance(engine, str | os.PathLike):
        raise ConfigError(f"engine must be the path of an engine file, got {type(engine).__name__}")
    if not isinstance(repository, str | os.PathLike):
        raise ConfigError(f"repository must be a directory path, got {type(repository).__name__}")
    engine_path = Path(engine)
    if name is None:
        name = engine_path.stem
        _check_name(name, derived_from=f"the engine file name {engine_path.name!r}")
    _check_name(name)
    _check_version(version)
    for label, flag in (("force", force), ("allow_rtx", allow_rtx)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{label} must be True or False, got {flag!r}")
    if engine_path.is_file() and not manifest_path(engine_path).is_file():
        raise EngineFileError(
            f"{str(engine_path)!r} has no trtkit manifest ({manifest_path(engine_path).name}) beside it, so its "
            "tensors, dtypes and profiles are unknown without loading it on a GPU. Rebuild it with trtkit "
            "(trtkit build MODEL.onnx) or write config.pbtxt by hand"
        )
    plan, manifest = read_engine_file(engine_path, require_manifest=True)
    assert manifest is not None  # require_manifest=True
    source = f"engine {str(engine_path)!r}"
    warnings: list[str] = []
    rtx = _check_rtx(manifest, allow_rtx, source) if runtime == "tensorrt" else None
    if rtx:
        warnings.append(rtx + " (written anyway: allow_rtx)")
    config = triton_config(
        manifest,
        name=name,
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        gpus=gpus,
        source=source,
        runtime=runtime,
    )

    repo = Path(repository)
    if repo.exists() and not repo.is_dir():
        raise TritonExportError(f"model repository {str(repo)!r} exists and is not a directory")
    model_dir = repo / name
    if model_dir.exists() and not model_dir.is_dir():
        raise TritonExportError(f"{str(model_dir)!r} exists and is not a directory")
    version_dir = model_dir / str(version)
    if version_dir.exists() and (not version_dir.is_dir() or any(version_dir.iterdir())) and not force:
        raise TritonExportError(
            f"version {version} of model {name!r} already exists ({str(version_dir)!r}); Triton may be serving "
            "it. Pass a new version (--version), or force=True (--force) to replace it"
        )
    if version_dir.exists() and not version_dir.is_dir():
        version_dir.unlink()
    plan_path = version_dir / PLAN_FILENAME
    config_path = model_dir / CONFIG_FILENAME
    atomic_write(plan_path, plan, error=TritonExportError)
    if runtime == "python":
        atomic_write(manifest_path(plan_path), manifest_path(engine_path).read_bytes(), error=TritonExportError)
        atomic_write(version_dir / MODEL_FILENAME, model_py(__version__).encode(), error=TritonExportError)
    atomic_write(config_path, config.text.encode(), error=TritonExportError)
    return TritonExport(
        model_dir=model_dir,
        config_path=config_path,
        plan_path=plan_path,
        version=version,
        config=config,
        warnings=tuple(warnings),
    )
