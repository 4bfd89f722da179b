"""Smoke run of the benchmark suite (bench/): every script on tiny sizes, so none rots.

No target is asserted: a smoke run's figures mean nothing. Each script deletes its own
queues; the private-node helper is checked on its own.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pika
import pika.exceptions
import pytest

from bench.broker import private_broker
from tests.conftest import REPO


def test_every_benchmark_script_runs_and_the_table_renders(broker_reachable: str) -> None:
    argv = [sys.executable, "-m", "bench", "--smoke", "--repeats=1", "--timeout=40"]
    done = subprocess.run(
        [*argv, f"--amqp-url={broker_reachable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for row in ("round trip K=1, tasks/s", "submit rate", "latency p99", "fairness", "drain rate"):
        assert f"| {row}" in done.stdout
    assert re.search(r"^- (MET|MISSED) +submit rate", done.stdout, re.MULTILINE)
    assert "Failed runs" not in done.stdout


@pytest.mark.slow
def test_private_broker_answers_and_is_gone_after() -> None:
    with private_broker() as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        connection.close()
        assert broker.version
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.URLParameters(broker.url))


def test_the_store_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.store", "--tasks=20", "--batch=5", "--repeats=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    for step in ("add_submitted", "mark_queued", "record_results"):
        assert re.search(rf"^\| {step} \| \d+\.\d{{3}} \| \d+\.\d{{3}} \|$", done.stdout, re.M)
