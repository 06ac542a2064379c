"""Tests for vae_edu.widgets.elbo: the ELBO/gap readout and the slider figure.

Every number is checked against an independent route computed here with numpy/scipy:
log p(x) against scipy's multivariate normal density of the marginal N(b, W W^T + s^2 I),
the ELBO against a plain Monte Carlo average with a standard-error tolerance, and the gap
against the closed-form KL to the exact Gaussian posterior written out in numpy.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from vae_edu import widgets
from vae_edu.conjugate import make_model
from vae_edu.widgets.elbo import ELBOReadout, elbo_readout, plot_elbo_gap


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


@pytest.fixture(scope="module")
def model_2d():
    return make_model(jax.random.key(0), data_dim=3, latent_dim=2, noise_std=0.7)


@pytest.fixture(scope="module")
def model_1d():
    return make_model(jax.random.key(1), data_dim=2, latent_dim=1, noise_std=0.5)


def _observation(model, seed):
    return np.asarray(model.sample(jax.random.key(seed), 1).x[0])


def test_reexported_from_widgets_package():
    assert widgets.plot_elbo_gap is plot_elbo_gap
    assert widgets.elbo_readout is elbo_readout


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


def test_plot_returns_the_exact_numbers_and_draws_them(model_1d):
    x = _observation(model_1d, 8)
    fig, readout = plot_elbo_gap(0.2, 0.7, model_1d, x)
    try:
        assert isinstance(readout, ELBOReadout)
        assert all(isinstance(v, float) for v in readout)
        expected = elbo_readout(model_1d, x, jnp.array([0.2]), jnp.array([2 * np.log(0.7)]))
        np.testing.assert_allclose(readout.elbo, float(expected.elbo), rtol=1e-6)
        np.testing.assert_allclose(readout.log_evidence, float(expected.log_evidence), rtol=1e-6)
        np.testing.assert_allclose(readout.gap, readout.log_evidence - readout.elbo, atol=1e-6)

        ax_density, ax_elbo = fig.axes
        lines = {line.get_label(): line for line in ax_elbo.get_lines()}
        gap_line = lines["gap = KL(q || p(z|x))"]
        np.testing.assert_allclose(gap_line.get_xdata(), [0.2, 0.2])
        np.testing.assert_allclose(
            gap_line.get_ydata(), [readout.elbo, readout.log_evidence], rtol=1e-6
        )
        assert f"gap = {readout.gap:.3f}" in ax_elbo.get_title()
        # The drawn q density is N(0.2, 0.7^2): its peak height is 1 / (0.7 sqrt(2 pi)).
        q_line = next(ln for ln in ax_density.get_lines() if ln.get_label().startswith("q(z)"))
        assert abs(np.max(q_line.get_ydata()) - stats.norm(0.2, 0.7).pdf(0.2)) < 1e-3
    finally:
        plt.close(fig)


def test_moving_the_sliders_changes_numbers_and_drawing(model_1d):
    x = _observation(model_1d, 9)
    post_mean, post_cov = _exact_posterior(model_1d, x)
    fig = plt.figure()
    try:
        _, at_posterior = plot_elbo_gap(post_mean[0], np.sqrt(post_cov[0, 0]), model_1d, x, fig=fig)
        q_line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("q(z)"))
        peak_before = float(np.max(q_line.get_ydata()))
        assert abs(at_posterior.gap) < 1e-4

        fig2, moved = plot_elbo_gap(post_mean[0] + 1.0, 2.0, model_1d, x, fig=fig)
        assert fig2 is fig and len(fig.axes) == 2  # redrawn in place, not stacked
        q_line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("q(z)"))
        assert abs(float(np.max(q_line.get_ydata())) - stats.norm(0, 2.0).pdf(0)) < 1e-3
        assert float(np.max(q_line.get_ydata())) != pytest.approx(peak_before)
        assert moved.gap > 0.1
        assert moved.log_evidence == pytest.approx(at_posterior.log_evidence)
    finally:
        plt.close(fig)


def test_plot_rejects_bad_slider_values_and_models(model_1d, model_2d):
    x = _observation(model_1d, 0)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="q_std must be a positive finite number"):
            plot_elbo_gap(0.0, bad, model_1d, x)
    with pytest.raises(ValueError, match=r"1-D latent.*\(3, 2\)"):
        plot_elbo_gap(0.0, 1.0, model_2d, _observation(model_2d, 0))
