"""``python -m dispatcher``."""

from dispatcher.cli import run

run()
