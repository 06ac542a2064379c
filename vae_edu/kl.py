"""Kullback-Leibler divergences.

KL(q || p) = E_q[log q(z) - log p(z)] >= 0, with equality iff q = p.

* :func:`kl_diag_gaussians`  closed form for diagonal Gaussians (the VAE regulariser).
* :func:`kl_mvn`             closed form for full-covariance Gaussians, via Cholesky factors.
* :func:`kl_categorical`     discrete distributions on a finite set.
* :func:`kl_monte_carlo`     the sample average of log q(z) - log p(z), with a standard error.

All closed forms work on log-variances or Cholesky factors (never inverses or
determinants), so that extreme but legal inputs (log-variances in [-30, 30]) neither
overflow nor produce NaN; further out (e.g. log-variances of -100) the diagonal
Gaussian KL gives the right value or +inf, never NaN.

Input checks that need the *values* of an array (is this covariance positive definite?
is this a probability vector?) run only when the values are concrete, i.e. in a plain
call. Under ``jax.jit``, ``jax.vmap`` or ``jax.grad`` the arrays are tracers whose values
do not exist yet; there the checks are skipped (a non-positive-definite covariance then
gives NaN, a vector that is not normalised a meaningless number), as documented in each
function. Shape checks always run (shapes are static).

The arithmetic behind each public function is a small jitted private function, so a plain
call compiles once per input shape instead of dispatching operation by operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp, rel_entr
from jax.scipy.stats import norm

from vae_edu import _checks
from vae_edu.estimate import Estimate, mean_and_standard_error
from vae_edu.optimize import lbfgs_minimize

__all__ = [
    "kl_categorical",
    "kl_diag_gaussians",
    "kl_monte_carlo",
    "kl_mvn",
]


def _tolerance(dtype) -> float:
    """Relative tolerance for "equal up to rounding" checks: sqrt(machine epsilon)."""
    return float(np.sqrt(np.finfo(dtype).eps))


def kl_diag_gaussians(mean_q, log_var_q, mean_p=0.0, log_var_p=0.0):
    r"""KL(q || p) between diagonal Gaussians, summed over the last axis.

    With q = N(mu_q, diag sigma_q^2) and p = N(mu_p, diag sigma_p^2) in d dimensions:

        KL(q || p) = 1/2 * sum_j [ log(sigma_p^2 / sigma_q^2)
                                   + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1 ]

    With the defaults p = N(0, I) this is the VAE's regulariser (Kingma & Welling 2014,
    appendix B; Odaibo 2019):

        KL(q || N(0, I)) = 1/2 * sum_j ( mu_j^2 + sigma_j^2 - 1 - log sigma_j^2 )

    Note the order of the terms: the form 1/2 sum(1 + log sigma^2 - mu^2 - sigma^2) that
    circulates in lecture notes is *minus* the KL (it is the term added to the ELBO).

    Computed as (r_j = log sigma_q,j^2 - log sigma_p,j^2, the difference of log-variances)

        KL(q || p) = 1/2 * sum_j [ expm1(r_j) - r_j + (mu_q,j - mu_p,j)^2 / sigma_p,j^2 ],

    the same equation with sigma_q^2 / sigma_p^2 = exp(r) and log(sigma_p^2 / sigma_q^2)
    = -r: the variance ratio comes from a difference of logs, never from two huge or tiny
    exponentials, and the mean term is 0 when the means agree (not 0 * inf). So any finite
    log-variances give the right value or +inf, never NaN: q = p = N(0, e^-100) gives
    exactly 0, log_var_q = 0 against log_var_p = -100 gives +inf in float32 (the exact
    value, e^100 / 2, exceeds the largest float32).

    Args:
      mean_q: (..., d) mean of q.
      log_var_q: (..., d) log-variance log sigma_q^2 of q.
      mean_p: mean of p, broadcastable to (..., d). Default 0.
      log_var_p: log-variance of p, broadcastable to (..., d). Default 0 (unit variance).

    Returns:
      (...) the KL divergence in nats, one value per leading index.

    Raises:
      TypeError: an argument that is not real numbers (e.g. complex; names it).
      ValueError: if the arguments have no event axis or do not broadcast (names the shapes);
        if an argument is concrete (not traced under jit / vmap / grad) and holds NaN or
        inf (names the argument and the batch index). Under a transformation a NaN or
        inf input gives a NaN or inf KL.
    """
    mean_q = _checks.as_float(mean_q, "mean_q")
    log_var_q = _checks.as_float(log_var_q, "log_var_q")
    mean_p = _checks.as_float(mean_p, "mean_p")
    log_var_p = _checks.as_float(log_var_p, "log_var_p")
    _checks.at_least_1d(mean_q, "mean_q")
    _checks.same_shape(mean_q, log_var_q, "mean_q", "log_var_q")
    _checks.broadcast_shape(mean_q=mean_q, mean_p=mean_p, log_var_p=log_var_p)
    if jnp.ndim(mean_p) > jnp.ndim(mean_q) or jnp.ndim(log_var_p) > jnp.ndim(mean_q):
        # p may broadcast *into* q's shape, never add axes the caller did not ask for.
        raise ValueError(
            f"mean_p {jnp.shape(mean_p)} / log_var_p {jnp.shape(log_var_p)} have more axes "
            f"than mean_q {jnp.shape(mean_q)}"
        )
    for name, arr in (
        ("mean_q", mean_q),
        ("log_var_q", log_var_q),
        ("mean_p", mean_p),
        ("log_var_p", log_var_p),
    ):
        _checks.finite(arr, name)
    return _kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p)


def squared_over_variance(diff, log_var):
    r"""(diff^2) / exp(log_var), elementwise, without ever forming 0 * inf or inf / inf.

        diff^2 / sigma^2 = diff^2 * exp(-log_var)                   (ordinary inputs)
                         = exp(2 log|diff| - log_var)              (extreme inputs)
                         = 0                                        (diff = 0)

    The direct product is used wherever both factors are normal finite floats, so ordinary
    inputs give exactly what ``jnp.square(diff) * jnp.exp(-log_var)`` gives. Where
    exp(-log_var) overflows or underflows (log_var outside about [-87, 87] in float32) or
    diff^2 does, the log form is used: it is the exact value (or +inf when that exceeds the
    largest float), never NaN. diff = 0 gives 0 for any finite log_var, where the direct
    form would give 0 * inf = NaN once exp(-log_var) overflows.

    Gradients are finite wherever the value is: each branch only sees safe substitute
    inputs where it is not selected (the ``jnp.where`` double-where pattern), and at
    diff = 0 the derivative is the exact 2 diff / sigma^2 = 0.
    """
    dtype = jnp.result_type(diff, log_var)
    tiny = jnp.finfo(dtype).tiny
    inverse_variance = jnp.exp(-log_var)
    square = jnp.square(diff)
    zero = diff == 0
    direct = (
        jnp.isfinite(inverse_variance)
        & (inverse_variance >= tiny)
        & jnp.isfinite(square)
        & ((square >= tiny) | zero)
    )
    use_log = ~direct & ~zero
    direct_value = jnp.square(jnp.where(direct, diff, 0.0)) * jnp.exp(
        -jnp.where(direct, log_var, 0.0)
    )
    safe_diff = jnp.where(use_log, diff, 1.0)
    log_value = jnp.exp(2.0 * jnp.log(jnp.abs(safe_diff)) - jnp.where(use_log, log_var, 0.0))
    return jnp.where(direct, direct_value, jnp.where(use_log, log_value, 0.0))


@jax.jit
def _kl_diag_gaussians(mean_q, log_var_q, mean_p, log_var_p):
    """The arithmetic of :func:`kl_diag_gaussians` on validated arrays."""
    # Everything as differences of logs (see kl_diag_gaussians' docstring):
    # sigma_q^2/sigma_p^2 - 1 - log(sigma_q^2/sigma_p^2) = expm1(r) - r with r = log_var_q -
    # log_var_p, so the ratio is formed from the *difference* of the log-variances (never
    # e^-100 / e^-100); expm1 keeps this term accurate (and >= 0) when q and p are close.
    # The mean term (mu_q - mu_p)^2 / sigma_p^2 is squared_over_variance: 0 when the means
    # agree, whatever log_var_p, instead of 0 * exp(100) = 0 * inf = NaN.
    log_ratio = log_var_q - log_var_p
    per_dim = 0.5 * (
        jnp.expm1(log_ratio) - log_ratio + squared_over_variance(mean_q - mean_p, log_var_p)
    )
    return jnp.sum(per_dim, axis=-1)


_MVN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_mvn_shapes(mean, cov, mean_name: str, cov_name: str) -> None:
    """Raises a ValueError (naming both shapes) unless mean is (..., d) and cov (..., d, d)."""
    _checks.at_least_1d(mean, mean_name)
    mean_shape, cov_shape = jnp.shape(mean), jnp.shape(cov)
    if len(cov_shape) < 2 or cov_shape[-1] != cov_shape[-2] or cov_shape[-1] != mean_shape[-1]:
        raise ValueError(
            f"{mean_name} has shape {mean_shape} but {cov_name} has shape {cov_shape}; "
            f"expected {mean_name} (..., d) and {cov_name} (..., d, d) with the same d"
        )


def _check_covariance_values(cov, name: str) -> None:
    """If ``cov`` is concrete, a ValueError unless it is finite and symmetric."""
    concrete = _checks.concrete(cov)
    if concrete is None:
        return
    if not np.all(np.isfinite(concrete)):
        raise ValueError(f"{name} contains NaN or inf")
    scale = np.max(np.abs(concrete), axis=(-2, -1))
    asymmetry = np.max(np.abs(concrete - np.swapaxes(concrete, -1, -2)), axis=(-2, -1))
    not_symmetric = asymmetry > _tolerance(concrete.dtype) * scale
    if np.any(not_symmetric):
        raise ValueError(
            f"{name} is not symmetric{_checks.batch_index(not_symmetric)}: "
            "a covariance matrix must equal its transpose"
        )


def _check_cholesky_factor(factor, name: str) -> None:
    """If ``factor`` is concrete, a ValueError unless the factorisation of ``name`` succeeded."""
    values = _checks.concrete(factor)
    if values is None:
        return
    diagonal = np.diagonal(values, axis1=-2, axis2=-1)
    # NaN where a pivot went negative; a zero pivot means a singular (semi-definite) matrix.
    failed = ~np.all(np.isfinite(values), axis=(-2, -1)) | np.any(diagonal <= 0, axis=-1)
    if np.any(failed):
        raise ValueError(
            f"{name} is not positive definite{_checks.batch_index(failed)}: its Cholesky "
            "factorisation failed (a covariance needs all eigenvalues > 0, numerically "
            "well above rounding)"
        )


def _mvn_batch_shape(mean_q, cov_q, mean_p, cov_p) -> tuple[int, ...]:
    """The broadcast of the leading (batch) axes of two Gaussians' parameters."""
    return np.broadcast_shapes(
        mean_q.shape[:-1], cov_q.shape[:-2], mean_p.shape[:-1], cov_p.shape[:-2]
    )


