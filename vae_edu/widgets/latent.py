"""Update functions behind the latent-space explorer (notebook 06), plain and unit-tested.

A trained VAE gives two maps between pixels and codes (:mod:`vae_edu.models`):

    encoder   x  ->  q(z | x) = N(mu(x), diag sigma^2(x))      (we use the mean mu(x))
    decoder   z  ->  E[x | z] = sigmoid(f_theta(z))              (the "decoded image")

The explorer moves a point z around the latent space with sliders and shows the decoded
image live. Everything it draws comes from the functions here:

* :class:`LatentModel`: the encoder mean and the decoder mean as *single jitted calls*
  (numpy in, numpy out), so a slider update costs well under a millisecond of compute;
* :func:`decode_to_png`, :func:`pixels_to_png`, :func:`strip_to_png` (with
  :func:`tile_images`): PNG bytes for an
  ``ipywidgets.Image`` (the picture lives in the widget's state, so it renders in
  JupyterLab, Voila and under nbval alike, unlike a figure printed into an Output widget);
* :func:`quantile_grid`, :func:`manifold_codes`, :func:`manifold_grid`: the decoded 2-D
  manifold over equal-prior-mass tiles (Kingma & Welling 2014, figure 4);
* :func:`traversal_codes`, :func:`traverse`: vary one coordinate z_k, keep the others;
* :func:`interpolation_codes`, :func:`interpolate`: the straight line between two codes;
* :class:`LatentScatter`: the encoded test set, pre-rendered once, with a marker at z;
* :func:`build_2d_explorer`, :func:`build_dimension_explorer`,
  :func:`build_interpolation_explorer`: create and wire the ipywidgets, so the notebook
  stays short. Each returns a NamedTuple of its widgets (``display(explorer)`` shows it);
  a test "moves a slider" by assigning ``slider.value`` and reads ``image.value``.

Stable CSS classes (for browser tests and custom styling): every slider over a latent
coordinate carries :data:`LATENT_SLIDER_CLASS` (``"vae-latent-slider"``) and every image of
the decoder at the current point :data:`DECODED_IMAGE_CLASS` (``"vae-decoded-image"``).
"""

from __future__ import annotations

import functools
import io
import math
import time
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import NamedTuple

import ipywidgets as widgets
import jax
import numpy as np
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage  # Pillow: a dependency of matplotlib

from vae_edu.models import VAE

__all__ = [
    "LATENT_SLIDER_CLASS",
    "DECODED_IMAGE_CLASS",
    "LatentModel",
    "LatentPath",
    "LatentScatter",
    "Explorer2D",
    "DimensionExplorer",
    "InterpolationExplorer",
    "as_latent_model",
    "pixels_to_png",
    "strip_to_png",
    "tile_images",
    "decode_to_png",
    "quantile_grid",
    "manifold_codes",
    "manifold_grid",
    "traversal_codes",
    "traverse",
    "interpolation_codes",
    "interpolate",
    "digit_choices",
    "median_seconds",
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


# ----------------------------------------------------------------------------- the model
@functools.partial(jax.jit, static_argnums=0)
def _decode_mean(graphdef, params, z):
    return nnx.merge(graphdef, params).mean_image(z)


@functools.partial(jax.jit, static_argnums=0)
def _encode_mean(graphdef, params, x):
    return nnx.merge(graphdef, params).encode(x)[0]


class LatentModel:
    """A VAE's encoder mean and decoder mean as jitted numpy-in, numpy-out calls.

    The parameters are split from the NNX module once, here (``nnx.split``), and passed to
    one compiled function per call, so decoding a code is a single XLA call with no Python
    work per layer. The parameters are a snapshot: train the VAE further and you need a
    new ``LatentModel``.

    Args:
      model: a :class:`vae_edu.models.VAE`.

    Attributes:
      latent_dim: d.
      image_shape: (28, 28) for MNIST (square images), else ``(input_dim,)``.
    """

    def __init__(self, model: VAE):
        if not isinstance(model, VAE):
            raise TypeError(f"model must be a vae_edu.models.VAE, got {type(model).__name__}")
        graphdef, state = nnx.split(model, nnx.Param)
        self._graphdef = graphdef
        self._params = nnx.to_pure_dict(state)
        self.config = model.config
        self.latent_dim = model.config.latent_dim
        side = math.isqrt(model.config.input_dim)
        self.image_shape = (
            (side, side) if side * side == model.config.input_dim else (model.config.input_dim,)
        )

    def decode(self, z) -> np.ndarray:
        """E[x | z] = sigmoid(f_theta(z)) as images.

        Args:
          z: (..., latent_dim) codes.

        Returns:
          (..., *image_shape) float32 pixel means in [0, 1].

        Raises:
          ValueError: if the last axis of ``z`` is not ``latent_dim``.
        """
        z = np.asarray(z, np.float32)
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z has shape {z.shape} but the model expects (..., {self.latent_dim})"
            )
        out = np.asarray(_decode_mean(self._graphdef, self._params, z))
        return out.reshape(z.shape[:-1] + self.image_shape)

    def encode(self, images) -> np.ndarray:
        """The posterior means mu(x) of q(z | x) = N(mu(x), diag sigma^2(x)).

        Args:
          images: (..., 28, 28) uint8 pixels 0..255, or floats in [0, 1] of shape
            (..., 28, 28) or (..., input_dim).

        Returns:
          (..., latent_dim) float32 means.

        Raises:
          ValueError: if the trailing axes do not hold ``input_dim`` pixels.
        """
        arr = np.asarray(images)
        if np.issubdtype(arr.dtype, np.unsignedinteger):
            arr = arr.astype(np.float32) / np.float32(255.0)
        arr = np.asarray(arr, np.float32)
        num_pixels = self.config.input_dim
        pixel_ndim = len(self.image_shape)
        if arr.shape[arr.ndim - pixel_ndim :] == self.image_shape:
            batch = arr.shape[: arr.ndim - pixel_ndim]
        elif arr.ndim >= 1 and arr.shape[-1] == num_pixels:
            batch = arr.shape[:-1]
        else:
            raise ValueError(
                f"images have shape {arr.shape} but the model expects "
                f"(..., {', '.join(map(str, self.image_shape))}) or "
                f"(..., {num_pixels})"
            )
        flat = arr.reshape(batch + (num_pixels,))
        return np.asarray(_encode_mean(self._graphdef, self._params, flat))


