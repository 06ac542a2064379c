"""Tests for vae_edu.models: the config, the networks' shapes, the loss and its gradient.

Independent references: scipy.stats for the Bernoulli and Gaussian log-likelihoods, the
hand-computable loss of a zero-weight model (UvA-style: KL = 0 and log p(x|z) = -D log 2),
central finite differences in float64 for the gradient.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from jax.flatten_util import ravel_pytree

from vae_edu.elbo import ELBOTerms, bernoulli_log_likelihood
from vae_edu.models import VAE, VAEConfig, count_parameters
from vae_edu.train import init_model

TINY = VAEConfig(input_dim=6, hidden_sizes=(5,), latent_dim=2)
N = 8  # one batch size everywhere: every new shape costs JAX a compilation


def make(config=TINY, seed=0):
    return init_model(config, seed)  # one compiled call (eager init compiles every op)


def zero_weights(model):
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(jnp.zeros_like, state))
    return model


def binary_images(n=N, d=6, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.3).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _loss(graphdef, params, key, x, alpha, beta):
    return nnx.merge(graphdef, params).loss(key, x, alpha=alpha, beta=beta)


def loss_of(model, key, x, *, alpha=1.0, beta=1.0):
    """model.loss, compiled once per architecture (eager NNX compiles every op)."""
    graphdef, params = nnx.split(model, nnx.Param)
    return _loss(graphdef, params, key, x, alpha, beta)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _call(graphdef, method, params, *args):
    return getattr(nnx.merge(graphdef, params), method)(*args)


def call(model, method, *args):
    graphdef, params = nnx.split(model, nnx.Param)
    return _call(graphdef, method, params, *args)


# ----------------------------------------------------------------------------- config
def test_config_json_round_trip_and_hashable():
    config = VAEConfig(hidden_sizes=(512, 256), latent_dim=32, activation="tanh")
    text = config.to_json()
    assert json.loads(text)["hidden_sizes"] == [512, 256]
    back = VAEConfig.from_json(text)
    assert back == config and hash(back) == hash(config)
    assert config.decoder_sizes == (256, 512)
    assert config.describe().startswith("784-512-256-32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"hidden_sizes": (400, 0)}, "hidden_sizes"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


def test_config_from_dict_names_unknown_fields():
    with pytest.raises(ValueError, match="latent_size"):
        VAEConfig.from_dict({"latent_size": 3})


# ----------------------------------------------------------------------------- shapes
def abstract(config):
    """The model with shapes only (nnx.eval_shape: nothing is allocated or compiled)."""
    return nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))


def test_layer_shapes_and_parameter_count():
    model = abstract(VAEConfig(hidden_sizes=(400,), latent_dim=20))
    assert model.encoder.hidden_0.kernel.shape == (784, 400)
    assert model.encoder.output.kernel.shape == (400, 40)
    assert model.decoder.hidden_0.kernel.shape == (20, 400)
    assert model.decoder.output.kernel.shape == (400, 784)
    expected = (784 * 400 + 400) + (400 * 40 + 40) + (20 * 400 + 400) + (400 * 784 + 784)
    assert count_parameters(model) == expected


def test_encode_decode_shapes_with_leading_axes():
    model = abstract(TINY)
    x = jax.ShapeDtypeStruct((3, 4, 6), jnp.float32)
    mean, log_var = nnx.eval_shape(lambda m, x: m.encode(x), model, x)
    assert mean.shape == log_var.shape == (3, 4, 2)
    assert nnx.eval_shape(lambda m, z: m.decode(z), model, mean).shape == (3, 4, 6)
    assert nnx.eval_shape(lambda m, x: m.kl_per_dimension(x), model, x).shape == (3, 4, 2)


def test_wrong_shapes_name_both_shapes():
    model = make()
    with pytest.raises(ValueError, match=r"\(3, 7\).*\(\.\.\., 6\)"):
        model.encode(jnp.zeros((3, 7)))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(\.\.\., 2\)"):
        model.decode(jnp.zeros((3, 5)))


def test_mirrored_and_explicit_decoder():
    model = abstract(
        VAEConfig(input_dim=6, hidden_sizes=(5, 4), latent_dim=2, decoder_hidden_sizes=(7,))
    )
    assert model.decoder.hidden_0.kernel.shape == (2, 7)
    assert model.decoder.output.kernel.shape == (7, 6)
    assert abstract(
        VAEConfig(input_dim=6, hidden_sizes=(5, 4), latent_dim=2)
    ).decoder.hidden_0.kernel.shape == (2, 4)


# ----------------------------------------------------------------------------- likelihoods
def test_bernoulli_log_likelihood_matches_scipy():
    model = make()
    rng = np.random.default_rng(1)
    x = binary_images(seed=1)
    logits = rng.normal(scale=3.0, size=(N, 6))
    expected = scipy.stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits))).sum(-1)
    np.testing.assert_allclose(model.log_likelihood(x, logits), expected, rtol=1e-5)


def test_gaussian_log_likelihood_matches_scipy():
    config = VAEConfig(
        input_dim=6,
        hidden_sizes=(5,),
        latent_dim=2,
        likelihood="gaussian",
        gaussian_log_var=np.log(0.1**2),
    )
    model = make(config)
    rng = np.random.default_rng(2)
    x = rng.random((N, 6))
    logits = rng.normal(size=(N, 6))
    mean = 1 / (1 + np.exp(-logits))
    expected = scipy.stats.norm.logpdf(x, mean, 0.1).sum(-1)
    np.testing.assert_allclose(model.log_likelihood(x, logits), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- the loss
def test_zero_weight_model_loss_is_computable_by_hand():
    # All weights zero: mean = log_var = 0 so q = N(0, I) = p and KL = 0; logits = 0 so
    # every pixel has p = 1/2 and log p(x|z) = -D log 2 whatever x and z are.
    model = zero_weights(make())
    x = binary_images()
    loss, terms = loss_of(model, jax.random.PRNGKey(0), x, beta=3.0, alpha=2.0)
    assert float(terms.kl) == 0.0
    np.testing.assert_allclose(terms.reconstruction, -6 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(terms.elbo, -6 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(loss, 2.0 * 6 * np.log(2), rtol=1e-6)


def test_output_bias_at_pixel_mean_predicts_the_mean_image():
    model = zero_weights(make())
    pixel_mean = np.array([0.0, 0.1, 0.5, 0.9, 1.0, 0.25], np.float32)
    model.set_output_bias(pixel_mean)
    np.testing.assert_allclose(
        call(model, "mean_image", jnp.zeros((1, 2)))[0],
        np.clip(pixel_mean, 1e-3, 1 - 1e-3),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match=r"\(3,\)"):
        model.set_output_bias(np.zeros(3))


def test_loss_weights_alpha_and_beta():
    model = make()
    x = binary_images()
    key = jax.random.PRNGKey(3)
    _, terms = loss_of(model, key, x)
    for alpha, beta in [(1.0, 0.0), (0.5, 4.0)]:
        loss, _ = loss_of(model, key, x, alpha=alpha, beta=beta)
        np.testing.assert_allclose(loss, -alpha * terms.reconstruction + beta * terms.kl, rtol=1e-6)
    np.testing.assert_allclose(terms.elbo, terms.reconstruction - terms.kl, rtol=1e-6)


def test_kl_per_dimension_matches_closed_form_in_numpy():
    model = make()
    x = binary_images()
    mean, log_var = (np.asarray(a, np.float64) for a in call(model, "encode", x))
    expected = 0.5 * (mean**2 + np.exp(log_var) - 1 - log_var)
    np.testing.assert_allclose(call(model, "kl_per_dimension", x), expected, rtol=1e-5, atol=1e-7)
    _, terms = loss_of(model, jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(terms.kl, expected.sum(-1).mean(), rtol=1e-5)


def test_loss_jit_vmap_grad():
    model = make()
    graphdef, params = nnx.split(model, nnx.Param)
    x = binary_images()

    def loss_fn(p, key):
        return nnx.merge(graphdef, p).loss(key, x)[0]

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    # One compiled function: value and gradient, vectorised over three noise keys.
    losses, grads = jax.jit(jax.vmap(jax.value_and_grad(loss_fn), in_axes=(None, 0)))(params, keys)
    for i in range(3):
        np.testing.assert_allclose(losses[i], loss_of(model, keys[i], x)[0], rtol=1e-5)
    assert not np.allclose(losses[0], losses[1])  # different noise, different loss
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads))


def test_gradient_matches_central_finite_differences_in_float64():
    # With the noise key fixed the loss is a smooth deterministic function of the
    # parameters; its directional derivative along random directions v must equal
    # (L(theta + h v) - L(theta - h v)) / 2h up to O(h^2) (h = 1e-5 in float64: ~1e-9).
    config = VAEConfig(input_dim=6, hidden_sizes=(5,), latent_dim=2, activation="tanh")
    graphdef, params = nnx.split(make(config, seed=4), nnx.Param)
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree.map(lambda a: np.asarray(a, np.float64), params))
        x = np.asarray(binary_images(seed=4), np.float64)
        key = jax.random.PRNGKey(5)

        @jax.jit
        def loss_fn(theta):
            return nnx.merge(graphdef, unravel(theta)).loss(key, x, beta=1.3, alpha=0.7)[0]

        theta = np.asarray(flat)
        assert loss_fn(theta).dtype == jnp.float64
        grad = np.asarray(jax.jit(jax.grad(loss_fn))(theta))
        rng = np.random.default_rng(6)
        h = 1e-5
        for v in rng.normal(size=(3, theta.size)):
            numeric = (float(loss_fn(theta + h * v)) - float(loss_fn(theta - h * v))) / (2 * h)
            np.testing.assert_allclose(grad @ v, numeric, rtol=1e-6, atol=1e-8)


def test_exploding_weights_stay_finite():
    # Weights x 50 push the encoder's log-variances far beyond [-30, 30]; they are
    # clipped there, so the KL, the loss and the gradient stay finite.
    model = make()
    graphdef, params = nnx.split(model, nnx.Param)
    params = jax.tree.map(lambda a: a * 50.0, params)
    x = binary_images()
    raw = nnx.merge(graphdef, params).encoder(jnp.asarray(x))[:, 2:]
    assert float(jnp.max(jnp.abs(raw))) > 30.0  # the guard is actually exercised

    def loss_fn(p):
        return nnx.merge(graphdef, p).loss(jax.random.PRNGKey(0), x)[0]

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_loss_returns_the_batch_means_of_the_per_example_elbo_terms():
    # One type, one field order: VAE.loss's terms are ELBOTerms(elbo, reconstruction, kl),
    # the batch means of VAE.elbo_terms (the same key, so the same sample z).
    model, x, key = make(), binary_images(), jax.random.PRNGKey(4)
    _, terms = loss_of(model, key, x)
    per_example = call(model, "elbo_terms", key, x)
    assert type(terms) is ELBOTerms and type(per_example) is ELBOTerms
    assert terms._fields == ("elbo", "reconstruction", "kl")
    for name in terms._fields:
        np.testing.assert_allclose(
            getattr(terms, name), np.mean(getattr(per_example, name)), rtol=1e-6
        )


def test_training_loss_likelihood_equals_the_library_bernoulli_form():
    """VAE.loss's one-softplus form x l - softplus(l) equals elbo.bernoulli_log_likelihood
    (x log sigmoid(l) + (1 - x) log sigmoid(-l)) on binary and grey pixels, values and
    gradients, for logits up to +-80."""
    model = VAE(VAEConfig(input_dim=6, hidden_sizes=(4,), latent_dim=2), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.uniform(-80.0, 80.0, size=(5, 6)), jnp.float32)
    for x in (rng.integers(0, 2, size=(5, 6)), rng.uniform(0.0, 1.0, size=(5, 6))):
        x = jnp.asarray(x, jnp.float32)
        fast = model._loss_log_likelihood(x, logits)
        reference = bernoulli_log_likelihood(x, logits)
        np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-4)
        grad_fast = jax.grad(lambda lg, x=x: model._loss_log_likelihood(x, lg).sum())(logits)
        grad_ref = jax.grad(lambda lg, x=x: bernoulli_log_likelihood(x, lg).sum())(logits)
        np.testing.assert_allclose(grad_fast, grad_ref, rtol=1e-5, atol=1e-6)
