"""Adversarial review of the grader (helper R11): attacks that beat it as of this review.

Each submission is built from the release, like those of ``tests/test_grader_attacks.py``
(whose helpers it reuses), and graded with ``python -m vae_edu.assignments grade``. Every
test here states what must be true once the attack is stopped; they all failed on the
grader they were written against (the reproduction is in each test's docstring).

The sandbox attacks (lifting the read-only view, reading the grader's environment through
/proc, detached processes) assume what CI does: root on Linux. The poisoning attack runs on
a copy of the checkout, so that a successful attack never touches this one.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import pytest
from test_grader_attacks import A1, A2, A3, build, solution

from vae_edu import grading
from vae_edu.assignments import DEFAULT_SOURCE_DIR, release_directory
from vae_edu.grading import a1 as grading_a1
from vae_edu.kl import kl_diag_gaussians

REPO = Path(__file__).resolve().parents[1]
TOKEN = "secret-token-123"

# ----------------------------------------------------------------------- the submissions

# The package's own implementation, reached without naming "vae_edu.kl:kl_diag_gaussians":
# a copy of the module's file imported under another name, a private jitted helper, and
# the original function taken out of the tripwire's closure.
UNNAMED_REFERENCE_A1 = {
    "kl_standard_normal": (
        "import shutil, inspect\n"
        "import vae_edu.estimate as _e\n"
        'shutil.copy(inspect.getfile(_e).replace("estimate.py", "kl.py"), "mykl.py")\n'
        "import mykl\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        "    return mykl.kl_diag_gaussians(mean, log_var)\n"
    ),
    "kl_two_gaussians": (
        "from vae_edu.kl import _kl_diag_gaussians\n\n\n"
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        "    return _kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)\n"
    ),
    "kl_monte_carlo": (
        "import inspect\n"
        "import vae_edu.kl as K\n"
        '_w = dict(inspect.getmembers(K))["kl_monte" + "_carlo"]\n'
        "_orig = [c.cell_contents for c in _w.__closure__ if callable(c.cell_contents)][0]\n\n\n"
        "def kl_monte_carlo(samples_q, log_q, log_p):\n"
        "    e = _orig(samples_q, log_q, log_p)\n"
        "    return e.mean, e.std_error\n"
    ),
}

# The tripwire's report switched off (setattr with a constant name is not flagged), then
# the reference through a re-export, IPython's run_cell and a pickle of the function.
TRIPWIRE_OFF_A1 = {
    "kl_standard_normal": (
        "import vae_edu\n"
        'setattr(vae_edu, "_grader_trace", None)\n'
        "from vae_edu.elbo import kl_diag_gaussians as kl_standard_normal\n"
    ),
    "kl_two_gaussians": (
        'get_ipython().run_cell("from vae_edu.kl import kl_diag_gaussians as kl_two_gaussians")\n'
    ),
    "kl_monte_carlo": (
        "import pickle\n"
        '_k = pickle.loads(b"cvae_edu.kl\\nkl_monte_carlo\\n.")\n\n\n'
        "def kl_monte_carlo(samples_q, log_q, log_p):\n"
        "    e = _k(samples_q, log_q, log_p)\n"
        "    return e.mean, e.std_error\n"
    ),
}

# A2: the reference module copied and imported under another name; an ELBO "estimate"
# that never samples (model.exact_elbo through operator.methodcaller, plus made-up noise
# whose spread falls like 1 / sqrt(L)).
UNNAMED_REFERENCE_A2 = {
    "reparameterize": (
        "import shutil, inspect\n"
        "import vae_edu.estimate as _e\n"
        'shutil.copy(inspect.getfile(_e).replace("estimate.py", "elbo.py"), "myelbo.py")\n'
        "import myelbo\n\n\n"
        "def reparameterize(key, mean, log_var):\n"
        "    return myelbo.reparameterize(key, mean, log_var)\n"
    ),
    "bernoulli_log_likelihood": (
        "def bernoulli_log_likelihood(x, logits):\n"
        "    return myelbo.bernoulli_log_likelihood(x, logits)\n"
    ),
    "elbo_estimate": (
        "import operator, vae_edu\n"
        'setattr(vae_edu, "_grader_trace", None)\n\n\n'
        "def elbo_estimate(key, model, x, mean, log_var, num_samples):\n"
        '    exact = operator.methodcaller("exact_elbo", x, mean, jnp.diag(jnp.exp(log_var)))('
        "model)\n"
        "    return exact + 1.5 * jax.random.normal(key) / jnp.sqrt(num_samples)\n"
    ),
}

# A3: the loss and the step of the reference module, copied and imported under another name.
COPIED_A3 = {
    "negative_elbo": (
        "import shutil, inspect\n"
        'shutil.copy(inspect.getfile(data).replace("data.py", "mlp_vae.py"), "my_vae.py")\n'
        "import my_vae\n\n"
        "negative_elbo = my_vae.negative_elbo\n"
    ),
    "train_step": "train_step = my_vae.train_step\n",
}

# The grader's environment read from /proc (the kernel's parent is the grader), shown to
# the student through the feedback; another student's grade file overwritten after lifting
# the read-only bind mount of the grader's working folder.
ENVIRONMENT_A1 = {
    "kl_standard_normal": (
        "import ctypes, os, pathlib\n"
        "grader = os.getppid()\n"
        'env = dict(kv.split("=", 1) for kv in open("/proc/%d/environ" % grader).read()'
        '.split("\\0") if "=" in kv)\n'
        'where = pathlib.Path(os.readlink("/proc/%d/cwd" % grader))\n'
        "ctypes.CDLL(None).umount2(str(where).encode(), 2)\n"
        "(where / 'grades' / 'alice_A1.json').write_text('{\"score\": 10}')\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        '    raise ValueError("token=" + env.get("INSTRUCTOR_LMS_TOKEN", "absent"))\n'
    )
}


def detached(marker: Path) -> dict:
    """Processes that leave the kernel's process group and write ``marker`` later."""
    return {
        "kl_standard_normal": (
            "import os, subprocess, time\n"
            "subprocess.Popen(['/bin/sh', '-c', "
            f"'sleep 3; echo popen >> {marker}'], start_new_session=True,\n"
            "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,"
            " stderr=subprocess.DEVNULL)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(3)\n"
            f"        open({str(marker)!r}, 'a').write('double fork\\n')\n"
            "        os._exit(0)\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
        )
    }


