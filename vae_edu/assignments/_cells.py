"""nbgrader cell metadata (schema version 3), read the way nbgrader reads it.

Every cell of an assignment's instructor source carries ``metadata.nbgrader``:

========================  =====  ========  ======  ==================================
cell                      grade  solution  locked  what the tools do with it
========================  =====  ========  ======  ==================================
answer (code)             false  true      false   solution region -> stub at release;
                                                   the student's version is graded
autograded answer (code)  true   true      false   as above, and worth ``points`` if it
                                                   runs without error
manual answer (markdown)  true   true      false   -> "YOUR ANSWER HERE"; graded by hand
tests (code)              true   false     true    hidden tests removed at release;
                                                   re-inserted from the source at grading
read-only (any)           false  false     true    restored from the source at grading
========================  =====  ========  ======  ==================================
"""

from __future__ import annotations

import re

NBGRADER_KEYS = ("grade", "grade_id", "locked", "points", "schema_version", "solution", "task")
_GRADE_ID = re.compile(r"^[a-zA-Z0-9_\-]+$")


def meta(cell) -> dict:
    """The cell's nbgrader metadata, or {} for a plain cell (or malformed metadata)."""
    if not isinstance(cell, dict):
        return {}
    metadata = cell.get("metadata", {})
    found = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
    return dict(found) if isinstance(found, dict) else {}


def grade_id(cell) -> str | None:
    gid = meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and _GRADE_ID.match(gid) else None


def safe_cells(nb) -> list[dict]:
    """A submission's cells, each reduced to a dict with a str ``cell_type`` and ``source``
    and a dict ``metadata``; anything malformed is dropped or emptied, never raised."""
    cells = nb.get("cells", []) if isinstance(nb, dict) else []
    out = []
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        metadata = cell.get("metadata", {})
        cell_type = cell.get("cell_type")
        out.append(
            {
                "cell_type": cell_type if isinstance(cell_type, str) else "unknown",
                "source": source if isinstance(source, str) else "",
                "metadata": metadata if isinstance(metadata, dict) else {},
            }
        )
    return out


def is_solution(cell) -> bool:
    return bool(meta(cell).get("solution", False))


def is_grade(cell) -> bool:
    return bool(meta(cell).get("grade", False))


def is_locked(cell) -> bool:
    return bool(meta(cell).get("locked", False))


def points(cell) -> float:
    value = meta(cell).get("points", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return 0.0
    return float(value)


def is_manual(cell) -> bool:
    """A Markdown answer graded by a person."""
    return cell.get("cell_type") == "markdown" and is_grade(cell) and is_solution(cell)


def is_test(cell) -> bool:
    """A locked code cell worth points: its (hidden) tests decide the score."""
    return cell.get("cell_type") == "code" and is_grade(cell) and not is_solution(cell)


def metadata_problems(cell) -> list[str]:
    """What nbgrader's schema-3 validator would reject in this cell's metadata."""
    m = meta(cell)
    if not m:
        return []
    problems = []
    if m.get("schema_version") != 3:
        problems.append(f"nbgrader schema_version is {m.get('schema_version')!r}, expected 3")
    for key in ("grade", "locked", "solution"):
        if not isinstance(m.get(key), bool):
            problems.append(f"nbgrader metadata needs a boolean {key!r}")
    unknown = sorted(set(m) - set(NBGRADER_KEYS) - {"checksum", "cell_type"})
    if unknown:
        problems.append(f"unknown nbgrader metadata keys {unknown}")
    if m.get("grade") or m.get("solution") or m.get("locked"):
        gid = m.get("grade_id")
        if not isinstance(gid, str) or not _GRADE_ID.match(gid):
            problems.append(
                f"grade_id {gid!r} must be a non-empty string of letters, digits, '_' and '-'"
            )
    if m.get("grade"):
        value = m.get("points")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append(f"a graded cell needs non-negative points, got {value!r}")
    if cell.get("cell_type") == "markdown" and bool(m.get("grade")) != bool(m.get("solution")):
        problems.append(
            "a Markdown cell must be both grade and solution (a manually graded answer) or neither"
        )
    if m.get("task") and cell.get("cell_type") != "markdown":
        problems.append("task cells must be Markdown")
    return problems
