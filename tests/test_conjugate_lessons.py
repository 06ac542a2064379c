"""Tests for the lessons' additions to vae_edu.conjugate (notebooks 01, 03 and 04).

Every number is checked against an independent route computed here with numpy/scipy:

* gaussian_bayes_update against Bayes' rule done numerically on a grid (prior times
  likelihood, normalised by quadrature), scipy's normal density for the evidence, and a
  Monte Carlo draw from the joint;
* elbo_readout's log p(x) against scipy's multivariate normal density of the marginal
  N(b, W W^T + s^2 I), the ELBO against a plain Monte Carlo average with a standard-error
  tolerance, and the gap against the closed-form KL to the exact Gaussian posterior
  written out in numpy;
* fit_ppca against the stationarity of the exact log-evidence (via jax.grad) and scipy's
  multivariate normal; weighted_optimal_q against the exact posterior, a zero gradient of
  the weighted ELBO written with LinearGaussianModel.expected_log_likelihood, and numpy
  least squares in the autoencoder limit; the per-pixel expectation against a Monte
  Carlo average (5 SE).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_edu.conjugate import (
    LinearGaussianModel,
    elbo_readout,
    expected_log_likelihood_per_pixel,
    fit_ppca,
    gaussian_bayes_update,
    make_model,
    weighted_optimal_q,
)
from vae_edu.kl import kl_diag_gaussians

# ----------------------------------------------- the 1-D Bayes update (notebook 01)


SLIDER_SETTINGS = [
    # prior_mean, prior_std, noise_std, x
    (0.0, 1.0, 1.0, 0.0),
    (0.0, 1.0, 0.5, 2.0),
    (-1.5, 0.4, 2.0, 3.0),
    (2.0, 3.0, 0.2, -1.0),
    (0.7, 0.1, 0.1, 0.9),
]


def _grid_bayes(prior_mean, prior_std, noise_std, x, num_points=20001):
    """Bayes' rule by brute force: p(z|x) = p(x|z) p(z) / int p(x|z) p(z) dz on a grid."""
    width = 12 * max(prior_std, noise_std)
    z = np.linspace(min(prior_mean, x) - width, max(prior_mean, x) + width, num_points)
    joint = stats.norm.pdf(x, loc=z, scale=noise_std) * stats.norm.pdf(z, prior_mean, prior_std)
    evidence = integrate.simpson(joint, x=z)
    posterior = joint / evidence
    mean = integrate.simpson(z * posterior, x=z)
    var = integrate.simpson((z - mean) ** 2 * posterior, x=z)
    return mean, math.sqrt(var), evidence


@pytest.mark.parametrize("prior_mean, prior_std, noise_std, x", SLIDER_SETTINGS)
def test_update_matches_grid_bayes(prior_mean, prior_std, noise_std, x):
    post = gaussian_bayes_update(prior_mean, prior_std, noise_std, x)
    mean, std, evidence = _grid_bayes(prior_mean, prior_std, noise_std, x)
    assert post.mean == pytest.approx(mean, abs=1e-6)
    assert post.std == pytest.approx(std, rel=1e-6)
    assert post.evidence == pytest.approx(evidence, rel=1e-6)
    assert post.log_evidence == pytest.approx(math.log(evidence), abs=1e-6)


@pytest.mark.parametrize("prior_mean, prior_std, noise_std, x", SLIDER_SETTINGS)
def test_evidence_is_scipy_marginal(prior_mean, prior_std, noise_std, x):
    post = gaussian_bayes_update(prior_mean, prior_std, noise_std, x)
    marginal_std = math.hypot(prior_std, noise_std)
    assert post.log_evidence == pytest.approx(
        stats.norm.logpdf(x, prior_mean, marginal_std), rel=1e-12, abs=1e-12
    )


