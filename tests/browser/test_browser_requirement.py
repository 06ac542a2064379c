"""The skip-or-fail rule for the browser tests, checked without a browser.

A student without chromium gets a skip that says how to enable the tests; CI sets
``VAE_EDU_REQUIRE_BROWSER=1`` and must get a failure with the same message instead, so the
browser tests can never pass there by being skipped. Detection is monkeypatched here.
"""

from __future__ import annotations

import stat

import browser_harness
import pytest

MISSING = "chromium is not installed at /usr/bin/chromium"


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection reports chromium missing, whatever this machine has."""
    monkeypatch.setattr(browser_harness, "browser_unavailable_reason", lambda: MISSING)


def _message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value.msg)


@pytest.mark.parametrize("value", [None, "", "0", "yes"])
def test_missing_browser_skips_with_install_hint(no_browser, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(browser_harness.REQUIRE_BROWSER_ENV, raising=False)
    else:
        monkeypatch.setenv(browser_harness.REQUIRE_BROWSER_ENV, value)
    with pytest.raises(pytest.skip.Exception) as excinfo:
        browser_harness.require_browser()
    assert MISSING in _message(excinfo)
    assert "apt-get install -y chromium" in _message(excinfo)


def test_missing_browser_fails_with_the_same_message_where_required(no_browser, monkeypatch):
    monkeypatch.delenv(browser_harness.REQUIRE_BROWSER_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        browser_harness.require_browser()

    monkeypatch.setenv(browser_harness.REQUIRE_BROWSER_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        browser_harness.require_browser()
    assert not isinstance(failed.value, pytest.skip.Exception)
    assert _message(failed) == _message(skipped)


def test_present_browser_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setattr(browser_harness, "browser_unavailable_reason", lambda: None)
    monkeypatch.setenv(browser_harness.REQUIRE_BROWSER_ENV, "1")
    assert browser_harness.require_browser() is None


def test_detection_names_each_missing_piece(monkeypatch, tmp_path):
    fake_chromium = tmp_path / "chromium"
    fake_chromium.write_text("#!/bin/sh\n")
    fake_chromium.chmod(fake_chromium.stat().st_mode | stat.S_IXUSR)
    absent = tmp_path / "absent" / "chromium"
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("")

    monkeypatch.setattr(browser_harness, "playwright_installed", lambda: True)
    assert browser_harness.browser_unavailable_reason(str(fake_chromium)) is None
    assert str(absent) in browser_harness.browser_unavailable_reason(str(absent))
    assert str(not_executable) in browser_harness.browser_unavailable_reason(str(not_executable))

    monkeypatch.setattr(browser_harness, "playwright_installed", lambda: False)
    reason = browser_harness.browser_unavailable_reason(str(fake_chromium))
    assert "playwright" in reason and "chromium" not in reason
    both = browser_harness.browser_unavailable_reason(str(absent))
    assert "playwright" in both and str(absent) in both
