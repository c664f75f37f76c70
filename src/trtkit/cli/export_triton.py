"""``trtkit export-triton ENGINE REPO --name NAME``: write an engine into a Triton model repository."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.cli._options import split_multi
from trtkit.errors import TritonExportError
from trtkit.tools.triton import check_with_triton, export_triton


def _gpu_list(values: tuple[str, ...]) -> list[int] | None:
    items = split_multi(values)
    if not items:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise click.BadParameter(f"{','.join(items)!r}: expected GPU indices such as 0,1", param_hint="--gpus") \
            from None


@click.command("export-triton")
@click.argument("engine", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None,
              help="Triton model name (the directory REPOSITORY/NAME). Default: ENGINE's file stem (resnet50 for "
                   "resnet50.engine).")
@click.option("--version", "version", type=click.IntRange(0, 2**63 - 1), default=1, show_default=True,
              help="Model version directory to write (an integer from 0 to 2^63-1).")
@click.option("--max-batch-size", "max_batch_size", type=click.IntRange(0), default=None,
              help="Cap Triton's batch size; 0 turns batching off. Default: from the engine's profiles.")
@click.option("--dynamic-batching/--no-dynamic-batching", "dynamic_batching", default=None,
              help="Triton's dynamic batcher (default: on when the model batches).")
@click.option("--preferred-batch-size", "preferred", multiple=True, metavar="N[,N...]",
              help="Preferred batch sizes for the dynamic batcher (default: the profiles' opt batch sizes).")
@click.option("--max-queue-delay-us", "max_queue_delay_us", type=click.IntRange(0), default=None,
              help="Microseconds the dynamic batcher may wait to fill a batch.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Execution instances per GPU (per optimization profile when the engine has several).")
@click.option("--gpus", "gpus", multiple=True, metavar="IDS",
              help="GPU indices for the instances, e.g. 0,1 (default: every GPU).")
@click.option("--force", is_flag=True, help="Replace the version if it exists.")
@click.option("--allow-rtx", "allow_rtx", is_flag=True,
              help="Export a TensorRT-RTX plan anyway (Triton's TensorRT backend cannot load it).")
@click.option("--runtime", type=click.Choice(["tensorrt", "python"]), default="tensorrt", show_default=True,
              help="tensorrt: Triton's TensorRT backend loads the plan; python: a Python-backend model.py runs it "
                   "with trtkit (any engine trtkit runs, TensorRT-RTX plans included).")
@click.option("--check", is_flag=True,
              help="Then load the model in a real Triton (nvidia-pytriton's tritonserver, loopback only) and print "
                   "its verdict; exit status 1 unless Triton accepted the config.")
@click.option("--print", "print_config", is_flag=True, help="Also print the generated config.pbtxt.")
def export_triton_command(engine: Path, repository: Path, name: str | None, version: int, max_batch_size: int | None,
                          dynamic_batching: bool | None, preferred: tuple[str, ...], max_queue_delay_us: int | None,
                          instances: int, gpus: tuple[str, ...], force: bool, allow_rtx: bool, runtime: str,
                          check: bool, print_config: bool) -> int:
    """Export ENGINE (built by trtkit, with its manifest) as a Triton model in REPOSITORY.

    Writes REPOSITORY/NAME/config.pbtxt and REPOSITORY/NAME/VERSION/model.plan (NAME defaults to ENGINE's
    file stem). Serve it with a Triton
    release whose TensorRT version matches the one that built the engine.
    """
    preferred_sizes: list[int] | None = None
    if preferred:
        try:
            preferred_sizes = [int(v) for v in split_multi(preferred)]
        except ValueError:
            raise click.BadParameter("expected integers such as 4,8", param_hint="--preferred-batch-size") \
                from None
    result = export_triton(
        engine, repository, name=name, version=version, max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching, preferred_batch_sizes=preferred_sizes,
        max_queue_delay_us=max_queue_delay_us, instances=instances, gpus=_gpu_list(gpus), force=force,
        allow_rtx=allow_rtx, runtime="python" if runtime == "python" else "tensorrt",
    )
    for warning in result.warnings:
        click.echo(f"trtkit: warning: {warning}", err=True)
    for note in result.config.notes:
        click.echo(f"trtkit: note: {note}", err=True)
    cfg = result.config
    batching = f"max_batch_size {cfg.max_batch_size}" + (
        f", dynamic batching (preferred {list(cfg.preferred_batch_sizes)})" if cfg.dynamic_batching else "")
    click.echo(f"exported {engine} as Triton model {result.model_dir.name!r} version {result.version}: "
               f"{result.plan_path}, "
               f"{result.config_path} ({batching})")
    if print_config:
        click.echo(cfg.text, nl=False)
    if check:
        verdict = check_with_triton(repository, result.model_dir.name)
        click.echo(f"triton: {verdict.line()}")
        if verdict.status == "refused":
            raise TritonExportError(f"Triton {verdict.triton_version} refused the exported config: {verdict.reason}")
        return 0 if verdict.ok else 1
    return 0
