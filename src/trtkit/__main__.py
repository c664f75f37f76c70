"""``python -m trtkit`` runs the command line."""

from .cli import run

run()
