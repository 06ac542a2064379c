"""Tests for vae_edu.assignments.reading_time: the count, its rates, every lesson's header.

Independent route for the count: a toy notebook whose words, formulas, code lines, outputs,
figures and exercises are known by construction, so the minutes are known by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import reading_time as rt

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def toy_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    header = "# Toy\n\n**Prerequisites:** none. **Reading time:** about 1 minute (typed by hand).\n"
    prose = "one two three four five $x$ six $$a = b$$ seven <b>eight</b>"
    code = nbformat.v4.new_code_cell("import numpy as np\n\n# a comment\nprint(1)\nprint(2)")
    code.outputs = [nbformat.v4.new_output("stream", text="1\n2\n")]
    figure = nbformat.v4.new_code_cell("show()")
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "AAAA"})]
    stub = nbformat.v4.new_code_cell('raise NotImplementedError("Exercise 1.1: your code here")')
    stub.metadata["tags"] = ["exercise"]
    nb.cells = [nbformat.v4.new_markdown_cell(header), nbformat.v4.new_markdown_cell(prose)]
    nb.cells += [code, figure, stub]
    nbformat.write(nb, path)
    return path


def test_the_count_of_a_toy_notebook_is_known_by_hand(tmp_path):
    count = rt.count_notebook(toy_notebook(tmp_path / "toy.ipynb"))
    header_words = len("Toy Prerequisites none Reading time about 1 minute typed by hand".split())
    assert count.words == header_words + 8  # "<b>" tags and formulas are not words
    assert (count.display_equations, count.inline_formulas) == (1, 1)
    assert count.code_lines == 3 + 1 + 1  # blank and comment lines not counted
    assert (count.output_lines, count.figures, count.coding_exercises) == (2, 1, 1)
    by_hand = count.words / 150 + 20 / 60 + 2 / 60 + count.code_lines / 20 + 2 / 40 + 20 / 60 + 10
    assert count.minutes == pytest.approx(by_hand)
    assert rt.stated_minutes(count) == 15


def test_write_header_replaces_only_the_reading_time_paragraph(tmp_path):
    path = toy_notebook(tmp_path / "toy.ipynb")
    sentence = rt.write_header(path)
    first = nbformat.read(path, as_version=4).cells[0].source
    assert first.startswith("# Toy\n\n**Prerequisites:** none. " + sentence)
    assert "typed by hand" not in first
    assert "including 10 minutes for the 1 coding exercise" in sentence
    assert rt.write_header(path) == sentence  # a second pass changes nothing


def test_bad_input_is_named(tmp_path, capsys):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    with pytest.raises(ValueError, match="broken.ipynb: not a readable notebook"):
        rt.count_notebook(broken)
    assert rt.main([str(broken)]) == 2
    assert "not a readable notebook" in capsys.readouterr().err
    assert rt.main(["--bogus"]) == 2
    no_header = tmp_path / "plain.ipynb"
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# x")])
    nbformat.write(plain, no_header)
    with pytest.raises(ValueError, match="no '\\*\\*Reading time:\\*\\*' paragraph"):
        rt.write_header(no_header)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_states_its_counted_reading_time(path):
    """The header's minutes are within 5 of the count (outputs may change a little on
    re-execution), and the header says how they were counted."""
    first = nbformat.read(path, as_version=4).cells[0].source
    match = re.search(r"\*\*Reading time:\*\* about (\d+) minutes", first)
    assert match, f"{path.name}: no reading time in the first cell"
    count = rt.count_notebook(path)
    assert abs(int(match.group(1)) - count.minutes) <= 5, (path.name, count)
    assert "Counted from this notebook at study rates" in first
    if count.coding_exercises:
        assert f"including {count.exercise_minutes} minutes for the" in first
