"""Tests for vae_edu.widgets.evaluation: the explorers of notebook 08, driven as a student would:
assign a slider's or dropdown's ``value`` and read the Image widget's bytes and the readout.
"""

import ipywidgets
import jax
import numpy as np
import pytest
from vae_test_models import (
    LATENT_DIM,
    png_pixels,
    selected_marker,
)

from vae_edu import widgets
from vae_edu.estimate import paired_difference
from vae_edu.widgets import evaluation
from vae_edu.widgets.evaluation import (
    build_iwae_explorer,
    build_sweep_explorer,
    sweep_view,
)


def test_everything_reexported_from_widgets_package():
    for name in evaluation.__all__:
        assert getattr(widgets, name) is getattr(evaluation, name), name


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
