"""Plot helpers shared by the notebooks and the CLI.

Static figures produced by a notebook are also written to the repository's ``figures/``
folder by the same code, so the README and GitHub readers see exactly what the notebook
shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from statistics import NormalDist

import numpy as np

# matplotlib is imported inside the plotting functions, not here: ``import
# matplotlib.figure`` takes about 0.3 s (numpy 0.09 s; measured with python -X importtime),
# and figures_dir, save_figure and the CLI's commands that draw nothing need not pay it.

__all__ = ["figures_dir", "save_figure"]


def figures_dir() -> Path:
    """Where figures go: ``$VAE_EDU_FIGURES`` if set, else ``figures/`` at the repository root."""
    env = os.environ.get("VAE_EDU_FIGURES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "figures"


def save_figure(fig, name: str, directory: str | os.PathLike | None = None) -> Path:
    """Saves ``fig`` as ``<directory>/<name>.png`` (deterministic bytes: no timestamp metadata).

    Args:
      fig: a matplotlib Figure.
      name: file stem, e.g. ``"02_forward_vs_reverse_kl"``.
      directory: target folder; defaults to :func:`figures_dir`.

    Returns:
      The path written.
    """
    out = Path(directory) if directory is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path


# --------------------------------------------------------------------------------------
# VAE figures (used by `python -m vae_edu train` and the notebooks)
# --------------------------------------------------------------------------------------

__all__ += [
    "image_grid",
    "plot_reconstructions",
    "plot_manifold",
    "plot_loss_curves",
    "plot_latent_scatter",
]


def _as_square_images(images):
    arr = np.asarray(images, dtype=np.float32)
    side = int(round(np.sqrt(arr[0].size)))
    return arr.reshape(arr.shape[0], side, side)


def image_grid(images, ncols: int = 10, *, title: str | None = None, scale: float = 1.0):
    """A grid of grayscale images, no axes.

    Args:
      images: (n, 784) or (n, 28, 28) values in [0, 1].
      ncols: images per row.
      title: optional figure title.
      scale: inches per image.

    Returns:
      A matplotlib Figure.
    """
    from matplotlib.figure import Figure

    arr = _as_square_images(images)
    nrows = -(-arr.shape[0] // ncols)
    fig = Figure(figsize=(ncols * scale, nrows * scale + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < arr.shape[0]:
            ax.imshow(arr[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if title:
        fig.suptitle(title)
    return fig


def plot_reconstructions(originals, reconstructions, *, title: str | None = None):
    """Originals (top row) above their reconstructions (bottom row).

    Args:
      originals, reconstructions: (n, 784) or (n, 28, 28) in [0, 1], same n.
    """
    a, b = _as_square_images(originals), _as_square_images(reconstructions)
    if a.shape != b.shape:
        raise ValueError(f"originals have shape {a.shape} but reconstructions {b.shape}")
    fig = image_grid(
        np.concatenate([a, b]),
        ncols=a.shape[0],
        title=title or "top: test images, bottom: reconstructions",
    )
    return fig


def plot_manifold(
    decode_fn, *, grid_size: int = 20, quantile: float = 0.95, title: str | None = None
):
    """The decoded 2-D latent manifold: decode_fn on a grid of Gaussian quantiles.

    Grid points are z = (Phi^-1(u), Phi^-1(v)) for u, v evenly spaced in
    [1 - quantile, quantile], so equal areas of the figure hold equal prior mass
    (Kingma & Welling 2014, figure 4).

    Args:
      decode_fn: maps z (grid_size^2, 2) to mean images (grid_size^2, 784) in [0, 1].
      grid_size: images per side.
      quantile: the outermost prior quantile shown.
    """
    u = np.linspace(1.0 - quantile, quantile, grid_size)
    values = np.array([NormalDist().inv_cdf(p) for p in u])
    # Row r (top to bottom) has z_2 decreasing, column c has z_1 increasing.
    z = np.array(
        [[values[c], values[::-1][r]] for r in range(grid_size) for c in range(grid_size)],
        np.float32,
    )
    images = _as_square_images(decode_fn(z))
    side = images.shape[-1]
    canvas = images.reshape(grid_size, grid_size, side, side).transpose(0, 2, 1, 3)
    canvas = canvas.reshape(grid_size * side, grid_size * side)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 8))
    ax = fig.subplots()
    extent = (values[0], values[-1], values[0], values[-1])
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, extent=extent)
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    ax.set_title(title or f"decoder mean on a {grid_size}x{grid_size} grid of prior quantiles")
    return fig


def plot_loss_curves(history: dict, *, title: str | None = None):
    """Per-epoch ELBO (train and test) and its two terms.

    Args:
      history: the dict returned by vae_edu.train.train (keys epoch, train_elbo,
        test_elbo, train_reconstruction, test_reconstruction, train_kl, test_kl).
    """
    from matplotlib.figure import Figure

    epochs = history["epoch"]
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(
        axes,
        ("elbo", "reconstruction", "kl"),
        ("ELBO", "E_q log p(x|z)", "KL(q(z|x) || p(z))"),
        strict=True,
    ):
        ax.plot(epochs, history[f"train_{key}"], label="train")
        ax.plot(epochs, history[f"test_{key}"], label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return fig


def plot_latent_scatter(means, labels, *, title: str | None = None, max_points: int = 5000):
    """Posterior means of a 2-D latent space, coloured by digit label."""
    from matplotlib.figure import Figure

    means, labels = np.asarray(means)[:max_points], np.asarray(labels)[:max_points]
    if means.ndim != 2 or means.shape[1] != 2:
        raise ValueError(f"means must have shape (n, 2), got {means.shape}")
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    points = ax.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("E_q[z_1]")
    ax.set_ylabel("E_q[z_2]")
    ax.set_title(title or "posterior means of test images")
    return fig
