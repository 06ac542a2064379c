"""The student edition of the lessons (``release`` and ``kit`` write it).

* unit: on a toy lesson, ``solution`` cells are dropped, ``exercise`` and ``feedback``
  outputs cleared, every other output kept; a malformed tag layout is refused, naming the
  notebook and the cell; the output is byte-identical on every run;
* the release command writes the editions to OUT_DIR/lessons/ (all or nothing);
* the kit's leak check finds a lesson's worked solution, and not the stub it repeats;
* the student edition of every lesson with exercises (found by its ``solution`` tags)
  runs top to bottom in a fresh kernel, each feedback cell saying "not done yet".
  (tests/test_exercises_notebooks.py runs the other paths: solved and wrong.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR
from vae_edu.assignments.__main__ import main
from vae_edu.assignments.kit import leaks, lesson_secrets
from vae_edu.assignments.release import (
    MarkerError,
    notebook_bytes,
    release_lessons,
    student_edition,
    validate_lesson,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _code(source, tags=(), outputs=True, count=1):
    cell = nbformat.v4.new_code_cell(source, execution_count=count if outputs else None)
    if tags:
        cell.metadata["tags"] = list(tags)
    if outputs:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{source}\n")]
    return cell


def _markdown(source, tags=()):
    cell = nbformat.v4.new_markdown_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


DOC = '    """Twice x plus the offset."""'


def toy_lesson():
    """Intro, a computed cell, one exercise (stub, solution heading and code, feedback), a
    later computed cell: the instructor edition, executed."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _markdown("# A lesson"),
        _code("print('before')", count=1),
        _code(f"def f(x):\n{DOC}\n    raise NotImplementedError('Exercise 1.1')", ["exercise"]),
        _markdown("### Solution (try first)", ["solution"]),
        _code(f"def f(x):  # noqa: F811\n{DOC}\n    return 2 * x + secret_offset", ["solution"]),
        _code("f = exercises.run(check, f, reference)", ["feedback"], count=4),
        _code("print('after')", count=5),
    ]
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"
    return nb


def test_the_edition_drops_solutions_clears_exercise_outputs_and_keeps_the_rest():
    source = toy_lesson()
    before = copy.deepcopy(source)
    student = student_edition(source, "toy.ipynb")
    assert source == before, "the instructor edition must not change"
    assert [c.id for c in student.cells] == ["cell-0", "cell-1", "cell-2", "cell-5", "cell-6"]
    assert all("solution" not in _tags(c) for c in student.cells)
    by_id = {c.id: c for c in student.cells}
    for cleared in ("cell-2", "cell-5"):
        assert by_id[cleared].outputs == [] and by_id[cleared].execution_count is None
        assert by_id[cleared].source == source.cells[int(cleared[-1])].source
    for kept in ("cell-1", "cell-6"):
        original = source.cells[int(kept[-1])]
        assert by_id[kept].outputs == original.outputs and by_id[kept].outputs
        assert by_id[kept].execution_count == original.execution_count
    assert "secret_offset" not in nbformat.writes(student)
    assert notebook_bytes(student) == notebook_bytes(student_edition(toy_lesson(), "toy"))
    assert validate_lesson(source) == 1


def test_a_lesson_without_exercises_is_handed_out_as_it_is():
    nb = toy_lesson()
    nb.cells = [nb.cells[0], nb.cells[1], nb.cells[6]]
    assert student_edition(nb, "plain") == nb
    assert validate_lesson(nb) == 0


def _broken(kind: str):
    nb = toy_lesson()
    if kind == "solution first":
        nb.cells.insert(1, _code("x = 1", ["solution"]))
    elif kind == "no feedback":
        del nb.cells[5]
    elif kind == "no worked solution":
        del nb.cells[3:5]
    elif kind == "feedback alone":
        del nb.cells[2:5]
    elif kind == "two tags":
        nb.cells[4].metadata["tags"] = ["solution", "feedback"]
    elif kind == "markdown stub":
        nb.cells[2] = _markdown("Write f.", ["exercise"])
    elif kind == "two stubs":
        nb.cells.insert(3, _code("def g(): ...", ["exercise"]))
    return nb


@pytest.mark.parametrize(
    ("kind", "cell", "phrase"),
    [
        ("solution first", 2, "'solution' cell with no preceding 'exercise' cell"),
        ("no feedback", 3, "has no 'feedback' cell after it"),
        ("no worked solution", 4, "has no worked solution"),
        ("feedback alone", 3, "'feedback' cell with no preceding 'exercise' cell"),
        ("two tags", 5, "tagged both 'solution' and 'feedback'"),
        ("markdown stub", 3, "must be a code cell"),
        ("two stubs", 4, "has no 'feedback' cell yet"),
    ],
)
def test_a_malformed_tag_layout_is_refused_naming_notebook_and_cell(kind, cell, phrase):
    with pytest.raises(MarkerError, match="toy.ipynb, cell") as info:
        student_edition(_broken(kind), "toy.ipynb")
    message = str(info.value)
    assert f"toy.ipynb, cell {cell} (" in message and phrase in message, message


