"""Tests for vae_edu.models.LatentModel: the jitted encode/decode view of a VAE.

Checked against the VAE's own ``mean_image`` and ``encode`` (not through the jitted calls).
"""

import numpy as np
import pytest

from vae_edu.models import LatentModel, as_latent_model


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_latent_model_decode_equals_model_mean_image(vae_5d, batch):
    z = np.random.default_rng(1).normal(size=batch + (5,)).astype(np.float32)
    got = LatentModel(vae_5d).decode(z)
    want = np.asarray(vae_5d.mean_image(z)).reshape(batch + (28, 28))
    assert got.shape == batch + (28, 28)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_latent_model_encode_equals_model_encoder_mean(vae_5d, test_set):
    images, _ = test_set
    model = LatentModel(vae_5d)
    want = np.asarray(vae_5d.encode(images[:4].reshape(4, 784).astype(np.float32) / 255.0)[0])
    np.testing.assert_allclose(model.encode(images[:4]), want, rtol=1e-6, atol=1e-6)
    floats = images[:4].astype(np.float32) / 255.0
    np.testing.assert_allclose(model.encode(floats.reshape(4, 784)), want, rtol=1e-6, atol=1e-6)
    assert model.encode(images[0]).shape == (5,)


def test_latent_model_rejects_wrong_shapes_and_types(vae_5d):
    model = LatentModel(vae_5d)
    with pytest.raises(ValueError, match=r"z has shape \(3,\).*\(\.\.\., 5\)"):
        model.decode(np.zeros(3))
    with pytest.raises(ValueError, match=r"images have shape \(2, 27, 27\)"):
        model.encode(np.zeros((2, 27, 27)))
    with pytest.raises(TypeError, match="VAE"):
        LatentModel("not a model")


def test_as_latent_model_wraps_a_vae_once(vae_5d):
    model = as_latent_model(vae_5d)
    assert isinstance(model, LatentModel)
    assert as_latent_model(model) is model
