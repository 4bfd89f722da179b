"""Plain-text tables for the command line, safe for what executors and producers report."""

from __future__ import annotations

from collections.abc import Sequence


def one_line(text: str, limit: int) -> str:
    """``text`` (untrusted) on one line of at most ``limit`` printable characters.

    Control characters (a terminal escape sequence in an error message, say) become spaces.
    """
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(printable.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "") -> list[str]:
    """Lines of a table: columns padded to their widest cell, the last one left ragged."""
    every = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in every) for i in range(len(header) - 1)]
    return [
        indent
        + "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in every
    ]
