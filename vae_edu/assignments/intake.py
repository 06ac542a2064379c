"""Intake: turning what students hand in into (student, notebook) pairs the grader can use.

* :func:`restore_metadata`: a submission whose cells lost their nbgrader metadata (cells
  pasted into a new notebook, a notebook re-saved by a tool that drops metadata) is matched
  to the instructor's cells by **cell id** (the instructor notebooks use the ``grade_id`` as
  the cell id), then, for locked cells, by **content**; the matched cells get the
  instructor's metadata back, with a note. Cells that still carry metadata are untouched.
* :func:`other_assignment_by_ids`: a metadata-less file of another assignment is recognised
  by its cell ids.
* :func:`collect`: submissions given as files, a folder per student
  (``submissions/alice/A1_kl_divergence.ipynb``) or a flat folder with the student's name
  in the file name (``alice_A1_kl_divergence.ipynb``, an LMS download).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import nbformat

from vae_edu.assignments import _cells
from vae_edu.assignments.release import released_text

__all__ = [
    "Submission",
    "collect",
    "other_assignment_by_ids",
    "restore_metadata",
    "sibling_sources",
    "student_name",
]

_TOKEN = re.compile(r"(?<![A-Za-z0-9])A\d+(?![0-9])")
_SEPARATORS = " _-.()[]"
_SKIPPED_DIRS = {".ipynb_checkpoints", "__MACOSX"}


def _cell_ids(nb) -> list:
    cells = nb.get("cells", []) if isinstance(nb, dict) else []
    return [c.get("id") for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def restore_metadata(source_nb, submission_nb):
    """The submission with nbgrader metadata restored on cells that lost it.

    A cell without ``metadata.nbgrader`` (lost, not malformed) gets the instructor's metadata
    when its cell id is the id of an instructor cell that carries a grade_id (and no other
    cell of the submission already has that grade_id), or, for a read-only or test cell of
    the instructor's, when its source is that cell's released text. Nothing else changes;
    what the student may do with a cell is decided later by the merge, from the source.

    Returns:
      (notebook, notes): a copy when anything was restored (else the submission itself)
      and a note naming the restored cells.
    """
    if not isinstance(submission_nb, dict) or not isinstance(submission_nb.get("cells"), list):
        return submission_nb, []
    by_id = {c.get("id"): c for c in source_nb.cells if _cells.grade_id(c)}
    by_text = {
        released_text(c): c
        for c in source_nb.cells
        if _cells.grade_id(c) and _cells.is_locked(c) and not _cells.is_solution(c)
    }
    present = {_cells.grade_id(c) for c in submission_nb["cells"] if isinstance(c, dict)}
    restored, by_content = [], []
    nb = None
    for index, cell in enumerate(submission_nb["cells"]):
        if not isinstance(cell, dict) or _cells.grade_id(cell):
            continue
        metadata = cell.get("metadata")
        if isinstance(metadata, dict) and "nbgrader" in metadata:
            continue  # malformed, not lost: ignored as before (the answer counts as unanswered)
        match, how = by_id.get(cell.get("id")), restored
        if match is None and isinstance(cell.get("source"), str | list):
            text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            match, how = by_text.get(text), by_content
        if match is None or match.get("cell_type") != cell.get("cell_type"):
            continue
        gid = _cells.grade_id(match)
        if gid in present:
            continue
        if nb is None:
            nb = copy.deepcopy(submission_nb)
        target = nb["cells"][index]
        if not isinstance(target.get("metadata"), dict):
            target["metadata"] = {}
        target["metadata"]["nbgrader"] = copy.deepcopy(dict(match["metadata"]["nbgrader"]))
        present.add(gid)
        how.append(gid)
    notes = []
    if restored or by_content:
        parts = []
        if restored:
            parts.append("by cell id: " + ", ".join(repr(g) for g in restored))
        if by_content:
            parts.append("by content: " + ", ".join(repr(g) for g in by_content))
        notes.append(
            f"{len(restored) + len(by_content)} cells had lost their nbgrader metadata; they "
            f"were matched to the instructor's cells ({'; '.join(parts)}) and graded as those."
        )
    return (nb if nb is not None else submission_nb), notes


def sibling_sources(source_path):
    """(path, notebook) of every other readable instructor notebook in the folder of
    ``source_path`` (the other assignments of the release), in name order."""
    source_path = Path(source_path)
    for path in sorted(source_path.parent.glob("*.ipynb")):
        if path.resolve() == source_path.resolve():
            continue
        try:
            yield path, nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable file is no assignment
            continue


def other_assignment_by_ids(source_path, source_nb, submission_nb) -> str | None:
    """The name of another assignment whose graded cells' ids the submission has, when it
    has none of this assignment's (a metadata-less file of another assignment)."""
    ids = {i for i in _cell_ids(submission_nb) if isinstance(i, str)}
    graded = {c.get("id") for c in source_nb.cells if _cells.grade_id(c) and _cells.is_grade(c)}
    if not ids or ids & graded:
        return None
    for path, other in sibling_sources(source_path):
        if ids & {c.get("id") for c in other.cells if _cells.grade_id(c) and _cells.is_grade(c)}:
            return path.stem
    return None


# ----------------------------------------------------------------------- collecting


@dataclasses.dataclass(frozen=True)
class Submission:
    """One handed-in notebook and whose it is."""

    student: str
    path: Path


def student_name(path, assignment_stems=(), pattern: re.Pattern | None = None) -> str:
    """The student's name from a file name: ``pattern``'s group ``student`` if given, else
    the file name without the assignment's name or number (``alice_A1_kl_divergence`` and
    ``A1_kl_divergence-alice`` give ``alice``); when nothing is left, the folder's name
    (``submissions/alice/A1_kl_divergence.ipynb`` gives ``alice``)."""
    path = Path(path)
    stem = path.stem
    if pattern is not None:
        found = pattern.search(stem)
        if found and found.groupdict().get("student"):
            return found.group("student").strip(_SEPARATORS)
    rest = stem
    for name in sorted(assignment_stems, key=len, reverse=True):
        rest = rest.replace(name, " ")
    rest = _TOKEN.sub(" ", rest)
    rest = re.sub(r"[ _\-.]{2,}", "_", rest).strip(_SEPARATORS)
    return rest or path.parent.name


def collect(paths, assignment_stems=(), pattern: re.Pattern | None = None) -> list[Submission]:
    """The submissions in ``paths``: notebook files, folders of student folders, or flat
    folders of notebooks (see :func:`student_name`).

    Raises:
      OSError: a path that does not exist, or a folder without notebooks.
    """
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(Submission(student_name(path, assignment_stems, pattern), path))
        elif path.is_dir():
            before = len(found)
            for child in sorted(path.iterdir()):
                if child.name in _SKIPPED_DIRS or child.name.startswith("."):
                    continue
                if child.is_dir():
                    for notebook in sorted(child.rglob("*.ipynb")):
                        if _SKIPPED_DIRS & set(notebook.relative_to(child).parts):
                            continue
                        found.append(Submission(child.name, notebook))
                elif child.suffix == ".ipynb":
                    found.append(Submission(student_name(child, assignment_stems, pattern), child))
            if len(found) == before:
                raise OSError(f"no .ipynb submissions in {path}")
        else:
            raise OSError(f"submission {path} does not exist")
    return found
