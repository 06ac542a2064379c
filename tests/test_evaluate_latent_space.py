"""Tests of the latent-space and model-comparison statistics of vae_edu.evaluate.

Aggregate-posterior moments and KL and the codes in the prior-quantile cells (against Monte
Carlo with a standard-error tolerance, scipy's distributions and histograms); rate,
distortion and the sweep entries (against the closed-form Gaussian KL in numpy on encodings
computed through the VAE itself, and a many-sample numpy Monte Carlo estimate); the fitted
posterior against the exact optimum of the tempered linear-Gaussian model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from vae_test_models import (
    LATENT_DIM,
    flat_unit,
    numpy_kl,
    posterior_params,
    sweep_vae,
    whitened,
)

from vae_edu import data
from vae_edu.evaluate import (
    aggregate_kl_to_prior,
    aggregate_posterior_moments,
    binarization_key,
    evaluate_sweep_entry,
    latent_space_stats,
    optimal_posterior,
    prior_cell_fractions,
    rate_distortion,
    reconstructions_and_samples,
)
from vae_edu.latent import prior_cell_edges


# ----------------------------------------------------------------------------- moments
def test_aggregate_moments_match_monte_carlo_draws_from_the_mixture():
    means, log_vars = posterior_params()
    mean, cov = aggregate_posterior_moments(means, log_vars)
    rng = np.random.default_rng(1)
    m = 400_000
    which = rng.integers(0, means.shape[0], m)  # a random image, then a code from its q(z|x)
    z = means[which] + np.exp(0.5 * log_vars[which]) * rng.standard_normal((m, 2))
    mc_mean = z.mean(axis=0)
    assert np.all(np.abs(mc_mean - mean) < 5 * z.std(axis=0) / np.sqrt(m))
    centred = z - mc_mean
    for i in range(2):
        for j in range(2):
            products = centred[:, i] * centred[:, j]
            se = products.std() / np.sqrt(m)
            assert abs(products.mean() - cov[i, j]) < 5 * se, (i, j)


def test_aggregate_moments_of_point_codes_are_the_sample_moments():
    means, _ = posterior_params()
    mean, cov = aggregate_posterior_moments(means)
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(means.T, ddof=0), rtol=1e-12)
    # Adding widths adds exactly their average variance on the diagonal.
    _, wider = aggregate_posterior_moments(means, np.full_like(means, np.log(0.25)))
    np.testing.assert_allclose(wider - cov, 0.25 * np.eye(2), atol=1e-12)


# ----------------------------------------------------------------------------- KL
def test_aggregate_kl_matches_a_monte_carlo_estimate_with_scipy_densities():
    means, log_vars = posterior_params()
    kl = aggregate_kl_to_prior(means, log_vars)
    mean, cov = aggregate_posterior_moments(means, log_vars)
    q = stats.multivariate_normal(mean, cov)
    p = stats.multivariate_normal(np.zeros(2), np.eye(2))
    z = q.rvs(size=200_000, random_state=np.random.default_rng(2))
    log_ratio = q.logpdf(z) - p.logpdf(z)
    se = log_ratio.std() / np.sqrt(z.shape[0])
    assert abs(log_ratio.mean() - kl) < 5 * se
    assert kl > 0.5  # far from the prior: a meaningful comparison


def test_aggregate_kl_known_values():
    codes = whitened(5000, 2, seed=3)
    assert abs(aggregate_kl_to_prior(codes)) < 1e-5  # prior moments exactly
    shift = np.array([1.5, -2.0])
    assert aggregate_kl_to_prior(codes + shift) == pytest.approx(0.5 * shift @ shift, rel=1e-5)
    scale = 3.0  # KL(N(0, s^2 I) || N(0, I)) = d/2 (s^2 - 1 - log s^2)
    expected = 0.5 * 2 * (scale**2 - 1 - np.log(scale**2))
    assert aggregate_kl_to_prior(scale * codes) == pytest.approx(expected, rel=1e-5)
    # Widths count: point codes with std 1/2 plus widths 3/4 have total variance 1.
    half = 0.5 * codes
    assert abs(aggregate_kl_to_prior(half, np.full_like(half, np.log(0.75)))) < 1e-5


# ----------------------------------------------------------------------------- the cells
def test_cell_fractions_match_a_scipy_histogram():
    rng = np.random.default_rng(4)
    codes = np.concatenate([rng.normal(-1.0, 0.4, (800, 2)), rng.normal([1.2, 0.0], 0.9, (800, 2))])
    edges = np.concatenate([[-np.inf], stats.norm.ppf(np.arange(1, 15) / 15), [np.inf]])
    counts, _, _ = np.histogram2d(codes[:, 0], codes[:, 1], bins=[edges, edges])
    np.testing.assert_allclose(prior_cell_fractions(codes, 15), counts / len(codes), atol=1e-15)


def test_prior_codes_fill_the_cells_uniformly_chi_square():
    # Codes ~ N(0, I): the 400 cell counts are multinomial with equal probabilities, so
    # Pearson's statistic follows chi^2 with 399 degrees of freedom.
    n_codes = 20_000
    codes = np.random.default_rng(5).standard_normal((n_codes, 2))
    fractions = prior_cell_fractions(codes, 20)
    expected = n_codes / 400
    pearson = np.sum((fractions * n_codes - expected) ** 2 / expected)
    assert 0.001 < stats.chi2.sf(pearson, df=399) < 0.999
    s = latent_space_stats(codes)
    assert s.underpopulated_fraction == 0.0  # P(count < 12.5 | mean 50) is ~1e-10 per cell


def test_total_variation_matches_the_exact_cell_probabilities_of_a_wider_gaussian():
    # Codes ~ N(0, s^2 I): cell i of each axis has probability
    # Phi(e_{i+1} / s) - Phi(e_i / s), so the exact TV to the uniform cells is known.
    scale, n, n_codes = 2.5, 10, 400_000
    edges = np.concatenate([[-np.inf], prior_cell_edges(n), [np.inf]])
    per_axis = np.diff(stats.norm.cdf(edges / scale))
    exact = np.outer(per_axis, per_axis)
    tv_exact = 0.5 * np.abs(exact - 1.0 / n**2).sum()
    codes = scale * np.random.default_rng(6).standard_normal((n_codes, 2))
    s = latent_space_stats(codes, grid_size=n)
    # |TV_empirical - TV_exact| <= (1/2) sum |f - p|, and E|f - p| <= sqrt(p (1 - p) / N).
    bound = 0.5 * np.sum(np.sqrt(exact * (1 - exact) / n_codes))
    assert abs(s.total_variation - tv_exact) < 5 * bound
    assert tv_exact > 0.3  # a clearly non-prior spread
    assert s.underpopulated_fraction == pytest.approx(np.mean(exact < 0.25 / n**2))


def test_stats_extremes_and_moments():
    far = np.random.default_rng(7).normal(50.0, 1.0, (1000, 2))
    s = latent_space_stats(far)
    assert s.cell_fractions[-1, -1] == 1.0  # every code in the top-right cell
    assert s.total_variation == pytest.approx(1 - 1 / 400)
    assert s.underpopulated_fraction == pytest.approx(399 / 400)
    np.testing.assert_allclose(s.code_mean, far.mean(axis=0))
    np.testing.assert_allclose(s.code_std, far.std(axis=0))


def test_bad_inputs_raise_naming_the_problem():
    codes = np.random.default_rng(8).standard_normal((5, 2))
    with pytest.raises(
        ValueError, match=r"log_vars has shape \(5, 3\) but means has shape \(5, 2\)"
    ):
        aggregate_posterior_moments(codes, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(N, 2\).*\(5, 3\)"):
        prior_cell_fractions(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="grid_size"):
        prior_cell_edges(0)
    with pytest.raises(ValueError, match="min_share"):
        latent_space_stats(codes, min_share=0.0)
    with pytest.raises(ValueError, match="NaN"):
        aggregate_kl_to_prior(np.array([[0.0, np.nan], [1.0, 2.0]]))


# ----------------------------------------------------------------------------- rate, distortion
def test_rate_is_the_closed_form_kl_of_the_encodings_grayscale(images):
    model = sweep_vae(4)
    x = flat_unit(images)
    point = rate_distortion(model, images, jax.random.PRNGKey(3), binarize=False)
    mean, log_var = model.encode(x)
    kl = numpy_kl(mean, log_var)
    assert point.rate.mean == pytest.approx(kl.mean(), rel=1e-5)
    assert point.rate.std_error == pytest.approx(stats.sem(kl), rel=1e-4)
    assert point.elbo.mean == pytest.approx(-(point.rate.mean + point.distortion.mean), rel=1e-6)


def test_distortion_agrees_with_many_sample_monte_carlo(images):
    model = sweep_vae(4)
    x = flat_unit(images)
    point = rate_distortion(model, images, jax.random.PRNGKey(3), binarize=False)
    mean, log_var = (np.asarray(a, np.float64) for a in model.encode(x))
    eps = np.random.default_rng(5).standard_normal((200,) + mean.shape)
    z = (mean + np.exp(0.5 * log_var) * eps).astype(np.float32)  # (200, N, d)
    logits = np.asarray(jax.jit(lambda codes: model.decode(codes))(z), np.float64)
    # Bernoulli log-likelihood written out: x log s(l) + (1 - x) log s(-l),
    # with log s(l) = -log(1 + e^-l).
    log_lik = -(x * np.logaddexp(0.0, -logits) + (1 - x) * np.logaddexp(0.0, logits)).sum(-1)
    reference = -log_lik.mean()
    # The one-sample estimate's error is below its SE (which also holds the image spread).
    assert abs(point.distortion.mean - reference) < 5 * point.distortion.std_error
    assert point.distortion.std_error > 0


def test_binarization_key_is_the_one_per_image_elbo_uses(images):
    model = sweep_vae(4)
    key = jax.random.PRNGKey(7)
    point = rate_distortion(model, images, key)
    x = data.binarize(binarization_key(key, 0), jnp.asarray(flat_unit(images)))
    mean, log_var = model.encode(x)
    assert point.rate.mean == pytest.approx(numpy_kl(mean, log_var).mean(), rel=1e-5)
    other = data.binarize(binarization_key(key, 1), jnp.asarray(flat_unit(images)))
    assert not np.array_equal(np.asarray(x), np.asarray(other))


def test_weighted_loss_is_alpha_d_plus_beta_r(sweep):
    p = sweep[0].point
    assert p.weighted_loss(2.0, 0.5) == pytest.approx(2.0 * p.distortion.mean + 0.5 * p.rate.mean)
    assert p.weighted_loss() == pytest.approx(-p.elbo.mean)


def test_sweep_entry_kl_per_dimension_activity_and_active_units(sweep, images):
    key = jax.random.PRNGKey(0)
    for entry in sweep:
        assert entry.kl_per_dimension.shape == entry.activity.shape == (LATENT_DIM,)
        # Same binary images for both: the per-dimension KL sums to the rate.
        assert entry.kl_per_dimension.sum() == pytest.approx(entry.point.rate.mean, rel=1e-5)
        x = data.binarize(binarization_key(key, 0), jnp.asarray(flat_unit(images)))
        mean = np.asarray(entry.model.encode(x)[0], np.float64)
        np.testing.assert_allclose(entry.activity, mean.var(axis=0), rtol=1e-5, atol=1e-12)
        assert entry.active_units == int(np.sum(mean.var(axis=0) > 0.01))
        assert entry.ratio == entry.beta / entry.alpha
    dead = sweep[2]
    assert dead.activity[1] == 0.0 and dead.kl_per_dimension[1] == pytest.approx(0.0, abs=1e-7)
    assert dead.active_units == LATENT_DIM - 1


def test_sweep_entry_rejects_bad_weights(images):
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        evaluate_sweep_entry("x", sweep_vae(1), images, jax.random.PRNGKey(0), beta=-1.0)


def test_reconstructions_and_samples_through_the_vae_itself(images):
    model = sweep_vae(5)
    key = jax.random.PRNGKey(11)
    rows = reconstructions_and_samples(model, images, key, num=6)
    assert rows.originals.shape == rows.reconstructions.shape == rows.samples.shape == (6, 28, 28)
    assert set(np.unique(rows.originals)) <= {0.0, 1.0}
    # E[x] of a dynamically binarized image is the grayscale image (64 draws: SE <= 1/16).
    draws = np.mean(
        [
            reconstructions_and_samples(model, images, jax.random.PRNGKey(s), 6).originals
            for s in range(64)
        ],
        axis=0,
    )
    assert np.abs(draws - images[:6] / 255.0).max() < 5 * 0.5 / 8
    x = rows.originals.reshape(6, 784)
    want = np.asarray(model.mean_image(model.encode(x)[0])).reshape(6, 28, 28)
    np.testing.assert_allclose(rows.reconstructions, want, rtol=1e-5, atol=1e-6)
    z = jax.random.normal(jax.random.split(key)[1], (6, LATENT_DIM))
    np.testing.assert_allclose(
        rows.samples, np.asarray(model.mean_image(z)).reshape(6, 28, 28), rtol=1e-5, atol=1e-6
    )
    # Same key, another model: same test images, other pictures.
    other = reconstructions_and_samples(sweep_vae(6), images, key, num=6)
    np.testing.assert_array_equal(other.originals, rows.originals)
    assert not np.allclose(other.samples, rows.samples)


# ----------------------------------------------------------------------------- alpha vs beta
@pytest.fixture(scope="module")
def linear_gaussian():
    rng = np.random.default_rng(8)
    d, data_dim, sigma = 3, 6, 0.7
    weight, bias = rng.normal(size=(data_dim, d)), rng.normal(size=data_dim)
    x = rng.normal(size=(2, data_dim))

    def log_likelihood(xi, z):  # log N(xi; W z + b, sigma^2 I), quadratic in z
        resid = xi - (z @ jnp.asarray(weight, jnp.float32).T + jnp.asarray(bias, jnp.float32))
        return -0.5 * jnp.sum(resid**2, axis=-1) / sigma**2 - data_dim * (
            np.log(sigma) + 0.5 * np.log(2 * np.pi)
        )

    return weight, bias, sigma, x, log_likelihood, whitened(64, d, 9)


def exact_weighted_optimum(weight, bias, sigma, x, gamma):
    """argmax over diagonal Gaussians of gamma E_q log p(x|z) - KL(q || N(0, I)).

    q is then the best diagonal fit to the tempered posterior N(m, Lambda^-1) with
    Lambda = I + gamma W^T W / sigma^2 and m = Lambda^-1 gamma W^T (x - b) / sigma^2:
    mean m and variances 1 / Lambda_jj.
    """
    precision = np.eye(weight.shape[1]) + gamma * weight.T @ weight / sigma**2
    mean = np.linalg.solve(precision, gamma * weight.T @ (x - bias).T / sigma**2).T
    return mean, -np.log(np.diag(precision))


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (1.0, 0.5), (3.0, 1.5)])
def test_optimal_posterior_is_the_exact_tempered_optimum(linear_gaussian, alpha, beta):
    weight, bias, sigma, x, log_likelihood, eps = linear_gaussian
    fit = optimal_posterior(log_likelihood, x, eps, alpha=alpha, beta=beta)
    mean, log_var = exact_weighted_optimum(weight, bias, sigma, x, alpha / beta)
    np.testing.assert_allclose(fit.mean, mean, atol=2e-4)
    np.testing.assert_allclose(fit.log_var, np.broadcast_to(log_var, mean.shape), atol=2e-4)
    assert fit.kl == pytest.approx(numpy_kl(fit.mean, fit.log_var), rel=1e-4)
    np.testing.assert_allclose(fit.objective, alpha * fit.reconstruction - beta * fit.kl, rtol=1e-6)


def test_optimal_posterior_depends_on_beta_over_alpha_only(linear_gaussian):
    _, _, _, x, log_likelihood, eps = linear_gaussian
    base = optimal_posterior(log_likelihood, x[0], eps, alpha=1.0, beta=0.5)
    scaled = optimal_posterior(log_likelihood, x[0], eps, alpha=3.0, beta=1.5)
    other = optimal_posterior(log_likelihood, x[0], eps, alpha=1.0, beta=1.0)
    assert base.mean.shape == (3,)
    np.testing.assert_allclose(scaled.mean, base.mean, atol=2e-4)
    np.testing.assert_allclose(scaled.log_var, base.log_var, atol=2e-4)
    assert scaled.objective == pytest.approx(3.0 * base.objective, rel=1e-4)
    assert np.abs(other.log_var - base.log_var).max() > 0.1


def test_optimal_posterior_rejects_bad_input(linear_gaussian):
    _, _, _, x, log_likelihood, eps = linear_gaussian
    with pytest.raises(ValueError, match="beta must be a positive finite number"):
        optimal_posterior(log_likelihood, x, eps, beta=0.0)
    with pytest.raises(ValueError, match=r"init_mean has shape \(2,\) but x has shape \(2, 6\)"):
        optimal_posterior(log_likelihood, x, eps, init_mean=np.zeros(2))
    with pytest.raises(ValueError, match=r"eps must have shape \(L, d\)"):
        optimal_posterior(log_likelihood, x, eps[0])
