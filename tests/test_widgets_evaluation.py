"""Tests for vae_edu.widgets.evaluation: the callbacks of notebook 07 (evaluating VAEs).

Models are tiny randomly initialised VAEs (784-16-d; the shipped files are not needed).
Every number is checked against an independent route: standard errors against
scipy.stats.sem, the rate against the closed-form Gaussian KL written out in numpy on
encodings computed through the VAE itself, the distortion against a many-sample numpy
Monte Carlo estimate within 5 standard errors, the fitted posterior against the exact
optimum of the tempered linear-Gaussian model. Widgets are driven as a student would:
assign a slider's or dropdown's ``value`` and read the Image widget's bytes.
"""

import io

import ipywidgets
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from matplotlib.colors import to_rgba
from PIL import Image
from scipy import stats

# The tiny random 784-16-d VAE of the latent-widget tests (pytest puts tests/ on sys.path).
from test_widgets_latent import tiny_vae as _tiny_vae

from vae_edu import data, widgets
from vae_edu.models import VAE
from vae_edu.widgets import evaluation
from vae_edu.widgets.evaluation import (
    binarization_key,
    build_iwae_explorer,
    build_sweep_explorer,
    evaluate_sweep_entry,
    iwae_gap_view,
    mean_estimate,
    optimal_posterior,
    paired_difference,
    plot_kl_per_dimension,
    plot_rate_distortion,
    rate_distortion,
    reconstructions_and_samples,
    sweep_view,
)

LATENT_DIM = 4


def tiny_vae(seed: int) -> VAE:
    return _tiny_vae(LATENT_DIM, seed)


def with_dead_unit(model: VAE, unit: int) -> VAE:
    """``model`` with latent unit ``unit`` switched off in the encoder: mean 0, log_var 0.

    Its posterior is then exactly the prior N(0, 1) for every image: activity 0, KL 0.
    """
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    out = params["encoder"]["output"]
    d = model.config.latent_dim
    for column in (unit, d + unit):  # the mean and the log-variance of the unit
        out["kernel"] = out["kernel"].at[:, column].set(0.0)
        out["bias"] = out["bias"].at[column].set(0.0)
    return nnx.merge(graphdef, params)


