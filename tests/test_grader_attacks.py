"""Adversarial submissions, built from the release, against ``python -m vae_edu.assignments grade``.

Every attack of issue 11 is one submission here. To stay within the CI budget they are
graded in a few command-line batches that run in parallel (module fixture), and each test
reads its submission's entry of the JSON report.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR, _sandbox, release_directory
from vae_edu.assignments.__main__ import main

A1 = "A1_kl_divergence"
A2 = "A2_elbo_reparameterization"
A3 = "A3_train_and_explore"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
REPO = Path(__file__).resolve().parents[1]


def solution(name: str, gid: str) -> str:
    """The instructor's answer for one cell, without the markers (a correct student answer)."""
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    cell = next(c for c in source.cells if c.id == gid)
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


SIGN_FLIPPED_KL = (
    "def kl_standard_normal(mean, log_var):\n"
    "    return -0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)\n"
)


def build(release: Path, name: str, answers: dict, *, added=(), edit=None):
    nb = nbformat.read(release / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = answers[cell.id]
    for after, source in added:
        index = next(i for i, c in enumerate(nb.cells) if c.id == after)
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    if edit is not None:
        edit(nb)
    return nb


def _run(args, cwd):
    env = dict(os.environ, INSTRUCTOR_LMS_TOKEN="secret-token-123")
    env["PYTHONPATH"] = str(REPO)  # the grader of this checkout
    return subprocess.Popen(
        [sys.executable, "-m", "vae_edu.assignments", "grade", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    # Outside the grader's working folder (which the read-only view protects), so the
    # attack can report what it saw: the scrubbed environment is what is tested here.
    leak = tmp_path_factory.mktemp("outside") / "leaked.txt"
    (root / "grades").mkdir()
    (root / "grades" / "alice_A1.json").write_text('{"score": 3}')

    def malformed(nb):
        nb.cells[0].metadata["nbgrader"] = "a string"
        nb.cells[1].metadata["nbgrader"] = 5
        answer = next(c for c in nb.cells if c.id == "kl_standard_normal")
        answer.metadata["nbgrader"]["grade_id"] = ["kl_standard_normal"]
        answer.source = solution(A1, "kl_standard_normal")

    def student_timeout(nb):
        answer = next(c for c in nb.cells if c.id == "kl_standard_normal")
        answer.metadata["vae_edu"] = {"timeout": 100000}

    solved = {gid: solution(A1, gid) for gid in ("kl_standard_normal", "kl_two_gaussians")}
    solved |= {gid: solution(A1, gid) for gid in ("kl_monte_carlo", "asymmetry_numbers")}
    subs = {
        "custom_exc": (
            A1,
            {
                "kl_standard_normal": "get_ipython().set_custom_exc((BaseException,), "
                "lambda *a, **k: None)\n" + STUB
            },
            {},
        ),
        "transformers": (
            A1,
            {
                "kl_standard_normal": "get_ipython().input_transformers_post.append("
                "lambda lines: ['pass\\n'])\n" + STUB
            },
            {},
        ),
        "patched": (
            A1,
            {
                "kl_standard_normal": "import math\nimport numpy\nimport jax.numpy\n"
                "import vae_edu.grading as g\n"
                "class R:\n    passed = True\n    feedback = ''\n"
                "for n in dir(g):\n    if n.startswith('check_'):\n"
                "        setattr(g, n, lambda *a, **k: R())\n"
                "numpy.allclose = numpy.isclose = math.isclose = jax.numpy.allclose = "
                "lambda *a, **k: True\n" + SIGN_FLIPPED_KL,
                "kl_two_gaussians": "def kl_two_gaussians(a, b, c, d):\n"
                "    return jnp.zeros(jnp.shape(a)[:-1])",
            },
            {},
        ),
        "alias": (
            A1,
            {
                "kl_standard_normal": "from vae_edu.kl import kl_diag_gaussians as "
                "kl_standard_normal",
                "kl_two_gaussians": "import vae_edu.kl as K\n\n\n"
                "def kl_two_gaussians(a, b, c, d):\n    return K.kl_diag_gaussians(a, b, c, d)",
                "kl_monte_carlo": "from vae_edu import kl\n\nkl_monte_carlo = kl.kl_monte_carlo",
            },
            {},
        ),
        "dynamic": (
            A1,
            {
                "kl_standard_normal": "kl_standard_normal = getattr(__import__('vae_edu.' + "
                "'kl', fromlist=['x']), 'kl_diag_' + 'gaussians')",
                "kl_two_gaussians": "exec('from vae_edu.kl import kl_diag_gaussians as "
                "kl_two_gaussians')",
            },
            {},
        ),
        "smuggled": (
            A1,
            {
                "kl_standard_normal": solution(A1, "kl_standard_normal")
                + "\nfrom vae_edu.kl import kl_diag_gaussians as _k",
                "kl_two_gaussians": "def kl_two_gaussians(a, b, c, d):\n    return _k(a, b, c, d)",
            },
            {},
        ),
        "environment": (
            A1,
            {"kl_standard_normal": solution(A1, "kl_standard_normal")},
            {
                "added": [
                    (
                        "kl_standard_normal",
                        "import os, pathlib\n"
                        "if 'INSTRUCTOR_LMS_TOKEN' in os.environ:  # then Question 1 fails\n"
                        "    kl_standard_normal = None\n"
                        "pathlib.Path('grades').mkdir(exist_ok=True)\n"
                        "pathlib.Path('grades/alice_A1.json').write_text('{\"score\": 10}')\n"
                        "try:  # an isolated kernel (root on Linux) cannot write outside\n"
                        f"    pathlib.Path({str(leak)!r}).write_text("
                        "os.environ.get('INSTRUCTOR_LMS_TOKEN', 'absent'))\n"
                        "except OSError:\n"
                        "    pass",
                    )
                ]
            },
        ),
        "hang": (
            A1,
            {
                "kl_standard_normal": "import time\ntime.sleep(60)\n"
                + solution(A1, "kl_standard_normal"),
                "kl_two_gaussians": solution(A1, "kl_two_gaussians"),
                "asymmetry_numbers": "import signal, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
            },
            {"edit": student_timeout},
        ),
        "malformed": (A1, {}, {"edit": malformed}),
        "chained_sign": (A1, dict(solved, kl_standard_normal=SIGN_FLIPPED_KL), {}),
        "chained_q2": (
            A1,
            dict(
                solved,
                kl_two_gaussians="def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
                "    return -0.5 * jnp.sum(jnp.exp(log_var_q - log_var_p) + (mean_q - mean_p) ** 2"
                " * jnp.exp(-log_var_p) - 1.0 - log_var_q + log_var_p, axis=-1)\n",
            ),
            {},
        ),
        "chained_syntax": (
            A1,
            dict(solved, kl_two_gaussians="def kl_two_gaussians(mean_q, log_var_q:\n    pass"),
            {},
        ),
        "long_message": (
            A1,
            {
                "kl_standard_normal": "def kl_standard_normal(mean, log_var):\n"
                "    raise ValueError('x' * 5000)\n\nprint('y' * 3_000_000)\n"
                "raise ValueError('z' * 5000)"
            },
            {},
        ),
        "a2_reference": (
            A2,
            {
                "reparameterize": "from vae_edu.elbo import reparameterize",
                "bernoulli_log_likelihood": "from vae_edu.elbo import bernoulli_log_likelihood",
                "elbo_estimate": "def elbo_estimate(key, model, x, mean, log_var, num_samples):\n"
                "    return model.exact_elbo(x, mean, jnp.diag(jnp.exp(log_var)))",
            },
            {},
        ),
    }
    # A3: a shipped model with a made-up result in place of training; kernel hooks; one
    # mistake in the loss (beta = 0.5) must not cost the training question.
    subs["a3_pretrained"] = (
        A3,
        {
            "negative_elbo": "from vae_edu import pretrained\n\n"
            "shipped = pretrained.load('latent2')\n"
            "negative_elbo = mlp_vae.negative_elbo  # the reference, via the given module\n",
            "train_step": "def train_step(loss_fn, params, opt_state, key, x):\n"
            "    return params, opt_state, jnp.float32(140.0)\n\n\n"
            "test_elbo = -120.0  # made up\nlosses = [140.0] * 1000\n",
        },
        {},
    )
    subs["a3_custom_exc"] = (
        A3,
        {
            "negative_elbo": "get_ipython().set_custom_exc((BaseException,), "
            "lambda *a, **k: None)\n" + STUB,
            "train_step": "import vae_edu.grading as g\n"
            "class R:\n    passed = True\n    feedback = ''\n"
            "g.check_a3_training = g.check_a3_loss = lambda *a, **k: R()\n" + STUB,
        },
        {},
    )
    subs["a3_chained"] = (
        A3,
        {
            "negative_elbo": solution(A3, "negative_elbo").replace(
                "return jnp.mean(kl - log_likelihood)", "return jnp.mean(0.5 * kl - log_likelihood)"
            ),
            "train_step": solution(A3, "train_step"),
            "class_means": solution(A3, "class_means"),
        },
        {},
    )
    paths = {}
    for label, (name, answers, extra) in subs.items():
        nb = build(release, name, answers, added=extra.get("added", ()), edit=extra.get("edit"))
        path = root / "subs" / label / f"{name}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        paths[label] = path
    renamed = root / "subs" / "renamed" / f"{A2}.ipynb"
    renamed.parent.mkdir()
    renamed.write_bytes((DEFAULT_SOURCE_DIR / f"{A1}.ipynb").read_bytes())
    paths["renamed"] = renamed

    # poisoning: a submission rewrites the instructor source it is graded against
    poisoned_source = root / "source"
    poisoned_source.mkdir()
    for p in DEFAULT_SOURCE_DIR.glob("*.ipynb"):
        (poisoned_source / p.name).write_bytes(p.read_bytes())
    poisoner = build(
        release,
        A1,
        {},
        added=[
            (
                "kl_standard_normal",
                f"import pathlib\np = pathlib.Path({str(poisoned_source / (A1 + '.ipynb'))!r})\n"
                "p.write_text(p.read_text().replace('check_kl_diag', 'check_kl_diag  '))",
            )
        ],
    )
    (root / "subs" / "poisoner").mkdir()
    nbformat.write(poisoner, root / "subs" / "poisoner" / f"{A1}.ipynb")
    blank = root / "subs" / "blank" / f"{A1}.ipynb"
    blank.parent.mkdir()
    blank.write_bytes((release / f"{A1}.ipynb").read_bytes())

    labels = [label for label in paths if not label.startswith("a3_")]
    batches = [labels[0::3], labels[1::3], labels[2::3]]
    batches[0].append("a3_chained")  # the long one (a full training run re-run by the grader)
    batches[1].append("a3_pretrained")
    batches[2].append("a3_custom_exc")
    jobs = []
    for i, batch in enumerate(batches):
        report = root / f"batch{i}.json"
        args = [paths[label] for label in batch] + ["--json", report, "--timeout", "10"]
        jobs.append((batch, report, _run(args, root)))
    poison_job = _run(
        [root / "subs" / "poisoner" / f"{A1}.ipynb", blank, "--source", poisoned_source], root
    )
    results = {}
    for batch, report, process in jobs:
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
        for label, entry in zip(batch, json.loads(report.read_text()), strict=True):
            results[label] = entry
        results.setdefault("stdout", "")
        results["stdout"] += stdout
    stdout, stderr = poison_job.communicate(timeout=900)
    results["poison"] = (poison_job.returncode, stdout, stderr)
    results["poisoned_source_intact"] = (poisoned_source / f"{A1}.ipynb").read_bytes() == (
        DEFAULT_SOURCE_DIR / f"{A1}.ipynb"
    ).read_bytes()
    results["leak"] = leak.read_text() if leak.exists() else None
    results["alice"] = (root / "grades" / "alice_A1.json").read_text()
    return results


def by_id(report):
    return {q["grade_id"]: q for q in report["questions"]}


# ------------------------------------------------ batches of attacks (the review files use these)


def write_submissions(root: Path, notebooks: dict) -> list[str]:
    """Each notebook to ``root/<label>/<its assignment>.ipynb`` (JSON with ASCII escapes,
    so a lone surrogate is written as ``\\ud800``, which JSON allows); the paths."""
    paths = []
    for label, (name, nb) in notebooks.items():
        path = root / label / f"{name}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(nb, ensure_ascii=True), encoding="utf-8")
        paths.append(str(path))
    return paths


def grade(root: Path, *arguments: str):
    """One call of the grader's command line, as the test suite runs it (restricted PATH)."""
    return subprocess.run(
        [sys.executable, "-m", "vae_edu.assignments", "grade", *arguments, "--timeout", "300"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=900,
    )


def grade_batch(root: Path, subs: dict) -> dict:
    """Builds every submission (label -> (assignment, answers) or (assignment, answers,
    added cells), as :func:`build` takes them) from a fresh release under ``root``, grades
    them all in ONE grader call, and returns label -> its report entry."""
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    notebooks = {}
    for label, (name, answers, *added) in subs.items():
        cells = added[0] if added else ()
        notebooks[f"subs/{label}"] = (name, build(release, name, answers, added=cells))
    report = root / "report.json"
    result = grade(root, *write_submissions(root, notebooks), "--json", str(report))
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads(report.read_text())
    entries = entries if isinstance(entries, list) else [entries]
    return dict(zip(subs, entries, strict=True))


@pytest.mark.parametrize("label", ["custom_exc", "transformers"])
def test_kernel_hooks_cannot_pass_hidden_tests(attacks, label):
    report = attacks[label]
    assert report["score"] == 0, report
    q = by_id(report)["test_kl_standard_normal"]
    assert q["status"] == "failed"
    assert "NotImplementedError" in q["message"] or "is not defined" in q["message"]


def test_patched_checks_and_allclose_do_not_pass_wrong_answers(attacks):
    q = by_id(attacks["patched"])
    assert q["test_kl_standard_normal"]["points"] == 0
    assert "check the sign" in q["test_kl_standard_normal"]["message"]
    assert q["test_kl_two_gaussians"]["points"] == 0
    assert attacks["patched"]["score"] == 0


def test_the_reference_as_the_answer_scores_zero_with_a_message(attacks):
    q = by_id(attacks["alias"])
    for gid in ("test_kl_standard_normal", "test_kl_two_gaussians", "test_kl_monte_carlo"):
        assert q[gid]["points"] == 0 and q[gid]["status"] == "refused", q[gid]
        assert "package's own implementation" in q[gid]["message"]
    assert attacks["alias"]["score"] == 0


def test_dynamic_imports_and_exec_score_zero(attacks):
    report = attacks["dynamic"]
    assert report["score"] == 0
    q = by_id(report)
    assert q["test_kl_standard_normal"]["status"] == "refused"
    assert "dynamic imports and generated code" in q["test_kl_standard_normal"]["message"]


def test_a_reference_smuggled_through_another_answer_is_caught_at_run_time(attacks):
    q = by_id(attacks["smuggled"])
    assert q["test_kl_standard_normal"]["status"] == "refused"  # the import (static)
    assert q["test_kl_two_gaussians"]["status"] == "refused"  # the call (tripwire)
    assert "vae_edu.kl:kl_diag_gaussians" in q["test_kl_two_gaussians"]["message"]


def test_student_code_sees_a_scrubbed_environment_and_a_throwaway_directory(attacks):
    # INSTRUCTOR_LMS_TOKEN was not passed on: Question 1 would fail, and the file written
    # outside says so where the kernel can write there (not isolated)
    assert by_id(attacks["environment"])["test_kl_standard_normal"]["points"] == 2
    isolated = _sandbox.isolation()[0] is not None
    assert attacks["leak"] == (None if isolated else "absent")
    assert attacks["alice"] == '{"score": 3}'  # relative paths land in the throw-away dir


def test_student_set_timeouts_are_ignored_and_interrupt_ignoring_cells_are_killed(attacks):
    report = attacks["hang"]
    q = by_id(report)
    assert q["test_kl_standard_normal"]["points"] == 0
    assert "did not finish within 10 s" in q["test_kl_standard_normal"]["message"]
    assert q["test_kl_two_gaussians"]["points"] == 3  # one mistake costs once
    assert q["test_asymmetry_numbers"]["points"] == 0
    assert "killed" in q["test_asymmetry_numbers"]["message"]
    assert report["max_score"] == 9


def test_a_file_of_another_assignment_is_refused(attacks):
    report = attacks["renamed"]
    assert report["assignment"] == A2 and report["score"] == 0
    assert any(f"has the cells of {A1}" in note for note in report["notes"])


def test_malformed_metadata_scores_zero_without_crashing(attacks):
    report = attacks["malformed"]
    assert report["score"] == 0 and report["max_score"] == 9


def test_one_mistake_costs_once(attacks):
    q = by_id(attacks["chained_sign"])
    assert q["test_kl_standard_normal"]["points"] == 0
    assert [q[g]["points"] for g in ("test_kl_two_gaussians", "test_kl_monte_carlo")] == [3, 3]
    assert q["test_asymmetry_numbers"]["points"] == 1
    q = by_id(attacks["chained_syntax"])
    assert q["test_kl_two_gaussians"]["points"] == 0
    assert q["test_kl_standard_normal"]["points"] == 2 and q["test_kl_monte_carlo"]["points"] == 3
    # A1 Q4 with a wrong Q2 (KL with the wrong sign) used correctly: Q4 still scores
    q = by_id(attacks["chained_q2"])
    assert q["test_kl_two_gaussians"]["points"] == 0
    assert q["test_asymmetry_numbers"]["points"] == 1, q["test_asymmetry_numbers"]
    # A3: a wrong loss costs Question 1 only; training is re-run with the grader's loss
    q = by_id(attacks["a3_chained"])
    assert q["test_negative_elbo"]["points"] == 0
    assert "beta = 0.5" in q["test_negative_elbo"]["message"]
    assert q["test_train_step"]["points"] == q["test_train_step"]["max_points"], q[
        "test_train_step"
    ]
    assert q["test_class_means"]["status"] == "passed"


def test_a3_a_shipped_model_and_a_made_up_history_score_zero(attacks):
    report = attacks["a3_pretrained"]
    q = by_id(report)
    assert q["test_negative_elbo"]["points"] == 0 and q["test_train_step"]["points"] == 0
    assert "unchanged" in q["test_train_step"]["message"], q["test_train_step"]
    # the reference loss reached through the module the assignment imports: the tripwire
    assert q["test_negative_elbo"]["status"] == "refused", q["test_negative_elbo"]
    assert "vae_edu.mlp_vae:negative_elbo" in q["test_negative_elbo"]["message"]


def test_a3_kernel_hooks_and_patched_checks_do_not_help(attacks):
    report = attacks["a3_custom_exc"]
    q = by_id(report)
    for gid in ("test_negative_elbo", "test_train_step"):
        assert q[gid]["points"] == 0 and q[gid]["status"] in ("failed", "not run"), q[gid]


def test_messages_and_outputs_are_cut(attacks):
    q = by_id(attacks["long_message"])
    message = q["test_kl_standard_normal"]["message"]
    assert q["test_kl_standard_normal"]["points"] == 0
    assert "ValueError" in message and len(message) <= 1000 and "[cut:" in message, message
    assert max(len(line) for line in attacks["stdout"].splitlines()) < 1200


def test_a2_reference_functions_and_exact_elbo_score_zero(attacks):
    q = by_id(attacks["a2_reference"])
    for gid in ("test_reparameterize", "test_bernoulli_log_likelihood", "test_elbo_estimate"):
        assert q[gid]["points"] == 0 and q[gid]["status"] == "refused", q[gid]
    assert "exact_elbo" in q["test_elbo_estimate"]["message"]


def _student_code_is_kept_from_writing() -> bool:
    """Whether this machine's grader can stop student code writing (another user, or a view)."""
    probe_out, probe_in = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    try:
        owner, _ = _sandbox.unprivileged_user()
        return owner is not None or _sandbox.readonly_view([probe_out], [probe_in])[0] is not None
    finally:
        shutil.rmtree(probe_out), shutil.rmtree(probe_in)


def test_a_submission_that_rewrites_the_sources_cannot_change_the_next_grade(attacks):
    code, stdout, stderr = attacks["poison"]
    if _student_code_is_kept_from_writing():
        # Root on Linux (CI): the write fails inside the read-only view (or as another user),
        # the sources stay intact, and the next submission is graded as if alone.
        assert code == 0, stderr
        assert attacks["poisoned_source_intact"]
        assert len(re.findall(r"autograded total\s+0 / 9", stdout)) == 2, stdout
    else:
        # Elsewhere the SHA-256 check stops the batch before the next submission runs.
        assert code == 2
        assert "changed since grading started" in stderr and "error:" in stderr
        assert re.search(r"autograded total\s+0 / 9", stdout)  # the poisoner's own report
        assert stdout.count("autograded total") == 1  # the next one was not graded


# ----------------------------------------------------------------------- bad command lines


@pytest.mark.parametrize("timeout", ["0", "-5", "x"])
def test_timeout_must_be_positive(timeout, capsys, tmp_path):
    sub = tmp_path / f"{A1}.ipynb"
    sub.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", str(sub), "--timeout", timeout])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_submission_and_unwritable_json_are_usage_errors(capsys, tmp_path):
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "error: the submission" in capsys.readouterr().err
    sub = tmp_path / f"{A1}.ipynb"
    sub.write_text("{}")
    # A missing folder is created (issue 17); a folder that cannot exist is refused.
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert main(["grade", str(sub), "--json", str(a_file / "x.json")]) == 2
    assert "error: cannot write" in capsys.readouterr().err


def test_the_read_only_view_protects_all_but_the_working_directory(tmp_path):
    protected, workdir = tmp_path / "protected", tmp_path / "protected" / "work"
    workdir.mkdir(parents=True)
    prefix, why_not = _sandbox.readonly_view([protected], [workdir])
    if prefix is None:
        assert why_not  # not Linux, not root, or no mount namespaces: said, not silent
        return
    script = 'touch "$1/ok"; touch "$2/denied" 2>/dev/null; exit 0'
    subprocess.run([*prefix, "sh", "-c", script, "sh", workdir, protected], check=True)
    assert (workdir / "ok").exists() and not (protected / "denied").exists()


# ---------------------------------------------------------------------------------------
# The reference reached without its name (issue 11 items 2 and 6, review R11): the static
# scan, the kernel's listing of what an answer reaches (fingerprints), the tripwire's
# record, per-run secret inputs, and the grader's code for the other answers a check's
# function calls.

import importlib.util  # noqa: E402 - this section's own imports
import inspect  # noqa: E402

from vae_edu import kl as _kl  # noqa: E402
from vae_edu.assignments import _channel, _policy  # noqa: E402


def _pasted_kl_monte_carlo() -> str:
    """The reference's own source as an answer (what a student pasting it would hand in)."""
    return (
        "from collections.abc import Callable\n"
        "from vae_edu import _checks\n"
        "from vae_edu.estimate import Estimate, mean_and_standard_error\n\n\n"
        + inspect.getsource(_kl.kl_monte_carlo)
    )


REACH_SUBMISSIONS = {
    # a copy of vae_edu/kl.py, found through __file__ (nothing the static scan refuses)
    "copied_file": (
        A1,
        {
            "kl_standard_normal": "import pathlib, shutil\nimport vae_edu.kl\n"
            "shutil.copy(pathlib.Path(vae_edu.kl.__file__), 'mykl.py')\nimport mykl\n\n\n"
            "def kl_standard_normal(mean, log_var):\n"
            "    return mykl.kl_diag_gaussians(mean, log_var)\n",
            "kl_monte_carlo": _pasted_kl_monte_carlo(),
        },
    ),
    # the reference through functools.reduce(getattr, ...) (no getattr call to scan)
    "reduced": (
        A1,
        {
            "kl_two_gaussians": "import functools\nimport vae_edu.kl\n"
            "_f = functools.reduce(getattr, ['kl_diag_' + 'gaussians'], vae_edu.kl)\n\n\n"
            "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
            "    return _f(mean_q, log_var_q, mean_p, log_var_p)\n",
            # the tripwire's record deleted (to hide a call of the reference; the kernel's
            # copy of the package has no code for the reference to run, so the answer is
            # the student's own, but deleting the record is tampering all the same)
            "kl_monte_carlo": "import glob, os\n\n\n"
            "def kl_monte_carlo(samples_q, log_q, log_p):\n"
            "    for path in glob.glob('channel/trace-*') + glob.glob('../channel/trace-*'):\n"
            "        os.remove(path)\n"
            "    values = log_q(samples_q) - log_p(samples_q)\n"
            "    return values.mean(), values.std() / values.shape[0] ** 0.5\n",
        },
    ),
    # one mistake in reparameterize: A2's ELBO estimate calls it, and must not lose points
    "wrong_reparameterize": (
        A2,
        {
            **{
                gid: solution(A2, gid)
                for gid in ("bernoulli_log_likelihood", "negative_elbo", "elbo_estimate")
            },
            "reparameterize": "def reparameterize(key, mean, log_var):\n"
            "    return mean + jnp.exp(log_var) * jax.random.normal(key, mean.shape)\n",
        },
    ),
}


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    root = tmp_path_factory.mktemp("reach")
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    paths = []
    for label, (name, answers) in REACH_SUBMISSIONS.items():
        path = root / "subs" / label / f"{name}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(build(release, name, answers), path)
        paths.append(path)
    report = root / "reach.json"
    process = _run([*paths, "--json", report, "--timeout", "60"], root)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr
    return dict(zip(REACH_SUBMISSIONS, json.loads(report.read_text()), strict=True))


def test_a_copied_module_file_and_pasted_reference_source_score_zero(reach):
    q = by_id(reach["copied_file"])
    copied, pasted = q["test_kl_standard_normal"], q["test_kl_monte_carlo"]
    # the kernel's own kl.py has no KL in it: the copy raises, and says why
    assert copied["status"] == "failed" and copied["points"] == 0, copied
    assert "vae_edu.kl.kl_diag_gaussians computes what A1" in copied["message"], copied
    assert pasted["status"] == "refused" and pasted["points"] == 0, pasted
    # the pasted source names the estimator it calls, which A1 forbids too
    assert any(
        what in pasted["message"]
        for what in ("vae_edu.kl:kl_monte_carlo", "vae_edu.estimate:mean_and_standard_error")
    ), pasted


def test_the_reference_reached_through_an_unscanned_route_scores_zero(reach):
    q = by_id(reach["reduced"])["test_kl_two_gaussians"]
    assert q["status"] == "refused" and q["points"] == 0, q
    assert "vae_edu.kl:kl_diag_gaussians" in q["message"], q


def test_deleting_the_tripwires_record_is_tampering(reach):
    q = by_id(reach["reduced"])["test_kl_monte_carlo"]
    assert q["status"] == "refused" and q["points"] == 0, q
    assert "tampered" in q["message"], q


def test_a_wrong_reparameterize_costs_its_own_question_only(reach):
    report = reach["wrong_reparameterize"]
    q = by_id(report)
    assert q["test_reparameterize"]["points"] == 0
    assert "sigma^4" in q["test_reparameterize"]["message"]  # the mistake, named
    assert "scaled eps by sigma^2" in q["test_reparameterize"]["message"]
    for gid in ("test_bernoulli_log_likelihood", "test_negative_elbo", "test_elbo_estimate"):
        assert q[gid]["points"] == q[gid]["max_points"], q[gid]
    assert report["score"] == report["max_score"] - q["test_reparameterize"]["max_points"]


@pytest.mark.parametrize(
    ("source", "assignment", "kind"),
    [
        ("from vae_edu.elbo import kl_diag_gaussians as f", A1, "forbidden"),  # a re-export
        ("from vae_edu.kl import _kl_diag_gaussians", A1, "forbidden"),  # private
        ("import vae_edu.kl as K\nf = K._kl_diag_gaussians", A1, "forbidden"),
        ("import operator\nf = operator.methodcaller('exact_elbo', 1)", A2, "forbidden"),
        ("import vae_edu\nsetattr(vae_edu, '_grader_trace', None)", A1, "dynamic"),
        ("import vae_edu.kl\nvae_edu.kl.kl_monte_carlo = len", A1, "dynamic"),
        ("get_ipython().run_cell('x = 1')", A1, "dynamic"),
        ("import pickle", A1, "dynamic"),
        ("import marshal", A1, "dynamic"),
        ("from ctypes import CDLL", A1, "dynamic"),
        ("import gc", A1, "dynamic"),
        ("import inspect", A1, "dynamic"),
        ("f = len.__closure__", A1, "dynamic"),
        ("f = g.__wrapped__", A1, "dynamic"),
        ("f = g.__globals__", A1, "dynamic"),
        ("import sys\nf = sys._getframe(0).f_globals", A1, "dynamic"),
        ("from types import FunctionType", A1, "dynamic"),
        ("import operator\nf = operator.attrgetter('kl_' + 'mvn')", A1, "dynamic"),
        # magics: a %%capture or %timeit body is scanned like a cell; %run, %%writefile and
        # other magics count as generated code (their effect is not in the source)
        ("%%capture\nfrom vae_edu.kl import _kl_diag_gaussians as k\n", A1, "forbidden"),
        ("%timeit from vae_edu.kl import kl_monte_carlo\n", A1, "forbidden"),
        ("%run helpers.py\n", A1, "dynamic"),
        ("%%writefile helpers.py\nx = 1\n", A1, "dynamic"),
        ("%%bash\necho hi\n", A1, "dynamic"),
        # allowed: what the assignments hand out, data, the package's files, the checks
        ("%matplotlib inline\nimport numpy as np", A1, None),
        ("%%capture\nx = 1\n", A1, None),
        ("from vae_edu.elbo import diag_gaussian_log_density", A1, None),
        ("from vae_edu.kl import kl_diag_gaussians", A2, None),
        ("from vae_edu import data\nimages = data.load_mnist('train')", A3, None),
        ("import vae_edu.kl\npath = vae_edu.kl.__file__", A1, None),
        ("import vae_edu.grading as g\ng.check_kl_diag = len", A1, None),
        ("import numpy\nnumpy.allclose = len", A1, None),
    ],
)
def test_the_static_scan_names_what_reaches_the_reference(source, assignment, kind):
    findings = _policy.scan_source(source, assignment)
    if kind is None:
        assert findings == [], findings
    else:
        assert findings, source
        assert findings[0].dynamic == (kind == "dynamic"), findings
        phrase = "dynamic imports" if kind == "dynamic" else "package's own implementation"
        assert phrase in findings[0].message


def test_package_imports_of_earlier_cells_are_followed():
    aliases: dict = {}
    assert _policy.scan_source("from vae_edu import mlp_vae", A3, aliases) == []
    assert _policy.scan_source("f = mlp_vae.train_step", A3, aliases)  # a later cell


def test_a_copy_of_a_module_has_the_fingerprints_of_the_reference(tmp_path):
    copy = tmp_path / "elsewhere.py"
    copy.write_text(Path(_kl.__file__).read_text())
    spec = importlib.util.spec_from_file_location("elsewhere", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    references = _policy.reference_fingerprints(A1)
    assert references[_channel.fingerprint(module.kl_diag_gaussians)] == (
        "vae_edu.kl:kl_diag_gaussians"
    )
    assert references[_channel.fingerprint(module._kl_diag_gaussians)] == (
        "vae_edu.kl:_kl_diag_gaussians"
    )
    assert _channel.fingerprint(module.kl_to_standard_normal) not in references  # allowed
    # pasted into a cell, without the module's own imports (which change the bytecode of
    # method calls on imported names: LOAD_ATTR there, LOAD_METHOD here)
    cell: dict = {}
    exec(compile(_pasted_kl_monte_carlo(), "<cell>", "exec", dont_inherit=True), cell)
    assert references[_channel.fingerprint(cell["kl_monte_carlo"])] == "vae_edu.kl:kl_monte_carlo"


@pytest.mark.parametrize("name", [A1, A2, A3])
def test_no_instructor_answer_has_the_fingerprint_of_a_reference(name):
    import jax
    import jax.numpy as jnp
    import numpy as np

    references = _policy.reference_fingerprints(name)
    assert references
    source = nbformat.read(DEFAULT_SOURCE_DIR / f"{name}.ipynb", as_version=4)
    checked = 0
    for cell in source.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        space = {"jax": jax, "jnp": jnp, "np": np}
        code = "\n".join(line for line in cell.source.splitlines() if "### " not in line)
        tree = compile(code, f"<{cell.id}>", "exec", dont_inherit=True)
        for const in tree.co_consts:
            if inspect.iscode(const):
                checked += 1
                space["_probe"] = const
                assert _channel.fingerprint(type(lambda: None)(const, space)) not in references, (
                    cell.id
                )
    assert checked
