"""A student opens the latent-space explorer as a Voila app and moves a slider.

``voila notebooks/07_latent_space_explorer.ipynb`` serves the notebook as a standalone
page: the cells run on the server, the page shows only their outputs and widgets, no code.
This test starts a real Voila server (127.0.0.1, free port, random token, private Jupyter
directories) on a copy of the notebook, opens it in Debian's headless chromium, checks that
no code cell is shown, presses End on the first latent slider and checks that the decoded
image was redrawn. Fixtures stop the server (SIGTERM to its own process, then its process
group) and, on failure, save a screenshot, the browser console and the server log.
"""

from __future__ import annotations

import pytest
from widget_page import (
    assert_slider_redraws_image,
    notebook_id,
    target_notebook,
    wait_for_widgets,
)

pytestmark = pytest.mark.browser

NOTEBOOK = target_notebook()
"""notebooks/07_latent_space_explorer.ipynb once it exists, else the slider fixture."""

PAGE_TIMEOUT_MS = 90_000
CODE_SELECTORS = ".jp-CodeCell .jp-InputArea, .jp-InputArea-editor, .cm-editor"
"""What a code cell's source looks like on a page (Voila strips it: code cells are noInput)."""


@pytest.mark.parametrize("notebook", [NOTEBOOK], ids=[notebook_id(NOTEBOOK)])
def test_latent_slider_redraws_image_in_voila(notebook, voila_server, page):
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    # Voila streams the page while the kernel runs the cells, so "load" only fires when all
    # cells have run; wait for the first bytes here and for the widgets (longer) below.
    page.goto(f"{voila_server.url}?token={voila_server.token}", wait_until="commit")
    wait_for_widgets(page, "Voila")

    assert page.locator(CODE_SELECTORS).count() == 0, "the Voila app page shows code cells"
    assert_slider_redraws_image(page, "Voila")
