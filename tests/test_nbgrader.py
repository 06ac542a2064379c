"""The nbgrader route of the instructors' guide, with real nbgrader (pinned in
requirements-dev.txt): the shipped ``nbgrader_config.py`` in a course directory,
``nbgrader generate_assignment`` and ``nbgrader autograde`` give every instructor notebook
full autograded marks and its untouched release zero, and ``nbgrader generate_feedback``
writes the feedback.

Each assignment gets its own course directory, so the three run at once (nbgrader's
sqlite gradebook is not shared between them).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.stem for p in DEFAULT_SOURCE_DIR.glob("*.ipynb"))
NBGRADER = [sys.executable, "-m", "nbgrader"]


def _env(tmp):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NBGRADER_EXCHANGE"] = str(tmp / "exchange")
    env["VAE_EDU_FIGURES"] = str(tmp / "figures")
    env["JUPYTER_CONFIG_DIR"] = str(tmp / "jupyter_config")  # no user config leaks in
    return env


def _course(root: Path, name: str) -> Path:
    course = root / name
    (course / "source" / name).mkdir(parents=True)
    shutil.copy2(DEFAULT_SOURCE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copy2(DEFAULT_SOURCE_DIR / f"{name}.ipynb", course / "source" / name / f"{name}.ipynb")
    return course


def _scores(course: Path, name: str) -> dict:
    """{student: (autograded score, autograded max, manual max)} from nbgrader's gradebook."""
    code = (
        "import json, sys\n"
        "from nbgrader.api import Gradebook\n"
        "out = {}\n"
        "with Gradebook('sqlite:///gradebook.db') as gb:\n"
        f"    for sub in gb.assignment_submissions({name!r}):\n"
        "        nb = sub.notebooks[0]\n"
        "        auto = [g for g in nb.grades if g.cell_type == 'code']\n"
        "        manual = [g for g in nb.grades if g.cell_type == 'markdown']\n"
        "        out[sub.student_id] = [sum(g.auto_score or 0 for g in auto),\n"
        "            sum(g.max_score for g in auto), sum(g.max_score for g in manual)]\n"
        "json.dump(out, sys.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=course, capture_output=True, text=True, check=True
    )
    return {k: tuple(v) for k, v in json.loads(done.stdout).items()}


def _nbgrader(command: str, name: str, course: Path, env) -> None:
    """Runs ``nbgrader COMMAND NAME --force`` in the course directory; it must succeed."""
    done = subprocess.run(
        [*NBGRADER, command, name, "--force"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _max_points(source, cell_type: str) -> float:
    """The points of the graded cells of one type ("code": autograded, "markdown": manual)."""
    return sum(
        c.metadata["nbgrader"]["points"]
        for c in source.cells
        if c.metadata["nbgrader"]["grade"] and c.cell_type == cell_type
    )


@pytest.fixture(scope="module")
def autograded(tmp_path_factory):
    pytest.importorskip("nbgrader", reason="nbgrader is in requirements-dev.txt")
    root = tmp_path_factory.mktemp("nbgrader")
    env = _env(root)
    (root / "exchange").mkdir()
    runs = {}
    for name in ASSIGNMENTS:
        course = _course(root, name)
        _nbgrader("generate_assignment", name, course, env)
        released = course / "release" / name / f"{name}.ipynb"
        assert released.is_file()
        for student, path in (
            ("instructor", course / "source" / name / f"{name}.ipynb"),
            ("student", released),
        ):
            target = course / "submitted" / student / name
            target.mkdir(parents=True)
            shutil.copy2(path, target / f"{name}.ipynb")
        runs[name] = (
            course,
            subprocess.Popen(
                [*NBGRADER, "autograde", name, "--force"],
                cwd=course,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    results = {}
    for name, (course, process) in runs.items():
        log, _ = process.communicate(timeout=1200)
        assert process.returncode == 0, log
        _nbgrader("generate_feedback", name, course, env)
        results[name] = (course, log, _scores(course, name))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_generate_assignment_matches_release(autograded, name):
    from vae_edu.assignments import release_notebook

    course, _, _ = autograded[name]
    theirs = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
    ours = release_notebook(nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4))
    assert [c.source for c in theirs.cells] == [c.source for c in ours.cells]


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_autograde_instructor_full_marks_release_zero(autograded, name):
    _, log, scores = autograded[name]
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    auto_max, manual_max = _max_points(source, "code"), _max_points(source, "markdown")
    assert scores["instructor"] == (auto_max, auto_max, manual_max), log
    assert scores["student"] == (0, auto_max, manual_max), log
    course = autograded[name][0]
    for student in ("instructor", "student"):
        html = course / "feedback" / student / name / f"{name}.html"
        assert html.is_file()
        if student == "instructor":
            # the config's ClearHiddenTests removes the hidden tests from the cells; a
            # *failed* hidden test's traceback still quotes them (nbgrader 0.9.6), which the
            # guide says: return the package's feedback files instead
            assert "BEGIN HIDDEN TESTS" not in html.read_text(encoding="utf-8")
