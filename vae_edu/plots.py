"""Figures and pictures shared by the notebooks, their widgets and the CLI.

* saving (:func:`save_figure`) and the VAE figures of ``python -m vae_edu train``
  (reconstructions, samples, loss curves, the decoded manifold on the prior's quantile
  grid of :mod:`vae_edu.latent`);
* the lessons' slider figures of notebooks 01-05 (math in :mod:`vae_edu.conjugate`,
  :mod:`vae_edu.kl`, :mod:`vae_edu.loss`) and :func:`figure_to_png`;
* PNG bytes for ``ipywidgets.Image`` (:func:`pixels_to_png`, :func:`strip_to_png`,
  :func:`decode_to_png`) and the latent-space and evaluation figures of notebooks 06-08
  (:func:`plot_latent_view`, :func:`iwae_gap_view`, :func:`plot_rate_distortion`,
  :func:`plot_kl_per_dimension`), which draw numbers computed by :mod:`vae_edu.evaluate`.

Static figures produced by a notebook are also written to a ``figures/`` folder by the same
code (see :func:`figures_dir`: the repository's when run from a checkout, so the README and
GitHub readers see exactly what the notebook shows; the working directory's otherwise).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import NamedTuple

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image as PILImage  # Pillow: a dependency of matplotlib

from vae_edu import _checks, kl
from vae_edu.conjugate import (
    ELBOReadout,
    GaussianBayesUpdate,
    elbo_readout,
    gaussian_bayes_update,
)
from vae_edu.evaluate import (
    ImportanceWeights,
    IWAEGap,
    LatentSpaceStats,
    LatentUsage,
    SweepEntry,
    as_codes,
    importance_weights_at,
    iwae_gap,
    iwae_gaps,
    latent_space_stats,
    prefix_effective_sample_sizes,
    prefix_iwae_bounds,
)
from vae_edu.kl import fit_forward_reverse, kl_to_standard_normal, mixture_log_density
from vae_edu.latent import as_code, manifold_codes, prior_cell_edges, quantile_grid
from vae_edu.loss import LossBalance, loss_balance
from vae_edu.models import as_latent_model

__all__ = ["figures_dir", "save_figure"]


def _checkout_root() -> Path | None:
    """The repository root when the package is imported from a checkout, else None.

    A checkout has the package folder next to ``pyproject.toml`` and ``notebooks/``; an
    installed wheel (site-packages) has neither, so figures never land inside it.
    """
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def figures_dir() -> Path:
    """Where figures go, never inside an installed package.

    In order: ``$VAE_EDU_FIGURES`` if set; ``figures/`` at the repository root when the
    package runs from a checkout (so the README shows what the notebooks drew); otherwise
    ``figures/`` in the current working directory.
    """
    env = os.environ.get("VAE_EDU_FIGURES")
    if env:
        return Path(env)
    root = _checkout_root()
    return (root if root is not None else Path.cwd()) / "figures"


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
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the figures folder {out} ({err.strerror or err}); set the "
            "environment variable VAE_EDU_FIGURES to a writable folder"
        ) from None
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


def plot_manifold(decode_fn, *, grid_size: int = 20, title: str | None = None):
    """The decoded 2-D latent manifold: decode_fn on the grid of Gaussian quantiles.

    Tile (r, c) shows the code ``manifold_codes(grid_size)[r * grid_size + c]``:
    z = (g_c, g_{n-1-r}) with g = :func:`quantile_grid` (n), g_i = Phi^{-1}((i + 1/2) / n),
    so every tile holds prior mass 1/n^2 and equal areas of the figure show equally
    probable codes (Kingma & Welling 2014, figure 4).

    Args:
      decode_fn: maps z (grid_size^2, 2) to mean images (grid_size^2, 784) in [0, 1].
      grid_size: images per side.
    """
    n = _checks.count(grid_size, "grid_size")
    values = quantile_grid(n)
    images = _as_square_images(decode_fn(manifold_codes(n)))
    fig = Figure(figsize=(8, 8))
    ax = fig.subplots()
    extent = (values[0], values[-1], values[0], values[-1])
    ax.imshow(tile_images(images, n), cmap="gray", vmin=0.0, vmax=1.0, extent=extent)
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    ax.set_title(title or f"decoder mean on a {n}x{n} grid of prior quantiles")
    return fig


def plot_loss_curves(history: dict, *, title: str | None = None):
    """Per-epoch ELBO (train and test) and its two terms.

    Args:
      history: the dict returned by vae_edu.train.train (keys epoch, train_elbo,
        test_elbo, train_reconstruction, test_reconstruction, train_kl, test_kl).
    """
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


# --- lesson figures: Bayes, KL, ELBO, loss
#
# The static figures of notebooks 01-05, also drawn by their sliders: each is a plain
# function of the slider values that draws and returns the numbers it displays, so a test
# can "move a slider" by calling it. The math lives in vae_edu.conjugate, vae_edu.kl and
# vae_edu.loss; figure_to_png turns a figure into the bytes of an ipywidgets.Image.

__all__ += [
    "BayesUpdatePlot",
    "LossBalancePlot",
    "figure_to_png",
    "plot_bayes_update",
    "plot_elbo_gap",
    "plot_loss_balance",
    "show_forward_reverse_fits",
    "show_kl_to_standard_normal",
]


def figure_to_png(fig, close: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure, for the ``value`` of an ``ipywidgets.Image``.

    Drawing the widget's picture into an Image widget (rather than printing a figure inside
    an ``ipywidgets.Output``) keeps it in the widget's state: the notebook cell itself has
    no figure output, so re-executing it (nbval, Voila) produces the same outputs whether
    or not the front end routes Output-widget messages.

    Args:
      fig: a matplotlib Figure.
      close: close the figure afterwards (so pyplot does not also display it). Default True.

    Returns:
      The PNG file contents (no timestamp metadata, so equal figures give equal bytes).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    if close:
        plt.close(fig)
    return buffer.getvalue()


def _normal_log_pdf(z, mean, std):
    """log N(z; mean, std^2) elementwise (numpy, float64), for drawing."""
    return -0.5 * np.square((z - mean) / std) - np.log(std) - 0.5 * math.log(2.0 * math.pi)


def _normal_pdf(z, mean, std):
    """N(z; mean, std^2) elementwise (numpy, float64), for drawing."""
    return np.exp(_normal_log_pdf(z, mean, std))


def _fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, never as '-0.00' for a rounding-level negative."""
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


class BayesUpdatePlot(NamedTuple):
    """What the Bayes widget shows: the exact update and the figure it was drawn on."""

    posterior: GaussianBayesUpdate
    figure: plt.Figure


