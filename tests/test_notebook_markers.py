"""The nbval markers in the notebooks do what their authors meant.

nbval only honours a marker written exactly as a whole comment line (``# NBVAL_IGNORE_OUTPUT``);
``# NBVAL_IGNORE_OUTPUT: because ...`` is silently an ordinary comment, and the cell is then
compared after all. The course's rule for ignored outputs (README, "Portable notebooks") is
that the cell says why and still checks its claims with ``assert``, so nbval fails when a
value is wrong (a cell that only displays a widget prints no claims). ``NBVAL_SKIP`` (the
cell is not even run) is never allowed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def _code_cells(path):
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code":
            yield index, cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_are_exact_and_ignored_outputs_are_asserted(path):
    for index, cell in _code_cells(path):
        comments = [
            line.strip().lstrip("#").strip()
            for line in cell.source.splitlines()
            if line.strip().startswith("#")
        ]
        for comment in comments:
            if "NBVAL" in comment:
                assert comment in {"NBVAL_IGNORE_OUTPUT", "NBVAL_RAISES_EXCEPTION"}, (
                    f"{path.name} cell {index}: {comment!r} is not a marker nbval honours "
                    "(write it alone on its line; NBVAL_SKIP is not allowed)"
                )
        tags = cell.metadata.get("tags", [])
        assert not any(str(tag).startswith("nbval-skip") for tag in tags), (path.name, index)
        if "NBVAL_IGNORE_OUTPUT" in comments or "nbval-ignore-output" in tags:
            reasons = [c for c in comments if c and "NBVAL" not in c]
            assert reasons, f"{path.name} cell {index}: say why the output is ignored"
            # Either the cell prints claims (then it asserts them), or it only shows a widget,
            # whose output nbclient and nbval's kernel client route differently.
            shows_widget = "display(" in cell.source and "widgets." in cell.source
            assert "assert " in cell.source or (shows_widget and "print(" not in cell.source), (
                f"{path.name} cell {index}: an ignored output must still assert its claims"
            )
