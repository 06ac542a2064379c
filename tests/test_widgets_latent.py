"""Tests for vae_edu.widgets.latent: the latent-space explorer of notebook 06.

The models are tiny randomly initialised VAEs (fast; the pretrained files are not needed).
Every picture is checked against an independent route: PNG bytes are decoded again with
Pillow and compared with round(255 * model.mean_image(z)) computed through the VAE itself
(not through the jitted LatentModel); the quantile grid against scipy.stats.norm.ppf and
cdf; the marker on the scatter against the axes' pixel box and a hand-written linear map.
Widgets are driven as a student would: assign ``slider.value`` or a Dropdown's ``value``
and read the Image widget's bytes.
"""

import io

import ipywidgets
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from IPython.core.formatters import DisplayFormatter
from PIL import Image
from scipy import stats

from vae_edu import widgets
from vae_edu.models import VAE, VAEConfig
from vae_edu.widgets import latent
from vae_edu.widgets.latent import (
    DECODED_IMAGE_CLASS,
    LATENT_SLIDER_CLASS,
    LatentModel,
    LatentScatter,
    build_2d_explorer,
    build_dimension_explorer,
    build_interpolation_explorer,
    decode_to_png,
    digit_choices,
    interpolate,
    interpolation_codes,
    manifold_codes,
    manifold_grid,
    median_seconds,
    pixels_to_png,
    quantile_grid,
    strip_to_png,
    tile_images,
    traversal_codes,
    traverse,
)


def tiny_vae(latent_dim: int, seed: int) -> VAE:
    """A 784-16-d VAE with random weights N(0, 1/fan_in) and biases N(0, 0.1^2).

    Built from the abstract module (nnx.eval_shape) and numpy draws: no XLA compilation
    of initialisers, so the fixture takes milliseconds.
    """
    config = VAEConfig(hidden_sizes=(16,), latent_dim=latent_dim)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0))), nnx.Param)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 1.0 / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.1
        return jnp.asarray(rng.normal(scale=scale, size=leaf.shape), jnp.float32)

    return nnx.merge(graphdef, jax.tree.map(draw, nnx.to_pure_dict(state)))


@pytest.fixture(scope="module")
def vae_2d():
    return tiny_vae(2, 0)


@pytest.fixture(scope="module")
def vae_5d():
    return tiny_vae(5, 1)


@pytest.fixture(scope="module")
def test_set():
    """40 random 'test images' (uint8) with labels 0..9 repeating."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    return images, np.arange(40) % 10


def png_pixels(data: bytes) -> np.ndarray:
    """Decodes PNG bytes with Pillow (independent of how they were written)."""
    return np.asarray(Image.open(io.BytesIO(data)))


def expected_pixels(model: VAE, z, scale: int) -> np.ndarray:
    """round(255 * E[x|z]) through the VAE's own mean_image, enlarged by repetition."""
    mean = np.asarray(model.mean_image(np.asarray(z, np.float32)), np.float64).reshape(28, 28)
    pixels = np.round(mean * 255.0).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def encoding(model: VAE, image) -> np.ndarray:
    """mu(x) through the VAE itself, for a uint8 (28, 28) image."""
    x = np.asarray(image, np.float32).reshape(1, 784) / 255.0
    return np.asarray(model.encode(x)[0][0])


def test_everything_reexported_from_widgets_package():
    for name in latent.__all__:
        assert getattr(widgets, name) is getattr(latent, name), name


# ----------------------------------------------------------------------------- LatentModel
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_latent_model_decode_equals_model_mean_image(vae_5d, batch):
    z = np.random.default_rng(1).normal(size=batch + (5,)).astype(np.float32)
    got = LatentModel(vae_5d).decode(z)
    want = np.asarray(vae_5d.mean_image(z)).reshape(batch + (28, 28))
    assert got.shape == batch + (28, 28)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_latent_model_encode_equals_model_encoder_mean(vae_5d, test_set):
    images, _ = test_set
    model = LatentModel(vae_5d)
    want = np.asarray(vae_5d.encode(images[:4].reshape(4, 784).astype(np.float32) / 255.0)[0])
    np.testing.assert_allclose(model.encode(images[:4]), want, rtol=1e-6, atol=1e-6)
    floats = images[:4].astype(np.float32) / 255.0
    np.testing.assert_allclose(model.encode(floats.reshape(4, 784)), want, rtol=1e-6, atol=1e-6)
    assert model.encode(images[0]).shape == (5,)


