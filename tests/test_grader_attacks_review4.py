"""Adversarial review of the grader, fourth round (helper R11d): attacks that beat it today.

Each submission is built from the release (helpers of ``tests/test_grader_attacks.py`` and
``tests/test_grader_attacks_review3.py``) and all are graded in ONE
``python -m vae_edu.assignments grade`` call. Each test states what must be true once the
attack is stopped, and failed on the grader it was written against (commit 79a2b63).

**The reach listing** (``_channel.REACH_CODE``, layer 3 of ``_policy``) is the only layer
that sees a PASTED reference (the kit's source of a private helper: the kernel's copy has no
reference code, the static scan sees no forbidden name, the tripwire wraps only the copy's
functions). It fingerprints what the answer reaches through global names, module
attributes, closures, defaults, and (since review 3) the items of containers, classes and
instances with a ``__dict__``. The paste is the kit's code, so each function below has the
reference's fingerprint (the control, a paste called directly, is refused:
``test_grader_attacks_review3.test_control_the_same_paste_called_directly_is_refused``);
every one was scored as an answer:

* **seven lists deep** (``a1_hidden``, A1 Q1, was 2 / 2): the listing stops at depth 6;
* **an argument of a ``functools.partial``** (``a1_hidden``, A1 Q2, was 3 / 3): ``unwrap``
  follows ``partial.func`` (here a lambda ``f, *a: f(*a)``), never ``partial.args`` or
  ``keywords``;
* **a function defined inside the answer** (``a1_more``, A1 Q1, was 2 / 2): only the
  answer's own code is fingerprinted; a nested code object counts only inside the answer's
  fingerprint, never on its own;
* **an attribute of the answer function** (``a1_more``, A1 Q2, was 3 / 3):
  ``kl_two_gaussians.impl = kl_core``; a function's ``__dict__`` is not listed;
* **an instance of a class with ``__slots__``** (``a2_hidden``, A2 Q1, was 3 / 3): the
  kit's ``vae_edu.elbo._draw`` kept in a slot; ``contents`` lists only ``__dict__``;
* **after 500 other functions** (``a2_hidden``, A2 Q2, was 3 / 3): three lists of 200
  lambdas under a name sorted first, the kit's ``vae_edu.elbo._bernoulli_log_prob`` under a
  name sorted last: the listing stops at 500 functions (``len(found) > 500``), silently.

**A pasted estimator** (``a1_hidden``, A1 Q3, was 3 / 3): review 3 refused
``vae_edu.estimate.mean_and_standard_error`` (the reference ``kl_monte_carlo``'s body) by
stubbing it in A1's copy, but it is not among A1's reference fingerprints
(``_policy.FORBIDDEN`` lists only ``vae_edu.kl``), so its kit source pasted (three lines)
is accepted. Layer: the reference list of ``_policy``.

**A3 Question 3 without a model** (``a3_mean_image``, was 2 / 2): ``check_latent_statistics``
takes "a test ELBO above -200" as "trained". All-zero weights with the decoder's output bias
at the logit of the test set's mean image (no encoder, no training, Q1 and Q2 left as stubs)
have a test ELBO of -196.4 (the training set's mean image: -199.7): every posterior mean is
0, so ``class_means = zeros((10, 2))`` and ``farthest_digit = 0`` are "correct" without
computing anything (the review-3 attack, with one more line). Question 4 is saved only by
its visible assert (``centroid_accuracy > 0.1``; the trivial value is 0.0875). Layer:
``vae_edu.grading.a3`` (``TRAINED_ELBO`` is looser than the mean-image model; a bar well
above it, e.g. between the mean image and the target of -170, or a check that the
encoder's means actually vary, would hold).

**A false positive: one mistake in A3 Question 1 costs Questions 3 and 4** (``a3_sigmoid_twice``,
its own grader call, slow: the grader re-runs the training). An honest notebook with the
issue's "sigmoid applied twice" in ``negative_elbo`` and the instructor's code everywhere
else: Q1 0 / 5 (right), Q2 7 / 7 (right: the grader trains with its own loss), but Q3 and Q4
0 / 2 each, "the statistics are graded on a trained model, and the `params` in your notebook
have a test ELBO of -1109.7 ... Train them with your train_step (Question 2)", although the
student's step passed and the statistics are correct for their parameters. The test ELBO the
bar uses is the CORRECT model's ELBO of parameters trained on the student's (wrong) loss; a
KL sign error gives -5.6e10. The docstring of ``check_latent_statistics`` promises "any
trained parameters, the student's own after Question 2 whatever its score, get their own
correct answers"; issue 11 point 6 asks that one mistake cost once. Layer:
``vae_edu.grading.a3`` (the "trained" test; e.g. grade the statistics on parameters the
grader trained with the student's step and its own loss, or judge "trained" by something a
wrong loss does not break).
"""