def plot_bayes_update(prior_mean, prior_std, noise_std, x, ax=None, num_points: int = 801):
    """Draws prior p(z), likelihood p(x | z) (as a function of z) and posterior p(z | x).

    The slider callback of notebook 01. Curves are labelled ``"prior p(z)"``,
    ``"likelihood p(x|z)"``, ``"joint p(x|z) p(z)"`` and ``"posterior p(z|x)"``; the
    joint is the unnormalised posterior, whose area under the curve is the evidence p(x).
    The title states the numbers returned.

    Args:
      prior_mean, prior_std, noise_std, x: the slider values, as in
        :func:`vae_edu.conjugate.gaussian_bayes_update`.
      ax: a matplotlib Axes to draw on (cleared first); a new figure if None.
      num_points: number of grid points in z.

    Returns:
      BayesUpdatePlot(posterior, figure): the exact update shown and the figure drawn.

    Raises:
      ValueError: as :func:`vae_edu.conjugate.gaussian_bayes_update`, or if ``num_points < 2``.
    """
    post = gaussian_bayes_update(prior_mean, prior_std, noise_std, x)
    num_points = _checks.count(num_points, "num_points", minimum=2)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.6))
    else:
        fig = ax.figure
        ax.clear()
    # A grid wide enough to show all three bumps: 4 standard deviations around each.
    lo = min(prior_mean - 4 * prior_std, x - 4 * noise_std, post.mean - 4 * post.std)
    hi = max(prior_mean + 4 * prior_std, x + 4 * noise_std, post.mean + 4 * post.std)
    z = np.linspace(lo, hi, num_points)
    prior = _normal_pdf(z, prior_mean, prior_std)
    likelihood = _normal_pdf(x, z, noise_std)
    posterior = _normal_pdf(z, post.mean, post.std)
    ax.plot(z, prior, color="tab:blue", label="prior p(z)")
    ax.plot(z, likelihood, color="tab:orange", label="likelihood p(x|z)")
    ax.plot(z, prior * likelihood, color="tab:gray", linestyle=":", label="joint p(x|z) p(z)")
    ax.plot(z, posterior, color="tab:green", linewidth=2.5, label="posterior p(z|x)")
    ax.axvline(x, color="tab:orange", linestyle="--", linewidth=1)
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.set_title(
        f"posterior mean {post.mean:.3f}, std {post.std:.3f};  evidence p(x) = {post.evidence:.3g}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper right")
    return BayesUpdatePlot(posterior=post, figure=fig)


def plot_elbo_gap(q_mean: float, q_std: float, model, x, fig=None):
    """The ELBO widget: q's mean and scale in, log p(x), ELBO and gap out (and drawn).

    Left panel: the exact posterior p(z|x), the prior p(z) and q(z) = N(q_mean, q_std^2).
    Right panel: the ELBO as a function of q's mean at the current scale, the horizontal
    line log p(x) it can never cross, and the gap KL(q || p(z|x)) at the current q.

    Args:
      q_mean: mean m of q (slider value).
      q_std: standard deviation s > 0 of q (slider value).
      model: a 1-D-latent :class:`vae_edu.conjugate.LinearGaussianModel` (weight (D, 1)).
      x: (D,) one observation.
      fig: optional matplotlib Figure or SubFigure to draw into (cleared first); a new
        10 x 3.6 inch figure with constrained layout is created when None.

    Returns:
      (fig, readout): the Figure and an :class:`vae_edu.conjugate.ELBOReadout` of Python floats.

    Raises:
      ValueError: if q_std <= 0 or is not finite, the model's latent is not 1-D, or x is
        not a single (D,) observation.
    """
    q_std = _checks.positive_finite_scalar(q_std, "q_std")
    q_mean = _checks.finite_scalar(q_mean, "q_mean")
    if np.ndim(model.weight) != 2 or np.shape(model.weight)[1] != 1:
        raise ValueError(
            f"plot_elbo_gap needs a 1-D latent: model.weight must have shape (D, 1), "
            f"got {np.shape(model.weight)}"
        )
    if np.ndim(x) != 1:
        raise ValueError(f"x must be one observation of shape (D,), got shape {np.shape(x)}")

    log_var = 2.0 * np.log(q_std)
    terms = elbo_readout(model, x, jnp.array([q_mean]), jnp.array([log_var]))
    readout = ELBOReadout(*(float(v) for v in terms))
    post_mean, post_cov = model.posterior(x)
    post_mean = float(np.reshape(post_mean, ()))
    post_std = float(np.sqrt(np.reshape(post_cov, ())))

    # A z-range that holds the prior and posterior (fixed) and follows q only when it
    # wanders off, so the axes do not jump while the slider moves inside the usual range.
    lo = min(-3.5, post_mean - 4.0 * post_std, q_mean - 3.0 * q_std)
    hi = max(3.5, post_mean + 4.0 * post_std, q_mean + 3.0 * q_std)
    z = np.linspace(lo, hi, 401)

    if fig is None:
        fig = plt.figure(figsize=(10, 3.6), layout="constrained")
    else:
        fig.clf()
    ax_density, ax_elbo = fig.subplots(1, 2)

    # Drawn on top (zorder 3) and dashed, so it stays visible when q equals the prior.
    ax_density.plot(
        z, _normal_pdf(z, 0.0, 1.0), color="0.3", ls="--", lw=1.5, zorder=3, label="prior p(z)"
    )
    ax_density.plot(
        z, _normal_pdf(z, post_mean, post_std), color="C0", lw=2, label="exact posterior p(z|x)"
    )
    ax_density.plot(
        z,
        _normal_pdf(z, q_mean, q_std),
        color="C1",
        lw=2,
        label=f"q(z) = N({q_mean:.2f}, {q_std:.2f}$^2$)",
    )
    ax_density.set_xlabel("z")
    ax_density.set_ylabel("density")
    ax_density.set_title("q against the exact posterior")
    ax_density.legend(loc="upper left", fontsize=8)

    sweep = elbo_readout(model, x, jnp.asarray(z)[:, None], jnp.full((z.size, 1), log_var))
    elbo_curve = np.asarray(sweep.elbo)
    ax_elbo.plot(z, elbo_curve, color="C1", label=f"ELBO(m, s={q_std:.2f})")
    ax_elbo.axhline(readout.log_evidence, color="C0", lw=2, label="log p(x)")
    ax_elbo.plot(
        [q_mean, q_mean],
        [readout.elbo, readout.log_evidence],
        color="C3",
        lw=2,
        label="gap = KL(q || p(z|x))",
    )
    ax_elbo.plot([q_mean], [readout.elbo], "o", color="C1", label="current q")
    bottom = min(readout.log_evidence - 8.0, readout.elbo - 1.0)
    ax_elbo.set_ylim(bottom, readout.log_evidence + 1.5)
    ax_elbo.set_xlim(lo, hi)
    ax_elbo.set_xlabel("mean m of q")
    ax_elbo.set_ylabel("nats")
    ax_elbo.set_title(
        f"log p(x) = {readout.log_evidence:.3f}   ELBO = {readout.elbo:.3f}"
        f"   gap = {readout.gap:.3f}",
        fontsize=10,
    )
    ax_elbo.legend(loc="lower center", fontsize=8)
    return fig, readout


