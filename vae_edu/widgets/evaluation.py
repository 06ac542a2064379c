"""The explorers of the evaluation notebook (08): ipywidgets wired to the model, nothing else.

**What do the importance weights look like?** :func:`build_importance_explorer` is a
log-spaced slider over k (1 ... K) that recomputes hat L_k and the effective sample size of
the first k of K weights per image (computed once by
:func:`vae_edu.evaluate.per_image_log_weights`) and redraws
:class:`vae_edu.plots.ImportanceWeightsPlot`; notebook 08 uses it.

**How good is the model?** :func:`build_iwae_explorer` is a slider over k that redraws
:func:`vae_edu.plots.iwae_gap_view`: the gap L_k - ELBO of the importance-weighted bound
(Burda et al. 2016, eq. 8), with the paired standard errors of
:func:`vae_edu.evaluate.iwae_gaps`.

**What do the loss weights do?** :func:`build_sweep_explorer` is a dropdown over models
trained on alpha * D + beta * R (:func:`vae_edu.evaluate.evaluate_sweep_entry`); its
callback :func:`sweep_view` draws where the model sits in the rate-distortion plane and how
it uses its latent dimensions (:func:`vae_edu.plots.plot_sweep`), and what it reconstructs
and samples (:func:`vae_edu.evaluate.reconstructions_and_samples`).

Pictures go into ``ipywidgets.Image`` widgets as PNG bytes, so they render in JupyterLab,
Voila and under nbval alike; the callbacks draw into one ``matplotlib.figure.Figure`` per
explorer (not pyplot), so moving a slider never accumulates open pyplot figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import ipywidgets as widgets
import jax
import numpy as np
from matplotlib.figure import Figure

from vae_edu import _checks
from vae_edu.evaluate import (
    ImageRows,
    ImportanceWeights,
    IWAEGap,
    SweepEntry,
    iwae_gaps,
    reconstructions_and_samples,
)
from vae_edu.plots import (
    ImportanceWeightsPlot,
    figure_to_png,
    iwae_gap_view,
    plot_sweep,
    strip_to_png,
)

__all__ = [
    "IWAEExplorer",
    "build_iwae_explorer",
    "SweepView",
    "sweep_view",
    "SweepExplorer",
    "build_sweep_explorer",
]


# ----------------------------------------------------------------------------- IWAE slider
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


class _IWAESlider:
    """State and callback of :func:`build_iwae_explorer`: one Figure, redrawn for each k."""

    def __init__(self, bounds, elbo, slider, image, readout):
        self.bounds, self.elbo = bounds, elbo
        self.slider, self.image, self.readout = slider, image, readout
        self.figure = Figure(figsize=(10, 3.6), layout="constrained")

    def redraw(self, change=None) -> None:
        _, gap = iwae_gap_view(self.slider.value, self.bounds, self.elbo, fig=self.figure)
        self.image.value = figure_to_png(self.figure, close=False)
        self.readout.value = _iwae_readout(gap)


def build_iwae_explorer(bounds: Mapping[int, np.ndarray], elbo) -> IWAEExplorer:
    """A slider over the computed k that redraws :func:`vae_edu.plots.iwae_gap_view`.

    Nothing is sampled in the callback: the per-image bounds are computed once, up front.

    Args:
      bounds: k -> (N,) per-image L_k (``evaluate.per_image_iwae``).
      elbo: (N,) per-image ELBO on the same images.
    """
    ks = list(iwae_gaps(bounds, elbo))  # validates the shapes
    slider = widgets.SelectionSlider(
        options=ks, value=ks[-1], description="k", continuous_update=False
    )
    image = widgets.Image(format="png")
    readout = widgets.HTML()
    state = _IWAESlider(bounds, elbo, slider, image, readout)
    slider.observe(state.redraw, names="value")
    state.redraw()
    return IWAEExplorer(widgets.VBox([slider, readout, image]), slider, image, readout)


# ----------------------------------------------------------------------------- model dropdown
class SweepView(NamedTuple):
    """What the model dropdown shows for one model.

    Attributes:
      entry: the selected :class:`vae_edu.evaluate.SweepEntry`.
      figure: rate-distortion plane (selected model circled) and its KL per dimension.
      rows: its :class:`vae_edu.evaluate.ImageRows`.
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
      key: PRNG key of :func:`vae_edu.evaluate.reconstructions_and_samples` (the same for
        every model).
      num_images: reconstructions and samples shown.
      max_rate: right end of the rate axis (see :func:`vae_edu.plots.plot_rate_distortion`).
      fig: optional Figure to draw into (cleared first).

    Returns:
      :class:`SweepView`.
    """
    figure, entry = plot_sweep(name, entries, max_rate=max_rate, fig=fig)
    rows = reconstructions_and_samples(entry.model, images, key, num_images)
    return SweepView(entry, figure, rows, _sweep_readout(entry))


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


class _SweepDropdown:
    """State and callback of :func:`build_sweep_explorer`: one Figure, redrawn per model."""

    def __init__(
        self, entries, images, key, num_images, max_rate, dropdown, plot, pictures, readout
    ):
        self.entries, self.images, self.key = entries, images, key
        self.num_images, self.max_rate = num_images, max_rate
        self.dropdown, self.plot, self.pictures, self.readout = dropdown, plot, pictures, readout
        self.figure = Figure(figsize=(10.5, 3.9), layout="constrained")

    def redraw(self, change=None) -> None:
        view = sweep_view(
            self.dropdown.value,
            self.entries,
            self.images,
            self.key,
            num_images=self.num_images,
            max_rate=self.max_rate,
            fig=self.figure,
        )
        self.plot.value = figure_to_png(self.figure, close=False)
        for image, row in zip(self.pictures, view.rows, strict=True):
            image.value = strip_to_png(row, scale=2)
        self.readout.value = view.readout


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
    state = _SweepDropdown(
        entries, images, key, num_images, max_rate, dropdown, plot, pictures, readout
    )
    dropdown.observe(state.redraw, names="value")
    state.redraw()
    labels = ("test images (binarized)", "reconstructions", "samples from p(z)")
    rows = [
        widgets.HBox([widgets.Label(text, layout=widgets.Layout(width="170px")), image])
        for text, image in zip(labels, pictures, strict=True)
    ]
    box = widgets.VBox([dropdown, readout, plot, *rows])
    return SweepExplorer(box, dropdown, plot, *pictures, readout)


# ----------------------------------------------------------------------------- live k slider
__all__ += [
    "K_SLIDER_CLASS",
    "IMPORTANCE_FIGURE_CLASS",
    "log_spaced_ks",
    "ImportanceExplorer",
    "build_importance_explorer",
]

#: CSS class of the k slider of :func:`build_importance_explorer` (browser tests).
K_SLIDER_CLASS = "vae-k-slider"
#: CSS class of its figure.
IMPORTANCE_FIGURE_CLASS = "vae-importance-figure"


def log_spaced_ks(largest: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``largest``, and ``largest`` itself (the slider's stops)."""
    largest = _checks.count(largest, "largest")
    ks = [m * 10**e for e in range(len(str(largest))) for m in (1, 2, 5)]
    return sorted({k for k in ks if k < largest} | {largest})


