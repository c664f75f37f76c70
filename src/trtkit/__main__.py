"""``python -m trtkit`` runs the command line."""

from trtkit.cli import run

run()
