"""Update functions behind the training notebook's latent-space widget.

Plain functions, unit-tested.

Notebook 05 compares the 2-D latent space of a VAE (beta = 1) with that of the same
network trained as a plain autoencoder (beta = 0). The numbers that make "centred and
without large gaps versus scattered" precise:

* the moments of the *aggregate posterior* q(z) = (1/N) sum_n N(z ; mu_n, diag sigma_n^2),
  the distribution of the code of a random image (law of total variance):

      E_q[z] = (1/N) sum_n mu_n,
      Cov_q[z] = (1/N) sum_n (mu_n - E_q[z]) (mu_n - E_q[z])^T + diag((1/N) sum_n sigma_n^2),

  and KL( N(E_q[z], Cov_q[z]) || N(0, I) ), zero when the codes have the prior's moments;

* the codes counted in the n x n cells of the *prior-quantile grid*: cell (i, j) is
  [e_i, e_{i+1}) x [e_j, e_{j+1}) with e_i = Phi^{-1}(i / n) (e_0 = -inf, e_n = +inf), so every
  cell holds prior mass exactly 1/n^2 (Kingma & Welling 2014, figure 4). If the codes
  were distributed like the prior, each cell would hold a fraction 1/n^2 of them;
  equivalently the prior probabilities (Phi(z_1), Phi(z_2)) of the codes would be uniform on
  the unit square (the probability integral transform). A cell holding far fewer codes
  than its share is a region a sampler z ~ N(0, I) visits but the decoder rarely saw.

:func:`plot_latent_view` is the callback of the notebook's widget.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from vae_edu.kl import kl_mvn

__all__ = [
    "LatentSpaceStats",
    "LatentView",
    "LATENT_VIEWS",
    "aggregate_posterior_moments",
    "aggregate_kl_to_prior",
    "prior_cell_edges",
    "prior_cell_fractions",
    "latent_space_stats",
    "plot_latent_view",
]

#: The views of :func:`plot_latent_view`: name -> (coordinates, window).
LATENT_VIEWS = {
    "z in [-3, 3]^2": ("latent", 3.0),
    "z, all codes": ("latent", None),
    "Phi(z) in [0, 1]^2": ("prior", None),
}


class LatentSpaceStats(NamedTuple):
    """How prior-like a set of 2-D codes is.

    Attributes:
      code_mean: (d,) mean of the posterior means mu_n.
      code_std: (d,) standard deviation of the posterior means.
      aggregate_kl: KL(N(E_q[z], Cov_q[z]) || N(0, I)) of the aggregate posterior's
        moments, nats: a lower bound on KL(q(z) || N(0, I)) itself (the Gaussian has the
        largest entropy for given moments).
      underpopulated_fraction: fraction of the n x n equal-prior-mass cells holding fewer
        than ``min_share`` times their share 1/n^2 of the codes.
      total_variation: (1/2) sum over cells of |fraction of codes - 1/n^2|, in [0, 1):
        the fraction of codes that would have to move to other cells to match the prior.
      cell_fractions: (n, n) fraction of the codes in each cell (row i: z_1, column j: z_2).
    """

    code_mean: np.ndarray
    code_std: np.ndarray
    aggregate_kl: float
    underpopulated_fraction: float
    total_variation: float
    cell_fractions: np.ndarray


class LatentView(NamedTuple):
    """What the latent-space widget shows: the numbers and the figure they are drawn on."""

    stats: LatentSpaceStats
    figure: plt.Figure


def _as_codes(means, name: str = "means") -> np.ndarray:
    codes = np.asarray(means, np.float64)
    if codes.ndim != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, d) with N >= 2, got {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"{name} contains NaN or inf")
    return codes


def _as_codes_2d(means, name: str = "means") -> np.ndarray:
    codes = _as_codes(means, name)
    if codes.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) for the 2-D grid, got {codes.shape}")
    return codes


def _check_grid_size(grid_size) -> int:
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive integer, got {grid_size!r}")
    return int(grid_size)


def aggregate_posterior_moments(means, log_vars=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the aggregate posterior q(z) = (1/N) sum_n N(mu_n, diag sigma_n^2).

    E_q[z]   = (1/N) sum_n mu_n
    Cov_q[z] = (1/N) sum_n (mu_n - E_q[z])(mu_n - E_q[z])^T + diag((1/N) sum_n sigma_n^2)
    (law of total variance: the spread of the centres plus the average width).

    Args:
      means: (N, d) posterior means mu_n.
      log_vars: (N, d) posterior log-variances log sigma_n^2, or None for point codes
        (sigma_n = 0).

    Returns:
      ``(mean (d,), cov (d, d))`` float64.

    Raises:
      ValueError: bad shapes (both named) or non-finite values.
    """
    codes = _as_codes(means)
    centre = codes.mean(axis=0)
    deviations = codes - centre
    cov = deviations.T @ deviations / codes.shape[0]
    if log_vars is not None:
        log_vars = np.asarray(log_vars, np.float64)
        if log_vars.shape != codes.shape:
            raise ValueError(
                f"log_vars has shape {log_vars.shape} but means has shape "
                f"{codes.shape}; they must match"
            )
        if not np.all(np.isfinite(log_vars)):
            raise ValueError("log_vars contains NaN or inf")
        cov = cov + np.diag(np.exp(log_vars).mean(axis=0))
    return centre, cov


