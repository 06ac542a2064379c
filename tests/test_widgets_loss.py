"""Tests for vae_edu.widgets.loss: reductions as weights, the PPCA decoder, the balance widget.

Independent routes: the reduced loss against explicit float64 numpy sums; the PPCA fit
against the stationarity of the exact log-evidence of vae_edu.conjugate (via jax.grad) and
against scipy's multivariate normal; the closed-form optimal q against the exact posterior
of vae_edu.conjugate, against a zero gradient of the weighted ELBO written with
vae_edu.conjugate.expected_log_likelihood, and against numpy least squares in the
autoencoder limit; the per-pixel expectation against a Monte Carlo average (5 SE).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from vae_edu import data
from vae_edu.conjugate import LinearGaussianModel, make_model
from vae_edu.kl import kl_diag_gaussians
from vae_edu.widgets.loss import (
    REDUCTIONS,
    LossBalance,
    expected_log_likelihood_per_pixel,
    fit_ppca,
    loss_balance,
    loss_weights,
    plot_loss_balance,
    reduced_loss,
    weighted_optimal_q,
)

ALL_REDUCTIONS = list(itertools.product(REDUCTIONS, repeat=3))


@pytest.fixture(scope="module")
def mnist_ppca():
    images = np.asarray(
        data.to_unit_interval(data.load_mnist("test").images[:2064]), np.float32
    ).reshape(-1, 784)
    return fit_ppca(images[64:], latent_dim=8), images[:64]


@pytest.fixture(scope="module")
def small_model():
    """A linear-Gaussian model whose W has correlated (non-orthogonal) columns."""
    return make_model(jax.random.key(0), data_dim=5, latent_dim=3, noise_std=0.6)


@jax.jit
def _weighted_objective(model, x, mean, log_var, gamma):
    """gamma E_q[log p(x|z)] - KL(q || N(0, I)), from vae_edu.conjugate's closed form."""
    cov = jnp.exp(log_var)[..., :, None] * jnp.eye(log_var.shape[-1])
    return gamma * model.expected_log_likelihood(x, mean, cov) - kl_diag_gaussians(mean, log_var)


# d objective / d(mean, log_var), compiled once for all the gammas tested.
_objective_gradient = jax.jit(jax.grad(_weighted_objective, argnums=(2, 3)))


# ----------------------------------------------------------------------- loss_weights


def test_mean_over_pixels_is_beta_784():
    w = loss_weights(1.0, 1.0, num_pixels=784, latent_dim=20, pixel_reduction="mean")
    assert w.effective_beta == pytest.approx(784.0)
    w = loss_weights(
        1.0, 1.0, num_pixels=784, latent_dim=20, pixel_reduction="mean", latent_reduction="mean"
    )
    assert w.effective_beta == pytest.approx(784.0 / 20.0)
    w = loss_weights(1.0, 1.0, num_pixels=784, latent_dim=20, latent_reduction="mean")
    assert w.effective_beta == pytest.approx(1.0 / 20.0)


def test_batch_reduction_scales_both_terms_and_keeps_beta():
    by_mean = loss_weights(2.0, 3.0, num_pixels=784, latent_dim=20, batch_size=64)
    by_sum = loss_weights(
        2.0, 3.0, num_pixels=784, latent_dim=20, batch_size=64, batch_reduction="sum"
    )
    assert by_mean.effective_beta == pytest.approx(by_sum.effective_beta) == pytest.approx(1.5)
    assert by_sum.reconstruction_weight == pytest.approx(64 * by_mean.reconstruction_weight)
    assert by_sum.kl_weight == pytest.approx(64 * by_mean.kl_weight)


@pytest.mark.parametrize(
    "bad",
    [
        dict(alpha=0.0),
        dict(beta=-1.0),
        dict(alpha=math.inf),
        dict(num_pixels=0),
        dict(latent_dim=2.5),
        dict(pixel_reduction="average"),
        dict(batch_reduction=None),
    ],
)
def test_loss_weights_rejects_bad_arguments(bad):
    kwargs = dict(alpha=1.0, beta=1.0, num_pixels=784, latent_dim=20)
    kwargs.update(bad)
    alpha, beta = kwargs.pop("alpha"), kwargs.pop("beta")
    with pytest.raises(ValueError, match=next(iter(bad))):
        loss_weights(alpha, beta, **kwargs)