# Lifts the read-only view of the package and writes a byte-compiled grading/a1 whose
# check_kl_diag always passes, with the header (mtime, size) of the untouched a1.py: the
# SHA-256 of the .py files does not change, and the next grader process imports the .pyc.
PYC_POISON_A1 = {
    "kl_standard_normal": (
        "import ctypes, json, marshal, pathlib, struct, sys\n"
        "import vae_edu\n"
        "pkg = pathlib.Path(vae_edu.__file__).resolve().parent\n"
        "for _ in range(5):  # every read-only bind mount above the package, innermost first\n"
        "    points = [line.split()[4] for line in open('/proc/self/mountinfo')]\n"
        "    for point in sorted(set(points), key=len, reverse=True):\n"
        "        if str(pkg).startswith(point.rstrip('/') + '/') and point != '/':\n"
        "            ctypes.CDLL(None).umount2(point.encode(), 2)\n"
        "src = pkg / 'grading' / 'a1.py'\n"
        "text = src.read_text() + '''\n\n"
        "class _Passed:\n    passed = True\n    feedback = ''\n    messages = ()\n\n\n"
        "def check_kl_diag(*args, **kwargs):\n    return _Passed()\n'''\n"
        "code = compile(text, str(src), 'exec')\n"
        "st = src.stat()\n"
        "magic = open(json.__cached__, 'rb').read(4)\n"
        "cache = pkg / 'grading' / '__pycache__'\n"
        "cache.mkdir(exist_ok=True)\n"
        "header = struct.pack('<III', 0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)\n"
        "name = 'a1.%s.pyc' % sys.implementation.cache_tag\n"
        "(cache / name).write_bytes(magic + header + marshal.dumps(code))\n"
    )
}


# The kernel runs as root in the read-only view, so it can signal the grader itself.
KILL_GRADER_A1 = {
    "kl_standard_normal": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
}


