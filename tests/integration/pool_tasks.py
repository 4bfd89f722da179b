"""A second task module, for a second executor pool: its types route to the ``reports`` queue."""

from __future__ import annotations

from common import TaskRegistry

registry = TaskRegistry()


@registry.task(queue="reports")
def render_report(title: str) -> str:
    """Render a report: its title in capitals."""
    return title.upper()