def test_update_matches_monte_carlo_conditioning():
    """Simulate (z, x) from the joint, keep the draws whose x lands near x_obs, and compare
    their z with the posterior: Bayes' rule as counting, with a 5-standard-error tolerance."""
    rng = np.random.default_rng(0)
    prior_mean, prior_std, noise_std, x_obs = 1.0, 2.0, 1.0, 2.5
    z = rng.normal(prior_mean, prior_std, size=4_000_000)
    x = z + noise_std * rng.normal(size=z.shape)
    kept = z[np.abs(x - x_obs) < 0.01]
    post = gaussian_bayes_update(prior_mean, prior_std, noise_std, x_obs)
    se_mean = kept.std() / math.sqrt(kept.size)
    assert abs(kept.mean() - post.mean) < 5 * se_mean
    se_std = post.std / math.sqrt(2 * (kept.size - 1))  # standard error of a normal sample's std
    assert abs(kept.std() - post.std) < 5 * se_std
    # The evidence is the density of x: the fraction of draws in the window over its width.
    frac = np.mean(np.abs(x - x_obs) < 0.01)
    se_frac = math.sqrt(frac * (1 - frac) / x.size)
    assert abs(frac / 0.02 - post.evidence) < 5 * se_frac / 0.02 + 1e-4  # + window bias bound


def test_limits_of_the_update():
    # A very noisy observation barely moves the prior.
    post = gaussian_bayes_update(1.0, 0.5, 1e4, 30.0)
    assert post.mean == pytest.approx(1.0, abs=1e-6)
    assert post.std == pytest.approx(0.5, rel=1e-6)
    # A flat prior hands the posterior to the likelihood.
    post = gaussian_bayes_update(1.0, 1e4, 0.3, -2.0)
    assert post.mean == pytest.approx(-2.0, abs=1e-6)
    assert post.std == pytest.approx(0.3, rel=1e-6)
    # Equal precisions: the posterior mean is halfway, the variance halves.
    post = gaussian_bayes_update(0.0, 1.0, 1.0, 2.0)
    assert post.mean == pytest.approx(1.0)
    assert post.std == pytest.approx(math.sqrt(0.5))


def test_extreme_inputs_stay_finite():
    for args in [(0.0, 1e-15, 1e15, 1e6), (1e6, 1e15, 1e-15, -1e6), (0.0, 1e-150, 1e-150, 1.0)]:
        post = gaussian_bayes_update(*args)
        assert all(math.isfinite(v) for v in (post.mean, post.std, post.log_evidence)), args
        assert post.std > 0
    # The evidence underflows to 0 far in the tail, but its log stays exact.
    post = gaussian_bayes_update(0.0, 1.0, 1.0, 1e3)
    assert post.evidence == 0.0
    assert post.log_evidence == pytest.approx(stats.norm.logpdf(1e3, 0.0, math.sqrt(2.0)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prior_mean=0.0, prior_std=0.0, noise_std=1.0, x=0.0), "prior_std"),
        (dict(prior_mean=0.0, prior_std=1.0, noise_std=-1.0, x=0.0), "noise_std"),
        (dict(prior_mean=0.0, prior_std=1.0, noise_std=math.inf, x=0.0), "noise_std"),
        (dict(prior_mean=math.nan, prior_std=1.0, noise_std=1.0, x=0.0), "prior_mean"),
        (dict(prior_mean=0.0, prior_std=1.0, noise_std=1.0, x=math.inf), "x"),
    ],
)
def test_bad_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_bayes_update(**kwargs)


# --------------------------------------------- the exact ELBO readout (notebook 03)


def _np(model):
    w = np.asarray(model.weight, dtype=np.float64)
    b = np.asarray(model.bias, dtype=np.float64)
    var_x = float(np.exp(np.asarray(model.log_var_x, dtype=np.float64)))
    return w, b, var_x


def _exact_posterior(model, x):
    """p(z|x) = N(S W^T (x - b) / var_x, S) with S = (I + W^T W / var_x)^{-1} (Bishop eq. 2.116)."""
    w, b, var_x = _np(model)
    cov = np.linalg.inv(np.eye(w.shape[1]) + w.T @ w / var_x)
    return cov @ w.T @ (np.asarray(x, np.float64) - b) / var_x, cov


def _kl_gaussians_full(mean_q, cov_q, mean_p, cov_p):
    """KL(N(mean_q, cov_q) || N(mean_p, cov_p)) in float64 numpy."""
    d = mean_q.size
    cov_p_inv = np.linalg.inv(cov_p)
    diff = mean_p - mean_q
    return 0.5 * (
        np.trace(cov_p_inv @ cov_q)
        + diff @ cov_p_inv @ diff
        - d
        + np.linalg.slogdet(cov_p)[1]
        - np.linalg.slogdet(cov_q)[1]
    )


def _observation(model, seed):
    return np.asarray(model.sample(jax.random.key(seed), 1).x[0])


