"""``python -m director``: the command line (director.cli)."""

from .cli import run

run()
