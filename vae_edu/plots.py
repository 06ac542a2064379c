"""Plot helpers shared by the notebooks and the CLI.

Static figures produced by a notebook are also written to the repository's ``figures/``
folder by the same code, so the README and GitHub readers see exactly what the notebook
shows.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["figures_dir", "save_figure"]


def figures_dir() -> Path:
    """Where figures go: ``$VAE_EDU_FIGURES`` if set, else ``figures/`` at the repository root."""
    env = os.environ.get("VAE_EDU_FIGURES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "figures"


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
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path
