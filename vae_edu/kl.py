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

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import rel_entr

from vae_edu import _checks
from vae_edu.estimate import Estimate, mean_and_standard_error

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
