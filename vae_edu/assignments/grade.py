"""Grade a student's notebook against its instructor source.

:func:`grade_submission` rebuilds the notebook from the instructor source, taking only
the student's *answer* cells (nbgrader ``solution`` cells, matched by ``grade_id``) and
any cells the student added; every test and read-only cell comes from the source, hidden
tests included, so deleting or editing a test cell changes nothing. It then runs the
result in a fresh kernel (nbclient), cell by cell with a per-cell timeout, and scores each
graded cell: full points if it ran without error, zero otherwise, with the error (for the
checks of :mod:`vae_edu.grading`, their feedback) as the message. A cell that loops
forever is interrupted at the timeout; a dead kernel stops the run; neither crashes the
grader. Markdown answers are listed for grading by hand.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import logging
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from vae_edu.assignments import _cells
from vae_edu.assignments.release import TEXT_STUB, released_text

__all__ = [
    "DEFAULT_SOURCE_DIR",
    "DEFAULT_TIMEOUT",
    "GradeReport",
    "GradingError",
    "QuestionResult",
    "find_source",
    "grade_submission",
    "merge_submission",
]

DEFAULT_TIMEOUT = 120  # seconds per cell; a cell may ask for more: metadata.vae_edu.timeout
# The instructor sources in a repository checkout (vae_edu is installed editable).
DEFAULT_SOURCE_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "assignments"
_PROBE_TIMEOUT = 15  # seconds for a kernel to answer again after an interrupt


class GradingError(Exception):
    """The grader cannot start (no instructor source found, unreadable source)."""


@dataclasses.dataclass
class QuestionResult:
    """The score of one graded cell.

    Attributes:
      grade_id: the cell's nbgrader grade_id.
      kind: "tests" (a locked test cell), "answer" (an autograded answer cell) or
        "manual" (a Markdown answer graded by a person).
      max_points: what the cell is worth.
      points: the score, or None while a manual answer awaits grading.
      status: "passed", "failed", "timeout", "not run", "deleted" (the student deleted the
        test cell: zero points), "unanswered" or "needs manual grading".
      message: why, in words for the student (empty when passed).
    """

    grade_id: str
    kind: str
    max_points: float
    points: float | None
    status: str
    message: str = ""


@dataclasses.dataclass
class GradeReport:
    """All scores of one submission, printable as a table and serialisable as JSON."""

    assignment: str
    submission: str
    source: str
    questions: list[QuestionResult]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def score(self) -> float:
        """Autograded points earned (manual answers not included)."""
        return sum(q.points or 0.0 for q in self.questions if q.kind != "manual")

    @property
    def max_score(self) -> float:
        """Autograded points available."""
        return sum(q.max_points for q in self.questions if q.kind != "manual")

    @property
    def manual_max_score(self) -> float:
        """Points left to grade by hand."""
        return sum(q.max_points for q in self.questions if q.kind == "manual")

    def to_dict(self) -> dict:
        return {
            "assignment": self.assignment,
            "submission": self.submission,
            "source": self.source,
            "score": self.score,
            "max_score": self.max_score,
            "manual_max_score": self.manual_max_score,
            "questions": [dataclasses.asdict(q) for q in self.questions],
            "notes": list(self.notes),
        }

    def write_json(self, path) -> None:
        Path(path).write_text(
            json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    def table(self) -> str:
        """The per-question score table, then the feedback for every lost point."""
        width = max([len("question")] + [len(q.grade_id) for q in self.questions])
        lines = [
            f"{self.assignment}: {self.submission}",
            "",
            f"  {'question':<{width}}  {'points':>9}  status",
            f"  {'-' * width}  {'-' * 9}  {'-' * 20}",
        ]
        for q in self.questions:
            got = "?" if q.points is None else _num(q.points)
            lines.append(
                f"  {q.grade_id:<{width}}  {got + ' / ' + _num(q.max_points):>9}  {q.status}"
            )
        total = f"{_num(self.score)} / {_num(self.max_score)}"
        lines.append(f"  {'autograded total':<{width}}  {total:>9}")
        if self.manual_max_score:
            lines.append(f"  ({_num(self.manual_max_score)} more points are graded by hand)")
        feedback = [q for q in self.questions if q.message]
        if feedback:
            lines += ["", "Feedback:"]
            for q in feedback:
                lines.append(f"* {q.grade_id}:")
                lines += [f"    {line}" for line in q.message.splitlines()]
        if self.notes:
            lines += ["", "Notes:"] + [f"* {note}" for note in self.notes]
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


# ----------------------------------------------------------------------- finding the source

_ASSIGNMENT_TOKEN = re.compile(r"(?<![A-Za-z0-9])(A\d+)(?![0-9])")


def find_source(submission_path, submission_nb=None, source=None) -> Path:
    """The instructor notebook for a submission.

    Args:
      submission_path: the student's notebook file.
      submission_nb: the parsed submission, if readable (its metadata.vae_edu.assignment
        names the assignment, e.g. "A1_kl_divergence").
      source: an instructor notebook (used as is) or a folder of them; default
        :data:`DEFAULT_SOURCE_DIR`.

    Returns:
      The path of the instructor notebook: the one named in the submission's metadata,
      else the one whose assignment number ("A1", "A2", ...) appears in the file name.

    Raises:
      GradingError: if no single instructor notebook matches.
    """
    source = Path(source) if source is not None else DEFAULT_SOURCE_DIR
    if source.is_file():
        return source
    if not source.is_dir():
        raise GradingError(f"instructor source {source} does not exist; pass --source")
    candidates = sorted(p for p in source.glob("*.ipynb") if p.is_file())
    name = None
    if submission_nb is not None:
        name = submission_nb.get("metadata", {}).get("vae_edu", {}).get("assignment")
    if name:
        for path in candidates:
            if path.stem == name:
                return path
    stem = Path(submission_path).stem
    matches = [p for p in candidates if p.stem == stem]
    if not matches:
        tokens = set(_ASSIGNMENT_TOKEN.findall(stem))
        matches = [p for p in candidates if p.stem.split("_")[0] in tokens]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(p.name for p in candidates) or "none"
    raise GradingError(
        f"cannot tell which assignment {Path(submission_path).name} is (metadata names "
        f"{name!r}; instructor notebooks in {source}: {listed}); pass --source"
    )


# ----------------------------------------------------------------------- merging


_DELETED = "deleted_in_submission"  # metadata.vae_edu flag on a restored, deleted test cell


def _clean(cell):
    cell = copy.deepcopy(cell)
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    return cell


def merge_submission(source_nb, submission_nb):
    """The notebook to run: the source's cells with the student's answers filled in.

    * answer cells (nbgrader solution cells): the student's source, matched by grade_id;
      a missing one is put back as the unanswered stub;
    * every other source cell (tests with their hidden tests, read-only text and code):
      the instructor's version, whatever the student did to it;
    * cells the student added: kept, after the source cell they followed, with any
      nbgrader metadata removed (so they are never graded).

    Returns:
      (merged notebook, notes): notes list restored, replaced or missing cells.
    """
    source_ids = {gid for gid in map(_cells.grade_id, source_nb.cells) if gid}
    plain_sources = {released_text(c) for c in source_nb.cells if not _cells.grade_id(c)}
    student_cells, added = {}, defaultdict(list)
    anchor = None
    for cell in submission_nb.get("cells", []):
        gid = _cells.grade_id(cell)
        if gid in source_ids and gid not in student_cells:
            student_cells[gid] = cell
            anchor = gid
        elif gid is None and cell.get("source", "") in plain_sources:
            continue  # an unlabelled source cell, taken from the source below
        else:
            extra = _clean(cell)
            extra.get("metadata", {}).pop("nbgrader", None)
            added[anchor].append(extra)

    notes = []
    merged = copy.deepcopy(source_nb)
    merged.cells = [*added[None]]
    for cell in source_nb.cells:
        gid = _cells.grade_id(cell)
        student = student_cells.get(gid) if gid else None
        new = _clean(cell)
        if _cells.is_solution(cell):
            if student is None:
                new["source"] = released_text(cell)
                notes.append(
                    f"answer cell {gid!r} is missing from the submission; it was "
                    "graded as unanswered."
                )
            else:
                new["source"] = student.get("source", "")
        elif gid is not None and student is None:
            if _cells.is_grade(cell):
                # Deleting a graded test cell costs its points; the cell is still put back
                # and run, so later cells that rely on it behave as in the source.
                new.setdefault("metadata", {}).setdefault("vae_edu", {})[_DELETED] = True
                notes.append(
                    f"test cell {gid!r} was deleted from the submission: it scores "
                    "zero (it was restored and run only so that later cells work)."
                )
            else:
                notes.append(
                    f"cell {gid!r} was deleted from the submission; it was restored "
                    "from the instructor source."
                )
        elif student is not None and student.get("source", "") not in (
            released_text(cell),
            cell.get("source", ""),
        ):
            notes.append(
                f"cell {gid!r} was edited in the submission; the instructor's version was used."
            )
        merged.cells.append(new)
        merged.cells.extend(added.get(gid, []) if gid else [])
    return merged, notes


# ----------------------------------------------------------------------- running


@dataclasses.dataclass
class _Outcome:
    status: str  # "ok", "error", "timeout", "not run"
    message: str = ""


def _error_text(output) -> str:
    ename, evalue = output.get("ename", "Error"), str(output.get("evalue", "")).strip()
    if ename == "NotImplementedError" and not evalue:
        return "NotImplementedError: not answered yet (the stub raises NotImplementedError)"
    if ename == "AssertionError" and not evalue:
        return "AssertionError: a test failed"
    return f"{ename}: {evalue}" if evalue else ename


def _execute(nb, *, timeout: int, cwd: Path, kernel_name: str) -> dict[int, _Outcome]:
    """Runs the code cells in one fresh kernel; never raises for the notebook's faults."""

    def cell_timeout(cell):
        return int(cell.get("metadata", {}).get("vae_edu", {}).get("timeout", timeout))

    quiet = logging.getLogger("vae_edu.assignments.nbclient")  # timeouts are reported
    quiet.setLevel(logging.CRITICAL)  # in the score table
    client = NotebookClient(
        nb,
        timeout=timeout,
        timeout_func=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=False,
        kernel_name=kernel_name,
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(cwd)}},
        log=quiet,
    )
    outcomes: dict[int, _Outcome] = {}
    client.reset_execution_trackers()
    asyncio_log, drop = logging.getLogger("asyncio"), _DropAbandonedPolls()
    asyncio_log.addFilter(drop)
    try:
        _run_cells(client, nb, cell_timeout, outcomes)
    finally:
        gc.collect()  # abandoned polls are reported when collected: while the filter is on
        asyncio_log.removeFilter(drop)
    return outcomes


