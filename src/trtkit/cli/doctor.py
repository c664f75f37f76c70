"""``trtkit doctor``: what is installed, what the GPUs are, whether engines can run here, and what to install.

A report, not a check: it exits 0 even when engines cannot run on this machine.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import sys
from dataclasses import fields
from typing import Final, NotRequired, TypedDict

import click

from trtkit import gpu
from trtkit._version import __version__
from trtkit.backend import BACKEND_NAMES, DISPLAY_NAMES, MODULE_NAMES, Backend, get_backend, install_hint
from trtkit.cli._options import echo_json
from trtkit.errors import DependencyError, TrtkitError
from trtkit.runtime.compat import run_blocker
from trtkit.text import safe_lines


def _echo(message: object = "", err: bool = False) -> None:
    """click.echo with names from files escaped (no terminal escape sequences reach the terminal)."""
    click.echo(safe_lines(message), err=err)

_PACKAGES: Final = (
    ("numpy", "arrays for inputs and outputs"),
    ("onnx", "reads ONNX models"),
    ("cuda-python", "CUDA from Python (metapackage)"),
    ("cuda-bindings", "CUDA runtime/driver calls"),
    ("cuda-core", "streams, events, memory pools"),
    ("click", "the command line"),
    ("tqdm", "build progress bars"),
    ("filelock", "engine cache locks"),
    ("platformdirs", "engine cache location"),
    ("onnxruntime", "accuracy reference for trtkit compare (optional)"),
)

FeatureValue = bool | list[str] | None


class BackendRow(TypedDict):
    """One backend in the report: installed (version, features) or not (error, install command)."""

    name: str
    label: str
    module: str
    installed: bool
    error: NotRequired[str]
    install: NotRequired[str]
    version: NotRequired[str]
    distributions: NotRequired[list[str]]
    features: NotRequired[dict[str, FeatureValue]]


class CudaInfo(TypedDict):
    """CUDA driver and runtime versions ("12.4"), the device count, and why no device was found."""

    driver: str | None
    runtime: str | None
    device_count: int
    error: str | None


class GpuRow(TypedDict):
    """One GPU and, per installed backend, whether it can run engines (and why not)."""

    index: int
    error: NotRequired[str]
    name: NotRequired[str]
    compute_capability: NotRequired[str]
    memory_gib: NotRequired[float]
    can_run: NotRequired[dict[str, bool]]
    reasons: NotRequired[dict[str, str]]


class PackageRow(TypedDict):
    """A Python package trtkit uses, its installed version (None: missing) and what it is for."""

    name: str
    version: str | None
    why: str


class PythonInfo(TypedDict):
    """The interpreter: version, executable and platform."""

    version: str
    executable: str
    platform: str


class Report(TypedDict):
    """Everything ``trtkit doctor`` reports (the ``--json`` document)."""

    trtkit: str
    python: PythonInfo
    backends: list[BackendRow]
    active_backend: str | None
    active_backend_label: str | None
    active_backend_error: str | None
    packages: list[PackageRow]
    cuda: CudaInfo
    gpus: list[GpuRow]
    can_build: bool
    can_run: bool
    run_blocker: str | None
    fixes: list[str]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _dists_of(module: str) -> list[str]:
    return sorted(set(metadata.packages_distributions().get(module, [])))


def _cuda_version(value: int) -> str | None:
    return f"{value // 1000}.{(value % 1000) // 10}" if value > 0 else None


def _features(be: Backend) -> dict[str, FeatureValue]:
    out: dict[str, FeatureValue] = {}
    for f in fields(be.features):
        value = getattr(be.features, f.name)
        if f.name == "supported_compute_capabilities":
            out[f.name] = None if value is None else [f"{a}.{b}" for a, b in value]
        else:
            out[f.name] = bool(value)
    return out


def _backends(requested: str | None) -> tuple[list[BackendRow], Backend | None, str | None]:
    rows: list[BackendRow] = []
    for name in BACKEND_NAMES:
        row: BackendRow = {"name": name, "label": DISPLAY_NAMES[name], "module": MODULE_NAMES[name],
                           "installed": False}
        try:
            be = get_backend(name)
        except DependencyError as exc:
            row.update({"error": exc.message, "install": install_hint(name)})
        else:
            row.update({"installed": True, "label": be.label, "version": be.version,
                        "distributions": _dists_of(name), "features": _features(be)})
        rows.append(row)
    try:
        active: Backend | None = get_backend(requested)
        active_error = None
    except TrtkitError as exc:
        active, active_error = None, exc.message
    return rows, active, active_error


def _cuda() -> CudaInfo:
    info: CudaInfo = {"driver": None, "runtime": None, "device_count": 0, "error": None}
    try:
        rt = gpu.cudart()
    except DependencyError as exc:
        info["error"] = exc.message
        return info
    status, driver = rt.cudaDriverGetVersion()
    if int(status) == 0:
        info["driver"] = _cuda_version(int(driver))
    status, runtime = rt.cudaRuntimeGetVersion()
    if int(status) == 0:
        info["runtime"] = _cuda_version(int(runtime))
    info["device_count"] = gpu.device_count()
    if info["device_count"] == 0:
        status, _ = rt.cudaGetDeviceCount()
        name = getattr(status, "name", str(status))
        info["error"] = (
            f"cudaGetDeviceCount returned {name}" if int(status) != 0 else "cudaGetDeviceCount found no device"
        )
    return info


def _gpus(count: int, backends: list[tuple[str, Backend]]) -> list[GpuRow]:
    out: list[GpuRow] = []
    for index in range(count):
        try:
            dev = gpu.device_info(index)
        except TrtkitError as exc:
            out.append({"index": index, "error": exc.message})
            continue
        can_run = {name: run_blocker(be, index) for name, be in backends}
        out.append({
            "index": index, "name": dev.name, "compute_capability": dev.cc_string,
            "memory_gib": round(dev.total_memory / (1 << 30), 1),
            "can_run": {name: reason is None for name, reason in can_run.items()},
            "reasons": {name: reason for name, reason in can_run.items() if reason is not None},
        })
    return out


def collect(backend: str | None = None) -> Report:
    """Everything ``trtkit doctor`` reports, as JSON-ready data."""
    rows, active, active_error = _backends(backend)
    installed = [(r["name"], get_backend(r["name"])) for r in rows if r["installed"]]
    cuda = _cuda()
    gpus = _gpus(int(cuda["device_count"]), installed)
    packages: list[PackageRow] = [{"name": n, "version": _version(n), "why": why} for n, why in _PACKAGES]
    blocker = run_blocker(active) if active is not None else active_error
    can_build = active is not None
    fixes: list[str] = []
    if active is None:
        fixes.append(f"Install a TensorRT backend: {install_hint('tensorrt')}  or  {install_hint('tensorrt_rtx')}")
    for p in packages:
        if p["version"] is None:
            fixes.append(f"pip install {p['name']}  ({p['why']})")
    if cuda["device_count"] == 0:
        fixes.append(
            f"Engines cannot run here: {gpu.NO_GPU_MESSAGE}."
            + (f" Build engines here with {active.label}." if active is not None
               and active.features.compute_capability_targets else "")
        )
    elif blocker is not None and active is not None:
        fixes.append(blocker)
    if cuda["driver"] and cuda["runtime"]:
        drv, rtv = (tuple(int(x) for x in str(cuda[k]).split(".")) for k in ("driver", "runtime"))
        if drv < rtv:
            fixes.append(
                f"The NVIDIA driver supports CUDA {cuda['driver']} but cuda-bindings is for CUDA {cuda['runtime']}: "
                f"update the driver, or install cuda-python {drv[0]}.x (pip install 'cuda-python>={drv[0]},<"
                f"{drv[0] + 1}')"
            )
    return {
        "trtkit": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": f"{platform.system()}-{platform.machine()}"},
        "backends": rows,
        "active_backend": active.name if active is not None else None,
        "active_backend_label": active.label if active is not None else None,
        "active_backend_error": active_error,
        "packages": packages,
        "cuda": cuda,
        "gpus": gpus,
        "can_build": can_build,
        "can_run": active is not None and blocker is None,
        "run_blocker": blocker,
        "fixes": fixes,
    }


def format_report(r: Report) -> str:
    """The text ``trtkit doctor`` prints for :func:`collect`'s data."""
    lines = [f"trtkit {r['trtkit']}", ""]
    py = r["python"]
    lines.append(f"Python        {py['version']} ({py['executable']}) on {py['platform']}")
    lines.append("")
    lines.append("Backends")
    for b in r["backends"]:
        mark = "  (active)" if b["name"] == r["active_backend"] else ""
        if b["installed"]:
            lines.append(f"  {b['label']:<26} from {', '.join(b['distributions']) or '?'}{mark}")
            f = b["features"]
            traits = ["strongly typed only" if f["always_strongly_typed"] else "precision builder flags"]
            if f["compute_capability_targets"]:
                traits.append("compute-capability targets")
            if f["timing_cache"]:
                traits.append("timing cache")
            if f["runtime_cache"]:
                traits.append("runtime cache")
            caps = f["supported_compute_capabilities"]
            if isinstance(caps, list) and caps:
                traits.append("runs on compute capability " + ", ".join(caps))
            lines.append(f"      {'; '.join(traits)}")
        else:
            lines.append(f"  {b['label']:<26} not installed: {b['install']}")
    if r["active_backend_error"]:
        lines.append(f"  no usable backend: {r['active_backend_error']}")
    lines.append("")
    lines.append("Packages")
    for p in r["packages"]:
        lines.append(f"  {p['name']:<14} {p['version'] or 'MISSING':<12} {p['why']}")
    lines.append("")
    c = r["cuda"]
    lines.append("CUDA")
    lines.append(f"  driver        {c['driver'] or 'none (no NVIDIA driver found)'}")
    lines.append(f"  runtime       {c['runtime'] or 'unknown'} (cuda-bindings)")
    lines.append("")
    lines.append("GPUs")
    if not r["gpus"]:
        lines.append(f"  none ({c['error'] or 'no CUDA device'})")
    for g in r["gpus"]:
        if "error" in g:
            lines.append(f"  {g['index']}: {g['error']}")
            continue
        lines.append(f"  {g['index']}: {g['name']}, compute capability {g['compute_capability']}, "
                     f"{g['memory_gib']} GiB")
        for name, ok in g["can_run"].items():
            verdict = "can run engines" if ok else f"cannot run engines: {g['reasons'][name]}"
            lines.append(f"       {name}: {verdict}")
    lines.append("")
    build = f"yes, with {r['active_backend_label']}" if r["can_build"] else "no"
    lines.append(f"Build engines here: {build}")
    lines.append(f"Run engines here:   {'yes' if r['can_run'] else 'no: ' + str(r['run_blocker'])}")
    if r["fixes"]:
        lines.append("")
        lines.append("What to do")
        lines.extend(f"  - {fix}" for fix in r["fixes"])
    return "\n".join(lines)


@click.command("doctor")
@click.option("--backend", default=None, metavar="NAME",
              help="tensorrt or tensorrt_rtx (default: $TRTKIT_BACKEND, else full TensorRT if present).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def doctor_command(backend: str | None, as_json: bool) -> int:
    """Report Python, TensorRT backends, CUDA driver and runtime, GPUs, and whether engines can run here.

    Always exits 0: it is a report. Lists what to install to fix what is missing.
    """
    report = collect(backend)
    if as_json:
        echo_json(report)
    else:
        _echo(format_report(report))
    return 0
