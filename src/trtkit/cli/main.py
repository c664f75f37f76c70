"""Entry point: ``trtkit COMMAND ...``. Errors print one line; ``--debug`` shows the traceback."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

import click

from trtkit._version import __version__
from trtkit.builder.progress import builds_running
from trtkit.cli.bench import bench_command
from trtkit.cli.build import build_command
from trtkit.cli.cache import cache_command
from trtkit.cli.compare import compare_command
from trtkit.cli.debug import debug_command
from trtkit.cli.demo import demo_command
from trtkit.cli.doctor import doctor_command
from trtkit.cli.export_triton import export_triton_command
from trtkit.cli.inspect import inspect_command
from trtkit.cli.quantize import quantize_command
from trtkit.cli.run import run_command
from trtkit.cli.sanitize import sanitize_command
from trtkit.cli.serve import serve_command
from trtkit.errors import BuildCancelledError, TrtkitError
from trtkit.text import safe_lines


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="trtkit")
@click.option("--debug", is_flag=True, help="Show Python tracebacks and TensorRT's verbose log.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv TensorRT verbose).")
def cli(debug: bool, verbose: int) -> None:
    """trtkit: ONNX to TensorRT engine to outputs."""
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2 or debug:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))
    root = logging.getLogger("trtkit")
    root.handlers = [h for h in root.handlers if not isinstance(h, logging.StreamHandler)]
    root.addHandler(handler)
    root.setLevel(level)
    # TensorRT's log is not shown as it comes by default: a failing call's error carries what TensorRT said,
    # so showing it here too would print every message twice. -v shows its warnings, -vv everything.
    trt_level = {logging.WARNING: logging.CRITICAL + 1, logging.INFO: logging.WARNING}.get(level, logging.DEBUG)
    logging.getLogger("trtkit.tensorrt").setLevel(trt_level)


cli.add_command(build_command)
cli.add_command(inspect_command)
cli.add_command(demo_command)
cli.add_command(run_command)
cli.add_command(bench_command)
cli.add_command(compare_command)
cli.add_command(doctor_command)
cli.add_command(export_triton_command)
cli.add_command(cache_command)
cli.add_command(sanitize_command)
cli.add_command(serve_command)
cli.add_command(quantize_command)
cli.add_command(debug_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    0 success, 1 a trtkit error (one message, no traceback), 2 a usage error, 130 interrupted,
    70 an unexpected internal error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="trtkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("trtkit: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        # The message may quote a name or path that the user or a file gave (click types it Final).
        exc.message = safe_lines(exc.message)  # type: ignore[misc]
        exc.show()
        return exc.exit_code
    except BuildCancelledError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"trtkit: {safe_lines(exc)}", err=True)
        return 130
    except TrtkitError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"trtkit: error: {safe_lines(exc)}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("trtkit: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(
            f"trtkit: internal error: {type(exc).__name__}: {safe_lines(exc)}\n"
            "This is a bug in trtkit; rerun with --debug for the traceback and report it.",
            err=True,
        )
        return 70
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    status = main()
    if status == 130 and builds_running():
        # An interrupted build is still inside TensorRT on its worker thread until TensorRT's next progress
        # report; nothing has been written yet, so leave now instead of waiting for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
