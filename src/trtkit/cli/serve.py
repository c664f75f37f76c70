"""``trtkit serve ENGINE|MODEL.onnx``: serve an engine with Triton Inference Server (PyTriton)."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.engine import Engine
from trtkit.profiles import profiles_from_trtexec
from trtkit.tools.serve import Serving, serve


def _ready(serving: Serving) -> None:
    cfg = serving.config
    batching = (f"dynamic batching up to {cfg.max_batch_size}" + (
        f" (preferred {list(cfg.preferred_batch_sizes)})" if cfg.preferred_batch_sizes else "")
        if cfg.max_batch_size else "no batching")
    click.echo(f"serving model {cfg.name!r} ({batching}, {cfg.instances} instance(s)): HTTP {serving.http_url}, "
               f"gRPC {serving.grpc_url}, metrics {serving.metrics_url}; Ctrl-C or SIGTERM stops it", err=True)
    for note in cfg.notes:
        click.echo(f"trtkit: note: {note}", err=True)


@click.command("serve")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Model name clients call (default: MODEL's file stem).")
@click.option("--shapes", multiple=True, metavar="SPEC",
              help="For an ONNX MODEL: fixed input shapes, trtexec syntax x:8x3x224x224.")
@click.option("--minShapes", "min_shapes", multiple=True, metavar="SPEC", help="For an ONNX MODEL: profile min.")
@click.option("--optShapes", "opt_shapes", multiple=True, metavar="SPEC", help="For an ONNX MODEL: profile opt.")
@click.option("--maxShapes", "max_shapes", multiple=True, metavar="SPEC", help="For an ONNX MODEL: profile max.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address every endpoint binds to (0.0.0.0 exposes the server to the network).")
@click.option("--http-port", "http_port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="HTTP port (0: a free one).")
@click.option("--grpc-port", "grpc_port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="gRPC port (0: a free one).")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(0, 65535), default=8002, show_default=True,
              help="Prometheus metrics port (0: a free one).")
@click.option("--max-batch-size", "max_batch_size", type=click.IntRange(0), default=None,
              help="Cap Triton's dynamic batching; 0 turns it off. Default: from the engine's profiles.")
@click.option("--max-queue-delay-us", "max_queue_delay_us", type=click.IntRange(0), default=0, show_default=True,
              help="Microseconds the dynamic batcher may wait to fill a batch.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Model instances, each with its own execution context.")
@click.option("--device", type=click.IntRange(0), default=0, show_default=True, help="CUDA device.")
@click.option("--backend", default=None, metavar="NAME", help="tensorrt or tensorrt_rtx (for an ONNX MODEL).")
def serve_command(model: Path, name: str | None, shapes: tuple[str, ...], min_shapes: tuple[str, ...],
                  opt_shapes: tuple[str, ...], max_shapes: tuple[str, ...], address: str, http_port: int,
                  grpc_port: int, metrics_port: int, max_batch_size: int | None, max_queue_delay_us: int,
                  instances: int, device: int, backend: str | None) -> int:
    """Serve MODEL (an engine built by trtkit, or an .onnx model, built or taken from the engine cache) with
    Triton Inference Server through PyTriton (pip install nvidia-pytriton; in a trtkit clone: pip install
    '.[serve]').

    Dynamic batching is on when every tensor has a leading dynamic batch dim; HTTP, gRPC and metrics bind to
    127.0.0.1 unless --address says otherwise. Ready, health, statistics and metrics come from Triton.
    """
    onnx = model.suffix.lower() == ".onnx"
    if not onnx and (shapes or min_shapes or opt_shapes or max_shapes or backend):
        raise click.UsageError("--shapes/--minShapes/--optShapes/--maxShapes/--backend apply to an ONNX MODEL")
    if onnx:
        profiles = profiles_from_trtexec(shapes, min_shapes, opt_shapes, max_shapes) or None
        engine: object = Engine.from_onnx(model, shapes=profiles, backend=backend, device=device)
    else:
        engine = model
    serve(engine, name=name or model.stem, address=address, http_port=http_port, grpc_port=grpc_port,
          metrics_port=metrics_port, max_batch_size=max_batch_size, instances=instances,
          max_queue_delay_us=max_queue_delay_us, device=device, ready=_ready)
    click.echo("stopped", err=True)
    return 0