def kl_mvn(mean_q, cov_q, mean_p, cov_p):
    r"""KL(q || p) between full-covariance Gaussians q = N(mu_q, S_q), p = N(mu_p, S_p).

        KL(q || p) = 1/2 [ tr(S_p^{-1} S_q) + (mu_p - mu_q)^T S_p^{-1} (mu_p - mu_q)
                           - d + log det S_p - log det S_q ]

    computed from the Cholesky factors S = L L^T without any inverse or determinant:

        tr(S_p^{-1} S_q)          = || L_p^{-1} L_q ||_F^2          (triangular solve)
        (mu_p - mu_q)^T S_p^{-1} (.) = || L_p^{-1} (mu_p - mu_q) ||^2
        log det S                 = 2 sum_j log L_jj

    With diagonal covariances this reduces to :func:`kl_diag_gaussians`.

    Leading (batch) axes broadcast against each other, e.g. a batch of q's against one p.

    Args:
      mean_q: (..., d) mean of q.
      cov_q: (..., d, d) symmetric positive-definite covariance of q.
      mean_p: (..., d) mean of p.
      cov_p: (..., d, d) symmetric positive-definite covariance of p.

    Returns:
      (...) the KL divergence in nats, one value per broadcast leading index.

    Raises:
      TypeError: if an argument is not float32 or float64 (e.g. float16: there is no
        half-precision Cholesky factorisation); the message names the argument.
      ValueError: if a mean is not (..., d) or a covariance not (..., d, d) with the same d,
        if d = 0, or the leading axes do not broadcast (the message names the shapes); if the inputs
        are concrete and a covariance contains NaN/inf, is not symmetric, or is not
        positive definite (the message names the argument, ``cov_q`` or ``cov_p``).

    Under ``jax.jit`` / ``vmap`` / ``grad`` the covariances are tracers and cannot be
    inspected: ``jnp.linalg.cholesky`` then returns NaN for a non-positive-definite
    matrix instead of raising, so the KL comes out NaN. Call once without transformations
    (or use ``jax.experimental.checkify``) to get the error.
    """
    mean_q = _checks.as_float(mean_q, "mean_q")
    cov_q = _checks.as_float(cov_q, "cov_q")
    mean_p = _checks.as_float(mean_p, "mean_p")
    cov_p = _checks.as_float(cov_p, "cov_p")
    _check_mvn_shapes(mean_q, cov_q, "mean_q", "cov_q")
    _check_mvn_shapes(mean_p, cov_p, "mean_p", "cov_p")
    for name, arr in (("mean_q", mean_q), ("cov_q", cov_q), ("mean_p", mean_p), ("cov_p", cov_p)):
        if arr.dtype not in _MVN_DTYPES:
            raise TypeError(
                f"kl_mvn supports float32 and float64 only (the Cholesky factorisation has "
                f"no {arr.dtype} kernel); {name} is {arr.dtype}: convert it with "
                f".astype(jnp.float32)"
            )
    if jnp.shape(mean_q)[-1] != jnp.shape(mean_p)[-1]:
        raise ValueError(
            f"mean_q has shape {jnp.shape(mean_q)} but mean_p has shape {jnp.shape(mean_p)}; "
            "q and p must live in the same dimension d"
        )
    if jnp.shape(mean_q)[-1] == 0:
        raise ValueError(
            f"mean_q has shape {jnp.shape(mean_q)}: kl_mvn needs dimension d >= 1 (a Gaussian "
            "on a 0-dimensional space has no covariance to factorise)"
        )
    try:
        _mvn_batch_shape(mean_q, cov_q, mean_p, cov_p)
    except ValueError:
        arrays = {"mean_q": mean_q, "cov_q": cov_q, "mean_p": mean_p, "cov_p": cov_p}
        listed = ", ".join(f"{name} has shape {a.shape}" for name, a in arrays.items())
        raise ValueError(f"leading (batch) axes do not broadcast: {listed}") from None
    _check_covariance_values(cov_q, "cov_q")
    _check_covariance_values(cov_p, "cov_p")
    kl, chol_q, chol_p = _kl_mvn_and_cholesky_factors(mean_q, cov_q, mean_p, cov_p)
    _check_cholesky_factor(chol_q, "cov_q")
    _check_cholesky_factor(chol_p, "cov_p")
    return kl