# ----------------------------------------------------------------------- reduced_loss


@pytest.mark.parametrize("reductions", ALL_REDUCTIONS)
def test_reduced_loss_is_the_weighted_sum(reductions):
    """Any reduction = w_R * (-sum log p) + w_K * sum KL, with the weights of loss_weights."""
    pixel, latent, batch = reductions
    rng = np.random.default_rng(0)
    log_lik = -rng.exponential(size=(6, 10))
    kl = rng.exponential(size=(6, 3))
    got = reduced_loss(
        log_lik,
        kl,
        alpha=0.7,
        beta=2.5,
        pixel_reduction=pixel,
        latent_reduction=latent,
        batch_reduction=batch,
    )
    w = loss_weights(
        0.7,
        2.5,
        num_pixels=10,
        latent_dim=3,
        batch_size=6,
        pixel_reduction=pixel,
        latent_reduction=latent,
        batch_reduction=batch,
    )
    expected_recon = -w.reconstruction_weight * log_lik.sum()
    expected_kl = w.kl_weight * kl.sum()
    np.testing.assert_allclose(float(got.reconstruction_term), expected_recon, rtol=1e-5)
    np.testing.assert_allclose(float(got.kl_term), expected_kl, rtol=1e-5)
    np.testing.assert_allclose(float(got.loss), expected_recon + expected_kl, rtol=1e-5)


def test_reduced_loss_default_is_minus_batch_mean_elbo():
    rng = np.random.default_rng(1)
    log_lik, kl = -rng.exponential(size=(4, 7)), rng.exponential(size=(4, 2))
    elbo_per_example = log_lik.sum(axis=1) - kl.sum(axis=1)
    np.testing.assert_allclose(
        float(reduced_loss(log_lik, kl).loss), -elbo_per_example.mean(), rtol=1e-5
    )


def test_reduced_loss_under_jit_vmap_grad():
    rng = np.random.default_rng(2)
    log_lik = jnp.asarray(-rng.exponential(size=(3, 4, 5)), jnp.float32)
    kl = jnp.asarray(rng.exponential(size=(3, 4, 2)), jnp.float32)
    jitted = jax.jit(
        reduced_loss, static_argnames=("pixel_reduction", "latent_reduction", "batch_reduction")
    )
    plain = reduced_loss(log_lik[0], kl[0], pixel_reduction="mean")
    np.testing.assert_allclose(
        jitted(log_lik[0], kl[0], pixel_reduction="mean").loss, plain.loss, rtol=1e-6
    )
    batched = jax.vmap(lambda a, b: reduced_loss(a, b).loss)(log_lik, kl)
    assert batched.shape == (3,)
    np.testing.assert_allclose(batched[1], reduced_loss(log_lik[1], kl[1]).loss, rtol=1e-6)
    # d loss / d alpha is minus the reduced log-likelihood; d loss / d beta the reduced KL.
    d_alpha, d_beta = jax.grad(
        lambda a, b: reduced_loss(log_lik[0], kl[0], alpha=a, beta=b).loss, argnums=(0, 1)
    )(1.0, 1.0)
    np.testing.assert_allclose(d_alpha, -np.mean(np.sum(log_lik[0], -1)), rtol=1e-5)
    np.testing.assert_allclose(d_beta, np.mean(np.sum(kl[0], -1)), rtol=1e-5)