def as_latent_model(model) -> LatentModel:
    """``model`` itself if it is a :class:`LatentModel`, else ``LatentModel(model)``."""
    return model if isinstance(model, LatentModel) else LatentModel(model)


# ----------------------------------------------------------------------------- pictures
def _as_uint8(pixels) -> np.ndarray:
    arr = np.asarray(pixels, np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("pixels must be finite numbers in [0, 1]")
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _png(array: np.ndarray, compress_level: int = 6) -> bytes:
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
      ValueError: if ``image`` is not 2-D, not finite, or ``scale`` is not a positive int.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {arr.shape}")
    scale = _check_scale(scale)
    pixels = _as_uint8(arr)
    return _png(np.kron(pixels, np.ones((scale, scale), np.uint8)))


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
      ValueError: if ``images`` is not (n, H, W) with n >= 1, or ncols/gap are invalid.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (n, H, W) with n >= 1, got {images.shape}")
    for name, value, low in (("ncols", ncols, 1), ("gap", gap, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
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
      model: a VAE or a :class:`LatentModel` (faster: no parameter split per call).
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
def quantile_grid(n: int) -> np.ndarray:
    r"""n values z_i = Phi^{-1}(u_i) at evenly spaced probabilities u_i = (i + 1/2) / n.

    Phi is the standard normal CDF. Cut the real line at Phi^{-1}(j / n), j = 0..n: the n
    cells each hold prior mass exactly 1/n, and z_i is the point of cell i whose CDF value
    is the cell's midpoint (Kingma & Welling 2014, figure 4: "linearly spaced coordinates
    on the unit square were transformed through the inverse CDF of the Gaussian"). On a
    2-D grid z_i x z_j every tile holds prior mass 1/n^2, so equal areas of the figure
    show equally probable codes. Because Phi^{-1}(1 - u) = -Phi^{-1}(u) and
    u_{n-1-i} = 1 - u_i, the grid is symmetric about 0; it is computed that way, so the
    symmetry holds exactly in floating point.

    Args:
      n: number of values (>= 1).

    Returns:
      (n,) float64, increasing; z_{n-1-i} = -z_i.

    Raises:
      ValueError: if ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    normal = NormalDist()
    lower = [normal.inv_cdf((i + 0.5) / n) for i in range(n // 2)]
    middle = [0.0] if n % 2 else []
    return np.array(lower + middle + [-v for v in reversed(lower)], np.float64)


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


def manifold_grid(model, n: int = 20) -> np.ndarray:
    """The decoded 2-D latent manifold as one image (Kingma & Welling 2014, figure 4).

    Decodes the n^2 codes of :func:`manifold_codes` in one call and tiles the mean images
    without gaps.

    Args:
      model: a VAE or :class:`LatentModel` with latent_dim == 2 and square images.
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


# ----------------------------------------------------------------------------- paths
class LatentPath(NamedTuple):
    """Codes along a path through the latent space and their decoded images.

    Attributes:
      codes: (n, latent_dim) float32.
      images: (n, H, W) float32 in [0, 1], ``images[i]`` = E[x | codes[i]].
    """

    codes: np.ndarray
    images: np.ndarray


def _as_code(z, name: str, latent_dim: int | None = None) -> np.ndarray:
    arr = np.asarray(z, np.float32)
    if arr.ndim != 1 or (latent_dim is not None and arr.shape[0] != latent_dim):
        want = f"({latent_dim},)" if latent_dim is not None else "(latent_dim,)"
        raise ValueError(f"{name} has shape {arr.shape} but must be one code of shape {want}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _as_values(values, name: str) -> np.ndarray:
    arr = np.asarray(values, np.float32)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


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
    z0 = _as_code(z0, "z0")
    values = _as_values(values, "values")
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
      model: a VAE or :class:`LatentModel`.
      z0: (latent_dim,) the starting code, e.g. the encoding of a test digit.
      k: the coordinate to vary (0-based).
      values: (n,) values for z_k, e.g. ``np.linspace(-3, 3, 9)``.

    Returns:
      :class:`LatentPath` (codes (n, d), images (n, H, W)).
    """
    latent = as_latent_model(model)
    codes = traversal_codes(_as_code(z0, "z0", latent.latent_dim), k, values)
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
    z_a = _as_code(z_a, "z_a")
    z_b = _as_code(z_b, "z_b", z_a.shape[0])
    ts = _as_values(ts, "ts")[:, None]
    return (np.float32(1.0) - ts) * z_a + ts * z_b


def interpolate(model, z_a, z_b, ts) -> LatentPath:
    """Linear interpolation in latent space: decode (1 - t) z_a + t z_b for each t.

    Unlike the pixel cross-fade (1 - t) x_a + t x_b, which superimposes two faded
    digits, every intermediate image is a decoder output, i.e. an image the model
    considers plausible: the KL term packs the encodings around the origin without gaps.

    Args:
      model: a VAE or :class:`LatentModel`.
      z_a, z_b: (latent_dim,) the end codes (e.g. the encodings of two test digits).
      ts: (n,) positions in [0, 1].

    Returns:
      :class:`LatentPath` (codes (n, d), images (n, H, W)).
    """
    latent = as_latent_model(model)
    codes = interpolation_codes(
        _as_code(z_a, "z_a", latent.latent_dim), _as_code(z_b, "z_b", latent.latent_dim), ts
    )
    return LatentPath(codes, latent.decode(codes))


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
            z = np.clip(_as_code(z, "z", 2), -self.limit, self.limit)
            self._marker.set_data([z[0]], [z[1]])
            self.axes.draw_artist(self._marker)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def png(self, z) -> bytes:
        """PNG bytes of :meth:`rgb` (fast, light compression: this picture is large)."""
        return _png(self.rgb(z), compress_level=1)


# ----------------------------------------------------------------------------- timing
def median_seconds(fn: Callable[[], object], repeats: int = 200, warmup: int = 3) -> float:
    """Median wall-clock time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls.

    The warm-up calls absorb compilation; the median ignores the odd slow call (another
    process on the CPU). ``fn`` should return numpy arrays or bytes, i.e. finish its
    device work before returning (``LatentModel.decode`` does).

    Returns:
      Seconds (a float).
    """
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


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
    """HTML: z itself (if short), ||z|| against sqrt(d), and log N(z; 0, I)."""
    d = z.shape[0]
    log_prior = -0.5 * float(np.dot(z, z)) - 0.5 * d * math.log(2 * math.pi)
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
        return np.array([s.value for s in self.sliders], np.float32)

    def _repr_mimebundle_(self, **kwargs):
        return _explorer_bundle(self.widget, self._description(), **kwargs)

    def _repr_pretty_(self, printer, cycle):
        printer.text(_explorer_text(self._description()))

    def _description(self) -> str:
        return "2-D latent explorer: sliders z1, z2, the decoded image and the encodings"


def build_2d_explorer(
    model, means, labels, *, limit: float = 3.0, step: float = 0.1, scale: int = 6, start=(0.0, 0.0)
) -> Explorer2D:
    """Two sliders (z_1, z_2) that decode a point live and mark it on the latent scatter.

    Moving either slider calls :func:`decode_to_png` at the new z (one jitted decoder call)
    and redraws the marker of :class:`LatentScatter`.

    Args:
      model: a VAE or :class:`LatentModel` with latent_dim == 2.
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
    start = _as_code(start, "start", 2)
    sliders = (
        _latent_slider("z1", float(start[0]), limit, step),
        _latent_slider("z2", float(start[1]), limit, step),
    )
    image = _image(DECODED_IMAGE_CLASS)
    scatter_plot = LatentScatter(means, labels, limit=limit)
    scatter = _image(SCATTER_CLASS)
    readout = widgets.HTML()
    explorer = None

    def update(change=None):
        z = explorer.code()
        image.value = decode_to_png(latent, z, scale)
        scatter.value = scatter_plot.png(z)
        readout.value = _norm_readout(z)

    box = widgets.VBox(
        [
            widgets.HBox(list(sliders)),
            widgets.HBox(
                [widgets.VBox([image, readout], layout=widgets.Layout(width="240px")), scatter],
                layout=widgets.Layout(align_items="center"),
            ),
        ]
    )
    explorer = Explorer2D(box, sliders, image, scatter, readout, latent)
    for slider in sliders:
        slider.observe(update, names="value")
    update()
    return explorer


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

    def code(self) -> np.ndarray:
        """The current slider values as a (d,) float32 code."""
        return np.array([s.value for s in self.sliders], np.float32)

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
) -> DimensionExplorer:
    """One slider per latent dimension, starting from the encoding of a chosen test digit.

    * Choosing a digit in the Dropdown sets every slider to its encoding mu(x) (values
      beyond +-limit are clipped by the sliders) and redraws once.
    * Moving slider j decodes the code with the new z_j (one jitted call).
    * The strip below shows :func:`traverse` from the current code along dimension k
      (the second Dropdown), so it follows both the sliders and k.

    Args:
      model: a VAE or :class:`LatentModel`.
      images: (N, 28, 28) test images; labels: (N,) their digits.
      choices: Dropdown options (label, index); default :func:`digit_choices` (labels).
      limit, step: slider range [-limit, limit] and step.
      values: the traversal values; default ``np.linspace(-3, 3, 9)``.
      dimension: the initial k (0-based).
      columns: sliders per row.
      scale: enlargement of the decoded image (the strip uses half of it, at least 1).

    Returns:
      :class:`DimensionExplorer`.
    """
    latent = as_latent_model(model)
    d = latent.latent_dim
    images = np.asarray(images)
    choices = list(choices) if choices is not None else digit_choices(labels)
    values = (
        np.linspace(-3.0, 3.0, 9, dtype=np.float32)
        if values is None
        else _as_values(values, "values")
    )
    if (
        isinstance(dimension, bool)
        or not isinstance(dimension, (int, np.integer))
        or not 0 <= dimension < d
    ):
        raise ValueError(f"dimension must be an integer in [0, {d}), got {dimension!r}")
    digit = widgets.Dropdown(
        options=choices,
        value=choices[0][1],
        description="start from",
        style={"description_width": "70px"},
    )
    sliders = tuple(_latent_slider(f"z{j + 1}", 0.0, limit, step) for j in range(d))
    image = _image(DECODED_IMAGE_CLASS)
    dim_choice = widgets.Dropdown(
        options=[(f"z{j + 1}", j) for j in range(d)],
        value=int(dimension),
        description="traverse",
        style={"description_width": "70px"},
        layout=widgets.Layout(width="180px"),
    )
    traversal = _image(TRAVERSAL_CLASS)
    reset = widgets.Button(description="back to the encoding")
    readout = widgets.HTML()
    holding = [False]  # True while the Dropdown sets all sliders: redraw once at the end
    explorer = None

    def redraw(change=None):
        if holding[0]:
            return
        z = explorer.code()
        image.value = decode_to_png(latent, z, scale)
        path = traverse(latent, z, dim_choice.value, values)
        traversal.value = strip_to_png(path.images, max(scale // 2, 1))
        readout.value = _norm_readout(z)

    def load_encoding(change=None):
        mean = explorer.encoding()
        holding[0] = True
        try:
            for slider, v in zip(sliders, mean, strict=True):
                slider.value = float(np.clip(v, -limit, limit))
        finally:
            holding[0] = False
        redraw()

    grid = widgets.GridBox(
        list(sliders), layout=widgets.Layout(grid_template_columns=f"repeat({int(columns)}, 255px)")
    )
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
    explorer = DimensionExplorer(
        box, digit, sliders, image, dim_choice, traversal, reset, readout, values, latent, images
    )
    for slider in sliders:
        slider.observe(redraw, names="value")
    dim_choice.observe(redraw, names="value")
    digit.observe(load_encoding, names="value")
    reset.on_click(lambda _button: load_encoding())
    load_encoding()
    return explorer


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
      model: a VAE or :class:`LatentModel`.
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
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    ts = np.linspace(0.0, 1.0, int(num_steps), dtype=np.float32)
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
    explorer = None

    def update_image(change=None):
        z_a, z_b = explorer.endpoints()
        path = interpolate(latent, z_a, z_b, [t.value])
        image.value = pixels_to_png(path.images[0], scale)

    def update_all(change=None):
        z_a, z_b = explorer.endpoints()
        strip.value = strip_to_png(interpolate(latent, z_a, z_b, ts).images, max(scale // 2, 1))
        update_image()

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
    explorer = InterpolationExplorer(box, first, last, t, image, strip, ts, latent, images)
    t.observe(update_image, names="value")
    first.observe(update_all, names="value")
    last.observe(update_all, names="value")
    update_all()
    return explorer
