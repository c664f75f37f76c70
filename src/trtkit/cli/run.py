"""``trtkit run ENGINE --input x=file.npy``: run an engine once and write its outputs to an .npz file."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, TypeVar

import click
import numpy as np
import numpy.typing as npt

from trtkit.errors import InputError
from trtkit.files import atomic_write, refuse_overwrite
from trtkit.manifest import manifest_path
from trtkit.profiles import format_shape
from trtkit.runtime.loading import load_engine
from trtkit.text import safe_lines


def _echo(message: object = "", err: bool = False) -> None:
    """click.echo with names from files escaped (no terminal escape sequences reach the terminal)."""
    click.echo(safe_lines(message), err=err)

HostArray = npt.NDArray[np.generic]

_F = TypeVar("_F", bound=Callable[..., object])


class LoadKwargs(TypedDict):
    """The :func:`trtkit.runtime.load_engine` keywords :func:`load_options` collects."""

    plugins: list[str] | None
    allow_host_code: bool
    lean_runtime: str | None


def backend_options(f: _F) -> _F:
    """``--backend`` and ``--device``: which TensorRT and which GPU load the engine."""
    f = click.option("--backend", default=None, metavar="NAME",
                     help="tensorrt or tensorrt_rtx (default: the engine manifest's, else $TRTKIT_BACKEND).")(f)
    return click.option("--device", type=click.IntRange(0), default=0, show_default=True, help="CUDA device.")(f)


def load_options(f: _F) -> _F:
    """``--plugins``, ``--allow-host-code`` and ``--lean-runtime``: what loading some engines needs."""
    f = click.option("--lean-runtime", "lean_runtime", type=click.Path(dir_okay=False), default=None,
                     metavar="PATH", help="Lean runtime library for a plan built with --excludeLeanRuntime.")(f)
    f = click.option("--allow-host-code", "allow_host_code", is_flag=True,
                     help="Let a version-compatible plan run the lean runtime it carries (only for files you "
                          "trust).")(f)
    return click.option("--plugins", "plugins", multiple=True, metavar="PATH",
                        help="Plugin library the engine needs (repeat; default: those in its manifest).")(f)


def load_kwargs(plugins: tuple[str, ...], allow_host_code: bool, lean_runtime: str | None) -> LoadKwargs:
    """The :func:`trtkit.runtime.load_engine` keywords for :func:`load_options`."""
    return {"plugins": list(plugins) or None, "allow_host_code": allow_host_code, "lean_runtime": lean_runtime}


def _load_inputs(items: tuple[str, ...]) -> dict[str, HostArray]:
    out: dict[str, HostArray] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=FILE.npy", param_hint="--input")
        name, path = item.split("=", 1)
        try:
            value = np.load(path, allow_pickle=False)
        except EOFError:  # an empty or cut .npy; click would report EOFError as "interrupted"
            raise click.BadParameter(f"cannot read {path}: the file is empty or truncated",
                                     param_hint="--input") from None
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--input") from exc
        if not isinstance(value, np.ndarray):
            value.close()
            raise click.BadParameter(f"{path} is an .npz archive; give one .npy file per input (NAME=FILE.npy)",
                                     param_hint="--input")
        out[name.strip()] = value
    return out


@click.command("run")
@click.argument("engine", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=FILE.npy", help="An input (repeat).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the outputs (.npz; default: ENGINE with .outputs.npz).")
@backend_options
@load_options
def run_command(engine: Path, inputs: tuple[str, ...], output: Path | None, device: int, backend: str | None,
                plugins: tuple[str, ...], allow_host_code: bool,
                lean_runtime: str | None) -> int:
    """Run ENGINE once on NumPy inputs and save every output to an .npz file."""
    arrays = _load_inputs(inputs)
    if not arrays:
        raise InputError("no inputs given; pass --input NAME=FILE.npy for each engine input")
    out = output or engine.with_name(engine.name + ".outputs.npz")
    read = [engine, manifest_path(engine), *(Path(item.split("=", 1)[1]) for item in inputs), *map(Path, plugins),
            *([Path(lean_runtime)] if lean_runtime else [])]
    refuse_overwrite(out, read, what="--output")  # before the run
    with load_engine(engine, device=device, backend=backend,
                     **load_kwargs(plugins, allow_host_code, lean_runtime)) as le:
        result = {name: np.asarray(value) for name, value in le.infer(arrays).items()}
    buf = io.BytesIO()  # written whole, then moved into place: never a half-written file at ``out``
    np.savez(buf, **result)  # type: ignore[arg-type, unused-ignore]  # the stub takes the mapping for allow_pickle=
    atomic_write(out, buf.getbuffer(), error=InputError)
    for name, arr in result.items():
        _echo(f"{name}: {arr.dtype}[{format_shape(arr.shape)}]")
    _echo(f"wrote {out}")
    return 0
