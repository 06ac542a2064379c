"""Kullback-Leibler divergences.

KL(q || p) = E_q[log q(z) - log p(z)] >= 0, with equality iff q = p.

All closed forms work on log-variances (never variances) so that extreme but legal inputs
(log-variances in [-30, 30]) neither overflow nor produce NaN.
"""

from __future__ import annotations

import jax.numpy as jnp

from vae_edu import _checks

__all__ = ["kl_diag_gaussians"]


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

    Args:
      mean_q: (..., d) mean of q.
      log_var_q: (..., d) log-variance log sigma_q^2 of q.
      mean_p: mean of p, broadcastable to (..., d). Default 0.
      log_var_p: log-variance of p, broadcastable to (..., d). Default 0 (unit variance).

    Returns:
      (...) the KL divergence in nats, one value per leading index.

    Raises:
      ValueError: if the arguments have no event axis or do not broadcast (names the shapes).
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
    # Everything as differences of logs: exp(log_var_q - log_var_p) = sigma_q^2 / sigma_p^2,
    # and (mu_q - mu_p)^2 * exp(-log_var_p) stays finite for log_var_p in [-30, 30].
    log_ratio = log_var_q - log_var_p
    per_dim = 0.5 * (jnp.exp(log_ratio) + jnp.square(mean_q - mean_p) * jnp.exp(-log_var_p)
                     - 1.0 - log_ratio)
    return jnp.sum(per_dim, axis=-1)
