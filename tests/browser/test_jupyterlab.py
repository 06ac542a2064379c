"""A student opens the latent-space explorer in JupyterLab, runs it and moves a slider.

A widget that renders in a kernel but not in the browser (for example ipywidgets out of
step with its JupyterLab extension) is a broken product that kernel-only tests cannot see.
This test starts a real ``jupyter lab`` (127.0.0.1, free port, random token, private
Jupyter directories), opens a copy of the notebook in Debian's headless chromium, runs all
cells (Edit > Clear Outputs of All Cells, then Run > Run All Cells), presses End on the first
latent slider and checks that the decoded image was redrawn. Fixtures stop the server by its
handle and, on failure, save a screenshot, the browser console and the server log (paths
printed in the report).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from widget_page import (
    TRACEBACKS_JS,
    WIDGET_TIMEOUT_MS,
    assert_slider_redraws_image,
    notebook_id,
    stderr_outputs,
    target_notebook,
    wait_for_widgets,
)

pytestmark = pytest.mark.browser

NOTEBOOK = target_notebook()
"""notebooks/07_latent_space_explorer.ipynb once it exists, else the slider fixture."""

WIDGETS_LABEXTENSION = "@jupyter-widgets/jupyterlab-manager"
STATUS_BAR = "#jp-main-statusbar"
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"
PAGE_TIMEOUT_MS = 90_000

_PROMPTS_JS = '[...document.querySelectorAll(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")]'
_NO_CELL_EXECUTED_JS = f"() => {_PROMPTS_JS}.every((p) => !/\\d/.test(p.textContent))"
# A cell whose input is hidden (worked answers) shows an empty prompt whether it ran or
# not, so "all ran" means: some prompt is numbered and none is pending ("[ ]" or "[*]").
_RUN_ENDED_JS = f"""
() => {{
  const prompts = {_PROMPTS_JS}.map((p) => p.textContent);
  const allRan = prompts.some((t) => /\\[\\d+\\]/.test(t))
    && !prompts.some((t) => /\\[[ *]\\]/.test(t));
  return allRan || {TRACEBACKS_JS}.length > 0;
}}
"""


def open_notebook(page, server, name: str) -> None:
    """Opens ``name`` with a reset layout and waits for a connected, idle kernel.

    The toolbar's kernel indicator says idle before the kernel has connected, so this
    waits for the status bar's "Python 3 (ipykernel) | Idle" instead.
    """
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{server.url}lab/tree/{quote(name)}?reset&token={server.token}")
    page.locator(STATUS_BAR).get_by_text(KERNEL_IDLE, exact=True).wait_for()


def loaded_labextensions(page) -> list[str]:
    """Names of the prebuilt (federated) extensions the server gave the page, minus disabled."""
    return page.evaluate(
        """() => {
          const config = JSON.parse(document.getElementById("jupyter-config-data").textContent);
          const disabled = new Set(config.disabledExtensions || []);
          return config.federated_extensions.map((e) => e.name).filter((n) => !disabled.has(n));
        }"""
    )


def choose_menu_item(page, menu: str, item: str) -> None:
    """Clicks ``menu`` in the menu bar, then ``item`` in it (exact labels)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def run_all_cells(page) -> None:
    """Clears the stored outputs, runs all cells from the menu bar and waits until all ran.

    The committed notebook is executed: its prompts already read [1], [2], ... . Clearing
    first (every prompt back to [ ]) means numbered prompts and widgets seen afterwards
    come from this run, not from the file.

    Raises:
      AssertionError: quoting the traceback if a cell raised (Run All stops there).
    """
    choose_menu_item(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(_NO_CELL_EXECUTED_JS)
    choose_menu_item(page, "Run", "Run All Cells")
    page.wait_for_function(_RUN_ENDED_JS, timeout=WIDGET_TIMEOUT_MS)
    assert page.evaluate(f"() => {TRACEBACKS_JS}.length") == 0, (
        f"a cell raised while running all cells:\n{stderr_outputs(page)}"
    )


@pytest.mark.parametrize("notebook", [NOTEBOOK], ids=[notebook_id(NOTEBOOK)])
def test_latent_slider_redraws_image_in_jupyterlab(notebook, jupyterlab_server, page):
    server, name = jupyterlab_server
    open_notebook(page, server, name)
    assert WIDGETS_LABEXTENSION in loaded_labextensions(page), (
        f"JupyterLab did not load {WIDGETS_LABEXTENSION}: widgets cannot render "
        f"(extensions loaded: {loaded_labextensions(page)})"
    )

    run_all_cells(page)
    wait_for_widgets(page, "JupyterLab")
    page.locator(STATUS_BAR).get_by_text(KERNEL_IDLE, exact=True).wait_for()

    assert_slider_redraws_image(page, "JupyterLab")
