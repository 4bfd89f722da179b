"""``python -m executor``."""

from executor.cli import run

run()
