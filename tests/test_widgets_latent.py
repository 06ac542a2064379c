"""Tests for vae_edu.widgets.latent: the explorers of notebook 07, driven as a student would.

Models are tiny randomly initialised VAEs. Widgets are driven by assigning ``slider.value``
or a Dropdown's ``value``; the Image widget's bytes are decoded with Pillow and compared
with round(255 * model.mean_image(z)) computed through the VAE itself.
"""

import ipywidgets
import numpy as np
import pytest
from IPython.core.formatters import DisplayFormatter
from scipy import stats
from vae_test_models import (
    encoding,
    expected_pixels,
    png_pixels,
)

from vae_edu import widgets
from vae_edu.latent import interpolate, traverse
from vae_edu.plots import strip_to_png
from vae_edu.widgets import latent
from vae_edu.widgets.latent import (
    DECODED_IMAGE_CLASS,
    LATENT_SLIDER_CLASS,
    build_2d_explorer,
    build_dimension_explorer,
    build_interpolation_explorer,
    digit_choices,
)


def test_everything_reexported_from_widgets_package():
    for name in latent.__all__:
        assert getattr(widgets, name) is getattr(latent, name), name


def test_digit_choices_lists_first_image_of_each_digit():
    labels = np.array([3, 1, 3, 0, 1, 2])
    assert digit_choices(labels, digits=(0, 1, 3)) == [
        ("digit 0 (test image #3)", 3),
        ("digit 1 (test image #1)", 1),
        ("digit 3 (test image #0)", 0),
    ]
    assert [i for _, i in digit_choices(labels, per_digit=2, digits=(1, 3))] == [1, 4, 0, 2]
    with pytest.raises(ValueError, match="digit 2 has 1 images, 2 needed"):
        digit_choices(labels, per_digit=2, digits=(2,))


def assert_latent_slider(slider):
    assert isinstance(slider, ipywidgets.FloatSlider)
    assert LATENT_SLIDER_CLASS in slider._dom_classes
    assert slider.continuous_update is False


def test_2d_explorer_every_slider_redraws_the_decoded_image(vae_2d):
    rng = np.random.default_rng(5)
    explorer = build_2d_explorer(
        vae_2d, rng.normal(size=(200, 2)), rng.integers(0, 10, 200), scale=4
    )
    assert DECODED_IMAGE_CLASS in explorer.image._dom_classes
    assert DECODED_IMAGE_CLASS not in explorer.scatter._dom_classes
    np.testing.assert_array_equal(
        png_pixels(explorer.image.value), expected_pixels(vae_2d, [0.0, 0.0], 4)
    )
    for j, slider in enumerate(explorer.sliders):
        assert_latent_slider(slider)
        before_image, before_scatter = explorer.image.value, explorer.scatter.value
        slider.value = 1.5
        z = np.zeros(2, np.float32)
        z[: j + 1] = 1.5  # earlier sliders keep their moved value
        assert explorer.image.value != before_image
        assert explorer.scatter.value != before_scatter
        np.testing.assert_array_equal(
            png_pixels(explorer.image.value), expected_pixels(vae_2d, z, 4)
        )
        assert "+1.50" in explorer.readout.value
    # The slider's far end (what the browser test presses End for) also redraws.
    before = explorer.image.value
    explorer.sliders[0].value = explorer.sliders[0].max
    assert explorer.image.value != before


def test_2d_explorer_needs_a_2d_model(vae_5d):
    with pytest.raises(ValueError, match="latent_dim=5"):
        build_2d_explorer(vae_5d, np.zeros((3, 2)), np.zeros(3))


