"""Tests for vae_edu.loss: reductions as weights, the reduced loss, the balance at the optimum.

Independent routes: the reduced loss against explicit float64 numpy sums; the balance at
the ELBO against the exact log-evidence of vae_edu.conjugate.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_edu.loss import REDUCTIONS, LossBalance, loss_balance, loss_weights, reduced_loss

ALL_REDUCTIONS = list(itertools.product(REDUCTIONS, repeat=3))


# --------------------------------------------------------------------- loss_weights


def test_mean_over_pixels_is_beta_784():
    w = loss_weights(1.0, 1.0, num_pixels=784, latent_dim=20, pixel_reduction="mean")
    assert w.effective_beta == pytest.approx(784.0)
    w = loss_weights(
        1.0, 1.0, num_pixels=784, latent_dim=20, pixel_reduction="mean", latent_reduction="mean"
    )
    assert w.effective_beta == pytest.approx(784.0 / 20.0)
    w = loss_weights(1.0, 1.0, num_pixels=784, latent_dim=20, latent_reduction="mean")
    assert w.effective_beta == pytest.approx(1.0 / 20.0)


def test_batch_reduction_scales_both_terms_and_keeps_beta():
    by_mean = loss_weights(2.0, 3.0, num_pixels=784, latent_dim=20, batch_size=64)
    by_sum = loss_weights(
        2.0, 3.0, num_pixels=784, latent_dim=20, batch_size=64, batch_reduction="sum"
    )
    assert by_mean.effective_beta == pytest.approx(by_sum.effective_beta) == pytest.approx(1.5)
    assert by_sum.reconstruction_weight == pytest.approx(64 * by_mean.reconstruction_weight)
    assert by_sum.kl_weight == pytest.approx(64 * by_mean.kl_weight)


@pytest.mark.parametrize(
    "bad, error",
    [
        (dict(alpha=0.0), ValueError),
        (dict(beta=-1.0), ValueError),
        (dict(alpha=math.inf), ValueError),
        (dict(num_pixels=0), ValueError),
        (dict(latent_dim=2.5), TypeError),  # a size must be an integer (vae_edu._checks.count)
        (dict(pixel_reduction="average"), ValueError),
        (dict(batch_reduction=None), ValueError),
    ],
)
def test_loss_weights_rejects_bad_arguments(bad, error):
    kwargs = dict(alpha=1.0, beta=1.0, num_pixels=784, latent_dim=20)
    kwargs.update(bad)
    alpha, beta = kwargs.pop("alpha"), kwargs.pop("beta")
    with pytest.raises(error, match=next(iter(bad))):
        loss_weights(alpha, beta, **kwargs)


# --------------------------------------------------------------------- reduced_loss


@pytest.mark.parametrize("reductions", ALL_REDUCTIONS)
def test_reduced_loss_is_the_weighted_sum(reductions):
    """Any reduction = w_R * (-sum log p) + w_K * sum KL, with the weights of loss_weights."""
    pixel, latent, batch = reductions
    rng = np.random.default_rng(0)
    log_lik = -rng.exponential(size=(6, 10))
    kl = rng.exponential(size=(6, 3))
    got = reduced_loss(
        log_lik,
        kl,
        alpha=0.7,
        beta=2.5,
        pixel_reduction=pixel,
        latent_reduction=latent,
        batch_reduction=batch,
    )
    w = loss_weights(
        0.7,
        2.5,
        num_pixels=10,
        latent_dim=3,
        batch_size=6,
        pixel_reduction=pixel,
        latent_reduction=latent,
        batch_reduction=batch,
    )
    expected_recon = -w.reconstruction_weight * log_lik.sum()
    expected_kl = w.kl_weight * kl.sum()
    np.testing.assert_allclose(float(got.reconstruction_term), expected_recon, rtol=1e-5)
    np.testing.assert_allclose(float(got.kl_term), expected_kl, rtol=1e-5)
    np.testing.assert_allclose(float(got.loss), expected_recon + expected_kl, rtol=1e-5)


def test_reduced_loss_default_is_minus_batch_mean_elbo():
    rng = np.random.default_rng(1)
    log_lik, kl = -rng.exponential(size=(4, 7)), rng.exponential(size=(4, 2))
    elbo_per_example = log_lik.sum(axis=1) - kl.sum(axis=1)
    np.testing.assert_allclose(
        float(reduced_loss(log_lik, kl).loss), -elbo_per_example.mean(), rtol=1e-5
    )


def test_reduced_loss_under_jit_vmap_grad():
    rng = np.random.default_rng(2)
    log_lik = jnp.asarray(-rng.exponential(size=(3, 4, 5)), jnp.float32)
    kl = jnp.asarray(rng.exponential(size=(3, 4, 2)), jnp.float32)
    jitted = jax.jit(
        reduced_loss, static_argnames=("pixel_reduction", "latent_reduction", "batch_reduction")
    )
    plain = reduced_loss(log_lik[0], kl[0], pixel_reduction="mean")
    np.testing.assert_allclose(
        jitted(log_lik[0], kl[0], pixel_reduction="mean").loss, plain.loss, rtol=1e-6
    )
    batched = jax.vmap(lambda a, b: reduced_loss(a, b).loss)(log_lik, kl)
    assert batched.shape == (3,)
    np.testing.assert_allclose(batched[1], reduced_loss(log_lik[1], kl[1]).loss, rtol=1e-6)
    # d loss / d alpha is minus the reduced log-likelihood; d loss / d beta the reduced KL.
    d_alpha, d_beta = jax.grad(
        lambda a, b: reduced_loss(log_lik[0], kl[0], alpha=a, beta=b).loss, argnums=(0, 1)
    )(1.0, 1.0)
    np.testing.assert_allclose(d_alpha, -np.mean(np.sum(log_lik[0], -1)), rtol=1e-5)
    np.testing.assert_allclose(d_beta, np.mean(np.sum(kl[0], -1)), rtol=1e-5)


def test_reduced_loss_rejects_bad_shapes_and_reductions():
    with pytest.raises(ValueError, match=r"\(4, 7\).*\(3, 2\)"):
        reduced_loss(np.zeros((4, 7)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="kl_per_dim"):
        reduced_loss(np.zeros((4, 7)), np.zeros(4))
    with pytest.raises(ValueError, match="latent_reduction"):
        reduced_loss(np.zeros((4, 7)), np.zeros((4, 2)), latent_reduction="max")


# --------------------------------------------------------------------- loss_balance


def test_balance_at_the_elbo_is_minus_log_evidence(mnist_ppca):
    """alpha = beta = 1, sums: the optimal q is the posterior, so the loss is -mean log p(x)."""
    model, images = mnist_ppca
    balance = loss_balance(model, images)
    assert isinstance(balance, LossBalance)
    assert balance.effective_beta == pytest.approx(1.0)
    log_evidence = np.asarray(model.log_evidence(images), np.float64)
    np.testing.assert_allclose(balance.loss, -log_evidence.mean(), rtol=2e-4)
    np.testing.assert_allclose(balance.reconstruction_term, -balance.reconstruction, rtol=1e-6)
    np.testing.assert_allclose(balance.kl_term, balance.kl, rtol=1e-6)


def test_mean_over_pixels_equals_beta_784_and_collapses(mnist_ppca):
    model, images = mnist_ppca
    by_mean = loss_balance(model, images, pixel_reduction="mean")
    by_beta = loss_balance(model, images, beta=784.0)
    assert by_mean.effective_beta == pytest.approx(by_beta.effective_beta) == pytest.approx(784.0)
    np.testing.assert_allclose(by_mean.reconstructions, by_beta.reconstructions, atol=1e-5)
    assert by_mean.kl == pytest.approx(by_beta.kl, rel=1e-5)
    np.testing.assert_allclose(
        by_mean.reconstruction_term, by_beta.reconstruction_term / 784, rtol=1e-5
    )
    # Heavier KL weight: less KL, fewer active dimensions, reconstructions nearer the mean image.
    plain = loss_balance(model, images)
    assert by_mean.kl < 0.1 * plain.kl and by_mean.active_dims < plain.active_dims
    mean_image = np.asarray(model.bias)
    assert (
        np.abs(by_mean.reconstructions - mean_image).mean()
        < 0.5 * np.abs(plain.reconstructions - mean_image).mean()
    )


def test_balance_kl_decreases_with_effective_beta(mnist_ppca):
    model, images = mnist_ppca
    kls = [loss_balance(model, images, beta=b).kl for b in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert all(a > b for a, b in itertools.pairwise(kls))


# ---------------------------------------------------------------- negative_elbo (notebook 05)


def test_negative_elbo_hand_value_and_vae_loss():
    """Zero logits and q = p: D log 2 per image; on a real VAE it is VAE.loss for the same key."""
    from vae_edu.elbo import reparameterize
    from vae_edu.loss import negative_elbo
    from vae_edu.models import VAEConfig
    from vae_edu.train import init_model

    x = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    hand = negative_elbo(x, jnp.zeros((2, 3)), jnp.zeros((2, 2)), jnp.zeros((2, 2)))
    assert abs(float(hand) - 3 * math.log(2)) < 1e-6
    # KL(N(2, 1) || N(0, 1)) = 2 per example adds 2 to the batch mean.
    shifted = negative_elbo(x, jnp.zeros((2, 3)), jnp.full((2, 1), 2.0), jnp.zeros((2, 1)))
    assert abs(float(shifted) - (3 * math.log(2) + 2.0)) < 1e-6

    vae = init_model(VAEConfig(hidden_sizes=(32,), latent_dim=4), seed=0)
    images = (jax.random.uniform(jax.random.key(1), (8, 784)) < 0.3).astype(jnp.float32)
    key = jax.random.key(2)
    mean, log_var = vae.encode(images)
    logits = vae.decode(reparameterize(key, mean, log_var))
    loss, _ = vae.loss(key, images)
    assert abs(float(negative_elbo(images, logits, mean, log_var)) - float(loss)) < 1e-3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 1)), np.zeros((2, 1))), "x and logits"),
        ((np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 1)), np.zeros((3, 1))), "batch of x"),
        ((np.zeros(3), np.zeros(3), np.zeros(1), np.zeros(1)), "x and logits"),
    ],
)
def test_negative_elbo_names_bad_shapes(args, message):
    from vae_edu.loss import negative_elbo

    with pytest.raises(ValueError, match=message):
        negative_elbo(*args)
