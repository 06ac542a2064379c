r"""Geometry of the latent space: the prior's quantile grid, traversals and interpolations.

A trained VAE maps codes z to images through its decoder mean E[x | z] = sigmoid(f_theta(z))
(:class:`vae_edu.models.LatentModel`). The lessons move z along simple paths and over a
grid that is uniform *in prior probability*:

* :func:`quantile_grid` (n): z_i = Phi^{-1}((i + 1/2) / n), the midpoints (in probability)
  of the n cells [e_i, e_{i+1}) with edges e_i = Phi^{-1}(i / n) (:func:`prior_cell_edges`),
  each of prior mass 1/n. Both come from one construction, the quantiles at the half steps
  j / (2n): odd j are the grid, even j the edges. :func:`manifold_codes` is its 2-D grid
  (Kingma & Welling 2014, figure 4); :func:`vae_edu.evaluate.prior_cell_fractions` counts
  codes in the same cells; :func:`vae_edu.plots.plot_manifold` draws the grid.
* :func:`traversal_codes` / :func:`traverse`: vary one coordinate z_k, keep the others;
* :func:`interpolation_codes` / :func:`interpolate`: the straight line between two codes.

Why a module of its own: the grid is the prior's geometry, needed both by the evaluation
statistics (:mod:`vae_edu.evaluate`, no matplotlib) and by the figures
(:mod:`vae_edu.plots`, which re-exports :func:`quantile_grid` and :func:`manifold_codes`);
defining it here, below both, keeps one implementation and no import cycle. The paths sit
next to it because they are the same kind of object: codes chosen in latent space, decoded
by :class:`~vae_edu.models.LatentModel`.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from vae_edu import _checks

__all__ = [
    "LatentPath",
    "as_code",
    "as_values",
    "quantile_grid",
    "prior_cell_edges",
    "manifold_codes",
    "traversal_codes",
    "traverse",
    "interpolation_codes",
    "interpolate",
]


# ----------------------------------------------------------------------------- validation
def as_code(z, name: str, latent_dim: int | None = None) -> np.ndarray:
    """One finite code as a (d,) float32 array, or a ValueError naming ``name``."""
    arr = np.asarray(z, np.float32)
    if arr.ndim != 1 or (latent_dim is not None and arr.shape[0] != latent_dim):
        want = f"({latent_dim},)" if latent_dim is not None else "(latent_dim,)"
        raise ValueError(f"{name} has shape {arr.shape} but must be one code of shape {want}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def as_values(values, name: str) -> np.ndarray:
    """A non-empty finite 1-D sequence as (n,) float32, or a ValueError naming ``name``."""
    arr = np.asarray(values, np.float32)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


# ----------------------------------------------------------------------------- the prior's grid
def _half_step_quantiles(n: int) -> np.ndarray:
    """Phi^{-1}(j / (2n)) for j = 1 .. 2n - 1: odd j the grid, even j the cell edges.

    Computed on the lower half and mirrored (Phi^{-1}(1 - u) = -Phi^{-1}(u)), so the
    values are exactly symmetric about 0 in floating point.
    """
    normal = NormalDist()
    lower = [normal.inv_cdf(j / (2 * n)) for j in range(1, n)]
    return np.array(lower + [0.0] + [-v for v in reversed(lower)], np.float64)


def quantile_grid(n: int) -> np.ndarray:
    r"""n values z_i = Phi^{-1}(u_i) at evenly spaced probabilities u_i = (i + 1/2) / n.

    Phi is the standard normal CDF. Cut the real line at the edges Phi^{-1}(j / n), j = 0..n
    (:func:`prior_cell_edges`): the n cells each hold prior mass exactly 1/n, and z_i is the
    point of cell i whose CDF value is the cell's midpoint (Kingma & Welling 2014, figure 4:
    "linearly spaced coordinates on the unit square were transformed through the inverse
    CDF of the Gaussian"). On a 2-D grid z_i x z_j every tile holds prior mass 1/n^2, so
    equal areas of the figure show equally probable codes. Because
    Phi^{-1}(1 - u) = -Phi^{-1}(u) and u_{n-1-i} = 1 - u_i, the grid is symmetric about 0;
    it is computed that way, so the symmetry holds exactly in floating point.

    Args:
      n: number of values (>= 1).

    Returns:
      (n,) float64, increasing; z_{n-1-i} = -z_i.

    Raises:
      TypeError: if ``n`` is not an integer. ValueError: if ``n < 1``.
    """
    n = _checks.count(n, "n")
    return _half_step_quantiles(n)[0::2]


def prior_cell_edges(grid_size: int) -> np.ndarray:
    """The n - 1 inner edges e_i = Phi^{-1}(i / n), i = 1..n-1, of the equal-prior-mass cells.

    With e_0 = -inf and e_n = +inf the n intervals [e_i, e_{i+1}) each hold prior mass 1/n;
    :func:`quantile_grid` (n) has exactly one point in each, at the cell's midpoint in
    probability. Symmetric: e_{n-i} = -e_i exactly.

    Args:
      grid_size: n >= 1.

    Returns:
      (n - 1,) float64, increasing.
    """
    n = _checks.count(grid_size, "grid_size")
    return _half_step_quantiles(n)[1::2]


def manifold_codes(n: int) -> np.ndarray:
    """The n x n codes of the manifold figure, row by row from the top-left tile.

    Tile (r, c) (row r from the top, column c from the left) shows the code
    (z_1, z_2) = (g_c, g_{n-1-r}) with g = :func:`quantile_grid` (n): z_1 grows to the
    right and z_2 upwards, as on the scatter plot of the encodings.

    Returns:
      (n * n, 2) float32; row r * n + c is tile (r, c).
    """
    g = quantile_grid(n)
    z1, z2 = np.meshgrid(g, g[::-1])  # z1[r, c] = g[c], z2[r, c] = g[n - 1 - r]
    return np.stack([z1.ravel(), z2.ravel()], axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------- paths
class LatentPath(NamedTuple):
    """Codes along a path through the latent space and their decoded images.

    Attributes:
      codes: (n, latent_dim) float32.
      images: (n, H, W) float32 in [0, 1], ``images[i]`` = E[x | codes[i]].
    """

    codes: np.ndarray
    images: np.ndarray


def traversal_codes(z0, k: int, values) -> np.ndarray:
    """Codes that equal ``z0`` except in coordinate k, which runs through ``values``.

    z^(i) = z0 + (v_i - z0_k) e_k, i.e. z^(i)_j = z0_j for j != k and z^(i)_k = v_i.

    Args:
      z0: (d,) the starting code.
      k: the coordinate to vary, 0 <= k < d (0-based: z_1 of the notebook is k = 0).
      values: (n,) values for z_k.

    Returns:
      (n, d) float32.

    Raises:
      ValueError: if k is out of range or the shapes are wrong.
    """
    z0 = as_code(z0, "z0")
    values = as_values(values, "values")
    d = z0.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < d:
        raise ValueError(
            f"k must be an integer in [0, {d}) for a code of shape {z0.shape}, got {k!r}"
        )
    codes = np.tile(z0, (values.shape[0], 1))
    codes[:, int(k)] = values
    return codes


def traverse(model, z0, k: int, values) -> LatentPath:
    """The "traverse dimension k" strip: decode z0 with z_k set to each of ``values``.

    Shows what the decoder has learned to put along axis k near z0. A dimension the model
    does not use (its KL term ~ 0, an inactive unit) gives a strip of identical images.

    Args:
      model: a VAE or :class:`~vae_edu.models.LatentModel`.
      z0: (latent_dim,) the starting code, e.g. the encoding of a test digit.
      k: the coordinate to vary (0-based).
      values: (n,) values for z_k, e.g. ``np.linspace(-3, 3, 9)``.

    Returns:
      :class:`LatentPath` (codes (n, d), images (n, H, W)).
    """
    from vae_edu.models import as_latent_model  # lazy: A3's grading kernel has no models

    latent = as_latent_model(model)
    codes = traversal_codes(as_code(z0, "z0", latent.latent_dim), k, values)
    return LatentPath(codes, latent.decode(codes))


def interpolation_codes(z_a, z_b, ts) -> np.ndarray:
    """Points z(t) = (1 - t) z_a + t z_b on the segment from z_a to z_b.

    Written in this form (not z_a + t (z_b - z_a)) so that z(0) = z_a and z(1) = z_b hold
    exactly in floating point.

    Args:
      z_a, z_b: (d,) the two end codes.
      ts: (n,) positions; 0 and 1 are the ends (values outside [0, 1] extrapolate).

    Returns:
      (n, d) float32.
    """
    z_a = as_code(z_a, "z_a")
    z_b = as_code(z_b, "z_b", z_a.shape[0])
    ts = as_values(ts, "ts")[:, None]
    return (np.float32(1.0) - ts) * z_a + ts * z_b


def interpolate(model, z_a, z_b, ts) -> LatentPath:
    """Linear interpolation in latent space: decode (1 - t) z_a + t z_b for each t.

    Unlike the pixel cross-fade (1 - t) x_a + t x_b, which superimposes two faded
    digits, every intermediate image is a decoder output, i.e. an image the model
    considers plausible: the KL term packs the encodings around the origin without gaps.

    Args:
      model: a VAE or :class:`~vae_edu.models.LatentModel`.
      z_a, z_b: (latent_dim,) the end codes (e.g. the encodings of two test digits).
      ts: (n,) positions in [0, 1].

    Returns:
      :class:`LatentPath` (codes (n, d), images (n, H, W)).
    """
    from vae_edu.models import as_latent_model  # lazy: A3's grading kernel has no models

    latent = as_latent_model(model)
    codes = interpolation_codes(
        as_code(z_a, "z_a", latent.latent_dim), as_code(z_b, "z_b", latent.latent_dim), ts
    )
    return LatentPath(codes, latent.decode(codes))
