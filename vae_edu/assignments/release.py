"""Student versions of instructor notebooks, with nbgrader's markup.

In the instructor source, solutions live between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` and hidden tests between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS``. Releasing a notebook

* replaces every solution region by ``# YOUR CODE HERE`` / ``raise NotImplementedError()``
  (code, indented like the marker) or ``YOUR ANSWER HERE`` (Markdown), as nbgrader does;
  a solution cell without markers is replaced as a whole;
* deletes every hidden-test region;
* clears outputs and execution counts, drops run-time metadata (timings, widget state);
* locks graded and read-only cells against editing/deleting in Jupyter (as nbgrader does);
* keeps cell ids and nbgrader metadata, so the grader can match cells by ``grade_id``.

The output is deterministic: the same source gives byte-identical files (sorted keys, the
source's fixed cell ids). Unbalanced or nested markers, markers in the wrong kind of cell
and invalid nbgrader metadata raise :class:`MarkerError` naming the notebook and the cell.

The lessons' student editions (:func:`student_edition`, :func:`release_lessons`, at the end
of this module) use the lessons' cell tags instead: ``solution`` cells removed, the outputs
of ``exercise`` and ``feedback`` cells cleared, everything else kept as executed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from vae_edu.assignments import _cells

__all__ = [
    "CODE_STUB",
    "MarkerError",
    "TEXT_STUB",
    "release_cell",
    "release_directory",
    "release_lessons",
    "refuse_lesson_folder",
    "release_notebook",
    "released_text",
    "student_edition",
    "student_editions",
    "validate_lesson",
    "validate_source",
    "write_editions",
]

BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"

# Cell metadata that survives the release (everything else, e.g. nbclient's execution
# timings or "scrolled", is run-time noise).
_KEPT_CELL_METADATA = ("deletable", "editable", "jupyter", "nbgrader", "tags", "vae_edu")
_KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info", "vae_edu")
_INDENT = re.compile(r"\s*")


class MarkerError(ValueError):
    """An instructor notebook's markup is broken; the message names notebook and cell."""


def _where(notebook: str, index: int, cell) -> str:
    gid = _cells.grade_id(cell)
    named = f", grade_id {gid!r}" if gid else ""
    first = next((line.strip() for line in cell.get("source", "").splitlines() if line.strip()), "")
    return f"{notebook}, cell {index + 1} ({cell.get('cell_type')}{named}: {first[:60]!r})"


