"""Tests for vae_edu.latent: the prior's quantile grid and cells, traversals, interpolations.

The grid and the cell edges against scipy.stats.norm.ppf and cdf (the grid's points are the
midpoints of the equal-mass cells); paths against the VAE's own ``mean_image`` and ``encode``.
"""

import numpy as np
import pytest
from flax import nnx
from scipy import stats
from vae_test_models import encoding

from vae_edu import plots
from vae_edu.latent import (
    interpolate,
    interpolation_codes,
    manifold_codes,
    prior_cell_edges,
    quantile_grid,
    traversal_codes,
    traverse,
)


# ----------------------------------------------------------------------------- the grid
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
    for bad in (0, -3):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            quantile_grid(bad)
    for bad in (2.5, True):
        with pytest.raises(TypeError, match="n must be an integer >= 1"):
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


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_cell_edges_are_scipy_quantiles_and_symmetric(n):
    edges = prior_cell_edges(n)
    np.testing.assert_allclose(edges, stats.norm.ppf(np.arange(1, n) / n), atol=1e-12)
    assert np.all(edges == -edges[::-1])
    assert np.all(np.diff(edges) > 0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 20, 101])
def test_grid_points_are_the_midpoints_of_the_equal_mass_cells(n):
    """The one grid: point i lies inside cell i, every cell has prior mass 1/n, and the
    point is the cell's midpoint in probability (scipy's cdf, an independent route)."""
    grid = quantile_grid(n)
    edges = np.concatenate([[-np.inf], prior_cell_edges(n), [np.inf]])
    assert grid.shape == (n,) and edges.shape == (n + 1,)
    assert np.all(edges[:-1] < grid) and np.all(grid < edges[1:])
    cdf = stats.norm.cdf(edges)
    np.testing.assert_allclose(np.diff(cdf), np.full(n, 1.0 / n), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        stats.norm.cdf(grid), 0.5 * (cdf[:-1] + cdf[1:]), rtol=1e-12, atol=1e-15
    )


def test_the_figures_and_the_cli_manifold_use_the_same_grid():
    assert plots.quantile_grid is quantile_grid and plots.manifold_codes is manifold_codes
    seen = []

    def decode(z):
        seen.append(np.asarray(z))
        return np.zeros((len(z), 784))

    plots.plot_manifold(decode, grid_size=7)
    np.testing.assert_array_equal(seen[0], manifold_codes(7))


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
