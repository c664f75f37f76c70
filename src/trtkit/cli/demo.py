"""``trtkit demo``: build the sample model shipped with trtkit, and run it where this machine can."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

from trtkit import dtypes
from trtkit.backend import get_backend
from trtkit.builder import build_engine
from trtkit.engine import Engine
from trtkit.profiles import format_shape
from trtkit.runtime.compat import run_blocker
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path
from trtkit.text import safe_lines


def _echo(message: object = "", err: bool = False) -> None:
    """click.echo with names from files escaped (no terminal escape sequences reach the terminal)."""
    click.echo(safe_lines(message), err=err)


@click.command("demo")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the engine here (default: a temporary directory, removed afterwards).")
@click.option("--backend", default=None, metavar="NAME", help="tensorrt or tensorrt_rtx.")
def demo_command(output: Path | None, backend: str | None) -> int:
    """Build tiny_cnn.onnx (shipped with trtkit) into an engine, then run it if this machine can."""
    be = get_backend(backend)
    model = tiny_cnn_path()
    _echo(f"trtkit demo: building {model.name} with {be.label} ...")
    built = build_engine(model, shapes=TINY_CNN_SHAPES, backend=be, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = output or Path(tmp) / "tiny_cnn.engine"
        built.save(path)
        m = built.manifest
        _echo(f"built {path if output else 'tiny_cnn.engine'}: {m.plan_size / 1e3:.0f} kB, "
                   f"built in {m.extra.get('build_seconds', 0):.2f} s")
        for t in m.tensors:
            _echo(f"  {t.mode:<6} {t.name:<6} {t.dtype} {format_shape(t.shape)}")
        blocker = run_blocker(be)
        if blocker is not None:
            _echo(f"not running the engine: {blocker}.")
            _echo("The build side works here; run the engine on a machine with a supported GPU.")
            return 0
        engine = Engine.load(path, backend=be)
        x = dtypes.random_array(np.dtype(np.float32), (4, 3, 64, 64), np.random.default_rng(0))
        probs = np.asarray(engine({"image": x})["probs"])
        _echo(f"ran it on {engine.runtime.device_info.name}: image {format_shape(x.shape)} -> probs "
                   f"{format_shape(probs.shape)}; each row sums to {float(probs.sum(axis=1).mean()):.4f} (softmax)")
    return 0
