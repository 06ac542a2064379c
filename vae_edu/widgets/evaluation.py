"""Update functions behind the evaluation notebook (07), plain and unit-tested.

Two questions, two sets of helpers:

**How good is the model?** The importance-weighted bound (Burda et al. 2016, eq. 8)

    L_k(x) = log (1/k) sum_{i=1}^k p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

satisfies E[L_1] = ELBO(x) <= E[L_k] <= E[L_{k+1}] <= log p(x). Per-image values come from
:func:`vae_edu.evaluate.per_image_iwae`; here :func:`paired_difference` turns two per-image
arrays into a mean difference with its *paired* standard error, and :func:`iwae_gap_view`
(the k slider) draws the gap L_k - ELBO, a lower bound (in expectation) on the average
KL(q(z|x) || p(z|x)) = log p(x) - ELBO(x).

**What do the loss weights do?** A model trained on alpha * (-reconstruction) + beta * KL
sits at a point of the rate-distortion plane (Alemi et al. 2018, "Fixing a Broken ELBO"):

    rate        R = E_x KL(q(z|x) || p(z))          (nats)
    distortion  D = -E_x E_q[log p(x|z)]            (nats)
    ELBO = -(D + R), so the lines D + R = c are lines of equal ELBO.

:func:`rate_distortion` and :func:`evaluate_sweep_entry` compute them (with active units and
the KL per latent dimension), :func:`plot_rate_distortion` and :func:`plot_kl_per_dimension`
draw them, :func:`sweep_view` is the model dropdown's callback and
:func:`build_sweep_explorer` wires it. :func:`optimal_posterior` fits q for a *fixed* decoder
under given weights, to check numerically that only beta / alpha matters.

Pictures go into ``ipywidgets.Image`` widgets as PNG bytes (``figure_to_png`` of the Bayes
widgets, ``strip_to_png`` of the latent widgets), so they render in JupyterLab, Voila and
under nbval alike. Figures are ``matplotlib.figure.Figure`` objects (not pyplot), so a
slider callback never accumulates open pyplot figures.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from vae_edu import data as data_lib
from vae_edu import evaluate
from vae_edu.kl import kl_diag_gaussians
from vae_edu.models import VAE
from vae_edu.plots import figure_to_png
from vae_edu.widgets.latent import as_latent_model, strip_to_png

__all__ = [
    "mean_estimate",
    "paired_difference",
    "IWAEGap",
    "iwae_gap_view",
    "IWAEExplorer",
    "build_iwae_explorer",
    "RateDistortion",
    "rate_distortion",
    "binarization_key",
    "SweepEntry",
    "evaluate_sweep_entry",
    "plot_rate_distortion",
    "plot_kl_per_dimension",
    "ImageRows",
    "reconstructions_and_samples",
    "SweepView",
    "sweep_view",
    "SweepExplorer",
    "build_sweep_explorer",
    "PosteriorFit",
    "optimal_posterior",
]


# ----------------------------------------------------------------------------- estimates
def _estimate(values) -> evaluate.Estimate:
    """Mean of per-image values and its standard error std(ddof=1) / sqrt(N)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(
            f"need a 1-D array of at least 2 per-image values, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("per-image values must be finite")
    return evaluate.Estimate(
        float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.shape[0]))
    )


def mean_estimate(values) -> evaluate.Estimate:
    """Mean of per-image values with its standard error, std(ddof=1) / sqrt(N).

    Args:
      values: (N,) finite per-image values, N >= 2 (e.g. ``evaluate.per_image_iwae``).

    Returns:
      ``evaluate.Estimate(mean, std_error)``.
    """
    return _estimate(values)


