"""The beta slider of the training notebook (06): ipywidgets wired to shipped models.

:func:`build_beta_explorer` is a slider over the weight beta of the KL term, one stop per
model of a sweep trained identically except for beta (the shipped ``beta_0`` ...
``beta_4``). For the selected model it shows how the latent space is used
(:func:`vae_edu.plots.plot_latent_usage`: the codes of a 2-D model, else the KL per
dimension, from :func:`vae_edu.evaluate.latent_usage`), reconstructions of test images and
decoded prior samples (:func:`vae_edu.evaluate.reconstructions_and_samples`, the same
images and the same prior draws for every model).

Every model is encoded once when the explorer is built; each picture is drawn the first
time its beta is selected and kept, so moving the slider back and forth is instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import ipywidgets as widgets
import jax
import numpy as np
from matplotlib.figure import Figure

from vae_edu import _checks
from vae_edu.evaluate import ImageRows, LatentUsage, latent_usage, reconstructions_and_samples
from vae_edu.plots import figure_to_png, plot_latent_usage, strip_to_png

__all__ = [
    "BETA_SLIDER_CLASS",
    "BETA_FIGURE_CLASS",
    "BetaModel",
    "BetaExplorer",
    "build_beta_explorer",
]

#: CSS class of the beta slider (browser tests).
BETA_SLIDER_CLASS = "vae-beta-slider"
#: CSS class of its latent-usage picture.
BETA_FIGURE_CLASS = "vae-beta-figure"


class BetaModel(NamedTuple):
    """What the explorer knows about one model of the sweep.

    Attributes:
      beta: the weight of its KL term.
      usage: :class:`vae_edu.evaluate.LatentUsage` on the explorer's images.
      rows: :class:`vae_edu.evaluate.ImageRows` (test images, reconstructions, samples).
    """

    beta: float
    usage: LatentUsage
    rows: ImageRows


class BetaExplorer(NamedTuple):
    """The widgets of :func:`build_beta_explorer` (``display(explorer.widget)``).

    Attributes:
      widget: the assembled box.
      slider: SelectionSlider over beta (values: the betas, sorted).
      plot: Image of the latent usage (class ``vae-beta-figure``).
      reconstructions, samples: Images of the picture rows.
      readout: HTML line of numbers.
      models: beta -> :class:`BetaModel`.
    """

    widget: widgets.VBox
    slider: widgets.SelectionSlider
    plot: widgets.Image
    originals: widgets.Image
    reconstructions: widgets.Image
    samples: widgets.Image
    readout: widgets.HTML
    models: dict


def _beta_readout(entry: BetaModel) -> str:
    usage = entry.usage
    d = usage.activity.shape[0]
    return (
        f"β = {entry.beta:g}: KL term E_x KL(q(z|x) || p(z)) = "
        f"{usage.kl_per_dimension.sum():.1f} nats over {d} dimensions; "
        f"{usage.active_units} of {d} active (Var_x μ_u(x) > {usage.threshold:g})"
    )


class _BetaSlider:
    """State and callback of :func:`build_beta_explorer`: pictures drawn once per beta."""

    def __init__(self, models, labels, ylim, slider, plot, pictures, readout):
        self.models, self.labels, self.ylim = models, labels, ylim
        self.slider, self.plot, self.pictures, self.readout = slider, plot, pictures, readout
        self.cache: dict[float, tuple[bytes, ...]] = {}

    def _draw(self, entry: BetaModel) -> tuple[bytes, ...]:
        fig = Figure(figsize=(5.6, 3.6), layout="constrained")
        usage = entry.usage
        own_scale = usage.kl_per_dimension.max() > self.ylim
        plot_latent_usage(
            usage,
            self.labels,
            ax=fig.subplots(),
            ylim=None if own_scale else self.ylim,
            title=f"β = {entry.beta:g}: {usage.active_units} of {usage.activity.shape[0]} "
            f"units active, total KL {usage.kl_per_dimension.sum():.1f} nats"
            + ("\n(its own KL scale: far above the other models)" if own_scale else ""),
        )
        return (figure_to_png(fig, close=False), *(strip_to_png(r, scale=2) for r in entry.rows))

    def redraw(self, change=None) -> None:
        beta = self.slider.value
        if beta not in self.cache:
            self.cache[beta] = self._draw(self.models[beta])
        plot, *rows = self.cache[beta]
        self.plot.value = plot
        for image, png in zip(self.pictures, rows, strict=True):
            image.value = png
        self.readout.value = _beta_readout(self.models[beta])


def build_beta_explorer(
    models: Mapping[float, object],
    images,
    labels,
    key: jax.Array,
    *,
    value: float | None = None,
    num_images: int = 8,
) -> BetaExplorer:
    """A slider over beta that shows how each model of a sweep uses its latent space.

    Args:
      models: beta -> VAE (models trained alike except for beta).
      images: (N, 28, 28) test images (encoded as they are, grey levels) and ``labels`` (N,)
        their digits (colours of a 2-D model's codes).
      key: key of :func:`vae_edu.evaluate.reconstructions_and_samples` (the same for every
        model: the same test images and the same prior draws).
      value: the initial beta (default the smallest).
      num_images: reconstructions and samples shown.

    Returns:
      :class:`BetaExplorer`.
    """
    if not models:
        raise ValueError("models must map at least one beta to a VAE")
    num_images = _checks.count(num_images, "num_images")
    labels = np.asarray(labels)
    entries = {
        float(beta): BetaModel(
            float(beta),
            latent_usage(model, images),
            reconstructions_and_samples(model, images, key, num_images),
        )
        for beta, model in sorted(models.items())
    }
    betas = list(entries)
    value = betas[0] if value is None else float(value)
    if value not in entries:
        raise ValueError(f"value must be one of the betas {betas}, got {value!r}")
    # One KL scale for every beta > 0; beta = 0 puts no price on the KL, its bars are
    # tens of times higher and get their own scale (the title says so).
    priced = [e for e in entries.values() if e.beta > 0] or list(entries.values())
    ylim = 1.05 * max(float(e.usage.kl_per_dimension.max()) for e in priced)
    slider = widgets.SelectionSlider(
        options=[(f"{b:g}", b) for b in betas],
        value=value,
        description="β",
        continuous_update=False,
    )
    slider.add_class(BETA_SLIDER_CLASS)
    plot = widgets.Image(format="png")
    plot.add_class(BETA_FIGURE_CLASS)
    pictures = [widgets.Image(format="png") for _ in range(3)]
    readout = widgets.HTML()
    state = _BetaSlider(entries, labels, ylim, slider, plot, pictures, readout)
    state.redraw()
    slider.observe(state.redraw, names="value")
    names = ("test images (binarized)", "reconstructions", "samples from p(z)")
    rows = [
        widgets.HBox([widgets.Label(text, layout=widgets.Layout(width="170px")), image])
        for text, image in zip(names, pictures, strict=True)
    ]
    box = widgets.VBox([slider, readout, plot, *rows])
    return BetaExplorer(box, slider, plot, *pictures, readout, entries)