@jax.jit
def _kl_mvn_and_cholesky_factors(mean_q, cov_q, mean_p, cov_p):
    """The arithmetic of :func:`kl_mvn`; also returns the factors L_q, L_p for checking."""
    chol_q = jnp.linalg.cholesky(cov_q)
    chol_p = jnp.linalg.cholesky(cov_p)
    d = mean_q.shape[-1]
    batch = _mvn_batch_shape(mean_q, cov_q, mean_p, cov_p)
    factor_q = jnp.broadcast_to(chol_q, (*batch, d, d))
    factor_p = jnp.broadcast_to(chol_p, (*batch, d, d))
    diff = jnp.broadcast_to(mean_p - mean_q, (*batch, d))

    scaled_factor_q = solve_triangular(factor_p, factor_q, lower=True)  # L_p^{-1} L_q
    scaled_diff = solve_triangular(factor_p, diff[..., None], lower=True)  # L_p^{-1} (mu_p - mu_q)
    trace_term = jnp.sum(jnp.square(scaled_factor_q), axis=(-2, -1))
    mahalanobis = jnp.sum(jnp.square(scaled_diff), axis=(-2, -1))
    # log det S_p - log det S_q = 2 sum_j log(L_p,jj / L_q,jj).
    log_det_ratio = 2.0 * jnp.sum(
        jnp.log(jnp.diagonal(factor_p, axis1=-2, axis2=-1))
        - jnp.log(jnp.diagonal(factor_q, axis1=-2, axis2=-1)),
        axis=-1,
    )
    return 0.5 * (trace_term + mahalanobis - d + log_det_ratio), chol_q, chol_p


