"""Browser-test fixtures: the system Chromium through Playwright, kept offline, with axe-core.

Every browser test drives a real ``dispatcher serve`` (the integration fixtures, imported
below) in Debian's chromium. The page may reach 127.0.0.1 and localhost only: any other
request is refused and recorded in ``page_log.blocked``, and a test whose page asked for one
fails at teardown. Playwright's sync API runs its own event loop, so browser tests are plain
sync tests (pytest-asyncio never runs them in a loop).

Missing tools fail the tests (never skip) with the command that installs them:
``./scripts/ensure-browser``.

A browser test asks for ``page`` (and ``page_log`` to look at what was refused or logged),
starts the service with ``url = start_dispatcher(WQ_DISPATCHER_HTTP_TOKEN=...)``, drives the
page with Playwright's ``expect``, then calls ``shot(page, "name")`` and, on our own pages,
``assert_accessible(page)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from common import AmqpSettings
from tests.conftest import REPO
from tests.integration import conftest as integration
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers

# The integration fixtures, so that browser tests start real processes the same way; the
# report hook lets ``processes`` print the services' logs when a test fails.
broker_reachable = integration.broker_reachable
broker = integration.broker
amqp_settings = integration.amqp_settings
processes = integration.processes
pytest_runtest_makereport = integration.pytest_runtest_makereport

BROWSER_DIR = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("WQ_TEST_CHROMIUM", "/usr/bin/chromium"))
AXE_JS = REPO / ".cache" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("WQ_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"
#: Hosts a page may load from: the services under test, nothing else.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: axe impacts that fail ``assert_accessible``; "minor" and "moderate" are left to judgement.
FAILING_IMPACTS = ("serious", "critical")
#: Playwright's wait for any one element or navigation, well inside pytest's timeout.
PAGE_TIMEOUT_MS = 15_000
_INSTALL_HINT = (
    "Run ./scripts/ensure-browser: it installs Debian's chromium and axe-core\n"
    "(or set WQ_TEST_CHROMIUM to a Chromium binary). Browser tests never skip."
)
_NAME = re.compile(r"[\w.-]+")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/browser ``browser`` and ``integration`` (it needs the broker)."""
    for item in items:
        if BROWSER_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


# Package scope, not session: while Playwright's sync API is started its event loop counts as
# running in this thread, and every async test after it would fail ("Cannot run the event loop
# while another loop is running"). Closed when the last test of tests/browser is done.
@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Headless system Chromium, one for tests/browser; fails when it or axe-core is missing."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"No Chromium at {CHROMIUM}.\n{_INSTALL_HINT}", pytrace=False)
    if not AXE_JS.is_file():
        pytest.fail(f"No axe-core at {AXE_JS}.\n{_INSTALL_HINT}", pytrace=False)
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                # No sandbox: the tests run as root in containers, where Chromium's needs
                # namespaces it cannot have. The pages are our own.
                args=["--no-sandbox", "--disable-gpu"],
            )
        except PlaywrightError as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}\n{_INSTALL_HINT}")
        yield browser
        browser.close()


@dataclass
class PageLog:
    """What a test's page did besides rendering, for the test to assert on."""

    #: Requests to hosts other than ``LOCAL_HOSTS``, refused: the page must work offline.
    blocked: list[str] = field(default_factory=list)
    #: Uncaught exceptions and ``console.error`` lines.
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page_log() -> PageLog:
    """The record of the test's ``page``."""
    return PageLog()


@pytest.fixture
def page(chromium: Browser, page_log: PageLog) -> Iterator[Page]:
    """A page in a fresh browser context that can reach this machine only.

    The test fails at teardown if the page asked for another host (clear ``page_log.blocked``
    in a test that provokes one on purpose).
    """
    # Service workers would fetch past the route below.
    context = chromium.new_context(service_workers="block", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.route("**/*", _local_only(page_log))
    opened = context.new_page()
    opened.on("pageerror", lambda error: page_log.errors.append(f"uncaught: {error}"))
    opened.on(
        "console",
        lambda message: (
            page_log.errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield opened
    context.close()
    if page_log.blocked:
        pytest.fail(
            "the page asked for other hosts (blocked):\n  " + "\n  ".join(page_log.blocked),
            pytrace=False,
        )


def _local_only(log: PageLog) -> Callable[[Route], None]:
    def route(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
            return
        log.blocked.append(url)
        route.abort("blockedbyclient")

    return route


@pytest.fixture
def start_dispatcher(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> Callable[..., str]:
    """Factory: ``start_dispatcher(name="dispatcher", **env)`` starts ``dispatcher serve``.

    Returns its base URL once it listens and consumes results. ``env`` adds ``WQ_*``
    variables (a token, task modules); the store is a fresh SQLite file of the test.
    """

    def start(name: str = "dispatcher", **env: str) -> str:
        processes.dispatcher(name, tmp_path / f"{name}.sqlite3", **env)
        url = api_url(processes, name)
        wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
        return url

    return start


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``<artifacts>/screenshots/<name>.png``; return its path.

    The folder is ``tests/artifacts`` or ``WQ_TEST_ARTIFACTS`` (CI keeps it as an artifact).
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '_', '-' and '.' only")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def accessibility_violations(page: Page) -> list[dict[str, object]]:
    """axe-core's violations on the page as it is now (every impact), as axe reports them."""
    # evaluate runs over the DevTools protocol, which a page's Content-Security-Policy does
    # not govern, unlike an injected <script>.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text())
    violations: list[dict[str, object]] = page.evaluate(
        "async () => (await axe.run(document)).violations"
    )
    return violations


def assert_accessible(page: Page) -> None:
    """Fail listing each axe violation whose impact is serious or critical."""
    failing = [v for v in accessibility_violations(page) if v.get("impact") in FAILING_IMPACTS]
    if failing:
        pytest.fail(
            f"{len(failing)} accessibility violation(s) on {page.url}:\n"
            + "\n".join(_describe(violation) for violation in failing),
            pytrace=False,
        )


def _describe(violation: dict[str, object]) -> str:
    nodes = violation.get("nodes")
    targets = [node.get("target") for node in nodes] if isinstance(nodes, list) else []
    return (
        f"  [{violation.get('impact')}] {violation.get('id')}: {violation.get('help')}"
        f" ({violation.get('helpUrl')})\n    at {targets[:5]}"
        + (f" and {len(targets) - 5} more" if len(targets) > 5 else "")
    )