class ImportanceExplorer(NamedTuple):
    """The widgets of :func:`build_importance_explorer` (``display(explorer.widget)``)."""

    widget: widgets.VBox
    slider: widgets.SelectionSlider
    image: widgets.Image
    readout: widgets.HTML


def _importance_readout(summary: ImportanceWeights, labels: Sequence[str]) -> str:
    rows = "".join(
        f"<tr><td>{label}</td><td>{bound:.2f}</td><td>{ess:.1f}</td></tr>"
        for label, bound, ess in zip(labels, summary.bound, summary.ess, strict=True)
    )
    return (
        f"<b>k = {summary.k}</b> (the first k of one draw of samples)"
        f"<table><tr><th>image</th><th>hat L_k (nats)</th><th>ESS (of k)</th></tr>"
        f"{rows}</table>"
    )


class _ImportanceSlider:
    """State and callback of :func:`build_importance_explorer`: one Figure, redrawn per k."""

    def __init__(self, log_w, labels, slider, image, readout):
        self.labels = labels
        self.slider, self.image, self.readout = slider, image, readout
        self.plot = ImportanceWeightsPlot(log_w, labels=labels, live=True)

    def redraw(self, change=None) -> None:
        self.image.value, summary = self.plot.png(self.slider.value)
        self.readout.value = _importance_readout(summary, self.labels)


def build_importance_explorer(
    log_w, *, labels: Sequence[str] | None = None, value: int | None = None
) -> ImportanceExplorer:
    """A log-spaced slider over k that redraws :class:`vae_edu.plots.ImportanceWeightsPlot`.

    Nothing is sampled or compiled when the slider moves: k selects the first k of the
    (N, K) weights computed once (:func:`vae_edu.evaluate.per_image_log_weights`), so a
    move costs a log-sum-exp over at most N * K numbers and redrawing the dots and
    histograms on a pre-rendered figure (:class:`vae_edu.plots.ImportanceWeightsPlot`).

    Args:
      log_w: (N, K) log importance weights of N images.
      labels: N names of the images (default "image 1", ...).
      value: the initial k, one of :func:`log_spaced_ks` (default the largest stop <= 100).
    """
    log_w = np.asarray(log_w, np.float64)
    if log_w.ndim != 2:
        raise ValueError(f"log_w must have shape (N, K), got {log_w.shape}")
    labels = [f"image {i + 1}" for i in range(log_w.shape[0])] if labels is None else list(labels)
    ks = log_spaced_ks(log_w.shape[1])
    if value is None:
        value = max(k for k in ks if k <= 100)
    if value not in ks:
        raise ValueError(f"value must be one of the slider's stops {ks}, got {value!r}")
    slider = widgets.SelectionSlider(
        options=ks, value=value, description="k", continuous_update=False
    )
    slider.add_class(K_SLIDER_CLASS)
    image = widgets.Image(format="png")
    image.add_class(IMPORTANCE_FIGURE_CLASS)
    readout = widgets.HTML()
    state = _ImportanceSlider(log_w, labels, slider, image, readout)
    state.redraw()  # validates log_w and labels before anything is wired
    slider.observe(state.redraw, names="value")
    return ImportanceExplorer(widgets.VBox([slider, image, readout]), slider, image, readout)
