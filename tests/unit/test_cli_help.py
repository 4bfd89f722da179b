"""The two command lines: help text, and the exit codes of paths that need no broker."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from common import TaskMessage
from common import exit_codes as codes
from dispatcher.cli import main as dispatcher_cli
from dispatcher.cli import tasks as cli_tasks
from dispatcher.store.backends import open_store
from executor import cli as executor_cli

DISPATCHER_CODES = {
    codes.OK,
    codes.TASK_FAILED,
    codes.USAGE,
    codes.INVALID_TASK,
    codes.NOT_FOUND,
    codes.BROKER_UNAVAILABLE,
    codes.INTERNAL,
    codes.NOT_PUBLISHED,
    codes.WAIT_TIMEOUT,
    codes.INTERRUPTED,
}
EXECUTOR_CODES = {
    codes.OK,
    codes.USAGE,
    codes.BROKER_UNAVAILABLE,
    codes.INTERNAL,
    codes.INTERRUPTED,
}


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here configures logging."""


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the dispatcher tries to connect."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the command tried to reach the broker")

    monkeypatch.setattr(cli_tasks, "open_dispatcher", refuse)


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "tasks.sqlite3"
    monkeypatch.setenv("WQ_DISPATCHER_STORE", str(path))
    return path


def _exit_codes_in(text: str) -> set[int]:
    """The numbers the help's "exit codes:" paragraph explains."""
    epilog = text[text.index("exit codes:") :]
    return {int(number) for number in re.findall(r"\b(\d+) ", epilog)}


def test_dispatcher_help_names_every_subcommand_and_exit_code() -> None:
    text = dispatcher_cli.build_parser().format_help()

    for command in ("serve", "submit", "status"):
        assert command in text
    assert _exit_codes_in(text) == DISPATCHER_CODES
    assert "WQ_AMQP_URL" in text
    assert "WQ_DISPATCHER_STORE" in text


def test_executor_help_names_every_subcommand_and_exit_code() -> None:
    text = executor_cli.build_parser().format_help()

    for command in ("run", "tasks"):
        assert command in text
    assert _exit_codes_in(text) == EXECUTOR_CODES
    assert "WQ_EXECUTOR_TASKS" in text


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        dispatcher_cli.main(["--help"])

    assert caught.value.code == 0
    assert "exit codes:" in capsys.readouterr().out


@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    "params", ["[1]", "not json", '"text"', '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"]
)
def test_submit_with_params_that_are_not_an_object_is_a_usage_error(
    params: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dispatcher_cli.main(["submit", "x", "--params", params]) == codes.USAGE

    assert "--params" in capsys.readouterr().err


@pytest.mark.usefixtures("no_broker")
def test_submit_with_a_bad_broker_url_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WQ_AMQP_URL", "http://guest:hunter2@localhost/")

    assert dispatcher_cli.main(["submit", "x"]) == codes.USAGE

    err = capsys.readouterr().err
    assert "WQ_AMQP_URL" in err
    assert "hunter2" not in err


def test_status_of_an_unknown_task_without_a_store_is_not_found(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = uuid4()

    assert dispatcher_cli.main(["status", str(task_id)]) == codes.NOT_FOUND

    assert str(task_id) in capsys.readouterr().err
    assert not store_path.exists()


def test_status_of_an_unknown_task_in_an_empty_store_is_not_found(store_path: Path) -> None:
    open_store(store_path).close()

    assert dispatcher_cli.main(["status", str(uuid4())]) == codes.NOT_FOUND


def test_status_prints_a_recorded_task(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = TaskMessage(
        task_id=uuid4(),
        task_type="word_count",
        params={"text": "a"},
        submitted_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    store = open_store(store_path)
    store.add_submitted([task])
    store.close()

    assert dispatcher_cli.main(["status", str(task.task_id), "--json"]) == codes.OK

    record = json.loads(capsys.readouterr().out)
    assert record["task_id"] == str(task.task_id)
    assert record["state"] == "submitted"


def test_status_with_a_malformed_id_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        dispatcher_cli.main(["status", "not-a-uuid"])

    assert caught.value.code == codes.USAGE


def test_executor_run_without_a_task_module_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert executor_cli.main(["run"]) == codes.USAGE

    assert "--tasks" in capsys.readouterr().err


def test_executor_with_a_missing_task_module_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert executor_cli.main(["tasks", "--tasks", "no_such_module_wq"]) == codes.USAGE

    assert "no_such_module_wq" in capsys.readouterr().err


def test_executor_tasks_lists_the_example_task_types(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert executor_cli.main(["tasks", "--tasks", "examples.tasks"]) == codes.OK

    assert capsys.readouterr().out.splitlines() == [
        "convert_currency(amount, source, target)",
        "notify(recipient, message, latency_ms)",
        "render_report(title, pages, ms_per_page)",
        "word_count(text, top)",
    ]


def test_executor_tasks_json_prints_params_schemas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert executor_cli.main(["tasks", "--tasks", "examples.tasks", "--json"]) == codes.OK

    schemas = json.loads(capsys.readouterr().out)
    assert sorted(schemas) == ["convert_currency", "notify", "render_report", "word_count"]
    assert schemas["word_count"]["required"] == ["text"]


def test_executor_reads_the_task_module_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WQ_EXECUTOR_TASKS", "examples.tasks:registry")

    assert executor_cli.main(["tasks"]) == codes.OK

    assert "word_count(text, top)" in capsys.readouterr().out
