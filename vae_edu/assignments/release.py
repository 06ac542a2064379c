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
    "release_notebook",
    "released_text",
    "validate_source",
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
