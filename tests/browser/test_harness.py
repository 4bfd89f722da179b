"""The browser fixtures themselves: offline routing, screenshots and the axe check."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import PageLog, assert_accessible, shot

CLEAN = """<!doctype html><html lang="en"><head><title>Clean</title></head>
<body><main><h1>Clean</h1><p>Nothing to report.</p></main></body></html>"""


def test_a_request_to_another_host_is_refused_and_recorded(page: Page, page_log: PageLog) -> None:
    page.set_content(CLEAN)

    status = page.evaluate(
        "() => fetch('https://example.invalid/x.js').then(() => 'loaded', () => 'refused')"
    )

    assert status == "refused"
    assert page_log.blocked == ["https://example.invalid/x.js"]
    page_log.blocked.clear()  # provoked on purpose: the teardown check would fail the test


def test_a_screenshot_is_a_png_named_after_the_page(page: Page) -> None:
    page.set_content(CLEAN)

    path = shot(page, "harness-clean")

    assert path.name == "harness-clean.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="screenshot name"):
        shot(page, "../escape")


def test_a_clean_page_passes_the_axe_check(page: Page) -> None:
    page.set_content(CLEAN)

    assert_accessible(page)


def test_serious_and_critical_violations_fail_with_their_rules(page: Page) -> None:
    page.set_content(
        '<!doctype html><html lang="en"><head><title>Bad</title></head><body><main>'
        '<h1>Bad</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><button></button>'
        "</main></body></html>"
    )

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_accessible(page)

    assert "[critical] image-alt" in str(failed.value)
    assert "[critical] button-name" in str(failed.value)