def _check_probability_vectors(x, name: str) -> None:
    """If ``x`` is concrete, a ValueError unless every row (last axis) is a probability vector."""
    concrete = _checks.concrete(x)
    if concrete is None:
        return
    if not np.all(np.isfinite(concrete)):
        raise ValueError(f"{name} is not a probability vector: it contains NaN or inf")
    if np.any(concrete < 0):
        raise ValueError(
            f"{name} is not a probability vector: it has negative entries "
            f"(smallest {concrete.min():.3g})"
        )
    sums = concrete.sum(axis=-1)
    tolerance = _tolerance(concrete.dtype)
    off = np.abs(sums - 1.0) > tolerance
    if np.any(off):
        bad_sum = np.atleast_1d(sums)[np.atleast_1d(off)][0]
        # str of a NumPy float is the shortest text that round-trips in its dtype, so a sum
        # of 1 + 2e-8 in float64 never prints as "1" next to "not 1".
        raise ValueError(
            f"{name} is not a probability vector: its entries along the last axis sum to "
            f"{str(bad_sum)} (1 {'+' if bad_sum > 1 else '-'} {abs(float(bad_sum) - 1):.3g}), "
            f"not 1 "
            f"(tolerance {tolerance:.3g}); normalise it first"
        )


def kl_categorical(p, q):
    r"""KL(p || q) between discrete distributions on {1, ..., K}, over the last axis.

        KL(p || q) = sum_k p_k log(p_k / q_k)

    with the conventions 0 log(0 / q) = 0 (for q >= 0) and p log(p / 0) = +inf (p > 0):
    mass where q has none makes the divergence infinite. Each term is
    ``jax.scipy.special.rel_entr(p_k, q_k)``, which selects the three cases with masks
    *before* taking logarithms, so no 0 * log 0 is ever evaluated.

    Gradients: where p_k = 0 the term is the constant 0, so its gradient (with respect to
    p_k and q_k) is 0, never NaN; d/dq_k = -p_k / q_k elsewhere. (The one-sided derivative
    of p log p at p = 0 is -inf; the masked form reports 0 there instead.)

    Subnormal probabilities: XLA on the CPU flushes subnormal floats to zero (for float32,
    values below about 1.2e-38), so a q_k that small counts as q_k = 0 and a p_k > 0 facing
    it gives +inf. Use float64 (``jax.experimental.enable_x64``) if such tiny masses matter.

    Args:
      p: (..., K) probabilities of the first argument (rows sum to 1).
      q: (..., K) probabilities of the second argument; leading axes broadcast with p's.

    Returns:
      (...) the KL divergence in nats (possibly +inf), one value per leading index.

    Raises:
      ValueError: if p or q has no event axis, their last axes differ or their leading axes
        do not broadcast (names both shapes); if the inputs are concrete and a row has
        NaN/inf or negative entries or does not sum to 1 within sqrt(machine epsilon).
        Under jit / vmap / grad these value checks are skipped (the values are tracers).
    """
    p = _checks.as_float(p, "p")
    q = _checks.as_float(q, "q")
    _checks.at_least_1d(p, "p")
    _checks.at_least_1d(q, "q")
    if jnp.shape(p)[-1] != jnp.shape(q)[-1]:
        raise ValueError(
            f"p has shape {jnp.shape(p)} but q has shape {jnp.shape(q)}; "
            "their last (category) axes must have the same length"
        )
    _checks.broadcast_shape(p=p, q=q)
    _check_probability_vectors(p, "p")
    _check_probability_vectors(q, "q")
    return _kl_categorical(p, q)