def _run_cells(client, nb, cell_timeout, outcomes) -> None:
    stopped = ""
    # The kernel's own stderr (e.g. ipykernel's start-up warnings) would only clutter the
    # score table; everything the notebook prints is captured in the cell outputs.
    with client.setup_kernel(stderr=subprocess.DEVNULL):
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            if stopped:
                outcomes[index] = _Outcome("not run", stopped)
                continue
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                seconds = cell_timeout(cell)
                message = (
                    f"the cell did not finish within {seconds} s and was stopped "
                    "(an infinite loop, or far too much work?)"
                )
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "error", ename="TimeoutError", evalue=message, traceback=[]
                    )
                )
                outcomes[index] = _Outcome("timeout", message)
                if not _recover(client, index):
                    stopped = "not run: the kernel did not respond after an earlier cell timed out"
                continue
            except DeadKernelError:
                outcomes[index] = _Outcome("error", "the kernel died while running this cell")
                stopped = "not run: the kernel died while running an earlier cell"
                continue
            except Exception as err:  # noqa: BLE001 - report, never crash the grader
                outcomes[index] = _Outcome(
                    "error", f"could not run the cell: {type(err).__name__}: {err}"
                )
                stopped = "not run: the kernel failed on an earlier cell"
                continue
            error = next(
                (o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None
            )
            outcomes[index] = (
                _Outcome("error", _error_text(error)) if error is not None else _Outcome("ok")
            )


def _recover(client, index: int) -> bool:
    """Interrupts a cell that timed out; True if the kernel answers again.

    nbclient leaves the timed-out cell's message readers running; they would swallow the
    next cells' outputs. A new kernel client (new channels to the same kernel, whose state
    is kept) leaves them reading from closed channels.
    """
    cell = client.nb.cells[index]
    startup_timeout = client.startup_timeout
    try:
        run_sync(client.km.interrupt_kernel)()
        client.kc.stop_channels()
        client.kc = None
        client.startup_timeout = _PROBE_TIMEOUT
        client.start_new_kernel_client()
        probe = nbformat.v4.new_code_cell("pass")
        probe.metadata["vae_edu"] = {"timeout": _PROBE_TIMEOUT}
        client.execute_cell(probe, index)
        return True
    except Exception:  # noqa: BLE001 - a kernel stuck for good: stop running cells
        return False
    finally:
        client.startup_timeout = startup_timeout
        client.nb.cells[index] = cell  # execute_cell stored the probe in its place


class _DropAbandonedPolls(logging.Filter):
    """Hides asyncio's report of nbclient's output poll abandoned at a cell timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task exception was never retrieved")


# ----------------------------------------------------------------------- grading


def _answers_before(nb, index: int) -> list[int]:
    """Indices of the answer cells between the previous graded cell and cell ``index``."""
    found = []
    for i in range(index - 1, -1, -1):
        cell = nb.cells[i]
        if _cells.is_grade(cell) and not _cells.is_solution(cell):
            break
        if _cells.is_solution(cell) and cell.get("cell_type") == "code":
            found.append(i)
    return found[::-1]


def _score(merged, source_by_id, outcomes) -> list[QuestionResult]:
    results = []
    for index, cell in enumerate(merged.cells):
        if not _cells.is_grade(cell):
            continue
        gid, worth = _cells.grade_id(cell), _cells.points(cell)
        if _cells.is_manual(cell):
            original = released_text(source_by_id[gid]).strip()
            answered = cell.get("source", "").strip() not in ("", TEXT_STUB, original)
            results.append(
                QuestionResult(
                    gid,
                    "manual",
                    worth,
                    None if answered else 0.0,
                    "needs manual grading" if answered else "unanswered",
                )
            )
            continue
        kind = "answer" if _cells.is_solution(cell) else "tests"
        if cell.get("metadata", {}).get("vae_edu", {}).get(_DELETED):
            results.append(
                QuestionResult(
                    gid,
                    kind,
                    worth,
                    0.0,
                    "deleted",
                    f"the test cell {gid!r} was deleted from your notebook, so this question "
                    "scores zero: keep every test cell, even one that fails.",
                )
            )
            continue
        outcome = outcomes.get(index, _Outcome("not run", "the cell was not run"))
        if outcome.status == "ok":
            results.append(QuestionResult(gid, kind, worth, worth, "passed"))
            continue
        message = outcome.message
        for answer in _answers_before(merged, index):
            problem = outcomes.get(answer)
            if problem is not None and problem.status in ("error", "timeout"):
                message += (
                    f"\n(your answer cell {_cells.grade_id(merged.cells[answer])!r} "
                    f"failed too: {problem.message.splitlines()[0]})"
                )
        status = {"error": "failed"}.get(outcome.status, outcome.status)
        results.append(QuestionResult(gid, kind, worth, 0.0, status, message))
    return results


def grade_submission(
    submission, source=None, *, timeout: int = DEFAULT_TIMEOUT, executed_path=None
) -> GradeReport:
    """Grades one student notebook.

    Args:
      submission: path of the student's .ipynb.
      source: the instructor notebook, or a folder of them (see :func:`find_source`).
      timeout: seconds each cell may run (cells may ask for more in
        ``metadata.vae_edu.timeout``).
      executed_path: if given, the executed merged notebook is written there (for an
        instructor to inspect).

    Returns:
      A :class:`GradeReport`.

    Raises:
      GradingError: if the instructor source cannot be found or read. Faults of the
        submission (unreadable file, errors, infinite loops, deleted cells) never raise:
        they cost the affected questions their points, with a message.
    """
    submission = Path(submission)
    notes = []
    try:
        submission_nb = nbformat.read(submission, as_version=4)
    except Exception as err:  # noqa: BLE001 - a broken submission scores zero
        submission_nb = None
        notes.append(
            f"the submission could not be read ({type(err).__name__}: {err}); every "
            "question scores zero."
        )
    source_path = find_source(submission, submission_nb, source)
    try:
        source_nb = nbformat.read(source_path, as_version=4)
    except Exception as err:  # noqa: BLE001
        raise GradingError(f"cannot read the instructor source {source_path}: {err}") from err
    assignment = source_nb.metadata.get("vae_edu", {}).get("assignment", source_path.stem)
    source_by_id = {_cells.grade_id(c): c for c in source_nb.cells if _cells.grade_id(c)}

    if submission_nb is None:
        questions = [
            QuestionResult(
                gid,
                "manual" if _cells.is_manual(c) else "tests",
                _cells.points(c),
                0.0,
                "not run",
                "unreadable submission",
            )
            for gid, c in source_by_id.items()
            if _cells.is_grade(c)
        ]
        return GradeReport(assignment, str(submission), str(source_path), questions, notes)

    merged, merge_notes = merge_submission(source_nb, submission_nb)
    notes += merge_notes
    kernel = source_nb.metadata.get("kernelspec", {}).get("name", "python3")
    outcomes = _execute(
        merged, timeout=timeout, cwd=submission.resolve().parent, kernel_name=kernel
    )
    if executed_path is not None:
        nbformat.write(merged, str(executed_path))
    questions = _score(merged, source_by_id, outcomes)
    return GradeReport(assignment, str(submission), str(source_path), questions, notes)
