"""Grade a student's notebook against its instructor source, without trusting it.

:func:`grade_submission` rebuilds the notebook from the instructor source, taking only the
student's *answer* cells (nbgrader ``solution`` cells, matched by ``grade_id``) and any
cells the student added; every test and read-only cell comes from the source. The student's
notebook then runs in a fresh kernel (nbclient) that is treated as hostile:

* it runs in a throw-away working directory, with a scrubbed environment, resource limits
  and, when the grader is root, as an unprivileged user, on Linux isolated in PID and mount
  namespaces of its own that hold none of the instructor's files (see :mod:`._sandbox`);
* the **hidden tests never run in it**. At each test cell the kernel runs only the visible
  part (for the executed notebook); the hidden part runs in the grader's own process,
  where every name of the student's (a function, a number) is a proxy that asks the kernel
  for the student's value on inputs the grader chose, over a narrow channel of validated
  JSON and ``.npz`` files (see :mod:`._channel`). Pass or fail is decided there, by the
  checks of :mod:`vae_edu.grading` loaded before any student code ran;
* answers that use the package's own implementation of what they were asked to write score
  0 for that question (see :mod:`._policy`);
* per-cell time, memory and output size are the instructor's (``--timeout``, ``--memory``,
  ``metadata.vae_edu.timeout`` of the *source* cell); a cell that runs too long is
  interrupted, and a kernel that ignores the interrupt is killed;
* before every submission the grader checks the SHA-256 of its own sources (the package
  and the instructor notebooks) and stops if they changed.

Every submission, however broken, gets a report: a fault of the submission never raises.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from vae_edu.assignments import _cells, _channel, _kernel_package, _policy, _sandbox
from vae_edu.assignments import intake as _intake
from vae_edu.assignments.release import (
    BEGIN_HIDDEN,
    END_HIDDEN,
    TEXT_STUB,
    released_text,
)

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_SOURCE_DIR",
    "DEFAULT_TIMEOUT",
    "GradeReport",
    "GradingError",
    "QuestionResult",
    "find_source",
    "grade_submission",
    "merge_submission",
]

DEFAULT_TIMEOUT = 120  # seconds per cell; a *source* cell may allow more: metadata.vae_edu.timeout
DEFAULT_MEMORY_MB = 4096  # address space of the student's kernel (POSIX only)
DEFAULT_MAX_OUTPUT = 1_000_000  # bytes of output kept per cell
MAX_MESSAGE = 1000  # characters of a message in the report
# The instructor sources in a repository checkout (vae_edu is installed editable).
DEFAULT_SOURCE_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "assignments"
_PROBE_TIMEOUT = 15  # seconds for a kernel to answer again after an interrupt
# Grader sources as they were when the grader was loaded, before any student code ran.
_sandbox.remove_untrusted_bytecode()  # before the baseline: what imports load from now on
SOURCE_BASELINE = _sandbox.source_digests(sorted(DEFAULT_SOURCE_DIR.glob("*.ipynb")))


class GradingError(Exception):
    """The grader cannot start (no instructor source found, unreadable source)."""


class SourcesChangedError(GradingError):
    """The grader's own sources changed since it started: grading stops."""


def _printable(text) -> str:
    """``text`` as a string that can be printed and written as UTF-8: a lone surrogate (a
    student's exception message can hold one) becomes its escape, ``\\ud800``."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    text = _printable(text)
    if len(text) <= limit:
        return text
    return text[: limit - 40].rstrip() + f" ... [cut: {len(text)} characters in all]"


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
        test cell: zero points), "refused", "unanswered" or "needs manual grading".
      message: why, in words for the student (empty when passed), at most ~1,000 characters.
    """

    grade_id: str
    kind: str
    max_points: float
    points: float | None
    status: str
    message: str = ""

    def __post_init__(self):
        self.message = _cut(self.message)


@dataclasses.dataclass
class GradeReport:
    """All scores of one submission, printable as a table and serialisable as JSON."""

    assignment: str
    submission: str
    source: str
    questions: list[QuestionResult]
    notes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.notes = [_printable(note) for note in self.notes]

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
            "notes": [_cut(n) for n in self.notes],
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
            lines += ["", "Notes:"] + [f"* {_cut(note)}" for note in self.notes]
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


# ----------------------------------------------------------------------- finding the source

_ASSIGNMENT_TOKEN = re.compile(r"(?<![A-Za-z0-9])(A\d+)(?![0-9])")


def _graded_ids(cells) -> set[str]:
    """grade_ids of the answer and test cells (what identifies an assignment's release)."""
    return {
        gid
        for cell in cells
        if (gid := _cells.grade_id(cell)) and (_cells.is_solution(cell) or _cells.is_grade(cell))
    }


def _read_source(path: Path):
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # noqa: BLE001
        raise GradingError(f"cannot read the instructor source {path}: {err}") from err


