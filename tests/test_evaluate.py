"""Tests for vae_edu.evaluate against an independent route: numerical quadrature.

With a 2-D latent space, log p(x) = log \\int p(x|z) N(z; 0, I) dz is computed on a fine
grid in float64 NumPy (no vae_edu code except the decoder's logits). Then

* the importance-weighted bound L_k with k = 2000 matches it within Monte Carlo error,
* the ELBO lies below it, and E[L_1] = ELBO (Monte Carlo KL versus the closed form).

Repeating an image R times gives R independent draws in one call (image i's randomness is
keyed by its index), which is how the standard errors below are obtained.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_edu import elbo, estimate, evaluate
from vae_edu.elbo import ELBOTerms
from vae_edu.models import VAEConfig
from vae_edu.train import init_model

CONFIG = VAEConfig(input_dim=6, hidden_sizes=(5,), latent_dim=2, activation="tanh")
X = (np.random.default_rng(0).random((4, 6)) < 0.4).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    """A random tiny model whose decoder weights are scaled up, so that the posterior
    p(z|x) is visibly narrower than the prior and differs from q(z|x)."""
    m = init_model(CONFIG, 3)
    graphdef, state = nnx.split(m, nnx.Param)
    params = nnx.to_pure_dict(state)
    for layer in ("hidden_0", "output"):
        params["decoder"][layer]["kernel"] = params["decoder"][layer]["kernel"] * 2.5
    return nnx.merge(graphdef, params)


@pytest.fixture(scope="module")
def log_evidence(model):
    """log p(x) by quadrature on an 801 x 801 grid over [-8, 8]^2 (float64)."""
    grid = np.linspace(-8.0, 8.0, 801)
    dz = grid[1] - grid[0]
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    logits = np.asarray(model.decode(jnp.asarray(z, jnp.float32)), np.float64)
    log_prior = -0.5 * np.sum(z**2, -1) - np.log(2 * np.pi)
    out = []
    for x in X:
        log_lik = np.sum(-x * np.logaddexp(0, -logits) - (1 - x) * np.logaddexp(0, logits), -1)
        a = log_lik + log_prior + 2 * np.log(dz)
        out.append(a.max() + np.log(np.sum(np.exp(a - a.max()))))
    return np.array(out)


def draws(values, repeats):
    """(N * repeats,) per-copy values -> per-image (mean, standard error)."""
    v = np.asarray(values).reshape(len(X), repeats)
    return v.mean(1), v.std(1, ddof=1) / np.sqrt(repeats)


def test_iwae_bound_matches_quadrature(model, log_evidence):
    repeats = 8
    values = evaluate.per_image_iwae(
        model,
        np.repeat(X, repeats, axis=0),
        jax.random.PRNGKey(1),
        num_samples=2000,
        binarize=False,
    )
    mean, se = draws(values, repeats)
    # L_k is biased low by O(1/k): about Var(w) / (2 k p(x)^2), below 0.01 nats here for
    # k = 2000 (the k = 100 -> 2000 gain is ~0.1 nats); the rest is Monte Carlo noise.
    np.testing.assert_array_less(np.abs(mean - log_evidence), 5 * se + 0.01)
    small_k = draws(
        evaluate.per_image_iwae(
            model,
            np.repeat(X, repeats, axis=0),
            jax.random.PRNGKey(2),
            num_samples=2,
            binarize=False,
        ),
        repeats,
    )[0]
    assert np.all(small_k < mean)  # the bound tightens with k


def test_elbo_is_below_log_evidence_and_equals_expected_l1(model, log_evidence):
    repeats = 400
    copies = np.repeat(X, repeats, axis=0)
    elbo, elbo_se = draws(
        evaluate.per_image_elbo(model, copies, jax.random.PRNGKey(3), binarize=False)[0], repeats
    )
    assert np.all(elbo + 5 * elbo_se < log_evidence)
    # L_1 = log p(x|z) + log p(z) - log q(z|x): its expectation is the ELBO, with the KL
    # estimated by Monte Carlo instead of the closed form used by per_image_elbo.
    l1, l1_se = draws(
        evaluate.per_image_iwae(
            model, copies, jax.random.PRNGKey(4), num_samples=1, binarize=False
        ),
        repeats,
    )
    np.testing.assert_array_less(np.abs(l1 - elbo), 5 * np.hypot(l1_se, elbo_se))


def test_results_do_not_depend_on_image_chunking(model):
    # Shapes shared with test_iwae_bound_matches_quadrature (k = 2, 32 images, chunks of 8
    # images), so only the 3-image chunking needs compiling.
    copies = np.repeat(X, 8, axis=0)
    key = jax.random.PRNGKey(5)
    a = evaluate.per_image_iwae(model, copies, key, num_samples=2, image_chunk=8, binarize=False)
    b = evaluate.per_image_iwae(model, copies, key, num_samples=2, image_chunk=3, binarize=False)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert len(np.unique(a)) == len(a)  # every copy got its own samples
    # A sample chunk larger than k is cut to k.
    c = evaluate.per_image_iwae(
        model, copies, key, num_samples=2, sample_chunk=3, image_chunk=8, binarize=False
    )
    np.testing.assert_array_equal(a, c)


def test_estimate_averages_images_and_binarization_draws(model):
    probabilities = np.random.default_rng(6).random((10, 6)).astype(np.float32)
    key = jax.random.PRNGKey(7)
    per_image = evaluate.per_image_elbo(model, probabilities, key, num_binarizations=3)[0]
    singles = [evaluate.per_image_elbo(model, probabilities, key, num_binarizations=1)[0]]
    assert not np.allclose(per_image, singles[0])  # three draws are not one draw
    estimate = evaluate.test_elbo(model, probabilities, key, num_binarizations=3)
    assert estimate.mean == pytest.approx(per_image.mean())
    assert estimate.std_error == pytest.approx(per_image.std(ddof=1) / np.sqrt(10))


def test_active_units_and_kl_per_dimension(model):
    # Zero the encoder's weights into the mean of z_2: its posterior mean is the same for
    # every x, so its activity Var_x(E_q[z_2]) is exactly 0; z_1 keeps scaled-up weights.
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    kernel = np.array(params["encoder"]["output"]["kernel"])
    kernel[:, 0] *= 20.0
    kernel[:, 1] = 0.0
    params["encoder"]["output"]["kernel"] = jnp.asarray(kernel)
    edited = nnx.merge(graphdef, params)
    images = np.random.default_rng(8).random((200, 6)).astype(np.float32)
    result = evaluate.active_units(edited, images)
    mean, log_var = (np.asarray(a, np.float64) for a in edited.encode(images))
    np.testing.assert_allclose(result.activity, mean.var(axis=0), rtol=1e-4, atol=1e-12)
    assert result.activity[1] < 1e-10 < 0.01 < result.activity[0]
    assert result.count == 1 and result.mask.tolist() == [True, False]
    kl = evaluate.kl_per_dimension(edited, images)
    expected = (0.5 * (mean**2 + np.exp(log_var) - 1 - log_var)).mean(axis=0)
    np.testing.assert_allclose(kl, expected, rtol=1e-5)


def test_iwae_memory_is_bounded(model):
    # XLA's working memory does not grow with k; with the number of images N it grows only
    # by copies of the (binarized, padded) images: at most 3 x 4 D bytes per image, plus a
    # few bytes of per-image output (3 copies is what the 784-pixel model measures).
    # Going from (N, k) = (100, 1000) to (1000, 4000) may add only the per-image part.
    small = evaluate.iwae_memory_bytes(model, 100, num_samples=1000, sample_chunk=100)
    large = evaluate.iwae_memory_bytes(model, 1000, num_samples=4000, sample_chunk=100)
    assert small > 0
    assert (large - small) / 900 <= 3 * 4 * CONFIG.input_dim + 16


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="num_samples"):
        evaluate.per_image_iwae(model, X, jax.random.PRNGKey(0), num_samples=0)
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        evaluate.per_image_elbo(model, X[:, :5], jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="VAE"):
        evaluate.test_elbo("not a model", X)


# ----------------------------------------------------------------- one type per idea
def test_per_image_elbo_returns_elbo_terms_of_per_image_arrays(model):
    terms = evaluate.per_image_elbo(model, X, jax.random.PRNGKey(5), num_binarizations=2)
    assert type(terms) is ELBOTerms
    assert all(np.shape(t) == (X.shape[0],) for t in terms)
    np.testing.assert_allclose(terms.elbo, terms.reconstruction - terms.kl, rtol=1e-6, atol=1e-6)
    # The KL term is the closed form on the encoder's posterior (independent of the key).
    mean, log_var = model.encode(jnp.asarray(X))
    closed_form = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)
    np.testing.assert_allclose(terms.kl, closed_form, rtol=1e-5, atol=1e-6)
    means = evaluate.elbo_terms_mean(model, X, jax.random.PRNGKey(5))
    one_draw = evaluate.per_image_elbo(model, X, jax.random.PRNGKey(5))
    assert type(means) is ELBOTerms
    for name in ELBOTerms._fields:
        assert isinstance(getattr(means, name), float)
        np.testing.assert_allclose(getattr(means, name), np.mean(getattr(one_draw, name)))


def test_evaluate_estimate_is_the_one_estimate_type(model):
    assert evaluate.Estimate is estimate.Estimate
    result = evaluate.test_elbo(model, X, jax.random.PRNGKey(6))
    per_image = evaluate.per_image_elbo(model, X, jax.random.PRNGKey(6)).elbo
    assert type(result) is estimate.Estimate
    np.testing.assert_allclose(result.mean, np.mean(per_image), rtol=1e-12)
    np.testing.assert_allclose(
        result.std_error, np.std(per_image, ddof=1) / np.sqrt(X.shape[0]), rtol=1e-12
    )
    single = evaluate.test_elbo(model, X[:1], jax.random.PRNGKey(6))
    assert np.isfinite(single.mean) and np.isnan(single.std_error)  # no spread from 1 image


@pytest.mark.parametrize(
    "kwargs, error",
    [({"batch_size": 0}, ValueError), ({"batch_size": 2.0}, TypeError)],
)
def test_per_image_elbo_counts_use_the_shared_check(model, kwargs, error):
    with pytest.raises(error, match="batch_size must be an integer >= 1"):
        evaluate.per_image_elbo(model, X, jax.random.PRNGKey(0), **kwargs)


def test_iwae_pads_the_last_sample_chunk_for_a_prime_k(model):
    # k = 997 is prime: it runs 2 chunks of 500 (the last padded), not 997 chunks of 1.
    assert evaluate.iwae_chunks(997, 500) == (500, 2)
    assert evaluate.iwae_chunks(1000, 500) == (500, 2)
    assert evaluate.iwae_chunks(3, 500) == (3, 1)
    images = X[:3]
    key = jax.random.PRNGKey(8)
    chunked = evaluate.per_image_iwae(
        model, images, key, num_samples=997, sample_chunk=500, binarize=False
    )
    # Unchunked, by hand: the same 997 samples (chunk c of image i draws with
    # fold_in(fold_in(fold_in(key, 1), draw 0), i), c), every weight through the public
    # densities of vae_edu.elbo, one logsumexp over all 997 log weights.
    image_keys = jax.random.fold_in(jax.random.fold_in(key, 1), 0)
    mean, log_var = model.encode(jnp.asarray(images))
    for i in range(len(images)):
        eps = jnp.concatenate(
            [
                jax.random.normal(
                    jax.random.fold_in(jax.random.fold_in(image_keys, i), c), (500, 2)
                )
                for c in range(2)
            ]
        )[:997]
        z = mean[i] + jnp.exp(0.5 * log_var[i]) * eps
        log_w = (
            model.log_likelihood(images[i], model.decode(z))
            + elbo.diag_gaussian_log_density(z, 0.0, 0.0)
            - elbo.diag_gaussian_log_density(z, mean[i], log_var[i])
        )
        by_hand = float(jax.nn.logsumexp(log_w) - np.log(997))
        assert chunked[i] == pytest.approx(by_hand, abs=1e-4)


def test_iwae_memory_of_a_prime_k_is_that_of_full_chunks(model):
    prime = evaluate.iwae_memory_bytes(model, 16, num_samples=997, sample_chunk=100)
    round_k = evaluate.iwae_memory_bytes(model, 16, num_samples=1000, sample_chunk=100)
    assert prime == round_k
