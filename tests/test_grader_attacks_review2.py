"""Adversarial review of the grader (helper R11b): attacks that beat it as of this review.

Each submission is built from the release (helpers of ``tests/test_grader_attacks.py``) and
graded with ``python -m vae_edu.assignments grade``; each test states what must be true
once the attack is stopped, and failed on the grader it was written against.

The first two attacks reach the package's own implementation of the asked computation through a
function the assignment's FORBIDDEN list does not name (``_policy.FORBIDDEN``), so neither
the static scan, nor the reach listing (which only fingerprints package functions against
the forbidden ones), nor the tripwire (which wraps only the forbidden ones) sees it:

* A1: ``vae_edu.mlp_vae.negative_elbo`` (A3's grader-only reference, present in the
  grader's kernel) computes the closed-form KL to N(0, I) inline (``_terms``). With zero
  weights, the encoder bias set to (mean, log_var) and a zero-pixel image, the loss IS the
  KL. Q2 follows by the affine invariance of the KL. Was 5 / 5 for Q1 + Q2.
* A2: ``VAE._loss_log_likelihood`` (a private method of ``vae_edu.models.VAE``, reached
  through an instance: the scan flags private names only as attributes of package modules)
  is exactly the Bernoulli log-likelihood. Was 3 / 3 for Q2 (and 3 / 3 for Q3 with it).

The others get past the static scan (an aliased ``attrgetter``, a cell magic's body, a
module written as text and imported, a module alias made by assignment) and keep the
reference in a container, where the reach listing does not look; the tripwire is avoided
by private helpers (never wrapped) or by taking the original out of the wrapper (or
putting the originals back) where the scan does not read.
"""

from pathlib import Path

import pytest
from test_grader_attacks import A1, A2, A3, by_id, grade_batch

REPO = Path(__file__).resolve().parents[1]

A1_VIA_A3_REFERENCE = {
    "kl_standard_normal": (
        "from vae_edu.mlp_vae import negative_elbo as vae_loss\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        "    mean, log_var = jnp.broadcast_arrays(jnp.asarray(mean), jnp.asarray(log_var))\n"
        "    d = mean.shape[-1]\n\n"
        "    def one(m, l):\n"
        "        params = {\n"
        '            "enc_w1": jnp.zeros((0, 1)), "enc_b1": jnp.zeros(1),\n'
        '            "enc_w2": jnp.zeros((1, 2 * d)), "enc_b2": jnp.concatenate([m, l]),\n'
        '            "dec_w1": jnp.zeros((d, 1)), "dec_b1": jnp.zeros(1),\n'
        '            "dec_w2": jnp.zeros((1, 0)), "dec_b2": jnp.zeros(0),\n'
        "        }\n"
        "        return vae_loss(params, jax.random.key(0), jnp.zeros((1, 0)))\n\n"
        "    out = jax.vmap(one)(mean.reshape(-1, d), log_var.reshape(-1, d))\n"
        "    return out.reshape(mean.shape[:-1])\n"
    ),
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        "    # KL is invariant under the affine map z -> (z - mean_p) / sigma_p\n"
        "    return kl_standard_normal(\n"
        "        (mean_q - mean_p) * jnp.exp(-0.5 * log_var_p), log_var_q - log_var_p\n"
        "    )\n"
    ),
}

A2_VIA_MODEL_PRIVATE_METHOD = {
    "bernoulli_log_likelihood": (
        "from vae_edu.config import VAEConfig\n"
        "from vae_edu.train import init_model\n\n"
        "helper_model = init_model(VAEConfig(input_dim=4, hidden_sizes=(2,), latent_dim=1), 0)\n"
        "\n\n"
        "def bernoulli_log_likelihood(x, logits):\n"
        "    return helper_model._loss_log_likelihood(x, logits)\n"
    ),
}

# The private jitted helpers of the reference modules, taken with an ALIASED
# operator.attrgetter (the scan flags a computed name only when the call is spelled
# "...attrgetter(" / "...methodcaller(") and kept in a dict (the reach listing follows
# globals, module attributes, closures and defaults, never the items of a container; the
# tripwire wraps only the public functions). Was 5 / 5 (A1 Q1 + Q2) and 6 / 6 (A2 Q1 + Q2).
A1_ATTRGETTER_ALIAS = {
    "kl_standard_normal": (
        "from operator import attrgetter as grab\n"
        "from vae_edu import kl as K\n\n"
        'HELPERS = {"kl": grab("_kl_diag" + "_gaussians")(K)}\n\n\n'
        "def kl_standard_normal(mean, log_var):\n"
        '    return HELPERS["kl"](mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var))\n'
    ),
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        '    return HELPERS["kl"](mean_q, log_var_q, mean_p, log_var_p)\n'
    ),
}

