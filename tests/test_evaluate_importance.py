"""Tests for the importance weights of notebook 08's live k slider (vae_edu.evaluate):
per_image_log_weights, effective_sample_size and the prefix curves, each against an
independent float64 route.
"""

import jax
import numpy as np
import pytest
from scipy import special, stats
from vae_test_models import random_images, tiny_vae

from vae_edu import data, evaluate


def direct_ess(log_w):
    """(sum w)^2 / sum w^2 straight from the weights, float64 (fine for small log w)."""
    w = np.exp(np.asarray(log_w, np.float64))
    return w.sum(axis=-1) ** 2 / (w**2).sum(axis=-1)


def test_ess_matches_direct_float64_on_small_weights():
    log_w = np.random.default_rng(0).uniform(-3.0, 3.0, size=(5, 40))
    np.testing.assert_allclose(evaluate.effective_sample_size(log_w), direct_ess(log_w), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 7, 5000])
def test_ess_of_equal_weights_is_k(k):
    assert evaluate.effective_sample_size(np.full(k, -90.0)) == pytest.approx(k, rel=1e-9)


def test_ess_of_one_dominant_weight_is_one():
    log_w = np.array([0.0, -800.0, -900.0, -np.inf, -750.0])
    assert evaluate.effective_sample_size(log_w) == pytest.approx(1.0, abs=1e-12)


def test_ess_does_not_underflow_for_tiny_weights():
    # exp(-900) is 0 in float64: the direct formula would give 0/0; log space does not care.
    log_w = np.random.default_rng(1).uniform(-3.0, 3.0, size=30)
    assert evaluate.effective_sample_size(log_w - 900.0) == pytest.approx(
        direct_ess(log_w), rel=1e-10
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 0)), "k >= 1"),
        (np.array([0.0, np.nan]), "NaN"),
        (np.array([0.0, np.inf]), r"\+inf"),
        (np.array([-np.inf, -np.inf]), "every weight"),
    ],
)
def test_ess_rejects_bad_log_weights(bad, match):
    with pytest.raises(ValueError, match=match):
        evaluate.effective_sample_size(bad)


def test_prefix_curves_match_every_prefix_computed_separately():
    log_w = np.random.default_rng(2).normal(-90.0, 4.0, size=(3, 50))
    bounds = evaluate.prefix_iwae_bounds(log_w)
    ess = evaluate.prefix_effective_sample_sizes(log_w)
    assert bounds.shape == ess.shape == (3, 50)
    for k in (1, 2, 17, 50):
        expected = special.logsumexp(log_w[:, :k], axis=1) - np.log(k)
        np.testing.assert_allclose(bounds[:, k - 1], expected, rtol=1e-12)
        np.testing.assert_allclose(
            ess[:, k - 1], direct_ess(log_w[:, :k] - log_w[:, :k].max(axis=1, keepdims=True))
        )
    np.testing.assert_array_equal(bounds[:, 0], log_w[:, 0])  # hat L_1 = log w_1
    np.testing.assert_allclose(ess[:, 0], 1.0)


def test_importance_weights_at_k():
    log_w = np.random.default_rng(3).normal(-90.0, 4.0, size=(4, 30))
    summary = evaluate.importance_weights_at(log_w, 12)
    assert summary.k == 12 and summary.relative_log_w.shape == (4, 12)
    np.testing.assert_allclose(summary.relative_log_w.max(axis=1), 0.0)
    np.testing.assert_allclose(summary.bound, evaluate.prefix_iwae_bounds(log_w)[:, 11])
    np.testing.assert_allclose(summary.ess, evaluate.prefix_effective_sample_sizes(log_w)[:, 11])
    for k in (0, 31):
        with pytest.raises(ValueError, match="k"):
            evaluate.importance_weights_at(log_w, k)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        evaluate.importance_weights_at(log_w[0], 3)


@pytest.mark.parametrize("num_samples", [12, 10])  # 10: the last chunk of 4 is cut to 2
def test_log_weights_match_a_float64_recomputation_from_the_documented_keys(num_samples):
    model = tiny_vae(3, seed=5)
    images = random_images()[:3]
    key = jax.random.PRNGKey(7)
    log_w = evaluate.per_image_log_weights(
        model, images, key, num_samples=num_samples, sample_chunk=4
    )
    assert log_w.shape == (3, num_samples) and log_w.dtype == np.float64

    x = np.asarray(data.binarize(evaluate.binarization_key(key, 0), images.reshape(3, 784) / 255.0))
    sample_key = jax.random.fold_in(jax.random.fold_in(key, 1), 0)
    for n in range(3):
        mean, log_var = (np.asarray(a, np.float64) for a in model.encode(x[n]))
        eps = np.concatenate(
            [
                np.asarray(
                    jax.random.normal(
                        jax.random.fold_in(jax.random.fold_in(sample_key, n), c), (4, 3)
                    ),
                    np.float64,
                )
                for c in range(3)
            ]
        )[:num_samples]
        sd = np.exp(0.5 * log_var)
        z = mean + sd * eps
        logits = np.asarray(model.decode(z.astype(np.float32)), np.float64)
        log_lik = stats.bernoulli.logpmf(x[n], special.expit(logits)).sum(axis=1)
        log_prior = stats.norm.logpdf(z).sum(axis=1)
        log_q = stats.norm.logpdf(z, mean, sd).sum(axis=1)
        np.testing.assert_allclose(log_w[n], log_lik + log_prior - log_q, rtol=1e-4, atol=1e-3)


def test_log_weights_reject_a_bad_sample_count():
    with pytest.raises(ValueError, match="num_samples"):
        evaluate.per_image_log_weights(
            tiny_vae(2, seed=0), random_images()[:1], jax.random.PRNGKey(0), num_samples=0
        )


def test_log_mean_exp_of_the_weights_is_the_iwae_draw_of_per_image_iwae():
    # The same documented keys and chunks: hat L_K from the weights is per_image_iwae's draw.
    model = tiny_vae(3, seed=6)
    images = random_images()[:4]
    key = jax.random.PRNGKey(11)
    log_w = evaluate.per_image_log_weights(model, images, key, num_samples=10, sample_chunk=4)
    iwae = evaluate.per_image_iwae(model, images, key, num_samples=10, sample_chunk=4)
    np.testing.assert_allclose(evaluate.prefix_iwae_bounds(log_w)[:, -1], iwae, rtol=1e-5)
