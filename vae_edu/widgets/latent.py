"""The latent-space explorers of notebook 07: ipywidgets wired to the model, nothing else.

A trained VAE gives two maps between pixels and codes, the encoder mean mu(x) and the
decoder mean E[x | z] = sigmoid(f_theta(z)) (:class:`vae_edu.models.LatentModel`, one
jitted call each). The explorers move a point z with sliders and show the decoded image
live; what they draw comes from the modules named after each concept:

* :mod:`vae_edu.models`: :class:`~vae_edu.models.LatentModel` (encode, decode);
* :mod:`vae_edu.latent`: :func:`~vae_edu.latent.traverse`, :func:`~vae_edu.latent.interpolate`;
* :mod:`vae_edu.plots`: PNG bytes (:func:`~vae_edu.plots.decode_to_png`,
  :func:`~vae_edu.plots.strip_to_png`) and the pre-rendered scatter
  :class:`~vae_edu.plots.LatentScatter`.

:func:`build_2d_explorer`, :func:`build_dimension_explorer` and
:func:`build_interpolation_explorer` create and wire the widgets, so the notebook stays
short. Each returns a NamedTuple of its widgets (``display(explorer)`` shows it); a test
"moves a slider" by assigning ``slider.value`` and reads ``image.value``. The callbacks are
the methods of one small state object per explorer (``_TwoDimensional``, ``_Dimensions``,
``_Interpolation``), created after the widgets and holding them.

Stable CSS classes (for browser tests and custom styling): every slider over a latent
coordinate carries :data:`LATENT_SLIDER_CLASS` (``"vae-latent-slider"``) and every image of
the decoder at the current point :data:`DECODED_IMAGE_CLASS` (``"vae-decoded-image"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import ipywidgets as widgets
import numpy as np

from vae_edu import _checks
from vae_edu.elbo import diag_gaussian_log_density
from vae_edu.latent import as_code, as_values, interpolate, traverse
from vae_edu.models import LatentModel, as_latent_model
from vae_edu.plots import LatentScatter, decode_to_png, pixels_to_png, strip_to_png

__all__ = [
    "LATENT_SLIDER_CLASS",
    "DECODED_IMAGE_CLASS",
    "Explorer2D",
    "DimensionExplorer",
    "InterpolationExplorer",
    "digit_choices",
    "build_2d_explorer",
    "build_dimension_explorer",
    "build_interpolation_explorer",
]

#: CSS class of every slider that sets a latent coordinate.
LATENT_SLIDER_CLASS = "vae-latent-slider"
#: CSS class of every Image widget that shows the decoder's output at the current point.
DECODED_IMAGE_CLASS = "vae-decoded-image"
#: CSS classes of the other pictures (not used by the browser tests).
SCATTER_CLASS = "vae-latent-scatter"
TRAVERSAL_CLASS = "vae-traversal-strip"
INTERPOLATION_STRIP_CLASS = "vae-interpolation-strip"
INTERPOLATION_SLIDER_CLASS = "vae-interpolation-slider"
READOUT_CLASS = "vae-latent-readout"


# ----------------------------------------------------------------------------- widgets
def digit_choices(
    labels, per_digit: int = 1, digits: Sequence[int] = range(10)
) -> list[tuple[str, int]]:
    """Dropdown options: the first ``per_digit`` test images of each digit.

    Args:
      labels: (N,) labels of the test set.
      per_digit: images per digit.
      digits: which digits, in order.

    Returns:
      ``[("digit 0 (test image #3)", 3), ...]``: (label, index into the test set).

    Raises:
      ValueError: if some digit has fewer than ``per_digit`` images.
    """
    labels = np.asarray(labels)
    options = []
    for digit in digits:
        index = np.flatnonzero(labels == digit)[:per_digit]
        if index.shape[0] < per_digit:
            raise ValueError(f"digit {digit} has {index.shape[0]} images, {per_digit} needed")
        options += [(f"digit {digit} (test image #{i})", int(i)) for i in index]
    return options


def _latent_slider(
    description: str, value: float, limit: float, step: float, width: str = "250px"
) -> widgets.FloatSlider:
    slider = widgets.FloatSlider(
        value=value,
        min=-limit,
        max=limit,
        step=step,
        description=description,
        continuous_update=False,
        readout_format=".2f",
        style={"description_width": "36px"},
        layout=widgets.Layout(width=width),
    )
    slider.add_class(LATENT_SLIDER_CLASS)
    return slider


def _image(css_class: str, width: int | None = None) -> widgets.Image:
    image = widgets.Image(format="png")
    if width is not None:
        image.layout = widgets.Layout(width=f"{width}px")
    image.add_class(css_class)
    return image


def _norm_readout(z: np.ndarray) -> str:
    """HTML: z itself (if short), ||z|| against sqrt(d), and log p(z) = log N(z; 0, I)."""
    d = z.shape[0]
    log_prior = float(diag_gaussian_log_density(z, 0.0, 0.0))
    code = f"z = ({', '.join(f'{v:+.2f}' for v in z)})<br>" if d <= 4 else ""
    return (
        f"{code}||z|| = {float(np.linalg.norm(z)):.2f} (prior draws: about "
        f"sqrt(d) = {math.sqrt(d):.2f})<br>log p(z) = {log_prior:.2f}"
    )


def _explorer_text(description: str) -> str:
    return (
        f"[{description}: interactive in JupyterLab or Voila; "
        f"the static figure below shows the same]"
    )


def _explorer_bundle(widget: widgets.Widget, description: str, **kwargs) -> dict:
    """The display of ``widget`` with a fixed sentence as its text/plain part.

    That text is what nbval compares and what a viewer without widget support (GitHub)
    prints, so it should not be the widget's repr (long, and full of state). IPython
    pretty-prints tuples (NamedTuples included) with its own text/plain printer, so each
    explorer also defines ``_repr_pretty_`` with the same sentence.
    """
    bundle = dict(widget._repr_mimebundle_(**kwargs) or {})
    bundle["text/plain"] = _explorer_text(description)
    return bundle


def _slider_code(sliders) -> np.ndarray:
    """The sliders' values as one (d,) float32 code."""
    return np.array([s.value for s in sliders], np.float32)


