"""The one checker of the fault tests: every submitted task id has exactly one outcome."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID

from dispatcher.store.records import TaskRecord


@dataclass(frozen=True)
class Tally:
    """What a fault run did to its tasks."""

    scenario: str
    tasks: int
    faults: int
    outcomes: int
    lost: int
    unexpected: int
    duplicate_results: int
    reruns: int


def tally(scenario: str, ids: list[UUID], records: list[TaskRecord], *, faults: int) -> Tally:
    """Count outcomes; ``WQ_TEST_FAULT_REPORT`` (a file) collects runs for docs/reliability.md."""
    by_id = {record.task_id: record for record in records}
    result = Tally(
        scenario=scenario,
        tasks=len(ids),
        faults=faults,
        outcomes=sum(1 for i in ids if i in by_id and by_id[i].state.is_final),
        lost=sum(1 for i in ids if i not in by_id or not by_id[i].state.is_final),
        unexpected=len(set(by_id) - set(ids)),
        duplicate_results=sum(record.duplicate_results for record in records),
        reruns=sum(1 for record in records if record.redelivered),
    )
    report = os.environ.get("WQ_TEST_FAULT_REPORT")
    if report:
        with Path(report).open("a") as out:
            out.write(json.dumps(asdict(result)) + "\n")
    return result


def assert_exactly_one_outcome_each(
    scenario: str, ids: list[UUID], records: list[TaskRecord], *, faults: int = 1
) -> Tally:
    """Fail unless every id has one final record and no other record appeared."""
    result = tally(scenario, ids, records, faults=faults)
    unfinished = [r.task_id for r in records if not r.state.is_final]
    assert result.unexpected == 0, "records appeared for ids that were never submitted"
    assert result.lost == 0, f"{result.lost} task(s) without an outcome: {unfinished[:5]}"
    assert result.outcomes == len(ids)
    return result