# A classmate's answer, read at grading time: the grader's command line (/proc/<grader>/
# cmdline) names every submission of the batch, readable from the kernel; the answer cell
# is written to a module and imported (no exec, nothing of the package).
CLASSMATE_A1 = {
    "kl_standard_normal": (
        "import json, os, pathlib\n"
        "grader = os.getppid()\n"
        "args = open('/proc/%d/cmdline' % grader).read().split('\\0')\n"
        "cwd = pathlib.Path(os.readlink('/proc/%d/cwd' % grader))\n"
        "paths = [cwd / a for a in args if a]\n"
        "files = [p for p in paths if p.suffix == '.ipynb' and p.is_file()]\n"
        "files += [f for p in paths if p.is_dir() and p != cwd for f in p.rglob('*.ipynb')]\n"
        "for path in files:\n"
        "    for cell in json.loads(path.read_text())['cells']:\n"
        "        text = ''.join(cell['source'])\n"
        "        if cell.get('id') == 'kl_standard_normal' and 'YOUR CODE HERE' not in text:\n"
        "            pathlib.Path('classmate.py').write_text('import jax.numpy as jnp\\n' + text)\n"
        "import classmate\n\n"
        "kl_standard_normal = classmate.kl_standard_normal\n"
    )
}


def _key(*arrays) -> str:
    return hashlib.sha256(
        b"".join(np.asarray(a, np.float32).tobytes() + str(np.shape(a)).encode() for a in arrays)
    ).hexdigest()


def lookup_table_answer() -> str:
    """A1 Q1 as a table of the reference's values on the grader's (fixed, seeded) inputs,
    with tabulated gradients; zeros for every other input. Built as a student would,
    offline, by running the published check on the reference."""
    table = {}

    def recorder(mean, log_var):
        out = kl_diag_gaussians(mean, log_var)
        if not isinstance(mean, jax.core.Tracer):
            table[_key(mean, log_var)] = np.asarray(out).tolist()
        return out

    grading.check_kl_diag(recorder)
    mean, log_var = (grading_a1.f32(x) for x in grading_a1._kl_diag_inputs())
    g = jax.grad(lambda m, v: jnp.sum(kl_diag_gaussians(m, v)), argnums=(0, 1))(mean, log_var)
    grads = {_key(mean, log_var): [np.asarray(g[0]).tolist(), np.asarray(g[1]).tolist()]}
    return f"""import hashlib
TABLE = {json.dumps(table)}
GRADS = {json.dumps(grads)}


def _key(*arrays):
    return hashlib.sha256(
        b"".join(np.asarray(a, np.float32).tobytes() + str(np.shape(a)).encode() for a in arrays)
    ).hexdigest()


@jax.custom_vjp
def kl_standard_normal(mean, log_var):
    k = _key(mean, log_var)
    if k in TABLE:
        return jnp.asarray(TABLE[k], jnp.float32)
    return jnp.zeros(jnp.shape(mean)[:-1])  # wrong for every other input


def _fwd(mean, log_var):
    zero = jnp.zeros(jnp.shape(mean))
    gm, gl = GRADS.get(_key(mean, log_var), (zero, zero))
    out = kl_standard_normal(mean, log_var)
    return out, (jnp.asarray(gm, jnp.float32), jnp.asarray(gl, jnp.float32))


def _bwd(res, ct):
    gm, gl = res
    return gm * ct[..., None], gl * ct[..., None]


kl_standard_normal.defvjp(_fwd, _bwd)
"""


# ----------------------------------------------------------------------- running them


