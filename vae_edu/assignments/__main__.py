"""Command line: ``python -m vae_edu.assignments {release,kit,grade,merge} ...``.

    release SOURCE_DIR OUT_DIR [--lessons DIR]
        Write the student version of every notebook in SOURCE_DIR to OUT_DIR, and the
        student edition of every lesson (default: notebooks/ of this checkout) to
        OUT_DIR/lessons/.
    kit OUT_DIR [--source DIR] [--lessons DIR] [--wheel PATH | --from-index]
        Write what a teacher hands out: student lessons and assignments, a requirements
        file that installs the package from a wheel, and a student README.
    grade SUBMISSION [SUBMISSION ...] [--source PATH] [--json PATH] [--out DIR] [--jobs N]
          [--student-pattern REGEX] [--timeout S] [--memory MB] [--max-output BYTES]
          [--user NAME] [--executed PATH]
        Run each submission (a notebook, a folder of student folders, or a flat folder of
        notebooks) in its own sandboxed kernel, grade it against the instructor's hidden
        tests (run in the grader's process) and print its score table; with --out, write
        the class's gradebook, feedback files and written answers.
    merge GRADES_DIR [MANUAL_CSV]
        Merge the points given by hand (GRADES_DIR/manual.csv) into the gradebook and the
        feedback files.

Exit status: 0 when the command did its job (whatever the scores), 2 for a usage problem
(broken markup in a source notebook, no matching instructor source, a missing submission,
bad arguments, a --json / --executed path that cannot be written: checked before grading,
missing folders are created; grader sources changed during grading).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import nbformat

from vae_edu.assignments.grade import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MEMORY_MB,
    DEFAULT_SOURCE_DIR,
    DEFAULT_TIMEOUT,
    GradingError,
    find_source,
    grade_submission,
)
from vae_edu.assignments.gradebook import GradebookError, grade_many, merge, write_outputs
from vae_edu.assignments.intake import collect, restore_metadata
from vae_edu.assignments.kit import DEFAULT_LESSONS, KitError, build_kit
from vae_edu.assignments.release import (
    MarkerError,
    refuse_lesson_folder,
    release_directory,
    student_editions,
    write_editions,
)
from vae_edu.system import ensure_writable_folder


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # "error: ..." and exit 2, as for every other usage problem
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m vae_edu.assignments",
        description="Release and grade the vae_edu assignments (nbgrader-compatible markup).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    release = commands.add_parser(
        "release",
        help="write student versions of the instructor notebooks",
        description="Replace solutions by stubs, remove hidden tests, clear outputs; and "
        "write the student editions of the lessons (solution cells removed, exercise and "
        "feedback outputs cleared, the rest as executed) to OUT_DIR/lessons/.",
    )
    release.add_argument("source_dir", help="folder of instructor notebooks")
    release.add_argument("out_dir", help="folder for the student notebooks")
    release.add_argument(
        "--lessons",
        default=str(DEFAULT_LESSONS),
        metavar="DIR",
        help="lesson notebooks whose student editions go to OUT_DIR/lessons/ (default: "
        "notebooks/ of this checkout)",
    )

    grade = commands.add_parser(
        "grade",
        help="grade submitted notebooks",
        description="Run each submission in its own sandboxed kernel; the instructor's "
        "hidden tests run in the grader's process against the student's functions.",
    )
    grade.add_argument(
        "submissions",
        nargs="+",
        metavar="SUBMISSION",
        help="student .ipynb files, folders of student folders (submissions/alice/A1_*.ipynb) "
        "or flat folders (alice_A1_kl_divergence.ipynb)",
    )
    grade.add_argument(
        "--out",
        metavar="DIR",
        help="write the class's grades.json, gradebook.csv, feedback/, written/ and manual.csv",
    )
    grade.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="grade N submissions at once (default 1; each needs a CPU core and up to --memory)",
    )
    grade.add_argument(
        "--student-pattern",
        type=_pattern,
        metavar="REGEX",
        help="regular expression with a group named student, searched in a flat folder's "
        "file names (default: the file name without the assignment's name)",
    )
    grade.add_argument(
        "--source",
        help="instructor notebook, or a folder of them (default: "
        "notebooks/assignments of this checkout)",
    )
    grade.add_argument(
        "--json",
        metavar="PATH",
        help="also write the scores as JSON (one object; a list of them for several submissions)",
    )
    grade.add_argument(
        "--timeout",
        type=_positive_int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per cell (default {DEFAULT_TIMEOUT}; the instructor's source cells may "
        "allow more; a submission cannot)",
    )
    grade.add_argument(
        "--memory",
        type=_positive_int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"memory of the student's kernel (default {DEFAULT_MEMORY_MB}; POSIX only)",
    )
    grade.add_argument(
        "--max-output",
        type=_positive_int,
        default=DEFAULT_MAX_OUTPUT,
        metavar="BYTES",
        help=f"output kept per cell (default {DEFAULT_MAX_OUTPUT})",
    )
    grade.add_argument(
        "--user",
        default="nobody",
        help="when run as root (POSIX only), the user student code runs as (default nobody)",
    )
    grade.add_argument(
        "--executed",
        metavar="PATH",
        help="also write the executed notebook, with the grader's verdicts (one submission)",
    )
    _add_kit_and_merge(commands)
    return parser


def _pattern(text: str) -> re.Pattern:
    try:
        pattern = re.compile(text)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"not a regular expression: {err}") from None
    if "student" not in pattern.groupindex:
        raise argparse.ArgumentTypeError("needs a group named student: (?P<student>...)")
    return pattern


def _add_kit_and_merge(commands) -> None:
    kit = commands.add_parser(
        "kit",
        help="write the student kit (lessons, assignments, requirements, README)",
        description="Write what a teacher hands out: the student editions of the lessons and "
        "assignments, a requirements file that installs vae_edu from a wheel built from this "
        "checkout (no notebooks inside), and a student README. Refuses to write anything if "
        "a solution, hidden test or model answer would end up in the kit.",
    )
    kit.add_argument("out_dir", help="the kit folder (must not exist, or be empty)")
    kit.add_argument("--source", help="instructor notebooks (default notebooks/assignments)")
    kit.add_argument("--lessons", help="lesson notebooks (default notebooks/)")
    how = kit.add_mutually_exclusive_group()
    how.add_argument("--wheel", help="ship this vae_edu wheel instead of building one")
    how.add_argument(
        "--from-index",
        action="store_true",
        help="ship no wheel: students install vae_edu==VERSION from the package index",
    )

    merge_cmd = commands.add_parser(
        "merge",
        help="merge the points given by hand into the gradebook",
        description="Read GRADES_DIR/grades.json (written by grade --out) and the manual "
        "points and comments (a CSV with columns student, assignment, question, points, "
        "comment), check them, and rewrite gradebook.csv and the feedback files.",
    )
    merge_cmd.add_argument("grades_dir", help="the folder given to grade --out")
    merge_cmd.add_argument("manual_csv", nargs="?", help="default GRADES_DIR/manual.csv")


def _check_writable(path: str, option: str) -> None:
    """Refuse an output ``path`` before grading: a folder, or one that cannot be written.

    Missing parent folders are created and proven writable with a probe file, so no
    finished grading is lost at the last step.
    """
    target = Path(path)
    if target.is_dir():
        raise OSError(f"{option} {path} is a directory; give a file name")
    ensure_writable_folder(target.parent, f"folder of {option}")


def _check_out_dir(path: str) -> None:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OSError(f"--out {path} is a file, not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise OSError(f"cannot write to {path}: {err.strerror or err}") from None


def _assignment_of(submission, source) -> Path:
    """The instructor notebook for one submission (by name, release cells or cell ids)."""
    try:
        nb = nbformat.read(submission.path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: the file name must tell
        nb = None
    try:
        return find_source(submission.path, nb, source)
    except GradingError:
        if nb is None:
            raise
    folder = Path(source) if source is not None else DEFAULT_SOURCE_DIR
    matches = []
    for path in sorted(folder.glob("*.ipynb")):
        restored, notes = restore_metadata(nbformat.read(path, as_version=4), nb)
        if notes:
            matches.append(path)
    if len(matches) == 1:
        return matches[0]
    return find_source(submission.path, nb, source)  # raises, naming the candidates


def _grade_class(args) -> None:
    folder = Path(args.source) if args.source and Path(args.source).is_dir() else None
    stems = [p.stem for p in sorted((folder or DEFAULT_SOURCE_DIR).glob("*.ipynb"))]
    if args.source and Path(args.source).is_file():
        stems = [Path(args.source).stem]
    submissions = collect(args.submissions, stems, args.student_pattern)
    problems, items, seen = [], [], {}
    for submission in submissions:
        try:
            source = _assignment_of(submission, args.source)
        except GradingError as err:
            problems.append(str(err))
            continue
        key = (submission.student, source.stem)
        if key in seen:
            problems.append(
                f"two submissions of {source.stem} for {submission.student!r}: "
                f"{seen[key]} and {submission.path}"
            )
            continue
        seen[key] = submission.path
        items.append((key, submission.path, source))
    if problems:
        raise GradingError("\n  ".join(["nothing was graded:", *problems]))
    if args.out:
        _check_out_dir(args.out)
    options = dict(
        timeout=args.timeout,
        memory_mb=args.memory,
        max_output=args.max_output,
        user=args.user,
    )
    started = time.monotonic()
    records = []
    for (student, _), report in grade_many(items, jobs=args.jobs, **options):
        records.append({"student": student, "report": report})
    elapsed = time.monotonic() - started
    records.sort(key=lambda r: (r["student"], r["report"]["assignment"]))
    width = max(len("student"), *(len(r["student"]) for r in records))
    print(f"{'student':<{width}}  assignment  score")
    for r in records:
        report = r["report"]
        by_hand = sum(
            1 for q in report["questions"] if q["kind"] == "manual" and q["points"] is None
        )
        extra = f" (+{by_hand} answers to grade by hand)" if by_hand else ""
        print(
            f"{r['student']:<{width}}  {report['assignment']}  "
            f"{report['score']:g} / {report['max_score']:g}{extra}"
        )
    print(f"graded {len(records)} submissions in {elapsed:.0f} s with {args.jobs} job(s)")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    if args.out:
        write_outputs(records, args.out)
        print(f"wrote {Path(args.out) / 'gradebook.csv'}, feedback/, written/ and manual.csv")


def _is_class(args) -> bool:
    return bool(
        args.out
        or args.jobs > 1
        or args.student_pattern
        or any(Path(s).is_dir() for s in args.submissions)
    )


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a student's text never stops the printing
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    try:
        if args.command == "release":
            lessons_out = Path(args.out_dir) / "lessons"
            refuse_lesson_folder(lessons_out, args.lessons)
            lessons = student_editions(args.lessons)  # checked before anything is written
            for path in release_directory(args.source_dir, args.out_dir):
                print(f"wrote {path}")
            for path in write_editions(lessons, lessons_out, args.lessons):
                print(f"wrote {path}")
            return 0
        if args.command == "kit":
            options = {"wheel": args.wheel, "from_index": args.from_index}
            if args.source:
                options["source_dir"] = args.source
            if args.lessons:
                options["lessons_dir"] = args.lessons
            for path in build_kit(args.out_dir, **options):
                print(f"wrote {path}")
            return 0
        if args.command == "merge":
            for path in merge(args.grades_dir, args.manual_csv):
                print(f"wrote {path}")
            return 0
        for submission in args.submissions:
            if not Path(submission).exists():
                raise OSError(f"the submission {submission} does not exist")
            if not Path(submission).is_dir() and not Path(submission).is_file():
                raise OSError(f"the submission {submission} is not a file")
        if args.executed and (len(args.submissions) > 1 or _is_class(args)):
            raise ValueError("--executed takes one submission")
        if args.json is not None:
            if not args.json.strip():
                raise ValueError("--json needs a file name")
            _check_writable(args.json, "--json")
        if _is_class(args):
            _grade_class(args)
            return 0
        for submission in args.submissions:
            if not Path(submission).is_file():
                raise OSError(f"the submission {submission} is not a file")
        if args.executed:
            _check_writable(args.executed, "--executed")
        reports = []
        for submission in args.submissions:
            report = grade_submission(
                submission,
                args.source,
                timeout=args.timeout,
                executed_path=args.executed,
                memory_mb=args.memory,
                max_output=args.max_output,
                user=args.user,
            )
            print(report.table(), flush=True)
            if len(args.submissions) > 1:
                print()
            reports.append(report)
        if args.json:
            data = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
            try:
                Path(args.json).write_text(
                    json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
            except OSError as err:  # the tables above are printed: nothing graded is lost
                print(f"error: could not write {args.json}: {err}", file=sys.stderr)
                return 2
    except (MarkerError, GradingError, GradebookError, KitError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
