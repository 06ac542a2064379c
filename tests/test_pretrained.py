"""Tests for the shipped pretrained models (vae_edu/pretrained/*.msgpack).

Each file is loaded, its architecture checked against the one documented in the package
README, and its quick test ELBO (first 500 test images, PRNGKey(0), stored at save time
from the stored parameters) recomputed.
"""

from __future__ import annotations

import pytest

from vae_edu import evaluate, pretrained
from vae_edu.models import VAEConfig

EXPECTED = {
    "main": (VAEConfig(hidden_sizes=(512, 256), latent_dim=32), 1.0),
    "latent2": (VAEConfig(hidden_sizes=(512, 256), latent_dim=2), 1.0),
    "autoencoder2": (VAEConfig(hidden_sizes=(512, 256), latent_dim=2), 0.0),
    "beta_0": (VAEConfig(hidden_sizes=(256,), latent_dim=20), 0.0),
    "beta_0.5": (VAEConfig(hidden_sizes=(256,), latent_dim=20), 0.5),
    "beta_1": (VAEConfig(hidden_sizes=(256,), latent_dim=20), 1.0),
    "beta_2": (VAEConfig(hidden_sizes=(256,), latent_dim=20), 2.0),
    "beta_4": (VAEConfig(hidden_sizes=(256,), latent_dim=20), 4.0),
}


def test_every_documented_model_ships_and_fits_the_size_budget():
    assert pretrained.available() == tuple(EXPECTED) == tuple(pretrained.MODELS)
    total = sum(pretrained.path(name).stat().st_size for name in EXPECTED)
    assert total < 15e6
    readme = (pretrained.path("main").parent / "README.md").read_text()
    for name in EXPECTED:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", list(EXPECTED))
def test_model_loads_with_its_config_and_reproduces_its_quick_elbo(name):
    model, meta = pretrained.load(name)
    config, beta = EXPECTED[name]
    assert meta["config"] == config == model.config
    assert meta["training"]["train_config"]["beta"] == beta
    summary = meta["summary"]
    assert summary["command"].startswith("python -m vae_edu train")
    # Same parameters, same images, same key: only the order of float32 additions inside
    # XLA's kernels can differ between machines (relative error ~1e-6 on ~100 nats), so a
    # tolerance of 1e-3 nats is tight yet machine-independent.
    assert evaluate.quick_test_elbo(model) == pytest.approx(summary["quick_test_elbo"], abs=1e-3)
    if "nll" in summary:  # the IWAE bound is tighter than the ELBO
        assert summary["nll"] < -summary["test_elbo"]


def test_main_model_summary():
    _, meta = pretrained.load("main")
    summary = meta["summary"]
    assert summary["iwae_k"] == 5000 and summary["test_images"] == 10000
    assert summary["epochs"] == meta["training"]["train_config"]["num_epochs"]
    assert len(meta["training"]["history"]["test_elbo"]) == summary["epochs"]


def test_unknown_name():
    with pytest.raises(ValueError, match="known: main"):
        pretrained.load("best")
