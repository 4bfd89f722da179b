"""The soak, small: every fault kind once under a backlog, every task id counted.

``python -m tests.faults.soak`` runs it at full size (docs/reliability.md has its figures).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.faults.soak import run


@pytest.mark.timeout(300)  # its own node, its services, seven faults and 600 tasks: about 40 s
async def test_a_small_soak_meets_every_target(tmp_path: Path) -> None:
    figures = await run(600, executors=3, scale=0.05, task_ms=100, seed=3, work=tmp_path)

    print(json.dumps(asdict(figures)))
    assert set(figures.faults.values()) == {1}  # one of each kind
    assert figures.lost == 0
    assert figures.dead_never_started == 0
    assert figures.succeeded_in_dead_letters == 0
    assert figures.succeeded == figures.tasks, figures.errors
