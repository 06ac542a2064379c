"""vae_edu.exercises and vae_edu.lesson_checks: the in-lesson exercises' feedback.

For each exercise of notebooks 00, 02 and 03: the stub says "not done yet" and falls back on
the reference, the correct solution passes (and is returned), at least two plausible wrong
solutions get their named feedback (and the reference is returned), and a student function
that raises or returns None never breaks the lesson.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_edu import exercises, grading, lesson_checks
from vae_edu.kl import kl_diag_gaussians


def stub(*args):
    raise NotImplementedError(exercises.stub_message("9.9"))


def run_quietly(capsys, check, fn, reference):
    returned = exercises.run(check, fn, reference, name="Exercise 9.9")
    return returned, capsys.readouterr().out


# ------------------------------------------------------------------ exercises.run itself


def test_stub_message_convention():
    assert exercises.stub_message("2.1") == "Exercise 2.1: your code here"
    assert exercises.stub_message("Exercise 0.1") == "Exercise 0.1: your code here"


def test_stub_path_says_not_done_and_returns_the_reference(capsys):
    returned, out = run_quietly(capsys, grading.check_kl_two_gaussians, stub, kl_diag_gaussians)
    assert returned is kl_diag_gaussians
    assert out.strip() == (
        "Exercise 9.9: not done yet: the lesson goes on with the reference implementation "
        "`vae_edu.kl.kl_diag_gaussians`."
    )


def test_rerunning_the_feedback_cell_on_the_returned_reference_is_not_called_correct(capsys):
    # kl_diag = run(check, kl_diag, kl_diag_gaussians) returned the reference; the student
    # runs the feedback cell again without re-running the stub cell.
    returned, out = run_quietly(
        capsys, grading.check_kl_two_gaussians, kl_diag_gaussians, kl_diag_gaussians
    )
    assert returned is kl_diag_gaussians
    assert "not done yet" in out and "still the reference implementation" in out
    assert "correct" not in out


def test_correct_path_returns_the_students_function(capsys):
    def kl_diag(mean_q, log_var_q, mean_p, log_var_p):
        return kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)

    returned, out = run_quietly(capsys, grading.check_kl_two_gaussians, kl_diag, kl_diag_gaussians)
    assert returned is kl_diag
    assert out.startswith("Exercise 9.9: correct")
    assert "your `kl_diag`" in out


@pytest.mark.parametrize(
    "bad",
    [
        lambda *a: None,
        lambda *a: 1 / 0,
        lambda *a: "text",
        None,
        3.0,
    ],
    ids=["returns-None", "raises", "returns-str", "None", "number"],
)
def test_broken_student_code_never_raises(capsys, bad):
    returned, out = run_quietly(capsys, grading.check_kl_two_gaussians, bad, kl_diag_gaussians)
    assert returned is kl_diag_gaussians
    assert "not correct yet" in out or "no function" in out
    assert "the reference implementation `vae_edu.kl.kl_diag_gaussians`" in out


def test_system_exit_in_student_code_is_caught_but_keyboard_interrupt_is_not(capsys):
    def exits(*a):
        raise SystemExit(3)

    def broken_check(fn):
        fn()

    returned, out = run_quietly(capsys, broken_check, exits, kl_diag_gaussians)
    assert returned is kl_diag_gaussians and "SystemExit" in out

    def interrupted(*a):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exercises.run(broken_check, interrupted, kl_diag_gaussians, name="Exercise 9.9")


def test_reference_name():
    assert exercises.reference_name(kl_diag_gaussians) == "vae_edu.kl.kl_diag_gaussians"
    assert (
        exercises.reference_name(lesson_checks.iwae_estimate)
        == "vae_edu.lesson_checks.iwae_estimate"
    )


# ------------------------------------------- 02, Exercise 2.1: KL between diagonal Gaussians


def kl_swapped(mean_q, log_var_q, mean_p, log_var_p):
    return kl_diag_gaussians(mean_p, log_var_p, mean_q, log_var_q)


def kl_log_sigma(mean_q, log_var_q, mean_p, log_var_p):
    # log_var read as log sigma
    return kl_diag_gaussians(mean_q, 2 * log_var_q, mean_p, 2 * log_var_p)


def kl_mean_over_dims(mean_q, log_var_q, mean_p, log_var_p):
    return kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p) / mean_q.shape[-1]


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (kl_swapped, "KL(p || q) instead of KL(q || p)"),
        (kl_log_sigma, "log sigma and log sigma^2"),
        (kl_mean_over_dims, "averaged over the latent dimensions"),
    ],
)
def test_kl_exercise_wrong_solutions_get_named_feedback(capsys, wrong, phrase):
    returned, out = run_quietly(capsys, grading.check_kl_two_gaussians, wrong, kl_diag_gaussians)
    assert returned is kl_diag_gaussians
    assert phrase in out


# ------------------------------------------------------------- 00, Exercise 0.1: the keys


def sample_means_vectorised(key, num_means, sample_size):
    return jnp.mean(jax.random.normal(key, (num_means, sample_size)), axis=1)


def sample_means_reused_key(key, num_means, sample_size):
    return jnp.stack([jnp.mean(jax.random.normal(key, (sample_size,))) for _ in range(num_means)])


def sample_means_fixed_key(key, num_means, sample_size):
    return lesson_checks.sample_means(jax.random.key(0), num_means, sample_size)


def sample_means_numpy(key, num_means, sample_size):
    return np.random.default_rng().normal(size=(num_means, sample_size)).mean(axis=1)


def sample_means_sums(key, num_means, sample_size):
    return lesson_checks.sample_means(key, num_means, sample_size) * sample_size


def sample_means_one_key_per_mean_reused_inside(key, num_means, sample_size):
    keys = jax.random.split(key, num_means)
    return jnp.stack(
        [jnp.mean(jnp.stack([jax.random.normal(k) for _ in range(sample_size)])) for k in keys]
    )


@pytest.mark.parametrize("correct", [lesson_checks.sample_means, sample_means_vectorised])
def test_sample_means_correct_solutions_pass(correct):
    result = lesson_checks.check_sample_means(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (sample_means_reused_key, "reused key"),
        (sample_means_fixed_key, "inside the function"),
        (sample_means_numpy, "global random state"),
        (sample_means_sums, "sums of the draws"),
        (sample_means_one_key_per_mean_reused_inside, "share one key"),
        (stub, "not implemented yet"),
    ],
)
def test_sample_means_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_sample_means(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_sample_means_reference_statistics():
    # An independent route: the means of 4000 x 25 draws have variance 1/25.
    values = np.asarray(lesson_checks.sample_means(jax.random.key(5), 4000, 25), np.float64)
    assert abs(values.var(ddof=1) * 25 - 1.0) < 5 * math.sqrt(2 / 3999)
    assert abs(values.mean()) < 5 / math.sqrt(4000 * 25)


# ---------------------------------------------------- 03, Exercise 3.2: the IWAE estimate


def iwae_mean_of_logs(log_w):
    return jnp.mean(log_w, axis=0)


def iwae_no_log_k(log_w):
    return jax.nn.logsumexp(log_w, axis=0)


def iwae_naive(log_w):
    return jnp.log(jnp.mean(jnp.exp(log_w), axis=0))


def iwae_divided_by_k(log_w):
    return jax.nn.logsumexp(log_w, axis=0) / log_w.shape[0]


def iwae_shift_not_added_back(log_w):
    top = jnp.max(log_w, axis=0)
    return jnp.log(jnp.mean(jnp.exp(log_w - top), axis=0))


def iwae_wrong_axis(log_w):
    return jax.nn.logsumexp(log_w, axis=-1) - jnp.log(log_w.shape[-1])


def iwae_stop_gradient(log_w):
    return jax.lax.stop_gradient(lesson_checks.iwae_estimate(log_w))


def iwae_by_hand(log_w):
    # A correct solution written without jax.nn.logsumexp.
    top = jnp.max(log_w, axis=0)
    return top + jnp.log(jnp.mean(jnp.exp(log_w - top), axis=0))


@pytest.mark.parametrize("correct", [lesson_checks.iwae_estimate, iwae_by_hand])
def test_iwae_correct_solutions_pass(correct):
    result = lesson_checks.check_iwae_estimate(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (iwae_mean_of_logs, "that is the ELBO estimate"),
        (iwae_no_log_k, "SUM of the weights"),
        (iwae_naive, "overflows to inf"),
        (iwae_divided_by_k, "divided logsumexp by k"),
        (iwae_shift_not_added_back, "did not add the maximum back"),
        (iwae_wrong_axis, "reduce with axis=0"),
        (iwae_stop_gradient, "wrong gradient"),
        (stub, "not implemented yet"),
    ],
)
def test_iwae_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_iwae_estimate(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_iwae_reference_against_direct_float64_formula():
    log_w = np.random.default_rng(0).normal(-1.0, 0.5, size=(6, 4))
    direct = np.log(np.mean(np.exp(log_w), axis=0))
    assert np.allclose(lesson_checks.iwae_estimate(jnp.asarray(log_w, jnp.float32)), direct, 1e-5)


def test_iwae_exercise_feedback_through_run(capsys):
    returned, out = run_quietly(
        capsys, lesson_checks.check_iwae_estimate, iwae_mean_of_logs, lesson_checks.iwae_estimate
    )
    assert returned is lesson_checks.iwae_estimate
    assert "that is the ELBO estimate" in out
    assert "`vae_edu.lesson_checks.iwae_estimate`" in out


# ---------------------------------------------------- 03, Exercise 3.1: the ELBO estimate


def elbo_by_hand(key, model, x, mean, log_var, num_samples):
    eps = jax.random.normal(key, (num_samples, *mean.shape))
    z = mean + jnp.exp(0.5 * log_var) * eps
    log_q = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + log_var + eps**2, axis=-1)
    return jnp.mean(model.log_likelihood(x, z) + model.log_prior(z) - log_q)


def elbo_plus_kl(key, model, x, mean, log_var, num_samples):
    eps = jax.random.normal(key, (num_samples, *mean.shape))
    z = mean + jnp.exp(0.5 * log_var) * eps
    return jnp.mean(model.log_likelihood(x, z)) + kl_diag_gaussians(mean, log_var)


def elbo_summed(key, model, x, mean, log_var, num_samples):
    return num_samples * elbo_by_hand(key, model, x, mean, log_var, num_samples)


@pytest.mark.slow
@pytest.mark.parametrize("correct", [elbo_by_hand, lesson_checks.elbo_estimate])
def test_elbo_correct_solutions_pass(correct):
    result = grading.check_elbo_estimate(correct)
    assert result.passed, result.feedback


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (elbo_plus_kl, "added the KL instead of subtracting it"),
        (elbo_summed, "average over the samples, do not sum"),
    ],
)
def test_elbo_mistakes_are_named(capsys, wrong, phrase):
    returned, out = run_quietly(
        capsys, grading.check_elbo_estimate, wrong, lesson_checks.elbo_estimate
    )
    assert returned is lesson_checks.elbo_estimate
    assert phrase in out


# ============================================================================================
# 05, Exercises 5.1 (the training loss) and 5.2 (one optax step)
# ============================================================================================

import optax  # noqa: E402
from vae_test_models import tiny_vae  # noqa: E402


def negative_elbo_by_hand(model, x, key):
    mean, log_var = model.encode(x)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    logits = model.decode(z)
    reconstruction = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)  # the other form
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
    return jnp.mean(kl - reconstruction)


def _loss_variant(*, kl_sign=-1.0, kl_half=0.5, sigma_power=0.5, reduce="mean", stop=False):
    def negative_elbo(model, x, key):
        mean, log_var = model.encode(x)
        z = mean + jnp.exp(sigma_power * log_var) * jax.random.normal(key, mean.shape)
        if stop:
            z = jax.lax.stop_gradient(z)
        logits = model.decode(z)
        log_lik = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
        per_pixel_mean = reduce == "pixel_mean"
        reconstruction = jnp.mean(log_lik, -1) if per_pixel_mean else jnp.sum(log_lik, -1)
        kl = kl_half * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
        per_image = -(reconstruction + kl_sign * kl)
        return jnp.sum(per_image) if reduce == "sum" else jnp.mean(per_image)

    return negative_elbo


def negative_elbo_fixed_key(model, x, key):
    return lesson_checks.negative_elbo(model, x, jax.random.key(0))


@pytest.mark.parametrize("correct", [lesson_checks.negative_elbo, negative_elbo_by_hand])
def test_negative_elbo_correct_solutions_pass(correct):
    result = lesson_checks.check_negative_elbo(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (_loss_variant(kl_sign=1.0), "KL term has the wrong sign"),
        (_loss_variant(kl_half=1.0), "0.5 in front of"),
        (_loss_variant(reduce="sum"), "summed over the batch"),
        (_loss_variant(reduce="pixel_mean"), "averaged the reconstruction term over the"),
        (_loss_variant(sigma_power=1.0), "exp(log_var) is sigma^2, not sigma"),
        (_loss_variant(stop=True), "no gradient flows from the reconstruction term"),
        (lambda m, x, k: -lesson_checks.negative_elbo(m, x, k), "returned the ELBO itself"),
        (negative_elbo_fixed_key, "does not change with the key"),
        (stub, "not implemented yet"),
    ],
    ids=[
        "kl-sign",
        "no-half",
        "batch-sum",
        "pixel-mean",
        "sigma-as-variance",
        "stop-gradient",
        "elbo-not-loss",
        "own-key",
        "stub",
    ],
)
def test_negative_elbo_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_negative_elbo(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_negative_elbo_reference_equals_the_models_loss():
    # An independent route: VAE.loss (through vae_edu.elbo, x l - softplus(l) form).
    model = tiny_vae(3, seed=0)
    x = (np.random.default_rng(1).uniform(size=(7, 784)) < 0.3).astype(np.float32)
    key = jax.random.key(2)
    expected, _ = model.loss(key, jnp.asarray(x))
    assert np.isclose(float(lesson_checks.negative_elbo(model, x, key)), float(expected), 1e-5)


def test_negative_elbo_exercise_stub_and_wrong_paths_through_run(capsys):
    returned, out = run_quietly(
        capsys, lesson_checks.check_negative_elbo, stub, lesson_checks.negative_elbo
    )
    assert returned is lesson_checks.negative_elbo and "not done yet" in out
    returned, out = run_quietly(
        capsys,
        lesson_checks.check_negative_elbo,
        _loss_variant(kl_sign=1.0),
        lesson_checks.negative_elbo,
    )
    assert returned is lesson_checks.negative_elbo
    assert "KL term has the wrong sign" in out
    assert "`vae_edu.lesson_checks.negative_elbo`" in out


def optimizer_step_with_tree_map(loss_fn, optimizer, params, opt_state, x, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, loss


def optimizer_step_ascent(loss_fn, optimizer, params, opt_state, x, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - u, params, updates), opt_state, loss


def optimizer_step_ascent_by_negated_loss(loss_fn, optimizer, params, opt_state, x, key):
    params, opt_state, loss = lesson_checks.optimizer_step(
        lambda p, x, k: -loss_fn(p, x, k), optimizer, params, opt_state, x, key
    )
    return params, opt_state, -loss


def optimizer_step_old_state(loss_fn, optimizer, params, opt_state, x, key):
    params, _, loss = lesson_checks.optimizer_step(loss_fn, optimizer, params, opt_state, x, key)
    return params, opt_state, loss


def optimizer_step_raw_gradient(loss_fn, optimizer, params, opt_state, x, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
    return jax.tree.map(lambda p, g: p - g, params, grads), opt_state, loss


def optimizer_step_loss_after(loss_fn, optimizer, params, opt_state, x, key):
    params, opt_state, _ = lesson_checks.optimizer_step(
        loss_fn, optimizer, params, opt_state, x, key
    )
    return params, opt_state, loss_fn(params, x, key)


def optimizer_step_split_key(loss_fn, optimizer, params, opt_state, x, key):
    _, key = jax.random.split(key)
    return lesson_checks.optimizer_step(loss_fn, optimizer, params, opt_state, x, key)


@pytest.mark.parametrize("correct", [lesson_checks.optimizer_step, optimizer_step_with_tree_map])
def test_optimizer_step_correct_solutions_pass(correct):
    result = lesson_checks.check_optimizer_step(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (optimizer_step_ascent, "gradient ascent"),
        (optimizer_step_ascent_by_negated_loss, "gradient ascent"),
        (optimizer_step_old_state, "returned the old optimizer state"),
        (optimizer_step_raw_gradient, "subtracted the raw gradient"),
        (optimizer_step_loss_after, "UPDATED parameters"),
        (optimizer_step_split_key, "not computed with the key you were given"),
        (lambda *a: lesson_checks.optimizer_step(*a)[:2], "return the triple"),
        (stub, "not implemented yet"),
    ],
)
def test_optimizer_step_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_optimizer_step(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_optimizer_step_reference_is_gradient_descent():
    # An independent route: with plain SGD the step is theta - lr * grad, by hand.
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    x = jnp.array([[1.0, 2.0], [3.0, -1.0]])

    def loss_fn(p, x, key):
        return jnp.mean((x @ p["w"] + p["b"]) ** 2)

    sgd = optax.sgd(0.1)
    new, _, loss = lesson_checks.optimizer_step(
        loss_fn, sgd, params, sgd.init(params), x, jax.random.key(0)
    )
    residual = np.asarray(x) @ np.array([1.0, -2.0]) + 0.5  # (2,)
    grad_w = 2 * np.asarray(x).T @ residual / 2
    grad_b = 2 * residual.mean()
    assert np.isclose(float(loss), np.mean(residual**2))
    assert np.allclose(new["w"], np.array([1.0, -2.0]) - 0.1 * grad_w, atol=1e-6)
    assert np.isclose(float(new["b"]), 0.5 - 0.1 * grad_b, atol=1e-6)
