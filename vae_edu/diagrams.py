"""Diagrams of the course, drawn by code (pure matplotlib, no data needed).

Each function returns a :class:`matplotlib.figure.Figure`; the notebooks save them into
``figures/`` with :func:`vae_edu.plots.save_figure`. Every box carries a text label and every
connection is a :class:`matplotlib.patches.FancyArrowPatch`, so a test can check the picture
by its labels and its number of arrows.

* :func:`vae_architecture`: encoder, sampling, decoder and the two loss terms;
* :func:`reparameterization_graph`: the computation graph of ``z ~ N(mu, sigma^2)`` without
  and with the reparameterization trick, and where the gradient cannot pass;
* :func:`elbo_decomposition`: ``log p(x) = ELBO + KL(q || p(z|x))`` as stacked bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["vae_architecture", "reparameterization_graph", "elbo_decomposition"]

_DETERMINISTIC = "#dbe9f6"  # networks and deterministic functions
_RANDOM = "#fde3c8"  # random nodes
_LOSS = "#e4f2df"  # loss terms
_DATA = "#eeeeee"  # data and parameters


def _box(ax, x, y, text, color, *, width=0.15, height=0.13, fontsize=9):
    """A rounded box centred at (x, y) with a label; returns the patch."""
    patch = FancyBboxPatch(
        (x - width / 2, y - height / 2),
        width,
        height,
        boxstyle="round,pad=0.01,rounding_size=0.02",
        facecolor=color,
        edgecolor="0.25",
        linewidth=1.2,
    )
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return patch


def _arrow(ax, start, end, *, color="0.2", style="-|>", linestyle="-", label=None, **kwargs):
    """An arrow from ``start`` to ``end`` (axes coordinates), optionally labelled mid-way."""
    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle=style,
        mutation_scale=14,
        color=color,
        linewidth=1.4,
        linestyle=linestyle,
        shrinkA=2,
        shrinkB=2,
        **kwargs,
    )
    ax.add_patch(arrow)
    if label:
        ax.text(
            (start[0] + end[0]) / 2,
            (start[1] + end[1]) / 2 + 0.035,
            label,
            ha="center",
            va="bottom",
            fontsize=8,
            color=color,
        )
    return arrow


def _blank_axes(ax):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()


def vae_architecture():
    """The VAE as one picture: x -> encoder -> (mu, log sigma^2) -> z -> decoder -> p(x | z).

    The sampling step is drawn as ``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` coming in
    from outside, and the two terms of the loss (the negative ELBO) hang below the parts of
    the network they depend on: the reconstruction term ``-log p(x | z)`` on the decoder's
    output and the input, the KL term ``KL(q(z|x) || N(0, I))`` on the encoder's output.

    Returns:
      A matplotlib Figure (11 x 4.2 inches) with one axes and no data.
    """
    fig, ax = plt.subplots(figsize=(11, 4.2))
    _blank_axes(ax)
    y = 0.66
    _box(ax, 0.06, y, "image x\n(784 pixels)", _DATA, width=0.1)
    _box(ax, 0.22, y, "encoder\n$q_\\phi(z\\mid x)$\n(MLP)", _DETERMINISTIC, width=0.13)
    _box(ax, 0.39, y, "$\\mu_\\phi(x)$\n$\\log\\sigma^2_\\phi(x)$", _DETERMINISTIC, width=0.12)
    _box(ax, 0.56, y, "$z = \\mu + \\sigma\\odot\\varepsilon$", _DETERMINISTIC, width=0.14)
    _box(ax, 0.56, 0.92, "$\\varepsilon \\sim \\mathcal{N}(0, I)$", _RANDOM, width=0.14, height=0.1)
    _box(ax, 0.73, y, "decoder\n$p_\\theta(x\\mid z)$\n(MLP)", _DETERMINISTIC, width=0.13)
    _box(ax, 0.9, y, "pixel probabilities\nsigmoid(logits)", _DATA, width=0.15)
    _arrow(ax, (0.11, y), (0.155, y))
    _arrow(ax, (0.285, y), (0.33, y))
    _arrow(ax, (0.45, y), (0.49, y))
    _arrow(ax, (0.56, 0.87), (0.56, y + 0.065))
    _arrow(ax, (0.63, y), (0.665, y))
    _arrow(ax, (0.795, y), (0.825, y))
    _box(
        ax,
        0.39,
        0.27,
        "KL term\n$\\mathrm{KL}(q_\\phi(z\\mid x)\\,\\|\\,\\mathcal{N}(0, I))$\n(closed form)",
        _LOSS,
        width=0.24,
        height=0.15,
    )
    _box(
        ax,
        0.82,
        0.2,
        "reconstruction term\n$-\\log p_\\theta(x\\mid z)$\n(binary cross-entropy with x)",
        _LOSS,
        width=0.26,
        height=0.17,
    )
    _arrow(ax, (0.39, y - 0.065), (0.39, 0.345), color="tab:green")
    _arrow(ax, (0.9, y - 0.065), (0.86, 0.285), color="tab:green")
    _arrow(
        ax,
        (0.06, y - 0.065),
        (0.69, 0.14),
        color="tab:green",
        connectionstyle="angle,angleA=90,angleB=0,rad=0",
    )
    ax.text(
        0.6,
        0.02,
        "loss = reconstruction term + KL term = -ELBO (averaged over a batch)",
        ha="center",
        fontsize=10,
        fontweight="bold",
    )
    ax.set_title("The variational autoencoder: two networks, one sampling step, two loss terms")
    return fig


def _sampling_graph(ax, node_text, node_color, *, width):
    """mu and sigma into a sampling node centred at (0.5, 0.55), the node into f(z), and the
    gradient of f(z) back to the node (dashed green); returns the node's left edge, where
    gradients towards mu and sigma start."""
    left_edge, right_edge = 0.5 - width / 2, 0.5 + width / 2
    _box(ax, 0.15, 0.72, "$\\mu$", _DATA, width=0.12, height=0.11)
    _box(ax, 0.15, 0.38, "$\\sigma$", _DATA, width=0.12, height=0.11)
    _box(ax, 0.5, 0.55, node_text, node_color, width=width)
    _box(ax, 0.85, 0.55, "$f(z)$", _DETERMINISTIC, width=0.12, height=0.11)
    _arrow(ax, (0.21, 0.72), (left_edge, 0.6))
    _arrow(ax, (0.21, 0.38), (left_edge, 0.5))
    _arrow(ax, (right_edge, 0.55), (0.79, 0.55))
    _arrow(
        ax,
        (0.79, 0.47),
        (right_edge + 0.01, 0.47),
        color="tab:green",
        linestyle="--",
        label="$\\partial f/\\partial z$",
    )
    return left_edge


def _caption(ax, text, color):
    """A small coloured note at the bottom centre of a diagram panel."""
    ax.text(0.5, 0.12, text, ha="center", fontsize=9, color=color)


def reparameterization_graph():
    """The sampling step as a computation graph, without and with the reparameterization trick.

    Left: ``z ~ N(mu, sigma^2)`` is a random node; the gradient of ``f(z)`` reaches ``z`` but
    has no path back to ``mu`` and ``sigma`` (a red cross). Right: ``z = mu + sigma * eps``
    with ``eps ~ N(0, 1)`` drawn outside the graph; ``z`` is a deterministic, differentiable
    function of ``mu`` and ``sigma``, and the gradient (dashed green) flows back to them.

    Returns:
      A matplotlib Figure (11 x 4.4 inches) with two axes.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax in axes:
        _blank_axes(ax)
    left, right = axes
    # Without the trick.
    node_edge = _sampling_graph(
        left, "sample\n$z \\sim \\mathcal{N}(\\mu, \\sigma^2)$", _RANDOM, width=0.24
    )
    _arrow(left, (node_edge, 0.44), (0.22, 0.33), color="tab:red", linestyle="--")
    left.text(
        0.31, 0.38, "X", color="tab:red", fontsize=22, fontweight="bold", ha="center", va="center"
    )
    _caption(
        left,
        "no gradient through a random draw:\n$\\partial z/\\partial\\mu$ is not defined",
        "tab:red",
    )
    left.set_title("without the trick")
    # With the trick.
    node_edge = _sampling_graph(
        right, "$z = \\mu + \\sigma\\,\\varepsilon$", _DETERMINISTIC, width=0.22
    )
    _box(
        right, 0.5, 0.88, "$\\varepsilon \\sim \\mathcal{N}(0, 1)$", _RANDOM, width=0.22, height=0.1
    )
    _arrow(right, (0.5, 0.83), (0.5, 0.615))
    _arrow(right, (node_edge, 0.46), (0.22, 0.33), color="tab:green", linestyle="--")
    _arrow(right, (node_edge, 0.64), (0.22, 0.78), color="tab:green", linestyle="--")
    _caption(
        right,
        "$\\partial z/\\partial\\mu = 1$, $\\partial z/\\partial\\sigma = \\varepsilon$:\n"
        "the gradient reaches $\\mu$ and $\\sigma$",
        "tab:green",
    )
    right.set_title("with the reparameterization trick")
    fig.suptitle("The same sample, two computation graphs (solid: forward, dashed: gradient)")
    fig.tight_layout()
    return fig


def elbo_decomposition(entries: Sequence[tuple[str, float, float]], *, title: str | None = None):
    """``log p(x) = ELBO + KL(q || p(z|x))`` as one stacked bar per approximation q.

    Each bar starts at a common baseline below the smallest ELBO; its lower part reaches up to
    the ELBO, its upper part (the gap) from the ELBO up to ``log p(x)``, so the total height
    of every bar is ``log p(x)`` (a dashed line) whatever q is. The baseline is arbitrary,
    and the x label says so: read the ELBO at the top of the blue part.

    Args:
      entries: ``(label, elbo, log_evidence)`` per bar, in nats; ``elbo <= log_evidence``.
      title: optional axes title.

    Returns:
      A matplotlib Figure with one axes.

    Raises:
      ValueError: if ``entries`` is empty or an ELBO exceeds its log-evidence by more than
        1e-6 (not a lower bound: a sign error upstream).
    """
    entries = [(str(label), float(elbo), float(log_px)) for label, elbo, log_px in entries]
    if not entries:
        raise ValueError("elbo_decomposition needs at least one (label, elbo, log_evidence)")
    for label, elbo, log_px in entries:
        if elbo > log_px + 1e-6:
            raise ValueError(f"{label}: ELBO {elbo} exceeds log p(x) {log_px}: not a lower bound")
    top = max(log_px for _, _, log_px in entries)
    low = min(elbo for _, elbo, _ in entries)
    baseline = low - 0.25 * max(top - low, 1.0)
    fig, ax = plt.subplots(figsize=(1.8 + 1.9 * len(entries), 4.2))
    for i, (_, elbo, log_px) in enumerate(entries):
        ax.bar(
            i,
            elbo - baseline,
            bottom=baseline,
            color="tab:blue",
            width=0.6,
            label="ELBO" if i == 0 else None,
        )
        ax.bar(
            i,
            log_px - elbo,
            bottom=elbo,
            color="tab:red",
            alpha=0.75,
            width=0.6,
            label="KL(q || p(z|x)) = gap" if i == 0 else None,
        )
        ax.text(
            i,
            (baseline + elbo) / 2,
            f"ELBO\n{elbo:.3f}",
            ha="center",
            va="center",
            color="white",
            fontsize=8,
        )
        if log_px - elbo > 0.08 * (top - baseline):
            ax.text(
                i,
                (elbo + log_px) / 2,
                f"gap\n{log_px - elbo:.3f}",
                ha="center",
                va="center",
                fontsize=8,
            )
    ax.axhline(top, color="k", linestyle="--", linewidth=1.2, label=f"log p(x) = {top:.3f}")
    ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], fontsize=8)
    ax.set_ylim(baseline, top + 0.12 * (top - baseline))
    ax.set_ylabel("nats")
    # The blue bars start at an arbitrary baseline: only their tops and the red lengths mean
    # something, and the figure says so.
    ax.set_xlabel(
        "blue: from an arbitrary baseline up to the ELBO (read its top); red: the gap",
        fontsize=8,
    )
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.set_title(title or "log p(x) = ELBO + KL(q || p(z|x))", fontsize=10)
    fig.tight_layout()
    return fig
