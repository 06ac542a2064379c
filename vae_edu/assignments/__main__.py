"""Command line: ``python -m vae_edu.assignments {release,grade} ...``.

    release SOURCE_DIR OUT_DIR
        Write the student version of every notebook in SOURCE_DIR to OUT_DIR.
    grade SUBMISSION.ipynb [SUBMISSION.ipynb ...] [--source PATH] [--json PATH]
          [--timeout S] [--memory MB] [--max-output BYTES] [--user NAME] [--executed PATH]
        Run each submission in its own sandboxed kernel, grade it against the instructor's
        hidden tests (run in the grader's process) and print its score table.

Exit status: 0 when the command did its job (whatever the scores), 2 for a usage problem
(broken markup in a source notebook, no matching instructor source, a missing submission,
bad arguments, a --json / --executed path that cannot be written: checked before grading,
missing folders are created; grader sources changed during grading).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vae_edu.assignments.grade import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT,
    GradingError,
    grade_submission,
)
from vae_edu.assignments.release import MarkerError, release_directory


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
        description="Replace solutions by stubs, remove hidden tests, clear outputs.",
    )
    release.add_argument("source_dir", help="folder of instructor notebooks")
    release.add_argument("out_dir", help="folder for the student notebooks")

    grade = commands.add_parser(
        "grade",
        help="grade submitted notebooks",
        description="Run each submission in its own sandboxed kernel; the instructor's "
        "hidden tests run in the grader's process against the student's functions.",
    )
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="student .ipynb files")
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
    return parser


def _check_writable(path: str, option: str) -> None:
    """Refuse an output ``path`` before grading: a folder, or one that cannot be written.

    Missing parent folders are created and proven writable with a probe file, so no
    finished grading is lost at the last step.
    """
    from vae_edu.system import ensure_writable_folder

    target = Path(path)
    if target.is_dir():
        raise OSError(f"{option} {path} is a directory; give a file name")
    ensure_writable_folder(target.parent, f"folder of {option}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "release":
            for path in release_directory(args.source_dir, args.out_dir):
                print(f"wrote {path}")
            return 0
        for submission in args.submissions:
            if not Path(submission).is_file():
                what = "is not a file" if Path(submission).exists() else "does not exist"
                raise OSError(f"the submission {submission} {what}")
        if args.executed and len(args.submissions) > 1:
            raise ValueError("--executed takes one submission")
        for option, path in (("--json", args.json), ("--executed", args.executed)):
            if path:
                _check_writable(path, option)
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
    except (MarkerError, GradingError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