def test_log_evidence_matches_scipy_marginal(model_2d):
    w, b, var_x = _np(model_2d)
    x = _observation(model_2d, 2)
    readout = elbo_readout(model_2d, x, jnp.zeros(2), jnp.zeros(2))
    expected = stats.multivariate_normal(b, w @ w.T + var_x * np.eye(3)).logpdf(x)
    np.testing.assert_allclose(float(readout.log_evidence), expected, rtol=1e-5, atol=1e-5)


def test_elbo_matches_monte_carlo_average(model_2d):
    """ELBO = E_q[log p(x|z) + log p(z) - log q(z)], estimated with 200k scipy-scored draws."""
    w, b, var_x = _np(model_2d)
    x = _observation(model_2d, 3)
    q_mean, q_std = np.array([0.3, -0.8]), np.array([0.6, 1.4])
    readout = elbo_readout(model_2d, x, q_mean, 2.0 * np.log(q_std))

    rng = np.random.default_rng(0)
    z = q_mean + q_std * rng.standard_normal((200_000, 2))
    log_lik = stats.norm(z @ w.T + b, np.sqrt(var_x)).logpdf(x).sum(-1)
    log_prior = stats.norm(0.0, 1.0).logpdf(z).sum(-1)
    log_q = stats.norm(q_mean, q_std).logpdf(z).sum(-1)
    samples = log_lik + log_prior - log_q
    estimate, se = samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(float(readout.elbo) - estimate) < 5 * se
    # The two terms separately: reconstruction by MC, KL by scipy-free closed form.
    recon_se = log_lik.std(ddof=1) / np.sqrt(log_lik.size)
    assert abs(float(readout.reconstruction) - log_lik.mean()) < 5 * recon_se
    kl_prior = _kl_gaussians_full(q_mean, np.diag(q_std**2), np.zeros(2), np.eye(2))
    np.testing.assert_allclose(float(readout.kl), kl_prior, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gap_equals_kl_to_exact_posterior(model_2d, seed):
    x = _observation(model_2d, 10 + seed)
    rng = np.random.default_rng(seed)
    q_mean = rng.normal(size=2)
    q_log_var = rng.uniform(-2.0, 1.0, size=2)
    readout = elbo_readout(model_2d, x, q_mean, q_log_var)
    post_mean, post_cov = _exact_posterior(model_2d, x)
    expected = _kl_gaussians_full(q_mean, np.diag(np.exp(q_log_var)), post_mean, post_cov)
    np.testing.assert_allclose(float(readout.gap), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        float(readout.elbo), float(readout.reconstruction) - float(readout.kl), rtol=1e-6
    )


def test_gap_vanishes_at_exact_posterior_in_one_dimension(model_1d):
    """A 1-D Gaussian q can equal the exact posterior; then ELBO = log p(x)."""
    x = _observation(model_1d, 4)
    post_mean, post_cov = _exact_posterior(model_1d, x)
    readout = elbo_readout(model_1d, x, post_mean, np.log(np.diag(post_cov)))
    assert abs(float(readout.gap)) < 1e-4
    off = elbo_readout(model_1d, x, post_mean + 0.5, np.log(np.diag(post_cov)))
    assert float(off.gap) > 0.01


def test_elbo_never_exceeds_log_evidence_even_for_extreme_q(model_2d):
    x = _observation(model_2d, 5)
    rng = np.random.default_rng(7)
    q_mean = rng.normal(scale=3.0, size=(500, 2))
    q_log_var = rng.uniform(-30.0, 30.0, size=(500, 2))
    readout = elbo_readout(model_2d, np.broadcast_to(x, (500, 3)), q_mean, q_log_var)
    assert readout.elbo.shape == (500,)
    assert np.all(np.isfinite(np.asarray(readout.elbo)))
    assert np.all(np.asarray(readout.gap) >= -1e-4)


def test_jit_vmap_and_gradient(model_1d):
    """d ELBO / d m = W^T (x - W m - b) / var_x - m  (differentiate the closed form by hand)."""
    w, b, var_x = _np(model_1d)
    x = _observation(model_1d, 6)
    q_mean, q_log_var = jnp.array([0.4]), jnp.array([-1.0])

    eager = elbo_readout(model_1d, x, q_mean, q_log_var)
    jitted = jax.jit(lambda m, v: elbo_readout(model_1d, x, m, v))(q_mean, q_log_var)
    np.testing.assert_allclose(float(jitted.elbo), float(eager.elbo), rtol=1e-6)

    means = jnp.linspace(-1.0, 1.0, 5)[:, None]
    batched = jax.vmap(lambda m: elbo_readout(model_1d, x, m, q_log_var).elbo)(means)
    looped = [float(elbo_readout(model_1d, x, m, q_log_var).elbo) for m in means]
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-6)

    grad = jax.grad(lambda m: elbo_readout(model_1d, x, m, q_log_var).elbo)(q_mean)
    m = np.asarray(q_mean, np.float64)
    expected = w.T @ (x - w @ m - b) / var_x - m
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-4, atol=1e-5)