# ----------------------------------------------------------------------- release, kit


def test_release_writes_the_lessons_next_to_the_assignments_all_or_nothing(tmp_path, capsys):
    lessons = tmp_path / "lessons_src"
    lessons.mkdir()
    nbformat.write(toy_lesson(), lessons / "01_toy.ipynb")
    out = tmp_path / "out"
    assert main(["release", str(DEFAULT_SOURCE_DIR), str(out), "--lessons", str(lessons)]) == 0
    assert (out / "lessons" / "01_toy.ipynb").read_bytes() == notebook_bytes(
        student_edition(toy_lesson(), "01_toy.ipynb")
    )
    assert sorted(p.name for p in out.glob("*.ipynb")) == sorted(
        p.name for p in DEFAULT_SOURCE_DIR.glob("*.ipynb")
    )
    assert "lessons" in capsys.readouterr().out
    nbformat.write(_broken("solution first"), lessons / "02_broken.ipynb")
    again = tmp_path / "again"
    assert main(["release", str(DEFAULT_SOURCE_DIR), str(again), "--lessons", str(lessons)]) == 2
    assert "02_broken.ipynb, cell 2" in capsys.readouterr().err
    assert not again.exists()
    with pytest.raises(ValueError, match="refusing"):
        release_lessons(lessons, lessons)


def test_the_lesson_editions_are_deterministic_and_hold_no_solution(tmp_path):
    first = release_lessons(NOTEBOOKS, tmp_path / "one")
    second = release_lessons(NOTEBOOKS, tmp_path / "two")
    assert [p.name for p in first] == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    for path in first:
        source = nbformat.read(NOTEBOOKS / path.name, as_version=4)
        edition = nbformat.read(path, as_version=4)
        assert not [c for c in edition.cells if "solution" in _tags(c)]
        kept = [c for c in source.cells if "solution" not in _tags(c)]
        assert [c.id for c in edition.cells] == [c.id for c in kept]
    assert lesson_secrets(), "the leak check needs the lessons' solutions"
    assert leaks(tmp_path / "one") == []


def test_the_leak_check_finds_a_lessons_solution_but_not_its_stub(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    nbformat.write(toy_lesson(), lessons / "01_toy.ipynb")
    secrets = dict(lesson_secrets(lessons))
    assert secrets["01_toy.ipynb, solution cell 'cell-4'"] == {
        "def f(x):  # noqa: F811",  # the docstring is the stub's: not a secret
        "return 2 * x + secret_offset",
    }
    kit = tmp_path / "kit"
    kit.mkdir()
    nbformat.write(student_edition(toy_lesson()), kit / "01_toy.ipynb")
    assert leaks(kit, lessons_dir=lessons) == []
    nbformat.write(toy_lesson(), kit / "01_toy.ipynb")  # the instructor edition
    (found,) = leaks(kit, lessons_dir=lessons)
    assert "01_toy.ipynb, solution cell 'cell-4'" in found


# ----------------------------------------------------------------------- every lesson runs


def _lessons_with_exercises() -> list[str]:
    names = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any("solution" in _tags(c) for c in nb.cells):
            names.append(path.stem)
    return names


@pytest.mark.slow  # 00: 15 s, 02: 30 s, 03: about a minute on one core
@pytest.mark.parametrize("name", _lessons_with_exercises())
def test_the_student_edition_runs_top_to_bottom_with_every_stub(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("VAE_EDU_FIGURES", str(tmp_path / "figures"))
    source = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb = student_edition(source, name)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    stubs = [c for c in nb.cells if "exercise" in _tags(c)]
    feedback = [c for c in nb.cells if "feedback" in _tags(c)]
    assert len(feedback) == len(stubs) == validate_lesson(source) >= 1
    for cell in feedback:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "not done yet: the lesson goes on with the reference implementation `vae_edu." in (
            text
        ), text


def test_the_packages_reference_implementation_is_no_lesson_leak(tmp_path):
    """A lesson falls back on the package's reference (named by its feedback cell), which may
    be the worked solution line for line: searched in the kit's files, not in its .py."""
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    nbformat.write(toy_lesson(), lessons / "01_toy.ipynb")
    kit = tmp_path / "kit"
    kit.mkdir()
    solution = toy_lesson().cells[4].source
    (kit / "reference.py").write_text(solution, encoding="utf-8")
    assert leaks(kit, lessons_dir=lessons) == []
    (kit / "notes.md").write_text(solution, encoding="utf-8")
    (found,) = leaks(kit, lessons_dir=lessons)
    assert found.startswith("notes.md: ") and "solution cell 'cell-4'" in found
