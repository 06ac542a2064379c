"""The ELBO, the IWAE bound and the evidence estimators, checked against independent routes.

The reference is the linear-Gaussian model of :mod:`vae_edu.conjugate`, where log p(x), the
exact posterior and the exact ELBO of any Gaussian q are closed forms (themselves checked
against scipy and quadrature in test_conjugate.py). Monte Carlo results must agree within
5 standard errors; the decoder likelihoods are compared with scipy / float64 NumPy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_edu import conjugate, elbo, kl
from vae_edu.estimate import Estimate


def _mean_and_se(values):
    """Sample mean and its standard error over the leading axis, in float64."""
    values = np.asarray(values, np.float64)
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0])


def _keys(seed, num):
    return jax.random.split(jax.random.key(seed), num)


def _diagonal_posterior_model(seed, data_dim, latent_dim, noise_std):
    """A conjugate model whose exact posterior is diagonal: W has orthogonal columns, so
    S = (I + W^T W / sigma^2)^{-1} is diagonal and a VAE-style q can equal it exactly."""
    rng = np.random.default_rng(seed)
    orthonormal, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))
    weight = orthonormal * rng.uniform(0.5, 2.0, size=latent_dim)
    return conjugate.LinearGaussianModel(
        weight=jnp.asarray(weight, jnp.float32),
        bias=jnp.asarray(rng.normal(size=data_dim), jnp.float32),
        log_var_x=jnp.float32(2 * np.log(noise_std)),
    )


def _diagonal_posterior(model, x):
    post = model.posterior(x)
    return post.mean, jnp.broadcast_to(jnp.log(jnp.diagonal(post.cov)), post.mean.shape)


def _random_q(seed, shape):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=shape), jnp.float32),
        jnp.asarray(rng.uniform(-2.0, 1.0, size=shape), jnp.float32),
    )


# ------------------------------------------------------------------ reparameterization


def test_reparameterized_samples_have_the_right_moments():
    mean = jnp.array([[0.0, -1.5, 3.0], [2.0, 0.5, -0.2]])
    log_var = jnp.array([[0.0, -2.0, 1.0], [-0.5, 2.0, -4.0]])
    num = 20_000
    z = np.asarray(elbo.reparameterize(jax.random.key(0), mean, log_var, num), np.float64)
    assert z.shape == (num, 2, 3)
    assert elbo.reparameterize(jax.random.key(0), mean, log_var).shape == (2, 3)
    var = np.exp(np.asarray(log_var, np.float64))
    sample_mean, mean_se = _mean_and_se(z)
    assert np.all(np.abs(sample_mean - mean) < 5 * mean_se)
    # Var(s^2) = 2 sigma^4 / (n - 1) for Gaussian data (chi-square, normal approximation).
    sample_var = z.var(0, ddof=1)
    assert np.all(np.abs(sample_var - var) < 5 * var * np.sqrt(2 / (num - 1)))


def test_gradients_flow_through_reparameterized_samples():
    mean, log_var = jnp.array([0.7, -1.0, 0.0]), jnp.array([0.4, -1.0, 2.0])

    def sample_mean_of(f, mean_, log_var_):  # (1/L) sum_l f(z_l), one value per coordinate
        return jnp.mean(f(elbo.reparameterize(jax.random.key(1), mean_, log_var_, 64)), axis=0)

    # d E[z] / d mu = 1 exactly, sample by sample.
    np.testing.assert_allclose(
        jax.grad(lambda m: jnp.sum(sample_mean_of(lambda z: z, m, log_var)))(mean),
        np.ones(3),
        rtol=1e-6,
    )
    # d E[z^2] / d log sigma^2 = d (mu^2 + sigma^2) / d log sigma^2 = sigma^2; the pathwise
    # gradient of one sample is unbiased for it.
    per_sample = jax.jit(
        jax.vmap(jax.grad(lambda lv, key: jnp.sum(elbo.reparameterize(key, mean, lv) ** 2)))
    )(jnp.broadcast_to(log_var, (20_000, 3)), _keys(2, 20_000))
    estimate, std_error = _mean_and_se(per_sample)
    assert np.all(np.abs(estimate - np.exp(np.asarray(log_var, np.float64))) < 5 * std_error)


# ------------------------------------------------------------------ decoder likelihoods


def test_bernoulli_log_likelihood_matches_naive_float64():
    rng = np.random.default_rng(3)
    logits = rng.uniform(-8, 8, size=(4, 10))
    x = rng.integers(0, 2, size=(4, 10)).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    naive = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)
    np.testing.assert_allclose(elbo.bernoulli_log_likelihood(x, logits), naive, rtol=1e-5)
    # Broadcasting (L, B, D) logits against (B, D) data.
    stacked = np.stack([logits, -logits])
    np.testing.assert_allclose(
        elbo.bernoulli_log_likelihood(x, stacked)[1],
        elbo.bernoulli_log_likelihood(x, -logits),
        rtol=1e-6,
    )


def test_bernoulli_log_likelihood_is_finite_at_extreme_logits():
    logits = np.array([-100.0, -50.0, -1.0, 0.0, 1.0, 50.0, 100.0])
    for bit in (0.0, 1.0):
        x = np.full_like(logits, bit)
        # log sigmoid(l) = -log(1 + e^{-l}), from np.logaddexp in float64.
        expected = -(x * np.logaddexp(0, -logits) + (1 - x) * np.logaddexp(0, logits))
        per_pixel = jax.vmap(elbo.bernoulli_log_likelihood)(x[:, None], logits[:, None])
        np.testing.assert_allclose(per_pixel, expected, rtol=1e-6, atol=1e-30)
        # d/dl = x - sigmoid(l), finite everywhere.
        grad = jax.grad(lambda lg, x=x: elbo.bernoulli_log_likelihood(x, lg))(jnp.asarray(logits))
        np.testing.assert_allclose(grad, x - special.expit(logits), rtol=1e-6, atol=1e-7)


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6))
    mean = rng.normal(size=(5, 3, 6))  # L = 5 decoder means per data point
    log_var = rng.uniform(-3, 3, size=(5, 3, 6))
    expected = stats.norm.logpdf(x, mean, np.exp(log_var / 2)).sum(-1)
    np.testing.assert_allclose(elbo.gaussian_log_likelihood(x, mean, log_var), expected, rtol=1e-5)
    # A scalar log-variance is a shared (isotropic) decoder variance.
    np.testing.assert_allclose(
        elbo.gaussian_log_likelihood(x, mean, -1.0),
        stats.norm.logpdf(x, mean, np.exp(-0.5)).sum(-1),
        rtol=1e-5,
    )


@pytest.mark.parametrize("log_var", [-30.0, 30.0])
def test_gaussian_densities_are_finite_at_extreme_log_variances(log_var):
    rng = np.random.default_rng(5)
    x, mean = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    log_vars = np.full((2, 4), log_var)
    expected = stats.norm.logpdf(x, mean, np.exp(log_vars / 2)).sum(-1)
    for fn in (elbo.gaussian_log_likelihood, elbo.diag_gaussian_log_density):
        np.testing.assert_allclose(fn(x, mean, log_vars), expected, rtol=1e-5)
        grads = jax.grad(lambda *a, fn=fn: jnp.sum(fn(*a)), argnums=(0, 1, 2))(
            jnp.asarray(x, jnp.float32),
            jnp.asarray(mean, jnp.float32),
            jnp.asarray(log_vars, jnp.float32),
        )
        for g in grads:
            assert np.all(np.isfinite(g))
        # d/dlog_var = -1/2 + (x - mu)^2 / (2 sigma^2)
        np.testing.assert_allclose(
            grads[2], -0.5 + (x - mean) ** 2 / (2 * np.exp(log_vars)), rtol=1e-4
        )


def test_diag_gaussian_log_density_matches_scipy_multivariate_normal():
    rng = np.random.default_rng(6)
    z, mean = rng.normal(size=(7, 3)), rng.normal(size=3)
    log_var = rng.uniform(-2, 2, size=3)
    expected = stats.multivariate_normal(mean, np.diag(np.exp(log_var))).logpdf(z)
    np.testing.assert_allclose(
        elbo.diag_gaussian_log_density(z, mean, log_var), expected, rtol=1e-5
    )


# ------------------------------------------------------------ the ELBO on the exact model


@functools.partial(jax.jit, static_argnames=("num_keys", "num_samples", "kl_method"))
def _elbo_draws(
    model, x, mean, log_var, key, *, num_keys, num_samples=1, beta=1.0, kl_method="closed_form"
):
    """num_keys independent evaluations of elbo(), one per key: ELBOTerms of (num_keys, ...)."""
    return jax.vmap(
        lambda k: elbo.elbo(
            k,
            mean,
            log_var,
            functools.partial(model.log_likelihood, x),
            num_samples=num_samples,
            beta=beta,
            kl_method=kl_method,
        )
    )(jax.random.split(key, num_keys))


# Every ELBO test uses these shapes (D = 4, d = 2, a batch of three x), so the jitted
# estimators compile once for the whole file.
MODEL = conjugate.make_model(jax.random.key(10), 4, 2, 0.6)
X = MODEL.sample(jax.random.key(11), 3).x
DIAG_MODEL = _diagonal_posterior_model(16, data_dim=4, latent_dim=2, noise_std=0.8)
DIAG_X = DIAG_MODEL.sample(jax.random.key(17), 3).x


@pytest.mark.parametrize("kl_method", ["closed_form", "monte_carlo"])
def test_elbo_matches_the_exact_elbo_within_standard_errors(kl_method):
    mean, log_var = _random_q(12, (3, 2))
    draws = _elbo_draws(
        MODEL,
        X,
        mean,
        log_var,
        jax.random.key(13),
        num_keys=400,
        num_samples=4,
        kl_method=kl_method,
    )
    assert draws.elbo.shape == (400, 3)
    cov = jax.vmap(jnp.diag)(jnp.exp(log_var))
    for got, exact in (
        (draws.elbo, MODEL.exact_elbo(X, mean, cov)),
        (draws.reconstruction, MODEL.expected_log_likelihood(X, mean, cov)),
        (draws.kl, kl.kl_mvn(mean, cov, jnp.zeros(2), jnp.eye(2))),
    ):
        estimate, std_error = _mean_and_se(got)
        assert np.all(np.abs(estimate - exact) < 5 * std_error + 1e-5)


def test_elbo_is_below_the_evidence_for_random_q():
    log_evidence = MODEL.log_evidence(X)
    for seed in range(20):
        mean, log_var = _random_q(100 + seed, (3, 2))
        exact = MODEL.exact_elbo(X, mean, jax.vmap(jnp.diag)(jnp.exp(log_var)))
        assert np.all(exact <= log_evidence)
        draws = _elbo_draws(
            MODEL, X, mean, log_var, jax.random.key(seed), num_keys=400, num_samples=4
        )
        estimate, std_error = _mean_and_se(draws.elbo)
        assert np.all(estimate - 5 * std_error <= log_evidence)


def test_log_evidence_minus_elbo_is_kl_to_the_exact_posterior():
    mean, log_var = _random_q(14, (3, 2))
    draws = _elbo_draws(MODEL, X, mean, log_var, jax.random.key(15), num_keys=400, num_samples=4)
    gap = MODEL.log_evidence(X) - np.asarray(draws.elbo, np.float64)
    post = MODEL.posterior(X)
    exact_gap = kl.kl_mvn(mean, jax.vmap(jnp.diag)(jnp.exp(log_var)), post.mean, post.cov)
    estimate, std_error = _mean_and_se(gap)
    assert np.all(np.abs(estimate - exact_gap) < 5 * std_error)


def test_elbo_equals_the_evidence_at_the_exact_posterior():
    model, x = DIAG_MODEL, DIAG_X
    mean, log_var = _diagonal_posterior(model, x)
    np.testing.assert_allclose(
        model.posterior(x).cov, jnp.diag(jnp.exp(log_var[0])), atol=1e-7
    )  # the premise: the posterior is diagonal
    log_evidence = model.log_evidence(x)
    # With q = p(z|x), log p(x|z) + log p(z) - log q(z) = log p(x) for *every* z, so the
    # Monte Carlo ELBO has zero variance.
    draws = _elbo_draws(
        model,
        x,
        mean,
        log_var,
        jax.random.key(18),
        num_keys=400,
        num_samples=4,
        kl_method="monte_carlo",
    )
    np.testing.assert_allclose(draws.elbo, np.broadcast_to(log_evidence, (400, 3)), rtol=1e-5)
    # With the closed-form KL only the reconstruction term is random.
    draws = _elbo_draws(model, x, mean, log_var, jax.random.key(19), num_keys=400, num_samples=4)
    estimate, std_error = _mean_and_se(draws.elbo)
    assert np.all(np.abs(estimate - log_evidence) < 5 * std_error)


def test_monte_carlo_kl_agrees_with_closed_form_for_a_general_prior():
    mean, log_var = _random_q(20, (3, 2))
    prior_mean, prior_log_var = jnp.array([0.5, -1.0]), jnp.array([1.0, -0.5])
    one = functools.partial(
        elbo.elbo,
        mean=mean,
        log_var=log_var,
        log_likelihood_fn=lambda z: jnp.zeros(z.shape[:-1]),
        num_samples=8,
        prior_mean=prior_mean,
        prior_log_var=prior_log_var,
    )
    monte_carlo = jax.jit(jax.vmap(lambda k: one(k, kl_method="monte_carlo").kl))(_keys(21, 400))
    closed = one(jax.random.key(0)).kl
    np.testing.assert_allclose(
        closed, kl.kl_diag_gaussians(mean, log_var, prior_mean, prior_log_var), rtol=1e-6
    )
    estimate, std_error = _mean_and_se(monte_carlo)
    assert np.all(np.abs(estimate - closed) < 5 * std_error)


def test_beta_weights_only_the_kl_term():
    mean, log_var = _random_q(22, (3, 2))
    log_lik = functools.partial(MODEL.log_likelihood, X)
    key = jax.random.key(23)
    with_beta = jax.jit(lambda b: elbo.elbo(key, mean, log_var, log_lik, beta=b))
    base = with_beta(1.0)
    for beta in (0.0, 0.5, 4.0):
        terms = with_beta(beta)
        np.testing.assert_allclose(terms.reconstruction, base.reconstruction, rtol=1e-6)
        np.testing.assert_allclose(terms.kl, base.kl, rtol=1e-6)
        np.testing.assert_allclose(terms.elbo, base.reconstruction - beta * base.kl, rtol=1e-5)
    # d ELBO / d beta = -KL
    np.testing.assert_allclose(
        jax.grad(lambda b: jnp.sum(with_beta(b).elbo))(1.0), -jnp.sum(base.kl), rtol=1e-5
    )


def _log_variance(values):
    """log of the sample variance over axis 0 and its standard error (delta method):
    Var(s^2) ~= (mu_4 - sigma^4 (n - 3) / (n - 1)) / n, so SE(log s^2) ~= sqrt((kurtosis -
    (n - 3) / (n - 1)) / n), with the kurtosis estimated from the same values."""
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    variance = values.var(0, ddof=1)
    kurtosis = np.mean((values - values.mean(0)) ** 4, axis=0) / variance**2
    return np.log(variance), np.sqrt((kurtosis - (n - 3) / (n - 1)) / n)


def test_more_samples_reduce_the_variance_like_one_over_l():
    mean, log_var = _random_q(24, (3, 2))
    four = _elbo_draws(MODEL, X, mean, log_var, jax.random.key(25), num_keys=400, num_samples=4)
    sixteen = _elbo_draws(MODEL, X, mean, log_var, jax.random.key(26), num_keys=400, num_samples=16)
    # Var[(1/L) sum_l log p(x|z_l)] = Var[log p(x|z)] / L: the ratio for L = 4 and 16 is 4.
    log_var_four, se_four = _log_variance(four.reconstruction)
    log_var_sixteen, se_sixteen = _log_variance(sixteen.reconstruction)
    assert np.all(
        np.abs(log_var_four - log_var_sixteen - np.log(4)) < 5 * np.hypot(se_four, se_sixteen)
    )
    # Both are unbiased for the same expectation.
    exact = MODEL.expected_log_likelihood(X, mean, jax.vmap(jnp.diag)(jnp.exp(log_var)))
    for draws in (four, sixteen):
        estimate, std_error = _mean_and_se(draws.reconstruction)
        assert np.all(np.abs(estimate - exact) < 5 * std_error)


def test_elbo_gradients_match_the_exact_elbo_gradients():
    mean, log_var = _random_q(27, (3, 2))
    x = X

    def mc_elbo(mean_, log_var_, key):
        return jnp.sum(
            elbo.elbo(key, mean_, log_var_, functools.partial(MODEL.log_likelihood, x)).elbo
        )

    per_key = jax.jit(jax.vmap(jax.grad(mc_elbo, argnums=(0, 1)), in_axes=(None, None, 0)))(
        mean, log_var, _keys(28, 400)
    )
    exact = jax.grad(
        lambda m, lv: jnp.sum(MODEL.exact_elbo(x, m, jax.vmap(jnp.diag)(jnp.exp(lv)))),
        argnums=(0, 1),
    )(mean, log_var)
    for draws, expected in zip(per_key, exact, strict=True):
        estimate, std_error = _mean_and_se(draws)
        assert np.all(np.abs(estimate - expected) < 5 * std_error + 1e-5)


def test_elbo_is_finite_at_extreme_inputs():
    # A Bernoulli decoder with logits in [-100, 100] and encoder log-variances of +-30.
    rng = np.random.default_rng(29)
    x = jnp.asarray(rng.integers(0, 2, size=(2, 6)), jnp.float32)
    decoder = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)

    def log_lik(z):  # logits saturate at +-100 for the huge z of log_var = 30
        return elbo.bernoulli_log_likelihood(x, 100.0 * jnp.tanh(z @ decoder))

    @jax.jit
    def everything(mean, log_var, key):
        """Values and (mean, log_var)-gradients of every estimator in the module."""

        def objectives(m, lv):
            return {
                "closed_form": elbo.elbo(key, m, lv, log_lik, num_samples=3).elbo,
                "monte_carlo": elbo.elbo(
                    key, m, lv, log_lik, num_samples=3, kl_method="monte_carlo"
                ).elbo,
                "iwae": elbo.iwae_bound(key, m, lv, log_lik, 10),
                "importance": elbo.log_evidence_importance_sampling(key, m, lv, log_lik, 10),
            }

        values = objectives(mean, log_var)
        grads = jax.jacrev(
            lambda m, lv: jax.tree_util.tree_map(jnp.sum, objectives(m, lv)), argnums=(0, 1)
        )(mean, log_var)
        return values, grads

    mean = jnp.array([[3.0, -1.0], [0.0, 2.0]])
    for log_var_value in (-30.0, 30.0):
        values, grads = everything(mean, jnp.full((2, 2), log_var_value), jax.random.key(30))
        for leaf in jax.tree_util.tree_leaves((values, grads)):
            assert np.all(np.isfinite(leaf))


# ------------------------------------------------------------------ the IWAE bound


def test_iwae_bound_increases_with_k_towards_the_evidence():
    post = MODEL.posterior(X)  # q: the exact posterior's mean shifted, a diagonal too wide
    mean = post.mean + 0.5
    log_var = jnp.broadcast_to(jnp.log(jnp.diagonal(post.cov)) + 1.0, mean.shape)
    log_lik = functools.partial(MODEL.log_likelihood, X)
    log_evidence = np.asarray(MODEL.log_evidence(X), np.float64)
    num_keys = 200
    means, errors = {}, {}
    for k in (1, 10, 100, 1000):
        draws = jax.jit(jax.vmap(lambda key, k=k: elbo.iwae_bound(key, mean, log_var, log_lik, k)))(
            _keys(34 + k, num_keys)
        )
        means[k], errors[k] = _mean_and_se(draws)
    # L_1 is the ELBO.
    exact_elbo = MODEL.exact_elbo(X, mean, jax.vmap(jnp.diag)(jnp.exp(log_var)))
    assert np.all(np.abs(means[1] - exact_elbo) < 5 * errors[1])
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        # Non-decreasing in k (independent draws, so SEs add in quadrature) ...
        diff_se = np.hypot(errors[small], errors[large])
        assert np.all(means[large] - means[small] > -5 * diff_se)
        # ... and every E[L_k] <= log p(x).
        assert np.all(means[large] <= log_evidence + 5 * errors[large])
    assert np.all(means[10] - means[1] > 5 * np.hypot(errors[1], errors[10]))
    # The gap to log p(x) closes: at k = 1000 it is a small fraction of the ELBO's gap.
    assert np.all(log_evidence - means[1000] < 0.05 * (log_evidence - means[1]))


# ----------------------------------------------------------- estimators of log p(x)


def test_evidence_estimators_agree_with_the_exact_evidence():
    log_evidence = MODEL.log_evidence(X)
    post = MODEL.posterior(X)  # proposal: near, not at, the exact posterior
    mean = post.mean + 0.3
    log_var = jnp.broadcast_to(jnp.log(jnp.diagonal(post.cov)) + 0.5, mean.shape)

    @jax.jit
    def both(key_prior, key_importance):
        # Prior draws z (n, d) are shared by the three data points: add a batch axis.
        prior = elbo.log_evidence_prior_sampling(
            key_prior, lambda z: MODEL.log_likelihood(X, z[:, None]), 2, 20_000
        )
        importance = elbo.log_evidence_importance_sampling(
            key_importance, mean, log_var, functools.partial(MODEL.log_likelihood, X), 20_000
        )
        return prior, importance

    for estimate in both(jax.random.key(35), jax.random.key(37)):
        assert isinstance(estimate, Estimate)
        assert estimate.mean.shape == (3,)
        assert np.all(np.abs(estimate.mean - log_evidence) < 5 * estimate.std_error)
        assert np.all(estimate.std_error < 0.1)


def test_delta_method_standard_error_is_calibrated():
    # Across many seeds, the spread of the estimates should match the reported SE.
    mean, log_var = _diagonal_posterior(DIAG_MODEL, DIAG_X)
    log_lik = functools.partial(DIAG_MODEL.log_likelihood, DIAG_X)
    num_keys = 300
    draws = jax.jit(
        jax.vmap(
            lambda key: elbo.log_evidence_importance_sampling(
                key, mean + 0.3, log_var + 0.7, log_lik, 200
            )
        )
    )(_keys(40, num_keys))
    spread = np.std(np.asarray(draws.mean, np.float64), axis=0, ddof=1)
    ratio = spread / np.mean(np.asarray(draws.std_error, np.float64), axis=0)
    assert np.all((0.7 < ratio) & (ratio < 1.4))
    bias = np.mean(draws.mean, axis=0) - DIAG_MODEL.log_evidence(DIAG_X)
    assert np.all(np.abs(bias) < 5 * spread / np.sqrt(num_keys) + spread**2)  # Jensen: -SE^2/2


@jax.jit
def _prior_and_importance_sampling(model, x, key):
    """Both estimators of log p(x), the proposal being q = the exact posterior, widened."""
    log_lik = functools.partial(model.log_likelihood, x)
    prior = elbo.log_evidence_prior_sampling(
        key, lambda z: log_lik(z[:, None]), model.latent_dim, 2000
    )
    mean, log_var = _diagonal_posterior(model, x)
    importance = elbo.log_evidence_importance_sampling(key, mean, log_var + 0.1, log_lik, 2000)
    return prior, importance, model.log_evidence(x)


def test_prior_sampling_degrades_with_latent_dimension_but_importance_sampling_does_not():
    prior_se, prior_error, importance_se = [], [], []
    for latent_dim in (1, 4, 8):
        model = _diagonal_posterior_model(
            41, data_dim=2 * latent_dim, latent_dim=latent_dim, noise_std=0.3
        )
        x = model.sample(jax.random.key(42), 4).x
        prior, importance, log_evidence = _prior_and_importance_sampling(
            model, x, jax.random.key(43)
        )
        assert np.all(np.abs(importance.mean - log_evidence) < 5 * importance.std_error + 1e-4)
        prior_se.append(float(np.mean(prior.std_error)))
        prior_error.append(float(np.mean(np.abs(prior.mean - log_evidence))))
        importance_se.append(float(np.mean(importance.std_error)))
    # The (relative) standard error of naive prior sampling grows with d ...
    assert np.all(np.diff(prior_se) > 0)
    assert prior_se[-1] > 10 * prior_se[0]
    # ... and so does its actual error (which the delta method then underestimates).
    assert prior_error[-1] > 1.0 and prior_error[0] < 0.1
    # Importance sampling from (near) the exact posterior stays accurate in every d.
    assert max(importance_se) < 0.02


# ------------------------------------------------------------------ transforms, errors


def test_functions_work_under_jit_and_vmap():
    mean, log_var = _random_q(45, (3, 2))
    log_lik = functools.partial(MODEL.log_likelihood, X)
    key = jax.random.key(46)
    # _elbo_draws is elbo() under jit and vmap over keys: its first draw uses split(key)[0].
    compiled = _elbo_draws(MODEL, X, mean, log_var, key, num_keys=400, num_samples=4)
    eager = elbo.elbo(jax.random.split(key, 400)[0], mean, log_var, log_lik, num_samples=4)
    for a, b in zip(eager, compiled, strict=True):
        assert a.shape == (3,)
        np.testing.assert_allclose(a, b[0], rtol=1e-5)
    # The densities: jit and vmap over the batch axis give the batched call's results.
    logits = jnp.linspace(-100.0, 100.0, X.size).reshape(X.shape)
    bits = (X > 0).astype(jnp.float32)
    for fn, args in (
        (elbo.gaussian_log_likelihood, (X, X + 0.1, jnp.zeros_like(X))),
        (elbo.diag_gaussian_log_density, (X, X - 0.2, jnp.full_like(X, -1.0))),
        (elbo.bernoulli_log_likelihood, (bits, logits)),
    ):
        batched = fn(*args)
        np.testing.assert_allclose(jax.jit(fn)(*args), batched, rtol=1e-6)
        np.testing.assert_allclose(jax.vmap(fn)(*args), batched, rtol=1e-6)

    # The evidence estimators are differentiable in the model's parameters: compare with a
    # central finite difference of the same (fixed-key) function of a shift theta of x.
    def estimate(theta):
        prior = elbo.log_evidence_prior_sampling(
            key, lambda z: MODEL.log_likelihood(X + theta, z[:, None]), 2, 1000
        )
        importance = elbo.log_evidence_importance_sampling(
            key, mean, log_var, lambda z: MODEL.log_likelihood(X + theta, z), 1000
        )
        return jnp.stack([jnp.sum(prior.mean), jnp.sum(importance.mean)])

    step = 1e-2
    finite_difference = (estimate(step) - estimate(-step)) / (2 * step)
    np.testing.assert_allclose(
        jax.jit(jax.jacfwd(estimate))(0.0), finite_difference, rtol=1e-3, atol=1e-3
    )


def test_shape_errors_name_both_shapes():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"mean has shape \(3,\) but log_var has shape \(2,\)"):
        elbo.reparameterize(key, jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"x has shape \(4,\).*mean has shape \(3,\)"):
        elbo.gaussian_log_likelihood(jnp.zeros(4), jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"x has shape \(1,\).*logits has shape \(784,\)"):
        elbo.bernoulli_log_likelihood(jnp.zeros(1), jnp.zeros(784))  # event axis broadcast
    with pytest.raises(ValueError, match=r"z has shape \(5, 2\).*mean has shape \(3,\)"):
        elbo.diag_gaussian_log_density(jnp.zeros((5, 2)), jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"returned shape \(4,\) for z of shape \(4, 3, 2\)"):
        elbo.elbo(key, jnp.zeros((3, 2)), jnp.zeros((3, 2)), lambda z: jnp.zeros(4), num_samples=4)
    with pytest.raises(ValueError, match=r"mean has shape \(2,\).*prior_mean has shape \(3,\)"):
        elbo.iwae_bound(
            key, jnp.zeros(2), jnp.zeros(2), lambda z: z[..., 0], 3, prior_mean=jnp.zeros(3)
        )
    with pytest.raises(ValueError, match="kl_method"):
        elbo.elbo(key, jnp.zeros(2), jnp.zeros(2), lambda z: z[..., 0], kl_method="exact")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        elbo.elbo(key, jnp.zeros(2), jnp.zeros(2), lambda z: z[..., 0], num_samples=0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        elbo.log_evidence_prior_sampling(key, lambda z: z[..., 0], 2, 1)
    with pytest.raises(ValueError, match=r"returned shape \(\) for z of shape \(5, 2\)"):
        elbo.log_evidence_prior_sampling(key, lambda z: jnp.sum(z), 2, 5)


# ------------------------------------------------------- issue 16: legal inputs, bad inputs
@pytest.mark.parametrize("log_var", [-89.0, -100.0])
def test_gaussian_likelihood_at_the_mean_with_tiny_variance_is_finite(log_var):
    # x = mean: the squared residual term is 0, not 0 * exp(89) = 0 * inf = NaN.
    x = jnp.linspace(0.0, 1.0, 5)
    value = elbo.gaussian_log_likelihood(x, x, log_var)
    np.testing.assert_allclose(float(value), -0.5 * 5 * (np.log(2 * np.pi) + log_var), rtol=1e-6)
    grad = jax.grad(lambda m: elbo.gaussian_log_likelihood(x, m, log_var))(x)
    np.testing.assert_array_equal(grad, np.zeros(5))
    # Off the mean the density is -inf (the exact value is below the float32 range), not NaN.
    assert float(elbo.gaussian_log_likelihood(x + 1.0, x, log_var)) == -np.inf


def test_gaussian_likelihood_ordinary_inputs_unchanged():
    rng = np.random.default_rng(16)
    x, mean = (rng.normal(size=(20, 6)).astype(np.float32) for _ in range(2))
    log_var = rng.uniform(-30, 30, size=(20, 6)).astype(np.float32)
    old = jax.jit(
        lambda: (
            -0.5
            * jnp.sum(np.log(2 * np.pi) + log_var + jnp.square(x - mean) * jnp.exp(-log_var), -1)
        )
    )()
    # Up to the last bit: XLA may fuse and order the float32 operations differently.
    np.testing.assert_allclose(
        elbo.gaussian_log_likelihood(x, mean, log_var), old, rtol=2.5e-7, atol=0
    )


def test_bernoulli_likelihood_refuses_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\].*max 2.0"):
        elbo.bernoulli_log_likelihood(jnp.full(3, 2.0), jnp.full(3, 5.0))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\].*nan"):
        elbo.bernoulli_log_likelihood(jnp.array([0.0, np.nan]), jnp.zeros(2))
    # Under jit the values are unknown: no check (and no error) there.
    jax.jit(elbo.bernoulli_log_likelihood)(jnp.full(3, 2.0), jnp.zeros(3))


def _unit_ll(z):
    return -jnp.sum(jnp.square(z), axis=-1)


@pytest.mark.parametrize(
    "beta, error, message",
    [
        ("a", TypeError, "beta must be a real number"),
        (None, TypeError, "beta must be a real number"),
        (float("nan"), ValueError, "beta must be finite"),
        (float("inf"), ValueError, "beta must be finite"),
    ],
)
def test_elbo_names_a_bad_beta(beta, error, message):
    with pytest.raises(error, match=message):
        elbo.elbo(jax.random.key(0), jnp.zeros(2), jnp.zeros(2), _unit_ll, beta=beta)


def test_elbo_names_a_log_likelihood_that_returns_none():
    with pytest.raises(TypeError, match="log_likelihood_fn must return an array.*NoneType"):
        elbo.elbo(jax.random.key(0), jnp.zeros(2), jnp.zeros(2), lambda z: None)


def test_ragged_data_is_named():
    with pytest.raises(ValueError, match="x is not a rectangular array.*ragged list"):
        elbo.gaussian_log_likelihood([[0.0, 1.0], [0.0]], 0.0, 0.0)


def test_beta_zero_drops_an_overflowing_kl_instead_of_making_nan():
    # log_var = 100 overflows the KL to inf in float32; with beta = 0 the objective is the
    # reconstruction alone (0 * inf would be NaN). Found by an adversarial review.
    mean, log_var = jnp.zeros(2), jnp.full(2, 100.0)
    for method in ("closed_form", "monte_carlo"):
        terms = elbo.elbo(
            jax.random.PRNGKey(0),
            mean,
            log_var,
            lambda z: jnp.zeros(z.shape[:-1]),
            beta=0.0,
            kl_method=method,
        )
        assert float(terms.elbo) == float(terms.reconstruction) == 0.0, method
    finite = elbo.elbo(
        jax.random.PRNGKey(0), jnp.zeros(2), jnp.zeros(2), lambda z: -jnp.sum(z**2, -1), beta=0.0
    )
    assert float(finite.elbo) == pytest.approx(float(finite.reconstruction))


# ---------------------------------------------------------------- issue 16 review follow-ups
def test_bernoulli_likelihood_is_exact_at_infinite_logits():
    # log p(x | l) = x log sigmoid(l) + (1 - x) log sigmoid(-l): a certain, correct pixel
    # contributes log 1 = 0, a certain, wrong one log 0 = -inf (never NaN).
    on_off = jnp.array([1.0, 0.0])
    assert float(elbo.bernoulli_log_likelihood(on_off, jnp.array([jnp.inf, -jnp.inf]))) == 0.0
    assert float(elbo.bernoulli_log_likelihood(on_off, jnp.array([-jnp.inf, -jnp.inf]))) == -np.inf
    assert float(elbo.bernoulli_log_likelihood(on_off, jnp.array([jnp.inf, jnp.inf]))) == -np.inf
    # A grey value has mass on both outcomes: -inf at either infinite logit.
    for logit in (jnp.inf, -jnp.inf):
        assert float(elbo.bernoulli_log_likelihood(jnp.array([0.5]), jnp.array([logit]))) == -np.inf
    # Gradients d/dl = x - sigmoid(l) stay finite at saturated logits, for binary and grey x.
    x = jnp.array([1.0, 0.0, 1.0, 0.5])
    logits = jnp.array([200.0, -200.0, -3.0, 0.7])
    grad = jax.grad(lambda logit: elbo.bernoulli_log_likelihood(x, logit))(logits)
    np.testing.assert_allclose(grad, x - special.expit(np.asarray(logits)), rtol=1e-6, atol=1e-7)


def test_bernoulli_likelihood_matches_scipy_for_binary_and_grey_values():
    rng = np.random.default_rng(12)
    logits = rng.normal(scale=4.0, size=(6, 10)).astype(np.float32)
    for x in (rng.integers(0, 2, size=(6, 10)), rng.uniform(size=(6, 10))):
        x = x.astype(np.float32)
        p = special.expit(logits.astype(np.float64))
        expected = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=-1)
        np.testing.assert_allclose(elbo.bernoulli_log_likelihood(x, logits), expected, rtol=1e-5)


@pytest.mark.parametrize("bad", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("function", ["gaussian_log_likelihood", "diag_gaussian_log_density"])
def test_gaussian_densities_refuse_non_finite_log_variance(function, bad):
    log_var = np.zeros((2, 3), np.float32)
    log_var[1, 2] = bad
    with pytest.raises(ValueError, match=r"log_var must be finite, got .* at batch index \(1, 2\)"):
        getattr(elbo, function)(np.zeros((2, 3)), np.zeros((2, 3)), log_var)


def _zero_log_likelihood(z):
    return jnp.zeros(z.shape[:-1])


@pytest.mark.parametrize(
    "beta, error, message",
    [
        (-0.5, ValueError, r"beta must be >= 0"),
        (np.float32(-1.0), ValueError, r"beta must be >= 0"),
        (np.array([1.0, 2.0]), ValueError, r"beta must be a scalar .* got shape \(2,\)"),
        ([1.0, 2.0], ValueError, r"beta must be a scalar .* got shape \(2,\)"),
        (1.0 + 1.0j, TypeError, r"beta must be a real number"),
    ],
)
def test_elbo_refuses_a_negative_or_non_scalar_beta(beta, error, message):
    mean = jnp.zeros((3, 2))
    with pytest.raises(error, match=message):
        elbo.elbo(jax.random.key(0), mean, mean, _zero_log_likelihood, beta=beta)


def test_elbo_accepts_beta_zero_and_a_traced_scalar_beta():
    mean, log_var = jnp.ones((3, 2)), jnp.zeros((3, 2))
    exact_kl = 0.5 * 2 * 1.0  # 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2) with mu = 1, sigma = 1
    terms = jax.jit(
        lambda beta: elbo.elbo(jax.random.key(0), mean, log_var, _zero_log_likelihood, beta=beta)
    )(2.0)
    np.testing.assert_allclose(terms.elbo, -2.0 * exact_kl, rtol=1e-6)
    zero = elbo.elbo(jax.random.key(0), mean, log_var, _zero_log_likelihood, beta=0)
    np.testing.assert_array_equal(zero.elbo, np.zeros(3))


def test_counts_are_integers_with_type_errors_and_minimums_with_value_errors():
    key, mean = jax.random.key(0), jnp.zeros(2)
    with pytest.raises(TypeError, match="num_samples must be an integer >= 1, got float 2.0"):
        elbo.reparameterize(key, mean, mean, num_samples=2.0)
    with pytest.raises(TypeError, match="latent_dim must be an integer >= 1, got bool"):
        elbo.log_evidence_prior_sampling(key, _zero_log_likelihood, True, 4)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2, got 1"):
        elbo.log_evidence_importance_sampling(key, mean, mean, _zero_log_likelihood, 1)


def test_log_evidence_estimators_return_the_one_estimate_type():
    estimate = elbo.log_evidence_prior_sampling(
        jax.random.key(0), lambda z: jnp.zeros(z.shape[:-1]), 2, 8
    )
    # p(x | z) = 1 for every z: every weight is 1, log p(x) = 0 exactly, with no spread.
    assert isinstance(estimate, Estimate) and estimate._fields == ("mean", "std_error")
    assert float(estimate.mean) == 0.0 and float(estimate.std_error) == 0.0