def test_latent_model_rejects_wrong_shapes_and_types(vae_5d):
    model = LatentModel(vae_5d)
    with pytest.raises(ValueError, match=r"z has shape \(3,\).*\(\.\.\., 5\)"):
        model.decode(np.zeros(3))
    with pytest.raises(ValueError, match=r"images have shape \(2, 27, 27\)"):
        model.encode(np.zeros((2, 27, 27)))
    with pytest.raises(TypeError, match="VAE"):
        LatentModel("not a model")


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
@pytest.mark.parametrize("n", [1, 2, 5, 20, 101])
def test_quantile_grid_matches_scipy_ppf_and_is_symmetric(n):
    grid = quantile_grid(n)
    u = (np.arange(n) + 0.5) / n
    np.testing.assert_allclose(grid, stats.norm.ppf(u), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(grid, -grid[::-1])  # exactly symmetric about 0
    assert np.all(np.diff(grid) > 0)
    # Each point sits inside its own equal-mass cell (Phi^-1(i/n), Phi^-1((i+1)/n)).
    edges = stats.norm.ppf(np.arange(n + 1) / n)
    assert np.all((edges[:-1] < grid) & (grid < edges[1:]))
    np.testing.assert_allclose(np.diff(stats.norm.cdf(edges)), 1.0 / n, rtol=1e-12)


def test_quantile_grid_rejects_bad_sizes():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            quantile_grid(bad)


def test_manifold_codes_orientation():
    n = 4
    grid = quantile_grid(n).astype(np.float32)
    codes = manifold_codes(n).reshape(n, n, 2)
    np.testing.assert_array_equal(codes[0, 0], [grid[0], grid[-1]])  # top-left: z1 low, z2 high
    np.testing.assert_array_equal(codes[-1, -1], [grid[-1], grid[0]])  # bottom-right
    np.testing.assert_array_equal(codes[:, :, 0], np.tile(grid, (n, 1)))  # z1 along columns
    np.testing.assert_array_equal(codes[:, :, 1], np.tile(grid[::-1, None], (1, n)))
    assert len({tuple(c) for c in codes.reshape(-1, 2)}) == n * n


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


# ----------------------------------------------------------------------------- paths
def test_traversal_changes_only_dimension_k():
    z0 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    values = np.linspace(-3, 3, 7)
    for k in range(4):
        codes = traversal_codes(z0, k, values)
        assert codes.shape == (7, 4)
        np.testing.assert_array_equal(codes[:, k], values.astype(np.float32))
        np.testing.assert_array_equal(
            np.delete(codes, k, axis=1), np.tile(np.delete(z0, k), (7, 1))
        )


def test_traverse_decodes_the_codes(vae_5d):
    z0 = np.array([0.1, 0.2, -0.3, 0.4, 0.0], np.float32)
    path = traverse(vae_5d, z0, 2, [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(
        path.images,
        np.asarray(vae_5d.mean_image(path.codes)).reshape(3, 28, 28),
        rtol=1e-6,
        atol=1e-7,
    )
    assert not np.allclose(path.images[0], path.images[-1])


def test_traverse_of_a_dimension_the_decoder_ignores_is_constant(vae_5d):
    # Zero the decoder's weights from z_4 (k = 3): that coordinate no longer reaches the
    # image (an "inactive unit"), so its traversal strip shows one image repeated, while
    # a used coordinate still changes it.
    model = nnx.clone(vae_5d)
    model.decoder.hidden_0.kernel[...] = model.decoder.hidden_0.kernel[...].at[3].set(0.0)
    z0 = np.array([0.5, -0.5, 1.0, 0.7, -0.2], np.float32)
    ignored = traverse(model, z0, 3, np.linspace(-3, 3, 5)).images
    used = traverse(model, z0, 0, np.linspace(-3, 3, 5)).images
    np.testing.assert_array_equal(ignored, np.broadcast_to(ignored[0], ignored.shape))
    assert np.abs(used - used[0]).max() > 1e-3


def test_traversal_rejects_bad_dimension(vae_5d):
    for bad in (-1, 5, 1.0, True):
        with pytest.raises(ValueError, match=r"k must be an integer in \[0, 5\)"):
            traversal_codes(np.zeros(5), bad, [0.0])
    with pytest.raises(ValueError, match=r"z0 has shape \(3,\)"):
        traverse(vae_5d, np.zeros(3), 0, [0.0])


def test_interpolation_endpoints_are_exact_and_the_path_is_a_line():
    rng = np.random.default_rng(3)
    z_a, z_b = rng.normal(size=(2, 6)).astype(np.float32)
    ts = np.linspace(0.0, 1.0, 11)
    codes = interpolation_codes(z_a, z_b, ts)
    np.testing.assert_array_equal(codes[0], z_a)
    np.testing.assert_array_equal(codes[-1], z_b)
    np.testing.assert_allclose(codes[5], (z_a + z_b) / 2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.diff(codes, 2, axis=0), 0.0, atol=1e-6)  # equal steps
    with pytest.raises(ValueError, match=r"z_b has shape \(5,\).*\(6,\)"):
        interpolation_codes(z_a, np.zeros(5), ts)


def test_interpolation_endpoints_equal_the_two_encodings(vae_5d, test_set):
    images, _ = test_set
    z_a, z_b = encoding(vae_5d, images[0]), encoding(vae_5d, images[1])
    path = interpolate(vae_5d, z_a, z_b, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(path.codes[0], z_a)
    np.testing.assert_array_equal(path.codes[-1], z_b)
    for i, z in ((0, z_a), (2, z_b)):
        want = np.asarray(vae_5d.mean_image(z)).reshape(28, 28)
        np.testing.assert_allclose(path.images[i], want, rtol=1e-6, atol=1e-7)


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


# ----------------------------------------------------------------------------- helpers
def test_median_seconds_calls_warmup_plus_repeats():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9
    assert isinstance(seconds, float) and seconds >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)


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


# ----------------------------------------------------------------------------- widgets
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