import json
from pathlib import Path

import pytest
from test_grader_attacks import (
    A1,
    A2,
    A3,
    build,
    by_id,
    grade,
    grade_batch,
    solution,
    write_submissions,
)
from test_grader_attacks_review2 import zero_naming_the_reference
from test_grader_attacks_review3 import PASTED_REFERENCE

from vae_edu.assignments import DEFAULT_SOURCE_DIR, release_directory

# The kit's source of two private helpers of vae_edu.elbo (A2's references), decorators left
# out (the reference fingerprints are those of the functions inside jax.jit).
PASTED_DRAW = (
    "def {name}(key, mean, log_var, num_samples):\n"
    '    """Returns (z, eps)."""\n'
    "    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)\n"
    "    dtype = jnp.result_type(mean.dtype, log_var.dtype)\n"
    "    eps = jax.random.normal(key, shape, dtype=dtype)\n"
    "    return mean + jnp.exp(0.5 * log_var) * eps, eps\n"
)
PASTED_BERNOULLI = (
    "def {name}(x, logits):\n"
    "    on, off = x > 0, x < 1\n"
    "    term_on = x * jax.nn.softplus(-jnp.where(on, logits, 0.0))\n"
    "    term_off = (1.0 - x) * jax.nn.softplus(jnp.where(off, logits, 0.0))\n"
    "    per_dim = -(jnp.where(on, term_on, 0.0) + jnp.where(off, term_off, 0.0))\n"
    "    return jnp.sum(per_dim, axis=-1)\n"
)
# The kit's vae_edu.estimate.mean_and_standard_error (without its jax.jit).
PASTED_ESTIMATOR = (
    "def {name}(values):\n"
    "    n = values.shape[0]\n"
    "    return Estimate(jnp.mean(values, axis=0), jnp.std(values, axis=0, ddof=1) / np.sqrt(n))\n"
)

A1_HIDDEN = {
    "kl_standard_normal": PASTED_REFERENCE.format(name="kl_core")
    + (
        "\n\nDEEP = [[[[[[[kl_core]]]]]]]\n"
        "del kl_core\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        "    zeros = jnp.zeros_like(mean)\n"
        "    return DEEP[0][0][0][0][0][0][0](mean, log_var, zeros, zeros)\n"
    ),
    "kl_two_gaussians": PASTED_REFERENCE.format(name="kl_core2")
    + (
        "\n\nimport functools\n\n"
        "KL = functools.partial(lambda f, *a: f(*a), kl_core2)\n"
        "del kl_core2\n\n\n"
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        "    return KL(mean_q, log_var_q, mean_p, log_var_p)\n"
    ),
    "kl_monte_carlo": (
        "from vae_edu.estimate import Estimate\n\n\n"
        + PASTED_ESTIMATOR.format(name="estimator")
        + "\n\ndef kl_monte_carlo(samples_q, log_q, log_p):\n"
        "    e = estimator(log_q(samples_q) - log_p(samples_q))\n"
        "    return e.mean, e.std_error\n"
    ),
}

