"""The student kit: everything a teacher hands out, and nothing a student must not see.

``python -m vae_edu.assignments kit OUT_DIR`` writes::

    OUT_DIR/
      README.md                 install, which lesson each assignment needs, check, hand in
      requirements.txt          the course's pinned runtime + the vae_edu wheel below
      wheels/vae_edu-*.whl      the package, built from this checkout (no notebooks inside)
      lessons/01_*.ipynb ...    the student editions of the lessons
      assignments/A1_*.ipynb    the released assignments (solutions and hidden tests removed)

Before anything is written, every file of the kit (and every file inside the wheel) is
checked against the instructor sources: no solution region, hidden-test region or model
answer may appear anywhere (:func:`leaks`). The kit is written to a temporary folder next
to ``OUT_DIR`` and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat

from vae_edu.assignments.release import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    SOLUTION_TAG,
    MarkerError,
    release_directory,
    student_editions,
)

__all__ = [
    "KitError",
    "build_kit",
    "leaks",
    "lesson_secrets",
    "secret_regions",
    "student_lessons",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LESSONS = REPO_ROOT / "notebooks"
DEFAULT_ASSIGNMENTS = REPO_ROOT / "notebooks" / "assignments"

# Which lessons each assignment builds on (by assignment number); an assignment not listed
# here is shown as "see the assignment's introduction" in the student README.
PREREQUISITES = {
    "A1": ["02_information_and_kl"],
    "A2": ["03_elbo", "04_reparameterization", "05_decoders_and_loss"],
    "A3": ["06_train_vae_mnist", "07_latent_space_explorer"],
}
# A line of an instructor's solution or hidden test that also appears in the student
# editions (a blank line, a lone bracket, a docstring quote, "return x") is no leak; lines
# shorter than this, or without a letter, are not searched for.
_MIN_SECRET = 12


class KitError(ValueError):
    """The kit cannot be built (no checkout to build the wheel from, a leak, bad paths)."""


def student_lessons(lessons_dir=DEFAULT_LESSONS) -> dict[str, bytes]:
    """The student editions of the lessons: {file name: notebook bytes}.

    The same editions ``release`` writes (:func:`vae_edu.assignments.release.student_editions`):
    ``solution`` cells removed, exercise and feedback outputs cleared, the rest as committed.
    A malformed tag layout raises :class:`MarkerError`; no lessons raise :class:`KitError`.
    """
    try:
        return student_editions(lessons_dir)
    except MarkerError:
        raise
    except ValueError as err:
        raise KitError(str(err)) from None


def _regions(source: str, begin: str, end: str) -> list[str]:
    out, inside, lines = [], False, []
    for line in source.splitlines():
        if begin in line:
            inside, lines = True, []
        elif end in line and inside:
            inside = False
            out.append("\n".join(lines))
        elif inside:
            lines.append(line)
    return out


def secret_regions(source_dir=DEFAULT_ASSIGNMENTS) -> list[tuple[str, set[str]]]:
    """(where, distinctive lines) of every solution and hidden-test region (model answers
    included) of the instructor notebooks in ``source_dir``."""
    regions = []
    for path in sorted(Path(source_dir).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            source = cell.get("source", "")
            found = _regions(source, BEGIN_SOLUTION, END_SOLUTION)
            found += _regions(source, BEGIN_HIDDEN, END_HIDDEN)
            for region in found:
                lines = {line.strip() for line in region.splitlines()}
                lines = {x for x in lines if len(x) >= _MIN_SECRET and re.search(r"[A-Za-z]", x)}
                if lines:
                    regions.append((f"{path.name}, cell {cell.get('id')!r}", lines))
    return regions


def lesson_secrets(lessons_dir=DEFAULT_LESSONS) -> list[tuple[str, set[str]]]:
    """(where, distinctive lines) of every ``solution`` cell of the lessons in
    ``lessons_dir``: its lines of at least ``_MIN_SECRET`` characters with a letter, minus
    the lines the lesson shows anyway (the source of any of its other cells, e.g. the
    stub's ``def`` line and docstring that a worked solution repeats)."""
    regions = []
    for path in sorted(Path(lessons_dir).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        solutions = [c for c in nb.cells if SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]
        public = set()
        for cell in nb.cells:
            if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
                public |= _plain_lines(cell.get("source", ""))
        for cell in solutions:
            lines = _plain_lines(cell.get("source", "")) - public
            lines = {x for x in lines if len(x) >= _MIN_SECRET and re.search(r"[A-Za-z]", x)}
            if lines:
                regions.append((f"{path.name}, solution cell {cell.get('id')!r}", lines))
    return regions


def _texts(root: Path):
    """(relative name, bytes) of every file under root, wheels opened."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                for member in wheel.namelist():
                    yield f"{name}!{member}", wheel.read(member)
        else:
            yield name, path.read_bytes()


def leaks(root, source_dir=DEFAULT_ASSIGNMENTS, lessons_dir=DEFAULT_LESSONS) -> list[str]:
    """What in ``root`` (a kit, or an installed package) a student must not see.

    Returns one line per finding: a solution or hidden-test marker in a file that is not
    the package's own code (``release.py`` names the markers), or a solution, hidden-test
    or model-answer region of which at least half the distinctive lines (at least two)
    appear in one file; the same for the text of every ``solution`` cell of the lessons in
    ``lessons_dir`` (:func:`lesson_secrets`), searched in every file but the package's
    Python code: a lesson's exercise falls back on the package's reference implementation
    (``vae_edu.lesson_checks.sample_means``, named by the feedback cell), which may be the
    worked solution line for line, by design. (A single shared line, such as a lesson's
    ``kl = kl_diag_gaussians(mean, log_var)`` that a longer solution also contains, or a
    feedback message's hint ``eps = jax.random.normal(key, mean.shape)``, is no leak.)
    Empty when clean.
    """
    root = Path(root)
    regions = secret_regions(source_dir)
    lesson_regions = lesson_secrets(lessons_dir)
    found = []
    for name, data in _texts(root):
        if name.endswith(".pyc") or b"\0" in data[:4096]:
            continue  # compiled or binary (checkpoints, MNIST): no notebook text inside
        text = data.decode("utf-8", errors="replace")
        if not name.endswith(".py"):
            for marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
                if marker in text:
                    found.append(f"{name}: contains the marker {marker!r}")
        lines = _cell_lines(text) if name.endswith(".ipynb") else _plain_lines(text)
        searched = regions if name.endswith(".py") else regions + lesson_regions
        for where, secret in searched:
            shared = secret & lines
            if len(shared) >= 2 and 2 * len(shared) >= len(secret):
                example = sorted(shared)[0][:60]
                found.append(
                    f"{name}: contains {len(shared)} of the {len(secret)} lines of the "
                    f"solution or hidden test in {where} (e.g. {example!r})"
                )
    return found


def _plain_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


def _cell_lines(text: str) -> set[str]:
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception:  # noqa: BLE001 - not a notebook: compare its raw lines
        return _plain_lines(text)
    lines = set()
    for cell in nb.cells:
        lines |= {line.strip() for line in cell.get("source", "").splitlines()}
        for output in cell.get("outputs", []):
            for value in (output.get("text", ""), *output.get("data", {}).values()):
                if isinstance(value, str):
                    lines |= {line.strip() for line in value.splitlines()}
    return lines


def _runtime_requirements(requirements: Path) -> list[str]:
    """The pinned runtime lines of the checkout's requirements.txt (no `-e .`, no comments)."""
    lines = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("-e", "--editable", "-r", "-c", ".")):
            continue
        lines.append(line)
    if not lines:
        raise KitError(f"no pinned requirements in {requirements}")
    return lines


GRADER_ONLY = re.compile(
    r"^# BEGIN GRADER ONLY: (?P<names>[\w, ]+)\n.*?^# END GRADER ONLY\n", re.M | re.S
)


def strip_grader_only(text: str, module: str) -> str:
    """``text`` with every ``# BEGIN GRADER ONLY: a, b`` ... ``# END GRADER ONLY`` region
    replaced by stubs named a, b that raise: the grader's reference answers stay out of the
    students' wheel (the instructor's checkout keeps them)."""

    def stubs(match: re.Match) -> str:
        names = [n.strip() for n in match.group("names").split(",") if n.strip()]
        return "".join(
            f"def {name}(*args, **kwargs):\n"
            f"    raise RuntimeError(\n"
            f'        "{module}: {name} is the grader\'s reference answer; it is not part of "\n'
            f'        "the student kit"\n'
            f"    )\n\n\n"
            for name in names
        )

    return GRADER_ONLY.sub(stubs, text)


def build_wheel(out_dir, project_root=REPO_ROOT) -> Path:
    """Builds the vae_edu wheel from a clean copy of the package (never from ``build/``)."""
    project_root = Path(project_root)
    if not (project_root / "pyproject.toml").is_file():
        raise KitError(
            f"{project_root} is not a vae_edu checkout (no pyproject.toml): build the kit from "
            "a clone of the repository, or pass --wheel or --from-index"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
        shutil.copytree(project_root / "vae_edu", copy / "vae_edu", ignore=ignore)
        for module in (copy / "vae_edu").rglob("*.py"):
            text = module.read_text(encoding="utf-8")
            stripped = strip_grader_only(text, module.name)
            if stripped != text:
                module.write_text(stripped, encoding="utf-8")
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project_root / name, copy / name)
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out_dir),
            str(copy),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KitError(f"building the vae_edu wheel failed:\n{done.stderr[-2000:]}")
    wheels = sorted(out_dir.glob("vae_edu-*.whl"))
    if len(wheels) != 1:
        raise KitError(f"expected one vae_edu wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def _assignment_rows(assignments: list[str], lessons: list[str]) -> list[str]:
    stems = {Path(name).stem for name in lessons}
    rows = []
    for name in assignments:
        stem = Path(name).stem
        needed = PREREQUISITES.get(stem.split("_")[0], [])
        needed = [f"`lessons/{n}.ipynb`" for n in needed if n in stems]
        rows.append(
            f"| `assignments/{name}` | "
            + (", ".join(needed) or "see the assignment's introduction")
            + " |"
        )
    return rows


def student_readme(assignments: list[str], lessons: list[str], requirement: str) -> str:
    """The kit's README for students."""
    table = "\n".join(_assignment_rows(assignments, lessons))
    return f"""# Variational autoencoders: your course kit

This folder holds the lessons (`lessons/`), the graded assignments (`assignments/`) and
what you need to run them: the course's Python package `vae_edu` ({requirement}) and
the versions of JAX, Jupyter and friends it was tested with (`requirements.txt`).

## Install (once)

You need **Python 3.11** and about 1.3 GB of disk space. Open a terminal **in this
folder** (the one with this README), then:

**Linux and macOS (Apple silicon)**

```
python3.11 -m venv .venv
. .venv/bin/activate
pip install -r requirements.txt
jupyter lab
```

**Windows** (PowerShell; install Python 3.11 from python.org first)

```
py -3.11 -m venv .venv
.venv\\Scripts\\Activate.ps1
pip install -r requirements.txt
jupyter lab
```

(If PowerShell refuses to run the activation script, run
`Set-ExecutionPolicy -Scope CurrentUser RemoteSigned` once, or use `cmd` and
`.venv\\Scripts\\activate.bat`.)

**Intel Macs** cannot install this course's JAX version (JAX no longer publishes wheels
for macOS on Intel processors). Use the course's JupyterHub if there is one, Google
Colab (upload this folder and run `pip install -r requirements.txt` in the first cell),
or a Linux machine.

**JupyterHub** (if your course has one, the package may already be installed: try
`import vae_edu` in a notebook). Otherwise open a terminal in JupyterLab, upload this
folder and run `pip install --user -r requirements.txt`, then restart your kernel.

Next time, only activate the environment (`. .venv/bin/activate`, or
`.venv\\Scripts\\Activate.ps1`) and run `jupyter lab`.

Figures the lessons save go to a `figures` folder next to the installed package; set
the environment variable `VAE_EDU_FIGURES` to a folder of your own to put them elsewhere
(on JupyterHub: `export VAE_EDU_FIGURES=$HOME/figures`).

## What to read before each assignment

| assignment | lessons it builds on |
|---|---|
{table}

Work through the lessons in order (`00` to `07`); each one runs top to bottom as is.
Some lessons have **coding exercises**: a cell with `raise NotImplementedError("Exercise
...: your code here")` for you to replace with your code, followed by a feedback cell that
checks your function and names the mistake if there is one. Until you have written it, the
feedback cell says "not done yet" and the lesson goes on with the package's reference
implementation, so "Run All" always works.

## Check your work

Each answer cell is followed by a cell of **visible tests**. Run it: it prints
`visible tests passed` when your answer passes them. When you hand in, hidden tests check
more (random inputs, extreme values, gradients), so passing the visible tests is
necessary, not sufficient. Before handing in: *Kernel → Restart Kernel and Run All
Cells* and check that no cell fails. Do not delete or rename cells: a deleted test cell
scores zero.

## Hand in

Hand in the assignment's `.ipynb` file, saved, under its original name (for example
`A1_kl_divergence.ipynb`), the way your teacher asked (upload to the course page or
JupyterHub's assignment list). Your teacher grades it in a fresh kernel, so it must run
from top to bottom on its own.
"""


def build_kit(
    out_dir,
    *,
    source_dir=DEFAULT_ASSIGNMENTS,
    lessons_dir=DEFAULT_LESSONS,
    requirements=None,
    wheel=None,
    from_index: bool = False,
    project_root=REPO_ROOT,
) -> list[Path]:
    """Writes the student kit to ``out_dir`` (which must not exist, or be empty).

    Args:
      out_dir: the kit folder.
      source_dir: the instructor notebooks of the assignments (released into the kit).
      lessons_dir: the lesson notebooks, shipped as their student editions (see
        :func:`student_lessons`; their solution cells are searched for by the leak check).
      requirements: the pinned requirements file (default: the checkout's requirements.txt).
      wheel: an existing vae_edu wheel to ship instead of building one.
      from_index: ship no wheel: students install ``vae_edu==<version>`` from the index.
      project_root: the checkout the wheel is built from.

    Returns:
      The written files, sorted.

    Raises:
      KitError: bad paths, no way to get the package, or a leak of instructor material
        (nothing is written then).
      MarkerError: broken markup in an assignment, or a lesson's malformed exercise tags
        (nothing is written).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise KitError(f"{out_dir} already exists and is not an empty folder")
    source_dir, lessons_dir = Path(source_dir), Path(lessons_dir)
    if not source_dir.is_dir():
        raise KitError(f"assignment source folder {source_dir} does not exist")
    requirements = Path(requirements) if requirements else Path(project_root) / "requirements.txt"
    if not requirements.is_file():
        raise KitError(f"requirements file {requirements} does not exist")
    if wheel is not None and not Path(wheel).is_file():
        raise KitError(f"wheel {wheel} does not exist")
    pins = _runtime_requirements(requirements)
    lessons = student_lessons(lessons_dir)

    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".kit-", dir=parent))
    except OSError as err:
        raise KitError(f"cannot write {out_dir}: {err.strerror or err}") from None
    try:
        assignments = [p.name for p in release_directory(source_dir, staging / "assignments")]
        (staging / "lessons").mkdir()
        for name, data in lessons.items():
            (staging / "lessons" / name).write_bytes(data)
        if from_index:
            from importlib.metadata import version

            requirement = f"vae_edu=={version('vae_edu')}"
            described = "installed from the package index"
        else:
            if wheel is not None:
                (staging / "wheels").mkdir()
                built = Path(shutil.copy2(wheel, staging / "wheels" / Path(wheel).name))
            else:
                built = build_wheel(staging / "wheels", project_root)
            requirement = f"./wheels/{built.name}"
            described = f"`wheels/{built.name}`"
        (staging / "requirements.txt").write_text(
            "# The course's runtime, pinned; install from this folder:\n"
            "#   pip install -r requirements.txt\n" + "\n".join([*pins, requirement]) + "\n",
            encoding="utf-8",
        )
        (staging / "README.md").write_text(
            student_readme(assignments, list(lessons), described), encoding="utf-8"
        )
        found = leaks(staging, source_dir, lessons_dir)
        if found:
            raise KitError(
                "the kit would contain instructor material, nothing was written:\n  "
                + "\n  ".join(found[:20])
            )
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in out_dir.rglob("*") if p.is_file())