def test_shape_errors_name_both_shapes(model_2d):
    with pytest.raises(ValueError, match=r"x has shape \(4,\).*\(3, 2\)"):
        elbo_readout(model_2d, jnp.zeros(4), jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"q_mean has shape \(3,\).*\(3, 2\)"):
        elbo_readout(model_2d, jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"q_mean has shape \(2,\) but q_log_var has shape \(1,\)"):
        elbo_readout(model_2d, jnp.zeros(3), jnp.zeros(2), jnp.zeros(1))


# ------------------------------------ PPCA and the tempered optimal q (notebook 05)


@jax.jit
def _weighted_objective(model, x, mean, log_var, gamma):
    """gamma E_q[log p(x|z)] - KL(q || N(0, I)), from vae_edu.conjugate's closed form."""
    cov = jnp.exp(log_var)[..., :, None] * jnp.eye(log_var.shape[-1])
    return gamma * model.expected_log_likelihood(x, mean, cov) - kl_diag_gaussians(mean, log_var)


# d objective / d(mean, log_var), compiled once for all the gammas tested.
_objective_gradient = jax.jit(jax.grad(_weighted_objective, argnums=(2, 3)))


def test_fit_ppca_is_a_stationary_point_of_the_exact_likelihood():
    """d/d(W, b, log sigma^2) of sum_n log p(x_n) (vae_edu.conjugate) vanishes at the fit."""
    truth = make_model(jax.random.key(1), data_dim=6, latent_dim=2, noise_std=0.4)
    x = np.asarray(truth.sample(jax.random.key(2), 3000).x, np.float64)
    fitted = fit_ppca(x, latent_dim=2)

    @jax.jit
    @jax.grad
    def gradient(params):
        return jnp.mean(LinearGaussianModel(*params).log_evidence(jnp.asarray(x, jnp.float32)))

    grads = gradient(tuple(fitted))
    grads_away = gradient(tuple(p + 0.1 for p in fitted))
    for g, g_away in zip(grads, grads_away, strict=True):
        assert float(jnp.max(jnp.abs(g))) < 1e-3 * float(jnp.max(jnp.abs(g_away)))
    # W has orthogonal columns, so W^T W (and the exact posterior covariance) is diagonal.
    gram = np.asarray(fitted.weight.T @ fitted.weight)
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4)

    # The fitted marginal N(b, W W^T + s^2 I) beats the true one on its own training data.
    def scipy_loglik(model):
        w, b = np.asarray(model.weight, np.float64), np.asarray(model.bias, np.float64)
        cov = w @ w.T + math.exp(float(model.log_var_x)) * np.eye(6)
        return stats.multivariate_normal(b, cov).logpdf(x).sum()

    assert scipy_loglik(fitted) >= scipy_loglik(truth)


def test_fit_ppca_rejects_bad_input():
    with pytest.raises(ValueError, match="latent_dim"):
        fit_ppca(np.zeros((10, 4)), latent_dim=4)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_ppca(np.zeros(10), latent_dim=1)


def test_optimal_q_at_gamma_one_is_the_exact_posterior(mnist_ppca):
    model, images = mnist_ppca
    mean, log_var = weighted_optimal_q(model, images[:5], 1.0)
    posterior = model.posterior(images[:5])
    np.testing.assert_allclose(mean, posterior.mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.exp(log_var[0]), np.diagonal(posterior.cov), rtol=1e-3)


@pytest.mark.parametrize("gamma", [0.05, 1.0, 20.0])
def test_optimal_q_mean_is_the_posterior_with_noise_variance_over_gamma(small_model, gamma):
    x = small_model.sample(jax.random.key(3), 4).x
    mean, _ = weighted_optimal_q(small_model, x, gamma)
    tempered = small_model._replace(log_var_x=small_model.log_var_x - math.log(gamma))
    np.testing.assert_allclose(mean, tempered.posterior(x).mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.05, 1.0, 20.0])