def find_source(submission_path, submission_nb=None, source=None) -> Path:
    """The instructor notebook for a submission, identified by the instructor's release.

    The submission's own metadata (e.g. ``metadata.vae_edu.assignment``) is ignored: a
    student can write anything there.

    Args:
      submission_path: the student's notebook file.
      submission_nb: the parsed submission, if readable: when its file name does not name
        an assignment, the release whose answer and test cells it contains is used.
      source: an instructor notebook (used as is) or a folder of them; default
        :data:`DEFAULT_SOURCE_DIR`.

    Returns:
      The path of the instructor notebook: the source itself if a file; else the one with
      the submission's file name, else the one whose assignment number ("A1", ...) appears
      in it, else the one whose cells the submission has.

    Raises:
      GradingError: if no single instructor notebook matches.
    """
    source = Path(source) if source is not None else DEFAULT_SOURCE_DIR
    if source.is_file():
        return source
    if not source.is_dir():
        raise GradingError(f"instructor source {source} does not exist; pass --source")
    candidates = sorted(p for p in source.glob("*.ipynb") if p.is_file())
    stem = Path(submission_path).stem
    matches = [p for p in candidates if p.stem == stem]
    if not matches:
        tokens = set(_ASSIGNMENT_TOKEN.findall(stem))
        matches = [p for p in candidates if p.stem.split("_")[0] in tokens]
    if not matches and submission_nb is not None:
        ids = _graded_ids(_cells.safe_cells(submission_nb))
        overlap = {p: len(ids & _graded_ids(_read_source(p).cells)) for p in candidates}
        best = max(overlap.values(), default=0)
        matches = [p for p, n in overlap.items() if n == best and best > 0]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(p.name for p in candidates) or "none"
    raise GradingError(
        f"cannot tell which assignment {Path(submission_path).name} is (instructor "
        f"notebooks in {source}: {listed}); name the file after its assignment or pass --source"
    )


def _other_assignment(source_path: Path, source_nb, submission_cells) -> str | None:
    """The name of another release the submission belongs to, if it is not this one's."""
    ids = _graded_ids(submission_cells)
    if not ids or ids & _graded_ids(source_nb.cells):
        return None
    for path, other in _intake.sibling_sources(source_path):
        if ids & _graded_ids(other.cells):
            return path.stem
    return "another assignment"


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
      a missing one is put back as the unanswered stub. The cell's metadata (and so any
      time limit) is the instructor's;
    * every other source cell (tests with their hidden tests, read-only text and code):
      the instructor's version, whatever the student did to it;
    * cells the student added: kept (source only, no metadata), after the source cell
      they followed, so they are never graded and set no limits.

    Malformed cells and metadata in the submission are ignored (a cell whose nbgrader
    metadata is not a dict is an added cell; an answer cell that cannot be matched counts
    as unanswered).

    Returns:
      (merged notebook, notes): notes list restored, replaced or missing cells.
    """
    source_ids = {gid for gid in map(_cells.grade_id, source_nb.cells) if gid}
    plain_sources = {released_text(c) for c in source_nb.cells if not _cells.grade_id(c)}
    student_cells, added = {}, defaultdict(list)
    anchor = None
    for cell in _cells.safe_cells(submission_nb):
        gid = _cells.grade_id(cell)
        if gid in source_ids and gid not in student_cells:
            student_cells[gid] = cell
            anchor = gid
        elif gid is None and cell["source"] in plain_sources:
            continue  # an unlabelled source cell, taken from the source below
        elif cell["cell_type"] in ("code", "markdown", "raw"):
            if cell["cell_type"] == "code":
                extra = nbformat.v4.new_code_cell(cell["source"])
            elif cell["cell_type"] == "markdown":
                extra = nbformat.v4.new_markdown_cell(cell["source"])
            else:
                extra = nbformat.v4.new_raw_cell(cell["source"])
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
                new["source"] = student["source"]
        elif gid is not None and student is None:
            if _cells.is_grade(cell):
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
        elif student is not None and student["source"] not in (
            released_text(cell),
            cell.get("source", ""),
        ):
            notes.append(
                f"cell {gid!r} was edited in the submission; the instructor's version was used."
            )
        merged.cells.append(new)
        merged.cells.extend(added.get(gid, []) if gid else [])
    return merged, notes


# ----------------------------------------------------------------------- the kernel


@dataclasses.dataclass
class _Outcome:
    status: str  # "ok", "error", "timeout", "not run", "refused"
    message: str = ""


class _Refused(BaseException):  # noqa: N818 - not an Exception: checks must not swallow it
    """The student's function is (or reaches) the package's reference implementation."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Abort(BaseException):  # noqa: N818 - not an Exception: checks must not swallow it
    """The kernel timed out or died while the grader was asking it for a value."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error_text(output) -> str:
    ename, evalue = output.get("ename", "Error"), str(output.get("evalue", "")).strip()
    if ename == "NotImplementedError" and not evalue:
        return "NotImplementedError: not answered yet (the stub raises NotImplementedError)"
    if ename == "AssertionError" and not evalue:
        return "AssertionError: a test failed"
    return f"{ename}: {evalue}" if evalue else ename


class _Client(NotebookClient):
    """nbclient's client with a cap on the output kept per cell (``output`` is the
    documented hook for every output message)."""

    def __init__(self, nb, km=None, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT, **kw):
        super().__init__(nb, km=km, **kw)
        self.max_output_bytes = max_output_bytes
        self.output_used: dict[int, int] = {}

    def output(self, outs, msg, display_id, cell_index):
        used = self.output_used.get(cell_index, 0)
        size = len(json.dumps(msg.get("content", {}), default=str))
        if msg.get("msg_type") == "error":  # always kept (it decides the cell's outcome)
            content = msg.get("content", {})
            content["evalue"] = _cut(content.get("evalue", ""), 2000)
            content["traceback"] = [_cut(line, 2000) for line in content.get("traceback", [])[-20:]]
            return super().output(outs, msg, display_id, cell_index)
        if used + size > self.max_output_bytes:
            if used <= self.max_output_bytes:
                outs.append(
                    nbformat.v4.new_output(
                        "stream",
                        name="stderr",
                        text=f"[more output than the grader keeps ({self.max_output_bytes} "
                        "bytes per cell): the rest was dropped]\n",
                    )
                )
                self.output_used[cell_index] = self.max_output_bytes + 1
            return None
        self.output_used[cell_index] = used + size
        return super().output(outs, msg, display_id, cell_index)


@dataclasses.dataclass(frozen=True)
class _Limits:
    """What the instructor sets for a student's kernel (see :func:`grade_submission`)."""

    timeout: int
    memory_mb: int | None
    max_output: int
    owner: tuple | None  # (uid, gid) to run as, or None
    view: tuple = ()  # a command prefix (namespace_prefix or readonly_view), or none
    switch_user: bool = True  # the kernel manager switches to owner (not the prefix)


