"""The nbgrader route of the instructors' guide, with real nbgrader (pinned in
requirements-dev.txt): the shipped ``nbgrader_config.py`` in a course directory,
``nbgrader generate_assignment`` and ``nbgrader autograde`` give every instructor notebook
full autograded marks and its untouched release zero, and ``nbgrader generate_feedback``
writes the feedback. The guide's exchange round (release_assignment, the students'
fetch_assignment and submit, collect, autograde, generate_feedback) runs as written for A1,
and no feedback page shows a line of a hidden test.

Each assignment gets its own course directory, so the three run at once (nbgrader's
sqlite gradebook is not shared between them).
"""

import json
import os
import re
import shlex
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
            # the config's ClearHiddenTests removes the hidden tests from the cells (a
            # failed one's traceback: test_nbgrader_feedback_shows_no_hidden_test_source)
            assert "BEGIN HIDDEN TESTS" not in html.read_text(encoding="utf-8")


# ------------------------------------------------ the exchange route, as the guide writes it
#
# The guide's blocks marked <!-- nbgrader-test --> are run as written: the instructor's in the
# course directory, the students' (fetch and submit) in each student's own folder, whose
# nbgrader config points at the same exchange. All of them run as one OS user here, so the
# students' submit gets ``--student NAME`` (on a hub, nbgrader takes the user's name).

GUIDE = DEFAULT_SOURCE_DIR / "README.md"
_MARKED = re.compile(r"<!-- nbgrader-test -->\s*```[a-z]*\n(.*?)```", re.S)
A1 = "A1_kl_divergence"