def test_dimension_explorer_starts_at_the_encoding_and_each_slider_moves_one_coordinate(
    vae_5d, test_set
):
    images, labels = test_set
    explorer = build_dimension_explorer(vae_5d, images, labels, scale=2)
    assert len(explorer.sliders) == 5
    z0 = encoding(vae_5d, images[explorer.digit.value])
    np.testing.assert_allclose(explorer.code(), z0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        png_pixels(explorer.image.value), expected_pixels(vae_5d, explorer.code(), 2)
    )
    for j, slider in enumerate(explorer.sliders):
        assert_latent_slider(slider)
        assert DECODED_IMAGE_CLASS in explorer.image._dom_classes
        explorer.reset.click()
        before, before_code = explorer.image.value, explorer.code()
        slider.value = 1.5
        z = explorer.code()
        np.testing.assert_array_equal(np.delete(z, j), np.delete(before_code, j))
        assert z[j] == np.float32(1.5)
        assert explorer.image.value != before
        np.testing.assert_array_equal(
            png_pixels(explorer.image.value), expected_pixels(vae_5d, z, 2)
        )
    explorer.reset.click()
    np.testing.assert_allclose(explorer.code(), z0, rtol=1e-6, atol=1e-6)


def test_dimension_explorer_digit_choice_loads_its_encoding_with_one_redraw(vae_5d, test_set):
    images, labels = test_set
    explorer = build_dimension_explorer(vae_5d, images, labels)
    redraws = []
    explorer.image.observe(lambda change: redraws.append(change["new"]), names="value")
    explorer.digit.value = explorer.digit.options[3][1]  # "digit 3 (test image #3)"
    assert len(redraws) == 1  # not one per slider
    np.testing.assert_allclose(explorer.code(), encoding(vae_5d, images[3]), rtol=1e-6, atol=1e-6)


def test_dimension_explorer_traversal_strip_follows_k_and_the_sliders(vae_5d, test_set):
    images, labels = test_set
    explorer = build_dimension_explorer(vae_5d, images, labels, dimension=1, scale=2)

    def want():
        path = traverse(vae_5d, explorer.code(), explorer.dimension.value, explorer.values)
        return strip_to_png(path.images, 1)

    assert explorer.traversal.value == want()
    before = explorer.traversal.value
    explorer.dimension.value = 4
    assert explorer.traversal.value == want() != before
    before = explorer.traversal.value
    explorer.sliders[0].value = -2.0  # another coordinate: the strip's base code moved
    assert explorer.traversal.value == want() != before


def test_dimension_explorer_clips_encodings_to_the_slider_range(vae_5d, test_set):
    images, labels = test_set
    explorer = build_dimension_explorer(vae_5d, images, labels, limit=0.05, step=0.01)
    z0 = encoding(vae_5d, images[explorer.digit.value])
    np.testing.assert_allclose(explorer.code(), np.clip(z0, -0.05, 0.05), atol=1e-6)


def test_interpolation_explorer_t_slider_decodes_the_line(vae_5d, test_set):
    images, labels = test_set
    explorer = build_interpolation_explorer(vae_5d, images, labels, start=0, end=7, scale=2)
    z_a, z_b = encoding(vae_5d, images[0]), encoding(vae_5d, images[7])
    assert DECODED_IMAGE_CLASS in explorer.image._dom_classes
    assert explorer.t.continuous_update is False
    for t, z in ((0.0, z_a), (1.0, z_b), (0.25, 0.75 * z_a + 0.25 * z_b)):
        explorer.t.value = t
        got = png_pixels(explorer.image.value).astype(int)
        # 1-ulp differences of z may flip a rounded pixel by one level, never more.
        assert np.abs(got - expected_pixels(vae_5d, z, 2).astype(int)).max() <= 1
    before_strip, before_image = explorer.strip.value, explorer.image.value
    explorer.end.value = 3
    assert explorer.strip.value != before_strip
    assert explorer.image.value != before_image
    path = interpolate(vae_5d, z_a, encoding(vae_5d, images[3]), explorer.ts)
    got = png_pixels(explorer.strip.value).astype(int)
    assert np.abs(got - png_pixels(strip_to_png(path.images, 1)).astype(int)).max() <= 1


