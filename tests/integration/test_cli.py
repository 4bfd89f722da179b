"""The command lines as users run them: real processes, real broker, meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import AmqpSettings, load_registry
from common import exit_codes as codes
from dispatcher.store.backends import open_store
from tests.conftest import REPO
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers


def run_cli(
    *argv: str, amqp: AmqpSettings | None, store: Path | str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    home = store.parent if isinstance(store, Path) else Path(tempfile.gettempdir())
    env = {"PATH": "/usr/bin:/bin", "WQ_DISPATCHER_STORE": str(store), "HOME": str(home)}
    if amqp is not None:
        env |= {"WQ_AMQP_URL": amqp.url.get_secret_value(), "WQ_AMQP_PREFIX": amqp.prefix}
    if url is not None:
        env["WQ_AMQP_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", argv[0], *argv[1:]],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_wait_prints_the_result_and_status_reads_it(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    processes.executor("exec-cli", tasks="examples.tasks")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    submitted = run_cli(
        "dispatcher", "submit", "word_count", "--params", '{"text": "a b a"}', "--wait",
        amqp=amqp_settings, store=store,
    )  # fmt: skip
    assert submitted.returncode == codes.OK, submitted.stderr
    record = json.loads(submitted.stdout)
    assert record["state"] == "succeeded"
    assert record["result"]["words"] == 3

    status = run_cli("dispatcher", "status", record["task_id"], amqp=None, store=store)
    assert status.returncode == codes.OK
    assert "succeeded" in status.stdout
    as_json = run_cli("dispatcher", "status", record["task_id"], "--json", amqp=None, store=store)
    assert json.loads(as_json.stdout)["task_id"] == record["task_id"]


def test_failed_task_exits_1_and_unknown_type_exits_65_with_wait(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    processes.executor("exec-cli", tasks="examples.tasks")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    failing = run_cli(
        "dispatcher", "submit", "convert_currency", "--wait",
        "--params", '{"amount": 1, "source": "EUR", "target": "XTS"}',
        amqp=amqp_settings, store=store,
    )  # fmt: skip
    assert failing.returncode == codes.TASK_FAILED
    assert json.loads(failing.stdout)["error"]["kind"] == "handler_error"
    unknown = run_cli(
        "dispatcher", "submit", "no_such_type", "--wait", amqp=amqp_settings, store=store
    )
    assert unknown.returncode == codes.INVALID_TASK
    assert json.loads(unknown.stdout)["error"]["kind"] == "unknown_task_type"


def test_submit_refuses_unknown_type_and_invalid_params_before_publishing(
    amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    common = ("--tasks", "examples.tasks")
    unknown = run_cli("dispatcher", "submit", "nope", *common, amqp=amqp_settings, store=store)
    invalid = run_cli(
        "dispatcher", "submit", "word_count", "--params", '{"text": 5, "top": 0}', *common,
        amqp=amqp_settings, store=store,
    )  # fmt: skip
    assert unknown.returncode == codes.INVALID_TASK
    assert "unknown task type: 'nope'" in unknown.stderr
    assert invalid.returncode == codes.INVALID_TASK
    assert "top" in invalid.stderr
    assert broker.counts(amqp_settings.topology.task_queue).messages == 0


def test_unreachable_broker_exits_69_without_leaking_the_password(tmp_path: Path) -> None:
    url = "amqp://someone:s3cret-pass@127.0.0.1:1/"
    store = tmp_path / "tasks.sqlite3"
    submit = run_cli("dispatcher", "submit", "echo", amqp=None, store=store, url=url)
    executor = run_cli(
        "executor", "run", "--tasks", "examples.tasks", amqp=None, store=store, url=url
    )
    for result in (submit, executor):
        assert result.returncode == codes.BROKER_UNAVAILABLE, result.stderr
        assert "s3cret-pass" not in result.stderr + result.stdout
        assert "127.0.0.1:1" in result.stderr


def test_bad_params_json_and_bad_config_exit_2(tmp_path: Path) -> None:
    store = tmp_path / "tasks.sqlite3"
    bad_json = run_cli("dispatcher", "submit", "echo", "--params", "{nope", amqp=None, store=store)
    bad_url = run_cli("dispatcher", "submit", "echo", amqp=None, store=store, url="http://x/")
    no_module = run_cli("executor", "run", "--tasks", "no.such.module", amqp=None, store=store)
    assert bad_json.returncode == codes.USAGE
    assert "not valid JSON" in bad_json.stderr
    assert bad_url.returncode == codes.USAGE
    assert "WQ_AMQP_URL" in bad_url.stderr
    assert no_module.returncode == codes.USAGE
    assert "no.such.module" in no_module.stderr


def test_executor_stops_cleanly_on_sigterm(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker
) -> None:
    executor = processes.executor("exec-term")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    executor.terminate()
    assert executor.wait(timeout=20) == codes.OK
    log = processes.log("exec-term")
    assert '"executor_stopped"' in log
    # Connections closed on purpose are not reported as lost: operators alert on that line.
    assert '"broker_connection_lost"' not in log


def test_submit_wait_leaves_results_to_a_running_dispatcher(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    serve_store = tmp_path / "serve.sqlite3"
    processes.dispatcher("dispatcher", serve_store)
    processes.executor("exec-cli")
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    # Same store as serve: --wait reads the outcome serve records.
    shared = run_cli(
        "dispatcher", "submit", "echo", "--params", '{"value": 7}', "--wait",
        amqp=amqp_settings, store=serve_store,
    )  # fmt: skip
    assert shared.returncode == codes.OK, shared.stderr
    assert json.loads(shared.stdout)["result"] == 7
    # Another store: the CLI must not take the result away from serve's store.
    other = run_cli(
        "dispatcher", "submit", "echo", "--params", '{"value": 8}', "--wait", "--timeout", "3",
        amqp=amqp_settings, store=tmp_path / "other.sqlite3",
    )  # fmt: skip
    assert other.returncode == codes.WAIT_TIMEOUT
    assert "use this store" in other.stderr
    task_id = other.stderr.split("no outcome for task ")[1].split()[0]
    status = run_cli("dispatcher", "status", task_id, amqp=None, store=serve_store)
    assert "succeeded" in status.stdout


def test_submit_with_the_same_idempotency_key_twice_makes_one_task(
    amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    argv = ("dispatcher", "submit", "echo", "--idempotency-key", "invoice-2026-0042")
    first = run_cli(*argv, amqp=amqp_settings, store=store)
    second = run_cli(*argv, amqp=amqp_settings, store=store)
    assert first.returncode == second.returncode == codes.OK
    assert first.stdout.strip() == second.stdout.strip()
    assert broker.counts(amqp_settings.topology.task_queue).messages == 1


def test_cancel_flags_a_queued_task_and_status_shows_it(
    amqp_settings: AmqpSettings, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    submitted = run_cli("dispatcher", "submit", "echo", amqp=amqp_settings, store=store)
    assert submitted.returncode == codes.OK, submitted.stderr
    task_id = submitted.stdout.strip()

    cancelled = run_cli("dispatcher", "cancel", task_id, amqp=amqp_settings, store=store)
    again = run_cli("dispatcher", "cancel", task_id, "--json", amqp=amqp_settings, store=store)
    status = run_cli("dispatcher", "status", task_id, amqp=None, store=store)

    assert cancelled.returncode == codes.OK, cancelled.stderr
    assert "cancel requested" in cancelled.stdout
    assert again.returncode == codes.OK, again.stderr
    assert json.loads(again.stdout)["outcome"] == "requested"
    assert "state     queued" in status.stdout
    assert "cancel    requested" in status.stdout
    assert status.stdout.splitlines()[-1].endswith(" via cli")  # the entry point is kept


def test_cancel_of_an_unknown_task_exits_66(amqp_settings: AmqpSettings, tmp_path: Path) -> None:
    missing = "0b5e2a8e-3f7c-4a0e-9a57-1d8c0c1f6a11"

    cancelled = run_cli(
        "dispatcher", "cancel", missing, amqp=amqp_settings, store=tmp_path / "none.sqlite3"
    )

    assert cancelled.returncode == codes.NOT_FOUND
    assert missing in cancelled.stderr


UNCHECKED = "were not checked: no executor has published its task types"


def test_submit_on_a_fresh_store_warns_that_the_type_was_not_checked(
    amqp_settings: AmqpSettings, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"

    submitted = run_cli("dispatcher", "submit", "totally_bogus", amqp=amqp_settings, store=store)
    scheduled = run_cli(
        "dispatcher", "schedule", "add", "bogus", "--cron", "@daily", "--type", "totally_bogus",
        amqp=None, store=store,
    )  # fmt: skip

    # Accepted as before (nothing can tell it is bogus), but no longer silently.
    assert submitted.returncode == codes.OK, submitted.stderr
    assert len(submitted.stdout.split()) == 1
    assert "'totally_bogus'" in submitted.stderr
    assert UNCHECKED in submitted.stderr
    assert scheduled.returncode == codes.OK, scheduled.stderr
    assert UNCHECKED in scheduled.stderr


def test_submit_says_nothing_once_types_are_checked(
    amqp_settings: AmqpSettings, tmp_path: Path
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    store = open_store(store_path)
    infos = [load_registry("examples.tasks").get(name).describe() for name in ("word_count",)]
    store.publish_task_types(infos, published_by="exec-a", at=datetime.now(UTC))
    store.close()

    published = run_cli(
        "dispatcher", "submit", "word_count", "--params", '{"text": "a"}',
        amqp=amqp_settings, store=store_path,
    )  # fmt: skip
    bogus = run_cli("dispatcher", "submit", "totally_bogus", amqp=amqp_settings, store=store_path)
    with_module = run_cli(
        "dispatcher", "submit", "word_count", "--params", '{"text": "a"}',
        "--tasks", "examples.tasks", amqp=amqp_settings, store=tmp_path / "other.sqlite3",
    )  # fmt: skip

    assert (published.returncode, published.stderr) == (codes.OK, "")
    assert bogus.returncode == codes.INVALID_TASK
    assert UNCHECKED not in bogus.stderr
    assert (with_module.returncode, with_module.stderr) == (codes.OK, "")