def _regions(lines: list[str], begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """(start, stop) line indices of each begin/end region; MarkerError if unbalanced."""
    regions, start = [], None
    for i, line in enumerate(lines):
        if begin in line:
            if start is not None:
                raise MarkerError(
                    f"{where}: nested '{begin}' on line {i + 1} (the region "
                    f"opened on line {start + 1} is not closed)"
                )
            start = i
        elif end in line:
            if start is None:
                raise MarkerError(f"{where}: '{end}' on line {i + 1} without a matching '{begin}'")
            regions.append((start, i))
            start = None
    if start is not None:
        raise MarkerError(f"{where}: '{begin}' on line {start + 1} is never closed by '{end}'")
    return regions


def _check_cell(cell, where: str) -> None:
    problems = _cells.metadata_problems(cell)
    if problems:
        raise MarkerError(f"{where}: " + "; ".join(problems))
    lines = cell.get("source", "").splitlines()
    solutions = _regions(lines, BEGIN_SOLUTION, END_SOLUTION, where)
    hidden = _regions(lines, BEGIN_HIDDEN, END_HIDDEN, where)
    for s0, s1 in solutions:
        for h0, h1 in hidden:
            if s0 <= h1 and h0 <= s1:
                raise MarkerError(
                    f"{where}: a solution region (lines {s0 + 1}-{s1 + 1}) and a "
                    f"hidden-test region (lines {h0 + 1}-{h1 + 1}) overlap"
                )
    if solutions and not _cells.is_solution(cell):
        raise MarkerError(
            f"{where}: has '{BEGIN_SOLUTION}' markers but is not an nbgrader "
            "solution cell (metadata.nbgrader.solution must be true)"
        )
    if hidden and not (_cells.is_grade(cell) and cell.get("cell_type") == "code"):
        raise MarkerError(
            f"{where}: has '{BEGIN_HIDDEN}' markers but is not an nbgrader "
            "graded code cell (metadata.nbgrader.grade must be true)"
        )
    if _cells.is_test(cell) and not _cells.is_locked(cell):
        raise MarkerError(f"{where}: a test cell (grade, not solution) must be locked")


def validate_source(nb, notebook: str = "notebook") -> None:
    """Raises MarkerError, naming ``notebook`` and the cell, for any broken markup.

    Checks balanced, non-nested, non-overlapping solution and hidden-test markers, that
    markers sit in the right kind of cell, nbgrader's schema-3 metadata rules, and that
    grade_ids and cell ids are unique.
    """
    seen_grade_ids, seen_ids = {}, {}
    for index, cell in enumerate(nb.cells):
        where = _where(notebook, index, cell)
        _check_cell(cell, where)
        gid = _cells.grade_id(cell)
        if gid is not None:
            if gid in seen_grade_ids:
                raise MarkerError(
                    f"{where}: grade_id {gid!r} is also used by cell {seen_grade_ids[gid] + 1}"
                )
            seen_grade_ids[gid] = index
        cell_id = cell.get("id")
        if cell_id is not None:
            if cell_id in seen_ids:
                raise MarkerError(
                    f"{where}: cell id {cell_id!r} is also used by cell {seen_ids[cell_id] + 1}"
                )
            seen_ids[cell_id] = index


def released_text(cell) -> str:
    """The student version of one cell's source (solutions stubbed, hidden tests removed)."""
    source = cell.get("source", "")
    lines = source.splitlines()
    code = cell.get("cell_type") == "code"
    stub = CODE_STUB if code else TEXT_STUB
    if _cells.is_solution(cell) and not any(BEGIN_SOLUTION in line for line in lines):
        return stub  # nbgrader: an unmarked solution cell is replaced as a whole
    out, in_solution, in_hidden = [], False, False
    for line in lines:
        if BEGIN_SOLUTION in line:
            in_solution = True
            indent = _INDENT.match(line).group(0) if code else ""
            out.extend(indent + stub_line for stub_line in stub.splitlines())
        elif END_SOLUTION in line:
            in_solution = False
        elif BEGIN_HIDDEN in line:
            in_hidden = True
        elif END_HIDDEN in line:
            in_hidden = False
        elif not (in_solution or in_hidden):
            out.append(line)
    while out and not out[-1].strip():  # no trailing blank lines left by a removed region
        out.pop()
    return "\n".join(out)


def release_cell(cell):
    """The student version of one cell: new source, no outputs, nbgrader's cell locks."""
    cell = copy.deepcopy(cell)
    cell["source"] = released_text(cell)
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    if "attachments" in cell and not cell["attachments"]:
        del cell["attachments"]
    metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in _KEPT_CELL_METADATA}
    if _cells.meta(cell):
        if _cells.is_grade(cell) or _cells.is_locked(cell) or _cells.is_solution(cell):
            metadata["deletable"] = False
        if _cells.is_locked(cell) and not _cells.is_solution(cell):
            metadata["editable"] = False
    cell["metadata"] = nbformat.from_dict(metadata)
    return cell


def release_notebook(nb, notebook: str = "notebook"):
    """The student version of an instructor notebook (a new NotebookNode).

    Args:
      nb: the instructor source (nbformat v4 NotebookNode).
      notebook: its name, used in error messages.

    Returns:
      The student notebook.

    Raises:
      MarkerError: for broken markup (see :func:`validate_source`).
    """
    validate_source(nb, notebook)
    student = copy.deepcopy(nb)
    student.cells = [release_cell(cell) for cell in nb.cells]
    student.metadata = nbformat.from_dict(
        {k: v for k, v in nb.metadata.items() if k in _KEPT_NOTEBOOK_METADATA}
    )
    nbformat.validate(student)
    return student