def test_optimal_q_zeroes_the_gradient_and_beats_perturbations(small_model, gamma):
    x = small_model.sample(jax.random.key(4), 1).x[0]
    mean, log_var = weighted_optimal_q(small_model, x, gamma)
    grad_mean, grad_log_var = _objective_gradient(small_model, x, mean, log_var, gamma)
    assert float(jnp.max(jnp.abs(grad_mean))) < 1e-3 * max(1.0, gamma)
    assert float(jnp.max(jnp.abs(grad_log_var))) < 1e-3 * max(1.0, gamma)
    best = float(_weighted_objective(small_model, x, mean, log_var, gamma))
    rng = np.random.default_rng(5)
    others = _weighted_objective(
        small_model,
        x,
        mean + 0.1 * rng.normal(size=(50, 3)),
        log_var + 0.1 * rng.normal(size=(50, 3)),
        gamma,
    )
    assert others.shape == (50,) and float(jnp.max(others)) < best


def test_optimal_q_limits_collapse_and_autoencoder(small_model):
    x = small_model.sample(jax.random.key(6), 1).x[0]
    mean, log_var = weighted_optimal_q(small_model, x, 1e-6)
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)  # q(z|x) = p(z): posterior collapse
    np.testing.assert_allclose(log_var, 0.0, atol=1e-4)
    mean, log_var = weighted_optimal_q(small_model, x, 1e6)
    w, b = np.asarray(small_model.weight, np.float64), np.asarray(small_model.bias, np.float64)
    least_squares = np.linalg.lstsq(w, np.asarray(x, np.float64) - b, rcond=None)[0]
    np.testing.assert_allclose(mean, least_squares, rtol=1e-3, atol=1e-4)
    assert float(jnp.max(log_var)) < -10.0  # point codes: no noise left


def test_optimal_q_under_jit_vmap_grad_and_extremes(small_model):
    x = small_model.sample(jax.random.key(7), 3).x
    jitted = jax.jit(lambda g: weighted_optimal_q(small_model, x, g))(2.0)
    np.testing.assert_allclose(jitted[0], weighted_optimal_q(small_model, x, 2.0)[0], rtol=1e-5)
    per_row = jax.vmap(lambda row: weighted_optimal_q(small_model, row, 2.0)[0])(x)
    np.testing.assert_allclose(per_row, jitted[0], rtol=1e-5, atol=1e-6)
    d_kl = jax.grad(lambda g: jnp.sum(kl_diag_gaussians(*weighted_optimal_q(small_model, x, g))))(
        2.0
    )
    assert np.isfinite(float(d_kl)) and float(d_kl) > 0.0  # more reconstruction weight, more KL
    for gamma in (1e-12, 1e12):
        mean, log_var = weighted_optimal_q(small_model, x, gamma)
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(log_var))


def test_optimal_q_rejects_bad_input(small_model):
    with pytest.raises(ValueError, match=r"x has shape \(4,\).*\(5, 3\)"):
        weighted_optimal_q(small_model, np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="reconstruction_weight"):
        weighted_optimal_q(small_model, np.zeros(5), 0.0)


def test_per_pixel_expectation_sums_to_conjugate_and_matches_monte_carlo(small_model):
    x = np.asarray(small_model.sample(jax.random.key(8), 1).x[0], np.float64)
    mean, log_var = np.array([0.3, -0.5, 1.0]), np.array([-0.5, 0.2, -1.5])
    per_pixel = np.asarray(expected_log_likelihood_per_pixel(small_model, x, mean, log_var))
    assert per_pixel.shape == (5,)
    exact_total = small_model.expected_log_likelihood(x, mean, np.diag(np.exp(log_var)))
    np.testing.assert_allclose(per_pixel.sum(), float(exact_total), rtol=1e-5)

    rng = np.random.default_rng(9)
    z = mean + np.exp(log_var / 2) * rng.standard_normal((100_000, 3))
    w, b = np.asarray(small_model.weight, np.float64), np.asarray(small_model.bias, np.float64)
    samples = stats.norm(z @ w.T + b, math.exp(float(small_model.log_var_x) / 2)).logpdf(x)
    estimate = samples.mean(axis=0)
    std_error = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    assert np.all(np.abs(estimate - per_pixel) < 5 * std_error)