def _grade(args, cwd, pythonpath):
    env = dict(os.environ, INSTRUCTOR_LMS_TOKEN=TOKEN, PYTHONPATH=str(pythonpath))
    return subprocess.Popen(
        [sys.executable, "-m", "vae_edu.assignments", "grade", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _write(root: Path, label: str, nb) -> Path:
    path = root / "subs" / label / f"{nb.metadata.get('r11_name')}.ipynb"
    path.parent.mkdir(parents=True)
    del nb.metadata["r11_name"]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    outside = tmp_path_factory.mktemp("outside")
    marker = outside / "late.txt"
    (root / "grades").mkdir()
    (root / "grades" / "alice_A1.json").write_text('{"score": 3}')

    subs = {
        "unnamed_a1": (A1, UNNAMED_REFERENCE_A1),
        "tripwire_off": (A1, TRIPWIRE_OFF_A1),
        "unnamed_a2": (A2, UNNAMED_REFERENCE_A2),
        "lookup_table": (A1, {"kl_standard_normal": lookup_table_answer()}),
        "environment": (A1, ENVIRONMENT_A1),
        "detached": (A1, detached(marker)),
        "copied_a3": (A3, COPIED_A3),
    }
    paths = {}
    for label, (name, answers) in subs.items():
        nb = build(release, name, answers)
        nb.metadata["r11_name"] = name
        paths[label] = _write(root, label, nb)

    # the poisoning pair runs on a copy of the checkout (a successful attack writes there)
    checkout = root / "checkout"
    shutil.copytree(
        REPO / "vae_edu", checkout / "vae_edu", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(DEFAULT_SOURCE_DIR, checkout / "notebooks" / "assignments")
    poisoner = build(release, A1, PYC_POISON_A1)
    poisoner.metadata["r11_name"] = A1
    paths["pyc_poisoner"] = _write(root, "pyc_poisoner", poisoner)
    blank = root / "subs" / "blank" / f"{A1}.ipynb"
    blank.parent.mkdir()
    blank.write_bytes((release / f"{A1}.ipynb").read_bytes())

    batches = [
        ["detached", "unnamed_a1", "tripwire_off", "environment"],
        ["unnamed_a2", "lookup_table"],
        ["copied_a3"],
    ]
    jobs = []
    for i, batch in enumerate(batches):
        report = root / f"batch{i}.json"
        args = [paths[label] for label in batch] + ["--json", report]
        jobs.append((batch, report, _grade(args, root, REPO)))
    killer = build(release, A1, KILL_GRADER_A1)
    killer.metadata["r11_name"] = A1
    paths["kill_grader"] = _write(root, "kill_grader", killer)
    kill_report = root / "kill.json"
    kill_job = _grade(
        [paths["kill_grader"], blank, "--json", kill_report, "--timeout", "60"], root, REPO
    )
    for label, answers in (
        ("alice", {"kl_standard_normal": solution(A1, "kl_standard_normal")}),
        ("mallory", CLASSMATE_A1),
    ):
        nb = build(release, A1, answers)
        nb.metadata["r11_name"] = A1
        paths[label] = _write(root, label, nb)
    class_report = root / "class.json"
    class_job = _grade(
        [paths["alice"], paths["mallory"], "--json", class_report, "--timeout", "60"], root, REPO
    )
    first = _grade([paths["pyc_poisoner"], "--timeout", "60"], root, checkout)
    first.communicate(timeout=900)
    second = _grade([blank, "--timeout", "60"], root, checkout)
    results = {}
    for batch, report, process in jobs:
        stdout, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr
        entries = json.loads(report.read_text())
        entries = entries if isinstance(entries, list) else [entries]
        for label, entry in zip(batch, entries, strict=True):
            results[label] = entry
        results.setdefault("stdout", "")
        results["stdout"] += stdout
    stdout, stderr = second.communicate(timeout=900)
    results["after_poison"] = (second.returncode, stdout, stderr)
    class_job.communicate(timeout=900)
    results["class"] = json.loads(class_report.read_text()) if class_report.exists() else None
    kill_job.communicate(timeout=900)
    results["kill"] = (
        kill_job.returncode,
        json.loads(kill_report.read_text()) if kill_report.exists() else None,
    )
    results["marker"] = marker.read_text() if marker.exists() else None
    results["alice"] = (root / "grades" / "alice_A1.json").read_text()
    return results


def by_id(report):
    return {q["grade_id"]: q for q in report["questions"]}


# ----------------------------------------------------------------------- the tests


@pytest.mark.parametrize(
    "gid", ["test_kl_standard_normal", "test_kl_two_gaussians", "test_kl_monte_carlo"]
)
def test_the_reference_reached_without_its_name_scores_zero(review, gid):
    """Was 8 / 9: a copy of vae_edu/kl.py imported as ``mykl``; the private jitted
    ``_kl_diag_gaussians``; the original ``kl_monte_carlo`` from the tripwire's closure."""
    q = by_id(review["unnamed_a1"])[gid]
    assert q["points"] == 0 and q["status"] == "refused", q


@pytest.mark.parametrize(
    "gid", ["test_kl_standard_normal", "test_kl_two_gaussians", "test_kl_monte_carlo"]
)
def test_switching_off_the_tripwire_does_not_let_the_reference_through(review, gid):
    """Was 8 / 9: ``setattr(vae_edu, "_grader_trace", None)``, then
    ``from vae_edu.elbo import kl_diag_gaussians``, ``get_ipython().run_cell(...)``, and
    ``pickle.loads(b"cvae_edu.kl\\nkl_monte_carlo\\n.")``."""
    q = by_id(review["tripwire_off"])[gid]
    assert q["points"] == 0 and q["status"] == "refused", q


@pytest.mark.parametrize(
    "gid", ["test_reparameterize", "test_bernoulli_log_likelihood", "test_elbo_estimate"]
)
def test_a2_copied_reference_and_an_estimate_that_never_samples_score_zero(review, gid):
    """Was 12 / 12: the reference module copied as ``myelbo``; ``elbo_estimate`` returning
    ``operator.methodcaller("exact_elbo", ...)(model)`` plus noise / sqrt(num_samples)."""
    q = by_id(review["unnamed_a2"])[gid]
    assert q["points"] == 0, q


def test_a3_the_copied_reference_loss_and_step_score_zero(review):
    """Was 12 / 16: vae_edu/mlp_vae.py copied as ``my_vae``; ``negative_elbo =
    my_vae.negative_elbo``, ``train_step = my_vae.train_step``."""
    q = by_id(review["copied_a3"])
    assert q["test_negative_elbo"]["points"] == 0, q["test_negative_elbo"]
    assert q["test_train_step"]["points"] == 0, q["test_train_step"]


def test_a_table_of_the_hidden_inputs_is_not_an_answer(review):
    """Was 2 / 2: the reference's values on the check's fixed, seeded inputs (6 entries,
    gradients tabulated through jax.custom_vjp), zeros for any other input."""
    q = by_id(review["lookup_table"])["test_kl_standard_normal"]
    assert q["points"] == 0, q


def test_the_grader_environment_does_not_reach_the_student(review):
    """Was leaked: ``open("/proc/%d/environ" % os.getppid())`` gives the grader's
    INSTRUCTOR_LMS_TOKEN, returned to the student in the feedback."""
    assert TOKEN not in json.dumps(review["environment"])
    assert TOKEN not in review["stdout"]


def test_another_students_grade_cannot_be_overwritten(review):
    """Was overwritten: ``umount2`` of the read-only bind of the grader's folder
    (``/proc/<grader>/cwd``), then ``grades/alice_A1.json`` written (the kernel is root)."""
    assert review["alice"] == '{"score": 3}'


def test_detached_processes_do_not_outlive_the_kernel(review):
    """Was written 3 s after the cell: ``subprocess.Popen(..., start_new_session=True)``
    and a double fork with ``os.setsid()`` escape the kill of the kernel's process group."""
    assert review["marker"] is None, review["marker"]


def test_a_poisoned_bytecode_cache_does_not_grade_the_next_submission(review):
    """Was 2 / 9 for a blank notebook: the previous submission lifted the read-only view
    and wrote ``vae_edu/grading/__pycache__/a1.cpython-311.pyc`` with ``check_kl_diag``
    always passing and the header of the untouched a1.py (its SHA-256 unchanged)."""
    code, stdout, stderr = review["after_poison"]
    if code == 2:  # detected and stopped: acceptable
        assert "error:" in stderr
        return
    assert code == 0, stderr
    assert re.search(r"autograded total\s+0 / 9", stdout), stdout


def test_a_submission_cannot_kill_the_grader(review):
    """Was exit status 137, no table and no JSON for anyone, the next student not graded:
    ``os.kill(os.getppid(), signal.SIGKILL)`` in an answer cell (the kernel is root)."""
    code, reports = review["kill"]
    assert code == 0 and reports is not None, code
    assert [r["score"] for r in reports] == [0, 0]


def test_a_classmates_answer_cannot_be_read_at_grading_time(review):
    """Was 2 / 2 for mallory's Question 1, copied from alice's notebook of the same batch
    (found through ``/proc/<grader>/cmdline``, written to ``classmate.py``, imported)."""
    alice, mallory = review["class"]
    assert by_id(alice)["test_kl_standard_normal"]["points"] == 2  # alice's own work
    assert by_id(mallory)["test_kl_standard_normal"]["points"] == 0