def show_forward_reverse_fits(
    separation: float, weight: float = 0.5, ax=None
) -> kl.ForwardReverseFits:
    """Draws the mixture p and its forward- and reverse-KL Gaussian fits; returns the fits.

    Widget callback for the mixture-separation slider. The legend shows the KL each fit
    reached (the numbers returned).

    Args:
      separation: s >= 0, distance between the mixture's component means.
      weight: w in (0, 1), weight of the right-hand component.
      ax: matplotlib Axes to draw into; a new figure is created if None.

    Returns:
      The ForwardReverseFits from :func:`vae_edu.kl.fit_forward_reverse`.
    """
    fits = fit_forward_reverse(separation, weight)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    x = np.linspace(-10.0, 10.0, 801)
    ax.fill_between(
        x,
        np.exp(mixture_log_density(x, separation, weight)),
        color="0.85",
        label="target p (mixture)",
    )
    for fit, name, style in [
        (fits.forward, "forward: min KL(p||q)", "C0-"),
        (fits.reverse, "reverse: min KL(q||p)", "C3--"),
    ]:
        density = _normal_pdf(x, fit.mean, fit.std)
        ax.plot(
            x,
            density,
            style,
            lw=2,
            label=f"{name} = {_fixed(fit.kl, 3)}\n"
            f"  q = N({_fixed(fit.mean, 2)}, {_fixed(fit.std, 2)}$^2$)",
        )
    ax.set_xlim(-10, 10)
    ax.set_ylim(0, 0.45)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"separation {separation:.1f}, weight of right mode {weight:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    return fits


