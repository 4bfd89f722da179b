"""The demo's mix through real executors whose schemas the dispatcher knows.

Once executors have published their params schemas, a batch with one invalid request is
refused whole; the demo must show that request refused on its own and run all the others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from common import AmqpSettings, InvalidParams
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from examples.demo import run_demo, submit_each_refusal_alone, task_mix
from tests.conftest import REPO
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_async, wait_until


async def test_the_demo_refuses_its_invalid_task_alone_and_runs_the_rest(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, processes: Processes
) -> None:
    processes.executor("exec-demo", tasks="examples.tasks", concurrency=4)
    requests = task_mix(50)  # one of them (the 25th) has params its schema refuses
    async with open_dispatcher(amqp_settings, dispatcher_settings, monitor_executors=True) as d:

        async def schemas_known() -> bool:
            return {"render_report", "word_count"} <= {t.name for t in await d.fleet.task_types()}

        await wait_for_async(schemas_known, timeout=30, what="the executor's task types")
        with pytest.raises(InvalidParams):
            await d.submit_many(requests)  # all or nothing: the batch is refused whole

        submitted: list[int] = []
        ids, refused = await submit_each_refusal_alone(d, requests, progress=submitted.append)

        assert [(r.task_type, r.params) for r, _ in refused] == [
            ("render_report", {"title": "bad", "pages": 0})
        ]
        assert len(ids) == len(requests) - 1
        assert sum(submitted) == len(requests)

        async def all_final() -> bool:
            return all(r.state.is_final for r in await d.get_many(ids))

        await wait_for_async(all_final, timeout=60, what="every submitted task's outcome")


async def test_the_demo_deletes_its_queues_at_the_end(
    amqp_settings: AmqpSettings,
    broker: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WQ_AMQP_URL", amqp_settings.url.get_secret_value())
    monkeypatch.setenv("WQ_AMQP_PREFIX", amqp_settings.prefix)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # its executors import examples.tasks
    monkeypatch.chdir(tmp_path)  # .wq-demo/ with the executors' logs
    (tmp_path / ".wq-demo").mkdir()
    topology = amqp_settings.topology

    code = await run_demo(12, 1, 60, str(tmp_path / "tasks.sqlite3"), teardown=True)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "every task accounted for: 12/12" in out
    assert f"deleted the demo's {len(topology.every_queue()) + 1} queues" in out
    names = [*topology.every_queue(), topology.task_queue_of("reports")]
    assert not [name for name in names if broker.exists(name)]
    assert not broker.exists(topology.task_exchange, exchange=True)


@pytest.mark.timeout(120)
def test_the_demo_serves_its_tasks_on_the_dashboard_until_stopped(
    amqp_settings: AmqpSettings, processes: Processes, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port: the demo prints the URL it serves
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = processes.env(PYTHONPATH=str(REPO), WQ_DISPATCHER_HTTP_PORT=str(port))
    (tmp_path / ".wq-demo").mkdir()
    argv = [sys.executable, "-m", "examples.demo", "--tasks", "6", "--executors", "1", "--serve"]
    demo = subprocess.Popen(
        [*argv, "--store", str(tmp_path / "tasks.sqlite3")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its group: the dashboard's dispatcher goes with it if killed
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("dashboard: "):
                break
        url = f"http://127.0.0.1:{port}/"
        assert lines[-1].startswith(f"dashboard: {url}"), "".join(lines)
        assert "every task accounted for: 6/6" in "".join(lines)

        def serving() -> bool:
            try:
                return httpx.get(url + "ui/tasks", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=30, what="the demo's dashboard to answer")
        page = httpx.get(url + "ui/tasks", timeout=5).text
        assert page.count('name="task_id"') == 6  # every demo task, on the first page
        # SIGTERM: under a non-interactive shell's background job SIGINT arrives ignored, and
        # the demo stops on either.
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=40) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)  # the demo and its dispatcher, if still there
        demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
