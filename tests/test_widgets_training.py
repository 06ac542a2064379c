"""Tests of vae_edu.widgets.training: aggregate-posterior moments and KL, the prior-quantile
cells and the latent-space view of notebook 05, each against an independent route (Monte
Carlo with a standard-error tolerance, scipy's distributions and histograms)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from vae_edu.widgets.training import (  # noqa: E402
    LATENT_VIEWS,
    aggregate_kl_to_prior,
    aggregate_posterior_moments,
    latent_space_stats,
    plot_latent_view,
    prior_cell_edges,
    prior_cell_fractions,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _whitened(n, d, seed):
    """n codes whose sample mean is exactly 0 and population covariance exactly I."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x -= x.mean(axis=0)
    chol = np.linalg.cholesky(x.T @ x / n)
    return np.linalg.solve(chol, x.T).T


def _posterior_params(n=300, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal([1.0, -0.5], [1.5, 0.7], size=(n, 2))
    means[:, 1] += 0.6 * means[:, 0]  # correlated centres
    log_vars = rng.uniform(-3.0, 1.0, size=(n, 2))
    return means, log_vars


# ----------------------------------------------------------------------------- moments
def test_aggregate_moments_match_monte_carlo_draws_from_the_mixture():
    means, log_vars = _posterior_params()
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
    means, _ = _posterior_params()
    mean, cov = aggregate_posterior_moments(means)
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(means.T, ddof=0), rtol=1e-12)
    # Adding widths adds exactly their average variance on the diagonal.
    _, wider = aggregate_posterior_moments(means, np.full_like(means, np.log(0.25)))
    np.testing.assert_allclose(wider - cov, 0.25 * np.eye(2), atol=1e-12)


# ----------------------------------------------------------------------------- KL
def test_aggregate_kl_matches_a_monte_carlo_estimate_with_scipy_densities():
    means, log_vars = _posterior_params()
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
    codes = _whitened(5000, 2, seed=3)
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
@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_cell_edges_are_scipy_quantiles_and_symmetric(n):
    edges = prior_cell_edges(n)
    np.testing.assert_allclose(edges, stats.norm.ppf(np.arange(1, n) / n), atol=1e-12)
    assert np.all(edges == -edges[::-1])
    assert np.all(np.diff(edges) > 0)


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


# ----------------------------------------------------------------------------- the widget
def _mesh_values(ax):
    return np.asarray(ax.collections[0].get_array()).reshape(-1)


def test_plot_latent_view_draws_what_it_reports():
    means, log_vars = _posterior_params(n=500)
    labels = np.arange(500) % 10
    view = plot_latent_view(means, labels, log_vars, grid_size=10, title="model A")
    ax = view.figure.axes[0]
    shaded = _mesh_values(ax)
    assert shaded.size == 100 and shaded.sum() == np.sum(view.stats.cell_fractions < 0.25 / 100)
    assert view.stats.underpopulated_fraction == pytest.approx(shaded.mean())
    np.testing.assert_allclose(ax.collections[1].get_offsets(), means)
    assert view.stats.aggregate_kl == pytest.approx(aggregate_kl_to_prior(means, log_vars))
    assert ax.get_xlim() == (-3.0, 3.0)
    title = ax.get_title()
    outside = int(np.sum(np.any(np.abs(means) > 3.0, axis=1)))
    assert "model A" in title and f"{view.stats.underpopulated_fraction:.1%}" in title
    assert f"{outside} of 500 codes outside" in title


def test_plot_latent_view_in_prior_coordinates_uses_the_normal_cdf():
    means, _ = _posterior_params(n=200)
    view = plot_latent_view(means, np.zeros(200), coordinates="prior", grid_size=8)
    ax = view.figure.axes[0]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), stats.norm.cdf(means), atol=1e-12)
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    mesh = ax.collections[0].get_coordinates()  # (rows + 1, cols + 1, 2) corners
    np.testing.assert_allclose(mesh[0, :, 0], np.linspace(0, 1, 9))


def test_plot_latent_view_changes_with_the_grid_and_the_window():
    means, _ = _posterior_params(n=500)
    labels = np.zeros(500)
    coarse = plot_latent_view(means, labels, grid_size=5)
    fine = plot_latent_view(means, labels, grid_size=30, window=None)
    assert _mesh_values(coarse.figure.axes[0]).size == 25
    assert _mesh_values(fine.figure.axes[0]).size == 900
    assert fine.stats.underpopulated_fraction > coarse.stats.underpopulated_fraction
    x_low, x_high = fine.figure.axes[0].get_xlim()
    assert x_low <= means[:, 0].min() and x_high >= means[:, 0].max()  # every code visible
    assert "all codes shown" in fine.figure.axes[0].get_title()


def test_every_named_view_draws_and_labels_are_checked():
    means, _ = _posterior_params(n=50)
    fig, axes = plt.subplots(1, len(LATENT_VIEWS))
    for ax, (coordinates, window) in zip(axes, LATENT_VIEWS.values(), strict=True):
        view = plot_latent_view(means, np.zeros(50), coordinates=coordinates, window=window, ax=ax)
        assert view.figure is fig and len(ax.collections) == 2
    with pytest.raises(ValueError, match=r"labels has shape \(49,\)"):
        plot_latent_view(means, np.zeros(49))
    with pytest.raises(ValueError, match="window"):
        plot_latent_view(means, np.zeros(50), window=-1.0)
    with pytest.raises(ValueError, match="coordinates"):
        plot_latent_view(means, np.zeros(50), coordinates="polar")
