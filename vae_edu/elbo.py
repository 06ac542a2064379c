r"""The evidence lower bound (ELBO), its importance-weighted sharpening, and log p(x).

For a latent-variable model p(x, z) = p(x | z) p(z) and an approximate posterior
q(z | x) = N(mu, diag sigma^2) (the encoder's output), Jensen's inequality gives

    log p(x) >= E_q[log p(x | z)] - KL(q(z | x) || p(z)) =: ELBO(x),

and the gap is exactly KL(q(z | x) || p(z | x)) >= 0. The expectation is estimated with
L reparameterized samples z_l = mu + sigma * eps_l, eps_l ~ N(0, I) (Odaibo 2019, eq. 42):

    ELBO(x) ~= (1/L) sum_l log p(x | z_l) - KL(q(z | x) || p(z)),

and training minimises the loss -ELBO averaged over a mini-batch (Odaibo eq. 43).

Conventions, shared by every function here:

* Gaussians are parameterized by log-variances ``log_var = log sigma^2`` (never variances
  or standard deviations), Bernoulli decoders by logits. Every formula is written so that
  log-variances in [-30, 30] and logits in [-100, 100] give finite values *and* gradients;
  further out (e.g. a log-variance of -100) the Gaussian densities give the right value
  or an infinity, never NaN.
* The last axis is the event axis (data dimension D or latent dimension d) and is summed;
  leading axes are batch axes. Monte Carlo samples are stacked on a new leading axis.
* ``log_likelihood_fn`` is any callable mapping z of shape (L, ..., d) to log p(x | z) of
  shape (L, ...): typically ``lambda z: bernoulli_log_likelihood(x, decoder(z))``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu import _checks
from vae_edu.estimate import Estimate
from vae_edu.kl import kl_diag_gaussians, squared_over_variance

__all__ = [
    "ELBOTerms",
    "bernoulli_log_likelihood",
    "diag_gaussian_log_density",
    "elbo",
    "gaussian_log_likelihood",
    "iwae_bound",
    "log_evidence_importance_sampling",
    "log_evidence_prior_sampling",
    "reparameterize",
]

_LOG_2PI = math.log(2.0 * math.pi)
_KL_METHODS = ("closed_form", "monte_carlo")


class ELBOTerms(NamedTuple):
    """The ELBO and its two terms, one value per data point (shape (...)).

    Attributes:
      elbo: reconstruction - beta * kl, a lower bound on log p(x) when beta = 1.
      reconstruction: the Monte Carlo estimate (1/L) sum_l log p(x | z_l) of E_q[log p(x|z)].
      kl: KL(q(z | x) || p(z)), closed form or Monte Carlo (see ``elbo``'s kl_method).
    """

    elbo: jax.Array
    reconstruction: jax.Array
    kl: jax.Array


# --------------------------------------------------------------------------- validation


def _check_beta(beta):
    """``beta`` unchanged; TypeError unless it is a real scalar, ValueError if concrete and
    negative or not finite (the KL weight of the beta-VAE objective is a number >= 0)."""
    message = f"beta must be a real number (the KL weight), got {beta!r}"
    if isinstance(beta, (bool, np.bool_, str, bytes)):
        raise TypeError(message)
    values = None
    if isinstance(beta, jax.core.Tracer):  # under jit / vmap / grad: only dtype and shape
        dtype, shape = beta.dtype, beta.shape
    else:
        try:
            values = np.asarray(beta)
        except (TypeError, ValueError) as err:
            raise TypeError(message) from err
        dtype, shape = values.dtype, values.shape
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"beta must be a real number (the KL weight), got dtype {dtype}")
    if shape != ():
        raise ValueError(
            f"beta must be a scalar (one KL weight for every data point), got shape {shape}"
        )
    if values is not None and not np.isfinite(values):
        raise ValueError(f"beta must be finite (the KL weight), got {beta!r}")
    if values is not None and values < 0:
        raise ValueError(
            f"beta must be >= 0 (the KL weight; a negative weight rewards a large KL and "
            f"the objective has no maximum), got {beta!r}"
        )
    return beta


def _check_unit_interval(x, name: str) -> None:
    """If ``x`` is concrete, a ValueError unless every value lies in [0, 1] (NaN fails)."""
    values = _checks.concrete(x)
    if values is None:
        return  # values do not exist yet under jit / vmap / grad
    if values.size and not (values.min() >= 0.0 and values.max() <= 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1] (a Bernoulli outcome or probability), got min "
            f"{values.min()} and max {values.max()}; outside [0, 1] the Bernoulli "
            "log-likelihood is meaningless (it can even be positive)"
        )


def _check_event_axis(x, name_x: str, **others) -> tuple[int, ...]:
    """Broadcast shape of x with others; x sets the event axis, nobody may broadcast it.

    A (..., 1) data array silently broadcast against (..., 784) decoder outputs is a classic
    bug (it sums 784 copies of one pixel), so the event axis must come from ``x`` itself.
    """
    _checks.at_least_1d(x, name_x)
    shape = _checks.broadcast_shape(**{name_x: x}, **others)
    if shape[-1] != np.shape(x)[-1]:
        listed = ", ".join(f"{n} has shape {tuple(np.shape(a))}" for n, a in others.items())
        raise ValueError(
            f"{name_x} has shape {tuple(np.shape(x))} but {listed}: the last (event) axis of "
            f"{name_x} would be broadcast from {np.shape(x)[-1]} to {shape[-1]}"
        )
    return shape


def _check_gaussian_params(mean, log_var, name_mean: str = "mean", name_log_var: str = "log_var"):
    mean = _checks.as_float(mean, name_mean)
    log_var = _checks.as_float(log_var, name_log_var)
    _checks.at_least_1d(mean, name_mean)
    _checks.same_shape(mean, log_var, name_mean, name_log_var)
    return mean, log_var


def _evaluate_log_likelihood(log_likelihood_fn: Callable, z, *, strict: bool = True):
    """Calls log_likelihood_fn(z) and checks it returned one value per sample."""
    if not callable(log_likelihood_fn):
        raise TypeError(
            f"log_likelihood_fn must be callable z -> log p(x|z), got "
            f"{type(log_likelihood_fn).__name__}"
        )
    returned = log_likelihood_fn(z)
    try:
        log_lik = jnp.asarray(returned)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"log_likelihood_fn must return an array of log p(x|z) values, one per sample "
            f"(shape {z.shape[:-1]}), got {type(returned).__name__}"
        ) from err
    if not (
        jnp.issubdtype(log_lik.dtype, jnp.floating) or jnp.issubdtype(log_lik.dtype, jnp.integer)
    ):
        raise TypeError(
            f"log_likelihood_fn must return real numbers (log p(x|z)), got dtype {log_lik.dtype}"
        )
    expected = z.shape[:-1]
    ok = (
        log_lik.shape == expected
        if strict
        else (log_lik.ndim >= 1 and log_lik.shape[0] == z.shape[0])
    )
    if not ok:
        want = f"{expected}" if strict else f"({z.shape[0]}, ...)"
        raise ValueError(
            f"log_likelihood_fn returned shape {log_lik.shape} for z of shape {z.shape}; "
            f"expected {want}: one log p(x|z) per sample, the data axis already summed"
        )
    return log_lik


# ------------------------------------------------------------------ densities and sampling


@jax.jit
def _diag_normal_log_prob(x, mean, log_var):
    # -1/2 sum_j [log 2 pi + log sigma_j^2 + (x_j - mu_j)^2 / sigma_j^2]; the squared
    # residual over the variance is kl.squared_over_variance: (x - mu)^2 * exp(-log_var) for
    # ordinary inputs, exactly 0 when x = mu (not 0 * exp(89) = 0 * inf = NaN in float32),
    # and exp(2 log|x - mu| - log_var) (the right value or +inf) where exp(-log_var)
    # overflows or underflows.
    per_dim = _LOG_2PI + log_var + squared_over_variance(x - mean, log_var)
    return -0.5 * jnp.sum(per_dim, axis=-1)


def diag_gaussian_log_density(z, mean, log_var):
    r"""log N(z; mu, diag sigma^2), summed over the last axis.

        log N(z; mu, diag sigma^2) = -1/2 sum_j [ log(2 pi) + log sigma_j^2
                                                  + (z_j - mu_j)^2 / sigma_j^2 ]

    Args:
      z: (..., d) points at which to evaluate the density.
      mean: mean mu, broadcastable to z's shape; it may not broadcast z's last axis.
      log_var: log-variance log sigma^2, broadcastable likewise (a scalar means a shared,
        isotropic variance).

    Returns:
      (...) the log-density in nats (the broadcast shape of the arguments without its last
      axis).

    Raises:
      ValueError: if z is a scalar, the shapes do not broadcast, or z's last axis would be
        broadcast (the message names the shapes).
    """
    z = _checks.as_float(z, "z")
    mean = _checks.as_float(mean, "mean")
    log_var = _checks.as_float(log_var, "log_var")
    _check_event_axis(z, "z", mean=mean, log_var=log_var)
    _checks.finite(log_var, "log_var", event_axis=False)
    return _diag_normal_log_prob(z, mean, log_var)


def gaussian_log_likelihood(x, mean, log_var):
    r"""Gaussian decoder log-likelihood log p(x | z) = log N(x; mu(z), diag sigma^2(z)).

        log p(x | z) = -1/2 sum_j [ log(2 pi) + log sigma_j^2 + (x_j - mu_j)^2 / sigma_j^2 ]

    with the squared residual over the variance computed by
    :func:`vae_edu.kl.squared_over_variance`: (x_j - mu_j)^2 * exp(-log sigma_j^2) for
    ordinary inputs, exactly 0 where x_j = mu_j whatever the variance (not 0 * inf: x = mean
    with log_var = -89 gives the finite -1/2 sum(log 2 pi - 89)), and
    exp(2 log|x_j - mu_j| - log sigma_j^2) where exp(-log sigma_j^2) would overflow.

    summed over the data dimensions (last axis). With a fixed log_var this is, up to a
    constant, -||x - mu||^2 / (2 sigma^2): the "MSE loss" is this likelihood in disguise,
    and its weight against the KL is set by sigma^2.

    Args:
      x: (..., D) data.
      mean: (..., D) decoder mean mu(z); broadcasts against x (e.g. (L, ..., D) for L
        latent samples), but may not broadcast x's last axis.
      log_var: decoder log-variance, broadcastable to the same shape (scalar = shared).

    Returns:
      (...) log p(x | z) in nats, the broadcast shape of x and mean without the last axis.

    Raises:
      ValueError: if the shapes do not broadcast or would broadcast x's last axis.
    """
    x = _checks.as_float(x, "x")
    mean = _checks.as_float(mean, "mean")
    log_var = _checks.as_float(log_var, "log_var")
    _check_event_axis(x, "x", mean=mean, log_var=log_var)
    _checks.finite(log_var, "log_var", event_axis=False)
    return _diag_normal_log_prob(x, mean, log_var)


def bernoulli_log_likelihood(x, logits):
    r"""Bernoulli decoder log-likelihood from logits, summed over the data dimensions.

    With p_j = sigmoid(l_j) the probability that pixel j is on,

        log p(x | z) = sum_j [ x_j log p_j + (1 - x_j) log(1 - p_j) ]
                     = sum_j [ x_j log_sigmoid(l_j) + (1 - x_j) log_sigmoid(-l_j) ]
                     = -sum_j [ x_j softplus(-l_j) + (1 - x_j) softplus(l_j) ],

    which is minus the binary cross-entropy. The log-sigmoid form never evaluates
    log(0) (the naive log(sigmoid(l)) is -inf in float32 for l < -88), so values and
    gradients (d/dl = x - sigmoid(l)) are finite for any finite logit.

    Common mistake: x should be binary. For grey values in (0, 1) this is not a normalised
    density (see the continuous Bernoulli, Loaiza-Ganem & Cunningham 2019).

    Args:
      x: (..., D) binary data in {0, 1}.
      logits: (..., D) decoder logits l(z); broadcasts against x (e.g. (L, ..., D)), but
        may not broadcast x's last axis.

    Returns:
      (...) log p(x | z) in nats.

    Raises:
      ValueError: if the shapes do not broadcast or would broadcast x's last axis; if x is
        concrete (not traced under jit / vmap / grad) and has a value outside [0, 1] or NaN.
    """
    x = _checks.as_float(x, "x")
    logits = _checks.as_float(logits, "logits")
    _check_event_axis(x, "x", logits=logits)
    _check_unit_interval(x, "x")
    return _bernoulli_log_prob(x, logits)


@jax.jit
def _bernoulli_log_prob(x, logits):
    # -[x softplus(-l) + (1 - x) softplus(l)] (= x log_sigmoid(l) + (1 - x) log_sigmoid(-l)),
    # each term dropped where its weight x or 1 - x is 0: a logit of +inf then gives exactly
    # 0 for a pixel that is on (instead of 0 * inf = NaN) and -inf for one that is off.
    # The dropped branch sees logit 0 (the double-where pattern), so gradients stay finite.
    on, off = x > 0, x < 1
    term_on = x * jax.nn.softplus(-jnp.where(on, logits, 0.0))
    term_off = (1.0 - x) * jax.nn.softplus(jnp.where(off, logits, 0.0))
    per_dim = -(jnp.where(on, term_on, 0.0) + jnp.where(off, term_off, 0.0))
    return jnp.sum(per_dim, axis=-1)


@functools.partial(jax.jit, static_argnums=3)
def _draw(key, mean, log_var, num_samples):
    """Returns (z, eps) with z = mean + exp(log_var / 2) * eps; eps ~ N(0, I)."""
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    dtype = jnp.result_type(mean.dtype, log_var.dtype)
    eps = jax.random.normal(key, shape, dtype=dtype)
    return mean + jnp.exp(0.5 * log_var) * eps, eps


def reparameterize(key, mean, log_var, num_samples=None):
    r"""Reparameterized draws from q = N(mu, diag sigma^2) (Kingma & Welling 2014, sec. 2.4).

        z = mu + sigma * eps,   sigma = exp(log_var / 2),   eps ~ N(0, I)

    The randomness lives in eps, which does not depend on (mu, log_var), so z is a
    differentiable function of them: dz/dmu = 1 and dz/dlog_var = (z - mu) / 2. This is
    what lets gradients of E_q[f(z)] flow back into the encoder.

    Args:
      key: a jax.random key.
      mean: (...) mean mu (any shape, typically (..., d)).
      log_var: same shape as mean, log-variance log sigma^2.
      num_samples: None for one draw of shape mean.shape, or an int L >= 1 for L
        independent draws stacked on a new leading axis.

    Returns:
      z of shape mean.shape, or (num_samples, *mean.shape).

    Raises:
      ValueError: if mean and log_var differ in shape (names both) or num_samples < 1.
    """
    mean = _checks.as_float(mean, "mean")
    log_var = _checks.as_float(log_var, "log_var")
    _checks.same_shape(mean, log_var, "mean", "log_var")
    if num_samples is not None:
        num_samples = _checks.count(num_samples, "num_samples")
    z, _ = _draw(key, mean, log_var, num_samples)
    return z


@jax.jit
def _log_q_from_noise(eps, log_var):
    # log N(z; mu, sigma^2) at z = mu + sigma * eps equals -1/2 sum(log 2 pi + log_var + eps^2)
    # exactly. Computing (z - mu)^2 / sigma^2 instead would lose all precision when
    # |mu| >> sigma (log_var = -30), and it is the same function of (eps, mu, log_var), so
    # pathwise gradients are unchanged.
    return -0.5 * jnp.sum(_LOG_2PI + log_var + jnp.square(eps), axis=-1)


# ----------------------------------------------------------------------------- the ELBO


def elbo(
    key,
    mean,
    log_var,
    log_likelihood_fn,
    *,
    num_samples=1,
    beta=1.0,
    kl_method="closed_form",
    prior_mean=0.0,
    prior_log_var=0.0,
):
    r"""Monte Carlo ELBO with reparameterized samples (Odaibo 2019, eq. 42).

        ELBO(x) ~= (1/L) sum_{l=1}^L log p(x | z_l) - beta * KL(q(z | x) || p(z)),
        z_l = mu + sigma * eps_l,  eps_l ~ N(0, I),

    with q(z | x) = N(mu, diag sigma^2) and prior p(z) = N(prior_mean, diag
    exp(prior_log_var)). The training loss is -ELBO, averaged over the batch (Odaibo
    eq. 43). beta = 1 gives the ELBO proper (a lower bound on log p(x)); beta != 1 is the
    beta-VAE objective (Higgins et al. 2017), which is *not* a bound for beta < 1.

    KL estimators (``kl_method``):

    * "closed_form": the exact Gaussian KL (``vae_edu.kl.kl_diag_gaussians``).
    * "monte_carlo": (1/L) sum_l [log q(z_l | x) - log p(z_l)] with the same samples z_l;
      unbiased, noisier, and the only option for non-Gaussian priors or posteriors.

    Args:
      key: a jax.random key.
      mean: (..., d) encoder mean mu.
      log_var: (..., d) encoder log-variance log sigma^2.
      log_likelihood_fn: callable mapping z of shape (L, ..., d) to log p(x | z) of shape
        (L, ...), e.g. ``lambda z: bernoulli_log_likelihood(x, decoder(z))``.
      num_samples: L >= 1, samples per data point.
      beta: weight on the KL term (a float or a traced scalar).
      kl_method: "closed_form" or "monte_carlo".
      prior_mean: prior mean, broadcastable to (..., d). Default 0.
      prior_log_var: prior log-variance, broadcastable to (..., d). Default 0.

    Returns:
      ELBOTerms(elbo, reconstruction, kl), each of shape (...).

    Raises:
      ValueError: for an unknown kl_method, num_samples < 1, mismatched shapes of mean and
        log_var, a log_likelihood_fn output that is not (L, ...) (names the shapes), or a
        concrete beta that is NaN or infinite.
      TypeError: a beta that is not a real number, or a log_likelihood_fn that returns
        something other than an array of numbers (e.g. None).
    """
    if kl_method not in _KL_METHODS:
        raise ValueError(f"kl_method must be one of {_KL_METHODS}, got {kl_method!r}")
    num_samples = _checks.count(num_samples, "num_samples")
    beta = _check_beta(beta)
    mean, log_var = _check_gaussian_params(mean, log_var)
    prior_mean = _checks.as_float(prior_mean, "prior_mean")
    prior_log_var = _checks.as_float(prior_log_var, "prior_log_var")
    _check_event_axis(mean, "mean", prior_mean=prior_mean, prior_log_var=prior_log_var)

    z, eps = _draw(key, mean, log_var, num_samples)  # (L, ..., d)
    reconstruction = jnp.mean(_evaluate_log_likelihood(log_likelihood_fn, z), axis=0)
    if kl_method == "closed_form":
        kl = kl_diag_gaussians(mean, log_var, prior_mean, prior_log_var)
    else:
        log_q = _log_q_from_noise(eps, log_var)
        log_p = _diag_normal_log_prob(z, prior_mean, prior_log_var)
        kl = jnp.mean(log_q - log_p, axis=0)
    # beta = 0 drops the KL term (an autoencoder's objective), even where the KL overflows to
    # inf in float32: 0 * inf would be NaN.
    weighted_kl = jnp.where(beta == 0, 0.0, beta * kl)
    return ELBOTerms(elbo=reconstruction - weighted_kl, reconstruction=reconstruction, kl=kl)


def _log_importance_weights(
    key, mean, log_var, log_likelihood_fn, num_samples, prior_mean, prior_log_var
):
    """log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x), z_i ~ q; shape (k, ...)."""
    mean, log_var = _check_gaussian_params(mean, log_var)
    prior_mean = _checks.as_float(prior_mean, "prior_mean")
    prior_log_var = _checks.as_float(prior_log_var, "prior_log_var")
    _check_event_axis(mean, "mean", prior_mean=prior_mean, prior_log_var=prior_log_var)
    z, eps = _draw(key, mean, log_var, num_samples)
    log_lik = _evaluate_log_likelihood(log_likelihood_fn, z)
    return (
        log_lik
        + _diag_normal_log_prob(z, prior_mean, prior_log_var)
        - _log_q_from_noise(eps, log_var)
    )


def _log_mean_exp(log_w):
    """log((1/k) sum_i exp(log_w_i)) over the leading axis, via logsumexp (no overflow)."""
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def iwae_bound(
    key, mean, log_var, log_likelihood_fn, num_samples, prior_mean=0.0, prior_log_var=0.0
):
    r"""One draw of the importance-weighted estimate hat L_k (Burda, Grosse & Salakhutdinov 2016).

        hat L_k(x) = log (1/k) sum_{i=1}^k w_i,   w_i = p(x | z_i) p(z_i) / q(z_i | x),
        z_i ~ q(z | x) i.i.d.

    The bound itself is its expectation, L_k(x) = E[hat L_k(x)] (Burda et al. eq. 8; the
    notation of notebooks 03 and 08): L_1 is the ELBO, L_k <= L_{k+1} <= log p(x), and
    hat L_k -> log p(x) as k -> infinity. Computed in log space as
    logsumexp_i(log w_i) - log k, so weights like exp(-500) or exp(+500) neither underflow
    nor overflow. Each call returns one random draw hat L_k: average over keys to estimate
    L_k.

    Args:
      key: a jax.random key.
      mean: (..., d) mean of q(z | x).
      log_var: (..., d) log-variance of q(z | x).
      log_likelihood_fn: callable mapping z of shape (k, ..., d) to log p(x|z), (k, ...).
      num_samples: k >= 1 importance samples per data point.
      prior_mean: prior mean, broadcastable to (..., d). Default 0.
      prior_log_var: prior log-variance, broadcastable to (..., d). Default 0.

    Returns:
      (...) one draw hat L_k per data point.

    Raises:
      ValueError: for num_samples < 1 or inconsistent shapes (names the shapes).
    """
    num_samples = _checks.count(num_samples, "num_samples")
    log_w = _log_importance_weights(
        key, mean, log_var, log_likelihood_fn, num_samples, prior_mean, prior_log_var
    )
    return _log_mean_exp(log_w)


# ---------------------------------------------------------------- estimators of log p(x)


@jax.jit
def _log_mean_exp_with_error(log_w) -> Estimate:
    r"""log m_hat, m_hat = (1/n) sum_i w_i, with the delta-method standard error.

    SE(log m_hat) ~= SE(m_hat) / m_hat = std(w) / (sqrt(n) m_hat). Both numerator and
    denominator are computed from the rescaled weights w_i / m_hat = exp(log w_i - log m_hat)
    <= n, so nothing overflows however large or small the raw weights are.
    """
    n = log_w.shape[0]
    estimate = _log_mean_exp(log_w)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(estimate), estimate, 0.0))
    ratio = jnp.exp(log_w - shift)  # w_i / m_hat, mean 1 (up to rounding)
    variance = jnp.sum(jnp.square(ratio - jnp.mean(ratio, axis=0)), axis=0) / (n - 1)
    positive = variance > 0  # a safe sqrt: d sqrt(v)/dv is infinite at v = 0
    std_error = jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)
    mean_ratio = jnp.mean(ratio, axis=0)  # 0 only if every weight is 0: then SE is infinite
    std_error = jnp.where(mean_ratio > 0, std_error / (mean_ratio * math.sqrt(n)), jnp.inf)
    return Estimate(mean=estimate, std_error=std_error)


def log_evidence_prior_sampling(
    key, log_likelihood_fn, latent_dim, num_samples, *, prior_mean=0.0, prior_log_var=0.0
):
    r"""Naive Monte Carlo estimate of log p(x) by sampling the prior.

        p(x) = E_{p(z)}[p(x | z)] ~= (1/n) sum_i p(x | z_i),   z_i ~ p(z),
        log p(x) ~= logsumexp_i log p(x | z_i) - log n,
        SE ~= std_i(p(x | z_i)) / (sqrt(n) * mean_i p(x | z_i))   (delta method).

    Unbiased for p(x) but hopeless in high dimension: almost no prior sample lands where
    p(x | z) is large, so the relative standard error explodes with the latent dimension.
    The log of an unbiased estimate is biased low (Jensen); the bias is about SE^2 / 2.
    Once a handful of weights dominate, the sample standard deviation itself is unreliable:
    the reported SE saturates near 1 while the actual error can be many nats (a reported
    SE above ~0.5 means "do not trust this estimate", not "accurate to 0.5").

    Args:
      key: a jax.random key.
      log_likelihood_fn: callable mapping z of shape (n, latent_dim) to log p(x | z) of
        shape (n, ...). The n prior draws are shared by all data points, so for a batch x
        of shape (B, D) add the batch axis yourself, e.g.
        ``lambda z: model.log_likelihood(x, z[:, None])`` -> (n, B).
      latent_dim: d >= 1.
      num_samples: n >= 2 (the standard error needs two samples).
      prior_mean: prior mean, broadcastable to (latent_dim,). Default 0.
      prior_log_var: prior log-variance, broadcastable to (latent_dim,). Default 0.

    Returns:
      ``vae_edu.estimate.Estimate(mean, std_error)``, each of shape (...): ``mean`` is
      the estimate of log p(x).

    Raises:
      ValueError: for latent_dim < 1, num_samples < 2 or a log_likelihood_fn output whose
        leading axis is not n.
    """
    latent_dim = _checks.count(latent_dim, "latent_dim")
    num_samples = _checks.count(num_samples, "num_samples", minimum=2)
    prior_mean = _checks.as_float(prior_mean, "prior_mean")
    prior_log_var = _checks.as_float(prior_log_var, "prior_log_var")
    shape = _checks.broadcast_shape(
        prior_mean=prior_mean, prior_log_var=prior_log_var, z=np.empty((latent_dim,))
    )
    if shape != (latent_dim,):
        raise ValueError(
            f"prior_mean has shape {prior_mean.shape} and prior_log_var has shape "
            f"{prior_log_var.shape}; both must broadcast to (latent_dim,) = ({latent_dim},)"
        )
    mean = jnp.broadcast_to(prior_mean, shape)
    log_var = jnp.broadcast_to(prior_log_var, shape)
    z, _ = _draw(key, mean, log_var, num_samples)
    log_lik = _evaluate_log_likelihood(log_likelihood_fn, z, strict=False)
    return _log_mean_exp_with_error(log_lik)


def log_evidence_importance_sampling(
    key, mean, log_var, log_likelihood_fn, num_samples, *, prior_mean=0.0, prior_log_var=0.0
):
    r"""Importance-sampling estimate of log p(x) with proposal q(z | x) = N(mu, diag sigma^2).

        p(x) = E_q[p(x | z) p(z) / q(z | x)] ~= (1/n) sum_i w_i,   z_i ~ q(z | x),
        log p(x) ~= logsumexp_i log w_i - log n   (= one draw of the IWAE bound L_n),
        SE ~= std_i(w_i) / (sqrt(n) * mean_i w_i)   (delta method).

    If q is the exact posterior every weight equals p(x) and the error is zero; the closer
    q is to p(z | x) (and the heavier its tails relative to it), the smaller the error.

    Args:
      key: a jax.random key.
      mean: (..., d) proposal mean, typically the encoder's output.
      log_var: (..., d) proposal log-variance.
      log_likelihood_fn: callable mapping z of shape (n, ..., d) to log p(x|z), (n, ...).
      num_samples: n >= 2.
      prior_mean: prior mean, broadcastable to (..., d). Default 0.
      prior_log_var: prior log-variance, broadcastable to (..., d). Default 0.

    Returns:
      ``vae_edu.estimate.Estimate(mean, std_error)``, each of shape (...): ``mean`` is
      the estimate of log p(x).

    Raises:
      ValueError: for num_samples < 2 or inconsistent shapes (names the shapes).
    """
    num_samples = _checks.count(num_samples, "num_samples", minimum=2)
    log_w = _log_importance_weights(
        key, mean, log_var, log_likelihood_fn, num_samples, prior_mean, prior_log_var
    )
    return _log_mean_exp_with_error(log_w)
