"""``/docs`` and ``/redoc`` of a real ``dispatcher serve`` render in Chromium with no network."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import PageLog, accessibility_violations, shot


def test_swagger_ui_renders_the_operations_offline(
    page: Page, page_log: PageLog, start_dispatcher: Callable[..., str]
) -> None:
    url = start_dispatcher()

    page.goto(f"{url}/docs")

    submit = page.locator(".opblock-post").filter(has=page.locator('[data-path="/tasks"]'))
    expect(submit).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("workqueue dispatcher")
    shot(page, "api-docs-swagger-ui")
    assert page_log.blocked == []
    assert page_log.errors == []


def test_redoc_renders_the_operations_offline(
    page: Page, page_log: PageLog, start_dispatcher: Callable[..., str]
) -> None:
    url = start_dispatcher()

    page.goto(f"{url}/redoc")

    expect(page.get_by_role("heading", name=re.compile("workqueue dispatcher"))).to_be_visible()
    expect(page.get_by_role("menuitem").filter(has_text="Submit").first).to_be_visible()
    shot(page, "api-docs-redoc")
    assert page_log.blocked == []
    # Its sidebar links its vendor's logo on a CDN: the page's policy refuses it (never sent),
    # the image hides itself, and the browser logs the refusal.
    refused_logo = [e for e in page_log.errors if "violates" in e and "logo-mini.svg" in e]
    assert len(refused_logo) == 1
    assert [e for e in page_log.errors if e not in refused_logo] == []


def test_axe_runs_on_the_docs_pages(page: Page, start_dispatcher: Callable[..., str]) -> None:
    # Third-party pages: their findings are not ours to fix, so this only proves axe runs
    # (assert_accessible is for the dashboard's own pages).
    url = start_dispatcher()
    page.goto(f"{url}/docs")
    expect(page.locator(".opblock").first).to_be_visible()

    violations = accessibility_violations(page)

    assert all({"id", "impact", "nodes"} <= set(violation) for violation in violations)
