"""What a student does on the page: find the latent slider, move it, watch the image.

Shared by the JupyterLab and the Voila tests. Selectors are tried in order and the first
that matches anything wins, so the stable classes the explorer sets
(``widget.add_class("vae-latent-slider")``, ``widget.add_class("vae-decoded-image")``) take
precedence over the generic ipywidgets markup.

Which notebook the tests open: ``notebooks/07_latent_space_explorer.ipynb`` once it exists,
until then the fixture ``tests/browser/fixtures/slider_image.ipynb`` (the test id says so).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from browser_harness import REPO_ROOT

EXPLORER_NOTEBOOK = REPO_ROOT / "notebooks" / "07_latent_space_explorer.ipynb"
FIXTURE_NOTEBOOK = Path(__file__).resolve().parent / "fixtures" / "slider_image.ipynb"

SLIDER_HANDLE_SELECTORS = (
    ".vae-latent-slider .noUi-handle",
    ".widget-slider .noUi-handle",
)
"""The draggable handle of an ipywidgets slider (noUiSlider); it carries aria-valuenow."""

IMAGE_SELECTORS = (
    "img.vae-decoded-image",
    ".vae-decoded-image img",
    ".widget-output img",
    "img.widget-image",
)
"""The decoded image: an ``img`` in an Output widget (data-URL src) or an Image widget."""

STDERR_MIME = "application/vnd.jupyter.stderr"
"""MIME type of stderr streams and tracebacks as JupyterLab and Voila render them."""

TRACEBACKS_JS = (
    f"[...document.querySelectorAll('[data-mime-type=\"{STDERR_MIME}\"]')]"
    '.filter((output) => output.textContent.includes("Traceback"))'
)
"""JavaScript expression: the traceback outputs on the page (an array)."""

WIDGET_TIMEOUT_MS = 240_000
"""Running every cell (JAX import, model load) on two busy cores can take a while."""

REDRAW_TIMEOUT_MS = 60_000

_FIRST_MATCH_JS = """
(selectors) => {
  for (const selector of selectors) {
    if (document.querySelector(selector) !== null) return selector;
  }
  return null;
}
"""

_IMAGE_SRC_JS = """
(selectors) => {
  for (const selector of selectors) {
    const img = document.querySelector(selector);
    if (img !== null) return img.getAttribute("src");
  }
  return null;
}
"""

_WIDGETS_READY_JS = (
    f"([handles, images]) => (({_FIRST_MATCH_JS})(handles) !== null && !!({_IMAGE_SRC_JS})(images))"
)

_TRACEBACK_SHOWN_JS = f"() => {TRACEBACKS_JS}.length > 0"

_WIDGETS_READY_OR_TRACEBACK_JS = (
    f"(args) => ({_WIDGETS_READY_JS})(args) || ({_TRACEBACK_SHOWN_JS})()"
)

_IMAGE_CHANGED_JS = (
    "([images, before]) => {"
    f"const src = ({_IMAGE_SRC_JS})(images); return src !== null && src !== before; }}"
)


def _number(text: str) -> float:
    """Parses a slider value as the page writes it (maybe with a Unicode minus sign)."""
    return float(text.replace("\u2212", "-"))


def target_notebook() -> Path:
    """The explorer notebook if it exists, else the fixture standing in for it."""
    return EXPLORER_NOTEBOOK if EXPLORER_NOTEBOOK.exists() else FIXTURE_NOTEBOOK


def notebook_id(notebook: Path) -> str:
    """A test id that says whether the real explorer or the fixture was tested."""
    if notebook == FIXTURE_NOTEBOOK:
        return "fixture-slider_image-until-07_latent_space_explorer-exists"
    return notebook.stem


def stderr_outputs(page) -> str:
    """Text of every stderr/traceback output on the page (for failure messages)."""
    texts = page.locator(f'[data-mime-type="{STDERR_MIME}"]').all_inner_texts()
    texts = [text.strip() for text in texts if text.strip()]
    return "\n---\n".join(texts) if texts else "<none>"


def wait_for_widgets(page, where: str) -> None:
    """Waits until a slider handle and an image are rendered (or a traceback shows up).

    Raises:
      AssertionError: naming the likely causes (a cell raised; the widget extension is
        missing or out of step with ipywidgets) and quoting any traceback on the page.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    selectors = [list(SLIDER_HANDLE_SELECTORS), list(IMAGE_SELECTORS)]
    try:
        page.wait_for_function(
            _WIDGETS_READY_OR_TRACEBACK_JS, arg=selectors, timeout=WIDGET_TIMEOUT_MS
        )
    except PlaywrightTimeoutError:
        pass  # the assertion below says what is missing
    assert page.evaluate(_WIDGETS_READY_JS, selectors), (
        f"{where}: no slider handle ({', '.join(SLIDER_HANDLE_SELECTORS)}) with an image "
        f"({', '.join(IMAGE_SELECTORS)}) rendered (waited up to {WIDGET_TIMEOUT_MS // 1000} s "
        "or until a traceback appeared). "
        "Either a cell failed or the ipywidgets front end did not render the widgets "
        "(a labextension out of step with ipywidgets shows them as text or "
        f"'Loading widget...'). Errors on the page:\n{stderr_outputs(page)}"
    )