@jax.jit
def _kl_categorical(p, q):
    """The arithmetic of :func:`kl_categorical` on validated arrays."""
    return jnp.sum(rel_entr(p, q), axis=-1)


def kl_monte_carlo(samples_q, log_q: Callable, log_p: Callable) -> Estimate:
    r"""Monte Carlo estimate of KL(q || p) from draws z_1, ..., z_n ~ q.

        KL(q || p) ~= (1/n) sum_i [ log q(z_i) - log p(z_i) ]
        std_error   = sqrt( 1/(n-1) sum_i (r_i - mean(r))^2 ) / sqrt(n)

    with r_i = log q(z_i) - log p(z_i).

    Unbiased for any q and p; use it when no closed form exists. The standard error says
    how far the estimate typically is from the exact value (CLT). If the z_i are
    reparameterised (z = mu + sigma * eps), gradients flow through the estimate.

    Args:
      samples_q: (n, ...) draws from q, the sample axis first; n >= 2.
      log_q: callable mapping the (n, ...) samples to log q(z_i), shape (n, ...).
      log_p: callable mapping the (n, ...) samples to log p(z_i), same shape as log_q's.

    Returns:
      ``vae_edu.estimate.Estimate(mean, std_error)``, each of the shape of
      log_q(samples_q) without its leading sample axis (a NamedTuple: ``est, se =
      kl_monte_carlo(...)`` unpacks it). mean +- 2 std_error covers the exact value about
      95% of the time.

    Raises:
      ValueError: if there are fewer than 2 samples, or log_q / log_p return arrays whose
        shapes differ or whose leading axis is not the sample axis (names the shapes).
    """
    samples_q = jnp.asarray(samples_q)
    if samples_q.ndim < 1 or samples_q.shape[0] < 2:
        raise ValueError(
            f"samples_q has shape {samples_q.shape}; need the sample axis first with n >= 2 "
            "samples to estimate a standard error"
        )
    n = samples_q.shape[0]
    log_q_values = _checks.as_float(log_q(samples_q), "log_q(samples_q)")
    log_p_values = _checks.as_float(log_p(samples_q), "log_p(samples_q)")
    _checks.same_shape(log_q_values, log_p_values, "log_q(samples_q)", "log_p(samples_q)")
    if log_q_values.ndim < 1 or log_q_values.shape[0] != n:
        raise ValueError(
            f"samples_q has shape {samples_q.shape} but log_q(samples_q) has shape "
            f"{log_q_values.shape}; the log densities must keep the leading sample axis ({n})"
        )
    return mean_and_standard_error(log_q_values - log_p_values)