class _Kernel:
    """The student's kernel: runs cells with the instructor's limits, never raises.

    Everything goes through nbclient's documented API: the kernel manager is given to the
    :class:`~nbclient.NotebookClient`, :meth:`~nbclient.NotebookClient.setup_kernel` starts
    the kernel and its client, :meth:`~nbclient.NotebookClient.execute_cell` runs a cell.
    At a cell's time limit nbclient interrupts the kernel itself (``interrupt_on_timeout``)
    and ends the cell with the ``error_on_timeout`` reply, whose random marker tells the
    grader that the limit, not the student's code, ended the cell (``on_cell_executed``).
    """

    def __init__(self, nb, *, workdir, kernel_name, limits: _Limits, package_root=None):
        self.timeout = limits.timeout
        self.package_root = package_root  # the folder of the kernel's vae_edu (or None)
        self.workdir = workdir
        self.channel = workdir / "channel"
        self.limits = limits
        self.dead = ""  # why the kernel is gone, once it is
        self.reached: list[str] = []  # labels of the reference functions requests reached
        # the tripwire's record (see _channel.tripwire_code): only the grader reads it
        self.trace_path = self.channel / f"trace-{secrets.token_hex(8)}.log"
        self._trace_seen = None  # (inode, size) after the last request
        self._trace_inode = None  # the record's inode when the tripwire made it
        self.assignment = ""
        self.targets: list[str] = []
        self.request_timeout = 0  # the test cell's limit while its hidden tests run
        self.nb = nb
        self.scratch = len(nb.cells)
        nb.cells.append(nbformat.v4.new_code_cell(""))  # where grader requests run
        self._timeout_marker = secrets.token_hex(16)  # never sent to the kernel
        self._timed_out = False
        km = _sandbox.SandboxKernelManager(
            kernel_name=kernel_name, connection_file=str(workdir / "kernel.json")
        )
        km.sandbox_owner = limits.owner
        km.sandbox_prefix = list(limits.view)
        if not limits.switch_user:  # isolated, without network: Unix sockets
            km.transport, km.ip = "ipc", str(_sandbox.ipc_path(workdir))
        quiet = logging.getLogger("vae_edu.assignments.nbclient")
        quiet.setLevel(logging.CRITICAL)  # timeouts are reported in the score table
        self.client = _Client(
            nb,
            km=km,
            max_output_bytes=limits.max_output,
            timeout=limits.timeout,
            timeout_func=self.cell_timeout,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "TimeoutError",
                "evalue": self._timeout_marker,
                "traceback": [],
            },
            on_cell_executed=self._executed,
            allow_errors=True,
            kernel_name=kernel_name,
            record_timing=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(_sandbox.kernel_cwd(workdir))}},
            log=quiet,
        )

    def cell_timeout(self, cell) -> int:
        """The instructor's limit: --timeout, or more if the *source* cell allows it."""
        meta = cell.get("metadata", {}).get("vae_edu", {})
        extra = meta.get("timeout") if isinstance(meta, dict) else None
        if isinstance(extra, int) and not isinstance(extra, bool) and extra > self.timeout:
            return extra
        return self.timeout

    def _executed(self, cell, cell_index, execute_reply) -> None:
        """nbclient's ``on_cell_executed`` hook: was the cell ended by its time limit?"""
        content = (execute_reply or {}).get("content", {})
        self._timed_out = content.get("evalue") == self._timeout_marker

    @contextlib.contextmanager
    def session(self):
        """The running kernel (nbclient's ``setup_kernel``); stopped on leaving, however."""
        kwargs = {
            "cwd": str(_sandbox.kernel_cwd(self.workdir)),
            "env": _sandbox.kernel_env(self.workdir, self.package_root),
            "stdout": subprocess.DEVNULL,  # a cell writing to the kernel's own stdout or
            "stderr": subprocess.DEVNULL,  # stderr never reaches the grader's
        }
        preexec = _sandbox.limit_resources(
            self.limits.memory_mb, die_with_grader=not self.limits.switch_user
        )
        if preexec is not None:
            kwargs["preexec_fn"] = preexec
        if self.limits.owner is not None and self.limits.switch_user:  # POSIX only: root
            # drops to an unprivileged user (an isolating prefix drops by itself, inside)
            owner = self.limits.owner
            kwargs.update(user=owner[0], group=owner[1], extra_groups=[])
        try:
            with warnings.catch_warnings():  # JAX warns about fork; the kernel's exec follows
                warnings.simplefilter("ignore", RuntimeWarning)
                with self.client.setup_kernel(**kwargs):
                    yield self
        finally:
            self.stop()

    def stop(self) -> None:
        """Stops the kernel and every process it started."""
        km, kc = self.client.km, self.client.kc
        pgid = _kernel_process_group(km)
        try:
            if kc is not None:
                kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        try:
            if km is not None and run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001
            pass
        if pgid and hasattr(os, "killpg"):  # POSIX only
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        try:
            if km is not None:
                run_sync(km.cleanup_resources)()
        except Exception:  # noqa: BLE001
            pass

    def run(self, cell, index: int, *, store_history: bool = True) -> _Outcome:
        """Runs one cell of the notebook; the outcome of the kernel's answer."""
        if self.dead:
            return _Outcome("not run", self.dead)
        self._timed_out = False
        try:
            self.client.execute_cell(cell, index, store_history=store_history)
        except DeadKernelError:
            self.dead = "not run: the kernel died while running an earlier cell"
            return _Outcome("error", "the kernel died while running this cell")
        except Exception as err:  # noqa: BLE001 - report, never crash the grader
            self.stop()
            self.dead = "not run: the kernel failed on an earlier cell"
            return _Outcome("error", f"could not run the cell: {type(err).__name__}: {err}")
        if self._timed_out:
            return self._timeout(cell)
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        return _Outcome("error", _error_text(error)) if error is not None else _Outcome("ok")

    def _timeout(self, cell) -> _Outcome:
        """A cell stopped at its limit (nbclient interrupted the kernel): the outcome, and
        the kernel killed if it does not answer again (it ignored the interrupt)."""
        seconds = self.cell_timeout(cell)
        message = (
            f"the cell did not finish within {seconds} s and was stopped "
            "(an infinite loop, or far too much work?)"
        )
        cell.outputs.append(
            nbformat.v4.new_output("error", ename="TimeoutError", evalue=message, traceback=[])
        )
        if not self._answers_again():
            self.stop()
            message += "; the kernel ignored the interrupt and was killed"
            self.dead = "not run: the kernel was killed after an earlier cell ignored its interrupt"
        return _Outcome("timeout", message)

    def _answers_again(self) -> bool:
        """Whether the kernel runs an empty cell within _PROBE_TIMEOUT after an interrupt."""
        probe = nbformat.v4.new_code_cell("pass")
        self._timed_out = False
        saved, self.timeout = self.timeout, _PROBE_TIMEOUT
        try:
            self.client.execute_cell(probe, self.scratch)
        except Exception:  # noqa: BLE001 - a kernel stuck for good: it is killed
            return False
        finally:
            self.timeout = saved
        return not self._timed_out

    # -------------------------------------------------------------- the narrow channel

    def request(self, request: dict, args=(), *, timeout: int | None = None):
        """Asks the kernel for a value of the student's (see :mod:`._channel`)."""
        if self.dead:
            raise _Abort("not run", self.dead)
        if self.channel.is_symlink() or not self.channel.is_dir():  # never follow a link
            self.dead = "not run: the kernel replaced the grader's channel folder (tampering)"
            raise _Abort("not run", self.dead)
        for stale in self.channel.glob("*"):
            if stale.name == self.trace_path.name:
                continue
            try:
                stale.unlink()
            except OSError:
                pass
        nonce = _channel.encode_request(self.channel, request, args)
        code = (
            _channel.KERNEL_HELPER
            + f"\n_vae_edu_serve({str(self.channel)!r}, {nonce!r}, globals())"
            + f"\ndel {', '.join(_channel.KERNEL_NAMES)}\n"
        )
        cell = nbformat.v4.new_code_cell(code)
        cell.metadata["vae_edu"] = {"timeout": timeout or self.request_timeout or self.timeout}
        before = self._trace_state()
        try:
            outcome = self.run(cell, self.scratch, store_history=False)
        finally:
            self._read_trace(before)
        if outcome.status == "timeout":
            raise _Abort(
                "timeout", f"your code did not answer within the time limit: {outcome.message}"
            )
        if outcome.status != "ok" and self.dead:
            raise _Abort("failed", f"{outcome.message} (while the grader called your code)")
        try:
            result = _channel.decode_result(self.channel, nonce)
        except _channel.ChannelError as err:
            raise _channel.ChannelError(
                f"the grader got no usable answer from your notebook's kernel ({err}); "
                "did your code change how the notebook runs code?"
            ) from None
        if result["status"] == "error":
            raise _channel.remote_exception(result["ename"], result["evalue"])
        return result["value"]

    def _trace_state(self):
        """(inode, size) of the tripwire's record, or None if it is not a regular file."""
        try:
            info = self.trace_path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return (info.st_ino, info.st_size)

    def _read_trace(self, before) -> None:
        """The labels the tripwire recorded during a request (into ``reached``); a record
        that vanished, shrank, was replaced (another file, a link to /dev/null) or holds
        anything but labels is tampering."""
        tampered = "the grader's record of calls to the package (tampered with)"
        after = self._trace_state()
        if self._trace_inode is None:
            return  # no tripwire in this assignment (or the kernel never made the record)
        if (
            before is None
            or after is None
            or {before[0], after[0]} != {self._trace_inode}
            or after[1] < before[1]
            or (self._trace_seen is not None and before[1] < self._trace_seen[1])
        ):
            self.reached.append(tampered)
            return
        self._trace_seen = after
        if after[1] == before[1]:
            return
        try:  # never a link, never a FIFO, never a file swapped in since the check
            handle, info = _channel.open_regular(self.trace_path)
            with handle:
                if info.st_ino != self._trace_inode:
                    raise OSError("replaced")
                handle.seek(before[1])
                data = handle.read(min(after[1] - before[1], 100_000))
        except OSError:
            self.reached.append(tampered)
            return
        known = set(self.targets)
        for line in data.decode("utf-8", "replace").splitlines():
            label = line.strip()
            if label not in known:
                self.reached.append(tampered)
                return
            if label not in self.reached:
                self.reached.append(label)

    def install_tripwires(self, targets) -> None:
        """Wraps the forbidden functions in the kernel, before any student code runs."""
        self.targets = list(targets)
        if self.dead or not self.targets:
            return
        code = _channel.tripwire_code(self.targets, self.trace_path)
        self.run(nbformat.v4.new_code_cell(code), self.scratch, store_history=False)
        self._trace_seen = self._trace_state()
        if self._trace_seen is not None:
            self._trace_inode = self._trace_seen[0]


