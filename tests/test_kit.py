"""The student kit (``python -m vae_edu.assignments kit``): what students get, and only that.

The slow test builds the kit, installs it into a fresh virtual environment from the kit
folder alone (pip's cache, ``PIP_CACHE_DIR`` if set, keeps this to about a minute when
warm), runs a student assignment there, and checks that neither the kit nor the installed
package holds a solution, hidden test or model answer.
"""

import os
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR
from vae_edu.assignments.__main__ import main
from vae_edu.assignments.kit import build_kit, leaks, secret_regions, student_lessons

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in DEFAULT_SOURCE_DIR.glob("*.ipynb"))


def _solved(path: Path, name: str) -> None:
    """Fills the released notebook at ``path`` with the instructor's answers."""
    source = nbformat.read(DEFAULT_SOURCE_DIR / name, as_version=4)
    answers = {
        c.id: "\n".join(line for line in c.source.splitlines() if "### " not in line)
        for c in source.cells
        if c.metadata["nbgrader"]["solution"]
    }
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = answers[cell.id]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit") / "vae_edu_kit"
    assert main(["kit", str(out)]) == 0
    return out


def test_kit_layout_readme_and_requirements(kit):
    assert sorted(p.name for p in (kit / "assignments").iterdir()) == ASSIGNMENTS
    assert sorted(p.name for p in (kit / "lessons").iterdir()) == sorted(student_lessons())
    wheels = list((kit / "wheels").glob("vae_edu-*.whl"))
    assert len(wheels) == 1
    requirements = (kit / "requirements.txt").read_text().splitlines()
    assert f"./wheels/{wheels[0].name}" in requirements
    assert not [line for line in requirements if line.startswith("-e")]
    runtime = (REPO / "requirements.txt").read_text()
    for test_tool in ("pytest", "playwright", "hypothesis", "nbval", "ruff", "nbgrader"):
        assert test_tool not in runtime and test_tool not in "\n".join(requirements)
    readme = (kit / "README.md").read_text()
    for phrase in ("Windows", "macOS", "Intel Macs", "JupyterHub", "visible tests", "Hand in"):
        assert phrase in readme
    for name in ASSIGNMENTS:
        assert f"assignments/{name}" in readme
    assert "02_information_and_kl" in readme  # the lesson A1 builds on


def test_kit_holds_no_instructor_material(kit):
    assert secret_regions(), "the leak check needs the instructor's regions"
    assert leaks(kit) == []
    for path in kit.rglob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path


def test_the_leak_check_finds_a_planted_solution_and_nothing_is_written(tmp_path, capsys):
    planted = tmp_path / "assignments"
    planted.mkdir()
    (planted / "A1_kl_divergence.ipynb").write_bytes(
        (DEFAULT_SOURCE_DIR / "A1_kl_divergence.ipynb").read_bytes()
    )
    found = leaks(tmp_path)
    assert any("A1_kl_divergence.ipynb" in f and "BEGIN SOLUTION" in f for f in found)
    assert any("cell 'kl_two_gaussians'" in f for f in found)
    # an instructor notebook among the lessons: refused, nothing written
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01_lesson.ipynb").write_bytes(
        (DEFAULT_SOURCE_DIR / "A2_elbo_reparameterization.ipynb").read_bytes()
    )
    out = tmp_path / "kit"
    with pytest.raises(Exception, match="instructor material"):
        build_kit(out, lessons_dir=lessons, from_index=True)
    assert not out.exists() and not list(tmp_path.glob(".kit-*"))
    assert main(["kit", str(out), "--lessons", str(lessons), "--from-index"]) == 2
    assert "error: the kit would contain instructor material" in capsys.readouterr().err
    assert main(["kit", str(planted / "A1_kl_divergence.ipynb")]) == 2
    assert "already exists" in capsys.readouterr().err


def _venv_python(root: Path) -> Path:
    scripts = root / ("Scripts" if os.name == "nt" else "bin")
    return scripts / ("python.exe" if os.name == "nt" else "python")


@pytest.mark.slow
def test_kit_installs_into_a_fresh_venv_and_runs_a_student_assignment(kit, tmp_path):
    env_dir = tmp_path / "student-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = _venv_python(env_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["VAE_EDU_FIGURES"] = str(tmp_path / "figures")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--retries", "5", "--timeout", "60", "-q"]
        + ["-r", "requirements.txt"],
        cwd=kit,  # the kit alone: no checkout on the path
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import pathlib, vae_edu; print(pathlib.Path(vae_edu.__file__).parent)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    installed = Path(where.stdout.strip())
    assert REPO not in installed.parents  # the wheel's copy, not this checkout
    assert not list(installed.rglob("*.ipynb"))
    assert leaks(installed) == []

    # A student solves A1 in the kit's environment: every visible test passes.
    work = tmp_path / "student"
    work.mkdir()
    name = "A1_kl_divergence.ipynb"
    (work / name).write_bytes((kit / "assignments" / name).read_bytes())
    _solved(work / name, name)
    run = subprocess.run(
        [str(python), "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"]
        + ["--inplace", "--ExecutePreprocessor.timeout=600", name],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    executed = nbformat.read(work / name, as_version=4)
    printed = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    # nbconvert stops at the first error, so every cell ran; the test cells that announce it
    # printed their verdict
    announcing = [
        c for c in executed.cells if c.cell_type == "code" and "visible tests passed" in c.source
    ]
    assert announcing and printed.count("visible tests passed") == len(announcing), printed


def test_grader_only_regions_become_stubs_in_the_students_wheel():
    from vae_edu.assignments.kit import strip_grader_only

    source = (REPO / "vae_edu" / "mlp_vae.py").read_text()
    assert "# BEGIN GRADER ONLY: _terms, negative_elbo, train_step" in source
    shipped = strip_grader_only(source, "vae_edu.mlp_vae")
    assert "value_and_grad" not in shipped and "GRADER ONLY" not in shipped
    namespace = {}
    exec(compile(shipped, "mlp_vae.py", "exec"), namespace)
    for name in ("negative_elbo", "train_step"):
        with pytest.raises(RuntimeError, match="grader's reference answer"):
            namespace[name]({}, None, None)
    assert callable(namespace["run_steps"]) and namespace["BUDGET"].target_elbo < 0