def paired_difference(a, b) -> evaluate.Estimate:
    """Mean of a_n - b_n over images with its paired standard error.

    mean = (1/N) sum_n (a_n - b_n),   SE = std_n(a_n - b_n) / sqrt(N)   (ddof = 1).

    Two estimates on the *same* images share the image-to-image spread (some digits are
    simply more probable than others), which dominates the SE of each mean; the SE of the
    paired difference does not contain it, so it is usually far smaller than
    sqrt(SE_a^2 + SE_b^2).

    Args:
      a, b: (N,) per-image values on the same N images, N >= 2.

    Returns:
      ``evaluate.Estimate(mean, std_error)``.

    Raises:
      ValueError: shapes differ, are not 1-D, N < 2, or values are not finite.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}; they must match")
    return _estimate(a - b)


# ----------------------------------------------------------------------------- IWAE slider
class IWAEGap(NamedTuple):
    """What the k slider shows (nats per image).

    Attributes:
      k: number of importance samples.
      bound: mean of L_k over the images and its SE (image-to-image spread included).
      gap: mean of L_k - ELBO and its paired SE; in expectation a lower bound on the
        average KL(q(z|x) || p(z|x)) (zero in expectation for k = 1).
    """

    k: int
    bound: evaluate.Estimate
    gap: evaluate.Estimate


def _check_bounds(bounds: Mapping[int, np.ndarray], elbo) -> tuple[list[int], np.ndarray]:
    if not bounds:
        raise ValueError("bounds must map at least one k to per-image values")
    elbo = np.asarray(elbo, np.float64)
    for k, values in bounds.items():
        if np.shape(values) != elbo.shape:
            raise ValueError(
                f"bounds[{k}] has shape {np.shape(values)} but elbo has shape "
                f"{elbo.shape}; they must match"
            )
    return sorted(int(k) for k in bounds), elbo


def iwae_gap_view(
    k: int, bounds: Mapping[int, np.ndarray], elbo, *, fig: Figure | None = None
) -> tuple[Figure, IWAEGap]:
    """The k slider's callback: the gap L_k - ELBO against k, and its spread over images.

    Left panel: mean of L_k - ELBO for every k in ``bounds`` (error bars: 2 paired SE),
    the selected k circled. Right panel: histogram of the per-image gaps L_k(x) - ELBO(x)
    of the selected k, with their mean.

    Args:
      k: the selected number of importance samples (a key of ``bounds``).
      bounds: k -> (N,) per-image L_k (``evaluate.per_image_iwae``).
      elbo: (N,) per-image ELBO on the same images (``evaluate.per_image_elbo(...)[0]``).
      fig: optional Figure to draw into (cleared first).

    Returns:
      ``(figure, IWAEGap)``.

    Raises:
      ValueError: k not in ``bounds`` or shapes that differ.
    """
    ks, elbo = _check_bounds(bounds, elbo)
    if k not in bounds:
        raise ValueError(f"k = {k!r} is not one of the computed values {ks}")
    gaps = {j: paired_difference(bounds[j], elbo) for j in ks}
    result = IWAEGap(int(k), _estimate(bounds[k]), gaps[k])

    if fig is None:
        fig = Figure(figsize=(10, 3.6), layout="constrained")
    fig.clear()
    left, right = fig.subplots(1, 2)
    means = np.array([gaps[j].mean for j in ks])
    errors = 2 * np.array([gaps[j].std_error for j in ks])
    left.errorbar(ks, means, yerr=errors, marker="o", capsize=3, label="mean of L_k - ELBO")
    left.plot(
        [k], [gaps[k].mean], "o", ms=14, mfc="none", mec="C3", mew=2, label=f"selected k = {k}"
    )
    left.axhline(0.0, color="gray", lw=0.8)
    left.set_xscale("log")
    left.set_xlabel("k (importance samples)")
    left.set_ylabel("nats per image")
    left.set_title("L_k - ELBO (error bars: 2 paired SE)", fontsize=10)
    left.legend(fontsize=8, loc="upper left")

    per_image = np.asarray(bounds[k], np.float64) - elbo
    right.hist(per_image, bins=40, color="C0", alpha=0.8)
    right.axvline(gaps[k].mean, color="C3", lw=2, label=f"mean {gaps[k].mean:.2f}")
    right.axvline(0.0, color="gray", lw=0.8)
    right.set_xlabel("L_k(x) - ELBO(x) (nats)")
    right.set_ylabel("images")
    right.set_title(f"per-image gap, k = {k}", fontsize=10)
    right.legend(fontsize=8)
    return fig, result


class IWAEExplorer(NamedTuple):
    """The widgets of :func:`build_iwae_explorer` (``display(explorer.widget)``)."""

    widget: widgets.VBox
    slider: widgets.SelectionSlider
    image: widgets.Image
    readout: widgets.HTML


def _iwae_readout(gap: IWAEGap) -> str:
    return (
        f"k = {gap.k}: mean L_k = {gap.bound.mean:.2f} +/- {gap.bound.std_error:.2f} "
        f"nats; L_k - ELBO = {gap.gap.mean:.2f} +/- {gap.gap.std_error:.2f} nats "
        f"(paired SE)"
    )


def build_iwae_explorer(bounds: Mapping[int, np.ndarray], elbo) -> IWAEExplorer:
    """A slider over the computed k that redraws :func:`iwae_gap_view` into an Image.

    Nothing is sampled in the callback: the per-image bounds are computed once, up front.
    """
    ks, _ = _check_bounds(bounds, elbo)
    slider = widgets.SelectionSlider(
        options=ks, value=ks[-1], description="k", continuous_update=False
    )
    image = widgets.Image(format="png")
    readout = widgets.HTML()
    fig = Figure(figsize=(10, 3.6), layout="constrained")

    def update(change=None):
        _, gap = iwae_gap_view(slider.value, bounds, elbo, fig=fig)
        image.value = figure_to_png(fig, close=False)
        readout.value = _iwae_readout(gap)

    slider.observe(update, names="value")
    update()
    return IWAEExplorer(widgets.VBox([slider, readout, image]), slider, image, readout)


# ----------------------------------------------------------------------------- rate, distortion
class RateDistortion(NamedTuple):
    """A model's point in the rate-distortion plane (means over images, with SEs; nats).

    Attributes:
      rate: R = E_x KL(q(z|x) || p(z)).
      distortion: D = -E_x E_q[log p(x|z)] (one reparameterized sample per image).
      elbo: E_x ELBO(x) = -(D + R).
    """

    rate: evaluate.Estimate
    distortion: evaluate.Estimate
    elbo: evaluate.Estimate

    def weighted_loss(self, alpha: float = 1.0, beta: float = 1.0) -> float:
        """alpha * D + beta * R: the training loss of weights (alpha, beta) at this point."""
        return alpha * self.distortion.mean + beta * self.rate.mean


def rate_distortion(
    model: VAE, images, key: jax.Array, *, binarize: bool = True, num_binarizations: int = 1
) -> RateDistortion:
    """Rate R = E KL(q(z|x) || p(z)) and distortion D = -E log p(x|z) of a model on images.

    Computed by ``evaluate.per_image_elbo`` (closed-form KL, one reparameterized sample of
    z per image and binarization draw), so ELBO = -(D + R) holds image by image.

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1], N >= 2.
      key: PRNG key (binarization draw r uses ``binarization_key(key, r)``).
      binarize: dynamically binarize the targets (True) or use the grayscale pixels.
      num_binarizations: binarization draws averaged per image.

    Returns:
      :class:`RateDistortion`.
    """
    elbo, reconstruction, kl = evaluate.per_image_elbo(
        model, images, key, binarize=binarize, num_binarizations=num_binarizations
    )
    return RateDistortion(_estimate(kl), _estimate(-reconstruction), _estimate(elbo))


def binarization_key(key: jax.Array, draw: int = 0) -> jax.Array:
    """The key with which ``evaluate.per_image_elbo`` binarizes draw ``draw``.

    fold_in(fold_in(key, 0), draw), as documented there; passing it to
    ``evaluate.kl_per_dimension`` / ``evaluate.active_units`` evaluates them on the very
    binary images the rate was computed on.
    """
    return jax.random.fold_in(jax.random.fold_in(key, 0), draw)


class SweepEntry(NamedTuple):
    """One model of the beta sweep, evaluated.

    Attributes:
      name: e.g. ``"beta_1"``.
      model: the VAE.
      alpha, beta: the weights it was trained with (loss alpha * D + beta * R).
      point: its :class:`RateDistortion`.
      kl_per_dimension: (d,) E_x KL(q(z_j|x) || N(0, 1)) per latent dimension (nats).
      activity: (d,) A_j = Var_x(E_q[z_j | x]) (Burda et al. 2016, section 5.2).
      active_units: number of j with A_j > threshold.
      threshold: the activity threshold (0.01).
    """

    name: str
    model: VAE
    alpha: float
    beta: float
    point: RateDistortion
    kl_per_dimension: np.ndarray
    activity: np.ndarray
    active_units: int
    threshold: float

    @property
    def ratio(self) -> float:
        """beta / alpha, the only weight that matters for the optimum (inf if alpha = 0)."""
        return self.beta / self.alpha if self.alpha > 0 else math.inf


def evaluate_sweep_entry(
    name: str,
    model: VAE,
    images,
    key: jax.Array,
    *,
    beta: float,
    alpha: float = 1.0,
    threshold: float = 0.01,
) -> SweepEntry:
    """Rate, distortion, KL per dimension and active units of one model, on one binarization.

    All four use the same binary images (``binarization_key(key, 0)``), so the KL per
    dimension sums to the rate exactly (up to float rounding).

    Args:
      name: a label.
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) in [0, 1], N >= 2.
      key: PRNG key (as :func:`rate_distortion`).
      beta, alpha: the training weights of the model (for labels and the loss line).
      threshold: activity threshold of an active unit.

    Returns:
      :class:`SweepEntry`.
    """
    for label, value in (("alpha", alpha), ("beta", beta), ("threshold", threshold)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    point = rate_distortion(model, images, key)
    bkey = binarization_key(key, 0)
    per_dim = evaluate.kl_per_dimension(model, images, key=bkey)
    units = evaluate.active_units(model, images, key=bkey, threshold=threshold)
    return SweepEntry(
        str(name),
        model,
        float(alpha),
        float(beta),
        point,
        per_dim,
        units.activity,
        units.count,
        float(threshold),
    )


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


# ----------------------------------------------------------------------------- model dropdown
class ImageRows(NamedTuple):
    """Pictures of one model (each (n, H, W) floats in [0, 1]).

    Attributes:
      originals: the binarized test images fed to the encoder.
      reconstructions: E[x | z = mu(x)] = sigmoid(f(mu(x))), the decoder at the posterior mean.
      samples: E[x | z] for z ~ N(0, I) prior draws.
    """

    originals: np.ndarray
    reconstructions: np.ndarray
    samples: np.ndarray


def reconstructions_and_samples(model, images, key: jax.Array, num: int = 8) -> ImageRows:
    """Reconstructions of ``num`` binarized test images and ``num`` decoded prior samples.

    With key1, key2 = split(key): x = binarize(key1, images[:num]); z ~ N(0, I) drawn with
    key2. The same key gives the same images and codes for every model of the same latent
    size, so models can be compared picture by picture.

    Args:
      model: a VAE or ``LatentModel``.
      images: (N, 28, 28) uint8 or floats in [0, 1], N >= num.
      key: PRNG key.
      num: how many of each.

    Returns:
      :class:`ImageRows`.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    latent = as_latent_model(model)
    arr = np.asarray(images)
    if arr.shape[0] < num:
        raise ValueError(f"images has {arr.shape[0]} images, fewer than num={num}")
    pixels = arr[:num].astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        pixels = pixels / np.float32(255.0)
    binarize_key, sample_key = jax.random.split(key)
    x = np.asarray(data_lib.binarize(binarize_key, pixels)).reshape((num,) + latent.image_shape)
    reconstructions = latent.decode(latent.encode(x))
    z = np.asarray(jax.random.normal(sample_key, (num, latent.latent_dim)))
    return ImageRows(x, reconstructions, latent.decode(z))