def _kernel_process_group(km) -> int | None:
    """The process group of the kernel and every process its cells started (POSIX), or None.

    The grader's one use of a non-documented attribute: jupyter_client's local provisioner
    starts the kernel in a process group of its own and keeps its id as
    ``km.provisioner.pgid``. Shutting the kernel down (documented) kills the kernel only;
    a cell can start processes that outlive it (a background child, one that ignores SIGINT
    and SIGTERM) and would run on into the next submission's grading (issue 11: no
    submission affects another). Killing the group ends them all.
    """
    return getattr(getattr(km, "provisioner", None), "pgid", None)


class _Proxy:
    """The student's function, as seen by the grader: each call is a channel request.

    ``inject`` (name -> :class:`vae_edu.grading.KernelFunction`) replaces the student's
    other answers by the grader's correct code in the kernel's namespace for the duration
    of each call (see :meth:`with_names`), so that one mistake costs one question."""

    def __init__(self, kernel: _Kernel, name: str, inject=None):
        self._kernel, self._name = kernel, name
        self._inject = dict(inject or {})
        self._inspected = False
        self.__name__ = name

    def _request(self, request: dict, args=()):
        if not self._inspected:  # what the function reaches, but for the grader's names
            self._inspected = True
            why = _reaches_reference(
                self._kernel, self._name, self._kernel.assignment, skip=self._inject
            )
            if why:
                raise _Refused(why)
        if self._inject:
            request = dict(request, inject=self._inject)
        return self._kernel.request(request, args)

    def with_names(self, names: dict) -> _Proxy:
        """This function, with ``names`` bound to the grader's code while it runs."""
        return _Proxy(self._kernel, self._name, {**self._inject, **names})

    def __call__(self, *args):
        return self._request({"op": "call", "name": self._name}, args)

    def grad(self, args, argnum: int):
        """d/d args[argnum] of sum(f(*args)), taken by jax.grad in the kernel."""
        return self._request({"op": "grad", "name": self._name, "argnum": argnum}, args)

    def call_many(self, arg_lists, static_argnums=()):
        """f(*a) for every a (compiled once in the kernel with jax.jit when it can be)."""
        return self._request(
            {
                "op": "many",
                "name": self._name,
                "arg_lists": [list(a) for a in arg_lists],
                "static": list(static_argnums),
            }
        )

    def run_training(self, *args):
        """A3's training run with this function as the step (see vae_edu.mlp_vae.run_training)."""
        return self._request({"op": "train", "name": self._name}, args)

    def __repr__(self) -> str:
        return f"<your function {self._name}>"