def test_explorers_display_their_widget_with_a_fixed_text(vae_2d, vae_5d, test_set):
    images, labels = test_set
    explorers = [
        build_2d_explorer(vae_2d, np.zeros((3, 2)), np.arange(3)),
        build_dimension_explorer(vae_5d, images, labels),
        build_interpolation_explorer(vae_5d, images, labels),
    ]
    formatter = DisplayFormatter()  # what IPython's display() uses
    for explorer in explorers:
        bundle, _ = formatter.format(explorer)
        view = bundle["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == explorer.widget.model_id
        # A sentence, not the repr of the NamedTuple or widget (state nbval would compare).
        assert bundle["text/plain"].startswith("[") and "Voila" in bundle["text/plain"]
        assert "children" not in bundle["text/plain"]


def test_2d_explorer_readout_shows_the_norm_and_the_prior_log_density(vae_2d):
    explorer = build_2d_explorer(vae_2d, np.zeros((3, 2)), np.arange(3), start=(1.5, -0.5))
    z = np.array([1.5, -0.5])
    log_prior = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z)
    assert f"||z|| = {np.linalg.norm(z):.2f}" in explorer.readout.value
    assert f"log p(z) = {log_prior:.2f}" in explorer.readout.value


# ----------------------------------------------------------------------------- active first
def _grid_sliders(box):
    """The FloatSliders inside ``box`` (any depth), in display order."""
    if isinstance(box, ipywidgets.FloatSlider):
        return [box]
    return [s for child in getattr(box, "children", ()) for s in _grid_sliders(child)]


def test_dimension_explorer_shows_active_dimensions_first_and_folds_the_inactive(vae_5d, test_set):
    images, labels = test_set
    activity = np.array([0.3, 0.0, 2.0, 0.005, 0.3])
    explorer = build_dimension_explorer(vae_5d, images, labels, activity=activity)
    np.testing.assert_array_equal(explorer.order, [2, 0, 4, 3, 1])  # ties keep index order
    assert [v for _, v in explorer.dimension.options] == [2, 0, 4, 3, 1]
    # The sliders tuple stays in coordinate order, so code() is z itself.
    assert [s.description for s in explorer.sliders] == ["z1", "z2", "z3", "z4", "z5"]
    folded = explorer.folded
    assert isinstance(folded, ipywidgets.Accordion) and folded.selected_index is None
    assert "2 inactive" in folded.titles[0]
    assert "N(0, 1) for every image" in folded.children[0].children[0].value
    assert [s.description for s in _grid_sliders(folded)] == ["z4", "z2"]
    shown = [
        s.description for s in _grid_sliders(explorer.widget) if s not in _grid_sliders(folded)
    ]
    assert shown == ["z3", "z1", "z5"]
    # A folded slider still drives the picture.
    before = explorer.image.value
    explorer.sliders[1].value = 3.0
    np.testing.assert_array_equal(
        png_pixels(explorer.image.value), expected_pixels(vae_5d, explorer.code(), 6)
    )
    assert explorer.image.value != before


def test_dimension_explorer_without_inactive_dimensions_has_no_fold(vae_5d, test_set):
    images, labels = test_set
    explorer = build_dimension_explorer(vae_5d, images, labels, activity=np.ones(5))
    assert explorer.folded is None
    assert len(_grid_sliders(explorer.widget)) == 5
    plain = build_dimension_explorer(vae_5d, images, labels)
    assert plain.order is None and plain.folded is None


@pytest.mark.parametrize(
    "activity, error, match",
    [
        (np.ones(4), ValueError, r"activity must have shape \(5,\)"),
        (np.array([1.0, np.nan, 0, 0, 0]), ValueError, "finite"),
    ],
)
def test_dimension_explorer_rejects_bad_activity(vae_5d, test_set, activity, error, match):
    images, labels = test_set
    with pytest.raises(error, match=match):
        build_dimension_explorer(vae_5d, images, labels, activity=activity)
