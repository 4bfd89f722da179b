"""``python -m dispatcher``."""

from dispatcher.cli.main import run

run()