def aggregate_kl_to_prior(means, log_vars=None) -> float:
    """KL(N(m, S) || N(0, I)) for the moments (m, S) of the aggregate posterior.

    KL = 1/2 [ tr S + m^T m - d - log det S ]  (vae_edu.kl.kl_mvn with p = N(0, I)).

    Only a lower bound on KL(q(z) || N(0, I)) for the aggregate posterior q(z) itself: the
    cross-entropy term depends on q only through (m, S), and the Gaussian has the largest
    entropy of all distributions with those moments.
    Zero exactly when the codes have the prior's mean 0 and covariance I. It sees only the
    first two moments: clusters and gaps inside the cloud do not change it.

    Args:
      means: (N, d) posterior means.
      log_vars: (N, d) posterior log-variances, or None (point codes).

    Returns:
      The KL in nats (float).
    """
    mean, cov = aggregate_posterior_moments(means, log_vars)
    d = mean.shape[0]
    return float(kl_mvn(mean, cov, np.zeros(d), np.eye(d)))


def prior_cell_edges(grid_size: int) -> np.ndarray:
    """The n - 1 inner edges e_i = Phi^{-1}(i / n), i = 1..n-1, of the equal-prior-mass cells.

    With e_0 = -inf and e_n = +inf the n intervals [e_i, e_{i+1}) each hold prior mass 1/n
    (Phi is the standard normal CDF). Symmetric: e_{n-i} = -e_i exactly.

    Args:
      grid_size: n >= 1.

    Returns:
      (n - 1,) float64, increasing.
    """
    n = _check_grid_size(grid_size)
    normal = NormalDist()
    lower = [normal.inv_cdf(i / n) for i in range(1, (n + 1) // 2)]
    middle = [0.0] if n % 2 == 0 else []
    return np.array(lower + middle + [-v for v in reversed(lower)], np.float64)


def prior_cell_fractions(codes, grid_size: int = 20) -> np.ndarray:
    """Fraction of the codes in each cell of the n x n prior-quantile grid.

    Cell (i, j) = [e_i, e_{i+1}) x [e_j, e_{j+1}) with e from :func:`prior_cell_edges`;
    under the prior N(0, I) every cell has probability 1/n^2.

    Args:
      codes: (N, 2) codes.
      grid_size: n, cells per axis.

    Returns:
      (n, n) float64 fractions summing to 1; entry [i, j] counts z_1 in cell i, z_2 in cell j.
    """
    codes = _as_codes_2d(codes, "codes")
    n = _check_grid_size(grid_size)
    index = np.searchsorted(prior_cell_edges(n), codes, side="right")  # (N, 2) in 0..n-1
    counts = np.bincount(index[:, 0] * n + index[:, 1], minlength=n * n)
    return counts.reshape(n, n) / codes.shape[0]


def latent_space_stats(
    means, log_vars=None, *, grid_size: int = 20, min_share: float = 0.25
) -> LatentSpaceStats:
    """The numbers of :class:`LatentSpaceStats` for (N, 2) codes.

    Args:
      means: (N, 2) posterior means (the codes).
      log_vars: (N, 2) posterior log-variances for the aggregate posterior, or None.
      grid_size: n, cells per axis of the prior-quantile grid.
      min_share: a cell is underpopulated if it holds less than min_share / n^2 of the codes.
    """
    codes = _as_codes_2d(means)
    if not (math.isfinite(min_share) and min_share > 0):
        raise ValueError(f"min_share must be a positive number, got {min_share!r}")
    fractions = prior_cell_fractions(codes, grid_size)
    share = 1.0 / fractions.size
    return LatentSpaceStats(
        codes.mean(axis=0),
        codes.std(axis=0),
        aggregate_kl_to_prior(codes, log_vars),
        float(np.mean(fractions < min_share * share)),
        float(0.5 * np.abs(fractions - share).sum()),
        fractions,
    )


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.vectorize(NormalDist().cdf, otypes=[np.float64])(z)


def plot_latent_view(
    means,
    labels,
    log_vars=None,
    *,
    coordinates: str = "latent",
    window: float | None = 3.0,
    grid_size: int = 20,
    min_share: float = 0.25,
    title: str = "",
    ax=None,
) -> LatentView:
    """Codes coloured by label over the prior-quantile cells, underpopulated cells shaded.

    The callback of notebook 05's latent-space widget.

    Args:
      means: (N, 2) codes.
      labels: (N,) digit labels 0..9 (colours).
      log_vars: (N, 2) log-variances for the aggregate KL, or None.
      coordinates: ``"latent"`` draws z itself; ``"prior"`` draws the prior probabilities
        (Phi(z_1), Phi(z_2)) on the unit square, where the cells are equal squares and codes
        distributed like the prior would be uniform.
      window: for ``"latent"``: show [-window, window]^2 (codes outside are counted in the
        title), or None for every code. Ignored for ``"prior"``.
      grid_size, min_share: of the cells (see :func:`latent_space_stats`).
      title: first title line (e.g. the model's name).
      ax: a matplotlib Axes to draw on; None makes a new figure.

    Returns:
      :class:`LatentView` ``(stats, figure)``.
    """
    codes = _as_codes_2d(means)
    labels = np.asarray(labels)
    if labels.shape != (codes.shape[0],):
        raise ValueError(
            f"labels has shape {labels.shape} but means has shape {codes.shape}; "
            f"expected ({codes.shape[0]},)"
        )
    if coordinates not in ("latent", "prior"):
        raise ValueError(f"coordinates must be 'latent' or 'prior', got {coordinates!r}")
    if window is not None and not (math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number or None, got {window!r}")
    stats = latent_space_stats(codes, log_vars, grid_size=grid_size, min_share=min_share)
    n = stats.cell_fractions.shape[0]
    if coordinates == "prior":
        points = _normal_cdf(codes)
        edges = np.linspace(0.0, 1.0, n + 1)
        low, high = 0.0, 1.0
        where, names = "equal cells = equal prior mass", ("$\\Phi(z_1)$", "$\\Phi(z_2)$")
    else:
        points = codes
        if window is None:
            low, high = (float(np.min(codes)), float(np.max(codes)))
            pad = 0.03 * (high - low)
            low, high = min(low - pad, -3.0), max(high + pad, 3.0)
            where = "all codes shown"
        else:
            low, high = -window, window
            outside = int(np.sum(np.any(np.abs(codes) > window, axis=1)))
            where = f"{outside} of {codes.shape[0]} codes outside this window"
        inner = prior_cell_edges(n)
        edges = np.concatenate(
            [
                [min(low, inner[0] - 1.0) if n > 1 else low],
                inner,
                [max(high, inner[-1] + 1.0) if n > 1 else high],
            ]
        )
        names = ("$z_1$", "$z_2$")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 5.2))
    else:
        fig = ax.figure
    underpopulated = stats.cell_fractions < min_share / n**2
    # pcolormesh wants C[row = y cell, column = x cell]: transpose the (z_1, z_2) layout.
    ax.pcolormesh(
        edges,
        edges,
        underpopulated.T.astype(float),
        cmap=ListedColormap(["white", "#f6c6c6"]),
        vmin=0.0,
        vmax=1.0,
        # Cell edges only on the unit square, where the cells are equal; in z they crowd
        # near the origin and hide the codes.
        edgecolors="0.9" if coordinates == "prior" else "none",
        linewidth=0.2,
    )
    # Opaque, non-antialiased dots: 10,000 of them compress to a PNG 4x smaller.
    scatter = ax.scatter(
        points[:, 0],
        points[:, 1],
        c=labels,
        cmap="tab10",
        vmin=-0.5,
        vmax=9.5,
        s=3,
        linewidths=0,
        antialiased=False,
        rasterized=True,
    )
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    colorbar = fig.colorbar(scatter, ax=ax, ticks=range(10), shrink=0.8)
    colorbar.set_label("digit")
    heading = f"{title}\n" if title else ""
    ax.set_title(
        f"{heading}shaded: {stats.underpopulated_fraction:.1%} of the {n}x{n} cells "
        f"under {min_share:g} of their share\naggregate KL >= {stats.aggregate_kl:.2f} "
        f"nats (moment-matched); {where}",
        fontsize=9,
    )
    return LatentView(stats, fig)