@pytest.fixture(scope="module")
def images():
    """60 random grayscale 'test images' (uint8, 28 x 28)."""
    return np.random.default_rng(0).integers(0, 256, size=(60, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def sweep(images):
    """Three evaluated tiny models playing beta = 0.5, 1, 2 (the last has a dead unit)."""
    key = jax.random.PRNGKey(0)
    models = [tiny_vae(1), tiny_vae(2), with_dead_unit(tiny_vae(3), 1)]
    return [
        evaluate_sweep_entry(f"beta_{b:g}", m, images, key, beta=b)
        for b, m in zip((0.5, 1.0, 2.0), models, strict=True)
    ]


def numpy_kl(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis, written out."""
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)


def flat_unit(images) -> np.ndarray:
    return images.reshape(images.shape[0], 784).astype(np.float32) / np.float32(255.0)


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_everything_reexported_from_widgets_package():
    for name in evaluation.__all__:
        assert getattr(widgets, name) is getattr(evaluation, name), name


# ----------------------------------------------------------------------------- paired SE
def test_paired_difference_matches_scipy_sem():
    rng = np.random.default_rng(1)
    a = rng.normal(-90.0, 20.0, size=500)
    b = a - 3.0 + rng.normal(0.0, 0.5, size=500)
    got = paired_difference(a, b)
    assert got.mean == pytest.approx(np.mean(a - b), rel=1e-12)
    assert got.std_error == pytest.approx(stats.sem(a - b), rel=1e-12)
    # The shared image-to-image spread cancels: the paired SE is far below the unpaired one.
    assert got.std_error < 0.1 * np.hypot(stats.sem(a), stats.sem(b))


def test_mean_estimate_matches_numpy_and_scipy():
    values = np.random.default_rng(3).normal(-90.0, 20.0, size=250)
    got = mean_estimate(values)
    assert got.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert got.std_error == pytest.approx(stats.sem(values), rel=1e-12)
    assert str(got) == f"{np.mean(values):.2f} +/- {stats.sem(values):.2f}"
    with pytest.raises(
        ValueError, match=r"1-D array of at least 2 per-image values, got shape \(2, 2\)"
    ):
        mean_estimate(np.zeros((2, 2)))


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match=r"a has shape \(3,\) but b has shape \(4,\)"):
        paired_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.array([0.0, np.inf]), np.zeros(2))


# ----------------------------------------------------------------------------- IWAE slider
@pytest.fixture(scope="module")
def bounds():
    """Synthetic per-image bounds with gaps growing in k (only their arithmetic matters)."""
    rng = np.random.default_rng(2)
    elbo = rng.normal(-100.0, 15.0, size=300)
    out = {k: elbo + np.log10(k) * 1.5 + rng.normal(0.0, 1.0, size=300) for k in (1, 10, 100, 1000)}
    return out, elbo


def selected_marker(ax):
    (line,) = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("selected")]
    return float(line.get_xdata()[0]), float(line.get_ydata()[0])


def test_iwae_gap_view_numbers_match_independent_computation(bounds):
    per_k, elbo = bounds
    fig, gap = iwae_gap_view(100, per_k, elbo)
    assert gap.k == 100
    assert gap.bound.mean == pytest.approx(np.mean(per_k[100]), rel=1e-12)
    assert gap.bound.std_error == pytest.approx(stats.sem(per_k[100]), rel=1e-12)
    assert gap.gap.mean == pytest.approx(np.mean(per_k[100] - elbo), rel=1e-12)
    assert gap.gap.std_error == pytest.approx(stats.sem(per_k[100] - elbo), rel=1e-12)
    left, right = fig.axes
    assert selected_marker(left) == pytest.approx((100.0, gap.gap.mean))
    assert sum(p.get_height() for p in right.patches) == len(elbo)  # histogram of all images


def test_iwae_gap_view_redraws_for_another_k(bounds):
    per_k, elbo = bounds
    fig_a, gap_a = iwae_gap_view(1, per_k, elbo)
    fig_b, gap_b = iwae_gap_view(1000, per_k, elbo)
    assert selected_marker(fig_a.axes[0])[0] == 1.0
    assert selected_marker(fig_b.axes[0])[0] == 1000.0
    heights_a = [p.get_height() for p in fig_a.axes[1].patches]
    assert [p.get_x() for p in fig_a.axes[1].patches] != [p.get_x() for p in fig_b.axes[1].patches]
    assert sum(heights_a) == len(elbo)
    assert gap_b.gap.mean > gap_a.gap.mean + 5 * np.hypot(gap_a.gap.std_error, gap_b.gap.std_error)


def test_iwae_gap_view_rejects_unknown_k_and_shapes(bounds):
    per_k, elbo = bounds
    with pytest.raises(
        ValueError, match=r"k = 5 is not one of the computed values \[1, 10, 100, 1000\]"
    ):
        iwae_gap_view(5, per_k, elbo)
    with pytest.raises(
        ValueError, match=r"bounds\[1\] has shape \(300,\) but elbo has shape \(299,\)"
    ):
        iwae_gap_view(1, per_k, elbo[:-1])


def test_iwae_explorer_slider_redraws_image_and_readout(bounds):
    per_k, elbo = bounds
    explorer = build_iwae_explorer(per_k, elbo)
    assert isinstance(explorer.slider, ipywidgets.SelectionSlider)
    assert explorer.slider.continuous_update is False
    assert list(explorer.slider.options) == [1, 10, 100, 1000]
    assert explorer.slider.value == 1000
    before_png, before_text = explorer.image.value, explorer.readout.value
    explorer.slider.value = 10
    assert explorer.image.value != before_png
    assert png_pixels(explorer.image.value).ndim == 3
    gap = paired_difference(per_k[10], elbo)
    assert explorer.readout.value.startswith("k = 10:")
    assert f"L_k - ELBO = {gap.mean:.2f} +/- {gap.std_error:.2f}" in explorer.readout.value
    assert explorer.readout.value != before_text


# ----------------------------------------------------------------------------- rate, distortion
def test_rate_is_the_closed_form_kl_of_the_encodings_grayscale(images):
    model = tiny_vae(4)
    x = flat_unit(images)
    point = rate_distortion(model, images, jax.random.PRNGKey(3), binarize=False)
    mean, log_var = model.encode(x)
    kl = numpy_kl(mean, log_var)
    assert point.rate.mean == pytest.approx(kl.mean(), rel=1e-5)
    assert point.rate.std_error == pytest.approx(stats.sem(kl), rel=1e-4)
    assert point.elbo.mean == pytest.approx(-(point.rate.mean + point.distortion.mean), rel=1e-6)


def test_distortion_agrees_with_many_sample_monte_carlo(images):
    model = tiny_vae(4)
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
    model = tiny_vae(4)
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
        evaluate_sweep_entry("x", tiny_vae(1), images, jax.random.PRNGKey(0), beta=-1.0)


# ----------------------------------------------------------------------------- plots
def test_rate_distortion_plot_marks_the_model_and_its_loss_line(sweep):
    fig = plot_rate_distortion(sweep, highlight="beta_2")
    ax = fig.axes[0]
    e = sweep[2]
    assert selected_marker(ax) == pytest.approx((e.point.rate.mean, e.point.distortion.mean))
    (loss_line,) = [ln for ln in ax.get_lines() if "its loss" in str(ln.get_label())]
    xs, ys = loss_line.get_xdata(), loss_line.get_ydata()
    assert (ys[-1] - ys[0]) / (xs[-1] - xs[0]) == pytest.approx(-e.ratio)  # slope -beta/alpha
    assert np.interp(e.point.rate.mean, xs, ys) == pytest.approx(e.point.distortion.mean)
    iso = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(iso) >= 2
    for ln in iso:  # D + R = c: slope -1, a constant sum
        sums = np.asarray(ln.get_xdata()) + np.asarray(ln.get_ydata())
        assert np.ptp(sums) == pytest.approx(0.0, abs=1e-9)
    other = plot_rate_distortion(sweep, highlight="beta_0.5").axes[0]
    assert selected_marker(other) != selected_marker(ax)


def test_rate_distortion_plot_puts_off_scale_models_on_the_edge(sweep):
    rates = [e.point.rate.mean for e in sweep]
    cut = float(np.sort(rates)[-2] + 1e-3)  # the largest rate is now beyond the axis
    big = sweep[int(np.argmax(rates))]
    ax = plot_rate_distortion(sweep, highlight=big.name, max_rate=cut).axes[0]
    assert ax.get_xlim() == pytest.approx((0.0, cut))
    assert selected_marker(ax) == pytest.approx((cut, big.point.distortion.mean))
    assert any("off scale" in t.get_text() for t in ax.texts)


def test_rate_distortion_plot_rejects_unknown_highlight(sweep):
    with pytest.raises(ValueError, match="'beta_9' is not one of"):
        plot_rate_distortion(sweep, highlight="beta_9")
    with pytest.raises(ValueError, match="at least one"):
        plot_rate_distortion([])


def test_kl_bars_are_sorted_and_coloured_by_activity():
    kl = np.array([0.5, 3.0, 0.0, 1.0])
    activity = np.array([0.2, 1.0, 0.001, 0.5])
    ax = plot_kl_per_dimension(kl, activity).axes[0]
    bars = sorted(ax.patches, key=lambda p: p.get_x())
    assert [b.get_height() for b in bars] == [3.0, 1.0, 0.5, 0.0]
    grey = to_rgba("0.6")
    assert [b.get_facecolor() == grey for b in bars] == [False, False, False, True]
    assert "3 of 4 units active" in ax.get_title()
    with pytest.raises(
        ValueError, match=r"kl_per_dimension has shape \(4,\) but activity has shape \(3,\)"
    ):
        plot_kl_per_dimension(kl, activity[:3])


# ----------------------------------------------------------------------------- model dropdown
def test_reconstructions_and_samples_through_the_vae_itself(images):
    model = tiny_vae(5)
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
    other = reconstructions_and_samples(tiny_vae(6), images, key, num=6)
    np.testing.assert_array_equal(other.originals, rows.originals)
    assert not np.allclose(other.samples, rows.samples)


def test_sweep_view_changes_with_the_model(sweep, images):
    key = jax.random.PRNGKey(1)
    a = sweep_view("beta_0.5", sweep, images, key, num_images=4)
    b = sweep_view("beta_2", sweep, images, key, num_images=4)
    assert a.entry is sweep[0] and b.entry is sweep[2]
    p = sweep[2].point
    assert (
        f"rate R = {p.rate.mean:.2f} nats, distortion D = {p.distortion.mean:.2f} nats, "
        f"ELBO = -(D + R) = {p.elbo.mean:.2f} nats"
    ) in b.readout
    assert f"{LATENT_DIM - 1} of {LATENT_DIM} units active" in b.readout
    assert selected_marker(a.figure.axes[0]) != selected_marker(b.figure.axes[0])
    np.testing.assert_array_equal(a.rows.originals, b.rows.originals)
    assert not np.allclose(a.rows.reconstructions, b.rows.reconstructions)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        sweep_view("nope", sweep, images, key)


def test_sweep_explorer_dropdown_redraws_everything(sweep, images):
    explorer = build_sweep_explorer(sweep, images, jax.random.PRNGKey(1), num_images=4)
    assert explorer.dropdown.value == "beta_0.5"
    assert [v for _, v in explorer.dropdown.options] == ["beta_0.5", "beta_1", "beta_2"]
    before = (
        explorer.plot.value,
        explorer.reconstructions.value,
        explorer.samples.value,
        explorer.originals.value,
        explorer.readout.value,
    )
    explorer.dropdown.value = "beta_2"
    after = (
        explorer.plot.value,
        explorer.reconstructions.value,
        explorer.samples.value,
        explorer.originals.value,
        explorer.readout.value,
    )
    assert after[0] != before[0] and after[1] != before[1] and after[2] != before[2]
    assert after[3] == before[3]  # the same test images for every model
    assert after[4].startswith("beta_2:")
    # The strips are the pictures of sweep_view, 4 images of 28 pixels (+ gaps), scale 2.
    assert png_pixels(explorer.samples.value).shape == (2 * 28, 2 * (4 * 28 + 3 * 2))


# ----------------------------------------------------------------------------- alpha vs beta
def whitened_noise(num: int, dim: int, seed: int) -> np.ndarray:
    """Noise with sample mean exactly 0 and sample covariance (1/L) eps^T eps exactly I."""
    eps = np.random.default_rng(seed).standard_normal((num, dim))
    eps -= eps.mean(axis=0)
    chol = np.linalg.cholesky(eps.T @ eps / num)
    return np.linalg.solve(chol, eps.T).T


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

    return weight, bias, sigma, x, log_likelihood, whitened_noise(64, d, 9)


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
