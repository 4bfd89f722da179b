"""The dashboard in Chromium against a real ``dispatcher serve``, real executors and the
real broker: a task followed live, a failure's traceback, retry by button and by filter, a
dead task replayed, a schedule edited and paused, login, logout, the read-only token, CSRF,
and untrusted text rendered as text. Each page is checked with axe and photographed."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from common import AmqpSettings
from tests.browser.conftest import PageLog, assert_accessible, shot
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until

TASKS = "tests.integration.tasks"
TOKEN, READ_TOKEN = "dashboard-token-0123456789", "dashboard-reader-0123456789"
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"


@pytest.fixture
def api(start_dispatcher: Callable[..., str]) -> Iterator[httpx.Client]:
    """A dispatcher that knows the test tasks, with an HTTP client on its JSON API."""
    url = start_dispatcher(WQ_DISPATCHER_TASKS=TASKS, WQ_DISPATCHER_SCHEDULER_INTERVAL="0.2")
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def executor(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> Callable[..., subprocess.Popen[bytes]]:
    def start(name: str = "exec-1", tasks: str = TASKS) -> subprocess.Popen[bytes]:
        process = processes.executor(name, tasks=tasks)
        wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
        return process

    return start


def submit(api: httpx.Client, task_type: str, **params: Any) -> str:
    answer = api.post("/tasks", json={"task_type": task_type, "params": params})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["task_id"])


def outcome(api: httpx.Client, task_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = api.get(f"/tasks/{task_id}/result", params={"wait": 30}).json()
    return answer


def test_a_task_is_seen_queued_then_running_then_succeeded_without_a_reload(
    page: Page, api: httpx.Client, executor: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    task_id = submit(api, "sleep_ms", ms=1500, marker=str(marker))
    page.goto(f"{api.base_url}/ui/tasks/{task_id}")
    state = page.locator("#task-state")
    expect(state).to_have_text("queued")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    executor()
    expect(state).to_have_text("running", timeout=10_000)
    expect(page.locator("#live")).to_contain_text("exec-1")
    shot(page, "dashboard-task-running")
    assert outcome(api, task_id)["state"] == "succeeded"
    # Recorded: the page shows it within 2 s (it polls every second), with no reload.
    expect(state).to_have_text("succeeded", timeout=2_000)

    assert navigations == []
    assert_accessible(page)
    shot(page, "dashboard-task-succeeded")


def test_a_failed_task_shows_its_traceback_as_text_and_is_retried_by_its_button(
    page: Page,
    page_log: PageLog,
    api: httpx.Client,
    executor: Callable[..., subprocess.Popen[bytes]],
) -> None:
    executor()
    task_id = submit(api, "fail", message=HOSTILE)
    assert outcome(api, task_id)["state"] == "failed"

    page.goto(f"{api.base_url}/ui/tasks/{task_id}")
    traceback = page.locator("#live .traceback")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("RuntimeError")
    expect(page.locator("#live .error-text")).to_contain_text(HOSTILE)  # as text
    assert page.evaluate("window.pwned") is None
    assert_accessible(page)
    shot(page, "dashboard-task-failed")

    page.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status")).to_have_text("Retried 1 task(s).")
    page.reload()
    expect(page.locator("table tbody tr")).to_have_count(2, timeout=10_000)  # two attempts
    expect(page.get_by_text("retried by hand (dashboard)")).to_be_visible()
    assert page.evaluate("window.pwned") is None
    assert page_log.errors == []


def test_every_failed_task_of_a_filter_is_retried_after_a_confirmation_with_the_count(
    page: Page, api: httpx.Client, executor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    executor()
    failed = [submit(api, "fail", message=f"no {n}") for n in range(3)]
    done = submit(api, "echo", value=1)
    for task_id in [*failed, done]:
        outcome(api, task_id)

    page.goto(f"{api.base_url}/ui/tasks?task_type=fail")
    expect(page.locator("table.tasks tbody tr")).to_have_count(3)
    assert_accessible(page)
    shot(page, "dashboard-tasks")
    page.get_by_role("link", name=re.compile("Retry every failed")).click()
    expect(page.locator("#matched")).to_have_text("3")
    assert_accessible(page)
    shot(page, "dashboard-retry-confirmation")
    page.get_by_role("button", name="Retry 3 task(s)").click()

    expect(page.get_by_role("status")).to_have_text("Retried 3 task(s).")
    wait_until(
        lambda: all(outcome(api, t)["attempt"] == 2 for t in failed),
        timeout=20,
        what="every failed task to run its second attempt",
    )
    assert api.get(f"/tasks/{done}").json()["attempt"] == 1


def test_a_dead_task_is_replayed_and_another_purged_from_the_dead_letter_page(
    page: Page, api: httpx.Client, executor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # An executor without the type dead-letters it (unknown_task_type)...
    wrong = executor("wrong-pool", tasks="examples.tasks")
    task_id, other = submit(api, "echo", value="back"), submit(api, "echo", value="gone")
    assert outcome(api, task_id)["state"] == outcome(api, other)["state"] == "dead"
    wrong.terminate()
    wrong.wait(timeout=20)

    page.goto(f"{api.base_url}/ui/dead")
    row = page.locator("tbody tr").filter(has_text=task_id)
    expect(row).to_contain_text("unknown_task_type")
    assert_accessible(page)
    shot(page, "dashboard-dead-letters")
    executor("right-pool")  # ...and one with it runs the replay.
    row.get_by_role("button", name=f"Replay task {task_id}").click()

    expect(page.get_by_role("status")).to_have_text("Replayed 1 dead task(s).")
    assert outcome(api, task_id)["state"] == "succeeded"
    page.get_by_role("button", name=f"Purge task {other}").click()
    expect(page.locator("#confirm-what")).to_contain_text("cannot be undone")
    page.get_by_role("button", name="Purge").click()
    expect(page.get_by_role("status")).to_have_text("Purged 1 dead message(s).")
    expect(page.get_by_text("No dead-lettered tasks.")).to_be_visible()


def test_a_schedule_is_edited_and_paused(page: Page, api: httpx.Client) -> None:
    created = api.post(
        "/schedules",
        json={"name": "nightly", "cron": "0 3 * * *", "task_type": "echo", "params": {}},
    )
    assert created.status_code == 201, created.text

    page.goto(f"{api.base_url}/ui/schedules")
    assert_accessible(page)
    page.get_by_text("Edit nightly").click()
    page.get_by_label("Cron").first.fill("30 4 * * 1-5")
    page.get_by_role("button", name="Save nightly").click()
    expect(page.get_by_role("status")).to_have_text("Schedule saved.")
    page.get_by_role("button", name="Pause nightly").click()
    expect(page.get_by_role("status")).to_have_text("Schedule paused.")
    shot(page, "dashboard-schedules")

    schedule = api.get("/schedules/nightly").json()
    assert (schedule["cron"], schedule["paused"]) == ("30 4 * * 1-5", True)
    expect(page.get_by_role("button", name="Resume nightly")).to_be_visible()


def test_every_page_is_accessible_and_photographed(
    page: Page, api: httpx.Client, executor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    executor()
    outcome(api, submit(api, "echo", value=1))
    for path, name in [
        ("/", "overview"),
        ("/ui/executors", "executors"),
        ("/ui/queues", "queues"),
    ]:
        page.goto(f"{api.base_url}{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert_accessible(page)
        shot(page, f"dashboard-{name}")
    expect(page.locator("main")).to_contain_text("consumers", ignore_case=True)


def test_signing_in_and_out_with_the_token(
    page: Page, start_dispatcher: Callable[..., str]
) -> None:
    url = start_dispatcher(WQ_DISPATCHER_HTTP_TOKEN=TOKEN, WQ_DISPATCHER_HTTP_READ_TOKEN=READ_TOKEN)

    page.goto(f"{url}/ui/tasks")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Ftasks$"))
    assert_accessible(page)
    shot(page, "dashboard-login")
    page.get_by_label(re.compile("Token")).fill("not-the-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not right.")
    page.get_by_label(re.compile("Token")).fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{url}/ui/tasks")
    page.goto(f"{url}/docs")  # the session opens the API's docs too
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("workqueue dispatcher")

    page.goto(f"{url}/ui/tasks")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    page.goto(f"{url}/")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_the_read_only_token_and_a_forged_post_change_nothing(
    page: Page,
    start_dispatcher: Callable[..., str],
    executor: Callable[..., subprocess.Popen[bytes]],
) -> None:
    url = start_dispatcher(
        WQ_DISPATCHER_TASKS=TASKS,
        WQ_DISPATCHER_HTTP_TOKEN=TOKEN,
        WQ_DISPATCHER_HTTP_READ_TOKEN=READ_TOKEN,
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    executor()
    with httpx.Client(base_url=url, timeout=30, headers=bearer) as api:
        task_id = submit(api, "fail")
        assert outcome(api, task_id)["state"] == "failed"

        page.goto(f"{url}/ui/login")
        page.get_by_label(re.compile("Token")).fill(READ_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{url}/ui/tasks/{task_id}")
        expect(page.get_by_text("read-only")).to_be_visible()
        expect(page.get_by_role("button", name="Retry")).to_have_count(0)
        csrf = page.locator('input[name="csrf"]').first.get_attribute("value")

        as_reader = page.request.post(f"{url}/ui/tasks/{task_id}/retry", form={"csrf": csrf or ""})
        assert as_reader.status == 403
        assert "read-only" in as_reader.text()

        # Signed in as admin, a POST without the session's CSRF token is refused.
        page.goto(f"{url}/ui/login")
        page.get_by_label(re.compile("Token")).fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        forged = page.request.post(f"{url}/ui/tasks/{task_id}/retry", form={"csrf": "0" * 64})
        bare = page.request.post(f"{url}/ui/tasks/{task_id}/retry")
        assert (forged.status, bare.status) == (403, 403)
        assert api.get(f"/tasks/{task_id}").json()["attempt"] == 1
