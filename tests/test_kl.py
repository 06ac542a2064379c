"""Tests for vae_edu.kl: every closed form against an independent route.

Independent routes used here:
* Monte Carlo in NumPy/SciPy float64 (draws from numpy's Generator, log densities from
  scipy.stats), compared within 5 standard errors;
* numerical quadrature in 1-D (scipy.integrate.quad of q log(q / p));
* SciPy's own formulas: multivariate_normal.entropy / logpdf for Gaussians and
  scipy.special.rel_entr for discrete distributions;
* derivatives worked out by hand.
Plus properties (hypothesis), values a student can check by hand, extreme inputs,
jit / vmap / grad, and the error messages.
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vae_edu.estimate import Estimate
from vae_edu.kl import (
    kl_categorical,
    kl_diag_gaussians,
    kl_monte_carlo,
    kl_mvn,
)

NUM_MC_SAMPLES = 100_000
# derandomize: the same examples every run; database=None: nothing written to disk.
PROPERTY_SETTINGS = settings(deadline=None, max_examples=30, derandomize=True, database=None)


# ---------------------------------------------------------------------------------------
# Independent references (NumPy / SciPy, float64)
# ---------------------------------------------------------------------------------------


def random_spd(rng, d, log_eig_low=-6.0, log_eig_high=6.0):
    """A random covariance Q diag(lambda) Q^T: random rotation, log-eigenvalues uniform."""
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eigenvalues = np.exp(rng.uniform(log_eig_low, log_eig_high, size=d))
    cov = (rotation * eigenvalues) @ rotation.T
    return 0.5 * (cov + cov.T)


def mc_reference_kl(rng, mean_q, cov_q, mean_p, cov_p, num_samples=NUM_MC_SAMPLES):
    """(mean, standard error) of log q(z) - log p(z) over z ~ q, in NumPy/SciPy float64."""
    q = scipy.stats.multivariate_normal(mean_q, cov_q)
    p = scipy.stats.multivariate_normal(mean_p, cov_p)
    z = q.rvs(size=num_samples, random_state=rng).reshape(num_samples, -1)
    log_ratio = q.logpdf(z) - p.logpdf(z)
    return log_ratio.mean(), log_ratio.std(ddof=1) / math.sqrt(num_samples)


def scipy_kl_gaussians(mean_q, cov_q, mean_p, cov_p):
    """KL(q || p) = -H(q) - E_q[log p(z)] from scipy.stats, with no closed-form KL in sight.

    H(q) is scipy's entropy. log p(z) is a quadratic in z, and a symmetric set of 2d
    "sigma points" mu_q +- sqrt(d) * sqrt(lambda_i) v_i (eigen-pairs of cov_q) matches the
    first three moments of q, so averaging scipy's logpdf over them gives E_q[log p] exactly.
    """
    d = len(mean_q)
    eigenvalues, eigenvectors = np.linalg.eigh(cov_q)
    offsets = math.sqrt(d) * (eigenvectors * np.sqrt(eigenvalues)).T  # (d, d) rows
    sigma_points = np.concatenate([mean_q + offsets, mean_q - offsets])
    cross_entropy = -scipy.stats.multivariate_normal(mean_p, cov_p).logpdf(sigma_points).mean()
    return cross_entropy - scipy.stats.multivariate_normal(mean_q, cov_q).entropy()


def quadrature_kl_1d(mean_q, log_var_q, mean_p, log_var_p):
    """KL(q || p) = integral of q(z) log(q(z) / p(z)) dz by adaptive quadrature (1-D)."""
    std_q, std_p = math.exp(0.5 * log_var_q), math.exp(0.5 * log_var_p)

    def integrand(z):
        log_q = scipy.stats.norm.logpdf(z, mean_q, std_q)
        return math.exp(log_q) * (log_q - scipy.stats.norm.logpdf(z, mean_p, std_p))

    # q has no mass beyond 12 standard deviations (tail ~ 1e-33), so integrate over that.
    value, _ = scipy.integrate.quad(
        integrand,
        mean_q - 12 * std_q,
        mean_q + 12 * std_q,
        points=[mean_q],
        epsabs=1e-12,
        epsrel=1e-10,
        limit=200,
    )
    return value


# ---------------------------------------------------------------------------------------
# Closed form against Monte Carlo
# ---------------------------------------------------------------------------------------
#
# Why a 5-standard-error check is honest over the whole sweep (log-variances in [-6, 6]):
# for Gaussians the log ratio r(z) = log q(z) - log p(z) under z = mu_q + sigma_q * eps is
# a quadratic in the standard normal eps, sum_j (a_j eps_j^2 + b_j eps_j) + c, with
# a_j = (sigma_q^2 / sigma_p^2 - 1) / 2. That is a (generalised, non-central) chi-square:
# every moment is finite, Var r = sum_j (2 a_j^2 + b_j^2). It is skewed, but the skewness
# of the *mean* of 1e5 draws is below 0.01, so the CLT interval is accurate even for a
# variance ratio of e^12. (Heavy tails do arise for importance *weights* exp(-r), which
# this estimator never exponentiates.) What the mismatch does change is the size of the
# standard error: it grows with the variance ratio, so we also check that 5 SE stays a
# small fraction of the KL, i.e. that the comparison has power. Near-equal q and p (where
# KL -> 0 faster than its SE) are covered by the quadrature and SciPy tests instead.
# The reference runs in float64 NumPy/SciPy; the closed form under jax.enable_x64.

LOG_VAR_CORNERS = [(-6.0, 6.0), (6.0, -6.0), (-6.0, -6.0), (6.0, 6.0)]
DIAG_CASES = [(d, "random", i) for d in (1, 2, 20) for i in range(6)] + [
    (d, "corner", i) for d in (1, 2, 20) for i in range(len(LOG_VAR_CORNERS))
]


def diag_case(dim, kind, index):
    """Seeded parameters: means ~ N(0, 2^2); log-variances uniform in [-6, 6] or at a corner."""
    rng = np.random.default_rng([dim, index, kind == "corner"])
    mean_q, mean_p = rng.normal(0.0, 2.0, size=(2, dim))
    if kind == "random":
        log_var_q, log_var_p = rng.uniform(-6.0, 6.0, size=(2, dim))
    else:
        log_var_q, log_var_p = (np.full(dim, v) for v in LOG_VAR_CORNERS[index])
    return rng, mean_q, log_var_q, mean_p, log_var_p


@pytest.mark.parametrize("dim, kind, index", DIAG_CASES)
def test_kl_diag_gaussians_matches_monte_carlo(dim, kind, index):
    rng, mean_q, log_var_q, mean_p, log_var_p = diag_case(dim, kind, index)
    estimate, std_error = mc_reference_kl(
        rng, mean_q, np.diag(np.exp(log_var_q)), mean_p, np.diag(np.exp(log_var_p))
    )
    with jax.enable_x64(True):
        exact = float(kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p))
    assert abs(exact - estimate) < 5 * std_error, (exact, estimate, std_error)
    if kind == "random":
        # The check has power: 5 SE is under 5% of the KL. Not so at the wide/wide corner,
        # where q and p are close relative to their width (KL ~ 0.01-0.3, 5 SE up to 20%
        # of it); the quadrature test covers that regime tightly.
        assert 5 * std_error < 0.05 * exact


@pytest.mark.parametrize("dim, seed", [(d, s) for d in (1, 2, 20) for s in range(3)])
def test_kl_mvn_matches_monte_carlo(dim, seed):
    rng = np.random.default_rng([100, dim, seed])
    mean_q, mean_p = rng.normal(0.0, 2.0, size=(2, dim))
    cov_q, cov_p = random_spd(rng, dim), random_spd(rng, dim)
    estimate, std_error = mc_reference_kl(rng, mean_q, cov_q, mean_p, cov_p)
    with jax.enable_x64(True):
        exact = float(kl_mvn(mean_q, cov_q, mean_p, cov_p))
    assert abs(exact - estimate) < 5 * std_error, (exact, estimate, std_error)
    assert 5 * std_error < 0.05 * exact


def test_float32_agrees_with_float64_over_the_sweep():
    for case in DIAG_CASES:
        _, mean_q, log_var_q, mean_p, log_var_p = diag_case(*case)
        with jax.enable_x64(True):
            reference = float(kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p))
        args32 = [np.float32(a) for a in (mean_q, log_var_q, mean_p, log_var_p)]
        value32 = kl_diag_gaussians(*args32)
        assert value32.dtype == jnp.float32
        np.testing.assert_allclose(float(value32), reference, rtol=2e-6)


# ---------------------------------------------------------------------------------------
# Closed form against quadrature and against SciPy
# ---------------------------------------------------------------------------------------

QUADRATURE_CASES = [
    (0.0, 0.0, 0.0, 0.0),  # identical: 0
    (2.0, 0.0, 0.0, 0.0),  # the mu = 2 example: 2
    (0.3, -0.1, 0.1, 0.2),  # close to each other
    (1.0, -6.0, -1.0, 6.0),  # narrow q, wide p
    (-1.0, 6.0, 0.5, -6.0),  # wide q, narrow p
    (3.0, -6.0, -2.0, -6.0),  # both narrow, far apart
    (-0.7, 4.0, 1.5, 5.0),  # both wide
]


@pytest.mark.parametrize("case", QUADRATURE_CASES)
def test_kl_diag_gaussians_matches_quadrature_1d(case):
    mean_q, log_var_q, mean_p, log_var_p = case
    with jax.enable_x64(True):
        exact = float(
            kl_diag_gaussians(np.array([mean_q]), np.array([log_var_q]), mean_p, log_var_p)
        )
    assert exact == pytest.approx(quadrature_kl_1d(*case), rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("dim, seed", [(d, s) for d in (1, 2, 5, 20) for s in range(3)])
def test_kl_mvn_and_diag_match_scipy(dim, seed):
    rng = np.random.default_rng([200, dim, seed])
    mean_q, mean_p = rng.normal(0.0, 2.0, size=(2, dim))
    cov_q, cov_p = random_spd(rng, dim), random_spd(rng, dim)
    log_var_q, log_var_p = rng.uniform(-6.0, 6.0, size=(2, dim))
    with jax.enable_x64(True):
        full = float(kl_mvn(mean_q, cov_q, mean_p, cov_p))
        diag = float(kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p))
    assert full == pytest.approx(scipy_kl_gaussians(mean_q, cov_q, mean_p, cov_p), rel=1e-8)
    diag_reference = scipy_kl_gaussians(
        mean_q, np.diag(np.exp(log_var_q)), mean_p, np.diag(np.exp(log_var_p))
    )
    assert diag == pytest.approx(diag_reference, rel=1e-8)


@pytest.mark.parametrize("dim", [1, 3, 20])
def test_kl_mvn_with_diagonal_covariances_equals_kl_diag_gaussians(dim):
    rng = np.random.default_rng(dim)
    mean_q, mean_p = rng.normal(0.0, 2.0, size=(2, 4, dim)).astype(np.float32)
    # Include the extremes of the legal range, log-variances in [-30, 30].
    log_var_q, log_var_p = rng.uniform(-30.0, 30.0, size=(2, 4, dim)).astype(np.float32)
    diag = kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)
    full = kl_mvn(
        mean_q,
        np.exp(log_var_q)[..., None] * np.eye(dim, dtype=np.float32),
        mean_p,
        np.exp(log_var_p)[..., None] * np.eye(dim, dtype=np.float32),
    )
    assert full.shape == diag.shape == (4,)
    np.testing.assert_allclose(full, diag, rtol=1e-5)


@pytest.mark.parametrize("num_categories", [2, 10, 1000])
def test_kl_categorical_matches_scipy_rel_entr(num_categories):
    rng = np.random.default_rng(num_categories)
    p = rng.dirichlet(np.full(num_categories, 0.5), size=5)
    q = rng.dirichlet(np.full(num_categories, 0.5), size=5)
    p[0, 0] = 0.0  # a zero in p exercises 0 log 0 = 0
    p[0] /= p[0].sum()
    reference = scipy.special.rel_entr(p, q).sum(axis=-1)
    with jax.enable_x64(True):
        np.testing.assert_allclose(kl_categorical(p, q), reference, rtol=1e-12)
    # float32: terms of size ~1 cancel, so small KLs carry an absolute rounding error ~1e-7.
    np.testing.assert_allclose(
        kl_categorical(p.astype(np.float32), q.astype(np.float32)), reference, rtol=2e-5, atol=1e-6
    )
    # Broadcasting a batch of p against a single q.
    np.testing.assert_allclose(
        kl_categorical(p.astype(np.float32), q[0].astype(np.float32)),
        scipy.special.rel_entr(p, q[0]).sum(axis=-1),
        rtol=2e-5,
        atol=1e-6,
    )


def test_kl_categorical_conventions():
    # 0 log(0 / q) = 0, also when q = 0 too; p log(p / 0) = +inf.
    assert float(
        kl_categorical(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5]))
    ) == pytest.approx(math.log(2.0))
    assert float(kl_categorical(np.array([1.0, 0.0]), np.array([1.0, 0.0]))) == 0.0
    assert float(kl_categorical(np.array([0.5, 0.5]), np.array([1.0, 0.0]))) == math.inf
    assert float(scipy.special.rel_entr([0.5, 0.5], [1.0, 0.0]).sum()) == math.inf


# ---------------------------------------------------------------------------------------
# Monte Carlo estimator
# ---------------------------------------------------------------------------------------


def _normal_log_density(mean, log_var):
    """z (n, d) -> log N(z; mean, diag exp(log_var)) of shape (n,), from jax.scipy.stats."""
    std = jnp.exp(0.5 * log_var)
    return lambda z: jnp.sum(jax.scipy.stats.norm.logpdf(z, mean, std), axis=-1)


def test_kl_monte_carlo_is_the_sample_mean_with_its_standard_error():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(50, 3, 2))
    log_q_values, log_p_values = rng.normal(size=(2, 50, 3))
    result = kl_monte_carlo(samples, lambda z: log_q_values, lambda z: log_p_values)
    assert isinstance(result, Estimate)
    ratio = log_q_values - log_p_values
    np.testing.assert_allclose(result.mean, ratio.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        result.std_error, ratio.std(axis=0, ddof=1) / math.sqrt(50), rtol=1e-5
    )


def test_kl_monte_carlo_agrees_with_closed_form():
    key = jax.random.key(0)
    mean_q, log_var_q = np.array([0.5, -1.0, 2.0]), np.array([-1.0, 0.5, 1.5])
    mean_p, log_var_p = np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, -0.5])
    z = mean_q + jnp.exp(0.5 * log_var_q) * jax.random.normal(key, (NUM_MC_SAMPLES, 3))
    log_q = _normal_log_density(mean_q, log_var_q)
    log_p = _normal_log_density(mean_p, log_var_p)
    result = jax.jit(lambda samples: kl_monte_carlo(samples, log_q, log_p))(z)
    exact = kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)
    assert abs(float(result.mean - exact)) < 5 * float(result.std_error)


def test_kl_monte_carlo_standard_error_is_calibrated():
    # Over 1000 independent runs the interval estimate +- 2 SE should cover the exact KL
    # about 95% of the time (95.3% for a t with 499 degrees of freedom). The binomial
    # standard deviation of the coverage is 0.7%, so [0.915, 0.985] is a 5-sigma band.
    mean_q, log_var_q = np.array([1.0, -0.5]), np.array([0.5, -1.0])
    log_q = _normal_log_density(mean_q, log_var_q)
    log_p = _normal_log_density(np.zeros(2), np.zeros(2))
    exact = kl_diag_gaussians(mean_q, log_var_q)

    def one_run(key):
        z = mean_q + jnp.exp(0.5 * log_var_q) * jax.random.normal(key, (500, 2))
        return kl_monte_carlo(z, log_q, log_p)

    runs = jax.jit(jax.vmap(one_run))(jax.random.split(jax.random.key(1), 1000))
    coverage = float(np.mean(np.abs(runs.mean - exact) < 2 * runs.std_error))
    assert 0.915 < coverage < 0.985, coverage


def test_kl_monte_carlo_pathwise_gradient():
    # With z = mu + sigma * eps, log q(z) = -eps^2/2 - log sigma - log(2 pi)/2 does not
    # depend on mu, and -log p(z) = z^2/2 + const for p = N(0, 1). So the gradient of the
    # estimate with respect to mu is exactly mean_i(z_i) = mu + sigma * mean(eps).
    eps = jax.random.normal(jax.random.key(2), (1000, 1))
    log_var = np.array([0.4])

    def estimate(mean):
        z = mean + jnp.exp(0.5 * log_var) * eps
        return kl_monte_carlo(
            z, _normal_log_density(mean, log_var), _normal_log_density(0.0, np.zeros(1))
        ).mean

    mean = np.array([0.7])
    expected = mean + np.exp(0.5 * log_var) * np.mean(eps, axis=0)
    np.testing.assert_allclose(jax.jit(jax.grad(estimate))(mean), expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Values a student can check by hand
# ---------------------------------------------------------------------------------------


def test_known_values_against_standard_normal():
    # KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2
    assert float(kl_diag_gaussians(np.array([0.0]), np.array([0.0]))) == 0.0
    assert float(kl_diag_gaussians(np.array([2.0]), np.array([0.0]))) == pytest.approx(2.0)
    assert float(kl_diag_gaussians(np.array([-2.0]), np.array([0.0]))) == pytest.approx(2.0)
    # log sigma = 1 means log_var = 2 (a common mix-up): (e^2 - 1 - 2) / 2.
    assert float(kl_diag_gaussians(np.array([0.0]), np.array([2.0]))) == pytest.approx(
        0.5 * (math.exp(2.0) - 3.0)
    )
    # Independent dimensions add up.
    assert float(kl_diag_gaussians(np.array([2.0, 0.0]), np.array([0.0, 2.0]))) == pytest.approx(
        2.0 + 0.5 * (math.exp(2.0) - 3.0)
    )
    # Full covariance: N(0, I_3) against N(0, 2 I_3) is 3/2 (1/2 - 1 + log 2).
    assert float(kl_mvn(np.zeros(3), np.eye(3), np.zeros(3), 2.0 * np.eye(3))) == pytest.approx(
        1.5 * (math.log(2.0) - 0.5)
    )


def test_kl_is_not_symmetric():
    # q = N(0, 1), p = N(0, 4): KL(q||p) = (1/4 - 1 + log 4)/2, KL(p||q) = (4 - 1 - log 4)/2.
    forward = float(kl_diag_gaussians(np.zeros(1), np.zeros(1), 0.0, math.log(4.0)))
    reverse = float(kl_diag_gaussians(np.zeros(1), np.full(1, math.log(4.0))))
    assert forward == pytest.approx(0.5 * (math.log(4.0) - 0.75))
    assert reverse == pytest.approx(0.5 * (3.0 - math.log(4.0)))
    assert reverse - forward > 0.4
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert float(kl_categorical(p, q)) == pytest.approx(0.5 * math.log(0.25 / 0.09))
    assert float(kl_categorical(q, p)) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert float(kl_categorical(p, q)) - float(kl_categorical(q, p)) > 0.1


# ---------------------------------------------------------------------------------------
# Properties (hypothesis, derandomized so the suite is deterministic)
# ---------------------------------------------------------------------------------------


def _vectors(size, low, high):
    return hnp.arrays(np.float32, size, elements=st.floats(low, high, width=32))


@st.composite
def diag_gaussian_pairs(draw):
    d = draw(st.integers(1, 4))
    return tuple(draw(_vectors(d, *bounds)) for bounds in ((-5, 5), (-8, 8), (-5, 5), (-8, 8)))


@st.composite
def probability_vectors(draw, size):
    weights = draw(_vectors(size, 0.0, 1.0).filter(lambda w: w.sum() > 0.1))
    return weights / weights.sum()


@PROPERTY_SETTINGS
@given(diag_gaussian_pairs())
def test_property_kl_diag_nonnegative_and_zero_on_itself(params):
    mean_q, log_var_q, mean_p, log_var_p = params
    assert float(kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)) >= 0.0
    assert float(kl_diag_gaussians(mean_q, log_var_q, mean_q, log_var_q)) == 0.0


@PROPERTY_SETTINGS
@given(diag_gaussian_pairs())
def test_property_kl_diag_symmetric_in_sign_of_mean_and_sums_over_dimensions(params):
    mean_q, log_var_q, mean_p, log_var_p = params
    total = kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)
    assert float(kl_diag_gaussians(-mean_q, log_var_q, -mean_p, log_var_p)) == float(total)
    per_dimension = [
        kl_diag_gaussians(
            mean_q[j : j + 1], log_var_q[j : j + 1], mean_p[j : j + 1], log_var_p[j : j + 1]
        )
        for j in range(len(mean_q))
    ]
    np.testing.assert_allclose(float(total), float(sum(per_dimension)), rtol=1e-5)


@PROPERTY_SETTINGS
@given(
    st.integers(1, 4).flatmap(
        lambda d: st.tuples(
            _vectors(d, -3, 3), _vectors(d * d, -1, 1), _vectors(d, -3, 3), _vectors(d * d, -1, 1)
        )
    )
)
def test_property_kl_mvn_nonnegative_and_zero_on_itself(params):
    mean_q, raw_q, mean_p, raw_p = params
    d = len(mean_q)
    # A A^T + I/2 is symmetric positive definite with eigenvalues >= 1/2.
    cov_q, cov_p = (
        a.reshape(d, d) @ a.reshape(d, d).T + 0.5 * np.eye(d, dtype=np.float32)
        for a in (raw_q, raw_p)
    )
    assert float(kl_mvn(mean_q, cov_q, mean_p, cov_p)) >= -1e-5 * d  # float32 rounding
    assert abs(float(kl_mvn(mean_q, cov_q, mean_q, cov_q))) <= 1e-5 * d


@PROPERTY_SETTINGS
@given(
    st.integers(2, 6).flatmap(lambda k: st.tuples(probability_vectors(k), probability_vectors(k)))
)
def test_property_kl_categorical_nonnegative_and_zero_on_itself(pair):
    p, q = pair
    # Gibbs' inequality; the tiny slack absorbs float32 rounding when p is almost q.
    assert float(kl_categorical(p, q)) >= -1e-6
    assert float(kl_categorical(p, p)) == 0.0
    # XLA on the CPU flushes float32 subnormals to zero (documented in kl_categorical),
    # so the float64 reference sees the same inputs the computation does.
    p64, q64 = (
        np.where(np.abs(a) < np.finfo(np.float32).tiny, 0.0, a).astype(np.float64) for a in (p, q)
    )
    assert float(kl_categorical(p, q)) == pytest.approx(
        float(scipy.special.rel_entr(p64, q64).sum()), rel=1e-4, abs=1e-6
    )


def test_kl_categorical_treats_subnormal_q_as_zero_as_documented():
    # The case hypothesis found: q_0 = 6.3e-39 is a float32 subnormal, flushed to 0 by XLA.
    p = np.array([0.5, 0.5], np.float32)
    q = np.array([6.256352e-39, 1.0], np.float32)
    assert float(kl_categorical(p, q)) == np.inf
    smallest_normal = np.array([np.finfo(np.float32).tiny, 1.0], np.float32)
    expected = scipy.special.rel_entr(p.astype(np.float64), smallest_normal.astype(np.float64))
    assert float(kl_categorical(p, smallest_normal)) == pytest.approx(expected.sum(), rel=1e-5)


# ---------------------------------------------------------------------------------------
# Extreme but legal inputs: log-variances in [-30, 30]
# ---------------------------------------------------------------------------------------

EXTREME_LOG_VARS = np.linspace(-30.0, 30.0, 7, dtype=np.float32)


def test_kl_diag_gaussians_extremes_are_finite_with_finite_gradients():
    lv_q, lv_p, mu_q, mu_p = (
        a.ravel()
        for a in np.meshgrid(
            EXTREME_LOG_VARS, EXTREME_LOG_VARS, np.float32([-5, 0, 5]), np.float32([-5, 5])
        )
    )
    args = [a[:, None] for a in (mu_q, lv_q, mu_p, lv_p)]
    values = kl_diag_gaussians(*args)
    assert values.shape == (len(lv_q),)
    assert bool(np.all(np.isfinite(values)))
    assert bool(np.all(values >= 0))
    grads = jax.grad(lambda *a: jnp.sum(kl_diag_gaussians(*a)), argnums=(0, 1, 2, 3))(*args)
    assert all(bool(np.all(np.isfinite(g))) for g in grads)


def test_kl_mvn_extremes_are_finite_with_finite_gradients():
    # Covariances exp(s) * R for every pair of log-scales s_q, s_p in [-30, 30].
    log_scale_q, log_scale_p = (a.ravel() for a in np.meshgrid(EXTREME_LOG_VARS, EXTREME_LOG_VARS))
    mean_q, mean_p = np.array([1.0, -2.0]), np.array([0.0, 3.0])
    cov_q = np.exp(log_scale_q.astype(np.float64))[:, None, None] * np.array(
        [[1.0, 0.6], [0.6, 1.0]]
    )
    cov_p = np.exp(log_scale_p.astype(np.float64))[:, None, None] * np.eye(2)
    grad_fn = jax.jit(jax.vmap(jax.grad(kl_mvn, argnums=(0, 1, 2, 3)), in_axes=(None, 0, None, 0)))

    args32 = [a.astype(np.float32) for a in (mean_q, cov_q, mean_p, cov_p)]
    assert bool(np.all(np.isfinite(kl_mvn(*args32))))
    grads = grad_fn(*args32)
    for g in grads[:3]:
        assert bool(np.all(np.isfinite(g)))
    # The exact dKL/dS_p = (S_p^-1 - S_p^-1 (S_q + d d^T) S_p^-1) / 2 grows like
    # exp(s_q - 2 s_p): at s_q = 30, s_p = -30 it is ~e^90, beyond float32's largest number
    # (~e^88.7), so no float32 code could return it. Everywhere else it must be finite,
    # and in float64 everywhere.
    precision_p = np.linalg.inv(cov_p)
    diff = (mean_q - mean_p)[:, None]
    exact_grad_p = 0.5 * (precision_p - precision_p @ (cov_q + diff @ diff.T) @ precision_p)
    representable = np.abs(exact_grad_p).max(axis=(1, 2)) < np.finfo(np.float32).max
    assert representable.sum() == len(representable) - 1
    assert bool(np.all(np.isfinite(grads[3][representable])))
    with jax.enable_x64(True):
        grads64 = grad_fn(mean_q, cov_q, mean_p, cov_p)
    assert all(bool(np.all(np.isfinite(g))) for g in grads64)
    # Compare each matrix relative to its largest entry (entries span ~50 orders of magnitude).
    error = np.abs(np.asarray(grads64[3]) - exact_grad_p).max(axis=(1, 2))
    assert np.all(error <= 1e-6 * np.abs(exact_grad_p).max(axis=(1, 2)))


def test_kl_categorical_extremes_and_gradients_where_p_is_zero():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0 - 2e-30, 1e-30, 1e-30]])
    q = np.array([[1e-30, 0.5, 0.5 - 1e-30], [0.5, 0.5 - 1e-30, 1e-30], [1 / 3, 1 / 3, 1 / 3]])
    values = kl_categorical(p, q)
    assert bool(np.all(np.isfinite(values)))
    np.testing.assert_allclose(values[0], -math.log(1e-30), rtol=1e-5)
    grad_p, grad_q = jax.grad(lambda a, b: jnp.sum(kl_categorical(a, b)), argnums=(0, 1))(p, q)
    assert bool(np.all(np.isfinite(grad_p))) and bool(np.all(np.isfinite(grad_q)))
    # Where p = 0 the term is the constant 0: zero gradient, never NaN.
    assert float(grad_p[0, 1]) == 0.0 and float(grad_q[0, 1]) == 0.0
    # Where q = 0 < p the KL is +inf, still without NaN in value or gradient.
    inf_value, inf_grads = jax.value_and_grad(lambda a, b: kl_categorical(a, b), argnums=(0, 1))(
        np.array([0.5, 0.5]), np.array([1.0, 0.0])
    )
    assert float(inf_value) == math.inf
    assert not any(bool(np.any(np.isnan(g))) for g in inf_grads)


# ---------------------------------------------------------------------------------------
# jit, vmap, grad
# ---------------------------------------------------------------------------------------


def test_gradient_of_kl_diag_gaussians_matches_analytic_derivative():
    # d/dmu = mu and d/dlog_var = (exp(log_var) - 1) / 2 for p = N(0, 1); in general
    # d/dmu_q = (mu_q - mu_p) / sigma_p^2, d/dlog_var_q = (exp(lv_q - lv_p) - 1) / 2.
    mean = np.array([0.3, -1.2, 2.0])
    log_var = np.array([-2.0, 0.0, 1.5])
    grad_mean, grad_log_var = jax.grad(kl_diag_gaussians, argnums=(0, 1))(mean, log_var)
    np.testing.assert_allclose(grad_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(grad_log_var, 0.5 * (np.exp(log_var) - 1.0), rtol=1e-6)

    mean_p, log_var_p = np.array([1.0, 0.0, -1.0]), np.array([0.5, -1.0, 2.0])
    grad_mean, grad_log_var = jax.grad(kl_diag_gaussians, argnums=(0, 1))(
        mean, log_var, mean_p, log_var_p
    )
    np.testing.assert_allclose(grad_mean, (mean - mean_p) / np.exp(log_var_p), rtol=1e-6)
    np.testing.assert_allclose(grad_log_var, 0.5 * (np.exp(log_var - log_var_p) - 1.0), rtol=1e-6)


def test_gradient_of_kl_mvn_matches_analytic_derivative():
    # dKL/dmu_q = S_p^{-1} (mu_q - mu_p) and dKL/dS_q = (S_p^{-1} - S_q^{-1}) / 2
    # (NumPy inverses here are the independent route; kl_mvn itself never inverts).
    rng = np.random.default_rng(3)
    mean_q, mean_p = rng.normal(size=(2, 3))
    cov_q, cov_p = random_spd(rng, 3, -1.0, 1.0), random_spd(rng, 3, -1.0, 1.0)
    with jax.enable_x64(True):
        grad_mean, grad_cov = jax.grad(kl_mvn, argnums=(0, 1))(mean_q, cov_q, mean_p, cov_p)
    np.testing.assert_allclose(grad_mean, np.linalg.solve(cov_p, mean_q - mean_p), rtol=1e-9)
    np.testing.assert_allclose(
        grad_cov, 0.5 * (np.linalg.inv(cov_p) - np.linalg.inv(cov_q)), rtol=1e-8, atol=1e-12
    )


def test_gradient_of_kl_categorical_matches_analytic_derivative():
    # d/dp_k = log(p_k / q_k) + 1 and d/dq_k = -p_k / q_k.
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.4, 0.2])
    grad_p, grad_q = jax.grad(kl_categorical, argnums=(0, 1))(p, q)
    np.testing.assert_allclose(grad_p, np.log(p / q) + 1.0, rtol=1e-6)
    np.testing.assert_allclose(grad_q, -p / q, rtol=1e-6)


def test_all_functions_jit_and_vmap():
    rng = np.random.default_rng(4)
    mean_q, log_var_q, mean_p, log_var_p = rng.normal(size=(4, 5, 3)).astype(np.float32)
    cov_q = np.stack([random_spd(rng, 3, -1, 1) for _ in range(5)]).astype(np.float32)
    cov_p = np.stack([random_spd(rng, 3, -1, 1) for _ in range(5)]).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    q = rng.dirichlet(np.ones(4), size=5).astype(np.float32)

    cases = [
        (kl_diag_gaussians, (mean_q, log_var_q, mean_p, log_var_p)),
        (kl_mvn, (mean_q, cov_q, mean_p, cov_p)),
        (kl_categorical, (p, q)),
    ]
    for fn, args in cases:
        batched = fn(*args)
        assert batched.shape == (5,)
        np.testing.assert_allclose(jax.jit(fn)(*args), batched, rtol=1e-5)
        np.testing.assert_allclose(jax.jit(jax.vmap(fn))(*args), batched, rtol=1e-5)
        one_by_one = [float(fn(*(a[i] for a in args))) for i in range(5)]
        np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)

    log_q = _normal_log_density(np.zeros(3), np.zeros(3))
    log_p = _normal_log_density(np.ones(3), np.zeros(3))
    samples = rng.normal(size=(100, 3)).astype(np.float32)
    ratio = scipy.stats.norm.logpdf(samples).sum(-1) - scipy.stats.norm.logpdf(
        samples, loc=1.0
    ).sum(-1)
    expected = (ratio.mean(), ratio.std(ddof=1) / 10.0)
    estimate_fn = jax.jit(lambda z: kl_monte_carlo(z, log_q, log_p))
    np.testing.assert_allclose(estimate_fn(samples), expected, rtol=1e-5)
    stacked = np.stack([samples, samples[::-1]])
    mapped = jax.jit(jax.vmap(lambda z: kl_monte_carlo(z, log_q, log_p)))(stacked)
    assert mapped.mean.shape == mapped.std_error.shape == (2,)
    np.testing.assert_allclose(np.stack(mapped, axis=-1), [expected, expected], rtol=1e-5)


def test_kl_mvn_broadcasts_a_batch_of_q_against_one_p():
    rng = np.random.default_rng(5)
    mean_q = rng.normal(size=(4, 2))
    cov_q = np.stack([random_spd(rng, 2, -1, 1) for _ in range(4)])
    mean_p, cov_p = rng.normal(size=2), random_spd(rng, 2, -1, 1)
    batched = kl_mvn(mean_q, cov_q, mean_p, cov_p)
    expected = [float(kl_mvn(mean_q[i], cov_q[i], mean_p, cov_p)) for i in range(4)]
    np.testing.assert_allclose(batched, expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _raises_naming(*fragments):
    """Expects a ValueError whose message contains every fragment."""
    with pytest.raises(ValueError) as info:
        yield
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_wrong_shapes_name_both_shapes():
    with _raises_naming("(3,)", "(2,)"):
        kl_diag_gaussians(np.zeros(3), np.zeros(2))
    with _raises_naming("(3,)", "(2,)"):
        kl_diag_gaussians(np.zeros(3), np.zeros(3), np.zeros(2))
    with _raises_naming("(3,)", "(2, 2)"):
        kl_mvn(np.zeros(3), np.eye(2), np.zeros(2), np.eye(2))
    with _raises_naming("(2,)", "(2, 3)"):
        kl_mvn(np.zeros(2), np.eye(2), np.zeros(2), np.zeros((2, 3)))
    with _raises_naming("(3,)", "(2,)"):
        kl_mvn(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with _raises_naming("(4, 2)", "(3, 2)"):
        kl_mvn(np.zeros((4, 2)), np.eye(2), np.zeros((3, 2)), np.eye(2))
    with _raises_naming("(3,)", "(2,)"):
        kl_categorical(np.ones(3) / 3, np.ones(2) / 2)
    with _raises_naming("(4, 2)", "(3, 2)"):
        kl_categorical(np.ones((4, 2)) / 2, np.ones((3, 2)) / 2)
    with _raises_naming("(10, 2)", "(9,)"):
        kl_monte_carlo(np.zeros((10, 2)), lambda z: np.zeros(9), lambda z: np.zeros(9))
    with _raises_naming("(10,)", "(10, 1)"):
        kl_monte_carlo(np.zeros((10, 2)), lambda z: np.zeros(10), lambda z: np.zeros((10, 1)))
    with _raises_naming("(1, 2)", "n >= 2"):
        kl_monte_carlo(np.zeros((1, 2)), lambda z: np.zeros(1), lambda z: np.zeros(1))


def test_non_positive_definite_covariance_is_an_error_naming_the_argument():
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])  # eigenvalues 2 and 0
    with _raises_naming("cov_p", "positive definite"):
        kl_mvn(np.zeros(2), np.eye(2), np.zeros(2), indefinite)
    with _raises_naming("cov_q", "positive definite"):
        kl_mvn(np.zeros(2), singular, np.zeros(2), np.eye(2))
    with _raises_naming("cov_q", "positive definite", "batch index (1,)"):
        kl_mvn(np.zeros(2), np.stack([np.eye(2), -np.eye(2)]), np.zeros(2), np.eye(2))
    with _raises_naming("cov_q", "symmetric"):
        kl_mvn(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with _raises_naming("cov_p", "NaN"):
        kl_mvn(np.zeros(2), np.eye(2), np.zeros(2), np.full((2, 2), np.nan))
    # Documented behaviour under jit: the values are tracers, cholesky yields NaN, no error.
    assert bool(np.isnan(jax.jit(kl_mvn)(np.zeros(2), np.eye(2), np.zeros(2), indefinite)))


def test_bad_probability_vectors_are_errors_naming_the_argument():
    uniform = np.ones(2) / 2
    with _raises_naming("p", "negative"):
        kl_categorical(np.array([-0.1, 1.1]), uniform)
    with _raises_naming("q", "sum to 1.1"):
        kl_categorical(uniform, np.array([0.5, 0.6]))
    with _raises_naming("q", "sum to 0.5"):
        kl_categorical(uniform, np.array([[0.5, 0.5], [0.2, 0.3]]))
    with _raises_naming("p", "NaN"):
        kl_categorical(np.array([np.nan, 1.0]), uniform)
    # Rounding-level deviations are accepted (float32 softmax outputs never sum to exactly 1).
    assert bool(np.isfinite(kl_categorical(jax.nn.softmax(np.arange(50.0) / 7), np.ones(50) / 50)))


# ------------------------------------------------------- issue 16: legal inputs, never NaN
@pytest.mark.parametrize("log_var", [-100.0, -89.0, -200.0])
def test_identical_tiny_variance_gaussians_have_zero_kl(log_var):
    # q = p = N(0, e^log_var): exp(-log_var) overflows float32, 0 * inf used to give NaN.
    value = kl_diag_gaussians(np.zeros(3), np.full(3, log_var), 0.0, log_var)
    assert float(value) == 0.0
    grads = jax.grad(lambda m, lv: kl_diag_gaussians(m, lv, 0.0, log_var), argnums=(0, 1))(
        jnp.zeros(3), jnp.full(3, log_var)
    )
    for g in grads:
        np.testing.assert_array_equal(g, np.zeros(3))


def test_kl_against_a_tiny_prior_variance_is_infinite_not_nan():
    # Exact value 1/2 (e^100 - 1 - 100) per dimension: beyond float32, so +inf.
    assert float(kl_diag_gaussians(np.zeros(2), np.zeros(2), 0.0, -100.0)) == np.inf
    with jax.enable_x64(True):  # representable in float64: the exact value
        value = kl_diag_gaussians(np.zeros(2), np.zeros(2), 0.0, -100.0)
        np.testing.assert_allclose(float(value), np.expm1(100.0) - 100.0, rtol=1e-12)


def test_mean_term_outside_the_float32_exponent_range_is_exact():
    # (mu_q - mu_p)^2 / sigma_p^2 with exp(-log_var_p) overflowing (200) or underflowing
    # (-100) float32, and a squared difference that underflows (1e-30^2) or overflows.
    cases = [(1e-30, -200.0), (1e30, 100.0), (1e-25, -85.0)]
    for diff, log_var in cases:
        value = kl_diag_gaussians(np.array([diff]), np.array([log_var]), 0.0, log_var)
        exact = 0.5 * math.exp(2 * math.log(diff) - log_var)
        np.testing.assert_allclose(float(value), exact, rtol=1e-5)


def test_ordinary_inputs_are_unchanged():
    # The stable rewrite keeps the direct product (mu_q - mu_p)^2 * exp(-log_var_p)
    # wherever both factors are normal floats: the formula it replaced, up to the last bit
    # (XLA may fuse and order the float32 operations differently).
    rng = np.random.default_rng(16)
    mq, mp = (rng.normal(size=(50, 4)).astype(np.float32) for _ in range(2))
    lq, lp = (rng.uniform(-30, 30, size=(50, 4)).astype(np.float32) for _ in range(2))
    r = lq - lp
    old = jax.jit(
        lambda: jnp.sum(
            0.5 * (jnp.expm1(r) - r + jnp.square(jnp.asarray(mq - mp)) * jnp.exp(-lp)), axis=-1
        )
    )()
    np.testing.assert_allclose(kl_diag_gaussians(mq, lq, mp, lp), old, rtol=2.5e-7, atol=0)


def test_kl_mvn_refuses_dimension_zero_and_float16():
    with _raises_naming("d >= 1", "(0,)"):
        kl_mvn(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)))
    half = np.float16
    with pytest.raises(TypeError, match="float32 and float64 only.*mean_q is float16"):
        kl_mvn(np.zeros(2, half), np.eye(2, dtype=half), np.zeros(2, half), np.eye(2, dtype=half))


def test_ragged_input_is_named():
    with _raises_naming("mean_q is not a rectangular array", "ragged list"):
        kl_diag_gaussians([[0.0, 1.0], [0.0]], [0.0, 0.0])
    with pytest.raises(TypeError, match="p must hold numbers"):
        kl_categorical(np.array(["a", "b"]), [0.5, 0.5])


def test_float64_sum_error_shows_the_difference():
    with jax.enable_x64(True), _raises_naming("sum to 1.00000001999", "1 + 2e-08", "1.49e-08"):
        kl_categorical(np.array([0.5, 0.5 + 2e-8]), np.array([0.5, 0.5]))


# ------------------------------------------------- issue 16 review: non-finite and complex
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("argument", ["mean_q", "log_var_q", "mean_p", "log_var_p"])
def test_kl_diag_refuses_non_finite_inputs_naming_argument_and_batch_index(argument, bad):
    arrays = {name: np.zeros((3, 2), np.float32) for name in ("mean_q", "log_var_q")}
    arrays |= {"mean_p": np.zeros(2, np.float32), "log_var_p": np.zeros((3, 2), np.float32)}
    arrays[argument][..., -1] = bad  # the last entry of every row (one p row for mean_p)
    if arrays[argument].ndim == 2:
        arrays[argument][:2] = 0.0  # only row 2 is bad
    where = r" at batch index \(2,\)" if arrays[argument].ndim == 2 else ""
    with pytest.raises(ValueError, match=rf"{argument} must be finite, got -?(inf|nan){where}"):
        kl_diag_gaussians(**arrays)


def test_kl_diag_non_finite_check_does_not_touch_traced_inputs():
    # Under jit the values are unknown: no error, and finite inputs give the closed form.
    mean_q, log_var_q = np.array([[0.5, -1.0]]), np.array([[0.3, -0.2]])
    expected = 0.5 * np.sum(mean_q**2 + np.exp(log_var_q) - 1.0 - log_var_q, axis=-1)
    np.testing.assert_allclose(jax.jit(kl_diag_gaussians)(mean_q, log_var_q), expected, rtol=1e-6)


@pytest.mark.parametrize("argument", ["mean_q", "log_var_q"])
def test_complex_input_is_refused_not_truncated(argument):
    arrays = {"mean_q": np.zeros(2), "log_var_q": np.zeros(2)}
    arrays[argument] = np.array([1.0 + 2.0j, 0.0])
    with pytest.raises(TypeError, match=rf"{argument} must hold real numbers, got complex"):
        kl_diag_gaussians(**arrays)
