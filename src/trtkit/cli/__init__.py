"""The ``trtkit`` command line: one module per command, each testable through :func:`main`."""

from __future__ import annotations

from trtkit.cli.main import main, run

__all__ = ["main", "run"]
