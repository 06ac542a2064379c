"""Tests for vae_edu.widgets.bayes: the Bayes' rule widget's update and drawing functions.

The exact update is checked against independent routes: Bayes' rule done numerically on a
grid (prior times likelihood, normalised by quadrature), scipy's normal density for the
evidence, and a Monte Carlo draw from the joint.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import integrate, stats

from vae_edu import widgets
from vae_edu.widgets.bayes import figure_to_png, gaussian_bayes_update, plot_bayes_update

SLIDER_SETTINGS = [
    # prior_mean, prior_std, noise_std, x
    (0.0, 1.0, 1.0, 0.0),
    (0.0, 1.0, 0.5, 2.0),
    (-1.5, 0.4, 2.0, 3.0),
    (2.0, 3.0, 0.2, -1.0),
    (0.7, 0.1, 0.1, 0.9),
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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


def test_exported_from_widgets_package():
    assert widgets.gaussian_bayes_update is gaussian_bayes_update
    assert widgets.plot_bayes_update is plot_bayes_update


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
def test_bad_slider_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_bayes_update(**kwargs)
    with pytest.raises(ValueError, match=match):
        plot_bayes_update(**kwargs)


def _lines(ax):
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_plot_draws_the_returned_update():
    prior_mean, prior_std, noise_std, x = -1.0, 1.5, 0.7, 1.2
    result = plot_bayes_update(prior_mean, prior_std, noise_std, x)
    ax = result.figure.axes[0]
    lines = _lines(ax)
    assert set(lines) == {
        "prior p(z)",
        "likelihood p(x|z)",
        "joint p(x|z) p(z)",
        "posterior p(z|x)",
    }
    z, posterior = lines["posterior p(z|x)"].get_data()
    # The drawn posterior peaks at the returned mean and integrates to one.
    assert z[np.argmax(posterior)] == pytest.approx(result.posterior.mean, abs=z[1] - z[0])
    assert integrate.simpson(posterior, x=z) == pytest.approx(1.0, abs=1e-3)
    # The joint's area is the evidence; joint / evidence is the posterior (Bayes' rule).
    _, joint = lines["joint p(x|z) p(z)"].get_data()
    assert integrate.simpson(joint, x=z) == pytest.approx(result.posterior.evidence, rel=1e-3)
    np.testing.assert_allclose(joint / result.posterior.evidence, posterior, atol=1e-9)
    # The prior drawn is the prior asked for.
    _, prior = lines["prior p(z)"].get_data()
    np.testing.assert_allclose(prior, stats.norm.pdf(z, prior_mean, prior_std), rtol=1e-10)
    assert f"{result.posterior.mean:.3f}" in ax.get_title()


def test_moving_a_slider_changes_what_is_drawn():
    fig, ax = plt.subplots()
    first = plot_bayes_update(0.0, 1.0, 1.0, 0.5, ax=ax)
    before = {k: v.get_data()[1].copy() for k, v in _lines(ax).items()}
    second = plot_bayes_update(0.0, 1.0, 1.0, 2.5, ax=ax)  # move only the x slider
    after = {k: v.get_data()[1] for k, v in _lines(ax).items()}
    assert first.figure is second.figure is fig
    assert len(ax.get_lines()) == 5  # redrawn, not stacked on the old curves
    assert second.posterior.mean > first.posterior.mean
    for name in ("likelihood p(x|z)", "posterior p(z|x)"):
        assert not np.allclose(before[name], after[name])


def test_num_points_validated():
    with pytest.raises(ValueError, match="num_points"):
        plot_bayes_update(0.0, 1.0, 1.0, 0.0, num_points=1)


def test_figure_to_png_renders_what_is_drawn_and_closes():
    first = plot_bayes_update(0.0, 1.0, 1.0, 0.5).figure
    png = figure_to_png(first)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert not plt.fignum_exists(first.number)
    # The same slider values give the same bytes; another value gives another picture.
    assert figure_to_png(plot_bayes_update(0.0, 1.0, 1.0, 0.5).figure) == png
    assert figure_to_png(plot_bayes_update(0.0, 1.0, 1.0, 2.5).figure) != png
    kept = plot_bayes_update(0.0, 1.0, 1.0, 0.5).figure
    figure_to_png(kept, close=False)
    assert plt.fignum_exists(kept.number)
