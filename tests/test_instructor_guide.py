"""The instructors' guide (notebooks/assignments/README.md) works as written.

* Every command of the guide is run: each fenced block marked ``<!-- guide-test -->`` runs,
  in order, in a scratch course folder (a copy of the assignments, two submissions), and
  no ``python -m vae_edu.assignments`` or ``jupyter`` command may sit in an unmarked block.
  The nbgrader commands are run by tests/test_nbgrader.py.
* The points the texts show agree with the metadata, for every assignment in the folder
  (question headings, the table in each assignment's first cell, the guide's table).
* The default output folders are ignored by git.
"""

import csv
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR, release_notebook

REPO = Path(__file__).resolve().parents[1]
GUIDE = DEFAULT_SOURCE_DIR / "README.md"
ASSIGNMENTS = sorted(p.stem for p in DEFAULT_SOURCE_DIR.glob("*.ipynb"))
FENCE = re.compile(r"(<!-- guide-test -->\s*)?```[a-z]*\n(.*?)```", re.S)


def _blocks():
    """(marked, [command lines]) for every fenced block of the guide."""
    out = []
    for match in FENCE.finditer(GUIDE.read_text(encoding="utf-8")):
        lines = [line.strip() for line in match.group(2).splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        out.append((bool(match.group(1)), lines))
    return out


def _is_command(line: str) -> bool:
    return line.startswith(("python -m vae_edu.assignments", "jupyter "))


def test_every_command_of_the_guide_is_marked_to_run():
    marked = [lines for is_marked, lines in _blocks() if is_marked]
    assert len(marked) >= 6
    for is_marked, lines in _blocks():
        if any(_is_command(line) for line in lines):
            assert is_marked, f"a command block of the guide is not run by this test: {lines}"
        if is_marked:
            assert all(_is_command(line) for line in lines), lines
    # the main README's instructor commands are among them
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    guide_commands = {line for _, lines in _blocks() for line in lines}
    for line in readme.splitlines():
        command = line.split("#", 1)[0].strip()
        if command.startswith("python -m vae_edu.assignments"):
            assert command in guide_commands, command


def _solved(path: Path, name: str):
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    nb = release_notebook(source, name)
    for cell, src in zip(nb.cells, source.cells, strict=True):
        if src.metadata["nbgrader"]["solution"]:
            cell.source = "\n".join(x for x in src.source.splitlines() if "### " not in x)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _run(line: str, cwd: Path, env) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    if words[0] == "python":
        words[0] = sys.executable
    elif words[0] == "jupyter":
        words = [sys.executable, "-m", "jupyter", *words[1:]]
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_the_guide_commands_run_as_written(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(DEFAULT_SOURCE_DIR, course / "notebooks" / "assignments")
    _solved(course / "submissions" / "alice" / "A1_kl_divergence.ipynb", "A1_kl_divergence")
    blank = release_notebook(
        nbformat.read(DEFAULT_SOURCE_DIR / "A1_kl_divergence.ipynb", as_version=4), "A1"
    )
    (course / "submissions" / "bob").mkdir()
    nbformat.write(blank, course / "submissions" / "bob" / "A1_kl_divergence.ipynb")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["VAE_EDU_FIGURES"] = str(tmp_path / "figures")

    ran = []
    for is_marked, lines in _blocks():
        if not is_marked:
            continue
        for line in lines:
            cwd = course
            if line.startswith("jupyter nbconvert"):  # "in this folder": the assignments
                cwd = course / "notebooks" / "assignments"
            if line.startswith("python -m vae_edu.assignments merge"):
                _fill_manual(course / "grades" / "manual.csv")
            done = _run(line, cwd, env)
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            ran.append(line.split()[3] if line.startswith("python") else line.split()[1])

    assert {"kit", "release", "grade", "merge", "nbconvert"} <= set(ran)
    assert (course / "course-kit" / "README.md").is_file()
    assert sorted(p.stem for p in (course / "release").glob("*.ipynb")) == ASSIGNMENTS
    lessons = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (course / "release" / "lessons").glob("*.ipynb")) == lessons
    assert sorted(p.name for p in (course / "course-kit" / "lessons").glob("*.ipynb")) == lessons
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(_read(course, "gradebook.csv")))}
    auto = _points("A1_kl_divergence", manual=False)
    assert float(rows["alice"]["A1_kl_divergence:autograded"]) == auto
    assert float(rows["alice"]["A1_kl_divergence:manual"]) == 1  # merged by hand
    assert float(rows["bob"]["total"]) == 0
    assert (course / "grades" / "alice_A1.json").is_file()
    feedback = (course / "grades" / "feedback" / "bob" / "A1_kl_divergence.md").read_text()
    assert "NotImplementedError" in feedback and "BEGIN HIDDEN" not in feedback
    executed = nbformat.read(
        course / "notebooks" / "assignments" / "A1_kl_divergence.ipynb", as_version=4
    )
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")


def _read(course: Path, name: str) -> str:
    return (course / "grades" / name).read_text(encoding="utf-8")


def _fill_manual(path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for row in rows:
        if row["student"] == "alice":
            row["points"], row["comment"] = "1", "Right direction; say why the tails matter."
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


# ----------------------------------------------------------------------- points in the texts


def _points(name: str, manual: bool) -> float:
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    return sum(
        c.metadata["nbgrader"]["points"]
        for c in source.cells
        if c.metadata["nbgrader"]["grade"]
        and (c.cell_type == "markdown" and c.metadata["nbgrader"]["solution"]) == manual
    )


_HEADING = re.compile(r"^## Question (\d+):.*\(([\d\s+]+) points?\b", re.M)
_ROW = re.compile(r"^\|\s*(\d+)\s*\|.*\|\s*([\d\s+]+)\s*\|\s*$", re.M)


def _sum(text: str) -> float:
    return sum(float(x) for x in text.split("+"))


def _questions(nb) -> dict[int, float]:
    """{question number: points of the graded cells under its '## Question' heading}."""
    points, current = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            found = _HEADING.match(cell.source)
            current = int(found.group(1)) if found else None
            if current is not None:
                points[current] = 0.0
        meta = cell.metadata["nbgrader"]
        if meta["grade"]:
            assert current is not None, f"graded cell {cell.id} outside a question"
            points[current] += meta["points"]
    return points


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_points_in_the_text_match_the_metadata(name):
    nb = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    actual = _questions(nb)
    assert actual, "no '## Question N: ... (k points)' headings"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    headings = {int(n): _sum(p) for n, p in _HEADING.findall(text)}
    assert headings == actual, "question headings vs metadata"
    table = {int(n): _sum(p) for n, p in _ROW.findall(nb.cells[0].source)}
    assert table == actual, "the table in the first cell vs metadata"


def test_the_guide_table_matches_the_metadata():
    text = GUIDE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(A\d+_\w+)\.ipynb` \|.*\| (\d+) \| (\d+) \|$", text, re.M)
    assert sorted(name for name, _, _ in rows) == ASSIGNMENTS
    for name, auto, by_hand in rows:
        assert float(auto) == _points(name, manual=False), name
        assert float(by_hand) == _points(name, manual=True), name


def test_default_output_folders_are_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in ("release", "course-kit", "submissions", "grades"):
        done = subprocess.run(
            ["git", "check-ignore", "-q", f"{folder}/A1_kl_divergence.ipynb"],
            cwd=REPO,
            capture_output=True,
        )
        assert done.returncode == 0, f"{folder}/ is not ignored by .gitignore"
