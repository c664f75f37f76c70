"""``trtkit bench ENGINE``: measure throughput and latency the way trtexec does."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trtkit.cli._options import echo_json
from trtkit.cli.run import backend_options, load_kwargs, load_options
from trtkit.files import atomic_write, refuse_overwrite
from trtkit.manifest import manifest_path
from trtkit.profiles import parse_shape_spec
from trtkit.runtime.loading import load_engine
from trtkit.text import safe_lines
from trtkit.tools.bench import bench_report, benchmark


def _echo(message: object = "", err: bool = False) -> None:
    """click.echo with names from files escaped (no terminal escape sequences reach the terminal)."""
    click.echo(safe_lines(message), err=err)


@click.command("bench")
@click.argument("engine", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--shapes", multiple=True, metavar="SPEC",
              help="Input shapes, trtexec syntax x:8x3x224x224; repeat to sweep several shapes.")
@click.option("--warmUp", "--warmup", "warmup", type=float, default=200.0, show_default=True,
              help="Warm-up time in ms.")
@click.option("--duration", type=float, default=3.0, show_default=True, help="Measured time in seconds.")
@click.option("--iterations", type=click.IntRange(1), default=None, help="Run this many iterations instead.")
@click.option("--useCudaGraph/--noCudaGraph", "--cuda-graph/--no-cuda-graph", "cuda_graph", default=True,
              show_default=True, help="Replay a CUDA graph captured per shape.")
@click.option("--includeTransfers", "--include-transfers", "include_transfers", is_flag=True,
              help="Include H2D and D2H copies in the latency (trtexec excludes them with --noDataTransfers).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--json-file", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="PATH", help="Also write the JSON report to PATH.")
@backend_options
@load_options
def bench_command(engine: Path, shapes: tuple[str, ...], warmup: float, duration: float, iterations: int | None,
                  cuda_graph: bool, include_transfers: bool, as_json: bool, json_path: Path | None, device: int,
                  backend: str | None, plugins: tuple[str, ...],
                  allow_host_code: bool, lean_runtime: str | None) -> int:
    """Benchmark ENGINE: throughput; min/mean/median/p90/p95/p99/max of latency, enqueue, H2D, compute, D2H."""
    sweep = [parse_shape_spec(s) for s in shapes] if shapes else None
    if json_path is not None:  # before the run, not after minutes of it
        refuse_overwrite(json_path, [engine, manifest_path(engine)], what="--json-file")
    with load_engine(engine, device=device, backend=backend,
                     **load_kwargs(plugins, allow_host_code, lean_runtime)) as le:
        res = benchmark(le, shapes=sweep, warmup=warmup / 1000.0, duration=duration, iterations=iterations,
                        cuda_graph=cuda_graph, include_transfers=include_transfers)
    results = res if isinstance(res, list) else [res]
    report = bench_report(results, engine=str(engine))
    if json_path is not None:
        atomic_write(json_path, (json.dumps(report, indent=2) + "\n").encode())
    if as_json:
        echo_json(report)
    else:
        for r in results:
            _echo(r.format())
    if json_path is not None:
        _echo(f"wrote {json_path}", err=as_json)
    return 0
