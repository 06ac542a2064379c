"""The lessons never break because of an exercise: both paths, executed in a fresh kernel.

The committed notebooks are the instructor edition: each exercise is a stub cell (tagged
``exercise``), a "Solution (try first)" heading and a hidden worked solution (both tagged
``solution``), and a feedback cell (tagged ``feedback``) that calls ``vae_edu.exercises.run``.
nbval re-executes that edition (the solved path). Here the notebooks run once more, every
worked solution replaced by a plausible wrong one: each feedback cell names the mistake, the
notebook goes on with the reference. The stub path (every ``solution`` cell removed: each
feedback cell says "not done yet" and names the reference) is the student edition's, run to
the end by tests/test_student_edition.py with the release's own ``student_edition``.

A wrong solution and a stub end the same way: ``vae_edu.exercises.run`` returns the
reference in both cases (tests/test_exercises.py), so after the last feedback cell the two
notebooks are the same program. The wrong-solution run therefore stops after that cell, and
checks that every exercise's name is bound to the reference there; the rest of each lesson
(for 06, the minute of training) runs in the student edition's test and in nbval.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# notebook -> {function defined by the exercise: (a wrong solution, the feedback it must get)}
WRONG = {
    "00_jax_for_numpy_users": {
        "sample_means": (
            "def sample_means(key, num_means, sample_size):\n"
            "    # one key for every mean\n"
            "    return jnp.stack(\n"
            "        [jnp.mean(jax.random.normal(key, (sample_size,))) for _ in range(num_means)]\n"
            "    )\n",
            "reused key",
        ),
    },
    "02_information_and_kl": {
        "kl_diag": (
            "def kl_diag(mean_q, log_var_q, mean_p, log_var_p):\n"
            "    # KL(p || q): the arguments swapped\n"
            "    per_dim = log_var_q - log_var_p + (jnp.exp(log_var_p) + (mean_q - mean_p) ** 2)"
            " / jnp.exp(log_var_q) - 1\n"
            "    return 0.5 * jnp.sum(per_dim, axis=-1)\n",
            "KL(p || q) instead of KL(q || p)",
        ),
    },
    "04_reparameterization": {
        "reparameterize_mine": (
            "def reparameterize_mine(key, mean, log_var):\n"
            "    # sigma^2 where sigma belongs\n"
            "    eps = jax.random.normal(key, jnp.shape(mean))\n"
            "    return mean + jnp.exp(log_var) * eps\n",
            "you scaled eps by sigma^2",
        ),
    },
    "05_decoders_and_loss": {
        "negative_elbo_mine": (
            "def negative_elbo_mine(x, logits, mean, log_var):\n"
            "    # a mean over the pixels\n"
            "    log_lik = jnp.mean(\n"
            "        x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1\n"
            "    )\n"
            "    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)\n"
            "    return jnp.mean(kl - log_lik)\n",
            "averaged over the 6 pixels",
        ),
    },
    "09_appendix_engineering": {
        "softplus_mine": (
            "def softplus_mine(r):\n    # as it reads\n    return jnp.log(1.0 + jnp.exp(r))\n",
            "overflow: your softplus is [inf, inf]",
        ),
    },
    "03_elbo": {
        "elbo_estimate": (
            "def elbo_estimate(key, model, x, mean, log_var, num_samples):\n"
            "    # the sum over the samples, not the mean\n"
            "    z = reparameterize(key, mean, log_var, num_samples=num_samples)\n"
            "    log_q = diag_gaussian_log_density(z, mean, log_var)\n"
            "    return jnp.sum(model.log_likelihood(x, z) + model.log_prior(z) - log_q)\n",
            "average over the samples, do not sum",
        ),
        "iwae_estimate": (
            "def iwae_estimate(log_w):\n"
            "    # the mean of the log-weights\n"
            "    return jnp.mean(log_w, axis=0)\n",
            "that is the ELBO estimate",
        ),
    },
}

# Executing 03 takes about a minute on one core (00: 15 s, 02: 30 s, 04: 15 s, 05: 25 s).
PARAMS = [
    pytest.param(name, marks=pytest.mark.slow if name.startswith("03") else ()) for name in WRONG
]


@pytest.fixture
def figures_elsewhere(tmp_path, monkeypatch):
    """The kernel saves the lessons' figures under tmp_path, not over the committed ones."""
    monkeypatch.setenv("VAE_EDU_FIGURES", str(tmp_path / "figures"))


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _defined_function(cell) -> str:
    first = cell.source.lstrip().splitlines()[0]
    assert first.startswith("def "), cell.source
    return first[4:].split("(", 1)[0]


