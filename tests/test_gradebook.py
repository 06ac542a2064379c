"""Grading a class: folders of submissions, --jobs, the gradebook, feedback, written answers,
the merge of points given by hand, and robust intake (lost metadata, another assignment's
file, missing output folders, bad input).

A toy assignment without JAX keeps the kernels cheap; the real assignments are graded as a
class by tests/test_instructor_guide.py.
"""

import csv
import io
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vae_edu.assignments import release_notebook
from vae_edu.assignments.__main__ import main
from vae_edu.assignments.intake import collect, restore_metadata, student_name

HIDDEN_LINE = "assert square(-2) == 4, 'square of a negative number'"


def _meta(gid, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3}
    meta.update({"solution": solution, "task": False})
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def toy(name, fn="square"):
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Toy", id="intro", metadata=_meta("intro", locked=True)),
            new_code_cell(
                f"def {fn}(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                id=fn,
                metadata=_meta(fn, solution=True),
            ),
            new_code_cell(
                f"assert {fn}(3) == 9\n### BEGIN HIDDEN TESTS\n"
                + HIDDEN_LINE.replace("square", fn)
                + "\n### END HIDDEN TESTS",
                id=f"test_{fn}",
                metadata=_meta(f"test_{fn}", grade=True, locked=True, points=2),
            ),
            new_markdown_cell(
                "### BEGIN SOLUTION\nBecause squares are even functions.\n### END SOLUTION",
                id=f"why_{fn}" if fn != "square" else "why",
                metadata=_meta(
                    f"why_{fn}" if fn != "square" else "why", grade=True, solution=True, points=1
                ),
            ),
        ]
    )
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "vae_edu": {"assignment": name},
    }
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    source = root / "source"
    source.mkdir()
    nbformat.write(toy("A7_toy"), source / "A7_toy.ipynb")
    nbformat.write(toy("A8_other", fn="cube"), source / "A8_other.ipynb")
    student = release_notebook(toy("A7_toy"), "A7_toy")

    def solved(answer="def square(x):\n    return x * x", written="Squares are even."):
        nb = nbformat.from_dict(json.loads(json.dumps(student)))
        nb.cells[1].source = answer
        nb.cells[3].source = written
        return nb

    per_student = root / "submissions"
    for name, nb in {
        "alice": solved(),
        "bob": student,
        "carol": solved(written="Carol's answer."),
        "dan": release_notebook(toy("A8_other", fn="cube"), "A8_other"),  # wrong assignment
    }.items():
        (per_student / name).mkdir(parents=True)
        if name == "carol":  # pasted into a new notebook: every cell lost its metadata
            for cell in nb.cells:
                cell.metadata = {}
        nbformat.write(nb, per_student / name / "A7_toy.ipynb")
    flat = root / "lms_download"
    flat.mkdir()
    nbformat.write(solved(answer="def square(x):\n    return x + x"), flat / "erin_A7_toy.ipynb")
    nbformat.write(solved(), flat / "A7_toy - frank.ipynb")
    out = root / "not" / "yet" / "grades"  # created by grade
    code = main(
        ["grade", str(per_student), str(flat), "--source", str(source)]
        + ["--out", str(out), "--jobs", "2", "--timeout", "60"]
    )
    assert code == 0
    return root, source, out


def _rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_gradebook_has_a_row_per_student_and_a_column_per_question(course):
    _, _, out = course
    rows = {r["student"]: r for r in _rows(out / "gradebook.csv")}
    assert set(rows) == {"(max points)", "alice", "bob", "carol", "dan", "erin", "frank"}
    assert rows["(max points)"]["A7_toy:test_square"] == "2"
    assert rows["(max points)"]["A7_toy:why"] == "1"
    assert rows["(max points)"]["total"] == "3"
    assert rows["alice"]["A7_toy:test_square"] == "2" and rows["alice"]["A7_toy:why"] == ""
    assert rows["alice"]["A7_toy:to_grade_by_hand"] == "1"
    assert rows["bob"]["A7_toy:total"] == "0" and rows["bob"]["A7_toy:to_grade_by_hand"] == "0"
    assert rows["carol"]["A7_toy:test_square"] == "2"  # matched by cell id
    assert rows["dan"]["A7_toy:autograded"] == "0"  # refused: another assignment's file
    assert rows["erin"]["A7_toy:test_square"] == "0"
    assert rows["frank"]["A7_toy:test_square"] == "2"
    records = {r["student"]: r["report"] for r in json.loads((out / "grades.json").read_text())}
    assert any("lost their nbgrader metadata" in n for n in records["carol"]["notes"])
    assert any("A8_other" in n and "refused" in n for n in records["dan"]["notes"])


def test_feedback_gives_points_and_messages_never_the_hidden_tests(course):
    _, _, out = course
    erin = (out / "feedback" / "erin" / "A7_toy.md").read_text()
    assert "| test_square | 0 / 2 | failed |" in erin
    assert "square of a negative number" in erin  # the check's message
    for path in (out / "feedback").rglob("*.md"):
        text = path.read_text()
        assert "assert square(-2)" not in text and "HIDDEN" not in text, path
        assert "return x * x" not in text, path


