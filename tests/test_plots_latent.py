"""Tests for the latent-space and evaluation figures of vae_edu.plots.

PNG bytes are decoded again with Pillow and compared with round(255 * model.mean_image(z))
computed through the VAE itself; the scatter's marker against the axes' pixel box; the
latent view against the statistics it reports; the IWAE-gap numbers against scipy.stats.sem;
the rate-distortion plane against the entries it draws.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from scipy import stats
from vae_test_models import (
    expected_pixels,
    png_pixels,
    posterior_params,
    selected_marker,
)

from vae_edu.evaluate import aggregate_kl_to_prior
from vae_edu.latent import manifold_codes
from vae_edu.models import LatentModel
from vae_edu.plots import (
    LATENT_VIEWS,
    LatentScatter,
    decode_to_png,
    iwae_gap_view,
    manifold_grid,
    pixels_to_png,
    plot_kl_per_dimension,
    plot_latent_view,
    plot_rate_distortion,
    strip_to_png,
    tile_images,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- PNG bytes
def test_pixels_to_png_round_trips_through_pillow():
    image = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    decoded = png_pixels(pixels_to_png(image, scale=2))
    assert decoded.shape == (6, 8) and decoded.dtype == np.uint8
    want = np.round(image.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded[::2, ::2], want)
    np.testing.assert_array_equal(decoded[1::2, 1::2], want)


def test_pixels_to_png_validates():
    with pytest.raises(ValueError, match="2-D"):
        pixels_to_png(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="scale"):
        pixels_to_png(np.zeros((2, 2)), scale=0)
    with pytest.raises(ValueError, match="finite"):
        pixels_to_png(np.full((2, 2), np.nan))


def test_strip_to_png_places_images_side_by_side_with_gray_gaps():
    images = np.stack([np.zeros((3, 3)), np.ones((3, 3))])
    decoded = png_pixels(strip_to_png(images, scale=1, gap=2))
    assert decoded.shape == (3, 8)
    np.testing.assert_array_equal(decoded[:, :3], 0)
    np.testing.assert_array_equal(decoded[:, 3:5], 128)  # round(0.5 * 255)
    np.testing.assert_array_equal(decoded[:, 5:], 255)
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        strip_to_png(np.zeros((3, 3)))


def test_tile_images_places_image_i_at_row_i_div_ncols_and_column_i_mod_ncols():
    images = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    canvas = tile_images(images, 2, gap=1, fill=-1.0)
    assert canvas.shape == (3 * 2 + 2, 2 * 3 + 1)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(canvas[3 * r : 3 * r + 2, 4 * c : 4 * c + 3], images[i])
    np.testing.assert_array_equal(canvas[2, :], -1.0)  # a gap row
    np.testing.assert_array_equal(canvas[6:, 4:], -1.0)  # the empty sixth place
    for bad in ({"ncols": 0}, {"ncols": 2, "gap": -1}):
        with pytest.raises(ValueError, match="must be an integer"):
            tile_images(images, **bad)


def test_decode_to_png_shows_the_decoder_mean(vae_5d):
    z = np.array([0.3, -1.0, 2.0, 0.0, 0.5], np.float32)
    for model in (vae_5d, LatentModel(vae_5d)):
        np.testing.assert_array_equal(
            png_pixels(decode_to_png(model, z, scale=3)), expected_pixels(vae_5d, z, 3)
        )
    assert decode_to_png(vae_5d, z) == decode_to_png(vae_5d, z.copy())  # deterministic
    moved = z.copy()
    moved[0] += 1.5
    assert decode_to_png(vae_5d, moved) != decode_to_png(vae_5d, z)
    with pytest.raises(ValueError, match=r"z has shape \(2,\).*\(5,\)"):
        decode_to_png(vae_5d, np.zeros(2))


# ----------------------------------------------------------------------------- the manifold
def test_manifold_grid_tiles_are_decoded_grid_codes(vae_2d):
    n = 5
    canvas = manifold_grid(vae_2d, n)
    assert canvas.shape == (n * 28, n * 28)
    codes = manifold_codes(n)
    for r, c in [(0, 0), (1, 3), (4, 4), (2, 2)]:
        tile = canvas[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28]
        want = np.asarray(vae_2d.mean_image(codes[r * n + c])).reshape(28, 28)
        np.testing.assert_allclose(tile, want, rtol=1e-6, atol=1e-7)
    # Symmetric grid: the centre tile of an odd grid is the origin.
    np.testing.assert_array_equal(codes[(n * n) // 2], [0.0, 0.0])


def test_manifold_grid_needs_a_2d_latent_space(vae_5d):
    with pytest.raises(ValueError, match="latent_dim=5"):
        manifold_grid(vae_5d, 3)


# ----------------------------------------------------------------------------- scatter
def test_scatter_marker_lands_where_the_axes_put_z():
    rng = np.random.default_rng(4)
    scatter = LatentScatter(rng.normal(size=(300, 2)), rng.integers(0, 10, 300), limit=3.0)
    box = scatter.axes.get_window_extent()  # axes rectangle, pixels from the bottom-left
    height = scatter.figure.canvas.get_width_height()[1]
    background = scatter.rgb()  # no marker
    for z in ([0.0, 0.0], [1.5, -2.0], [-2.5, 1.0], [3.0, 3.0]):
        picture = scatter.rgb(np.array(z))
        changed = np.argwhere(np.any(picture != background, axis=-1))
        # Hand-written linear map [-3, 3] -> the axes box (image rows count from the top).
        col = box.x0 + (z[0] + 3.0) / 6.0 * box.width
        row = height - (box.y0 + (z[1] + 3.0) / 6.0 * box.height)
        # Near the marker the picture changes, and only there (the marker is ~13 px wide).
        assert np.hypot(*(changed.mean(axis=0) - [row, col])) < 2.0
        assert np.abs(changed - [row, col]).max() < 15
    # Codes outside the axes are clipped to their edge.
    np.testing.assert_array_equal(
        scatter.rgb(np.array([10.0, 10.0])), scatter.rgb(np.array([3.0, 3.0]))
    )
    assert scatter.png(np.zeros(2)) != scatter.png(np.ones(2))


def test_scatter_validates_shapes():
    with pytest.raises(ValueError, match=r"means must have shape \(n, 2\)"):
        LatentScatter(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match=r"labels have shape \(4,\).*\(5, 2\)"):
        LatentScatter(np.zeros((5, 2)), np.zeros(4))


# ----------------------------------------------------------------------------- latent view
def _mesh_values(ax):
    return np.asarray(ax.collections[0].get_array()).reshape(-1)


def test_plot_latent_view_draws_what_it_reports():
    means, log_vars = posterior_params(n=500)
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
    means, _ = posterior_params(n=200)
    view = plot_latent_view(means, np.zeros(200), coordinates="prior", grid_size=8)
    ax = view.figure.axes[0]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), stats.norm.cdf(means), atol=1e-12)
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    mesh = ax.collections[0].get_coordinates()  # (rows + 1, cols + 1, 2) corners
    np.testing.assert_allclose(mesh[0, :, 0], np.linspace(0, 1, 9))


def test_plot_latent_view_changes_with_the_grid_and_the_window():
    means, _ = posterior_params(n=500)
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
    means, _ = posterior_params(n=50)
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


# ----------------------------------------------------------------------------- IWAE gap


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


# ----------------------------------------------------------------------------- rate, distortion
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
