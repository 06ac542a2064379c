"""Times the grading of a made-up class of 60, as the instructors' guide documents it.

Not a test (nothing here is timed by pytest): a script whose numbers go into
``notebooks/assignments/README.md`` ("How long it takes"). It builds, in a temporary
folder, ``submissions/<student>/<assignment>.ipynb`` for 60 students from the released
assignment (20 solved with the instructor's solutions, 20 untouched stubs, 20 solved but
with one wrong answer), runs the guide's command

    python -m vae_edu.assignments grade submissions/ --out grades/ --jobs 2

and prints the wall time, the per-submission mean and the load average before, during
(sampled every 5 s) and after. It then checks the gradebook: 60 rows, full autograded
marks for the solved group, 0 for the stubs, and for the wrong group the maximum minus the
points of the one question the wrong answer fails.

Usage, from the repository root::

    python tests/class_of_60.py                      # A1
    python tests/class_of_60.py A2_elbo_reparameterization --jobs 2 --keep /tmp/class

The machine's load counts: on a shared machine the time is an upper bound for an idle one.
"""

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from vae_edu.assignments import DEFAULT_SOURCE_DIR, release_notebook
from vae_edu.system import load_average

GROUP_SIZE = 20

# One plausible mistake per assignment, in one answer cell: (answer grade_id, the
# solution text, the wrong text). The test cell right after that answer must fail.
MISTAKES = {
    "A1_kl_divergence": (
        "kl_standard_normal",
        "jnp.exp(log_var) - 1.0 - log_var",
        "jnp.exp(log_var) - 1.0 + log_var",  # sign of the log-variance term
    ),
    # (Not in reparameterize: elbo_estimate calls the student's reparameterize, so a mistake
    # there also costs Question 4.)
    "A2_elbo_reparameterization": (
        "elbo_estimate",
        "return jnp.mean(log_joint",
        "return jnp.sum(log_joint",  # summed over the L samples instead of averaged
    ),
}


def answered(source, wrong: tuple[str, str, str] | None):
    """The release with the instructor's solutions filled in (one made wrong, if given)."""
    nb = release_notebook(source)
    for cell, src in zip(nb.cells, source.cells, strict=True):
        meta = src.metadata["nbgrader"]
        if meta["solution"]:
            text = "\n".join(x for x in src.source.splitlines() if "### " not in x)
            if wrong is not None and meta["grade_id"] == wrong[0]:
                assert wrong[1] in text, f"the mistake's text is not in {wrong[0]}"
                text = text.replace(wrong[1], wrong[2])
            cell.source = text
    return nb


def _lost_points(source, answer_id: str) -> float:
    """The points of the test cell that follows the answer cell ``answer_id``."""
    ids = [c.metadata["nbgrader"]["grade_id"] for c in source.cells]
    test = source.cells[ids.index(answer_id) + 1]
    assert test.metadata["nbgrader"]["grade"], f"no test cell after {answer_id}"
    return float(test.metadata["nbgrader"]["points"])


def build(folder: Path, name: str) -> dict[str, float]:
    """Writes the 60 submissions; returns {student: expected autograded points}."""
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    auto_max = sum(
        c.metadata["nbgrader"]["points"]
        for c in source.cells
        if c.metadata["nbgrader"]["grade"] and c.cell_type == "code"
    )
    groups = {
        "solved": (answered(source, None), auto_max),
        "blank": (release_notebook(source), 0.0),
        "wrong": (
            answered(source, MISTAKES[name]),
            auto_max - _lost_points(source, MISTAKES[name][0]),
        ),
    }
    expected = {}
    for group, (nb, points) in groups.items():
        for i in range(1, GROUP_SIZE + 1):
            student = f"{group}{i:02d}"
            (folder / "submissions" / student).mkdir(parents=True)
            nbformat.write(nb, folder / "submissions" / student / f"{name}.ipynb")
            expected[student] = points
    return expected


def _sample_load(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(5.0):
        value = load_average()
        if value is not None:
            samples.append(value)


def _fmt(load: float | None) -> str:
    return "n/a" if load is None else f"{load:.1f}"


def check(gradebook: Path, name: str, expected: dict[str, float]) -> None:
    rows = list(csv.DictReader(gradebook.open(encoding="utf-8")))
    students = {r["student"]: r for r in rows if r["student"] != "(max points)"}
    assert len(students) == len(expected) == 3 * GROUP_SIZE, len(students)
    wrong = {
        s: (float(r[f"{name}:autograded"]), expected[s])
        for s, r in students.items()
        if float(r[f"{name}:autograded"]) != expected[s]
    }
    assert not wrong, f"(got, expected) autograded points: {wrong}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", nargs="?", default="A1_kl_divergence", choices=MISTAKES)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", help="build the class in this (new) folder and keep it")
    args = parser.parse_args(argv)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="class_of_60_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        expected = build(folder, args.assignment)
        command = [
            *("python -m vae_edu.assignments grade submissions/ --out grades/").split(),
            "--jobs",
            str(args.jobs),
        ]
        print("$", " ".join(command), f"   (in {folder})", flush=True)
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
        before = load_average()
        start = time.perf_counter()
        sampler.start()
        done = subprocess.run(
            [sys.executable, *command[1:]], cwd=folder, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        stop.set()
        after = load_average()
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        during = (
            f"mean {sum(samples) / len(samples):.1f}, max {max(samples):.1f}" if samples else "n/a"
        )
        print(f"assignment        {args.assignment}, --jobs {args.jobs}, 60 submissions")
        print(f"wall time         {wall:.0f} s ({wall / 60:.1f} min)")
        print(f"per submission    {wall / 60:.1f} s")
        print(f"load average      before {_fmt(before)}, during {during}, after {_fmt(after)}")
        check(folder / "grades" / "gradebook.csv", args.assignment, expected)
        print("gradebook         60 rows, scores as expected for the three groups")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