class Explorer2D(NamedTuple):
    """The widgets of :func:`build_2d_explorer`; ``display(explorer)`` shows ``widget``.

    Attributes:
      widget: the assembled box.
      sliders: (z_1 slider, z_2 slider).
      image: the decoded image E[x | z] (class ``vae-decoded-image``).
      scatter: the encodings with a marker at z (class ``vae-latent-scatter``).
      readout: HTML text with z, ||z|| and log p(z).
      model: the :class:`LatentModel` used.
    """

    widget: widgets.Box
    sliders: tuple[widgets.FloatSlider, widgets.FloatSlider]
    image: widgets.Image
    scatter: widgets.Image
    readout: widgets.HTML
    model: LatentModel

    def code(self) -> np.ndarray:
        """The current slider values as a (2,) float32 code."""
        return _slider_code(self.sliders)

    def _repr_mimebundle_(self, **kwargs):
        return _explorer_bundle(self.widget, self._description(), **kwargs)

    def _repr_pretty_(self, printer, cycle):
        printer.text(_explorer_text(self._description()))

    def _description(self) -> str:
        return "2-D latent explorer: sliders z1, z2, the decoded image and the encodings"


class _TwoDimensional:
    """State and callback of :func:`build_2d_explorer`: z = the two sliders' values."""

    def __init__(self, latent, sliders, image, scatter, readout, scatter_plot, scale):
        self.latent, self.sliders, self.scale = latent, sliders, scale
        self.image, self.scatter, self.readout = image, scatter, readout
        self.scatter_plot = scatter_plot

    def redraw(self, change=None) -> None:
        """Decodes z into the image, moves the marker on the scatter, updates the readout."""
        z = _slider_code(self.sliders)
        self.image.value = decode_to_png(self.latent, z, self.scale)
        self.scatter.value = self.scatter_plot.png(z)
        self.readout.value = _norm_readout(z)