def _execute(nb) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def _feedback_texts(nb) -> list[str]:
    texts = []
    for cell in nb.cells:
        if "feedback" in _tags(cell):
            texts.append(
                "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            )
    return texts


def _read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", list(WRONG))
def test_exercise_cells_are_tagged_and_complete(name):
    nb = _read(name)
    exercises = [c for c in nb.cells if "exercise" in _tags(c)]
    solutions = [c for c in nb.cells if "solution" in _tags(c) and c.cell_type == "code"]
    feedback = [c for c in nb.cells if "feedback" in _tags(c)]
    assert len(exercises) == len(solutions) == len(feedback) == len(WRONG[name])
    for stub, solution in zip(exercises, solutions, strict=True):
        assert 'raise NotImplementedError("Exercise ' in stub.source
        assert _defined_function(stub) == _defined_function(solution) in WRONG[name]
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True
    for cell in nb.cells:
        if "solution" in _tags(cell) and cell.cell_type == "markdown":
            assert "Solution (try first)" in cell.source
        if cell.cell_type == "markdown" and "Solution (try first)" in cell.source:
            assert "solution" in _tags(cell), "an untagged solution heading reaches the students"
    for cell in feedback:
        assert "exercises.run(" in cell.source


@pytest.mark.parametrize("name", PARAMS)
def test_wrong_solutions_get_named_feedback_and_the_lesson_goes_on(name, figures_elsewhere):
    nb = copy.deepcopy(_read(name))
    expected, functions = [], []
    for cell in nb.cells:
        if "solution" in _tags(cell) and cell.cell_type == "code":
            functions.append(_defined_function(cell))
            wrong, phrase = WRONG[name][functions[-1]]
            cell.source = wrong
            expected.append(phrase)
    last_feedback = max(i for i, cell in enumerate(nb.cells) if "feedback" in _tags(cell))
    del nb.cells[last_feedback + 1 :]  # from here on, the student edition's program
    nb.cells.append(nbformat.v4.new_code_cell(_BOUND_TO_REFERENCE.format(names=functions)))
    executed = _execute(nb)
    texts = _feedback_texts(executed)
    assert len(texts) == len(expected)
    references = []
    for text, phrase in zip(texts, expected, strict=True):
        assert "not correct yet" in text and phrase in text, text
        assert "goes on with the reference implementation `vae_edu." in text, text
        references.append(text.split("reference implementation `", 1)[1].split("`", 1)[0])
    bound = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert bound.split() == references, (bound, references)


# Prints, for each exercise's name, the module.qualname of what it is bound to now.
_BOUND_TO_REFERENCE = """
for _name in {names!r}:
    _fn = globals()[_name]
    print(f"{{_fn.__module__}}.{{_fn.__qualname__}}")
"""


# ==========================================================================================
# Notebooks 07 and 08: the same two tests for their exercises (7.1, 7.2, 8.1, 8.2).
# ==========================================================================================

WRONG_06_07 = {
    "07_latent_space_explorer": {
        "quantile_traversal": (
            "def quantile_traversal(z0, k, num_values):\n"
            "    # every coordinate set to the traversal value\n"
            "    values = stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)\n"
            "    return np.repeat(values[:, None], len(z0), axis=1)\n",
            "every coordinate of your codes is set to the traversal value",
        ),
        "spherical_path": (
            "def spherical_path(z_a, z_b, num_steps):\n"
            "    # the straight line\n"
            "    t = np.linspace(0.0, 1.0, num_steps)[:, None]\n"
            "    return (1 - t) * z_a + t * z_b\n",
            "that is the straight line",
        ),
    },
    "08_evaluating_vaes": {
        "iwae_bound": (
            "def iwae_bound(log_w, k):\n"
            "    # the mean of the log-weights\n"
            "    return np.mean(log_w[..., :k], axis=-1)\n",
            "that is the ELBO estimate",
        ),
        "effective_sample_size": (
            "def effective_sample_size(log_w):\n"
            "    # 1 / sum w^2 of the unnormalised weights\n"
            "    return 1.0 / np.sum(np.exp(log_w) ** 2, axis=-1)\n",
            "of the raw weights",
        ),
    },
}
WRONG.update(WRONG_06_07)  # the two tests above read their cases from WRONG


@pytest.mark.parametrize("name", list(WRONG_06_07))
def test_exercise_cells_of_07_and_08_are_tagged_and_complete(name):
    test_exercise_cells_are_tagged_and_complete(name)


@pytest.mark.parametrize("name", list(WRONG_06_07))
def test_wrong_solutions_in_07_and_08_get_named_feedback_and_the_lesson_goes_on(
    name, figures_elsewhere
):
    test_wrong_solutions_get_named_feedback_and_the_lesson_goes_on(name, figures_elsewhere)


# ============================================================================================
# 06, Exercises 6.1 (the training loss) and 6.2 (one optax step)
# ============================================================================================
# The parametrized tests above run with 06's entry put into WRONG for the duration of each
# test (its exercises come before the training, which the wrong-solution run stops short of).

WRONG_06 = {
    "negative_elbo": (
        "def negative_elbo(model, key, x):\n"
        "    # the KL added instead of subtracted\n"
        "    mean, log_var = model.encode(x)\n"
        "    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)\n"
        "    logits = model.decode(z)\n"
        "    reconstruction = jnp.sum(\n"
        "        x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), axis=-1\n"
        "    )\n"
        "    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)\n"
        "    return -jnp.mean(reconstruction + kl)\n",
        "the KL term has the wrong sign",
    ),
    "optimizer_step": (
        "def optimizer_step(loss_fn, optimizer, params, opt_state, key, x):\n"
        "    # the updates subtracted: gradient ascent\n"
        "    loss, grads = jax.value_and_grad(loss_fn)(params, key, x)\n"
        "    updates, opt_state = optimizer.update(grads, opt_state, params)\n"
        "    return jax.tree.map(lambda p, u: p - u, params, updates), opt_state, loss\n",
        "gradient ascent",
    ),
}


def test_06_exercise_cells_are_tagged_and_complete(monkeypatch):
    monkeypatch.setitem(WRONG, "06_train_vae_mnist", WRONG_06)
    test_exercise_cells_are_tagged_and_complete("06_train_vae_mnist")


def test_06_wrong_solutions_get_named_feedback_and_the_lesson_goes_on(
    monkeypatch, figures_elsewhere
):
    monkeypatch.setitem(WRONG, "06_train_vae_mnist", WRONG_06)
    test_wrong_solutions_get_named_feedback_and_the_lesson_goes_on(
        "06_train_vae_mnist", figures_elsewhere
    )