def notebook_bytes(nb) -> bytes:
    """The canonical bytes of a released notebook: nbformat JSON (sorted keys) + newline."""
    return (nbformat.writes(nb) + "\n").encode("utf-8")  # writes() sorts keys


def release_directory(source_dir, out_dir) -> list[Path]:
    """Writes the student version of every ``*.ipynb`` in ``source_dir`` to ``out_dir``.

    Args:
      source_dir: folder of instructor notebooks (not searched recursively).
      out_dir: destination folder, created if needed; must differ from ``source_dir``.

    Returns:
      The written paths, sorted.

    Raises:
      MarkerError: for broken markup, before anything is written.
      ValueError: if out_dir is source_dir (that would overwrite the solutions) or no
        notebook is found.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise ValueError(f"{source_dir} is not a directory")
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError(
            f"refusing to release into the source directory {source_dir}: it "
            "would overwrite the instructor notebooks with their solutions"
        )
    sources = sorted(p for p in source_dir.glob("*.ipynb") if p.is_file())
    if not sources:
        raise ValueError(f"no *.ipynb notebooks in {source_dir}")
    released = {}
    for path in sources:  # validate everything first: all or nothing
        nb = nbformat.read(path, as_version=4)
        released[path.name] = notebook_bytes(release_notebook(nb, path.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in released.items():
        target = out_dir / name
        target.write_bytes(data)
        written.append(target)
    return written


# ----------------------------------------------------------------------- student editions
# of the lessons. A lesson's in-lesson exercise (see vae_edu.exercises) is a run of cells
# tagged in ``metadata.tags``: one ``exercise`` code cell (the stub), then one or more
# ``solution`` cells (a "Solution (try first)" heading and the hidden worked solution, at
# least one of them code), then one ``feedback`` code cell; untagged cells may sit between.
# The student edition drops the ``solution`` cells, clears the outputs of the ``exercise``
# and ``feedback`` cells (they showed the instructor's "correct") and keeps everything else
# as committed, outputs included, so the lesson still reads well before it is run.

EXERCISE_TAG, SOLUTION_TAG, FEEDBACK_TAG = "exercise", "solution", "feedback"
_EXERCISE_TAGS = (EXERCISE_TAG, SOLUTION_TAG, FEEDBACK_TAG)


def _exercise_tag(cell, where: str) -> str | None:
    """The cell's one exercise tag (or None); MarkerError if it carries several."""
    tags = cell.get("metadata", {}).get("tags", [])
    found = [t for t in _EXERCISE_TAGS if t in tags]
    if len(found) > 1:
        raise MarkerError(f"{where}: tagged both {found[0]!r} and {found[1]!r}")
    return found[0] if found else None


def validate_lesson(nb, notebook: str = "lesson") -> int:
    """Checks the exercise tag layout of a lesson; returns its number of exercises.

    Each exercise is ``exercise`` (code), ``solution`` cells (at least one of them code),
    ``feedback`` (code), in this order; a ``solution`` or ``feedback`` cell outside such a
    run, an exercise without worked solution or feedback, a markdown stub or feedback cell,
    or a cell with two of the tags raises :class:`MarkerError` naming the notebook and the
    cell.
    """
    opened, solved, count = None, False, 0  # opened: where the open exercise's stub is
    for index, cell in enumerate(nb.cells):
        where = _where(notebook, index, cell)
        tag = _exercise_tag(cell, where)
        if tag in (EXERCISE_TAG, FEEDBACK_TAG) and cell.get("cell_type") != "code":
            raise MarkerError(f"{where}: an {tag!r} cell must be a code cell")
        if tag == EXERCISE_TAG:
            if opened is not None:
                raise MarkerError(
                    f"{where}: a new exercise starts, but the exercise in {opened} has no "
                    f"{FEEDBACK_TAG!r} cell yet"
                )
            opened, solved = where, False
        elif tag == SOLUTION_TAG:
            if opened is None:
                raise MarkerError(
                    f"{where}: a {SOLUTION_TAG!r} cell with no preceding {EXERCISE_TAG!r} cell "
                    f"(solution cells go between an exercise's stub and its feedback cell)"
                )
            solved = solved or cell.get("cell_type") == "code"
        elif tag == FEEDBACK_TAG:
            if opened is None:
                raise MarkerError(
                    f"{where}: a {FEEDBACK_TAG!r} cell with no preceding {EXERCISE_TAG!r} cell"
                )
            if not solved:
                raise MarkerError(
                    f"{where}: the exercise in {opened} has no worked solution (a code "
                    f"cell tagged {SOLUTION_TAG!r} before its feedback cell)"
                )
            opened, count = None, count + 1
    if opened is not None:
        raise MarkerError(
            f"{opened}: the exercise has no {FEEDBACK_TAG!r} cell after it (in {notebook})"
        )
    return count