A2_ATTRGETTER_ALIAS = {
    "reparameterize": (
        "from operator import attrgetter as grab\n"
        "from vae_edu import elbo as E\n\n"
        'HELPERS = {"draw": grab("_dr" + "aw")(E), "bern": grab("_bernoulli" + "_log_prob")(E)}'
        "\n\n\n"
        "def reparameterize(key, mean, log_var):\n"
        '    return HELPERS["draw"](key, jnp.asarray(mean), jnp.asarray(log_var), None)[0]\n'
    ),
    "bernoulli_log_likelihood": (
        'def bernoulli_log_likelihood(x, logits):\n    return HELPERS["bern"](x, logits)\n'
    ),
}

# Cell magics: IPython turns "%%capture" + body into
# get_ipython().run_cell_magic("capture", "", "<body>"): the body is a string constant the
# static scan never parses ("capture" is not among the magics it refuses), so ANY construct
# passes there: a private helper import, __closure__ (the original taken out of the
# tripwire's wrapper, so its calls are never recorded). Kept in a dict, out of the reach
# listing's sight. Was 8 / 8 for Q1-Q3 (+ 1 / 1 for Q4 with the instructor's cell).
A1_CELL_MAGIC = {
    "kl_standard_normal": (
        "%%capture\n"
        "from vae_edu.kl import _kl_diag_gaussians\n"
        "import vae_edu.kl as K\n"
        'HELPERS = {"kl": _kl_diag_gaussians}\n'
        "for c in K.kl_monte_carlo.__closure__:\n"
        '    if getattr(c.cell_contents, "__name__", "") == "kl_monte_carlo":\n'
        '        HELPERS["mc"] = c.cell_contents\n'
        "del _kl_diag_gaussians, K, c\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        '    return HELPERS["kl"](mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var))\n'
    ),
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        '    return HELPERS["kl"](mean_q, log_var_q, mean_p, log_var_p)\n'
    ),
    "kl_monte_carlo": (
        "def kl_monte_carlo(samples_q, log_q, log_p):\n"
        '    e = HELPERS["mc"](samples_q, log_q, log_p)\n'
        "    return e.mean, e.std_error\n"
    ),
}


# A3 in a cell magic: every tripwire wrapper in the package's modules replaced by the
# original it closes over (so nothing is recorded), then the reference loss and step kept in
# a dict. Was 12 / 12 for A3's two programming questions (the "hardest" ones).
A3_CELL_MAGIC = {
    "negative_elbo": (
        "%%capture\n"
        "import sys\n"
        "for mod in list(sys.modules.values()):\n"
        '    if not getattr(mod, "__name__", "").startswith("vae_edu"):\n'
        "        continue\n"
        "    for k, v in list(vars(mod).items()):\n"
        '        code = getattr(v, "__code__", None)\n'
        '        if code is not None and {"fn", "record"} <= set(code.co_freevars):\n'
        '            inner = v.__closure__[code.co_freevars.index("fn")].cell_contents\n'
        "            setattr(mod, k, inner)\n"
        "import vae_edu.mlp_vae as M\n"
        'HELPERS = {"ne": M.negative_elbo, "ts": M.train_step}\n'
        "del M, mod, k, v, code\n"
        "\n"
        "\n"
        "def negative_elbo(params, key, x):\n"
        '    return HELPERS["ne"](params, key, x)\n'
    ),
    "train_step": (
        "def train_step(loss_fn, params, opt_state, key, x):\n"
        '    return HELPERS["ts"](loss_fn, params, opt_state, key, x)\n'
    ),
}

