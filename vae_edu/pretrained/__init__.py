"""Pretrained VAEs shipped with the package (produced by ``python -m vae_edu train``).

Example::

    from vae_edu import pretrained
    pretrained.available()                  # ('main', 'latent2', 'autoencoder2', 'beta_0', ...)
    model, meta = pretrained.load("main")
    meta["summary"]["nll"]                  # IWAE (k = 5000) test NLL in nats
    mean, log_var = model.encode(x)         # x: (batch, 784) in [0, 1]
    images = model.mean_image(mean)

See ``README.md`` in this folder for each model's architecture, numbers and the exact
command that produced it. Files are msgpack checkpoints (``vae_edu.checkpoints``), so
loading one cannot run code.
"""

from __future__ import annotations

from pathlib import Path

from vae_edu import checkpoints
from vae_edu.models import VAE

__all__ = ["MODELS", "available", "path", "load"]

_DIRECTORY = Path(__file__).resolve().parent

#: name -> one-line description (the order is the order of the lessons).
MODELS = {
    "main": "784-512-256-32 VAE, the best model (ELBO, IWAE NLL, samples)",
    "latent2": "784-512-256-2 VAE: the 2-D latent manifold and sliders",
    "autoencoder2": "the same 2-D architecture trained with beta = 0 (a plain autoencoder)",
    "beta_0": "784-256-20, beta = 0",
    "beta_0.5": "784-256-20, beta = 0.5",
    "beta_1": "784-256-20, beta = 1 (the VAE of the sweep)",
    "beta_2": "784-256-20, beta = 2",
    "beta_4": "784-256-20, beta = 4",
}


def path(name: str) -> Path:
    """The file of model ``name`` (raises ValueError for an unknown name)."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; known: {', '.join(MODELS)}")
    return _DIRECTORY / f"{name}.msgpack"


def available() -> tuple[str, ...]:
    """Names of the shipped models whose files are present, in lesson order."""
    return tuple(name for name in MODELS if path(name).is_file())


def load(name: str) -> tuple[VAE, dict]:
    """Loads a shipped model.

    Args:
      name: one of :data:`MODELS`.

    Returns:
      ``(model, metadata)``: the :class:`~vae_edu.models.VAE` and a dict with ``config``,
      ``summary`` (test ELBO, NLL estimate, quick_test_elbo, command...), ``training``
      (epochs, seed, train_config, per-epoch history) and ``library_versions``, ``dtype``.

    Raises:
      ValueError: unknown name.
      FileNotFoundError: the file is not there (see README.md for the command).
      vae_edu.checkpoints.CheckpointError: the file is corrupt.
    """
    file = path(name)
    if not file.is_file():
        raise FileNotFoundError(
            f"pretrained model {name!r} is missing ({file}); "
            f"see {_DIRECTORY / 'README.md'} for the command that makes it"
        )
    ckpt = checkpoints.load(file)
    metadata = {
        "name": name,
        "config": ckpt.config,
        "summary": ckpt.summary,
        "training": ckpt.training,
        **ckpt.metadata,
    }
    return ckpt.model, metadata
