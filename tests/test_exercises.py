"""vae_edu.exercises and vae_edu.lesson_checks: the in-lesson exercises' feedback.

For each exercise of notebooks 00 and 02-09: the stub says "not done yet" and falls back on
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


# ==========================================================================================
# Notebooks 07 and 08: Exercise 7.1 (traversal on the prior's quantiles), 7.2 (the
# spherical path), 7.1 (hat L_k from the first k log-weights), 7.2 (the effective sample
# size). Each: correct solutions pass, plausible wrong ones get their named feedback, the
# stub falls back on the reference; and each reference against an independent route.
# ==========================================================================================

from scipy import stats  # noqa: E402 - this section's own imports

from vae_edu import evaluate  # noqa: E402
from vae_edu.latent import interpolation_codes  # noqa: E402

# ------------------------------------------- 07, Exercise 7.1: traversal on the quantiles


def traversal_by_scipy(z0, k, num_values):
    codes = np.repeat(np.asarray(z0, np.float64)[None], num_values, axis=0)
    codes[:, k] = stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)
    return codes


def traversal_all_dims(z0, k, num_values):
    values = stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)
    return np.repeat(values[:, None], len(z0), axis=1)


def traversal_from_zeros(z0, k, num_values):
    codes = np.zeros((num_values, len(z0)))
    codes[:, k] = stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)
    return codes


def traversal_one_based(z0, k, num_values):
    codes = np.tile(z0, (num_values, 1))
    codes[:, (k + 1) % len(z0)] = stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)
    return codes


def traversal_endpoint_grid(z0, k, num_values):
    codes = np.tile(z0, (num_values, 1))
    codes[:, k] = stats.norm.ppf(np.linspace(0, 1, num_values))
    return codes


def traversal_evenly_spaced(z0, k, num_values):
    codes = np.tile(z0, (num_values, 1))
    codes[:, k] = np.linspace(-3, 3, num_values)
    return codes


def traversal_shifted_grid(z0, k, num_values):
    codes = np.tile(z0, (num_values, 1))
    codes[:, k] = stats.norm.ppf(np.arange(1, num_values + 1) / (num_values + 1))
    return codes


def traversal_cdf(z0, k, num_values):
    codes = np.tile(z0, (num_values, 1))
    codes[:, k] = stats.norm.cdf((np.arange(num_values) + 0.5) / num_values)
    return codes


def traversal_in_place(z0, k, num_values):
    rows = []
    for value in lesson_checks.quantile_traversal(z0, k, num_values)[:, k]:
        z0[k] = value  # changes the caller's array
        rows.append(z0.copy())
    return np.stack(rows)


def traversal_values_only(z0, k, num_values):
    return stats.norm.ppf((np.arange(num_values) + 0.5) / num_values)


@pytest.mark.parametrize("correct", [lesson_checks.quantile_traversal, traversal_by_scipy])
def test_quantile_traversal_correct_solutions_pass(correct):
    result = lesson_checks.check_quantile_traversal(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (traversal_all_dims, "every coordinate of your codes"),
        (traversal_from_zeros, "the other coordinates of your codes are 0"),
        (traversal_one_based, "k counts from 0"),
        (traversal_endpoint_grid, "u_i = i / (n - 1)"),
        (traversal_evenly_spaced, "evenly spaced in z, not in probability"),
        (traversal_shifted_grid, "u_i = (i + 1) / (n + 1)"),
        (traversal_cdf, "applied the CDF"),
        (traversal_in_place, "changed z0 in place"),
        (traversal_values_only, "n values of z_k alone"),
        (stub, "not implemented yet"),
    ],
)
def test_quantile_traversal_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_quantile_traversal(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_quantile_traversal_reference_cells_hold_equal_prior_mass():
    z0 = np.array([0.3, -1.2, 2.0], np.float32)
    codes = lesson_checks.quantile_traversal(z0, 1, 8)
    assert codes.shape == (8, 3) and np.all(codes[:, [0, 2]] == z0[[0, 2]])
    # Independent route: Phi of the values are the midpoints (i + 1/2) / n of n equal cells.
    assert np.allclose(stats.norm.cdf(codes[:, 1]), (np.arange(8) + 0.5) / 8, atol=1e-6)


# ------------------------------------------------ 07, Exercise 7.2: the spherical path


def spherical_by_angles(z_a, z_b, num_steps):
    # A correct solution by rotation in the plane of z_a and z_b, with the norm interpolated
    # as slerp does for unequal norms: written differently, same path.
    z_a, z_b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    theta = np.arccos(np.dot(z_a, z_b) / (np.linalg.norm(z_a) * np.linalg.norm(z_b)))
    t = np.linspace(0.0, 1.0, num_steps)[:, None]
    return (np.sin((1 - t) * theta) * z_a + np.sin(t * theta) * z_b) / np.sin(theta)


def spherical_linear(z_a, z_b, num_steps):
    return interpolation_codes(z_a, z_b, np.linspace(0, 1, num_steps))


def spherical_one_too_many(z_a, z_b, num_steps):
    return lesson_checks.spherical_path(z_a, z_b, num_steps + 1)


def spherical_never_reaches_the_end(z_a, z_b, num_steps):
    full = spherical_by_angles(z_a, z_b, 2 * num_steps + 1)  # t = i / (2n), i = 0..2n
    return full[: 2 * num_steps : 2]  # t = i / n, i = 0..n-1


def spherical_swapped(z_a, z_b, num_steps):
    return lesson_checks.spherical_path(z_b, z_a, num_steps)


def spherical_raw_dot(z_a, z_b, num_steps):
    theta = np.arccos(np.dot(z_a, z_b))
    t = np.linspace(0.0, 1.0, num_steps)[:, None]
    return (np.sin((1 - t) * theta) * z_a + np.sin(t * theta) * z_b) / np.sin(theta)


def spherical_not_divided(z_a, z_b, num_steps):
    theta = np.arccos(np.dot(z_a, z_b) / (np.linalg.norm(z_a) * np.linalg.norm(z_b)))
    t = np.linspace(0.0, 1.0, num_steps)[:, None]
    return np.sin((1 - t) * theta) * z_a + np.sin(t * theta) * z_b


@pytest.mark.parametrize("correct", [lesson_checks.spherical_path, spherical_by_angles])
def test_spherical_path_correct_solutions_pass(correct):
    result = lesson_checks.check_spherical_path(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (spherical_linear, "that is the straight line"),
        (spherical_one_too_many, "num_steps + 1 points"),
        (spherical_never_reaches_the_end, "stops one step short of 1"),
        (spherical_swapped, "the ends are swapped"),
        (spherical_raw_dot, "raw dot product"),
        (spherical_not_divided, "without the division by sin(theta)"),
        (stub, "not implemented yet"),
    ],
)
def test_spherical_path_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_spherical_path(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_spherical_path_reference_keeps_the_norm_and_steps_evenly_in_angle():
    rng = np.random.default_rng(11)
    z_a, z_b = rng.normal(size=(2, 16))
    z_b *= np.linalg.norm(z_a) / np.linalg.norm(z_b)  # equal norms
    path = lesson_checks.spherical_path(z_a, z_b, 7).astype(np.float64)
    assert np.all(path[0] == np.float32(z_a)) and np.all(path[-1] == np.float32(z_b))
    assert np.allclose(np.linalg.norm(path, axis=1), np.linalg.norm(z_a), rtol=1e-5)
    unit = path / np.linalg.norm(path, axis=1, keepdims=True)
    angles = np.arccos(np.clip(np.sum(unit[1:] * unit[:-1], axis=1), -1, 1))
    assert np.allclose(angles, angles[0], rtol=1e-3)  # equal angular steps
    parallel = lesson_checks.spherical_path(z_a, 2 * z_a, 3)  # sin(theta) = 0: the line
    assert np.allclose(parallel[1], 1.5 * z_a, rtol=1e-5)


# ---------------------------------------------- 08, Exercise 8.1: hat L_k from log w


def bound_by_hand(log_w, k):
    first = log_w[..., :k]
    top = first.max(axis=-1, keepdims=True)
    return np.squeeze(top, -1) + np.log(np.mean(np.exp(first - top), axis=-1))


def bound_with_jax(log_w, k):
    return jax.nn.logsumexp(jnp.asarray(log_w)[..., :k], axis=-1) - jnp.log(k)


def bound_mean_of_logs(log_w, k):
    return np.mean(log_w[..., :k], axis=-1)


def bound_no_log_k(log_w, k):
    return jax.nn.logsumexp(log_w[..., :k], axis=-1)


def bound_naive(log_w, k):
    return np.log(np.mean(np.exp(log_w[..., :k]), axis=-1))


def bound_all_weights(log_w, k):
    return jax.nn.logsumexp(log_w, axis=-1) - np.log(log_w.shape[-1])


def bound_log_big_k(log_w, k):
    return jax.nn.logsumexp(log_w[..., :k], axis=-1) - np.log(log_w.shape[-1])


def bound_off_by_one(log_w, k):
    return jax.nn.logsumexp(log_w[..., : k + 1], axis=-1) - np.log(k)


def bound_wrong_axis(log_w, k):
    return jax.nn.logsumexp(log_w[:k], axis=0) - np.log(k)


@pytest.mark.parametrize(
    "correct", [lesson_checks.iwae_bound, bound_by_hand, bound_with_jax], ids=["ref", "np", "jax"]
)
def test_iwae_bound_correct_solutions_pass(correct):
    result = lesson_checks.check_iwae_bound(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (bound_mean_of_logs, "that is the ELBO estimate"),
        (bound_no_log_k, "SUM of the k weights"),
        (bound_naive, "overflows to inf"),
        (bound_all_weights, "instead of the first k"),
        (bound_log_big_k, "instead of log k"),
        (bound_off_by_one, "off by one: you summed k + 1 weights"),
        (bound_wrong_axis, "reduce with axis=-1"),
        (stub, "not implemented yet"),
    ],
)
def test_iwae_bound_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_iwae_bound(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_iwae_bound_reference_against_the_prefix_bounds():
    # Independent route: evaluate.prefix_iwae_bounds accumulates with np.logaddexp.
    log_w = np.random.default_rng(12).normal(-90.0, 4.0, size=(3, 40))
    prefix = evaluate.prefix_iwae_bounds(log_w)
    for k in (1, 7, 40):
        assert np.allclose(lesson_checks.iwae_bound(log_w, k), prefix[:, k - 1], rtol=1e-12)
    with pytest.raises(ValueError, match="k = 41"):
        lesson_checks.iwae_bound(log_w, 41)


# ------------------------------------------- 08, Exercise 8.2: the effective sample size


def ess_normalised(log_w):
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    w_bar = w / w.sum(axis=-1, keepdims=True)
    return 1.0 / np.sum(w_bar**2, axis=-1)


def ess_with_jax(log_w):
    return jnp.exp(
        2 * jax.nn.logsumexp(log_w, axis=-1) - jax.nn.logsumexp(2 * jnp.asarray(log_w), axis=-1)
    )


def ess_unnormalised(log_w):
    return 1.0 / np.sum(np.exp(log_w) ** 2, axis=-1)


def ess_normalised_by_max(log_w):
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    return 1.0 / np.sum(w**2, axis=-1)


def ess_log_weights(log_w):
    return np.sum(log_w, axis=-1) ** 2 / np.sum(log_w**2, axis=-1)


def ess_naive(log_w):
    w = np.exp(log_w)
    return np.sum(w, axis=-1) ** 2 / np.sum(w**2, axis=-1)


def ess_fraction(log_w):
    return ess_normalised(log_w) / log_w.shape[-1]


def ess_wrong_axis(log_w):
    return ess_normalised(log_w.T)


@pytest.mark.parametrize(
    "correct",
    [evaluate.effective_sample_size, ess_normalised, ess_with_jax],
    ids=lambda fn: fn.__name__,
)
def test_effective_sample_size_correct_solutions_pass(correct):
    result = lesson_checks.check_effective_sample_size(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (ess_unnormalised, "1 / sum_i w_i^2 of the raw weights"),
        (ess_normalised_by_max, "by their LARGEST"),
        (ess_log_weights, "log-weights as if they were the weights"),
        (ess_naive, "becomes 0/0 or inf/inf"),
        (ess_fraction, "ESS / k"),
        (ess_wrong_axis, "reduce with axis=-1"),
        (stub, "not implemented yet"),
    ],
)
def test_effective_sample_size_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_effective_sample_size(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


@pytest.mark.parametrize(
    ("check", "wrong", "reference", "phrase"),
    [
        (
            lesson_checks.check_quantile_traversal,
            traversal_all_dims,
            lesson_checks.quantile_traversal,
            "every coordinate",
        ),
        (
            lesson_checks.check_spherical_path,
            spherical_linear,
            lesson_checks.spherical_path,
            "straight line",
        ),
        (lesson_checks.check_iwae_bound, bound_no_log_k, lesson_checks.iwae_bound, "SUM"),
        (
            lesson_checks.check_effective_sample_size,
            ess_log_weights,
            evaluate.effective_sample_size,
            "log-weights as if",
        ),
    ],
)
def test_lessons_06_07_stub_and_wrong_paths_fall_back_on_the_reference(
    capsys, check, wrong, reference, phrase
):
    returned, out = run_quietly(capsys, check, stub, reference)
    assert returned is reference and "not done yet" in out
    assert f"`{exercises.reference_name(reference)}`" in out
    returned, out = run_quietly(capsys, check, wrong, reference)
    assert returned is reference and "not correct yet" in out and phrase in out


# ------------------------------------------ notebook 09 (appendix): a float32-safe softplus


def softplus_logaddexp(r):
    return jnp.logaddexp(r, 0.0)


@pytest.mark.parametrize("correct", [lesson_checks.softplus, softplus_logaddexp])
def test_softplus_correct_solutions_pass(correct):
    result = lesson_checks.check_softplus(correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("wrong", "phrase"),
    [
        (lambda r: jnp.log(1.0 + jnp.exp(r)), "overflow: your softplus is [inf, inf]"),
        (
            lambda r: jnp.maximum(r, 0.0) + jnp.log(1.0 + jnp.exp(-jnp.abs(r))),
            "1 + e^-40 rounds to exactly 1",
        ),
        (lambda r: jnp.log1p(jnp.exp(-jnp.abs(r))), "You dropped max(r, 0)"),
        (
            lambda r: jnp.where(r > 0, r + jnp.log1p(jnp.exp(-r)), jnp.log1p(jnp.exp(r))),
            "a branch that is not taken still gets differentiated",
        ),
        (lambda r: 1.0, "it must work elementwise"),
    ],
)
def test_softplus_mistakes_are_named(capsys, wrong, phrase):
    returned, out = run_quietly(capsys, lesson_checks.check_softplus, wrong, lesson_checks.softplus)
    assert returned is lesson_checks.softplus
    assert phrase in out


def test_softplus_reference_against_float64():
    r = np.linspace(-80.0, 100.0, 1801).astype(np.float32)
    got = np.asarray(lesson_checks.softplus(r), np.float64)
    expected = np.logaddexp(0.0, r.astype(np.float64))
    assert np.all(np.abs(got - expected) <= 2e-7 * np.abs(expected) + 1e-45)


# ============================================================================================
# 06, Exercises 6.1 (the training loss) and 6.2 (one optax step)
# ============================================================================================

import optax  # noqa: E402
from vae_test_models import tiny_vae  # noqa: E402


def negative_elbo_by_hand(model, key, x):
    mean, log_var = model.encode(x)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    logits = model.decode(z)
    reconstruction = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)  # the other form
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
    return jnp.mean(kl - reconstruction)


def _loss_variant(*, kl_sign=-1.0, kl_half=0.5, sigma_power=0.5, reduce="mean", stop=False):
    def negative_elbo(model, key, x):
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


def negative_elbo_fixed_key(model, key, x):
    return lesson_checks.negative_elbo(model, jax.random.key(0), x)


def negative_elbo_batch_first(model, x, key):
    # lesson 06's former order: right, but the batch before the key
    return negative_elbo_by_hand(model, key, x)


def negative_elbo_batch_first_and_wrong(model, x, key):
    # the former order AND the KL's sign wrong: the order alone does not explain it
    return _loss_variant(kl_sign=1.0)(model, key, x)


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
        (lambda m, k, x: -lesson_checks.negative_elbo(m, k, x), "returned the ELBO itself"),
        (negative_elbo_fixed_key, "does not change with the key"),
        (negative_elbo_batch_first, "The key comes before the batch"),
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
        "batch-before-key",
        "stub",
    ],
)
def test_negative_elbo_mistakes_are_named(wrong, phrase):
    result = lesson_checks.check_negative_elbo(wrong)
    assert not result.passed
    assert phrase in result.feedback, result.feedback


def test_negative_elbo_batch_first_with_another_mistake_names_the_order_not_the_value():
    # Called in the new order it fails; in the old order it runs but is still wrong: the
    # feedback names the order and says the value is not right either.
    result = lesson_checks.check_negative_elbo(negative_elbo_batch_first_and_wrong)
    assert not result.passed
    assert "The key comes before the batch" in result.feedback, result.feedback
    assert "then check the formula" in result.feedback, result.feedback
    assert "gives the right loss" not in result.feedback, result.feedback


def test_negative_elbo_reference_equals_the_models_loss():
    # An independent route: VAE.loss (through vae_edu.elbo, x l - softplus(l) form).
    model = tiny_vae(3, seed=0)
    x = (np.random.default_rng(1).uniform(size=(7, 784)) < 0.3).astype(np.float32)
    key = jax.random.key(2)
    expected, _ = model.loss(key, jnp.asarray(x))
    assert np.isclose(float(lesson_checks.negative_elbo(model, key, x)), float(expected), 1e-5)


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


def optimizer_step_with_tree_map(loss_fn, optimizer, params, opt_state, key, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, key, x)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, loss


def optimizer_step_ascent(loss_fn, optimizer, params, opt_state, key, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, key, x)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - u, params, updates), opt_state, loss


def optimizer_step_ascent_by_negated_loss(loss_fn, optimizer, params, opt_state, key, x):
    params, opt_state, loss = lesson_checks.optimizer_step(
        lambda p, k, x: -loss_fn(p, k, x), optimizer, params, opt_state, key, x
    )
    return params, opt_state, -loss


def optimizer_step_old_state(loss_fn, optimizer, params, opt_state, key, x):
    params, _, loss = lesson_checks.optimizer_step(loss_fn, optimizer, params, opt_state, key, x)
    return params, opt_state, loss


def optimizer_step_raw_gradient(loss_fn, optimizer, params, opt_state, key, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, key, x)
    return jax.tree.map(lambda p, g: p - g, params, grads), opt_state, loss


def optimizer_step_loss_after(loss_fn, optimizer, params, opt_state, key, x):
    params, opt_state, _ = lesson_checks.optimizer_step(
        loss_fn, optimizer, params, opt_state, key, x
    )
    return params, opt_state, loss_fn(params, key, x)


def optimizer_step_split_key(loss_fn, optimizer, params, opt_state, key, x):
    _, key = jax.random.split(key)
    return lesson_checks.optimizer_step(loss_fn, optimizer, params, opt_state, key, x)


def optimizer_step_loss_fn_batch_first(loss_fn, optimizer, params, opt_state, key, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, key)  # the batch before the key
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


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
        (optimizer_step_loss_fn_batch_first, "loss_fn(params, key, x), the key before the batch"),
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

    def loss_fn(p, key, x):
        return jnp.mean((x @ p["w"] + p["b"]) ** 2)

    sgd = optax.sgd(0.1)
    new, _, loss = lesson_checks.optimizer_step(
        loss_fn, sgd, params, sgd.init(params), jax.random.key(0), x
    )
    residual = np.asarray(x) @ np.array([1.0, -2.0]) + 0.5  # (2,)
    grad_w = 2 * np.asarray(x).T @ residual / 2
    grad_b = 2 * residual.mean()
    assert np.isclose(float(loss), np.mean(residual**2))
    assert np.allclose(new["w"], np.array([1.0, -2.0]) - 0.1 * grad_w, atol=1e-6)
    assert np.isclose(float(new["b"]), 0.5 - 0.1 * grad_b, atol=1e-6)