# No magic at all: the forbidden code written as TEXT to a module file, then an ordinary
# ``import`` (the scan reads the cell, not the file it writes; the forbidden names are inside
# a longer string; the reach listing does not look into the module's dict H). Was 8 / 8
# for A1 Q1-Q3.
A1_WRITTEN_MODULE = {
    "kl_standard_normal": (
        "HELPER_SOURCE = '''\n"
        "from vae_edu.kl import _kl_diag_gaussians as kl\n"
        "import vae_edu.kl as K\n"
        'H = {"kl": kl}\n'
        "for c in K.kl_monte_carlo.__closure__:\n"
        '    if getattr(c.cell_contents, "__name__", "") == "kl_monte_carlo":\n'
        '        H["mc"] = c.cell_contents\n'
        "'''\n"
        'with open("course_helpers.py", "w") as f:\n'
        "    f.write(HELPER_SOURCE)\n"
        "import course_helpers\n"
        "\n"
        "\n"
        "def kl_standard_normal(mean, log_var):\n"
        '    return course_helpers.H["kl"](\n'
        "        mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var)\n"
        "    )\n"
    ),
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        '    return course_helpers.H["kl"](mean_q, log_var_q, mean_p, log_var_p)\n'
    ),
    "kl_monte_carlo": (
        "def kl_monte_carlo(samples_q, log_q, log_p):\n"
        '    e = course_helpers.H["mc"](samples_q, log_q, log_p)\n'
        "    return e.mean, e.std_error\n"
    ),
}


# The simplest form: a module alias made by ASSIGNMENT (``module = kl``; the scan tracks
# aliases made by import only) or ``sys`` imported under another name (``system.modules``:
# only the spelling "sys.modules" is refused), the private jitted helper kept in a dict.
# Was 5 / 5 for A1 Q1 + Q2.
A1_PLAIN_ALIAS = {
    "kl_standard_normal": (
        "import sys as system\n"
        "from vae_edu import kl\n"
        "\n"
        "module = kl\n"
        'HELPERS = {"kl": module._kl_diag_gaussians, "mod": system.modules["vae_edu.kl"]}\n'
        "\n"
        "\n"
        "def kl_standard_normal(mean, log_var):\n"
        '    return HELPERS["kl"](mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var))\n'
    ),
    "kl_two_gaussians": (
        "def kl_two_gaussians(mean_q, log_var_q, mean_p, log_var_p):\n"
        '    return HELPERS["kl"](mean_q, log_var_q, mean_p, log_var_p)\n'
    ),
}


# The package's own source read from disk, where the grader's checkout is (a traceback of
# the grader, or the course's README, tells where), compiled under another name and run:
# none of the scan's names appear, and the functions made are new objects. Beside it, the
# kernel's own copy (``vae_edu.__file__``) read the same way. Both must give no reference.
A1_SOURCE_FROM_DISK = {
    "kl_standard_normal": (
        "import pathlib\n"
        "import vae_edu\n\n"
        "HELPERS = {}\n"
        "for folder in (pathlib.Path(vae_edu.__file__).parent, pathlib.Path("
        + repr(str(REPO / "vae_edu"))
        + ")):\n"
        "    try:\n"
        "        text = (folder / 'kl.py').read_text()\n"
        "    except OSError:\n"
        "        continue\n"
        "    space = {'__name__': 'course_copy'}\n"
        "    try:\n"
        "        exec(compile(text, 'copy.py', 'exec'), space)\n"
        "        space['_kl_diag_gaussians'](jnp.zeros(1), jnp.zeros(1), 0.0, 0.0)\n"
        "    except Exception:\n"
        "        continue\n"
        "    HELPERS['kl'] = space['_kl_diag_gaussians']\n\n\n"
        "def kl_standard_normal(mean, log_var):\n"
        "    return HELPERS['kl'](mean, log_var, jnp.zeros_like(mean), jnp.zeros_like(log_var))\n"
    ),
}


@pytest.fixture(scope="module")
def review2(tmp_path_factory):
    subs = {
        "a1_via_a3": (A1, A1_VIA_A3_REFERENCE),
        "a2_private": (A2, A2_VIA_MODEL_PRIVATE_METHOD),
        "a1_attrgetter": (A1, A1_ATTRGETTER_ALIAS),
        "a2_attrgetter": (A2, A2_ATTRGETTER_ALIAS),
        "a1_cell_magic": (A1, A1_CELL_MAGIC),
        "a1_written_module": (A1, A1_WRITTEN_MODULE),
        "a3_cell_magic": (A3, A3_CELL_MAGIC),
        "a1_plain_alias": (A1, A1_PLAIN_ALIAS),
        "a1_source_from_disk": (A1, A1_SOURCE_FROM_DISK),
    }
    return grade_batch(tmp_path_factory.mktemp("review2"), subs)


