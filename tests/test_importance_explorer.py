"""Tests for notebook 08's live k slider: the figure (vae_edu.plots.ImportanceWeightsPlot)
and the widget (vae_edu.widgets.build_importance_explorer), driven by assigning the slider's
value and reading the Image widget's bytes and the readout.
"""

import ipywidgets
import numpy as np
import pytest
from vae_test_models import png_pixels

from vae_edu import evaluate
from vae_edu.plots import ImportanceWeightsPlot, plot_importance_weights
from vae_edu.widgets import (
    IMPORTANCE_FIGURE_CLASS,
    K_SLIDER_CLASS,
    build_importance_explorer,
    log_spaced_ks,
)


@pytest.fixture(scope="module")
def log_w():
    return np.random.default_rng(0).normal(-90.0, 3.0, size=(3, 200))


def test_log_spaced_ks():
    assert log_spaced_ks(5000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    assert log_spaced_ks(30) == [1, 2, 5, 10, 20, 30]
    assert log_spaced_ks(1) == [1]
    with pytest.raises(ValueError, match="largest"):
        log_spaced_ks(0)


def test_live_picture_changes_with_k_and_is_reproducible(log_w):
    plot = ImportanceWeightsPlot(log_w, live=True)
    first, summary = plot.png(5)
    assert summary.k == 5
    np.testing.assert_allclose(summary.ess, evaluate.importance_weights_at(log_w, 5).ess)
    other, _ = plot.png(200)
    assert not np.array_equal(png_pixels(first), png_pixels(other))
    again, _ = plot.png(5)
    assert again == first  # the background is restored: nothing accumulates


def test_static_figure_and_its_errors(log_w):
    fig, summary = plot_importance_weights(log_w, 50, labels=["a", "b", "c"])
    np.testing.assert_allclose(summary.bound, evaluate.prefix_iwae_bounds(log_w)[:, 49])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="labels"):
        ImportanceWeightsPlot(log_w, labels=["a"])
    with pytest.raises(ValueError, match="live=True"):
        ImportanceWeightsPlot(log_w).rgb(3)


def test_explorer_slider_redraws_image_and_readout(log_w):
    explorer = build_importance_explorer(log_w, labels=["#0", "#1", "#2"], value=10)
    slider = explorer.slider
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert list(slider.options) == log_spaced_ks(200) and slider.value == 10
    assert K_SLIDER_CLASS in slider._dom_classes
    assert IMPORTANCE_FIGURE_CLASS in explorer.image._dom_classes
    before_png, before_text = explorer.image.value, explorer.readout.value
    slider.value = 200
    assert explorer.image.value != before_png
    assert explorer.readout.value != before_text
    summary = evaluate.importance_weights_at(log_w, 200)
    for label, bound, ess in zip(["#0", "#1", "#2"], summary.bound, summary.ess, strict=True):
        assert f"<td>{label}</td><td>{bound:.2f}</td><td>{ess:.1f}</td>" in explorer.readout.value


def test_explorer_rejects_a_k_that_is_not_a_stop(log_w):
    with pytest.raises(ValueError, match="stops"):
        build_importance_explorer(log_w, value=3)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        build_importance_explorer(log_w[0])