_INNER = "\n".join("    " + line for line in PASTED_REFERENCE.format(name="core").splitlines()[3:])
A1_MORE = {
    "kl_standard_normal": (
        "from vae_edu.kl import squared_over_variance\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        f"{_INNER}\n\n"
        "    zeros = jnp.zeros_like(mean)\n"
        "    return core(mean, log_var, zeros, zeros)\n"
    ),
    "kl_two_gaussians": PASTED_REFERENCE.format(name="kl_core")
    + (
        "\n\ndef kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        "    return kl_two_gaussians.impl(mean_q, log_var_q, mean_p, log_var_p)\n\n\n"
        "kl_two_gaussians.impl = kl_core\n"
        "del kl_core\n"
    ),
}

A2_HIDDEN = {
    "reparameterize": PASTED_DRAW.format(name="draw")
    + (
        "\n\nclass Holder:\n"
        "    __slots__ = ('fn',)\n\n"
        "    def __init__(self, fn):\n"
        "        self.fn = fn\n\n\n"
        "HOLDER = Holder(draw)\n"
        "del draw\n\n\n"
        "def reparameterize(key, mean, log_var):\n"
        "    return HOLDER.fn(key, mean, log_var, None)[0]\n"
    ),
    "bernoulli_log_likelihood": PASTED_BERNOULLI.format(name="zz_core")
    + (
        "\n\nA_PAD = [[lambda: i for i in range(200)] for _ in range(3)]\n\n\n"
        "def bernoulli_log_likelihood(x, logits):\n"
        "    assert A_PAD\n"
        "    return zz_core(x, logits)\n"
    ),
}

# Q1 and Q2 left as stubs: nothing is trained. The "model" is the test set's mean image.
A3_MEAN_IMAGE = {
    "class_means": (
        "params = {k: jnp.zeros_like(v) for k, v in init_params(jax.random.key(0)).items()}\n"
        "pixel = np.clip(np.asarray(test_x).mean(axis=0), 1e-4, 1 - 1e-4)\n"
        "params['dec_b2'] = jnp.asarray(np.log(pixel) - np.log1p(-pixel))\n"
        "class_means = np.zeros((10, 2))\n"
        "farthest_digit = 0\n"
    ),
}


# An honest A3 with ONE mistake, in Question 1 (the "sigmoid applied twice"):
# Question 2's step and the statistics of Questions 3 and 4 are the instructor's.
_LOSS = solution(A3, "negative_elbo")
A3_SIGMOID_TWICE = {
    "negative_elbo": _LOSS.replace(
        "logits = decode(params, z)", "logits = jax.nn.sigmoid(decode(params, z))"
    ),
    "train_step": solution(A3, "train_step"),
    "class_means": solution(A3, "class_means"),
    "centroid_accuracy": solution(A3, "centroid_accuracy"),
}
assert A3_SIGMOID_TWICE["negative_elbo"] != _LOSS


def a1_channel_link(canary: Path) -> dict:
    """The kernel's channel folder replaced by a link to another folder (possible where the
    kernel may write the working directory: the read-only view, a non-root grader): the
    grader, which clears the channel before each request, must not clear the link's target.
    Found by the coordinator from review 4's report."""
    return {
        "kl_standard_normal": (
            "import os, pathlib, shutil\n"
            "for folder in (pathlib.Path('..') / 'channel', pathlib.Path('channel')):\n"
            "    try:\n"
            "        shutil.rmtree(folder)\n"
            f"        os.symlink({str(canary)!r}, folder)\n"
            "    except OSError:\n"
            "        pass\n\n\n"
            "def kl_standard_normal(mean, log_var):\n"
            "    return 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)\n"
        ),
    }