def _guide_nbgrader_blocks() -> list[list[str]]:
    blocks = []
    for match in _MARKED.finditer(GUIDE.read_text(encoding="utf-8")):
        lines = [line.strip() for line in match.group(1).splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def test_every_nbgrader_command_of_the_guide_is_marked_to_run():
    marked = {line for block in _guide_nbgrader_blocks() for line in block}
    assert all(line.startswith("nbgrader ") for line in marked), marked
    verbs = {line.split()[1] for line in marked}
    assert {"generate_assignment", "release_assignment", "fetch_assignment", "submit"} <= verbs
    assert {"collect", "autograde", "generate_feedback"} <= verbs
    fences = re.findall(r"```[a-z]*\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    for block in fences:
        for line in block.splitlines():
            if line.strip().startswith("nbgrader "):
                assert line.strip() in marked, f"an nbgrader command the tests do not run: {line}"


def _run_line(line: str, cwd: Path, env, extra=()) -> str:
    words = shlex.split(line)
    assert words[0] == "nbgrader", line
    done = subprocess.run(
        [*NBGRADER, *words[1:], *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory):
    pytest.importorskip("nbgrader", reason="nbgrader is in requirements-dev.txt")
    from class_of_60 import MISTAKES, answered

    root = tmp_path_factory.mktemp("exchange_route")
    env = _env(root)
    (root / "exchange").mkdir()
    course = root / "course"
    (course / "source" / "A1").mkdir(parents=True)
    shutil.copy2(DEFAULT_SOURCE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copy2(DEFAULT_SOURCE_DIR / f"{A1}.ipynb", course / "source" / "A1" / f"{A1}.ipynb")
    instructor, students = _guide_nbgrader_blocks()
    assert [line.split()[1] for line in instructor] == [
        "generate_assignment",
        "release_assignment",
        "collect",
        "autograde",
        "generate_feedback",
    ]
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{A1}.ipynb", as_version=4)
    work = {"alice": answered(source, None), "bob": None, "carol": answered(source, MISTAKES[A1])}
    log = ""
    for line in instructor:
        if line.split()[1] == "collect":  # the students work between release and collect
            for student, notebook in work.items():
                home = root / "students" / student
                home.mkdir(parents=True)
                (home / "nbgrader_config.py").write_text(
                    f"c = get_config()\nc.Exchange.root = {str(root / 'exchange')!r}\n"
                    f"c.Exchange.cache = {str(home / 'cache')!r}\n",
                    encoding="utf-8",
                )
                for step in students:
                    extra = [f"--student={student}"] if step.split()[1] == "submit" else []
                    if step.split()[1] == "submit" and notebook is not None:
                        nbformat.write(notebook, home / "A1" / f"{A1}.ipynb")
                    log += _run_line(step, home, env, extra)
                    if step.split()[1] == "fetch_assignment":
                        assert (home / "A1" / f"{A1}.ipynb").is_file()
        log += _run_line(line, course, env)
    return course, log, _scores(course, "A1")


@pytest.mark.slow
def test_nbgrader_release_fetch_submit_collect_autograde(exchanged):
    course, log, scores = exchanged
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{A1}.ipynb", as_version=4)
    auto_max, manual_max = _max_points(source, "code"), _max_points(source, "markdown")
    from class_of_60 import MISTAKES, _lost_points

    lost = _lost_points(source, MISTAKES[A1][0])
    assert 0 < lost < auto_max
    assert scores == {
        "alice": (auto_max, auto_max, manual_max),
        "bob": (0, auto_max, manual_max),
        "carol": (auto_max - lost, auto_max, manual_max),
    }, log
    for student in ("alice", "bob", "carol"):
        assert (course / "submitted" / student / "A1" / f"{A1}.ipynb").is_file()
        assert (course / "feedback" / student / "A1" / f"{A1}.html").is_file()


def _hidden_lines() -> set[str]:
    """The code lines of A1's hidden tests (long enough not to occur by chance)."""
    lines, inside = set(), False
    for cell in nbformat.read(DEFAULT_SOURCE_DIR / f"{A1}.ipynb", as_version=4).cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 20:
                lines.add(line.strip())
    from vae_edu.assignments import release_notebook

    released = release_notebook(nbformat.read(DEFAULT_SOURCE_DIR / f"{A1}.ipynb", as_version=4))
    visible = {line.strip() for c in released.cells for line in c.source.splitlines()}
    return lines - visible


@pytest.mark.slow
def test_nbgrader_feedback_shows_no_hidden_test_source(exchanged):
    """carol's wrong answer fails a hidden test: her feedback has the check's message, and
    neither the hidden tests (ClearHiddenTests) nor the traceback that quotes them
    (the config's ClearTestTracebacks)."""
    import html as html_lib

    course = exchanged[0]
    hidden = _hidden_lines()
    assert hidden
    for student in ("alice", "bob", "carol"):
        page = (course / "feedback" / student / "A1" / f"{A1}.html").read_text(encoding="utf-8")
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", page))
        assert "HIDDEN TESTS" not in text
        assert not [line for line in hidden if line in text], student
    carol = (course / "feedback" / "carol" / "A1" / f"{A1}.html").read_text(encoding="utf-8")
    assert "AssertionError" in carol


@pytest.mark.slow
def test_the_package_grades_nbgraders_collected_folder(exchanged):
    """The guide's "grade the collected files with this package" command, on the folder
    ``nbgrader collect`` wrote (``submitted/<student>/A1/A1_kl_divergence.ipynb``)."""
    import csv

    course = exchanged[0]
    text = GUIDE.read_text(encoding="utf-8")
    command = re.search(r"`(python -m vae_edu\.assignments grade submitted/[^`]*)`", text)
    assert command, "the guide no longer shows how to grade nbgrader's submitted/ folder"
    words = shlex.split(command.group(1))
    done = subprocess.run(
        [sys.executable, *words[1:], "--jobs", "2"],
        cwd=course,
        env=_env(course.parent),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    book = (course / "grades" / "gradebook.csv").read_text(encoding="utf-8")
    rows = {r["student"]: r for r in csv.DictReader(book.splitlines())}
    scores = {s: float(r[f"{A1}:autograded"]) for s, r in rows.items() if s != "(max points)"}
    _, _, nbgrader_scores = exchanged
    assert scores == {s: auto for s, (auto, _, _) in nbgrader_scores.items()}
