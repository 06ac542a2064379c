"""The assignment tooling: release (student versions) and grade (fresh-kernel autograding).

Fast tests work on notebooks in memory. The slow ones start kernels, so they share them:
one module fixture grades the instructor and the released student version of A1, A2 and
A3 through the command line, six processes at once, and one synthetic notebook exercises
every way a submission can misbehave (raise, loop forever, delete cells, kill the kernel)
in a single kernel without JAX.
"""

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vae_edu.assignments import (
    DEFAULT_SOURCE_DIR,
    TEXT_STUB,
    GradingError,
    MarkerError,
    find_source,
    grade_submission,
    merge_submission,
    release_directory,
    release_notebook,
    validate_source,
)
from vae_edu.assignments.__main__ import main
from vae_edu.assignments._policy import FORBIDDEN
from vae_edu.assignments.release import released_text

# Every assignment in the source folder is released and graded (a new A4 needs no edit here).
ASSIGNMENTS = sorted(p.stem for p in DEFAULT_SOURCE_DIR.glob("*.ipynb"))
SOURCES = {name: DEFAULT_SOURCE_DIR / f"{name}.ipynb" for name in ASSIGNMENTS}


def points_of(name: str, manual: bool) -> float:
    """The points of an assignment's autograded (or hand-graded) cells, from its metadata."""
    source = nbformat.read(SOURCES[name], as_version=4)
    return sum(
        c.metadata["nbgrader"]["points"]
        for c in source.cells
        if c.metadata["nbgrader"]["grade"]
        and (c.cell_type == "markdown" and c.metadata["nbgrader"]["solution"]) == manual
    )


USER_NOTE = "student code ran as the grader's own user"


# ----------------------------------------------------------------------- authoring helpers


def _meta(gid, grade=False, solution=False, locked=False, points=None):
    meta = {
        "grade": grade,
        "grade_id": gid,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def text(gid, source):
    return new_markdown_cell(source, id=gid, metadata=_meta(gid, locked=True))


def given(gid, source):
    return new_code_cell(source, id=gid, metadata=_meta(gid, locked=True))


def answer(gid, source):
    return new_code_cell(source, id=gid, metadata=_meta(gid, solution=True))


def graded_cell(gid, points, source):
    return new_code_cell(
        source, id=gid, metadata=_meta(gid, grade=True, locked=True, points=points)
    )


def written(gid, points, source):
    return new_markdown_cell(
        source, id=gid, metadata=_meta(gid, grade=True, solution=True, points=points)
    )


def notebook(cells, name="toy"):
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        },
        "vae_edu": {"assignment": name},
    }
    return nb