@pytest.fixture(scope="module")
def review4(tmp_path_factory):
    canary = tmp_path_factory.mktemp("review4_canary")
    (canary / "instructor_notes.txt").write_text("must survive grading\n")
    subs = {
        "a1_hidden": (A1, A1_HIDDEN),
        "a1_more": (A1, A1_MORE),
        "a2_hidden": (A2, A2_HIDDEN),
        "a3_mean_image": (A3, A3_MEAN_IMAGE),
        "a1_channel_link": (A1, a1_channel_link(canary)),
    }
    found = grade_batch(tmp_path_factory.mktemp("review4"), subs)
    found["canary"] = canary
    return found


@pytest.fixture(scope="module")
def sigmoid_twice(tmp_path_factory):
    root = tmp_path_factory.mktemp("review4_honest")
    release = root / "release"
    release_directory(DEFAULT_SOURCE_DIR, release)
    (path,) = write_submissions(
        root, {"subs/a3_sigmoid_twice": (A3, build(release, A3, A3_SIGMOID_TWICE))}
    )
    result = grade(root, path, "--json", str(root / "report.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    entry = json.loads((root / "report.json").read_text())
    return entry[0] if isinstance(entry, list) else entry


@pytest.mark.parametrize(
    ("label", "gid"),
    [
        ("a1_hidden", "test_kl_standard_normal"),  # seven lists deep
        ("a1_hidden", "test_kl_two_gaussians"),  # an argument of functools.partial
        ("a1_more", "test_kl_standard_normal"),  # defined inside the answer
        ("a1_more", "test_kl_two_gaussians"),  # an attribute of the answer function
        ("a2_hidden", "test_reparameterize"),  # a __slots__ instance
        ("a2_hidden", "test_bernoulli_log_likelihood"),  # after 500 other functions
    ],
)
def test_a_pasted_reference_held_where_the_reach_listing_does_not_look_scores_zero(
    review4, label, gid
):
    """Was full marks for each: the kit's reference source pasted, then reached through a
    place the listing skips (see the module docstring)."""
    q = by_id(review4[label])[gid]
    assert zero_naming_the_reference(q), q


def test_a1_q3_from_the_pasted_estimator_scores_zero(review4):
    """Was 3 / 3: the kit's ``estimate.mean_and_standard_error`` pasted (its fingerprint is
    not among A1's references; review 3 only removed it from the kernel's copy)."""
    q = by_id(review4["a1_hidden"])["test_kl_monte_carlo"]
    assert zero_naming_the_reference(q), q


def test_a3_q3_from_a_mean_image_model_scores_zero(review4):
    """Was 2 / 2: no training (Q2 is 0), the statistics of an encoder that maps every image
    to 0 are trivial, and the mean-image decoder clears the -200 nats bar."""
    questions = by_id(review4["a3_mean_image"])
    assert questions["test_train_step"]["points"] == 0, questions
    assert questions["test_class_means"]["points"] == 0, questions["test_class_means"]


@pytest.mark.slow
def test_a3_one_mistake_in_the_loss_does_not_cost_the_latent_statistics(sigmoid_twice):
    """Was Q1 0, Q2 7, Q3 0, Q4 0: a Q1 mistake (sigmoid applied twice) also zeroed the
    correct statistics of Q3 and Q4 ("train them with your train_step", which passed)."""
    questions = by_id(sigmoid_twice)
    assert questions["test_negative_elbo"]["points"] == 0, questions  # the one mistake
    assert questions["test_train_step"]["status"] == "passed", questions
    for gid in ("test_class_means", "test_centroid_accuracy"):
        assert questions[gid]["status"] == "passed", questions[gid]


def test_a_channel_folder_replaced_by_a_link_deletes_nothing_outside(review4):
    """The grader never follows a link in the kernel's channel: the canary survives, and the
    submission is graded (its kernel stopped as tampering where it could make the link)."""
    assert (review4["canary"] / "instructor_notes.txt").is_file()
    assert review4["a1_channel_link"]["assignment"] == A1