class SweepView(NamedTuple):
    """What the model dropdown shows for one model.

    Attributes:
      entry: the selected :class:`SweepEntry`.
      figure: rate-distortion plane (selected model circled) and its KL per dimension.
      rows: its :class:`ImageRows`.
      readout: one line of text with beta/alpha, R, D, ELBO and active units.
    """

    entry: SweepEntry
    figure: Figure
    rows: ImageRows
    readout: str


def _sweep_readout(e: SweepEntry) -> str:
    p = e.point
    return (
        f"{e.name}: β = {e.beta:g}, α = {e.alpha:g} (β/α = {e.ratio:g}); "
        f"rate R = {p.rate.mean:.2f} nats, distortion D = {p.distortion.mean:.2f} nats, "
        f"ELBO = -(D + R) = {p.elbo.mean:.2f} nats; "
        f"{e.active_units} of {e.activity.shape[0]} units active"
    )


def sweep_view(
    name: str,
    entries: Sequence[SweepEntry],
    images,
    key: jax.Array,
    *,
    num_images: int = 8,
    max_rate: float | None = None,
    fig: Figure | None = None,
) -> SweepView:
    """The model dropdown's callback: where the model sits, what it uses, what it draws.

    Args:
      name: the selected entry's name.
      entries: all evaluated models.
      images: test images for the reconstructions (N >= num_images).
      key: PRNG key of :func:`reconstructions_and_samples` (the same for every model).
      num_images: reconstructions and samples shown.
      max_rate: right end of the rate axis (see :func:`plot_rate_distortion`).
      fig: optional Figure to draw into (cleared first).

    Returns:
      :class:`SweepView`.
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
    rows = reconstructions_and_samples(entry.model, images, key, num_images)
    return SweepView(entry, fig, rows, _sweep_readout(entry))


class SweepExplorer(NamedTuple):
    """The widgets of :func:`build_sweep_explorer` (``display(explorer.widget)``).

    Attributes:
      widget: the assembled box.
      dropdown: chooses the model (values are entry names).
      plot: Image of the rate-distortion plane and the KL per dimension.
      originals, reconstructions, samples: Images of the three picture rows.
      readout: HTML line of numbers.
    """

    widget: widgets.VBox
    dropdown: widgets.Dropdown
    plot: widgets.Image
    originals: widgets.Image
    reconstructions: widgets.Image
    samples: widgets.Image
    readout: widgets.HTML


def build_sweep_explorer(
    entries: Sequence[SweepEntry],
    images,
    key: jax.Array,
    *,
    value: str | None = None,
    num_images: int = 8,
    max_rate: float | None = None,
) -> SweepExplorer:
    """A dropdown over the sweep that redraws :func:`sweep_view` into Image widgets."""
    if not entries:
        raise ValueError("entries must hold at least one evaluated model")
    options = [(f"{e.name} (β/α = {e.ratio:g})", e.name) for e in entries]
    dropdown = widgets.Dropdown(
        options=options, value=value or entries[0].name, description="model"
    )
    plot = widgets.Image(format="png")
    pictures = [widgets.Image(format="png") for _ in range(3)]
    readout = widgets.HTML()
    fig = Figure(figsize=(10.5, 3.9), layout="constrained")

    def update(change=None):
        view = sweep_view(
            dropdown.value, entries, images, key, num_images=num_images, max_rate=max_rate, fig=fig
        )
        plot.value = figure_to_png(fig, close=False)
        for image, row in zip(pictures, view.rows, strict=True):
            image.value = strip_to_png(row, scale=2)
        readout.value = view.readout

    dropdown.observe(update, names="value")
    update()
    labels = ("test images (binarized)", "reconstructions", "samples from p(z)")
    rows = [
        widgets.HBox([widgets.Label(text, layout=widgets.Layout(width="170px")), image])
        for text, image in zip(labels, pictures, strict=True)
    ]
    box = widgets.VBox([dropdown, readout, plot, *rows])
    return SweepExplorer(box, dropdown, plot, *pictures, readout)


# ----------------------------------------------------------------------------- alpha vs beta
class PosteriorFit(NamedTuple):
    """Diagonal Gaussians q fitted to maximise alpha * E_q[log p(x|z)] - beta * KL(q || p).

    Attributes:
      mean, log_var: (..., d) parameters of q, one per image.
      reconstruction: (...) E_q[log p(x|z)] at the optimum (the fixed-noise average).
      kl: (...) KL(q || N(0, I)) at the optimum.
      objective: (...) alpha * reconstruction - beta * kl.
    """

    mean: np.ndarray
    log_var: np.ndarray
    reconstruction: np.ndarray
    kl: np.ndarray
    objective: np.ndarray


_SOLVER = optax.lbfgs()


@functools.partial(jax.jit, static_argnames=("log_likelihood_fn", "num_steps"))
def _fit_posteriors(log_likelihood_fn, x, eps, alpha, beta, mean0, log_var0, num_steps):
    """L-BFGS on every row of x (B, D) from (mean0, log_var0) (B, d); see optimal_posterior."""

    def terms(params, xi):
        mean, log_var = params
        z = mean + jnp.exp(0.5 * log_var) * eps
        return jnp.mean(log_likelihood_fn(xi, z)), kl_diag_gaussians(mean, log_var)

    def fit_one(xi, m0, v0):
        def loss(params):
            reconstruction, kl = terms(params, xi)
            return -(alpha * reconstruction - beta * kl)

        value_and_grad = optax.value_and_grad_from_state(loss)

        def step(carry, _):
            params, state = carry
            value, grad = value_and_grad(params, state=state)
            updates, state = _SOLVER.update(
                grad, state, params, value=value, grad=grad, value_fn=loss
            )
            return (optax.apply_updates(params, updates), state), None

        params = (m0, v0)
        (params, _), _ = jax.lax.scan(step, (params, _SOLVER.init(params)), length=num_steps)
        reconstruction, kl = terms(params, xi)
        return params[0], params[1], reconstruction, kl

    return jax.vmap(fit_one)(x, mean0, log_var0)


def optimal_posterior(
    log_likelihood_fn: Callable,
    x,
    eps,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    init_mean=None,
    init_log_var=None,
    num_steps: int = 100,
) -> PosteriorFit:
    """Fits q(z|x) = N(m, diag exp(v)) to each image by L-BFGS on the weighted ELBO.

    J(m, v) = alpha * (1/L) sum_l log p(x | m + exp(v/2) * eps_l) - beta * KL(q || N(0, I))

    with *fixed* noise eps (common random numbers: J is then a deterministic function of
    (m, v), so its maximiser is well defined). The decoder is held fixed: this is the
    best q for it, not an amortised encoder. For alpha > 0, J_{alpha, beta} =
    alpha * J_{1, beta/alpha}: both have the same maximiser, so only beta/alpha matters.
    For a decoder log-likelihood quadratic in z (linear-Gaussian) and eps with exact
    sample moments (mean 0, covariance I), J equals the exact weighted ELBO.

    Args:
      log_likelihood_fn: ``(x, z) -> log p(x | z)`` mapping one image x (D,) and codes
        z (L, d) to (L,). Compiled once per function object: define it once and reuse it.
      x: (D,) one image or (B, D) images.
      eps: (L, d) standard-normal noise, shared by all images and weights.
      alpha, beta: weights, both > 0 (beta = 0 has no maximiser in v).
      init_mean, init_log_var: starting point, shaped like x's batch plus (d,)
        (default zeros, i.e. the prior).
      num_steps: L-BFGS iterations (zoom line search).

    Returns:
      :class:`PosteriorFit` of numpy arrays (batch shape of x).

    Raises:
      ValueError: non-positive weights or shapes that do not fit together.
    """
    for label, value in (("alpha", alpha), ("beta", beta)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{label} must be a positive finite number, got {value!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    eps = jnp.asarray(eps, jnp.float32)
    if eps.ndim != 2:
        raise ValueError(f"eps must have shape (L, d), got {eps.shape}")
    x = jnp.asarray(x, jnp.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (D,) or (B, D), got {x.shape}")
    batch = x.shape[:-1]
    expected = batch + (eps.shape[1],)
    starts = []
    for label, value in (("init_mean", init_mean), ("init_log_var", init_log_var)):
        value = (
            jnp.zeros(expected, jnp.float32) if value is None else jnp.asarray(value, jnp.float32)
        )
        if value.shape != expected:
            raise ValueError(
                f"{label} has shape {value.shape} but x has shape {x.shape} "
                f"and eps has shape {eps.shape}; expected {expected}"
            )
        starts.append(value.reshape(-1, eps.shape[1]))
    out = _fit_posteriors(
        log_likelihood_fn,
        x.reshape(-1, x.shape[-1]),
        eps,
        jnp.float32(alpha),
        jnp.float32(beta),
        *starts,
        int(num_steps),
    )
    mean, log_var, reconstruction, kl = (np.asarray(o).reshape(batch + o.shape[1:]) for o in out)
    objective = alpha * reconstruction.astype(np.float64) - beta * kl.astype(np.float64)
    return PosteriorFit(mean, log_var, reconstruction, kl, objective)