def test_written_answers_are_exported_and_merged_back(course, capsys):
    root, _, out = course
    written = (out / "written" / "A7_toy" / "why.md").read_text()
    assert "## alice" in written and "Squares are even." in written
    assert "Carol's answer." in written
    manual = _rows(out / "manual.csv")
    assert {(r["student"], r["question"]) for r in manual} >= {("alice", "why"), ("carol", "why")}
    assert next(r for r in manual if r["student"] == "bob")["points"] == "0"  # unanswered

    before = (out / "gradebook.csv").read_text()
    bad = root / "bad.csv"
    bad.write_text("student,assignment,question,points\nalice,A7_toy,why,5\n")
    assert main(["merge", str(out), str(bad)]) == 2
    assert "outside 0 to 1" in capsys.readouterr().err
    bad.write_text("student,assignment,question,points\nzoe,A7_toy,why,1\n")
    assert main(["merge", str(out), str(bad)]) == 2
    assert "for student 'zoe'" in capsys.readouterr().err
    assert (out / "gradebook.csv").read_text() == before  # nothing half-written

    given = root / "given.csv"
    given.write_text(
        "student,assignment,question,points,comment\n"
        "alice,A7_toy,why,1,Clear.\n"
        "carol,A7_toy,why,0.5,Half right.\n"
        "erin,A7_toy,test_square,1,Regraded: partial credit.\n"
    )
    assert main(["merge", str(out), str(given)]) == 0
    rows = {r["student"]: r for r in _rows(out / "gradebook.csv")}
    assert rows["alice"]["A7_toy:total"] == "3" and rows["alice"]["A7_toy:to_grade_by_hand"] == "0"
    assert rows["carol"]["A7_toy:why"] == "0.5" and rows["carol"]["total"] == "2.5"
    assert rows["erin"]["A7_toy:test_square"] == "1"
    assert "Half right." in (out / "feedback" / "carol" / "A7_toy.md").read_text()
    assert "changed by hand" in (out / "feedback" / "erin" / "A7_toy.md").read_text()


def test_student_names_from_folders_and_file_names(tmp_path):
    stems = ["A1_kl_divergence", "A2_elbo_reparameterization"]
    assert student_name(tmp_path / "alice_A1_kl_divergence.ipynb", stems) == "alice"
    assert student_name(tmp_path / "A2_elbo_reparameterization-bob.ipynb", stems) == "bob"
    assert student_name(tmp_path / "carol_A1.ipynb", stems) == "carol"
    assert student_name(tmp_path / "dan" / "A1_kl_divergence.ipynb", stems) == "dan"
    (tmp_path / "class" / "eve" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "class" / "eve" / "A1_kl_divergence.ipynb").write_text("{}")
    (tmp_path / "class" / "eve" / ".ipynb_checkpoints" / "A1-checkpoint.ipynb").write_text("{}")
    found = collect([tmp_path / "class"], stems)
    assert [(s.student, s.path.name) for s in found] == [("eve", "A1_kl_divergence.ipynb")]


def test_lost_metadata_is_restored_by_cell_id_and_by_content():
    source = toy("A7_toy")
    submission = release_notebook(source, "A7_toy")
    for cell in submission.cells:
        cell.metadata = {}
    submission.cells[2]["id"] = "renamed"  # the test cell: matched by its released text
    restored, notes = restore_metadata(source, submission)
    assert [c.metadata["nbgrader"]["grade_id"] for c in restored.cells] == [
        "intro",
        "square",
        "test_square",
        "why",
    ]
    assert "by content: 'test_square'" in notes[0]
    untouched, none = restore_metadata(source, release_notebook(source, "A7_toy"))
    assert none == []


def test_class_input_problems_are_errors_and_nothing_is_graded(course, tmp_path, capsys):
    root, source, _ = course
    twice = tmp_path / "twice"
    (twice / "alice").mkdir(parents=True)
    for name in ("A7_toy.ipynb", "A7_toy_v2.ipynb"):
        (twice / "alice" / name).write_bytes(
            (root / "submissions" / "alice" / "A7_toy.ipynb").read_bytes()
        )
    out = tmp_path / "grades"
    assert main(["grade", str(twice), "--source", str(source), "--out", str(out)]) == 2
    assert "two submissions of A7_toy for 'alice'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["grade", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["grade", str(twice), "--jobs", "0"])
    assert exited.value.code == 2
    assert "must be positive" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["grade", str(empty), "--source", str(source)]) == 2
    assert "no .ipynb submissions" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    one = root / "submissions" / "alice" / "A7_toy.ipynb"
    code = main(["grade", str(one), "--source", str(source), "--out", str(blocker)])
    assert code == 2 and "is a file" in capsys.readouterr().err


def test_json_output_folder_is_created(course, tmp_path):
    root, source, _ = course
    target = tmp_path / "new" / "folder" / "alice_A7.json"
    one = root / "submissions" / "alice" / "A7_toy.ipynb"
    assert main(["grade", str(one), "--source", str(source), "--json", str(target)]) == 0
    assert json.loads(target.read_text())["score"] == 2
