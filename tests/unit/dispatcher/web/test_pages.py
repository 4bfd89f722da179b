"""The dashboard in process: every page renders, untrusted text is escaped, forms need
their CSRF token, a token set means a login, and the read-only token changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from pydantic import SecretStr

from common import ErrorKind, Outcome, ResultMessage, TaskErrorInfo
from dispatcher.api.app import create_app
from dispatcher.requests import TaskRequest
from dispatcher.service import Dispatcher
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import NOW, FakeBroker, client_of, succeeded

TOKEN, READ_TOKEN = "admin-token-0123456789", "read-token-0123456789"
HTML = {"Accept": "text/html"}
PAGES = ["/", "/ui/tasks", "/ui/dead", "/ui/executors", "/ui/queues", "/ui/schedules"]


@pytest.fixture
async def open_app(dispatcher: Dispatcher, broker: FakeBroker) -> AsyncIterator[httpx.AsyncClient]:
    """No token: loopback only, as ``dispatcher serve`` enforces."""
    async with client_of(create_app(context_of(dispatcher, broker))) as http:
        yield http


@pytest.fixture
async def guarded(dispatcher: Dispatcher, broker: FakeBroker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        context_of(dispatcher, broker), token=SecretStr(TOKEN), read_token=SecretStr(READ_TOKEN)
    )
    async with client_of(app) as http:
        yield http


def failed(task_id: UUID, message: str) -> ResultMessage:
    error = TaskErrorInfo(
        kind=ErrorKind.HANDLER_ERROR, type="ValueError", message=message, traceback=message
    )
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=Outcome.FAILED,
        error=error,
        executor="<b>e1</b>",
        started_at=NOW,
        finished_at=NOW,
    )


async def submit(dispatcher: Dispatcher, count: int = 1) -> list[UUID]:
    tasks = await dispatcher.submit_many(
        TaskRequest("word_count", {"text": "a"}) for _ in range(count)
    )
    return list(tasks)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/ui/login", data={"token": token, "next": "/ui/tasks"})


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_renders_as_html(open_app: httpx.AsyncClient, path: str) -> None:
    page = await open_app.get(path)

    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<nav" in page.text


async def test_a_first_page_issues_a_strict_http_only_session_cookie(
    open_app: httpx.AsyncClient,
) -> None:
    page = await open_app.get("/")

    cookie = page.headers["set-cookie"]
    assert cookie.startswith("wq_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie


async def test_untrusted_text_from_a_task_renders_escaped(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    (task_id,) = await submit(dispatcher)
    await dispatcher.record_result(failed(task_id, "<script>alert(1)</script>"))

    detail = await open_app.get(f"/ui/tasks/{task_id}")
    listing = await open_app.get("/ui/tasks")

    for page in (detail, listing):
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;e1&lt;/b&gt;" in detail.text


async def test_a_retry_needs_the_csrf_token_of_the_session(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    (task_id,) = await submit(dispatcher)
    await dispatcher.record_result(failed(task_id, "boom"))
    page = await open_app.get(f"/ui/tasks/{task_id}")

    forged = await open_app.post(f"/ui/tasks/{task_id}/retry", data={})
    wrong = await open_app.post(f"/ui/tasks/{task_id}/retry", data={"csrf": "0" * 64})
    assert (forged.status_code, wrong.status_code) == (403, 403)
    assert (await dispatcher.get(task_id)).attempt == 1

    done = await open_app.post(f"/ui/tasks/{task_id}/retry", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/tasks/{task_id}?done=retried&n=1"
    assert (await dispatcher.get(task_id)).attempt == 2
    attempts = await dispatcher.attempts(task_id)
    assert attempts[-1].cause == "retried by hand (dashboard)"


async def test_a_retry_of_a_task_that_is_not_retryable_says_why(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    (task_id,) = await submit(dispatcher)
    await dispatcher.record_result(succeeded(task_id))
    page = await open_app.get(f"/ui/tasks/{task_id}")
    csrf = csrf_of(await open_app.get("/ui/tasks"))

    refused = await open_app.post(f"/ui/tasks/{task_id}/retry", data={"csrf": csrf})

    assert refused.status_code == 409
    assert "succeeded: only failed, dead or cancelled tasks are retried" in refused.text
    assert "Retry</button>" not in page.text


async def test_every_task_matching_a_filter_is_retried_after_a_count(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    ids = await submit(dispatcher, 3)
    for task_id in ids[:2]:
        await dispatcher.record_result(failed(task_id, "boom"))
    await dispatcher.record_result(succeeded(ids[2]))

    confirm = await open_app.get("/ui/tasks/retry", params={"task_type": "word_count"})
    assert re.search(r'id="matched">2<', confirm.text)
    done = await open_app.post(
        "/ui/tasks/retry", data={"csrf": csrf_of(confirm), "query": "task_type=word_count"}
    )

    assert done.status_code == 303
    assert done.headers["location"].endswith("done=retried&n=2")
    assert [(await dispatcher.get(i)).attempt for i in ids] == [2, 2, 1]


async def test_selected_tasks_are_cancelled_after_a_confirmation(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    ids = await submit(dispatcher, 2)
    page = await open_app.get("/ui/tasks")
    form = {"csrf": csrf_of(page), "action": "cancel", "task_id": [str(ids[0])], "query": ""}

    asked = await open_app.post("/ui/tasks/selected", data=form)
    assert asked.status_code == 200
    assert "Cancel 1 selected task(s)?" in asked.text
    assert (await dispatcher.get(ids[0])).cancel_requested_at is None
    done = await open_app.post("/ui/tasks/selected", data={**form, "confirmed": "1"})

    assert done.status_code == 303
    assert (await dispatcher.get(ids[0])).cancel_requested_at is not None
    assert (await dispatcher.get(ids[1])).cancel_requested_at is None


async def test_every_unfinished_task_matching_a_filter_is_cancelled(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    ids = await submit(dispatcher, 3)
    await dispatcher.record_result(succeeded(ids[0]))

    confirm = await open_app.get("/ui/tasks/cancel", params={"task_type": "word_count"})
    assert re.search(r'id="matched">2<', confirm.text)
    none = await open_app.get("/ui/tasks/cancel", params={"state": "succeeded"})
    assert re.search(r'id="matched">0<', none.text)
    done = await open_app.post(
        "/ui/tasks/cancel", data={"csrf": csrf_of(confirm), "query": "task_type=word_count"}
    )

    assert done.headers["location"].endswith("done=cancelled&n=2")
    flagged = [(await dispatcher.get(i)).cancel_requested_at is not None for i in ids]
    assert flagged == [False, True, True]


async def test_a_scheduled_task_is_rescheduled_and_a_bad_time_says_why(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    (task,) = await dispatcher.submit_many(
        [TaskRequest("word_count", {"text": "a"}, eta=datetime(2099, 1, 1, tzinfo=UTC))]
    )
    page = await open_app.get(f"/ui/tasks/{task}")
    assert "Reschedule</button>" in page.text

    done = await open_app.post(
        f"/ui/tasks/{task}/reschedule", data={"csrf": csrf_of(page), "eta": "2098-05-06T07:08:09"}
    )
    bad = await open_app.post(
        f"/ui/tasks/{task}/reschedule", data={"csrf": csrf_of(page), "eta": "tomorrow"}
    )

    assert done.status_code == 303
    assert (await dispatcher.get(task)).eta == datetime(2098, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert bad.status_code == 422
    assert "eta:" in bad.text


@pytest.mark.parametrize(
    "query",
    [
        {"state": "nope"},
        {"since": "not a time"},
        {"queue": "bad queue!"},
        {"error": "x" * 201},
        {"cursor": "!!!"},
        {"since": "0001-01-01T00:00:00+05:00"},
        {"until": "9999-12-31T23:59:59-05:00"},
    ],
)
async def test_a_bad_filter_is_a_400_page_that_says_why(
    open_app: httpx.AsyncClient, query: dict[str, str]
) -> None:
    page = await open_app.get("/ui/tasks", params=query)

    assert page.status_code in (400, 422), page.text
    assert "Traceback" not in page.text


async def test_with_a_token_a_browser_is_sent_to_the_login_form(
    guarded: httpx.AsyncClient,
) -> None:
    for path in [*PAGES, "/docs"]:
        page = await guarded.get(path, headers=HTML)
        assert page.status_code == 303, path
        assert page.headers["location"].startswith("/ui/login?next=")
    assert (await guarded.get("/ui/tasks")).status_code == 401  # a program: no redirect
    login = await guarded.get("/ui/login", headers=HTML)
    assert login.status_code == 200
    assert 'type="password"' in login.text


async def test_the_token_signs_in_and_signing_out_ends_the_session(
    guarded: httpx.AsyncClient,
) -> None:
    form = await guarded.get("/ui/login", headers=HTML)
    wrong = await sign_in(guarded, "not-the-token-at-all")
    assert wrong.status_code == 401
    assert "wq_session" not in form.headers.get("set-cookie", "")
    assert "wq_session" not in guarded.cookies

    right = await sign_in(guarded, TOKEN)
    assert right.status_code == 303
    assert right.headers["location"] == "/ui/tasks"
    page = await guarded.get("/ui/tasks", headers=HTML)
    assert page.status_code == 200
    assert (await guarded.get("/docs", headers=HTML)).status_code == 200
    # The session opens pages, not the JSON API: that keeps the bearer token.
    assert (await guarded.get("/tasks")).status_code == 401

    out = await guarded.post("/ui/logout", data={"csrf": csrf_of(page)})
    assert out.status_code == 303
    guarded.cookies.clear()  # what the browser does with the expired cookie
    assert (await guarded.get("/ui/tasks", headers=HTML)).status_code == 303


async def test_a_login_goes_back_only_to_a_page_of_this_site(guarded: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        answer = await guarded.post("/ui/login", data={"token": TOKEN, "next": target})
        assert answer.headers["location"] == "/", target


async def test_the_read_only_token_sees_everything_and_changes_nothing(
    guarded: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    (task_id,) = await submit(dispatcher)
    await dispatcher.record_result(failed(task_id, "boom"))
    await sign_in(guarded, READ_TOKEN)

    page = await guarded.get(f"/ui/tasks/{task_id}", headers=HTML)
    assert page.status_code == 200
    assert "read-only" in page.text
    assert "Retry</button>" not in page.text
    refused = await guarded.post(f"/ui/tasks/{task_id}/retry", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403
    assert (await dispatcher.get(task_id)).attempt == 1

    bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert (await guarded.get("/tasks", headers=bearer)).status_code == 200
    submitted = await guarded.post("/tasks", headers=bearer, json={"task_type": "word_count"})
    assert submitted.status_code == 403


async def test_the_activity_charts_count_what_finished_in_the_last_hour(
    open_app: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    ids = await submit(dispatcher, 3)
    await dispatcher.record_result(succeeded(ids[0]).model_copy(update={"finished_at": _now()}))
    await dispatcher.record_result(failed(ids[1], "x").model_copy(update={"finished_at": _now()}))

    charts = await open_app.get("/ui/activity")

    assert charts.status_code == 200
    assert charts.text.count("<svg") == 4  # throughput and run time, for the hour and the day
    assert re.search(r"1 succeeded, 1 failed", charts.text)
    overview = await open_app.get("/")
    assert 'hx-get="/ui/activity"' in overview.text


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("path", "status"), [("/ui/tasks/not-a-task-id", 422), ("/ui/nowhere", 404)]
)
async def test_a_bad_dashboard_address_is_a_page_and_the_api_keeps_json(
    open_app: httpx.AsyncClient, path: str, status: int
) -> None:
    page = await open_app.get(path)
    api = await open_app.get("/tasks/not-a-task-id")

    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert "<nav" in page.text
    assert api.status_code == 422
    assert api.headers["content-type"] == "application/json"