# --------------------------------------------------------------------------------------
# Lessons of notebook 02: KL by quadrature, forward against reverse KL for a mixture.
#
# The integrals over x are trapezoidal quadrature on a fixed grid (QUADRATURE_GRID); the
# best single Gaussian for each direction is found by L-BFGS (vae_edu.optimize) on
# gradients from jax.grad.
# --------------------------------------------------------------------------------------

__all__ += [
    "QUADRATURE_GRID",
    "ForwardReverseFits",
    "GaussianFit",
    "StandardNormalKL",
    "fit_forward_reverse",
    "kl_on_grid",
    "kl_to_standard_normal",
    "mixture_log_density",
]

# x-grid for every integral of the lesson: [-25, 25] in steps of 0.01. Wide enough that
# the mixtures (components at +-separation/2 <= +-5, unit variance) and every Gaussian the
# fits can reach have negligible mass outside it, fine enough that the trapezoid rule is
# accurate to far better than the 3-4 decimals the notebook prints.
QUADRATURE_GRID = np.linspace(-25.0, 25.0, 5001)

# Candidate initial means for the reverse-KL fit (see fit_forward_reverse).
_REVERSE_INIT_MEANS = np.linspace(-8.0, 8.0, 161)
_LBFGS_STEPS = 60


class GaussianFit(NamedTuple):
    """A fitted univariate Gaussian N(mean, std^2) and the KL value it reached (nats)."""

    mean: float
    std: float
    kl: float