def toy_source():
    """A small instructor notebook with every kind of cell."""
    return notebook(
        [
            text("intro", "# Toy assignment"),
            answer(
                "square",
                "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
            ),
            graded_cell(
                "test_square",
                2,
                "assert square(3) == 9\n### BEGIN HIDDEN TESTS\n"
                "assert square(-2) == 4\n### END HIDDEN TESTS",
            ),
            written("why", 1, "### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
        ]
    )


# ----------------------------------------------------------------------- release


def test_release_is_deterministic_and_byte_identical(tmp_path):
    first = release_directory(DEFAULT_SOURCE_DIR, tmp_path / "one")
    second = release_directory(DEFAULT_SOURCE_DIR, tmp_path / "two")
    assert [p.name for p in first] == [p.name for p in second]
    assert {p.stem for p in first} == set(ASSIGNMENTS)
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert data == b.read_bytes(), a.name
        # sorted keys, one-space indent, trailing newline: the canonical nbformat layout
        expected = json.dumps(json.loads(data), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        assert data.decode("utf-8") == expected


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_released_notebook_has_stubs_and_no_solutions_hidden_tests_or_outputs(name):
    source = nbformat.read(SOURCES[name], as_version=4)
    student = release_notebook(source, name)
    nbformat.validate(student)
    assert [c.id for c in student.cells] == [c.id for c in source.cells]  # fixed cell ids
    assert student.metadata["vae_edu"]["assignment"] == name
    for src, cell in zip(source.cells, student.cells, strict=True):
        assert cell.metadata["nbgrader"] == src.metadata["nbgrader"]
        assert "SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        nb_meta = cell.metadata["nbgrader"]
        if nb_meta["solution"] and cell.cell_type == "code":
            assert "# YOUR CODE HERE" in cell.source
            assert "raise NotImplementedError()" in cell.source
            solution = src.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in solution.strip().splitlines():
                if any(ch.isalnum() for ch in line):  # not a lone ")" or blank line
                    assert line.strip() not in cell.source, (cell.id, line)
        if nb_meta["solution"] and cell.cell_type == "markdown":
            assert cell.source == TEXT_STUB
        if nb_meta["grade"] and not nb_meta["solution"]:
            assert "HIDDEN TESTS" in src.source, f"{cell.id} has no hidden tests"
            hidden = src.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN")[0]
            for line in hidden.strip().splitlines():
                if any(ch.isalnum() for ch in line):  # not a lone ")" or blank line
                    assert line not in cell.source, (cell.id, line)
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_instructor_source_is_a_valid_executed_nbgrader_source(name):
    source = nbformat.read(SOURCES[name], as_version=4)
    validate_source(source, name)
    assert source.metadata["vae_edu"]["assignment"] == name
    for cell in source.cells:
        meta = cell.metadata["nbgrader"]
        assert set(meta) >= {"grade", "grade_id", "locked", "schema_version", "solution", "task"}
        assert meta["schema_version"] == 3 and cell.id == meta["grade_id"]
        if meta["grade"]:
            assert meta["points"] > 0
        if cell.cell_type == "code":  # committed executed, without errors
            assert cell.execution_count is not None, cell.id
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.id
    graded = [c for c in source.cells if c.metadata["nbgrader"]["grade"]]
    assert any(c.cell_type == "markdown" for c in graded), "a written answer"
    assert sum(c.metadata["nbgrader"]["points"] for c in graded) >= 10


def test_stub_keeps_the_indentation_of_the_marker():
    student = release_notebook(toy_source(), "toy")
    assert student.cells[1].source == (
        "def square(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    )
    assert student.cells[2].source == "assert square(3) == 9"
    assert student.cells[3].source == TEXT_STUB


BROKEN = [
    ("unbalanced", 1, "def f():\n    ### BEGIN SOLUTION\n    return 1", "is never closed"),
    ("end without begin", 1, "def f():\n    return 1\n    ### END SOLUTION", "without a matching"),
    ("nested", 1, "### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "nested"),
    ("hidden tests unbalanced", 2, "### BEGIN HIDDEN TESTS\nassert True", "is never closed"),
    (
        "hidden tests in an answer cell",
        1,
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS",
        "not an nbgrader graded code cell",
    ),
]


@pytest.mark.parametrize("what, index, source, phrase", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_markers_are_refused_naming_notebook_and_cell(what, index, source, phrase):
    nb = toy_source()
    nb.cells[index].source = source
    with pytest.raises(MarkerError) as info:
        release_notebook(nb, "toy.ipynb")
    message = str(info.value)
    gid = nb.cells[index].metadata["nbgrader"]["grade_id"]
    assert f"toy.ipynb, cell {index + 1}" in message and repr(gid) in message
    assert phrase in message


def test_solution_markers_outside_a_solution_cell_and_bad_metadata_are_refused():
    nb = toy_source()
    nb.cells[2].source = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"
    with pytest.raises(MarkerError, match="cell 3.*not an nbgrader solution cell"):
        validate_source(nb, "toy.ipynb")
    nb = toy_source()
    nb.cells[2].metadata["nbgrader"]["grade_id"] = "square"
    with pytest.raises(MarkerError, match="grade_id 'square' is also used by cell 2"):
        validate_source(nb, "toy.ipynb")
    nb = toy_source()
    del nb.cells[2].metadata["nbgrader"]["points"]
    with pytest.raises(MarkerError, match="needs non-negative points"):
        validate_source(nb, "toy.ipynb")


def test_release_command_writes_nothing_on_error_and_reports_it(tmp_path, capsys):
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    nbformat.write(toy_source(), source_dir / "A_good.ipynb")
    broken = toy_source()
    broken.cells[1].source = "### BEGIN SOLUTION\nx = 1"
    nbformat.write(broken, source_dir / "B_broken.ipynb")
    assert main(["release", str(source_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "B_broken.ipynb, cell 2" in err and "never closed" in err
    assert not (tmp_path / "out").exists()
    assert main(["release", str(source_dir), str(source_dir)]) == 2
    assert "refusing to release into the source directory" in capsys.readouterr().err


# ----------------------------------------------------------------------- merging, finding


def test_merge_restores_deleted_and_edited_cells_and_keeps_added_ones():
    source = toy_source()
    submission = release_notebook(source, "toy")
    submission.cells[1].source = "def square(x):\n    return x ** 2"
    submission.cells[2].source = "pass  # the student removed the visible test"
    helper = new_code_cell("HELPER = 1", id="mine")
    helper.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "forged",
        "points": 100,
        "locked": False,
        "solution": False,
        "schema_version": 3,
    }
    submission.cells.insert(2, helper)
    del submission.cells[4]  # the written answer cell
    merged, notes = merge_submission(source, submission)
    sources = [c.source for c in merged.cells]
    assert sources[1] == "def square(x):\n    return x ** 2"
    assert sources[2] == "HELPER = 1" and "nbgrader" not in merged.cells[2].metadata
    assert sources[3] == source.cells[2].source  # with its hidden tests
    assert sources[4] == TEXT_STUB
    assert any("'test_square' was edited" in n for n in notes)
    assert any("answer cell 'why' is missing" in n for n in notes)


def test_find_source_by_file_name_then_release_cells_never_by_metadata(tmp_path):
    nb = nbformat.read(SOURCES["A1_kl_divergence"], as_version=4)
    nb.metadata["vae_edu"]["assignment"] = "A2_elbo_reparameterization"  # ignored
    assert find_source(tmp_path / "whatever.ipynb", nb) == SOURCES["A1_kl_divergence"]
    assert find_source(tmp_path / "alice_A2.ipynb", None) == SOURCES["A2_elbo_reparameterization"]
    with pytest.raises(GradingError, match="pass --source"):
        find_source(tmp_path / "homework.ipynb", None)
    assert (
        find_source(tmp_path / "x.ipynb", None, SOURCES["A1_kl_divergence"])
        == SOURCES["A1_kl_divergence"]
    )


def test_an_unreadable_submission_scores_zero_without_crashing(tmp_path):
    bad = tmp_path / "A1_kl_divergence.ipynb"
    bad.write_text("{ this is not json")
    report = grade_submission(bad)
    assert report.score == 0 and report.max_score == points_of("A1_kl_divergence", manual=False)
    assert all(q.points == 0 for q in report.questions)
    assert "could not be read" in report.notes[0]


# ----------------------------------------------------------------------- misbehaving submissions


def misbehaving_source():
    return notebook(
        [
            answer("setup", "### BEGIN SOLUTION\nimport os\n### END SOLUTION"),
            answer(
                "raises", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
            ),
            graded_cell("test_raises", 1, "assert f() == 1"),
            answer("loops", "def g():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION"),
            graded_cell("test_loops", 1, "assert g() == 2"),
            answer(
                "deleted_test",
                "def h():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION",
            ),
            graded_cell("test_deleted_test", 1, "assert h() == 3"),
            answer(
                "deleted_answer",
                "def k():\n    ### BEGIN SOLUTION\n    return 4\n    ### END SOLUTION",
            ),
            graded_cell("test_deleted_answer", 1, "assert k() == 4"),
            answer("stub", "def m():\n    ### BEGIN SOLUTION\n    return 5\n    ### END SOLUTION"),
            graded_cell("test_stub", 1, "assert m() == 5"),
            answer("ok", "def n():\n    ### BEGIN SOLUTION\n    return 6\n    ### END SOLUTION"),
            graded_cell("test_ok", 1, "assert n() == 6, 'n() must be 6'"),
            answer("dies", "def die():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION"),
            graded_cell("test_dies", 1, "die()"),
            graded_cell("test_after_death", 1, "assert True"),
        ],
        name="misbehaving",
    )


def test_a_misbehaving_submission_loses_only_the_affected_questions(tmp_path):
    source = misbehaving_source()
    submission = release_notebook(source, "misbehaving")
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in submission.cells}
    by_id["setup"].source = "import os"
    by_id["raises"].source = "def f():\n    return 1 / 0"
    by_id["loops"].source = "def g():\n    while True:\n        pass"
    by_id["deleted_test"].source = "def h():\n    return 3"
    by_id["ok"].source = "def n():\n    return 6"
    by_id["dies"].source = "def die():\n    os._exit(1)"
    submission.cells = [
        c for c in submission.cells if c.id not in ("test_deleted_test", "deleted_answer")
    ]
    source_path, submission_path = tmp_path / "source.ipynb", tmp_path / "sub.ipynb"
    nbformat.write(source, source_path)
    nbformat.write(submission, submission_path)

    report = grade_submission(submission_path, source_path, timeout=5)
    results = {q.grade_id: q for q in report.questions}
    assert results["test_raises"].points == 0
    assert "ZeroDivisionError" in results["test_raises"].message
    assert results["test_loops"].points == 0 and results["test_loops"].status == "timeout"
    assert "did not finish within 5 s" in results["test_loops"].message
    # a deleted test cell scores zero even though the answer above it is right
    assert results["test_deleted_test"].points == 0
    assert results["test_deleted_test"].status == "deleted"
    assert "was deleted from your notebook" in results["test_deleted_test"].message
    assert results["test_deleted_answer"].points == 0
    assert "NotImplementedError" in results["test_deleted_answer"].message
    assert results["test_stub"].points == 0
    assert "not answered yet" in results["test_stub"].message
    assert results["test_ok"].points == 1 and results["test_ok"].status == "passed"
    assert results["test_dies"].points == 0 and "kernel died" in results["test_dies"].message
    assert results["test_after_death"].status == "not run"
    assert report.score == 1 and report.max_score == 8
    assert any("test cell 'test_deleted_test' was deleted" in n for n in report.notes)
    table = report.table()
    assert "test_loops" in table and "1 / 8" in table


# ----------------------------------------------------------------------- the real assignments


@pytest.fixture(scope="module")
def graded_assignments(tmp_path_factory):
    """Grades the instructor source and the student release of every assignment, in parallel
    (six processes: kernel start-up, JAX compilation and A3's training overlap)."""
    out = tmp_path_factory.mktemp("graded")
    release_directory(DEFAULT_SOURCE_DIR, out / "student")
    jobs = {}
    for name in ASSIGNMENTS:
        for version, path in (
            ("instructor", SOURCES[name]),
            ("student", out / "student" / f"{name}.ipynb"),
        ):
            report = out / f"{name}-{version}.json"
            command = [
                sys.executable,
                "-m",
                "vae_edu.assignments",
                "grade",
                str(path),
                "--json",
                str(report),
            ]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            jobs[name, version] = (process, report)
    results = {}
    for key, (process, report) in jobs.items():
        stdout, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr
        results[key] = (stdout, json.loads(report.read_text()))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_instructor_version_scores_full_marks(graded_assignments, name):
    stdout, report = graded_assignments[name, "instructor"]
    assert report["max_score"] >= 8
    assert report["score"] == report["max_score"], stdout
    assert report["max_score"] == points_of(name, manual=False)
    assert report["manual_max_score"] == points_of(name, manual=True)
    statuses = {q["status"] for q in report["questions"]}
    assert statuses == {"passed", "needs manual grading"}
    # the only note allowed: where the grader cannot switch to an unprivileged user
    assert [n for n in report["notes"] if not n.startswith(USER_NOTE)] == []
    assert f"{report['score']:g} / {report['max_score']:g}" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_released_student_version_runs_and_scores_zero(graded_assignments, name):
    stdout, report = graded_assignments[name, "student"]
    assert report["score"] == 0 and report["max_score"] >= 8
    for question in report["questions"]:
        assert question["points"] == 0
        if question["kind"] == "manual":
            assert question["status"] == "unanswered"
        else:
            assert question["status"] == "failed"
            message = question["message"]
            assert "NotImplementedError" in message or "is not defined" in message, question
    assert "Feedback:" in stdout and "NotImplementedError" in stdout


# ------------------------------------------------------------ issue 16: grade CLI usage errors
@pytest.fixture
def no_grading(monkeypatch):
    """Fails the test if grading starts: these errors must come first."""
    import vae_edu.assignments.__main__ as cli

    monkeypatch.setattr(cli, "grade_submission", lambda *a, **k: pytest.fail("graded"))


def test_grade_missing_submission_is_a_usage_error(tmp_path, capsys, no_grading):
    missing = tmp_path / "A1_missing.ipynb"
    assert main(["grade", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: the submission {missing} does not exist\n"
    # A folder is a class of submissions (one folder per student, or a flat folder).
    assert main(["grade", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: no .ipynb submissions in {tmp_path}\n"


def test_grade_refuses_unwritable_outputs_before_grading(tmp_path, capsys, no_grading):
    submission = tmp_path / "A1.ipynb"
    submission.write_text("{}")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for option in ("--json", "--executed"):
        target = a_file / "out.json"
        assert main(["grade", str(submission), option, str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write to the folder of {option} {a_file}"), err
        assert main(["grade", str(submission), option, str(tmp_path)]) == 2
        assert f"{option} {tmp_path} is a directory" in capsys.readouterr().err


def test_grade_creates_missing_output_folders(tmp_path, capsys, monkeypatch):
    import vae_edu.assignments.__main__ as cli
    from vae_edu.assignments import GradeReport, QuestionResult

    report = GradeReport("A1", "A1.ipynb", "src.ipynb", [QuestionResult("q1", "tests", 2, 2, "ok")])
    monkeypatch.setattr(cli, "grade_submission", lambda *a, **k: report)
    submission = tmp_path / "A1.ipynb"
    submission.write_text("{}")
    scores = tmp_path / "new" / "deeper" / "scores.json"
    assert main(["grade", str(submission), "--json", str(scores)]) == 0
    assert "autograded total" in capsys.readouterr().out
    assert json.loads(scores.read_text())["score"] == 2
    assert (tmp_path / "new" / "deeper").is_dir()


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_points_in_the_text_are_the_metadata_points(name):
    """The title table and every "(N points)" heading agree with the cells' nbgrader points."""
    nb = nbformat.read(SOURCES[name], as_version=4)
    graded = [c.metadata["nbgrader"]["points"] for c in nb.cells if c.metadata["nbgrader"]["grade"]]
    table = nb.cells[0].source
    rows = re.findall(r"^\| \d+ \|.*\| ([\d +]+) \|$", table, flags=re.M)
    from_table = [int(p) for row in rows for p in row.split("+")]
    assert from_table == graded, (from_table, graded)
    headings = [
        (int(m.group(1)), sum(int(p) for p in m.group(2).split("+")))
        for c in nb.cells
        if c.cell_type == "markdown"
        for m in re.finditer(r"^## Question (\d+):.*\(([\d +]+) points?", c.source, flags=re.M)
    ]
    per_question = [sum(int(p) for p in row.split("+")) for row in rows]
    for number, points in headings:
        assert per_question[number - 1] == points, (number, points)


def test_assignments_are_weighted_by_difficulty():
    totals = []
    for name in ASSIGNMENTS:
        nb = nbformat.read(SOURCES[name], as_version=4)
        totals.append(sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells))
    assert totals == sorted(totals) and len(set(totals)) == len(totals), totals


def test_the_a3_target_is_one_parameter():
    """The notebook states the target of vae_edu.mlp_vae.BUDGET and does not hard-code it."""
    from vae_edu.mlp_vae import BUDGET

    nb = nbformat.read(SOURCES["A3_train_and_explore"], as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    target = f"{BUDGET.target_elbo:g}"
    assert f"at least {target}" in text and f"**{target} nats per image**" in text
    assert target not in code and "BUDGET.target_elbo" in code
    assert f"{BUDGET.num_steps:,} Adam steps" in text


def test_a_failing_visible_test_shows_the_value_and_the_named_diagnosis():
    """A2 Q3's visible test, as released, run on a loss with the KL weighted by 1/2."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    source = nbformat.read(SOURCES["A2_elbo_reparameterization"], as_version=4)
    cell = next(c for c in source.cells if c.id == "test_negative_elbo")

    def negative_elbo(x, logits, mean, log_var):  # beta = 0.5
        log_px = jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)
        kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1 - log_var, -1)
        return jnp.mean(-log_px + 0.5 * kl)

    namespace = {"np": np, "jnp": jnp, "jax": jax, "negative_elbo": negative_elbo}
    with pytest.raises(AssertionError) as failure:
        exec(released_text(cell), namespace)  # noqa: S102 - the instructor's visible test
    message = str(failure.value)
    assert "yours is 3.0794" in message and "beta = 0.5" in message, message


def test_a1_q2_rationale_for_the_log_variance_difference_holds_in_float32():
    """A1 Q2 says why to use exp(l_q - l_p): the naive ratio fails where one variance alone
    leaves float32 (inf, or 0 after XLA's flush of subnormals), the difference does not (at
    +-30 both forms agree); the hidden check's pair (-88.5, -87.5) tells them apart."""
    import math

    import jax.numpy as jnp

    from vae_edu.grading import check_kl_two_gaussians

    text = "".join(c.source for c in nbformat.read(SOURCES["A1_kl_divergence"], 4).cells)
    assert "88.7" in text and "-87.3" in text and r"\ell_q = -88.5, \ell_p = -87.5" in text
    for lq, lp in [(-88.5, -87.5), (89.0, 88.0)]:
        stable = float(jnp.exp(jnp.float32(lq) - jnp.float32(lp)))
        naive = float(jnp.exp(jnp.float32(lq)) / jnp.exp(jnp.float32(lp)))
        assert stable == pytest.approx(math.exp(lq - lp), rel=1e-6)
        assert not math.isfinite(naive), (lq, lp, naive)
    for lq, lp in [(-30.0, 30.0), (30.0, -30.0), (-30.0, -29.0)]:
        naive = float(jnp.exp(jnp.float32(lq)) / jnp.exp(jnp.float32(lp)))
        assert naive == pytest.approx(math.exp(lq - lp), rel=1e-5)

    # The hint is tested: the naive ratio fails the hidden check, the difference passes.
    def naive_kl(mq, lq, mp, lp):
        ratio = jnp.exp(lq) / jnp.exp(lp)
        return 0.5 * jnp.sum(ratio + (mq - mp) ** 2 / jnp.exp(lp) - 1.0 - jnp.log(ratio), -1)

    def stable_kl(mq, lq, mp, lp):
        r = lq - lp
        return 0.5 * jnp.sum(jnp.exp(r) + (mq - mp) ** 2 * jnp.exp(-lp) - 1.0 - r, -1)

    failed = check_kl_two_gaussians(naive_kl)
    assert not failed.passed and "(-88.5, -87.5)" in failed.feedback
    assert check_kl_two_gaussians(stable_kl).passed


def test_grade_refuses_an_empty_json_name(tmp_path, capsys, no_grading):
    submission = tmp_path / "A1_kl_divergence.ipynb"
    submission.write_text("{}")
    assert main(["grade", str(submission), "--json", ""]) == 2
    assert capsys.readouterr().err == "error: --json needs a file name\n"


# ------------------------------------------------- lessons and assignments agree (issue 11)


def _stub_functions(name: str):
    """(function name, ast.FunctionDef) of every function the assignment asks for."""
    source = nbformat.read(SOURCES[name], as_version=4)
    for cell in source.cells:
        if cell.cell_type == "code" and cell.metadata["nbgrader"]["solution"]:
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    yield node.name, node


def _package_twins():
    """(assignment, stub, package function) for every function an assignment asks for
    that the package implements under the same name (its reference, in the policy)."""
    for name in ASSIGNMENTS:
        rules = FORBIDDEN.get(name)
        references = {}  # the first reference of a name is the question's own (the policy
        # lists the lessons' references for the same computation after it)
        for target in rules.functions if rules else ():
            references.setdefault(target.rpartition(":")[2], target)
        for fname, node in _stub_functions(name):
            if fname in references:
                module, _, attr = references[fname].rpartition(":")
                yield name, node, getattr(importlib.import_module(module), attr)


TWINS = list(_package_twins())


def test_the_assignments_ask_for_functions_the_lessons_implement():
    # kl_monte_carlo (A1), reparameterize and bernoulli_log_likelihood (A2), negative_elbo and
    # train_step (A3): without twins the two tests below would test nothing
    assert {node.name for _, node, _ in TWINS} >= {
        "kl_monte_carlo",
        "reparameterize",
        "bernoulli_log_likelihood",
        "negative_elbo",
        "train_step",
    }


@pytest.mark.parametrize(
    ("name", "node", "reference"), TWINS, ids=[f"{n[:2]}-{f.name}" for n, f, _ in TWINS]
)
def test_a_stub_has_the_signature_of_the_package_function(name, node, reference):
    """Parameter names and order as in the package; what the package adds after them is
    optional (e.g. reparameterize's num_samples: without it, no sample axis, as asked)."""
    stub = [a.arg for a in node.args.args]
    params = list(inspect.signature(reference).parameters.values())
    assert [p.name for p in params[: len(stub)]] == stub, (name, node.name)
    extra = params[len(stub) :]
    assert all(p.default is not inspect.Parameter.empty for p in extra), (name, node.name)


_LOG_VARIANCE = re.compile(r"log[- ]variance|log sigma\^2|log \\sigma\^2", re.I)
_LOG_STD = re.compile(r"log[- ]standard deviation|log sigma(?!\^2)", re.I)
_GAUSSIAN = re.compile(r"N\(([^,()]+),\s*([^()]*(?:\([^()]*\))?[^()]*)\)")


def _gaussian_notation_problems(text: str) -> list[str]:
    """Every N(a, b) must give a variance (b with ^2, diag(...), I or exp(log_var)), never a
    standard deviation, as the package writes N(mu, diag sigma^2)."""
    return [
        match.group(0)
        for match in _GAUSSIAN.finditer(text)
        if not re.search(r"\^2|diag|\bI\b|exp\(log_var|var", match.group(2))
    ]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_stub_docstrings_use_the_lessons_notation_for_gaussians(name):
    stubs = list(_stub_functions(name))
    for fname, node in stubs:
        doc = ast.get_docstring(node) or ""
        if any(a.arg.startswith("log_var") for a in node.args.args):
            # the package's log_var is a log-variance: the stub says so, never log sigma
            assert _LOG_VARIANCE.search(doc), (name, fname, doc)
            assert not _LOG_STD.search(doc), (name, fname, doc)
        assert _gaussian_notation_problems(doc) == [], (name, fname, doc)
    for _, node, reference in TWINS:
        if any(a.arg.startswith("log_var") for a in node.args.args):
            assert _LOG_VARIANCE.search(inspect.getdoc(reference)), reference


def test_the_gaussian_notation_check_can_fail():
    assert _gaussian_notation_problems("eps ~ N(0, sigma)") == ["N(0, sigma)"]
    assert _gaussian_notation_problems("q = N(mu, diag exp(log_var)), p = N(0, I)") == []
    assert _LOG_STD.search("log_var: the log standard deviation")
    assert not _LOG_STD.search("log_var: log-variances log sigma^2")


def test_the_checks_are_loaded_before_the_students_kernel_starts(tmp_path, monkeypatch):
    # a cell that rewrites a check module must not reach this submission's own grading
    from vae_edu.assignments import grade

    grade._checks.cache_clear()
    loaded = []

    def run_notebook(merged, kernel, assignment):
        loaded.append(grade._checks.cache_info().currsize)
        return {}

    monkeypatch.setattr(grade, "_run_notebook", run_notebook)
    name = ASSIGNMENTS[0]
    released = tmp_path / f"{name}.ipynb"
    nbformat.write(release_notebook(nbformat.read(SOURCES[name], as_version=4)), released)
    grade_submission(released, DEFAULT_SOURCE_DIR)
    assert loaded == [1]
