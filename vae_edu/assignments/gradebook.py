"""Grading a class: many submissions at once, a gradebook, feedback, written answers.

``python -m vae_edu.assignments grade submissions/ --out grades/ --jobs 2`` grades every
submission (several at once, each in its own process and sandboxed kernel) and writes::

    grades/
      grades.json                  every report, with the student's name
      gradebook.csv                one row per student, one column per question, totals
      feedback/<student>/<A>.md    per student and assignment: score per question and the
                                   check's message (never the hidden tests' source)
      written/<A>/<question>.md    every student's answer to one hand-graded question
      manual.csv                   one row per hand-graded answer: fill in points, comment

``python -m vae_edu.assignments merge grades/ [grades/manual.csv]`` then reads the points
and comments given by hand, checks them, and rewrites ``gradebook.csv`` and the feedback
files. A row of ``manual.csv`` may also name an autograded question: its points replace the
autograder's (a regrade), and the feedback says so.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import math
import multiprocessing
import os
import re
import tempfile
from pathlib import Path

import nbformat

from vae_edu.assignments import _cells, grade
from vae_edu.assignments import intake as _intake

__all__ = [
    "MANUAL_FIELDS",
    "GradebookError",
    "grade_many",
    "merge",
    "read_manual",
    "write_outputs",
]

MANUAL_FIELDS = ["student", "assignment", "question", "max_points", "points", "comment"]
_SAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")


class GradebookError(ValueError):
    """Bad gradebook input (a manual CSV that does not fit the grades, a broken grades.json)."""


# ----------------------------------------------------------------------- grading many


def _init_worker(baseline: dict) -> None:
    # The digests the parent took before any student code ran, not the ones this process
    # would take now: a submission graded by another worker cannot launder a change.
    grade.SOURCE_BASELINE.clear()
    grade.SOURCE_BASELINE.update(baseline)


def _grade_one(path: str, source, options: dict) -> dict:
    return grade.grade_submission(path, source, **options).to_dict()


def grade_many(items, *, jobs: int = 1, progress: bool = True, **options):
    """Grades ``items`` = [(key, path, source)], ``jobs`` at a time.

    Yields (key, report dict) as submissions finish. Each submission runs in its own
    process when ``jobs > 1`` (spawned, so it works the same on Windows and macOS).
    ``options`` are :func:`grade.grade_submission`'s keyword arguments.

    Raises:
      GradingError: SourcesChangedError stops everything.
    """
    items = list(items)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="submission", desc="grading", dynamic_ncols=True)
    try:
        if jobs <= 1 or len(items) <= 1:
            for key, path, source in items:
                yield key, _grade_one(str(path), source, options)
                if bar is not None:
                    bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(items)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(dict(grade.SOURCE_BASELINE),),
        ) as pool:
            futures = {
                pool.submit(_grade_one, str(path), source, options): key
                for key, path, source in items
            }
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield futures[future], future.result()
                    if bar is not None:
                        bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        grade.verify_sources()
    finally:
        if bar is not None:
            bar.close()


# ----------------------------------------------------------------------- outputs


def _safe(name: str) -> str:
    return _SAFE.sub("_", name).strip("_") or "unnamed"


def _num(x) -> str:
    if x is None:
        return ""
    return f"{x:g}"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # a lone surrogate in a student's text is written as its escape, never an error
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _question_order(records) -> dict[str, list[tuple[str, float, str]]]:
    """{assignment: [(grade_id, max_points, kind)]} in the order the reports list them."""
    order = {}
    for record in records:
        report = record["report"]
        known = order.setdefault(report["assignment"], [])
        seen = {q[0] for q in known}
        for q in report["questions"]:
            if q["grade_id"] not in seen:
                known.append((q["grade_id"], q["max_points"], q["kind"]))
                seen.add(q["grade_id"])
    return dict(sorted(order.items()))


def _effective(question: dict, manual: dict) -> tuple[float | None, str]:
    """(points, comment) of one question after the points given by hand."""
    given = manual.get(question["grade_id"])
    if given is not None and given["points"] is not None:
        return given["points"], given["comment"]
    comment = given["comment"] if given else ""
    return question["points"], comment


def gradebook_csv(records, manual=None) -> str:
    """The gradebook: one row per student, one column per question, then per assignment the
    autograded points, the points given by hand, the total and the number of answers still
    to grade by hand, and the overall total. The first row holds the maximum points."""
    manual = manual or {}
    order = _question_order(records)
    header = ["student"]
    maximum = ["(max points)"]
    for assignment, questions in order.items():
        for gid, worth, _ in questions:
            header.append(f"{assignment}:{gid}")
            maximum.append(_num(worth))
        auto = sum(w for _, w, k in questions if k != "manual")
        by_hand = sum(w for _, w, k in questions if k == "manual")
        header += [f"{assignment}:autograded", f"{assignment}:manual", f"{assignment}:total"]
        header.append(f"{assignment}:to_grade_by_hand")
        maximum += [_num(auto), _num(by_hand), _num(auto + by_hand), ""]
    header.append("total")
    maximum.append(_num(sum(w for qs in order.values() for _, w, _ in qs)))
    by_student = {}
    for record in records:
        by_student.setdefault(record["student"], {})[record["report"]["assignment"]] = record
    rows = [header, maximum]
    for student in sorted(by_student):
        row, overall = [student], 0.0
        for assignment, questions in order.items():
            record = by_student[student].get(assignment)
            if record is None:
                row += [""] * (len(questions) + 4)
                continue
            given = manual.get((student, assignment), {})
            results = {q["grade_id"]: q for q in record["report"]["questions"]}
            auto = by_hand = 0.0
            pending = 0
            for gid, _, kind in questions:
                q = results.get(gid)
                points = None if q is None else _effective(q, given)[0]
                row.append(_num(points))
                if points is None:
                    pending += q is not None and kind == "manual"
                elif kind == "manual":
                    by_hand += points
                else:
                    auto += points
            row += [_num(auto), _num(by_hand), _num(auto + by_hand), str(pending)]
            overall += auto + by_hand
        row.append(_num(overall))
        rows.append(row)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def feedback_markdown(record, manual=None) -> str:
    """The feedback a student gets for one assignment: points per question, the check's
    message and the grader's comment. Never the hidden tests' source."""
    report, manual = record["report"], manual or {}
    lines = [
        f"# Feedback: {report['assignment']}",
        "",
        f"Student: {record['student']}  ",
        f"Submission: `{Path(report['submission']).name}`",
        "",
        "| question | points | status |",
        "|---|---|---|",
    ]
    total = maximum = 0.0
    pending = False
    for q in report["questions"]:
        points, _ = _effective(q, manual)
        status = q["status"]
        if q["grade_id"] in manual and manual[q["grade_id"]]["points"] is not None:
            status = "graded by hand" if q["kind"] == "manual" else "changed by hand"
        shown = "to be graded" if points is None else _num(points)
        pending |= points is None
        total += points or 0.0
        maximum += q["max_points"]
        lines.append(f"| {q['grade_id']} | {shown} / {_num(q['max_points'])} | {status} |")
    lines.append(f"| **total** | **{_num(total)} / {_num(maximum)}** | |")
    if pending:
        lines += ["", "Some answers are still to be graded by hand; the total will change."]
    details = []
    for q in report["questions"]:
        _, comment = _effective(q, manual)
        if q["message"] or comment:
            details += ["", f"## {q['grade_id']}", ""]
            if q["message"]:
                details += ["```", q["message"].replace("```", "'''"), "```"]
            if comment:
                details += ["", f"Comment: {comment}"]
    if details:
        lines += ["", "# Details", *details]
    notes = [n for n in report.get("notes", []) if not n.startswith("student code ran as")]
    if notes:
        lines += ["", "# Notes", ""] + [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _written_answers(records) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """{(assignment, question): [(student, answer text)]} for the hand-graded questions."""
    answers = {}
    for record in records:
        report = record["report"]
        manual_ids = [q["grade_id"] for q in report["questions"] if q["kind"] == "manual"]
        if not manual_ids:
            continue
        texts = {}
        try:
            nb = nbformat.read(report["submission"], as_version=4)
            source = nbformat.read(report["source"], as_version=4)
            nb, _ = _intake.restore_metadata(source, nb)
            for cell in _cells.safe_cells(nb):
                gid = _cells.grade_id(cell)
                if gid in manual_ids and gid not in texts:
                    texts[gid] = cell["source"]
        except Exception:  # noqa: BLE001 - an unreadable submission has no answers
            pass
        for gid in manual_ids:
            answers.setdefault((report["assignment"], gid), []).append(
                (record["student"], texts.get(gid, "(no answer cell)"))
            )
    return answers


def _written_markdown(assignment, gid, worth, answers) -> str:
    lines = [
        f"# {assignment}: {gid} ({_num(worth)} points, graded by hand)",
        "",
        "Enter the points and a comment for each student in manual.csv, then run",
        "`python -m vae_edu.assignments merge` on the grades folder.",
    ]
    for student, text in sorted(answers):
        lines += ["", "---", "", f"## {student}", "", text.strip() or "(empty)"]
    return "\n".join(lines) + "\n"


def _manual_template(records) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANUAL_FIELDS)
    for record in sorted(records, key=lambda r: (r["student"], r["report"]["assignment"])):
        for q in record["report"]["questions"]:
            if q["kind"] != "manual":
                continue
            given = "" if q["points"] is None else _num(q["points"])  # unanswered: 0
            writer.writerow(
                [
                    record["student"],
                    record["report"]["assignment"],
                    q["grade_id"],
                    _num(q["max_points"]),
                    given,
                    "",
                ]
            )
    return out.getvalue()


def _feedback_path(out_dir: Path, record) -> Path:
    return out_dir / "feedback" / _safe(record["student"]) / f"{record['report']['assignment']}.md"


def write_outputs(records, out_dir, manual=None) -> list[Path]:
    """Writes grades.json, gradebook.csv, the feedback files, the written answers and (if
    absent) manual.csv to ``out_dir``. Returns the written paths."""
    out_dir = Path(out_dir)
    records = sorted(records, key=lambda r: (r["student"], r["report"]["assignment"]))
    files = {
        out_dir / "grades.json": json.dumps(records, indent=2, sort_keys=True) + "\n",
        out_dir / "gradebook.csv": gradebook_csv(records, manual),
    }
    for record in records:
        given = (manual or {}).get((record["student"], record["report"]["assignment"]), {})
        files[_feedback_path(out_dir, record)] = feedback_markdown(record, given)
    order = _question_order(records)
    for (assignment, gid), answers in _written_answers(records).items():
        worth = next(w for g, w, _ in order[assignment] if g == gid)
        files[out_dir / "written" / assignment / f"{gid}.md"] = _written_markdown(
            assignment, gid, worth, answers
        )
    if not (out_dir / "manual.csv").exists():
        files[out_dir / "manual.csv"] = _manual_template(records)
    for path, text in files.items():
        _atomic_write(path, text)
    return sorted(files)


# ----------------------------------------------------------------------- merging


def read_manual(path, records) -> dict:
    """{(student, assignment): {question: {"points", "comment"}}} from a manual CSV, checked
    against the grades: every row must name a graded student, assignment and question, and
    give points between 0 and the question's maximum (or none, with only a comment).

    Raises:
      GradebookError: naming the row, for anything that does not fit.
    """
    worth = {}
    for record in records:
        for q in record["report"]["questions"]:
            worth[record["student"], record["report"]["assignment"], q["grade_id"]] = q[
                "max_points"
            ]
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise GradebookError(f"cannot read {path}: {err.strerror or err}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"student", "assignment", "question", "points"} - set(reader.fieldnames or [])
    if missing:
        raise GradebookError(f"{path}: missing columns {', '.join(sorted(missing))}")
    manual = {}
    for line, row in enumerate(reader, start=2):
        student, assignment = (row.get("student") or "").strip(), (row.get("assignment") or "")
        assignment, question = assignment.strip(), (row.get("question") or "").strip()
        key = (student, assignment, question)
        if key not in worth:
            raise GradebookError(
                f"{path}, line {line}: no graded question {question!r} of {assignment!r} "
                f"for student {student!r}"
            )
        raw = (row.get("points") or "").strip()
        points = None
        if raw:
            try:
                points = float(raw)
            except ValueError:
                raise GradebookError(
                    f"{path}, line {line}: points {raw!r} is not a number"
                ) from None
            if not math.isfinite(points) or not 0 <= points <= worth[key]:
                raise GradebookError(
                    f"{path}, line {line}: points {raw} outside 0 to {_num(worth[key])}"
                )
        entry = manual.setdefault((student, assignment), {})
        if question in entry:
            raise GradebookError(f"{path}, line {line}: {question!r} given twice for {student!r}")
        entry[question] = {"points": points, "comment": (row.get("comment") or "").strip()}
    return manual


def load_records(grades_dir) -> list[dict]:
    path = Path(grades_dir) / "grades.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise GradebookError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise GradebookError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "student" in r and "report" in r for r in records
    ):
        raise GradebookError(f"{path} is not a grades file written by `grade --out`")
    return records


def merge(grades_dir, manual_csv=None) -> list[Path]:
    """Merges the points given by hand into the gradebook and the feedback files."""
    grades_dir = Path(grades_dir)
    records = load_records(grades_dir)
    manual = read_manual(manual_csv or grades_dir / "manual.csv", records)
    return write_outputs(records, grades_dir, manual)