class ForwardReverseFits(NamedTuple):
    """The two best single-Gaussian approximations q of a mixture p.

    Attributes:
      forward: argmin_q KL(p || q) and the minimum (mass-covering; equals moment matching).
      reverse: argmin_q KL(q || p) and the minimum (mode-seeking).
    """

    forward: GaussianFit
    reverse: GaussianFit


class StandardNormalKL(NamedTuple):
    """KL(q || N(0, 1)) of q = N(mu, sigma^2), two ways (Python floats, nats).

    Attributes:
      kl: the closed form (:func:`kl_diag_gaussians`).
      kl_quadrature: the area under the integrand q log(q / p) on :data:`QUADRATURE_GRID`.
    """

    kl: float
    kl_quadrature: float


def _check_mixture(separation, weight) -> None:
    if not np.isfinite(separation) or separation < 0:
        raise ValueError(f"separation must be a finite number >= 0, got {separation}")
    if not 0.0 < weight < 1.0:
        raise ValueError(f"weight must lie strictly between 0 and 1, got {weight}")


def mixture_log_density(x, separation, weight=0.5):
    r"""Log-density of the two-component mixture used in the forward/reverse demo.

        p(x) = (1 - w) N(x; -s/2, 1) + w N(x; s/2, 1)

    computed as a logsumexp of the weighted component log-densities (no underflow far in
    the tails). Its mean is (2w - 1) s/2 and its variance 1 + w (1 - w) s^2.

    Args:
      x: (...) points at which to evaluate.
      separation: s >= 0, the distance between the two component means.
      weight: w in (0, 1), the weight of the right-hand component.

    Returns:
      (...) log p(x).
    """
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    half = 0.5 * separation
    left = jnp.log1p(-weight) + norm.logpdf(x, -half, 1.0)
    right = jnp.log(weight) + norm.logpdf(x, half, 1.0)
    return logsumexp(jnp.stack([left, right]), axis=0)


def kl_on_grid(log_a, log_b, grid):
    r"""KL(a || b) = int a(x) (log a(x) - log b(x)) dx by the trapezoid rule on ``grid``.

    Args:
      log_a, log_b: (n,) log-densities tabulated on ``grid``.
      grid: (n,) increasing points x.

    Returns:
      () the quadrature value (nats).
    """
    return jnp.trapezoid(jnp.exp(log_a) * (log_a - log_b), grid)


