"""The table: every figure for us, the raw baseline and the peers, with ratios and targets.

Each target of the issue is printed as met or missed, and by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.suite import Results

Value = float | None


@dataclass(frozen=True, slots=True)
class Target:
    """One of the issue's targets: a measured value against a bound."""

    name: str
    value: Value
    bound: float
    at_least: bool
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        """Whether it is met; None when the value is missing."""
        if self.value is None:
            return None
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    def describe(self) -> str:
        """``MET``/``MISSED`` with the value, the bound and the distance to it."""
        if self.value is None:
            return f"{self.name}: NOT MEASURED"
        op = ">=" if self.at_least else "<="
        verdict = "MET" if self.met else "MISSED"
        gap = ""
        if not self.met:
            gap = f", off by {abs(self.value / self.bound - 1) * 100:.0f}% of the bound"
        shown = f"{self.value:.2f}{self.unit}"
        return f"{verdict:6} {self.name}: {shown} (target {op} {self.bound:g}{self.unit}{gap})"


def _fmt(value: Value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: Value, b: Value) -> Value:
    return None if a is None or b is None or b == 0 else a / b


def _ratio_text(name: str, value: Value) -> str:
    return "" if value is None else f"{value:.2f}x {name}"


class Table:
    """Rows of the report, built from the medians of the runs."""

    def __init__(self, results: Results) -> None:
        self.results = results
        self.rows: list[list[str]] = []
        self.targets: list[Target] = []

    def m(self, key: str, name: str) -> Value:
        """Median of one value."""
        return self.results.median(key, name)

    def row(
        self,
        figure: str,
        cells: tuple[Value, Value, Value, Value],
        ratios: str,
        *,
        digits: int = 0,
        runs: str = "",
    ) -> None:
        """Add one row."""
        self.rows.append([figure, *(_fmt(c, digits) for c in cells), ratios, runs])

    def runs(self, *keys: str) -> str:
        """How many runs the medians of a row come from."""
        return "/".join(str(self.results.count(k)) for k in keys)


def _roundtrip(t: Table) -> None:
    for k in (1, 2, 4):
        ours, raw = t.m(f"rt.ours.k{k}", "rate"), t.m(f"rt.raw-pika.k{k}", "rate")
        celery, dramatiq = t.m(f"rt.celery.k{k}", "rate"), t.m(f"rt.dramatiq.k{k}", "rate")
        ratios = [("raw pika", _ratio(ours, raw))]
        if k > 1:
            ratios += [("Celery", _ratio(ours, celery)), ("Dramatiq", _ratio(ours, dramatiq))]
            t.targets.append(Target(f"round trip K={k} vs raw pika", ratios[0][1], 0.9, True))
            t.targets.append(Target(f"round trip K={k} vs Celery", ratios[1][1], 2.0, True))
            t.targets.append(Target(f"round trip K={k} vs Dramatiq", ratios[2][1], 1.2, True))
        text = ", ".join(_ratio_text(n, r) for n, r in ratios if r is not None)
        keys = [f"rt.{s}.k{k}" for s in ("ours", "raw-pika", "celery", "dramatiq")]
        t.row(f"round trip K={k}, tasks/s", (ours, raw, celery, dramatiq), text, runs=t.runs(*keys))
    for k in (2, 4):
        ours = t.m(f"rt.ours.k{k}", "rate")
        for raw_key, client in (("raw-aio-pika", "aio-pika"), ("raw-pika-asyncio", "pika-asyncio")):
            rate = t.m(f"rt.{raw_key}.k{k}", "rate")
            t.row(
                f"  raw baseline with {client} workers, K={k}",
                (None, rate, None, None),
                _ratio_text(f"raw {client}", _ratio(ours, rate)),
                runs=t.runs(f"rt.{raw_key}.k{k}"),
            )
        if k == 2:
            four = t.m("rt.ours-4q.k2", "rate")
            t.row(
                "  ours, one pool on 4 task queues, K=2",
                (four, None, None, None),
                _ratio_text("ours on 1 queue", _ratio(four, ours)),
                runs=t.runs("rt.ours-4q.k2"),
            )
            t.targets.append(
                Target("4 queues vs 1 queue, round trip", _ratio(four, ours), 0.95, True)
            )


def _cpu(t: Table) -> None:
    systems = ("ours", "raw-pika", "celery", "dramatiq")
    for role, label in (
        ("workers", "worker"),
        ("driver", "dispatcher/client"),
        ("broker", "broker"),
    ):
        cells = tuple(t.m(f"rt.{s}.k2", f"cpu_ms_{role}") for s in systems)
        ratio = _ratio_text("raw pika", _ratio(cells[0], cells[1]))
        t.row(
            f"CPU ms per task, {label}, K=2",
            (cells[0], cells[1], cells[2], cells[3]),
            ratio,
            digits=2,
        )
    # The executor runs on pika on the event loop: its bare client is the closer baseline.
    for role, label in (("workers", "worker"), ("driver", "dispatcher")):
        cells = (
            t.m("rt.ours.k2", f"cpu_ms_{role}"),
            t.m("rt.raw-pika-asyncio.k2", f"cpu_ms_{role}"),
        )
        t.row(
            f"  {label}: ours / raw pika-asyncio",
            (cells[0], cells[1], None, None),
            _ratio_text("raw pika-asyncio", _ratio(cells[0], cells[1])),
            digits=2,
        )


# The phases of one task's latency (bench.ours latency): where the time goes.
_LATENCY_PHASES = (
    ("submit", "in submit() (recorded, publish confirmed)"),
    ("to_start", "submit() returned to the handler's start"),
    ("run", "the handler (a no-op)"),
    ("report", "finished to wait() returning (result confirmed, recorded)"),
)


