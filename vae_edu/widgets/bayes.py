"""Update functions behind the Bayes' rule notebook's widgets (plain functions, unit-tested).

The model is the one-dimensional conjugate Gaussian pair of notebook 01:

    prior       z ~ N(m_0, s_0^2)
    likelihood  x | z ~ N(z, sigma^2)

for which the posterior p(z | x) and the evidence p(x) are exact. The slider callback
:func:`plot_bayes_update` draws prior, likelihood and posterior and returns the numbers it
displays, so a test can "move a slider" by calling it.
"""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np

from vae_edu import _checks

__all__ = [
    "GaussianPosterior",
    "BayesUpdatePlot",
    "gaussian_bayes_update",
    "plot_bayes_update",
    "figure_to_png",
]


class GaussianPosterior(NamedTuple):
    """Exact Bayes update of the 1-D conjugate Gaussian model.

    Attributes:
      mean: posterior mean E[z | x].
      std: posterior standard deviation sqrt(Var[z | x]).
      evidence: p(x), the marginal density of the observation.
      log_evidence: log p(x) (finite even where p(x) underflows to 0).
    """

    mean: float
    std: float
    evidence: float
    log_evidence: float


class BayesUpdatePlot(NamedTuple):
    """What the Bayes widget shows: the exact update and the figure it was drawn on."""

    posterior: GaussianPosterior
    figure: plt.Figure


def _check_finite(value, name: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _normal_log_pdf(x, mean, std):
    """log N(x; mean, std^2) elementwise (numpy, float64)."""
    return -0.5 * np.square((x - mean) / std) - np.log(std) - 0.5 * math.log(2.0 * math.pi)


def gaussian_bayes_update(prior_mean, prior_std, noise_std, x) -> GaussianPosterior:
    r"""Exact posterior and evidence of the conjugate Gaussian model (notebook 01, step 4).

    Prior z ~ N(m_0, s_0^2), likelihood x | z ~ N(z, sigma^2). Completing the square in
    log p(x | z) + log p(z) gives precisions that add and a precision-weighted mean:

        1 / s_post^2 = 1 / s_0^2 + 1 / sigma^2
        m_post       = s_post^2 * (m_0 / s_0^2 + x / sigma^2)

    and the evidence is the integral of the joint over z,

        p(x) = int N(x; z, sigma^2) N(z; m_0, s_0^2) dz = N(x; m_0, s_0^2 + sigma^2).

    Args:
      prior_mean: scalar m_0.
      prior_std: scalar s_0 > 0 (a standard deviation, not a variance).
      noise_std: scalar sigma > 0, the likelihood's noise standard deviation.
      x: scalar observation.

    Returns:
      GaussianPosterior(mean, std, evidence, log_evidence) as Python floats.

    Raises:
      ValueError: if a standard deviation is not positive and finite, or a location is
        not finite.
    """
    prior_mean = _check_finite(prior_mean, "prior_mean")
    prior_std = _checks.positive_finite_scalar(prior_std, "prior_std")
    noise_std = _checks.positive_finite_scalar(noise_std, "noise_std")
    x = _check_finite(x, "x")
    prior_var, noise_var = prior_std**2, noise_std**2
    # s_post^2 = s_0^2 sigma^2 / (s_0^2 + sigma^2): the same as 1 / (1/s_0^2 + 1/sigma^2),
    # written so that neither tiny nor huge standard deviations overflow.
    marginal_var = prior_var + noise_var
    post_var = prior_var * (noise_var / marginal_var)
    post_mean = (prior_mean * noise_var + x * prior_var) / marginal_var
    log_evidence = float(_normal_log_pdf(x, prior_mean, math.sqrt(marginal_var)))
    return GaussianPosterior(
        mean=float(post_mean),
        std=math.sqrt(post_var),
        evidence=math.exp(log_evidence),
        log_evidence=log_evidence,
    )


def plot_bayes_update(prior_mean, prior_std, noise_std, x, ax=None, num_points: int = 801):
    """Draws prior p(z), likelihood p(x | z) (as a function of z) and posterior p(z | x).

    The slider callback of notebook 01. Curves are labelled ``"prior p(z)"``,
    ``"likelihood p(x|z)"``, ``"joint p(x|z) p(z)"`` and ``"posterior p(z|x)"``; the
    joint is the unnormalised posterior, whose area under the curve is the evidence p(x).
    The title states the numbers returned.

    Args:
      prior_mean, prior_std, noise_std, x: the slider values, as in
        :func:`gaussian_bayes_update`.
      ax: a matplotlib Axes to draw on (cleared first); a new figure if None.
      num_points: number of grid points in z.

    Returns:
      BayesUpdatePlot(posterior, figure): the exact update shown and the figure drawn.

    Raises:
      ValueError: as :func:`gaussian_bayes_update`, or if ``num_points < 2``.
    """
    post = gaussian_bayes_update(prior_mean, prior_std, noise_std, x)
    if int(num_points) < 2:
        raise ValueError(f"num_points must be at least 2, got {num_points}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.6))
    else:
        fig = ax.figure
        ax.clear()
    # A grid wide enough to show all three bumps: 4 standard deviations around each.
    lo = min(prior_mean - 4 * prior_std, x - 4 * noise_std, post.mean - 4 * post.std)
    hi = max(prior_mean + 4 * prior_std, x + 4 * noise_std, post.mean + 4 * post.std)
    z = np.linspace(lo, hi, int(num_points))
    prior = np.exp(_normal_log_pdf(z, prior_mean, prior_std))
    likelihood = np.exp(_normal_log_pdf(x, z, noise_std))
    posterior = np.exp(_normal_log_pdf(z, post.mean, post.std))
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
