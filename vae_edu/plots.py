"""Plot helpers shared by the notebooks and the CLI.

Static figures produced by a notebook are also written to a ``figures/`` folder by the same
code (see :func:`figures_dir`: the repository's when run from a checkout, so the README and
GitHub readers see exactly what the notebook shows; the working directory's otherwise).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from statistics import NormalDist
from typing import NamedTuple

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from vae_edu import _checks, kl
from vae_edu.conjugate import (
    ELBOReadout,
    GaussianBayesUpdate,
    elbo_readout,
    gaussian_bayes_update,
)
from vae_edu.kl import fit_forward_reverse, kl_to_standard_normal, mixture_log_density
from vae_edu.loss import LossBalance, loss_balance

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


# --- lesson figures: Bayes, KL, ELBO, loss
#
# The static figures of notebooks 01-04, also drawn by their sliders: each is a plain
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
