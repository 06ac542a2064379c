"""How long a lesson takes to study: counted from the notebook, at stated study rates.

Every lesson states its reading time at the top. A number typed by its author drifts as the
lesson changes (the course's first "30 minutes" understated a careful first reading by a
factor of 1.5 to 2), so the number is **counted** from the notebook itself and a test keeps
the header equal to the count. It is a count at stated rates, not a stopwatch: the rates
are study rates for technical text, and the header says so.

The count, for one notebook (:func:`count_notebook`):

* **prose words** of the markdown cells, LaTeX removed (formulas are counted separately),
  hidden answers included (a student reads them after trying), at ``WORDS_PER_MINUTE`` =
  150: study pace for technical text, well under the 238 words per minute of silent
  reading of non-fiction (Brysbaert 2019), the pace Carver (1992) calls learning;
* **formulas**: every display equation (``$$...$$``) at ``SECONDS_PER_EQUATION`` = 20 s, and
  every inline formula (``$...$``), most of them one symbol, at
  ``SECONDS_PER_INLINE_FORMULA`` = 2 s;
* **code**: the non-blank, non-comment lines of the code cells (the solutions included)
  at ``CODE_LINES_PER_MINUTE`` = 20 (read, not written), and the printed output at
  ``OUTPUT_LINES_PER_MINUTE`` = 40 lines a minute;
* **figures and widgets**: ``SECONDS_PER_FIGURE`` = 20 s for every image output and every
  widget (time spent playing with a widget is not counted);
* **coding exercises** (cells tagged ``exercise``): ``MINUTES_PER_CODING_EXERCISE`` = 10
  minutes each for writing, running and fixing the function.

:func:`stated_minutes` rounds the total up to a multiple of 5 minutes and
:func:`header_sentence` writes the header's sentence; ``python -m
vae_edu.assignments.reading_time --write NOTEBOOK ...`` puts it into the first cell (the
paragraph that starts with ``**Reading time:**``). ``tests/test_reading_time.py`` keeps
every lesson's stated minutes within 5 of the count.

Brysbaert, M. (2019). How many words do we read per minute? A review and meta-analysis of
reading rate. *Journal of Memory and Language* 109, 104047.
Carver, R. P. (1992). Reading rate: theory, research, and practical implications. *Journal
of Reading* 36(2), 84-95.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

import nbformat

__all__ = [
    "CODE_LINES_PER_MINUTE",
    "MINUTES_PER_CODING_EXERCISE",
    "OUTPUT_LINES_PER_MINUTE",
    "SECONDS_PER_EQUATION",
    "SECONDS_PER_FIGURE",
    "SECONDS_PER_INLINE_FORMULA",
    "WORDS_PER_MINUTE",
    "ReadingCount",
    "count_notebook",
    "header_sentence",
    "stated_minutes",
    "write_header",
]

HEADER_MARK = "**Reading time:**"

WORDS_PER_MINUTE = 150
SECONDS_PER_EQUATION = 20
SECONDS_PER_INLINE_FORMULA = 2
CODE_LINES_PER_MINUTE = 20
OUTPUT_LINES_PER_MINUTE = 40
SECONDS_PER_FIGURE = 20
MINUTES_PER_CODING_EXERCISE = 10

_DISPLAY = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE = re.compile(r"\$[^$\n]+?\$")
_HTML = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
_IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
_WIDGET_TYPE = "application/vnd.jupyter.widget-view+json"


@dataclasses.dataclass(frozen=True)
class ReadingCount:
    """What :func:`count_notebook` counted in one notebook, and the minutes it amounts to."""

    words: int
    display_equations: int
    inline_formulas: int
    code_lines: int
    output_lines: int
    figures: int
    coding_exercises: int

    @property
    def minutes(self) -> float:
        """The sum of every part at the module's rates (not rounded)."""
        return (
            self.words / WORDS_PER_MINUTE
            + self.display_equations * SECONDS_PER_EQUATION / 60
            + self.inline_formulas * SECONDS_PER_INLINE_FORMULA / 60
            + self.code_lines / CODE_LINES_PER_MINUTE
            + self.output_lines / OUTPUT_LINES_PER_MINUTE
            + self.figures * SECONDS_PER_FIGURE / 60
            + self.coding_exercises * MINUTES_PER_CODING_EXERCISE
        )

    @property
    def exercise_minutes(self) -> int:
        """The part of :attr:`minutes` allowed for the coding exercises."""
        return self.coding_exercises * MINUTES_PER_CODING_EXERCISE


