"""Tests for the lesson figures of vae_edu.plots (notebooks 01-05) and figure_to_png.

Each figure function is a slider callback: the tests "move the slider" by calling it and
check that what is drawn is what is returned (against scipy densities and quadrature),
that the drawing follows the slider, and that bad slider values are refused by name.
"""

import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import integrate, stats

from vae_edu.conjugate import ELBOReadout, elbo_readout
from vae_edu.kl import fit_forward_reverse, kl_to_standard_normal
from vae_edu.plots import (
    figure_to_png,
    plot_bayes_update,
    plot_elbo_gap,
    plot_loss_balance,
    show_forward_reverse_fits,
    show_kl_to_standard_normal,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------- Bayes update (notebook 01)


def test_bayes_plot_refuses_bad_slider_values():
    """Each bad slider value is refused by name (before anything is drawn)."""
    # (prior_mean, prior_std, noise_std, x): the cases of test_conjugate_lessons.
    for args, name in [
        ((0.0, 0.0, 1.0, 0.0), "prior_std"),
        ((0.0, 1.0, -1.0, 0.0), "noise_std"),
        ((0.0, 1.0, math.inf, 0.0), "noise_std"),
        ((math.nan, 1.0, 1.0, 0.0), "prior_mean"),
        ((0.0, 1.0, 1.0, math.inf), "x"),
    ]:
        with pytest.raises(ValueError, match=name):
            plot_bayes_update(*args)


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


# ----------------------------- forward / reverse KL and KL to N(0, 1) (notebook 02)


@pytest.fixture
def new_axes():
    figures = []

    def make(nrows=1):
        fig, axes = plt.subplots(nrows, 1)
        figures.append(fig)
        return axes

    yield make
    for fig in figures:
        plt.close(fig)


def test_show_forward_reverse_fits_draws_what_it_returns_and_follows_the_slider(new_axes):
    ax_near, ax_far = new_axes(), new_axes()
    near = show_forward_reverse_fits(1.0, ax=ax_near)
    far = show_forward_reverse_fits(7.0, ax=ax_far)
    assert near == fit_forward_reverse(1.0)
    assert far == fit_forward_reverse(7.0)
    fwd_line, rev_line = ax_far.lines
    x = fwd_line.get_xdata()
    np.testing.assert_allclose(
        fwd_line.get_ydata(), stats.norm.pdf(x, far.forward.mean, far.forward.std), atol=1e-6
    )
    np.testing.assert_allclose(
        rev_line.get_ydata(), stats.norm.pdf(x, far.reverse.mean, far.reverse.std), atol=1e-6
    )
    assert f"{far.reverse.kl:.3f}" in rev_line.get_label()
    assert "-0.00" not in ax_near.lines[0].get_label() + ax_near.lines[1].get_label()
    # Moving the slider changes what is drawn.
    assert not np.allclose(ax_near.lines[1].get_ydata(), rev_line.get_ydata(), atol=1e-3)


def test_kl_to_standard_normal_draws_q_and_follows_the_sliders(new_axes):
    axes_a, axes_b = new_axes(2), new_axes(2)
    shown = show_kl_to_standard_normal(1.0, 0.5, axes=axes_a)
    assert shown == kl_to_standard_normal(1.0, 0.5)  # the numbers shown are the lesson's
    show_kl_to_standard_normal(-1.0, 0.5, axes=axes_b)
    p_line, q_line = axes_a[0].lines
    x = q_line.get_xdata()
    np.testing.assert_allclose(p_line.get_ydata(), stats.norm.pdf(x), atol=1e-6)
    np.testing.assert_allclose(q_line.get_ydata(), stats.norm.pdf(x, 1.0, 0.5), atol=1e-6)
    assert f"{shown.kl:.4f}" in axes_a[0].get_title()
    # The drawn integrand integrates (trapezoid on the plotted x) to the displayed KL.
    integrand = axes_a[1].lines[0]
    assert np.trapezoid(integrand.get_ydata(), integrand.get_xdata()) == pytest.approx(
        shown.kl, abs=1e-4
    )
    assert not np.allclose(axes_b[0].lines[1].get_ydata(), q_line.get_ydata())


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.inf, np.nan])
def test_kl_to_standard_normal_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        show_kl_to_standard_normal(0.0, sigma)


# ----------------------------------------------------------- ELBO gap (notebook 03)


def _observation(model, seed):
    return np.asarray(model.sample(jax.random.key(seed), 1).x[0])


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
    post_mean, post_cov = (np.asarray(a, np.float64) for a in model_1d.posterior(x))
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


# ------------------------------------------------------- loss balance (notebook 05)


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