def describe_src(src: str | None) -> str:
    """A short, distinguishing description of an image src (data URLs are long)."""
    if not src:
        return "no image"
    digest = hashlib.sha256(src.encode()).hexdigest()[:12]
    return f"{src.split(',', 1)[0][:40]} ({len(src)} chars, sha256 {digest})"


def decoded_image_src(page) -> str | None:
    """The ``src`` of the decoded image (a data: or blob: URL), or None if there is none."""
    return page.evaluate(_IMAGE_SRC_JS, list(IMAGE_SELECTORS))


def move_latent_slider(page) -> tuple[str, str]:
    """Moves the first latent slider to the far end with the keyboard, as a student could.

    Focuses the handle and presses End (or Home if it already sits at its maximum): one
    keypress, one value change, one redraw (the sliders use continuous_update=False).

    Returns:
      The slider's ``aria-valuenow`` before and after (strings as the page shows them).

    Raises:
      AssertionError: if no slider is found or its value did not change.
    """
    selector = page.evaluate(_FIRST_MATCH_JS, list(SLIDER_HANDLE_SELECTORS))
    assert selector is not None, f"no slider handle matches {SLIDER_HANDLE_SELECTORS}"
    handle = page.locator(selector).first
    handle.scroll_into_view_if_needed()
    before = handle.get_attribute("aria-valuenow")
    maximum = handle.get_attribute("aria-valuemax")
    handle.focus()
    page.keyboard.press("Home" if _number(before) >= _number(maximum) else "End")
    page.wait_for_function(
        "([el, before]) => el.getAttribute('aria-valuenow') !== before",
        arg=[handle.element_handle(), before],
        timeout=REDRAW_TIMEOUT_MS,
    )
    after = handle.get_attribute("aria-valuenow")
    assert after != before, f"slider {selector} still at {before} after a keypress"
    return before, after


def assert_slider_redraws_image(page, where: str) -> None:
    """Moves the latent slider and asserts that the decoded image was redrawn differently.

    Args:
      page: a Playwright page showing the rendered widgets.
      where: "JupyterLab" or "Voila", for messages.

    Raises:
      AssertionError: if the image is missing or still the same after the move.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    before_src = decoded_image_src(page)
    assert before_src, f"{where}: the decoded image has no src before the slider moved"
    before_value, after_value = move_latent_slider(page)
    try:
        page.wait_for_function(
            _IMAGE_CHANGED_JS, arg=[list(IMAGE_SELECTORS), before_src], timeout=REDRAW_TIMEOUT_MS
        )
    except PlaywrightTimeoutError:
        pass  # the assertion below says what happened
    after_src = decoded_image_src(page)
    assert after_src and after_src != before_src, (
        f"{where}: the slider moved from {before_value} to {after_value} but the decoded "
        f"image did not change within {REDRAW_TIMEOUT_MS // 1000} s "
        f"(src before: {describe_src(before_src)}; after: {describe_src(after_src)}). "
        f"Errors on the page:\n{stderr_outputs(page)}"
    )