@jax.jit
def _fit(separation, weight):
    grid = jnp.asarray(QUADRATURE_GRID)
    log_p = mixture_log_density(grid, separation, weight)

    def log_q(params):  # params = (mean, log_std)
        return norm.logpdf(grid, params[0], jnp.exp(params[1]))

    def forward(params):
        return kl_on_grid(log_p, log_q(params), grid)

    def reverse(params):
        return kl_on_grid(log_q(params), log_p, grid)

    # Forward KL is convex in (mean, log_std): any start reaches the optimum.
    forward_params = lbfgs_minimize(forward, jnp.zeros(2), _LBFGS_STEPS)

    # Reverse KL has one local minimum per mode, so start at the best unit-variance
    # Gaussian on a grid of means. With a symmetric mixture the two modes tie up to
    # rounding; taking the right-most candidate within 1e-5 of the best keeps the choice
    # identical on every machine.
    init_means = jnp.asarray(_REVERSE_INIT_MEANS)
    candidates = jax.vmap(lambda m: reverse(jnp.stack([m, 0.0])))(init_means)
    near_best = candidates <= jnp.min(candidates) + 1e-5
    start = init_means[jnp.max(jnp.where(near_best, jnp.arange(init_means.size), -1))]
    reverse_params = lbfgs_minimize(reverse, jnp.stack([start, 0.0]), _LBFGS_STEPS)

    return (forward_params, forward(forward_params), reverse_params, reverse(reverse_params))


def fit_forward_reverse(separation: float, weight: float = 0.5) -> ForwardReverseFits:
    r"""Fits one Gaussian q = N(m, s^2) to the mixture p of :func:`mixture_log_density`.

    Forward (inclusive) KL, mass-covering:

        q_fwd = argmin_q KL(p || q) = argmin_q int p(x) log(p(x) / q(x)) dx

    whose exact solution matches the moments of p (m = E_p[x], s^2 = Var_p[x]).

    Reverse (exclusive) KL, mode-seeking -- the direction a VAE's ELBO uses:

        q_rev = argmin_q KL(q || p) = argmin_q int q(x) log(q(x) / p(x)) dx

    Both integrals are trapezoidal quadrature on :data:`QUADRATURE_GRID`; both minimisations
    run 60 L-BFGS steps (:func:`vae_edu.optimize.lbfgs_minimize`) over (m, log s) with
    ``jax.grad`` gradients. The reverse fit starts at the best unit-variance Gaussian over a
    grid of means (ties go to the right-hand mode).

    Args:
      separation: s >= 0, distance between the mixture's component means (use s <= 10).
      weight: w in (0, 1), weight of the right-hand component.

    Returns:
      ForwardReverseFits(forward, reverse), each a GaussianFit(mean, std, kl) of Python floats.

    Raises:
      ValueError: if separation is negative or not finite, or weight is outside (0, 1).
    """
    _check_mixture(separation, weight)
    fwd, fwd_kl, rev, rev_kl = jax.device_get(_fit(float(separation), float(weight)))
    return ForwardReverseFits(
        forward=GaussianFit(float(fwd[0]), float(np.exp(fwd[1])), float(fwd_kl)),
        reverse=GaussianFit(float(rev[0]), float(np.exp(rev[1])), float(rev_kl)),
    )


def kl_to_standard_normal(mu, sigma) -> StandardNormalKL:
    r"""KL(q || N(0, 1)) for q = N(mu, sigma^2), by the closed form and by quadrature.

        KL(q || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)
                         = int q(x) log(q(x) / p(x)) dx

    The closed form is :func:`kl_diag_gaussians` with one dimension; the integral is
    :func:`kl_on_grid` on :data:`QUADRATURE_GRID`.

    Args:
      mu: mean of q.
      sigma: standard deviation of q, > 0.

    Returns:
      StandardNormalKL(kl, kl_quadrature) as Python floats.

    Raises:
      ValueError: if sigma is not a positive finite number.
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    log_var = 2.0 * np.log(sigma)
    kl = float(kl_diag_gaussians(jnp.array([mu]), jnp.array([log_var])))
    grid = jnp.asarray(QUADRATURE_GRID)
    log_q = norm.logpdf(grid, mu, sigma)
    kl_quadrature = float(kl_on_grid(log_q, norm.logpdf(grid, 0.0, 1.0), grid))
    return StandardNormalKL(kl, kl_quadrature)