def show_kl_to_standard_normal(mu: float, sigma: float, axes=None) -> kl.StandardNormalKL:
    r"""Draws q = N(mu, sigma^2), p = N(0, 1) and the integrand of KL(q || p); returns the KL.

    Widget callback for the mu and sigma sliders. The closed form shown is

        KL(q || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)

    (:func:`vae_edu.kl.kl_to_standard_normal`); the lower panel shows the integrand
    q(x) log(q(x)/p(x)), negative where q < p, whose total area is that KL.

    Args:
      mu: mean of q.
      sigma: standard deviation of q, > 0.
      axes: two matplotlib Axes (densities, integrand); a new figure is created if None.

    Returns:
      StandardNormalKL(kl, kl_quadrature) as Python floats.

    Raises:
      ValueError: if sigma is not a positive finite number.
    """
    numbers = kl_to_standard_normal(mu, sigma)

    if axes is None:
        _, axes = plt.subplots(
            2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
    top, bottom = axes
    x = np.linspace(-6.0, 6.0, 601)
    q = _normal_pdf(x, mu, sigma)
    log_ratio = _normal_log_pdf(x, mu, sigma) - _normal_log_pdf(x, 0.0, 1.0)
    top.plot(x, _normal_pdf(x, 0.0, 1.0), "k--", lw=1.5, label="p = N(0, 1)")
    top.plot(x, q, "C0-", lw=2, label=f"q = N({_fixed(mu, 2)}, {_fixed(sigma, 2)}$^2$)")
    top.set_ylabel("density")
    top.set_ylim(0, max(0.45, 1.05 * float(q.max())))
    top.set_title(f"KL(q || N(0,1)) = {_fixed(numbers.kl, 4)} nats")
    top.legend(loc="upper left", fontsize=8)
    integrand = q * np.asarray(log_ratio)
    bottom.plot(x, integrand, "C3-", lw=1.5)
    bottom.fill_between(x, integrand, color="C3", alpha=0.3)
    bottom.axhline(0.0, color="k", lw=0.5)
    bottom.set_xlabel("x")
    bottom.set_ylabel("q log(q/p)")
    bottom.set_xlim(-6, 6)
    return numbers


class LossBalancePlot(NamedTuple):
    """The figure drawn by :func:`plot_loss_balance` and the numbers it shows."""

    figure: plt.Figure
    balance: LossBalance


def plot_loss_balance(
    alpha=1.0,
    beta=1.0,
    pixel_reduction="sum",
    latent_reduction="sum",
    batch_reduction="mean",
    *,
    model,
    images,
    fig=None,
    num_shown=8,
) -> LossBalancePlot:
    """The loss-balance widget: weights and reductions in, both terms and their effect out.

    Top left: the reconstruction and KL terms as the chosen loss reports them (bars, at
    the optimal q). Top right: beta_eff on a log axis, with the ELBO (beta_eff = 1) marked.
    Bottom: the first ``num_shown`` images and their reconstructions W m(x) + b under the
    encoder that minimises this loss (clipped to [0, 1] for display).

    Args:
      alpha, beta: slider values, the weights of the two terms (> 0).
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean" (dropdowns).
      model: a 28 x 28-image :class:`vae_edu.conjugate.LinearGaussianModel` (D = 784).
      images: (B, 784) a batch of images.
      fig: a matplotlib Figure or SubFigure to draw into (cleared first); a new one if None.
      num_shown: how many images (at most B) to show.

    Returns:
      LossBalancePlot(figure, balance) with the :class:`vae_edu.loss.LossBalance` displayed.

    Raises:
      ValueError: as :func:`vae_edu.loss.loss_balance`, or if the images are not 28 x 28.
    """
    balance = loss_balance(
        model,
        images,
        alpha,
        beta,
        pixel_reduction=pixel_reduction,
        latent_reduction=latent_reduction,
        batch_reduction=batch_reduction,
    )
    images = np.asarray(images)
    if images.shape[-1] != 784:
        raise ValueError(
            f"plot_loss_balance shows 28 x 28 images: images must have shape "
            f"(B, 784), got {images.shape}"
        )
    num_shown = min(_checks.count(num_shown, "num_shown"), images.shape[0])

    if fig is None:
        fig = plt.figure(figsize=(10, 5.2), layout="constrained")
    else:
        fig.clf()
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.0])
    ax_terms, ax_beta = top.subplots(1, 2, width_ratios=[1.3, 1.0])

    labels = ["reconstruction\nterm", "KL term"]
    values = [balance.reconstruction_term, balance.kl_term]
    bars = ax_terms.barh(labels, values, color=["tab:blue", "tab:orange"])
    ax_terms.axvline(0.0, color="0.3", lw=0.8)
    ax_terms.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize=8, padding=3)
    span = max(abs(v) for v in values) or 1.0
    ax_terms.set_xlim(min(0.0, min(values)) - 0.35 * span, max(0.0, max(values)) + 0.35 * span)
    ax_terms.set_xlabel("value in the loss")
    ax_terms.set_title(
        f"loss = {balance.loss:.4g}  (alpha={float(alpha):.3g}, "
        f"beta={float(beta):.3g}; {pixel_reduction}/{latent_reduction}/"
        f"{batch_reduction})",
        fontsize=9,
    )

    log_beta = math.log10(balance.effective_beta)
    ax_beta.axvspan(-5, -1, color="tab:green", alpha=0.12)
    ax_beta.axvspan(1, 5, color="tab:red", alpha=0.12)
    ax_beta.text(-3, 0.75, "autoencoder-like\n(tiny KL weight)", ha="center", fontsize=8)
    ax_beta.text(3, 0.75, "posterior collapse\n(KL dominates)", ha="center", fontsize=8)
    ax_beta.axvline(0.0, color="0.4", ls="--", lw=1)
    ax_beta.text(0.1, 0.2, "ELBO", fontsize=8, color="0.3")
    ax_beta.plot([np.clip(log_beta, -5, 5)], [0.5], "D", color="black", markersize=9)
    ax_beta.set_xlim(-5, 5)
    ax_beta.set_ylim(0, 1)
    ax_beta.set_yticks([])
    ax_beta.set_xlabel("log10 effective beta")
    ax_beta.set_title(
        f"effective beta = {balance.effective_beta:.4g};  KL = {balance.kl:.1f} "
        f"nats, {balance.active_dims} active dims",
        fontsize=9,
    )

    axes = bottom.subplots(2, num_shown, squeeze=False)
    for k in range(num_shown):
        for row, picture in enumerate((images[k], balance.reconstructions[k])):
            ax = axes[row, k]
            ax.imshow(np.clip(picture, 0.0, 1.0).reshape(28, 28), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("data", fontsize=8)
    axes[1, 0].set_ylabel("recon.", fontsize=8)
    bottom.suptitle(
        f"reconstructions by the encoder that minimises this loss "
        f"(E_q log p(x|z) = {balance.reconstruction:.1f} nats per image)",
        fontsize=9,
    )
    return LossBalancePlot(figure=fig, balance=balance)


# --------------------------------------------------------------------------------------
# --- latent space and evaluation figures (notebooks 06, 07 and 08)
# --------------------------------------------------------------------------------------
#
# Pictures for ipywidgets.Image widgets are PNG bytes (the picture lives in the widget's
# state, so it renders in JupyterLab, Voila and under nbval alike). Figures drawn by a
# widget callback are matplotlib.figure.Figure objects (not pyplot), so a slider never
# accumulates open pyplot figures. The quantile grid is vae_edu.latent's (re-exported here).

__all__ += [
    "pixels_to_png",
    "tile_images",
    "strip_to_png",
    "decode_to_png",
    "quantile_grid",
    "manifold_codes",
    "manifold_grid",
    "LatentScatter",
    "LATENT_VIEWS",
    "LatentView",
    "plot_latent_view",
    "iwae_gap_view",
    "plot_rate_distortion",
    "plot_kl_per_dimension",
]


# ----------------------------------------------------------------------------- PNG bytes
def _as_uint8(pixels) -> np.ndarray:
    arr = np.asarray(pixels, np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("pixels must be finite numbers in [0, 1]")
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(array: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of a uint8 (H, W) grayscale or (H, W, 3) RGB array (no timestamps)."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


def pixels_to_png(image, scale: int = 6) -> bytes:
    """PNG bytes of one grayscale image, enlarged ``scale`` times (nearest neighbour).

    Pixels are rounded to 8 bits, round(255 * clip(p, 0, 1)), so two images give different
    bytes exactly when some pixel differs by at least about 1/510.

    Args:
      image: (H, W) floats in [0, 1] (white = 1).
      scale: each pixel becomes a ``scale`` x ``scale`` block.

    Returns:
      The contents of an 8-bit grayscale PNG file (no timestamps: equal images give
      equal bytes).

    Raises:
      ValueError: if ``image`` is not 2-D or not finite, or ``scale < 1``.
      TypeError: if ``scale`` is not an integer.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {arr.shape}")
    scale = _checks.count(scale, "scale")
    pixels = _as_uint8(arr)
    return png_bytes(np.kron(pixels, np.ones((scale, scale), np.uint8)))


def tile_images(images, ncols: int, *, gap: int = 0, fill: float = 0.5) -> np.ndarray:
    """Images side by side in rows of ``ncols``, as one picture (for one ``imshow``).

    Image i goes to row i // ncols, column i % ncols; ``gap`` pixels of value ``fill``
    separate neighbours (and fill the unused places of the last row).

    Args:
      images: (n, H, W) with n >= 1.
      ncols: images per row (>= 1).
      gap: pixels between neighbours (>= 0).
      fill: value of the gaps.

    Returns:
      (rows * H + (rows - 1) * gap, ncols * W + (ncols - 1) * gap) array of the images'
      dtype, rows = ceil(n / ncols).

    Raises:
      ValueError: if ``images`` is not (n, H, W) with n >= 1, or ncols/gap are too small.
      TypeError: if ncols/gap are not integers.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (n, H, W) with n >= 1, got {images.shape}")
    ncols = _checks.count(ncols, "ncols")
    gap = _checks.count(gap, "gap", minimum=0)
    n, h, w = images.shape
    nrows = -(-n // ncols)
    canvas = np.full(
        (nrows * h + (nrows - 1) * gap, ncols * w + (ncols - 1) * gap), fill, images.dtype
    )
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = img
    return canvas


def strip_to_png(images, scale: int = 3, gap: int = 2) -> bytes:
    """PNG bytes of a row of grayscale images separated by gray gaps.

    Args:
      images: (n, H, W) floats in [0, 1].
      scale: enlargement factor (nearest neighbour).
      gap: gray pixels (before enlarging) between neighbours.

    Raises:
      ValueError: if ``images`` is not (n, H, W) with n >= 1.
    """
    arr = np.asarray(images, np.float32)
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise ValueError(f"images must have shape (n, H, W) with n >= 1, got {arr.shape}")
    return pixels_to_png(tile_images(arr, arr.shape[0], gap=gap, fill=0.5), scale)


def decode_to_png(model, z, scale: int = 6) -> bytes:
    """The decoded image of one code as PNG bytes: the explorer's slider callback.

    PNG(E[x | z]) with E[x | z] = sigmoid(f_theta(z)) reshaped to (28, 28).

    Args:
      model: a VAE or a :class:`vae_edu.models.LatentModel` (faster: no parameter split
        per call).
      z: (latent_dim,) one code.
      scale: enlargement factor of :func:`pixels_to_png`.

    Raises:
      ValueError: if ``z`` is not one code of the model's latent dimension.
    """
    latent = as_latent_model(model)
    z = np.asarray(z, np.float32)
    if z.shape != (latent.latent_dim,):
        raise ValueError(
            f"z has shape {z.shape} but one code of this model has shape ({latent.latent_dim},)"
        )
    image = latent.decode(z)
    if image.ndim != 2:
        raise ValueError(f"decoded images are not square: shape {image.shape}")
    return pixels_to_png(image, scale)


# ----------------------------------------------------------------------------- the manifold
def manifold_grid(model, n: int = 20) -> np.ndarray:
    """The decoded 2-D latent manifold as one image (Kingma & Welling 2014, figure 4).

    Decodes the n^2 codes of :func:`vae_edu.latent.manifold_codes` in one call and tiles
    the mean images without gaps.

    Args:
      model: a VAE or :class:`vae_edu.models.LatentModel` with latent_dim == 2 and square
        images.
      n: tiles per side.

    Returns:
      (n * H, n * W) float32 in [0, 1]; tile (r, c) is E[x | z] at code
      ``manifold_codes(n)[r * n + c]``.

    Raises:
      ValueError: if the model's latent dimension is not 2.
    """
    latent = as_latent_model(model)
    if latent.latent_dim != 2:
        raise ValueError(
            f"the manifold grid needs a 2-D latent space, the model has "
            f"latent_dim={latent.latent_dim}"
        )
    images = latent.decode(manifold_codes(n))
    if images.ndim != 3:
        raise ValueError(f"decoded images are not square: shape {images.shape}")
    return tile_images(images, n, gap=0)


# ----------------------------------------------------------------------------- the scatter
class LatentScatter:
    """The encodings of a data set, coloured by label, with a marker drawn at any point.

    The scatter is rendered once (matplotlib, Agg) and kept as a pixel buffer; each
    :meth:`png` call restores that buffer, draws only the marker on top (matplotlib
    "blitting") and encodes the PNG: a few milliseconds instead of redrawing thousands
    of points.

    Args:
      means: (n, 2) posterior means.
      labels: (n,) integer labels 0..9 (the colours of ``tab10``).
      limit: the axes show [-limit, limit] in both directions.
      max_points: draw at most this many points (the first ones).
      figsize: inches (width, height) at 100 dpi.

    Attributes:
      figure, axes: the matplotlib objects (for tests and further decoration).
    """

    def __init__(
        self,
        means,
        labels,
        *,
        limit: float = 3.0,
        max_points: int = 5000,
        figsize: tuple[float, float] = (4.4, 3.6),
    ):
        means = np.asarray(means, np.float32)
        labels = np.asarray(labels)
        if means.ndim != 2 or means.shape[1] != 2:
            raise ValueError(f"means must have shape (n, 2), got {means.shape}")
        if labels.shape != means.shape[:1]:
            raise ValueError(
                f"labels have shape {labels.shape} but means have shape "
                f"{means.shape}; expected labels of shape ({means.shape[0]},)"
            )
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"limit must be a positive number, got {limit!r}")
        self.limit = float(limit)
        self.figure = Figure(figsize=figsize, dpi=100, layout="constrained")
        FigureCanvasAgg(self.figure)
        self.axes = ax = self.figure.subplots()
        points = ax.scatter(
            means[:max_points, 0],
            means[:max_points, 1],
            c=labels[:max_points],
            cmap="tab10",
            vmin=-0.5,
            vmax=9.5,
            s=2,
            alpha=0.6,
            linewidths=0,
        )
        self.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
        ax.set_xlim(-self.limit, self.limit)
        ax.set_ylim(-self.limit, self.limit)
        ax.set_aspect("equal")
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_title("encoded test images $\\mu(x)$", fontsize=10)
        (self._marker,) = ax.plot(
            [],
            [],
            marker="X",
            markersize=13,
            markerfacecolor="white",
            markeredgecolor="black",
            markeredgewidth=1.5,
            linestyle="none",
            animated=True,
            clip_on=False,
        )
        self.figure.canvas.draw()
        self._background = self.figure.canvas.copy_from_bbox(self.figure.bbox)

    def rgb(self, z=None) -> np.ndarray:
        """(H, W, 3) uint8 picture with the marker at z = (z_1, z_2) (clipped to the axes).

        ``z=None`` gives the scatter without a marker.
        """
        canvas = self.figure.canvas
        canvas.restore_region(self._background)
        if z is not None:
            z = np.clip(as_code(z, "z", 2), -self.limit, self.limit)
            self._marker.set_data([z[0]], [z[1]])
            self.axes.draw_artist(self._marker)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def png(self, z) -> bytes:
        """PNG bytes of :meth:`rgb` (fast, light compression: this picture is large)."""
        return png_bytes(self.rgb(z), compress_level=1)


# ----------------------------------------------------------------------------- notebook 06
#: The views of :func:`plot_latent_view`: name -> (coordinates, window).
LATENT_VIEWS = {
    "z in [-3, 3]^2": ("latent", 3.0),
    "z, all codes": ("latent", None),
    "Phi(z) in [0, 1]^2": ("prior", None),
}


class LatentView(NamedTuple):
    """What the latent-space widget shows: the numbers and the figure they are drawn on."""

    stats: LatentSpaceStats
    figure: Figure


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

    The callback of notebook 06's latent-space widget; the numbers are
    :func:`vae_edu.evaluate.latent_space_stats`, the cells those of
    :func:`vae_edu.latent.prior_cell_edges`.

    Args:
      means: (N, 2) codes.
      labels: (N,) digit labels 0..9 (colours).
      log_vars: (N, 2) log-variances for the aggregate KL, or None.
      coordinates: ``"latent"`` draws z itself; ``"prior"`` draws the prior probabilities
        (Phi(z_1), Phi(z_2)) on the unit square, where the cells are equal squares and codes
        distributed like the prior would be uniform.
      window: for ``"latent"``: show [-window, window]^2 (codes outside are counted in the
        title), or None for every code. Ignored for ``"prior"``.
      grid_size, min_share: of the cells (see :func:`vae_edu.evaluate.latent_space_stats`).
      title: first title line (e.g. the model's name).
      ax: a matplotlib Axes to draw on; None makes a new (pyplot) figure.

    Returns:
      :class:`LatentView` ``(stats, figure)``.
    """
    codes = as_codes(means, dim=2)
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


# ----------------------------------------------------------------------------- notebook 08
def iwae_gap_view(
    k: int, bounds: Mapping[int, np.ndarray], elbo, *, fig: Figure | None = None
) -> tuple[Figure, IWAEGap]:
    """The k slider's figure: the gap L_k - ELBO against k, and its spread over images.

    Left panel: mean of L_k - ELBO for every k in ``bounds`` (error bars: 2 paired SE,
    :func:`vae_edu.evaluate.iwae_gaps`), the selected k circled. Right panel: histogram of
    the per-image gaps L_k(x) - ELBO(x) of the selected k, with their mean.

    Args:
      k: the selected number of importance samples (a key of ``bounds``).
      bounds: k -> (N,) per-image L_k (``evaluate.per_image_iwae``).
      elbo: (N,) per-image ELBO on the same images (``evaluate.per_image_elbo(...)[0]``).
      fig: optional Figure to draw into (cleared first).

    Returns:
      ``(figure, vae_edu.evaluate.IWAEGap)``.

    Raises:
      ValueError: k not in ``bounds`` or shapes that differ.
    """
    result = iwae_gap(k, bounds, elbo)
    gaps = iwae_gaps(bounds, elbo)
    ks = list(gaps)
    if fig is None:
        fig = Figure(figsize=(10, 3.6), layout="constrained")
    fig.clear()
    left, right = fig.subplots(1, 2)
    means = np.array([gaps[j].mean for j in ks])
    errors = 2 * np.array([gaps[j].std_error for j in ks])
    left.errorbar(ks, means, yerr=errors, marker="o", capsize=3, label="mean of L_k - ELBO")
    left.plot(
        [k], [result.gap.mean], "o", ms=14, mfc="none", mec="C3", mew=2, label=f"selected k = {k}"
    )
    left.axhline(0.0, color="gray", lw=0.8)
    left.set_xscale("log")
    left.set_xlabel("k (importance samples)")
    left.set_ylabel("nats per image")
    left.set_title("L_k - ELBO (error bars: 2 paired SE)", fontsize=10)
    left.legend(fontsize=8, loc="upper left")

    per_image = np.asarray(bounds[k], np.float64) - np.asarray(elbo, np.float64)
    right.hist(per_image, bins=40, color="C0", alpha=0.8)
    right.axvline(result.gap.mean, color="C3", lw=2, label=f"mean {result.gap.mean:.2f}")
    right.axvline(0.0, color="gray", lw=0.8)
    right.set_xlabel("L_k(x) - ELBO(x) (nats)")
    right.set_ylabel("images")
    right.set_title(f"per-image gap, k = {k}", fontsize=10)
    right.legend(fontsize=8)
    return fig, result


def _elbo_levels(low: float, high: float, count: int = 10) -> np.ndarray:
    """Round levels c in [low, high] (a step of 1, 2 or 5 times a power of ten)."""
    raw = max(high - low, 1.0) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return np.arange(math.ceil(low / step) * step, high + 1e-9, step)


def plot_rate_distortion(
    entries: Sequence[SweepEntry],
    *,
    highlight: str | None = None,
    ax=None,
    max_rate: float | None = None,
) -> Figure:
    """The models in the rate-distortion plane with lines of equal ELBO.

    Each model is a point (R, D). The dashed gray lines are D + R = c, i.e. ELBO = -c:
    moving along one trades rate for distortion at constant ELBO. For the highlighted
    model (trained on alpha * D + beta * R) the red line is its loss level set
    D + (beta/alpha) R = const through its point: among the points a model of this
    architecture can reach, training picks the one on the lowest such line, so the
    achievable frontier touches the line there with slope -beta/alpha.

    Args:
      entries: the evaluated models (connected in the given order).
      highlight: name of the entry to circle, or None.
      ax: optional Axes to draw into; else a new Figure is created.
      max_rate: right end of the rate axis (default: 1.15 times the largest rate). A model
        with a larger rate (typically beta = 0) is drawn as a triangle on the right edge,
        labelled with its rate.

    Returns:
      The Figure drawn on.

    Raises:
      ValueError: no entries, or an unknown ``highlight``.
    """
    if not entries:
        raise ValueError("entries must hold at least one evaluated model")
    names = [e.name for e in entries]
    if highlight is not None and highlight not in names:
        raise ValueError(f"highlight {highlight!r} is not one of {names}")
    if ax is None:
        fig = Figure(figsize=(5.6, 4.4), layout="constrained")
        ax = fig.subplots()
    rates = np.array([e.point.rate.mean for e in entries])
    dists = np.array([e.point.distortion.mean for e in entries])
    r_high = float(max_rate) if max_rate is not None else 1.15 * float(rates.max()) + 1.0
    if not r_high > 0:
        raise ValueError(f"max_rate must be positive, got {max_rate!r}")
    inside = rates <= r_high
    shown = np.where(inside, rates, r_high)  # off-scale models sit on the right edge
    margin = 0.12 * (float(np.ptp(dists)) + 10.0)
    d_low, d_high = float(dists.min()) - margin, float(dists.max()) + margin
    r_grid = np.linspace(0.0, r_high, 2)
    levels = _elbo_levels(d_low, d_high + r_high)
    for c in levels:
        ax.plot(r_grid, c - r_grid, ls="--", color="0.65", lw=0.8, zorder=1)
        # Label each line where it leaves the box: the right edge, else the bottom edge; no
        # right-edge label next to an off-scale model's triangle and label (they would overlap).
        near_off_scale = np.any(np.abs(dists[~inside] - (c - r_high)) < 0.12 * (d_high - d_low))
        if d_low <= c - r_high <= d_high and not near_off_scale:
            ax.text(
                r_high,
                c - r_high,
                f"ELBO = {-c:g} ",
                fontsize=7,
                color="0.4",
                va="bottom",
                ha="right",
            )
        elif 0.0 <= c - d_low <= r_high:
            ax.text(c - d_low, d_low, f"{-c:g}", fontsize=7, color="0.4", va="bottom", ha="right")
    ax.plot(shown[inside], dists[inside], "-", color="C0", lw=1, zorder=2)
    ax.plot(shown[inside], dists[inside], "o", color="C0", zorder=3)
    if not inside.all():
        ax.plot(shown[~inside], dists[~inside], ">", color="C0", ms=9, zorder=3, clip_on=False)
    for e, r, d, ok in zip(entries, shown, dists, inside, strict=True):
        text = f"β/α = {e.ratio:g}" + ("" if ok else f"\n(R = {e.point.rate.mean:.0f}, off scale)")
        ax.annotate(
            text,
            (r, d),
            textcoords="offset points",
            xytext=(6, 4) if ok else (-8, 6),
            ha="left" if ok else "right",
            fontsize=8,
        )
    if highlight is not None:
        e = entries[names.index(highlight)]
        r, d = float(shown[names.index(highlight)]), e.point.distortion.mean
        if math.isfinite(e.ratio):
            ax.plot(
                r_grid,
                d + e.ratio * (e.point.rate.mean - r_grid),
                color="C3",
                lw=1.2,
                zorder=2,
                label=f"D + {e.ratio:g} R = its loss",
            )
        ax.plot(
            [r],
            [d],
            "o",
            ms=14,
            mfc="none",
            mec="C3",
            mew=2,
            zorder=4,
            clip_on=False,
            label=f"selected: {e.name}",
            gid="selected",
        )
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlim(0.0, r_high)
    ax.set_ylim(d_low, d_high)
    ax.set_xlabel("rate R = E KL(q(z|x) || p(z))  (nats)")
    ax.set_ylabel("distortion D = -E log p(x|z)  (nats)")
    ax.set_title("rate-distortion plane (dashed: equal ELBO = -(D + R))", fontsize=10)
    return ax.figure


def plot_kl_per_dimension(
    kl_per_dimension,
    activity,
    *,
    threshold: float = 0.01,
    ax=None,
    title: str | None = None,
    ylim: float | None = None,
) -> Figure:
    """Bars of the KL per latent dimension, sorted, coloured by active / inactive.

    Args:
      kl_per_dimension: (d,) E_x KL(q(z_j|x) || N(0, 1)), nats.
      activity: (d,) A_j = Var_x(E_q[z_j|x]); a dimension is active if A_j > threshold.
      threshold: the activity threshold.
      ax: optional Axes; else a new Figure.
      title: axes title (default: "k of d units active").
      ylim: optional upper y limit (to share a scale between panels).

    Returns:
      The Figure drawn on.
    """
    kl = np.asarray(kl_per_dimension, np.float64)
    act = np.asarray(activity, np.float64)
    if kl.ndim != 1 or kl.shape != act.shape:
        raise ValueError(
            f"kl_per_dimension has shape {kl.shape} but activity has shape "
            f"{act.shape}; both must be (d,)"
        )
    if ax is None:
        fig = Figure(figsize=(5.2, 3.4), layout="constrained")
        ax = fig.subplots()
    order = np.argsort(-kl, kind="stable")
    active = act[order] > threshold
    positions = np.arange(1, kl.shape[0] + 1)
    for mask, color, label in ((active, "C0", "active"), (~active, "0.6", None)):
        if mask.any():
            ax.bar(positions[mask], kl[order][mask], color=color, label=label)
    if (~active).any():
        # An inactive unit's bar is (nearly) 0 high and would be invisible: mark its position.
        ax.plot(
            positions[~active],
            np.zeros(int((~active).sum())),
            linestyle="none",
            marker="^",
            markersize=7,
            color="0.45",
            clip_on=False,
            label="inactive (bar near 0)",
        )
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("E KL(q(z_j|x) || N(0,1))  (nats)")
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_title(
        title or f"{int(active.sum())} of {kl.shape[0]} units active (A_j > {threshold:g})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return ax.figure


__all__ += ["plot_sweep"]


def plot_sweep(
    name: str,
    entries: Sequence[SweepEntry],
    *,
    max_rate: float | None = None,
    fig: Figure | None = None,
) -> tuple[Figure, SweepEntry]:
    """One model of a sweep: the rate-distortion plane with it circled, and its KL per dimension.

    Left: :func:`plot_rate_distortion` (``highlight=name``); right:
    :func:`plot_kl_per_dimension` of the selected entry.

    Args:
      name: the selected entry's name.
      entries: all evaluated models (:class:`vae_edu.evaluate.SweepEntry`).
      max_rate: right end of the rate axis (see :func:`plot_rate_distortion`).
      fig: optional Figure to draw into (cleared first).

    Returns:
      ``(figure, the selected entry)``.

    Raises:
      ValueError: an unknown ``name``.
    """
    names = [e.name for e in entries]
    if name not in names:
        raise ValueError(f"unknown model {name!r}; choose one of {names}")
    entry = entries[names.index(name)]
    if fig is None:
        fig = Figure(figsize=(10.5, 3.9), layout="constrained")
    fig.clear()
    left, right = fig.subplots(1, 2)
    plot_rate_distortion(entries, highlight=name, ax=left, max_rate=max_rate)
    plot_kl_per_dimension(
        entry.kl_per_dimension,
        entry.activity,
        threshold=entry.threshold,
        ax=right,
        title=f"{entry.name}: {entry.active_units} of {entry.activity.shape[0]} units active",
    )
    return fig, entry


# --------------------------------------------------------------------------------------
# --- notebook 08's live k slider: the importance weights of a few images
# --------------------------------------------------------------------------------------

__all__ += ["ImportanceWeightsPlot", "plot_importance_weights"]


def _log_spaced_indices(count: int, num: int = 200) -> np.ndarray:
    """About ``num`` distinct 0-based indices from 0 to count - 1, evenly spaced in log k."""
    return np.unique(np.geomspace(1, count, num).round().astype(int)) - 1


class ImportanceWeightsPlot:
    """The k slider's figure: hat L_k, the log weights and their ESS for a few images.

    ``log_w`` (N, K) holds K importance weights per image
    (:func:`vae_edu.evaluate.per_image_log_weights`); k uses the first k of them.

    * Left: hat L_k = logsumexp_{i<=k} log w_i - log k against k (log axis) for every image,
      the selected k marked (:func:`vae_edu.evaluate.prefix_iwae_bounds`).
    * Middle: histogram of log w_i - max_i log w_i over the first k weights of each image
      (log counts; values below ``floor`` are counted in the leftmost bin).
    * Right: the effective sample size (sum w)^2 / sum w^2 against k, with ESS = k dashed
      (:func:`vae_edu.evaluate.prefix_effective_sample_sizes`).

    The curves and axes do not depend on k: they are drawn once, with fixed limits. With
    ``live=True`` (the widget) they are kept as a pixel buffer and :meth:`png` draws only
    what k changes on top (matplotlib "blitting"), so a slider move costs milliseconds
    rather than a full redraw and layout. With ``live=False`` every artist is ordinary and
    ``figure`` saves as usual after :meth:`set_k`.

    Args:
      log_w: (N, K) log importance weights.
      labels: N legend labels (default "image 1", ...).
      floor: left end of the histogram (nats below the largest weight).
      live: prepare for :meth:`png` (blitting) instead of a static figure.
      figsize: inches at 100 dpi.
    """

    def __init__(
        self,
        log_w,
        *,
        labels: Sequence[str] | None = None,
        floor: float = -30.0,
        live: bool = False,
        figsize: tuple[float, float] = (12.0, 3.8),
    ):
        self.log_w = np.asarray(log_w, np.float64)
        importance_weights_at(self.log_w, 1)  # validates the weights and their shape
        n, total = self.log_w.shape
        self.labels = [f"image {i + 1}" for i in range(n)] if labels is None else list(labels)
        if len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} entries but log_w has {n} rows")
        self.floor, self.live = float(floor), live
        self.bins = np.linspace(self.floor, 0.0, 31)
        self.figure = Figure(figsize=figsize, dpi=100, layout="constrained")
        if live:  # blitting needs the Agg canvas; a static figure keeps the default one, so
            FigureCanvasAgg(self.figure)  # IPython's inline backend can display it
        left, middle, right = self.axes = self.figure.subplots(1, 3)
        index = _log_spaced_indices(total)
        ks = index + 1
        bounds = prefix_iwae_bounds(self.log_w)
        ess = prefix_effective_sample_sizes(self.log_w)
        dynamic = {"animated": live}
        self._bound_dots, self._ess_dots, self._hists = [], [], []
        for i in range(n):
            color = f"C{i % 10}"
            left.plot(ks, bounds[i, index], color=color, lw=1.2, label=self.labels[i])
            right.plot(ks, ess[i, index], color=color, lw=1.2)
            self._bound_dots.append(left.plot([], [], "o", color=color, ms=6, **dynamic)[0])
            self._ess_dots.append(right.plot([], [], "o", color=color, ms=6, **dynamic)[0])
            self._hists.append(
                middle.stairs(
                    np.ones(len(self.bins) - 1), self.bins, color=color, lw=1.4, **dynamic
                )
            )
        right.plot(ks, ks, color="0.5", ls="--", lw=1, label="ESS = k (equal weights)")
        self._k_lines = [
            ax.axvline(1, color="0.3", lw=0.8, ls=":", **dynamic) for ax in (left, right)
        ]
        low, high = np.nanmin(bounds), np.nanmax(bounds)
        pad = 0.05 * max(high - low, 1.0)
        left.set_ylim(low - pad, high + pad)
        right.set_ylim(0.8, 1.25 * total)
        for ax in (left, right):
            ax.set_xscale("log")
            ax.set_xlim(0.8, 1.25 * total)
            ax.set_xlabel("k (the first k of one draw)")
        right.set_yscale("log")
        middle.set_yscale("log")
        middle.set_xlim(self.floor, 0.5)
        middle.set_ylim(0.7, 1.5 * total)
        left.set_ylabel("hat L_k (nats)")
        left.set_title("hat L_k per image (dots: the selected k)", fontsize=10)
        left.legend(fontsize=7, loc="lower right")
        middle.set_xlabel(f"log w_i - max log w  (leftmost bin: <= {self.floor:g})")
        middle.set_ylabel("samples")
        middle.set_title("log importance weights of the first k", fontsize=10)
        right.set_ylabel("ESS = (sum w)^2 / sum w^2")
        right.set_title("effective sample size (dots: the selected k)", fontsize=10)
        right.legend(fontsize=7, loc="upper left")
        self._k_text = middle.text(
            0.03, 0.95, "", transform=middle.transAxes, va="top", fontsize=10, **dynamic
        )
        self.figure.canvas.draw()  # lays the figure out once
        self.figure.set_layout_engine("none")  # and keeps that layout for every k
        self._background = self.figure.canvas.copy_from_bbox(self.figure.bbox) if live else None

    def _dynamic_artists(self) -> list:
        return [*self._bound_dots, *self._ess_dots, *self._hists, *self._k_lines, self._k_text]

    def set_k(self, k: int) -> ImportanceWeights:
        """Moves the dots, the dotted lines and the histograms to k; returns its summary."""
        summary = importance_weights_at(self.log_w, k)
        for i in range(self.log_w.shape[0]):
            self._bound_dots[i].set_data([k], [summary.bound[i]])
            self._ess_dots[i].set_data([k], [summary.ess[i]])
            counts, _ = np.histogram(
                np.clip(summary.relative_log_w[i], self.floor, 0.0), bins=self.bins
            )
            self._hists[i].set_data(np.where(counts > 0, counts, np.nan))
        for line in self._k_lines:
            line.set_xdata([k, k])
        self._k_text.set_text(f"k = {k}")
        return summary

    def rgb(self, k: int) -> tuple[np.ndarray, ImportanceWeights]:
        """(H, W, 3) uint8 picture at k (``live=True`` only) and the summary."""
        if not self.live:
            raise ValueError("rgb() needs an ImportanceWeightsPlot made with live=True")
        summary = self.set_k(k)
        canvas = self.figure.canvas
        canvas.restore_region(self._background)
        for artist in self._dynamic_artists():
            artist.axes.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy(), summary

    def png(self, k: int) -> tuple[bytes, ImportanceWeights]:
        """PNG bytes of :meth:`rgb` and the summary of k."""
        pixels, summary = self.rgb(k)
        return png_bytes(pixels, compress_level=1), summary


def plot_importance_weights(
    log_w,
    k: int,
    *,
    labels: Sequence[str] | None = None,
    floor: float = -30.0,
) -> tuple[Figure, ImportanceWeights]:
    """The static version of the k slider's figure (:class:`ImportanceWeightsPlot`) at k.

    Returns:
      ``(figure, vae_edu.evaluate.ImportanceWeights)`` of the selected k.
    """
    plot = ImportanceWeightsPlot(log_w, labels=labels, floor=floor)
    summary = plot.set_k(k)
    return plot.figure, summary


# --------------------------------------------------------------------------------------
# --- notebook 06's beta slider: how a model uses its latent space
# --------------------------------------------------------------------------------------

__all__ += ["plot_latent_usage"]


def plot_latent_usage(
    usage: LatentUsage,
    labels=None,
    *,
    ax=None,
    ylim: float | None = None,
    title: str | None = None,
) -> Figure:
    """The latent space of a model as far as it can be drawn.

    A 2-D model: its codes mu(x) on the prior's window (:func:`plot_latent_view`, coloured
    by ``labels``). Any other size: the KL per dimension, sorted, active units in colour
    (:func:`plot_kl_per_dimension`), since d > 2 dimensions cannot be scattered honestly.

    Args:
      usage: :class:`vae_edu.evaluate.LatentUsage` of the model.
      labels: (N,) digits of the encoded images (needed for a 2-D model).
      ax: optional Axes; else a new Figure.
      ylim: upper y limit of the KL bars (to compare models on one scale).
      title: axes title.

    Returns:
      The Figure drawn on.
    """
    if ax is None:
        fig = Figure(figsize=(5.2, 3.6), layout="constrained")
        ax = fig.subplots()
    if usage.means.shape[1] == 2:
        if labels is None:
            raise ValueError("labels are needed to draw the codes of a 2-D model")
        plot_latent_view(usage.means, labels, usage.log_vars, title=title or "", ax=ax)
    else:
        plot_kl_per_dimension(
            usage.kl_per_dimension,
            usage.activity,
            threshold=usage.threshold,
            ax=ax,
            ylim=ylim,
            title=title,
        )
    return ax.figure