def build_2d_explorer(
    model, means, labels, *, limit: float = 3.0, step: float = 0.1, scale: int = 6, start=(0.0, 0.0)
) -> Explorer2D:
    """Two sliders (z_1, z_2) that decode a point live and mark it on the latent scatter.

    Moving either slider calls :func:`vae_edu.plots.decode_to_png` at the new z (one jitted
    decoder call) and redraws the marker of :class:`vae_edu.plots.LatentScatter`.

    Args:
      model: a VAE or :class:`~vae_edu.models.LatentModel` with latent_dim == 2.
      means: (n, 2) encodings of test images; labels: (n,) their digits.
      limit: sliders and axes span [-limit, limit].
      step: slider step.
      scale: enlargement of the decoded image.
      start: the initial code.

    Returns:
      :class:`Explorer2D`.
    """
    latent = as_latent_model(model)
    if latent.latent_dim != 2:
        raise ValueError(
            f"the 2-D explorer needs latent_dim == 2, the model has latent_dim={latent.latent_dim}"
        )
    start = as_code(start, "start", 2)
    sliders = (
        _latent_slider("z1", float(start[0]), limit, step),
        _latent_slider("z2", float(start[1]), limit, step),
    )
    image = _image(DECODED_IMAGE_CLASS)
    scatter = _image(SCATTER_CLASS)
    readout = widgets.HTML()
    state = _TwoDimensional(
        latent, sliders, image, scatter, readout, LatentScatter(means, labels, limit=limit), scale
    )
    box = widgets.VBox(
        [
            widgets.HBox(list(sliders)),
            widgets.HBox(
                [widgets.VBox([image, readout], layout=widgets.Layout(width="240px")), scatter],
                layout=widgets.Layout(align_items="center"),
            ),
        ]
    )
    for slider in sliders:
        slider.observe(state.redraw, names="value")
    state.redraw()
    return Explorer2D(box, sliders, image, scatter, readout, latent)


class DimensionExplorer(NamedTuple):
    """The widgets of :func:`build_dimension_explorer`; ``display(explorer)`` shows ``widget``.

    Attributes:
      widget: the assembled box.
      digit: Dropdown of test images; choosing one sets the sliders to its encoding.
      sliders: one slider per latent dimension (class ``vae-latent-slider``).
      image: the decoded image at the sliders' code (class ``vae-decoded-image``).
      dimension: Dropdown of k for the traversal strip.
      traversal: the strip E[x | z with z_k = v] for v in ``values`` (``vae-traversal-strip``).
      reset: Button that puts the sliders back on the chosen digit's encoding.
      readout: HTML text with ||z|| and log p(z).
      values: (n,) the traversal values.
      model: the :class:`LatentModel` used.
      images: the test images the Dropdown indexes.
      order: with ``activity``: the dimensions (0-based), most active first; else None.
      folded: with ``activity``: the collapsed Accordion holding the inactive dimensions'
        sliders (None if there are none, or without ``activity``).
    """

    widget: widgets.Box
    digit: widgets.Dropdown
    sliders: tuple[widgets.FloatSlider, ...]
    image: widgets.Image
    dimension: widgets.Dropdown
    traversal: widgets.Image
    reset: widgets.Button
    readout: widgets.HTML
    values: np.ndarray
    model: LatentModel
    images: np.ndarray
    order: np.ndarray | None = None
    folded: widgets.Accordion | None = None

    def code(self) -> np.ndarray:
        """The current slider values as a (d,) float32 code."""
        return _slider_code(self.sliders)

    def encoding(self) -> np.ndarray:
        """mu(x) of the test image chosen in the Dropdown, (d,) float32."""
        return self.model.encode(self.images[self.digit.value])

    def _repr_mimebundle_(self, **kwargs):
        return _explorer_bundle(self.widget, self._description(), **kwargs)

    def _repr_pretty_(self, printer, cycle):
        printer.text(_explorer_text(self._description()))

    def _description(self) -> str:
        return (
            f"latent explorer: {len(self.sliders)} sliders, the decoded image and a traversal strip"
        )


_INACTIVE_TEXT = (
    "These dimensions are inactive: their posterior q(z_u|x) is close to the prior "
    "N(0, 1) for every image x (KL to the prior near 0), so z_u carries no information "
    "about x and the decoder has learned to ignore it. Moving their sliders barely changes "
    "the decoded image."
)