def _output_counts(cell) -> tuple[int, int]:
    lines = figures = 0
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            lines += len(str(output.get("text", "")).strip("\n").splitlines())
        elif kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            if any(t in data for t in (*_IMAGE_TYPES, _WIDGET_TYPE)):
                figures += 1
            elif "text/plain" in data:
                lines += len(str(data["text/plain"]).strip("\n").splitlines())
    return lines, figures


def count_notebook(path) -> ReadingCount:
    """Counts the parts of a lesson that take reading time (see the module docstring).

    Raises ValueError naming the file if it is not a readable notebook.
    """
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as err:  # nbformat's read errors are ValueErrors
        raise ValueError(f"{path}: not a readable notebook ({type(err).__name__}: {err})") from None
    words = display = inline = code = output = figures = exercises = 0
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "markdown":
            display += len(_DISPLAY.findall(source))
            prose = _DISPLAY.sub(" ", source)
            inline += len(_INLINE.findall(prose))
            prose = _HTML.sub(" ", _INLINE.sub(" ", prose))
            words += len(_WORD.findall(prose))
        elif cell.cell_type == "code":
            code += sum(
                1
                for line in source.splitlines()
                if line.strip() and not line.strip().startswith("#")
            )
            lines, shown = _output_counts(cell)
            output += lines
            figures += shown
            if "exercise" in cell.metadata.get("tags", []):
                exercises += 1
    return ReadingCount(words, display, inline, code, output, figures, exercises)


def stated_minutes(count: ReadingCount) -> int:
    """The minutes a header states: the count rounded up to a multiple of 5."""
    return 5 * math.ceil(count.minutes / 5)


def header_sentence(count: ReadingCount) -> str:
    """The header's reading-time paragraph for a notebook with this count."""
    exercises = ""
    if count.coding_exercises:
        plural = "s" if count.coding_exercises > 1 else ""
        exercises = (
            f", including {count.exercise_minutes} minutes for the {count.coding_exercises} "
            f"coding exercise{plural}"
        )
    return (
        f"{HEADER_MARK} about {stated_minutes(count)} minutes{exercises}. Counted from this "
        f"notebook at study rates ({count.words:,} words at {WORDS_PER_MINUTE} a minute, "
        f"{count.code_lines} lines of code at {CODE_LINES_PER_MINUTE} a minute, formulas, "
        f"output and figures; `vae_edu.assignments.reading_time`), not timed with a stopwatch."
    )


_PARAGRAPH = re.compile(re.escape(HEADER_MARK) + r".*?(?=\n\s*\n|\Z)", re.S)


def write_header(path) -> str:
    """Rewrites the ``**Reading time:**`` paragraph of the notebook's first cell; returns it.

    The count is taken once, the sentence written, then counted again: the sentence's own
    words move the count by well under a minute, so a second pass changes nothing unless
    the total sits on a multiple of 5 (then the second pass settles it).
    """
    path = Path(path)
    for _ in range(2):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if first is None or HEADER_MARK not in first.source:
            raise ValueError(f"{path}: the first cell has no {HEADER_MARK!r} paragraph")
        sentence = header_sentence(count_notebook(path))
        first.source = _PARAGRAPH.sub(sentence.replace("\\", "\\\\"), first.source, count=1)
        nbformat.write(nb, path)
    return sentence


def main(argv=None) -> int:
    """``python -m vae_edu.assignments.reading_time [--write] NOTEBOOK ...``: one line each."""
    args = list(sys.argv[1:] if argv is None else argv)
    write = "--write" in args
    args = [a for a in args if a != "--write"]
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m vae_edu.assignments.reading_time [--write] NOTEBOOK.ipynb ...")
        return 2
    status = 0
    for arg in args:
        try:
            if write:
                write_header(arg)
            count = count_notebook(arg)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        print(
            f"{Path(arg).name}: about {stated_minutes(count)} minutes "
            f"({count.minutes:.1f}: {count.words} words, {count.display_equations} display "
            f"equations, {count.inline_formulas} inline formulas, {count.code_lines} lines of "
            f"code, {count.output_lines} lines of output, {count.figures} figures or widgets, "
            f"{count.coding_exercises} coding exercises)"
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