def test_reduced_loss_rejects_bad_shapes_and_reductions():
    with pytest.raises(ValueError, match=r"\(4, 7\).*\(3, 2\)"):
        reduced_loss(np.zeros((4, 7)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="kl_per_dim"):
        reduced_loss(np.zeros((4, 7)), np.zeros(4))
    with pytest.raises(ValueError, match="latent_reduction"):
        reduced_loss(np.zeros((4, 7)), np.zeros((4, 2)), latent_reduction="max")


# --------------------------------------------------------------------------- fit_ppca


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


# ----------------------------------------------------------------- weighted_optimal_q


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


# ---------------------------------------------------- expected_log_likelihood_per_pixel


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


# ------------------------------------------------------------------ loss_balance / plot


def test_balance_at_the_elbo_is_minus_log_evidence(mnist_ppca):
    """alpha = beta = 1, sums: the optimal q is the posterior, so the loss is -mean log p(x)."""
    model, images = mnist_ppca
    balance = loss_balance(model, images)
    assert isinstance(balance, LossBalance)
    assert balance.effective_beta == pytest.approx(1.0)
    log_evidence = np.asarray(model.log_evidence(images), np.float64)
    np.testing.assert_allclose(balance.loss, -log_evidence.mean(), rtol=2e-4)
    np.testing.assert_allclose(balance.reconstruction_term, -balance.reconstruction, rtol=1e-6)
    np.testing.assert_allclose(balance.kl_term, balance.kl, rtol=1e-6)


def test_mean_over_pixels_equals_beta_784_and_collapses(mnist_ppca):
    model, images = mnist_ppca
    by_mean = loss_balance(model, images, pixel_reduction="mean")
    by_beta = loss_balance(model, images, beta=784.0)
    assert by_mean.effective_beta == pytest.approx(by_beta.effective_beta) == pytest.approx(784.0)
    np.testing.assert_allclose(by_mean.reconstructions, by_beta.reconstructions, atol=1e-5)
    assert by_mean.kl == pytest.approx(by_beta.kl, rel=1e-5)
    np.testing.assert_allclose(
        by_mean.reconstruction_term, by_beta.reconstruction_term / 784, rtol=1e-5
    )
    # Heavier KL weight: less KL, fewer active dimensions, reconstructions nearer the mean image.
    plain = loss_balance(model, images)
    assert by_mean.kl < 0.1 * plain.kl and by_mean.active_dims < plain.active_dims
    mean_image = np.asarray(model.bias)
    assert (
        np.abs(by_mean.reconstructions - mean_image).mean()
        < 0.5 * np.abs(plain.reconstructions - mean_image).mean()
    )


def test_balance_kl_decreases_with_effective_beta(mnist_ppca):
    model, images = mnist_ppca
    kls = [loss_balance(model, images, beta=b).kl for b in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert all(a > b for a, b in itertools.pairwise(kls))


def test_plot_draws_the_returned_numbers_and_changes_with_the_sliders(mnist_ppca):
    model, images = mnist_ppca
    first = plot_loss_balance(1.0, 1.0, "sum", model=model, images=images)
    fig = first.figure
    ax_terms, ax_beta = fig.subfigs[0].axes
    widths = [patch.get_width() for patch in ax_terms.patches]
    np.testing.assert_allclose(
        widths, [first.balance.reconstruction_term, first.balance.kl_term], rtol=1e-6
    )
    marker_x = ax_beta.lines[-1].get_xdata()[0]
    assert marker_x == pytest.approx(math.log10(first.balance.effective_beta))
    picture_before = fig.subfigs[1].axes[8].get_images()[0].get_array().copy()
    np.testing.assert_allclose(
        picture_before, np.clip(first.balance.reconstructions[0], 0, 1).reshape(28, 28), rtol=1e-6
    )

    second = plot_loss_balance(1.0, 1.0, "mean", model=model, images=images, fig=fig)
    assert second.figure is fig
    ax_terms, ax_beta = fig.subfigs[0].axes
    widths_after = [patch.get_width() for patch in ax_terms.patches]
    np.testing.assert_allclose(
        widths_after, [second.balance.reconstruction_term, second.balance.kl_term], rtol=1e-6
    )
    assert not np.allclose(widths, widths_after)
    assert ax_beta.lines[-1].get_xdata()[0] == pytest.approx(math.log10(784.0))
    picture_after = fig.subfigs[1].axes[8].get_images()[0].get_array()
    assert np.abs(picture_after - picture_before).max() > 0.05
    plt.close(fig)


def test_plot_rejects_bad_input(mnist_ppca, small_model):
    model, images = mnist_ppca
    with pytest.raises(ValueError, match="pixel_reduction"):
        plot_loss_balance(1.0, 1.0, "median", model=model, images=images)
    with pytest.raises(ValueError, match="alpha"):
        plot_loss_balance(-1.0, 1.0, model=model, images=images)
    with pytest.raises(ValueError, match="784"):
        plot_loss_balance(1.0, 1.0, model=small_model, images=np.zeros((2, 5)))
    plt.close("all")