# What the report says when an answer reached the package's implementation: the policy's
# refusal (of the reference, or of dynamic access, which zeroes every question), or the
# kernel's copy of the package (vae_edu.assignments._kernel_package) saying the code is
# not there.
REFERENCE_NAMED = (
    "the package's own implementation",
    "so every autograded question scores 0",
    "not in the kernel that grades",
    "is not available while",
)


def zero_naming_the_reference(q) -> bool:
    return q["points"] == 0 and any(text in q["message"] for text in REFERENCE_NAMED)


def test_a1_the_kl_taken_from_a3s_reference_loss_scores_zero(review2):
    """Was 2 / 2: mlp_vae.negative_elbo with zero weights is the KL. (Its Q2, a correct
    affine reduction to Q1's function, is graded with the grader's correct Q1 bound in:
    one mistake costs once, so it passes on its own merit.)"""
    questions = by_id(review2["a1_via_a3"])
    assert zero_naming_the_reference(questions["test_kl_standard_normal"]), questions
    assert questions["test_kl_two_gaussians"]["status"] == "passed", questions


def test_a2_the_bernoulli_log_likelihood_from_a_models_private_method_scores_zero(review2):
    """Was 3 / 3: VAE._loss_log_likelihood of an instance is the reference."""
    q = by_id(review2["a2_private"])["test_bernoulli_log_likelihood"]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize("gid", ["test_kl_standard_normal", "test_kl_two_gaussians"])
def test_a1_a_private_helper_through_an_aliased_attrgetter_in_a_dict_scores_zero(review2, gid):
    """Was 2 / 2 and 3 / 3: ``grab("_kl_diag" + "_gaussians")(K)`` kept in a dict."""
    q = by_id(review2["a1_attrgetter"])[gid]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize("gid", ["test_reparameterize", "test_bernoulli_log_likelihood"])
def test_a2_private_helpers_through_an_aliased_attrgetter_in_a_dict_score_zero(review2, gid):
    """Was 3 / 3 each: elbo._draw and elbo._bernoulli_log_prob, as above."""
    q = by_id(review2["a2_attrgetter"])[gid]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize(
    "gid", ["test_kl_standard_normal", "test_kl_two_gaussians", "test_kl_monte_carlo"]
)
def test_a1_code_inside_a_cell_magic_is_scanned(review2, gid):
    """Was 2 / 2, 3 / 3 and 3 / 3: the reference (private helper, and the original out of
    the tripwire's closure) taken in a ``%%capture`` cell, which the scan does not read."""
    q = by_id(review2["a1_cell_magic"])[gid]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize(
    "gid", ["test_kl_standard_normal", "test_kl_two_gaussians", "test_kl_monte_carlo"]
)
def test_a1_code_written_to_a_module_file_and_imported_is_checked(review2, gid):
    """Was 2 / 2, 3 / 3 and 3 / 3: the reference through a module the cell writes."""
    q = by_id(review2["a1_written_module"])[gid]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize("gid", ["test_negative_elbo", "test_train_step"])
def test_a3_the_reference_taken_in_a_cell_magic_with_the_tripwire_undone_scores_zero(review2, gid):
    """Was 5 / 5 and 7 / 7: mlp_vae.negative_elbo and train_step, tripwires unwrapped."""
    q = by_id(review2["a3_cell_magic"])[gid]
    assert zero_naming_the_reference(q), q


@pytest.mark.parametrize("gid", ["test_kl_standard_normal", "test_kl_two_gaussians"])
def test_a1_a_module_alias_made_by_assignment_is_followed(review2, gid):
    """Was 2 / 2 and 3 / 3: ``module = kl`` then ``module._kl_diag_gaussians`` in a dict."""
    q = by_id(review2["a1_plain_alias"])[gid]
    assert zero_naming_the_reference(q), q


def test_a1_the_packages_source_read_from_disk_gives_no_reference(review2):
    """Neither the grader's checkout (hidden from the kernel, or absent from its file
    system) nor the kernel's copy of the package (no reference code in it) has the KL."""
    q = by_id(review2["a1_source_from_disk"])["test_kl_standard_normal"]
    assert q["points"] == 0 and q["status"] != "passed", q
