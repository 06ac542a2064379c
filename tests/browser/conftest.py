"""Fixtures for the browser tests: chromium via Playwright, and artifacts when a test fails.

Every test here is marked ``browser``. Without chromium or Playwright a test is skipped
with instructions, or fails where ``VAE_EDU_REQUIRE_BROWSER=1`` (see
:func:`browser_harness.require_browser`). When a test fails, its page screenshot, browser
console and server log are saved under ``<pytest basetemp>/browser-artifacts/<test>/``
and their paths printed (shown in the failure report as "Captured stdout teardown").
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import browser_harness
import pytest
from browser_harness import CHROMIUM, CHROMIUM_ARGS, Server, start_jupyterlab, start_voila

# The fixture notebook is opened by the tests, not re-executed by nbval.
collect_ignore_glob = ["fixtures/*"]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keeps each phase's report on the item, so fixture teardown can see a failure."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def setup_or_call_failed(item: pytest.Item) -> bool:
    """True if the setup or call phase of ``item`` failed (checked during teardown)."""
    reports = item.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this test's failure artifacts go (created only when something is saved)."""
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
    return tmp_path_factory.getbasetemp() / "browser-artifacts" / safe_name


def save_server_log(item: pytest.Item, server_log: Path, artifacts: Path) -> None:
    """On failure, copies a server log into ``artifacts`` and prints its path."""
    if setup_or_call_failed(item) and server_log.exists():
        artifacts.mkdir(parents=True, exist_ok=True)
        saved = shutil.copy(server_log, artifacts / server_log.name)
        print(f"browser test artifact: server log {saved}")


@pytest.fixture
def browser_ready() -> None:
    """Skips (or, where required, fails) the test when chromium or Playwright is missing."""
    browser_harness.require_browser()


@pytest.fixture(scope="session")
def playwright_driver():
    """One Playwright driver process for the session (started only if a test needs it)."""
    browser_harness.require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def page(
    request: pytest.FixtureRequest,
    browser_ready: None,
    playwright_driver,
    tmp_path: Path,
    artifacts_dir: Path,
) -> Iterator:
    """A page in Debian's headless chromium with a fresh user-data dir, closed afterwards.

    On failure the page's screenshot and console messages are saved as artifacts. Request
    it after the server fixture: fixtures tear down in reverse order, so the screenshot is
    taken while the server still runs.
    """
    # Chromium keeps its crash-report database under $XDG_CONFIG_HOME/chromium whatever the
    # user-data dir is; point it (and the cache) into tmp_path too, so nothing lands in ~.
    xdg = {name: str(tmp_path / name.lower()) for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        env={**os.environ, **xdg},
        viewport={"width": 1280, "height": 1000},
    )
    console: list[str] = []
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
        page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
        yield page
        if setup_or_call_failed(request.node):
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            screenshot = artifacts_dir / "screenshot.png"
            page.screenshot(path=str(screenshot), full_page=True)
            console_log = artifacts_dir / "browser-console.log"
            console_log.write_text("\n".join(console) + "\n")
            print(f"browser test artifact: screenshot {screenshot}")
            print(f"browser test artifact: browser console {console_log}")
    finally:
        context.close()


def _served_copy(notebook: Path, tmp_path: Path) -> Path:
    """Copies ``notebook`` into a fresh server root, so the run never modifies the original."""
    root = tmp_path / "server-root"
    root.mkdir()
    return Path(shutil.copy(notebook, root / notebook.name))


@contextlib.contextmanager
def _running(
    start: Callable[[Path], Server], base: Path, request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Server]:
    """Starts a server, yields it, and always stops it by its handle (log saved on failure)."""
    base.mkdir()
    try:
        server = start(base)
    except BaseException:
        for log in base.glob("*-server.log"):
            artifacts.mkdir(parents=True, exist_ok=True)
            print(f"browser test artifact: server log {shutil.copy(log, artifacts / log.name)}")
        raise
    try:
        yield server
    finally:
        leftovers = server.stop()
        if leftovers:
            print(f"{server.name}: killed kernels left running after shutdown: {leftovers}")
        save_server_log(request.node, server.log_path, artifacts)


@pytest.fixture
def jupyterlab_server(
    notebook: Path,
    browser_ready: None,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    artifacts_dir: Path,
) -> Iterator[tuple[Server, str]]:
    """A JupyterLab server whose root holds a copy of ``notebook``; yields (server, file name)."""
    copy = _served_copy(notebook, tmp_path)
    start = functools.partial(start_jupyterlab, copy.parent)
    with _running(start, tmp_path / "jupyterlab", request, artifacts_dir) as server:
        yield server, copy.name


@pytest.fixture
def voila_server(
    notebook: Path,
    browser_ready: None,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    artifacts_dir: Path,
) -> Iterator[Server]:
    """A Voila server showing a copy of ``notebook`` as a standalone app."""
    copy = _served_copy(notebook, tmp_path)
    start = functools.partial(start_voila, copy)
    with _running(start, tmp_path / "voila", request, artifacts_dir) as server:
        yield server
