"""Command line: ``python -m vae_edu.assignments {release,grade} ...``.

    release SOURCE_DIR OUT_DIR
        Write the student version of every notebook in SOURCE_DIR to OUT_DIR.
    grade SUBMISSION.ipynb [--source PATH] [--json PATH] [--timeout S] [--executed PATH]
        Run a submission in a fresh kernel with the instructor's tests and print the
        per-question score table.

Exit status: 0 when the command did its job (whatever the score), 2 for a usage problem
(broken markup in a source notebook, no matching instructor source, bad arguments, a
missing submission, a --json / --executed path that cannot be written: checked before
grading, missing folders are created).
"""

from __future__ import annotations

import argparse
import sys

from vae_edu.assignments.grade import DEFAULT_TIMEOUT, GradingError, grade_submission
from vae_edu.assignments.release import MarkerError, release_directory


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_edu.assignments",
        description="Release and grade the vae_edu assignments (nbgrader-compatible markup).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser(
        "release",
        help="write student versions of the instructor notebooks",
        description="Replace solutions by stubs, remove hidden tests, clear outputs.",
    )
    release.add_argument("source_dir", help="folder of instructor notebooks")
    release.add_argument("out_dir", help="folder for the student notebooks")

    grade = commands.add_parser(
        "grade",
        help="grade one submitted notebook",
        description="Execute a submission in a fresh kernel with the instructor's (hidden) "
        "tests re-inserted, and print the score of every question.",
    )
    grade.add_argument("submission", help="the student's .ipynb")
    grade.add_argument(
        "--source",
        help="instructor notebook, or a folder of them (default: "
        "notebooks/assignments of this checkout)",
    )
    grade.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    grade.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per cell (default {DEFAULT_TIMEOUT})",
    )
    grade.add_argument(
        "--executed",
        metavar="PATH",
        help="also write the executed notebook (with the hidden tests)",
    )
    return parser


def _check_grade_paths(args) -> str | None:
    """Why ``grade`` cannot do its job, found before grading starts; None if it can.

    The submission must exist; the folders of --json and --executed are created if missing
    and proven writable (a probe file), so no finished grading is lost at the last step.
    """
    from pathlib import Path

    from vae_edu.system import ensure_writable_folder

    submission = Path(args.submission)
    if not submission.is_file():
        what = "is not a file" if submission.exists() else "does not exist"
        return f"the submission {submission} {what}"
    for option, value in (("--json", args.json), ("--executed", args.executed)):
        if value is None:
            continue
        target = Path(value)
        if target.is_dir():
            return f"{option} {target} is a directory; give a file name"
        try:
            ensure_writable_folder(target.parent, f"folder of {option}")
        except OSError as err:
            return str(err)
    return None


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "release":
            for path in release_directory(args.source_dir, args.out_dir):
                print(f"wrote {path}")
            return 0
        problem = _check_grade_paths(args)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        report = grade_submission(
            args.submission, args.source, timeout=args.timeout, executed_path=args.executed
        )
    except (MarkerError, GradingError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        try:
            report.write_json(args.json)
        except OSError as err:  # the table above is printed: nothing graded is lost
            print(f"error: could not write {args.json}: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