_PRESET = ("np", "jnp", "jax", "math", "grading")


@functools.cache
def _checks() -> dict:
    """The modules the hidden tests see, imported once per process.

    Imported here rather than at the top so that ``import vae_edu.assignments`` (release,
    kit, merge) does not load JAX; :func:`grade_submission` calls this after verifying the
    sources and before the student's kernel starts, so no student code has run when the
    checks are loaded (a check module rewritten by a cell would otherwise be imported at the
    first test cell, poisoned, for that very submission).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vae_edu import grading  # lazy: loaded after the sources' SHA-256 is verified

    return {"np": np, "jnp": jnp, "jax": jax, "math": math, "grading": grading}


def _preset_namespace() -> dict:
    return dict(_checks())


def _free_names(tree) -> list[str]:
    """Names a piece of test code reads without defining (the student's answers)."""
    bound, loaded = set(dir(builtins)) | set(_PRESET), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif node.id not in loaded:
                loaded.append(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            for arg in ast.walk(node.args):
                if isinstance(arg, ast.arg):
                    bound.add(arg.arg)
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
    return [name for name in loaded if name not in bound]


def _hidden_part(source: str) -> str:
    """The hidden-test regions of a source test cell, or the whole cell if it has none."""
    lines, out, inside, found = source.splitlines(), [], False, False
    for line in lines:
        if BEGIN_HIDDEN in line:
            inside = found = True
        elif END_HIDDEN in line:
            inside = False
        elif inside:
            out.append(line)
    return "\n".join(out) if found else source


def _grader_side(kernel: _Kernel, code: str, assignment: str = "") -> _Outcome:
    """Runs instructor test code in the grader's process, the student's names as proxies.

    Before its first call, every function of the student's that a check calls is inspected
    in the kernel (``reach``, see :class:`_Proxy`): one that reaches code with the
    fingerprint of a forbidden reference (the original, however obtained, or a copy of it)
    is refused. After the checks, a call of a forbidden function recorded by the tripwire
    refuses the question too."""
    try:
        tree = ast.parse(code)
    except SyntaxError as err:  # the instructor's own bug: say so
        return _Outcome("error", f"the instructor's test does not parse: {err}")
    namespace = _preset_namespace()
    del kernel.reached[:]
    outcome = _Outcome("ok")
    try:
        for name in _free_names(tree):
            try:
                value = kernel.request({"op": "get", "name": name})
            except NameError:
                continue  # undefined: the test's own NameError says so
            except _channel.RemoteError:
                continue
            if isinstance(value, _channel.Opaque) and value.type_name == "<callable>":
                value = _Proxy(kernel, name)
            namespace[name] = value
        exec(compile(tree, "<hidden tests>", "exec"), namespace)  # noqa: S102 - instructor code
    except _Refused as refused:
        return _Outcome("refused", refused.message)
    except _Abort as abort:
        outcome = _Outcome(abort.status, abort.message)
    except AssertionError as err:
        outcome = _Outcome("error", str(err).strip() or "a test failed")
    except NotImplementedError:
        outcome = _Outcome(
            "error", "NotImplementedError: not answered yet (the stub raises NotImplementedError)"
        )
    except Exception as err:  # noqa: BLE001 - the student's exception, or a channel fault
        outcome = _Outcome("error", f"{type(err).__name__}: {err}")
    if kernel.reached:
        return _Outcome(
            "refused",
            f"your answer calls {', '.join(sorted(set(kernel.reached)))}, the package's own "
            "implementation of what this question asks you to write: that is not an answer, "
            "so this question scores 0.",
        )
    return outcome


def _reaches_reference(kernel: _Kernel, name: str, assignment: str, skip=()) -> str:
    """Why the student's function ``name`` counts as the reference (empty if it does not):
    the kernel lists the fingerprints of every function it can reach (see
    ``_channel.REACH_CODE``); the grader compares them with those of the forbidden
    functions, computed in its own process."""
    references = _policy.reference_fingerprints(assignment)
    if not references:
        return ""
    try:
        reached = kernel.request({"op": "reach", "name": name, "skip": sorted(skip)})
    except _Abort:
        raise
    except Exception as err:  # noqa: BLE001 - a function the grader cannot inspect
        return (
            f"the grader could not inspect your function {name} ({type(err).__name__}: "
            f"{_cut(err, 200)}), so it cannot tell whether it is the package's own "
            "implementation: this question scores 0. Define it with a plain `def`."
        )
    if not isinstance(reached, dict):
        return ""
    hits = [
        (label, references[fp])
        for label, fp in reached.items()
        if isinstance(fp, int) and not isinstance(fp, bool) and fp in references
    ]
    if not hits:
        return ""
    label, target = hits[0]
    module, _, function = target.partition(":")
    via = "" if label == name else f" (through {label})"
    return _policy.forbid_message(
        f"{module}.{function}{via}, or a copy of it (its code is the package's,"
        f" whatever it is called or wherever it was loaded from; the grader matched "
        f"{target})"
    )


def _run_notebook(merged, kernel: _Kernel, assignment) -> dict[int, _Outcome]:
    """Runs the merged notebook in ``kernel``; grades every test cell grader-side. Never
    raises."""
    outcomes: dict[int, _Outcome] = {}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(kernel.session())
        except Exception as err:  # noqa: BLE001
            kernel.dead = f"not run: the kernel could not start ({type(err).__name__}: {err})"
        rules = _policy.FORBIDDEN.get(assignment)
        kernel.assignment = assignment
        targets = [*rules.functions, *rules.methods] if rules is not None else []
        # the reference functions of the modules the kernel has (as stubs, still recorded)
        kernel.install_tripwires([t for t in targets if _kernel_package.kept_target(assignment, t)])
        for index, cell in enumerate(merged.cells[: kernel.scratch]):
            if cell.get("cell_type") != "code":
                continue
            if _cells.is_test(cell):
                outcomes[index] = _run_test_cell(kernel, cell, index, assignment)
            else:
                outcomes[index] = kernel.run(cell, index)
    del merged.cells[kernel.scratch :]
    return outcomes


def _run_test_cell(kernel: _Kernel, cell, index: int, assignment: str = "") -> _Outcome:
    """The visible part runs in the kernel (for the executed notebook; it decides nothing);
    the hidden tests run grader-side. Their verdict is added to the cell's outputs."""
    hidden = _hidden_part(cell.get("source", ""))
    cell["source"] = released_text(cell)  # the kernel sees only the visible part
    kernel.run(cell, index)
    if kernel.dead:
        return _Outcome("not run", kernel.dead)
    started = time.monotonic()
    kernel.request_timeout = kernel.cell_timeout(cell)  # the instructor's limit
    outcome = _grader_side(kernel, hidden, assignment)
    kernel.request_timeout = 0
    verdict = "passed" if outcome.status == "ok" else outcome.status
    cell.outputs.append(
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text=f"[grader, {time.monotonic() - started:.1f} s] {verdict}"
            + (f": {outcome.message}" if outcome.message else "")
            + "\n",
        )
    )
    return outcome


# ----------------------------------------------------------------------- grading


def _answers_before(nb, index: int) -> list[int]:
    """Indices of the answer and added cells between the previous graded cell and ``index``."""
    found = []
    for i in range(index - 1, -1, -1):
        cell = nb.cells[i]
        if _cells.is_grade(cell) and not _cells.is_solution(cell):
            break
        if cell.get("cell_type") == "code" and (_cells.is_solution(cell) or not _cells.meta(cell)):
            found.append(i)
    return found[::-1]


def _policy_findings(merged, assignment) -> tuple[dict[int, list], list]:
    """Static findings per test cell index (the next test cell), and dynamic ones. The
    package imports of every cell (the instructor's too) are followed into later cells."""
    per_test, dynamic, pending = defaultdict(list), [], []
    aliases: dict = {}
    for index, cell in enumerate(merged.cells):
        if _cells.is_test(cell):
            per_test[index].extend(pending)
            pending = []
            continue
        if cell.get("cell_type") != "code":
            continue
        found = _policy.scan_source(cell.get("source", ""), assignment, aliases)
        if not (_cells.is_solution(cell) or not _cells.meta(cell)):
            continue  # the instructor's cell: its imports only
        for finding in found:
            (dynamic if finding.dynamic else pending).append(finding)
    return per_test, dynamic


def _score(merged, source_by_id, outcomes, findings) -> list[QuestionResult]:
    per_test, dynamic = findings
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
        refused = dynamic + per_test.get(index, [])
        if refused:
            results.append(QuestionResult(gid, kind, worth, 0.0, "refused", refused[0].message))
            continue
        outcome = outcomes.get(index, _Outcome("not run", "the cell was not run"))
        if outcome.status == "ok":
            results.append(QuestionResult(gid, kind, worth, worth, "passed"))
            continue
        message = outcome.message
        if "out of bounds for array of dimension 0" in message:
            message += (
                "\n(a function that sums over the last axis got a 0-d value, e.g. a Python "
                "number: pass arrays of shape (d,) or (batch, d), e.g. jnp.array([1.0]))"
            )
        for answer in _answers_before(merged, index):
            problem = outcomes.get(answer)
            if problem is not None and problem.status in ("error", "timeout"):
                name = _cells.grade_id(merged.cells[answer]) or "added"
                first = problem.message.splitlines()[0]
                message += f"\n(your answer cell {name!r} failed too: {first})"
                if "out of bounds for array of dimension 0" in first:
                    message += (
                        "\n(a function that sums over the last axis got a 0-d value, e.g. a "
                        "Python number: pass arrays of shape (d,), e.g. jnp.array([1.0]))"
                    )
        status = {"error": "failed"}.get(outcome.status, outcome.status)
        results.append(QuestionResult(gid, kind, worth, 0.0, status, message))
    return results


def _zero_report(assignment, submission, source_path, source_by_id, notes, status, message):
    questions = [
        QuestionResult(
            gid,
            "manual" if _cells.is_manual(c) else "tests",
            _cells.points(c),
            0.0,
            status,
            message,
        )
        for gid, c in source_by_id.items()
        if _cells.is_grade(c)
    ]
    return GradeReport(assignment, str(submission), str(source_path), questions, notes)


def verify_sources(extra=()) -> None:
    """Stops (SourcesChangedError) if a grader source changed since the grader started."""
    paths = sorted(set(DEFAULT_SOURCE_DIR.glob("*.ipynb")) | {Path(p).resolve() for p in extra})
    now = _sandbox.source_digests(paths)
    for path, digest in now.items():
        before = SOURCE_BASELINE.setdefault(path, digest)  # a new --source: its digest from now on
        if before != digest:
            raise SourcesChangedError(
                f"the grader's source {path} changed since grading started (SHA-256 "
                f"{before[:12]}... is now {digest[:12]}...): a submission may have "
                "tampered with it. Grading stopped; restore the file and grade again."
            )
    missing = [p for p in SOURCE_BASELINE if p not in now and p.endswith(".py")]
    if missing:
        raise SourcesChangedError(
            f"the grader's source {missing[0]} disappeared since grading started. Grading stopped."
        )


def _positive(value, name: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def grade_submission(
    submission,
    source=None,
    *,
    timeout: int = DEFAULT_TIMEOUT,
    executed_path=None,
    memory_mb: int | None = DEFAULT_MEMORY_MB,
    max_output: int = DEFAULT_MAX_OUTPUT,
    user: str = "nobody",
) -> GradeReport:
    """Grades one student notebook.

    Args:
      submission: path of the student's .ipynb.
      source: the instructor notebook, or a folder of them (see :func:`find_source`).
      timeout: seconds each cell may run (positive; only the instructor's source cells may
        allow more, in ``metadata.vae_edu.timeout``).
      executed_path: if given, the executed merged notebook is written there, with the
        grader's verdicts as outputs of the test cells.
      memory_mb: address-space limit of the student's kernel (POSIX only), None for none.
      max_output: bytes of output kept per cell.
      user: when the grader runs as root (POSIX only), the user student code runs as.

    Returns:
      A :class:`GradeReport`.

    Raises:
      ValueError: a limit that is not positive.
      GradingError: if the instructor source cannot be found or read;
        SourcesChangedError if a grader source changed. Faults of the submission
        (unreadable file, errors, infinite loops, tampering) never raise: they cost the
        affected questions their points, with a message.
    """
    _positive(timeout, "timeout")
    _positive(max_output, "max_output")
    if memory_mb is not None:
        _positive(memory_mb, "memory_mb")
    timeout = int(math.ceil(timeout))
    submission = Path(submission)
    notes = []
    try:
        submission_nb = nbformat.read(submission, as_version=4)
        if not isinstance(submission_nb, dict):
            raise ValueError("not a notebook")
    except Exception as err:  # noqa: BLE001 - a broken submission scores zero
        submission_nb = None
        notes.append(
            f"the submission could not be read ({type(err).__name__}: {_cut(err, 300)}); every "
            "question scores zero."
        )
    source_path = find_source(submission, submission_nb, source)
    verify_sources([source_path])
    _checks()["grading"].core.new_run_secret()  # loaded now, before any student code runs
    source_nb = _read_source(source_path)
    assignment = source_path.stem
    _policy.reference_fingerprints(assignment)  # the grader's own, before student code runs
    source_by_id = {_cells.grade_id(c): c for c in source_nb.cells if _cells.grade_id(c)}
    # every question at zero with one status and message (the notes are read when returned)
    zero_report = functools.partial(
        _zero_report, assignment, submission, source_path, source_by_id, notes
    )

    if submission_nb is None:
        return zero_report("not run", "unreadable submission")
    # cells that lost their nbgrader metadata are matched to the source's by cell id
    submission_nb, intake_notes = _intake.restore_metadata(source_nb, submission_nb)
    notes += intake_notes
    other = _other_assignment(
        source_path, source_nb, _cells.safe_cells(submission_nb)
    ) or _intake.other_assignment_by_ids(source_path, source_nb, submission_nb)
    if other is not None:
        notes.append(
            f"refused: this file has the cells of {other}, not of {assignment} (the "
            "assignment is identified by the instructor's release, whatever the file's "
            "metadata says); hand in the notebook of this assignment."
        )
        return zero_report("refused", f"this file is not assignment {assignment}")

    owner, why_not = _sandbox.isolation(user)  # root on Linux: an isolated kernel
    isolated = owner is not None
    if not isolated:
        owner, why_not_user = _sandbox.unprivileged_user(user)
        why_not = f"{why_not}; {why_not_user}" if owner is None else why_not
    workdir = _sandbox.make_workdir(owner)
    view, why_no_view = (), ""
    # the package as the kernel has it: without the references of this assignment
    try:
        package = _kernel_package.build(assignment, workdir / "package")
    except Exception as err:
        _sandbox.remove_workdir(workdir)
        raise GradingError(f"cannot build the kernel's package for {assignment}: {err}") from err
    if isolated:
        hide = [
            Path(source_path).resolve().parent,  # the instructor sources
            Path(submission).resolve().parent,  # the submissions
            Path.cwd(),  # where the grader writes grades (the documented layout)
            _sandbox.PACKAGE_DIR.parent,  # the checkout (unless it is site-packages)
        ]
        view = _sandbox.namespace_prefix(workdir, owner, hide, package=package)
    elif owner is None:  # no other user: make what must not change read-only instead
        protect = [
            _sandbox.PACKAGE_DIR.parent,  # the checkout, or site-packages
            Path(sys.prefix),
            Path(sys.base_prefix),
            Path(source_path).resolve().parent,  # the instructor sources
            Path.cwd(),  # where the grader writes grades (the documented layout)
            package,  # the kernel's copy of the package
            # system-wide configuration a later kernel would read (/etc/ipython, /etc/jupyter,
            # /usr/local/etc/jupyter, /usr/share/jupyter kernelspecs, site-wide .pth files)
            *(Path(p) for p in ("/etc", "/usr", "/opt") if Path(p).is_dir()),
        ]
        hide = [
            Path(source_path).resolve().parent,  # the instructor sources
            Path(submission).resolve().parent,  # the submissions
            _sandbox.PACKAGE_DIR,  # the kernel imports its copy (package)
        ]
        view, why_no_view = _sandbox.readonly_view(protect, [workdir], hide)
        view = view or ()
    try:
        merged, merge_notes = merge_submission(source_nb, submission_nb)
        notes += merge_notes
        findings = _policy_findings(merged, assignment)
        kernel = _Kernel(
            merged,
            workdir=workdir,
            kernel_name=source_nb.metadata.get("kernelspec", {}).get("name", "python3"),
            limits=_Limits(timeout, memory_mb, max_output, owner, tuple(view), not isolated),
            # an isolated kernel sees its copy at the package's own path
            package_root=None if isolated else package,
        )
        outcomes = _run_notebook(merged, kernel, assignment)
        if executed_path is not None:
            try:
                nbformat.write(merged, str(executed_path))
            except (OSError, ValueError) as err:  # ValueError: text that cannot be encoded
                notes.append(f"could not write the executed notebook: {err}")
        questions = _score(merged, source_by_id, outcomes, findings)
    except SourcesChangedError:
        raise
    except Exception as err:  # noqa: BLE001 - never crash on a submission
        notes.append(
            f"internal grader error while grading this submission: {type(err).__name__}: {err}"
        )
        return zero_report("not run", "the grader could not grade this submission (see the notes)")
    finally:
        _sandbox.remove_workdir(workdir)
    if owner is None and view:
        notes.append(
            f"student code ran as the grader's own user, root ({why_not}), in a private "
            "read-only view of the Python installation and the grader's working folder, with "
            "the package, the instructor sources and the submissions hidden (a Linux mount "
            "namespace): only its throw-away directory was writable, but root can undo the "
            "view. Install util-linux's setpriv and unshare, and a Python every user can read, "
            "to isolate student code."
        )
    elif owner is None:
        notes.append(
            f"student code ran as the grader's own user ({why_not}; {why_no_view}): it could "
            "write wherever the grader can, and read the package's own source from disk. The "
            "SHA-256 check of the grader's sources still runs before every submission; grade "
            "in a container, or as root, to prevent writes and reads."
        )
    return GradeReport(assignment, str(submission), str(source_path), questions, notes)
