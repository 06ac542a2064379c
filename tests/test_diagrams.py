"""The diagrams of vae_edu.diagrams: labelled boxes, arrows, and a file on disk."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from vae_edu import diagrams  # noqa: E402
from vae_edu.plots import save_figure  # noqa: E402


def _texts(fig):
    return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def _arrows(fig):
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_vae_architecture_has_both_networks_the_sampling_step_and_both_loss_terms(tmp_path):
    fig = diagrams.vae_architecture()
    text = _texts(fig)
    for label in ("encoder", "decoder", "varepsilon", "KL term", "reconstruction term", "ELBO"):
        assert label in text, label
    assert len(_arrows(fig)) >= 9
    path = save_figure(fig, "architecture", tmp_path)
    assert path.exists() and path.stat().st_size > 10_000
    plt.close(fig)


def test_reparameterization_graph_blocks_the_gradient_only_without_the_trick(tmp_path):
    fig = diagrams.reparameterization_graph()
    left, right = fig.axes
    assert left.get_title() == "without the trick"
    assert right.get_title() == "with the reparameterization trick"
    left_text = " ".join(t.get_text() for t in left.texts)
    right_text = " ".join(t.get_text() for t in right.texts)
    assert "X" in left_text and "no gradient" in left_text
    assert "X" not in right_text.split() and "reaches" in right_text
    # Dashed arrows are gradients: one red (blocked) on the left, three green on the right.
    red = [a for a in left.patches if isinstance(a, FancyArrowPatch) and a.get_linestyle() != "-"]
    green = [
        a for a in right.patches if isinstance(a, FancyArrowPatch) and a.get_linestyle() != "-"
    ]
    assert len(red) == 2 and len(green) == 3
    assert save_figure(fig, "reparam", tmp_path).exists()
    plt.close(fig)


def test_elbo_decomposition_bars_add_up_to_log_evidence(tmp_path):
    entries = [("prior", -4.8, -1.6), ("N(0, 0.5^2)", -2.4, -1.6), ("posterior", -1.6, -1.6)]
    fig = diagrams.elbo_decomposition(entries)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 2 * len(entries)
    for i, (_, _, log_px) in enumerate(entries):
        lower, upper = bars[2 * i], bars[2 * i + 1]  # drawn in pairs, bottom first
        assert lower.get_y() + lower.get_height() == pytest.approx(upper.get_y())
        assert upper.get_y() + upper.get_height() == pytest.approx(log_px)
    assert "log p(x)" in _texts(fig)
    assert save_figure(fig, "bars", tmp_path).exists()
    plt.close(fig)


def test_elbo_decomposition_refuses_an_elbo_above_log_evidence():
    with pytest.raises(ValueError, match="not a lower bound"):
        diagrams.elbo_decomposition([("wrong sign", -1.0, -2.0)])
    with pytest.raises(ValueError, match="at least one"):
        diagrams.elbo_decomposition([])
