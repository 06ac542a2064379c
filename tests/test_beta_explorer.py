"""Tests for notebook 06's beta slider: evaluate.latent_usage (against kl_per_dimension and
active_units), plots.plot_latent_usage and widgets.build_beta_explorer (driven by assigning
the slider's value and reading the Image widgets' bytes and the readout).
"""

import ipywidgets
import jax
import numpy as np
import pytest
from vae_test_models import png_pixels, random_test_set, tiny_vae, with_dead_unit

from vae_edu import evaluate
from vae_edu.plots import plot_latent_usage
from vae_edu.widgets import BETA_FIGURE_CLASS, BETA_SLIDER_CLASS, build_beta_explorer


@pytest.fixture(scope="module")
def sweep():
    """beta -> tiny 4-D VAE; the beta = 2 model has a dead unit."""
    return {0.5: tiny_vae(4, 1), 1.0: tiny_vae(4, 2), 2.0: with_dead_unit(tiny_vae(4, 3), 1)}


def test_latent_usage_agrees_with_kl_per_dimension_and_active_units(sweep):
    images, _ = random_test_set()
    model = sweep[2.0]
    usage = evaluate.latent_usage(model, images)
    np.testing.assert_allclose(
        usage.kl_per_dimension, evaluate.kl_per_dimension(model, images), rtol=1e-6
    )
    units = evaluate.active_units(model, images)
    np.testing.assert_allclose(usage.activity, units.activity, rtol=1e-6)
    assert usage.active_units == units.count == 3  # the dead unit is inactive
    means, log_vars = evaluate.encode_dataset(model, images)
    np.testing.assert_array_equal(usage.means, means)
    np.testing.assert_array_equal(usage.log_vars, log_vars)


def test_plot_latent_usage_bars_for_d_above_two_and_scatter_for_two(sweep):
    images, labels = random_test_set()
    bars = plot_latent_usage(evaluate.latent_usage(sweep[1.0], images), ylim=5.0)
    assert len(bars.axes[0].patches) == 4 and bars.axes[0].get_ylim()[1] == 5.0
    usage_2d = evaluate.latent_usage(tiny_vae(2, 0), images)
    scatter = plot_latent_usage(usage_2d, labels)
    assert scatter.axes[0].get_xlabel() != bars.axes[0].get_xlabel()
    with pytest.raises(ValueError, match="labels"):
        plot_latent_usage(usage_2d)


def test_beta_slider_redraws_the_pictures_and_the_readout(sweep):
    images, labels = random_test_set()
    explorer = build_beta_explorer(sweep, images, labels, jax.random.PRNGKey(0), num_images=4)
    slider = explorer.slider
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert [v for _, v in slider.options] == [0.5, 1.0, 2.0] and slider.value == 0.5
    assert BETA_SLIDER_CLASS in slider._dom_classes
    assert BETA_FIGURE_CLASS in explorer.plot._dom_classes
    before = (explorer.plot.value, explorer.samples.value, explorer.reconstructions.value)
    slider.value = 2.0
    after = (explorer.plot.value, explorer.samples.value, explorer.reconstructions.value)
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert "β = 2: " in explorer.readout.value and "3 of 4 active" in explorer.readout.value
    assert png_pixels(explorer.plot.value).ndim == 3
    # The same test images for every model: the originals row does not change.
    originals = explorer.originals.value
    slider.value = 1.0
    assert explorer.originals.value == originals
    slider.value = 2.0  # back again: the kept pictures
    assert (explorer.plot.value, explorer.samples.value) == after[:2]


def test_beta_explorer_rejects_bad_input(sweep):
    images, labels = random_test_set()
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="at least one"):
        build_beta_explorer({}, images, labels, key)
    with pytest.raises(ValueError, match="one of the betas"):
        build_beta_explorer(sweep, images, labels, key, value=3.0)
