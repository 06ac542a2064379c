"""A student moves the controls of the widgets that compute (issue 14) and sees them redraw.

Each widget is opened as a Voila app from a small fixture notebook that builds only that
widget from the shipped models (the lesson notebooks take minutes to run in full):

* notebook 08's k slider (``build_importance_explorer``): End on the k slider redraws the
  figure of hat L_k, the log weights and the ESS;
* notebook 06's beta slider (``build_beta_explorer``): End on the beta slider redraws the
  latent-usage picture;
* notebook 07's per-dimension explorer (``build_dimension_explorer(activity=...)``): the
  inactive dimensions start folded away (their sliders hidden); opening the fold shows
  them, and moving one changes the code (the readout), not the decoded picture much.

The slider is moved with the keyboard (focus its handle, press End or Home): one keypress,
one value change, as a student could do it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from widget_page import WIDGET_TIMEOUT_MS, describe_src, stderr_outputs

pytestmark = pytest.mark.browser

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PAGE_TIMEOUT_MS = 90_000
REDRAW_TIMEOUT_MS = 60_000


def _src(page, image_selector: str) -> str | None:
    return page.evaluate(
        "(sel) => { const el = document.querySelector(sel); "
        "if (el === null) return null; "
        "const img = el.tagName === 'IMG' ? el : el.querySelector('img'); "
        "return img === null ? null : img.getAttribute('src'); }",
        image_selector,
    )


def _open(page, voila_server, ready_selector: str) -> None:
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{voila_server.url}?token={voila_server.token}", wait_until="commit")
    page.wait_for_function(
        "(sel) => document.querySelector(sel) !== null || "
        "[...document.querySelectorAll('[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
        ".some((o) => o.textContent.includes('Traceback'))",
        arg=ready_selector,
        timeout=WIDGET_TIMEOUT_MS,
    )
    assert page.locator(ready_selector).count() > 0, (
        f"no {ready_selector} on the page; errors:\n{stderr_outputs(page)}"
    )


def _press_end(page, handle) -> tuple[str, str]:
    """Moves a slider handle to its far end with the keyboard; aria-valuenow before, after."""
    handle.scroll_into_view_if_needed()
    before = handle.get_attribute("aria-valuenow")
    at_max = float(before) >= float(handle.get_attribute("aria-valuemax"))
    handle.focus()
    page.keyboard.press("Home" if at_max else "End")
    page.wait_for_function(
        "([el, before]) => el.getAttribute('aria-valuenow') !== before",
        arg=[handle.element_handle(), before],
        timeout=REDRAW_TIMEOUT_MS,
    )
    return before, handle.get_attribute("aria-valuenow")


def _assert_slider_redraws(page, slider_selector: str, image_selector: str) -> None:
    handle = page.locator(f"{slider_selector} .noUi-handle").first
    handle.wait_for()
    page.wait_for_function(
        "(sel) => { const el = document.querySelector(sel); "
        "const img = el && (el.tagName === 'IMG' ? el : el.querySelector('img')); "
        "return !!(img && img.getAttribute('src')); }",
        arg=image_selector,
    )
    before_src = _src(page, image_selector)
    before, after = _press_end(page, handle)
    page.wait_for_function(
        "([sel, before]) => { const el = document.querySelector(sel); "
        "const img = el && (el.tagName === 'IMG' ? el : el.querySelector('img')); "
        "return !!img && img.getAttribute('src') !== before; }",
        arg=[image_selector, before_src],
        timeout=REDRAW_TIMEOUT_MS,
    )
    after_src = _src(page, image_selector)
    assert after_src and after_src != before_src, (
        f"{slider_selector} moved from {before} to {after} but {image_selector} did not change "
        f"({describe_src(before_src)} -> {describe_src(after_src)}); errors:\n"
        f"{stderr_outputs(page)}"
    )


@pytest.mark.parametrize(
    "notebook, slider, image",
    [
        (FIXTURES / "importance_explorer.ipynb", ".vae-k-slider", ".vae-importance-figure"),
        (FIXTURES / "beta_explorer.ipynb", ".vae-beta-slider", ".vae-beta-figure"),
    ],
    ids=["07-k-slider", "05-beta-slider"],
)
def test_slider_redraws_its_figure_in_voila(notebook, slider, image, voila_server, page):
    _open(page, voila_server, f"{slider} .noUi-handle")
    _assert_slider_redraws(page, slider, image)


@pytest.mark.parametrize("notebook", [FIXTURES / "dimension_fold.ipynb"], ids=["06-inactive-fold"])
def test_inactive_dimensions_are_folded_and_still_move_the_code(notebook, voila_server, page):
    handles = ".vae-latent-slider .noUi-handle"
    _open(page, voila_server, handles)
    page.locator(handles).first.wait_for()
    total = page.locator(handles).count()
    visible = [page.locator(handles).nth(i).is_visible() for i in range(total)]
    hidden = visible.count(False)
    assert 0 < hidden < total, f"{hidden} of {total} latent sliders hidden before the fold opens"
    assert all(visible[: total - hidden]), "the visible (active) sliders do not come first"

    page.get_by_text("inactive dimensions", exact=False).first.click()
    last = page.locator(handles).nth(total - 1)
    last.wait_for(state="visible")
    readout = page.locator(".vae-latent-readout").first
    before_text = readout.inner_text()
    _press_end(page, last)
    page.wait_for_function(
        "([el, before]) => el.innerText !== before",
        arg=[readout.element_handle(), before_text],
        timeout=REDRAW_TIMEOUT_MS,
    )
    assert readout.inner_text() != before_text