def _activity_order(activity, threshold: float, d: int):
    """(order, active): dimensions sorted by decreasing activity (ties: by index) and the
    (d,) mask activity > threshold; (None, None) without activity."""
    if activity is None:
        return None, None
    activity = np.asarray(activity, np.float64)
    if activity.shape != (d,):
        raise ValueError(
            f"activity must have shape ({d},) (one value per dimension), got {activity.shape}"
        )
    if not np.isfinite(activity).all():
        raise ValueError("activity must be finite")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    order = np.lexsort((np.arange(d), -activity))
    return order, activity > threshold


class _Dimensions:
    """State and callbacks of :func:`build_dimension_explorer`.

    ``loading`` is True while :meth:`load_encoding` sets every slider: the sliders' own
    callbacks then skip their redraw, and the explorer redraws once at the end.
    """

    def __init__(self, latent, images, widgets_, values, limit, scale):
        self.latent, self.images, self.values = latent, images, values
        self.limit, self.scale = limit, scale
        (self.digit, self.sliders, self.image, self.dimension, self.traversal, self.readout) = (
            widgets_
        )
        self.loading = False

    def redraw(self, change=None) -> None:
        """Decodes the sliders' code and its traversal along the chosen dimension."""
        if self.loading:
            return
        z = _slider_code(self.sliders)
        self.image.value = decode_to_png(self.latent, z, self.scale)
        path = traverse(self.latent, z, self.dimension.value, self.values)
        self.traversal.value = strip_to_png(path.images, max(self.scale // 2, 1))
        self.readout.value = _norm_readout(z)

    def load_encoding(self, change=None) -> None:
        """Sets the sliders to mu(x) of the chosen digit (clipped to the sliders), redraws once."""
        mean = self.latent.encode(self.images[self.digit.value])
        self.loading = True
        try:
            for slider, v in zip(self.sliders, mean, strict=True):
                slider.value = float(np.clip(v, -self.limit, self.limit))
        finally:
            self.loading = False
        self.redraw()


def build_dimension_explorer(
    model,
    images,
    labels,
    *,
    choices=None,
    limit: float = 4.0,
    step: float = 0.05,
    values=None,
    dimension: int = 0,
    columns: int = 4,
    scale: int = 6,
    activity=None,
    threshold: float = 0.01,
) -> DimensionExplorer:
    """One slider per latent dimension, starting from the encoding of a chosen test digit.

    * Choosing a digit in the Dropdown sets every slider to its encoding mu(x) (values
      beyond +-limit are clipped by the sliders) and redraws once.
    * Moving slider j decodes the code with the new z_j (one jitted call).
    * The strip below shows :func:`vae_edu.latent.traverse` from the current code along
      dimension k (the second Dropdown), so it follows both the sliders and k.

    Args:
      model: a VAE or :class:`~vae_edu.models.LatentModel`.
      images: (N, 28, 28) test images; labels: (N,) their digits.
      choices: Dropdown options (label, index); default :func:`digit_choices` (labels).
      limit, step: slider range [-limit, limit] and step.
      values: the traversal values; default ``np.linspace(-3, 3, 9)``.
      dimension: the initial k (0-based).
      columns: sliders per row.
      scale: enlargement of the decoded image (the strip uses half of it, at least 1).
      activity: optional (d,) activity of each dimension, e.g. A_u = Var_x E[z_u | x]
        (:func:`vae_edu.evaluate.active_units`) or the KL per dimension
        (:func:`vae_edu.evaluate.kl_per_dimension`). Given, the sliders and the traversal
        choices are sorted most active first, and the dimensions with activity <=
        ``threshold`` are folded into a collapsed Accordion with a sentence saying why they
        do nothing.
      threshold: the activity above which a dimension counts as active (0.01: Burda et
        al. 2016's threshold for A_u).

    Returns:
      :class:`DimensionExplorer`.
    """
    latent = as_latent_model(model)
    d = latent.latent_dim
    order, active = _activity_order(activity, threshold, d)
    images = np.asarray(images)
    choices = list(choices) if choices is not None else digit_choices(labels)
    values = (
        np.linspace(-3.0, 3.0, 9, dtype=np.float32)
        if values is None
        else as_values(values, "values")
    )
    if (
        isinstance(dimension, bool)
        or not isinstance(dimension, (int, np.integer))
        or not 0 <= dimension < d
    ):
        raise ValueError(f"dimension must be an integer in [0, {d}), got {dimension!r}")
    columns = _checks.count(columns, "columns")
    digit = widgets.Dropdown(
        options=choices,
        value=choices[0][1],
        description="start from",
        style={"description_width": "70px"},
    )
    sliders = tuple(_latent_slider(f"z{j + 1}", 0.0, limit, step) for j in range(d))
    image = _image(DECODED_IMAGE_CLASS)
    dim_choice = widgets.Dropdown(
        options=[(f"z{j + 1}", int(j)) for j in (range(d) if order is None else order)],
        value=int(dimension),
        description="traverse",
        style={"description_width": "70px"},
        layout=widgets.Layout(width="180px"),
    )
    traversal = _image(TRAVERSAL_CLASS)
    reset = widgets.Button(description="back to the encoding")
    readout = widgets.HTML()
    readout.add_class(READOUT_CLASS)
    state = _Dimensions(
        latent,
        images,
        (digit, sliders, image, dim_choice, traversal, readout),
        values,
        limit,
        scale,
    )
    grid_layout = {"grid_template_columns": f"repeat({columns}, 255px)"}
    folded = None
    if order is None:
        grid = widgets.GridBox(list(sliders), layout=widgets.Layout(**grid_layout))
    else:
        shown = [sliders[j] for j in order if active[j]]
        hidden = [sliders[j] for j in order if not active[j]]
        grid = widgets.VBox(
            [
                widgets.HTML(
                    f"{len(shown)} active dimensions, most active first (activity > {threshold:g}):"
                ),
                widgets.GridBox(shown, layout=widgets.Layout(**grid_layout)),
            ]
        )
        if hidden:
            folded = widgets.Accordion(
                [
                    widgets.VBox(
                        [
                            widgets.HTML(_INACTIVE_TEXT),
                            widgets.GridBox(hidden, layout=widgets.Layout(**grid_layout)),
                        ]
                    )
                ],
                selected_index=None,
            )
            folded.set_title(0, f"{len(hidden)} inactive dimensions (they change nothing)")
            grid.children = (*grid.children, folded)
    value_text = ", ".join(f"{v:g}" for v in values)
    box = widgets.VBox(
        [
            widgets.HBox([digit, reset]),
            grid,
            widgets.HBox(
                [
                    image,
                    widgets.VBox(
                        [
                            readout,
                            dim_choice,
                            widgets.HTML(
                                f"decoded images with z_k set to {value_text}, other coordinates "
                                f"as on the sliders:"
                            ),
                            traversal,
                        ]
                    ),
                ],
                layout=widgets.Layout(align_items="center"),
            ),
        ]
    )
    for slider in sliders:
        slider.observe(state.redraw, names="value")
    dim_choice.observe(state.redraw, names="value")
    digit.observe(state.load_encoding, names="value")
    reset.on_click(lambda _button: state.load_encoding())
    state.load_encoding()
    return DimensionExplorer(
        box,
        digit,
        sliders,
        image,
        dim_choice,
        traversal,
        reset,
        readout,
        values,
        latent,
        images,
        order,
        folded,
    )


class InterpolationExplorer(NamedTuple):
    """The widgets of :func:`build_interpolation_explorer`; ``display(explorer)`` shows ``widget``.

    Attributes:
      widget: the assembled box.
      start, end: Dropdowns choosing the two test images (x_a, x_b).
      t: the position slider (class ``vae-interpolation-slider``).
      image: decoded image at z(t) = (1 - t) z_a + t z_b (class ``vae-decoded-image``).
      strip: the whole path at ``ts`` (class ``vae-interpolation-strip``).
      ts: (n,) the positions of the strip.
      model: the :class:`LatentModel` used.
      images: the test images the Dropdowns index.
    """

    widget: widgets.Box
    start: widgets.Dropdown
    end: widgets.Dropdown
    t: widgets.FloatSlider
    image: widgets.Image
    strip: widgets.Image
    ts: np.ndarray
    model: LatentModel
    images: np.ndarray

    def endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(z_a, z_b): the encodings mu(x_a), mu(x_b) of the two chosen images."""
        return (
            self.model.encode(self.images[self.start.value]),
            self.model.encode(self.images[self.end.value]),
        )

    def _repr_mimebundle_(self, **kwargs):
        return _explorer_bundle(self.widget, self._description(), **kwargs)

    def _repr_pretty_(self, printer, cycle):
        printer.text(_explorer_text(self._description()))

    def _description(self) -> str:
        return "latent interpolation: a slider t between the encodings of two digits"


class _Interpolation:
    """State and callbacks of :func:`build_interpolation_explorer`."""

    def __init__(self, latent, images, start, end, t, image, strip, ts, scale):
        self.latent, self.images, self.ts, self.scale = latent, images, ts, scale
        self.start, self.end, self.t, self.image, self.strip = start, end, t, image, strip

    def endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(z_a, z_b): the encodings of the two chosen images."""
        return (
            self.latent.encode(self.images[self.start.value]),
            self.latent.encode(self.images[self.end.value]),
        )

    def redraw_image(self, change=None) -> None:
        """Decodes z(t) = (1 - t) z_a + t z_b at the slider's t."""
        z_a, z_b = self.endpoints()
        path = interpolate(self.latent, z_a, z_b, [self.t.value])
        self.image.value = pixels_to_png(path.images[0], self.scale)

    def redraw_all(self, change=None) -> None:
        """New endpoints: redraws the strip over ``ts`` and the image at t."""
        z_a, z_b = self.endpoints()
        path = interpolate(self.latent, z_a, z_b, self.ts)
        self.strip.value = strip_to_png(path.images, max(self.scale // 2, 1))
        self.redraw_image()


def build_interpolation_explorer(
    model,
    images,
    labels,
    *,
    choices=None,
    start=None,
    end=None,
    num_steps: int = 9,
    step: float = 0.05,
    scale: int = 6,
) -> InterpolationExplorer:
    """Linear interpolation between the encodings of two chosen test digits, slider t.

    Args:
      model: a VAE or :class:`~vae_edu.models.LatentModel`.
      images: (N, 28, 28) test images; labels: (N,) their digits.
      choices: Dropdown options (label, index); default :func:`digit_choices` (labels).
      start, end: initial indices (default the first and the last choice).
      num_steps: images in the strip (t evenly spaced in [0, 1]).
      step: slider step of t.
      scale: enlargement of the decoded image (the strip uses half of it).

    Returns:
      :class:`InterpolationExplorer`.
    """
    latent = as_latent_model(model)
    images = np.asarray(images)
    choices = list(choices) if choices is not None else digit_choices(labels)
    num_steps = _checks.count(num_steps, "num_steps", minimum=2)
    ts = np.linspace(0.0, 1.0, num_steps, dtype=np.float32)
    style = {"description_width": "50px"}
    first = widgets.Dropdown(
        options=choices,
        description="from",
        style=style,
        value=choices[0][1] if start is None else start,
    )
    last = widgets.Dropdown(
        options=choices, description="to", style=style, value=choices[-1][1] if end is None else end
    )
    t = widgets.FloatSlider(
        value=0.5,
        min=0.0,
        max=1.0,
        step=step,
        description="t",
        continuous_update=False,
        readout_format=".2f",
        style={"description_width": "20px"},
    )
    t.add_class(INTERPOLATION_SLIDER_CLASS)
    image = _image(DECODED_IMAGE_CLASS)
    strip = _image(INTERPOLATION_STRIP_CLASS)
    state = _Interpolation(latent, images, first, last, t, image, strip, ts, scale)
    box = widgets.VBox(
        [
            widgets.HBox([first, last, t]),
            widgets.HBox(
                [
                    image,
                    widgets.VBox(
                        [
                            widgets.HTML(
                                f"z(t) = (1 - t) z_a + t z_b at t = "
                                f"{', '.join(f'{v:.3g}' for v in ts)}:"
                            ),
                            strip,
                        ]
                    ),
                ],
                layout=widgets.Layout(align_items="center"),
            ),
        ]
    )
    t.observe(state.redraw_image, names="value")
    first.observe(state.redraw_all, names="value")
    last.observe(state.redraw_all, names="value")
    state.redraw_all()
    return InterpolationExplorer(box, first, last, t, image, strip, ts, latent, images)