def student_edition(nb, notebook: str = "lesson"):
    """The student edition of a lesson (a new NotebookNode; ``nb`` is not changed).

    ``solution`` cells removed; ``exercise`` and ``feedback`` cells without outputs
    (``execution_count`` None); every other cell, and the notebook's metadata, as in ``nb``.

    Raises:
      MarkerError: for a malformed tag layout (see :func:`validate_lesson`).
    """
    validate_lesson(nb, notebook)
    student = copy.deepcopy(nb)
    cells = []
    for cell in student.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            continue
        if EXERCISE_TAG in tags or FEEDBACK_TAG in tags:
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    student.cells = cells
    nbformat.validate(student)
    return student


def student_editions(lessons_dir) -> dict[str, bytes]:
    """{file name: canonical bytes} of the student edition of every ``*.ipynb`` lesson in
    ``lessons_dir`` (not searched recursively); every lesson is checked before it returns.

    Raises:
      ValueError: no such folder, or no notebook in it.
      MarkerError: a lesson's malformed tag layout.
    """
    lessons_dir = Path(lessons_dir)
    if not lessons_dir.is_dir():
        raise ValueError(f"lesson folder {lessons_dir} is not a directory")
    paths = sorted(p for p in lessons_dir.glob("*.ipynb") if p.is_file())
    if not paths:
        raise ValueError(f"no lesson notebooks (*.ipynb) in {lessons_dir}")
    return {
        p.name: notebook_bytes(student_edition(nbformat.read(p, as_version=4), p.name))
        for p in paths
    }


def refuse_lesson_folder(out_dir, source_dir) -> None:
    """ValueError if ``out_dir`` is the lesson folder ``source_dir`` (writing there would
    overwrite the instructor edition with its solutions)."""
    if Path(out_dir).resolve() == Path(source_dir).resolve():
        raise ValueError(
            f"refusing to write the student editions into the lesson folder {source_dir}: "
            "it would overwrite the instructor edition with its solutions"
        )


def write_editions(editions: dict[str, bytes], out_dir, source_dir=None) -> list[Path]:
    """Writes ``editions`` ({file name: bytes}) into ``out_dir`` (created if needed); refuses
    ``out_dir`` == ``source_dir``, which would overwrite the instructor edition."""
    out_dir = Path(out_dir)
    if source_dir is not None:
        refuse_lesson_folder(out_dir, source_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sorted(editions.items()):
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    return written


def release_lessons(source_dir, out_dir) -> list[Path]:
    """Writes the student edition of every lesson in ``source_dir`` to ``out_dir``.

    All lessons are checked before anything is written. Returns the written paths, sorted.

    Raises:
      MarkerError: a lesson's malformed tag layout (nothing is written).
      ValueError: no lessons, or ``out_dir`` is ``source_dir``.
    """
    refuse_lesson_folder(out_dir, source_dir)
    return write_editions(student_editions(source_dir), out_dir, source_dir)