def _submit_latency(t: Table) -> None:
    ours, raw = t.m("submit.ours", "rate"), t.m("submit.raw", "rate")
    ratio = _ratio(ours, raw)
    t.row(
        "submit rate, tasks/s (raw: aio-pika, window 256)",
        (ours, raw, None, None),
        _ratio_text("raw", ratio),
        runs=t.runs("submit.ours", "submit.raw"),
    )
    t.targets.append(Target("submit rate vs raw aio-pika publisher", ratio, 0.8, True))
    for q in ("p50", "p99"):
        ours, raw = t.m("latency.ours", f"{q}_ms"), t.m("latency.raw", f"{q}_ms")
        t.row(
            f"latency {q} at 200 tasks/s, ms (K=2)",
            (ours, raw, None, None),
            _ratio_text("raw", _ratio(ours, raw)),
            digits=1,
            runs=t.runs("latency.ours", "latency.raw"),
        )
    for phase, label in _LATENCY_PHASES:
        p99 = t.m("latency.ours", f"{phase}_p99_ms")
        t.row(
            f"  ours: {label}, p50 ms",
            (t.m("latency.ours", f"{phase}_p50_ms"), None, None, None),
            f"p99 {_fmt(p99, 1)} ms",
            digits=1,
        )
    p50 = _ratio(t.m("latency.ours", "p50_ms"), t.m("latency.raw", "p50_ms"))
    t.targets.append(Target("latency p50 vs raw", p50, 1.5, False))
    t.targets.append(Target("latency p99", t.m("latency.ours", "p99_ms"), 10, False, " ms"))


def _fairness(t: Table) -> None:
    ours, raw = t.m("fair.ours", "vs_ideal"), t.m("fair.raw-p1", "vs_ideal")
    t.row(
        "fairness: makespan / ideal, prefetch 1",
        (ours, raw, None, None),
        "",
        digits=2,
        runs=t.runs("fair.ours", "fair.raw-p1"),
    )
    t.row(
        "  ours, tasks spread over 4 task queues",
        (t.m("fair.ours-4q", "vs_ideal"), None, None, None),
        "",
        digits=2,
        runs=t.runs("fair.ours-4q"),
    )
    t.targets.append(
        Target("fairness across 4 queues", t.m("fair.ours-4q", "vs_ideal"), 1.1, False)
    )
    t.row(
        "  contrast: raw pika workers with prefetch 100",
        (None, t.m("fair.raw-p100", "vs_ideal"), None, None),
        "",
        digits=2,
        runs=t.runs("fair.raw-p100"),
    )
    t.targets.append(Target("fairness makespan vs ideal", ours, 1.1, False))


def _memory(t: Table) -> None:
    idle = t.m("idle.ours", "idle_rss_mib")
    t.row(
        "executor peak RSS idle, MiB (raw: pika)",
        (idle, t.m("idle.raw-pika", "idle_rss_mib"), None, None),
        f"raw aio-pika {_fmt(t.m('idle.raw-aio-pika', 'idle_rss_mib'), 1)}",
        digits=1,
    )
    t.targets.append(Target("executor idle RSS", idle, 40, False, " MiB"))
    busy = tuple(
        t.m(f"rt.{s}.k2", "worker_rss_mib") for s in ("ours", "raw-pika", "celery", "dramatiq")
    )
    t.row(
        "worker peak RSS after the K=2 round trip, MiB",
        (busy[0], busy[1], busy[2], busy[3]),
        "",
        digits=1,
    )
    t.row(
        "dispatcher peak RSS: 10,000-task round trip / serve idle, MiB",
        (
            t.m("rt.ours.k2", "driver_rss_mib"),
            t.m("idle.ours", "dispatcher_idle_rss_mib"),
            None,
            None,
        ),
        "2nd column: dispatcher serve",
        digits=1,
    )


def _backlog(t: Table) -> None:
    for size in ("small", "large"):
        ours, raw = t.m(f"backlog.ours.{size}", "rate"), t.m(f"backlog.raw.{size}", "rate")
        backlog = t.m(f"backlog.ours.{size}", "backlog")
        t.row(
            f"drain rate K=2, {_fmt(backlog)}-task backlog, tasks/s",
            (ours, raw, None, None),
            _ratio_text("raw pika", _ratio(ours, raw)),
            runs=t.runs(f"backlog.ours.{size}", f"backlog.raw.{size}"),
        )
    small, large = t.m("backlog.ours.small", "rate"), t.m("backlog.ours.large", "rate")
    raw = _ratio(t.m("backlog.raw.large", "rate"), t.m("backlog.raw.small", "rate"))
    ratio = _ratio(large, small)
    t.row("  large / small backlog drain rate", (ratio, raw, None, None), "", digits=2)
    t.targets.append(Target("large backlog drain vs small", ratio, 0.9, True))


_SECTIONS: tuple[Callable[[Table], None], ...] = (
    _roundtrip,
    _cpu,
    _submit_latency,
    _fairness,
    _memory,
    _backlog,
)
HEADER = ["figure", "this project", "raw baseline", "Celery", "Dramatiq", "ratios", "runs"]


def render(results: Results) -> str:
    """The markdown table, then the targets, then any failed runs."""
    table = Table(results)
    for section in _SECTIONS:
        section(table)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    lines += ["", "Targets:"]
    lines += [f"- {target.describe()}" for target in table.targets]
    if results.failures:
        lines += ["", "Failed runs:"]
        lines += [
            f"- {key}: {why.splitlines()[-1] if why else '?'}"
            for key, why in results.failures.items()
        ]
    return "\n".join(lines)
