r"""The two terms of a VAE loss, as implementations weight them (notebook 05).

The training loss of a VAE has two terms, a reconstruction term and a KL term:

    loss = reduce_batch[ -alpha * reduce_pixels(log p(x_i | z)) ]
         + reduce_batch[  beta  * reduce_latents(KL(q(z_j | x) || N(0, 1))) ],

where each ``reduce`` is a sum or a mean. A mean divides by the number of terms, so the
reductions are hidden weights: up to an overall scale the loss is always

    -sum_i log p(x_i | z) + beta_eff * sum_j KL_j,
    beta_eff = (beta * c_latents) / (alpha * c_pixels),   c = 1 (sum) or 1 / count (mean),

i.e. a beta-VAE with beta_eff (:func:`loss_weights`). The batch reduction multiplies both
terms by the same factor and leaves beta_eff alone. :func:`reduced_loss` computes the loss
as a given implementation reports it.

To *see* what beta_eff does we need the optimum of the loss, not only its value. It is in
closed form for a linear Gaussian decoder p(x | z) = N(W z + b, sigma^2 I) (probabilistic
PCA, :func:`vae_edu.conjugate.fit_ppca`): the best diagonal Gaussian q(z | x) for a given
weighting is :func:`vae_edu.conjugate.weighted_optimal_q`, and :func:`loss_balance`
evaluates both terms there. The figure of the notebook's widget is
:func:`vae_edu.plots.plot_loss_balance`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu import _checks
from vae_edu.conjugate import expected_log_likelihood_per_pixel, weighted_optimal_q
from vae_edu.elbo import bernoulli_log_likelihood
from vae_edu.kl import kl_diag_gaussians

__all__ = [
    "ACTIVE_KL_THRESHOLD",
    "REDUCTIONS",
    "LossBalance",
    "LossWeights",
    "ReducedLoss",
    "loss_balance",
    "loss_weights",
    "negative_elbo",
    "reduced_loss",
]

#: The two ways to reduce an axis of per-element losses.
REDUCTIONS = ("sum", "mean")

#: A latent dimension counts as active when its batch-average KL exceeds this (nats).
ACTIVE_KL_THRESHOLD = 0.01


class LossWeights(NamedTuple):
    """The weights a choice of reductions puts on the *summed* terms.

    Attributes:
      reconstruction_weight: w_R in loss = -w_R sum_{n,i} log p(x_ni | z_n) + w_K sum_{n,j} KL_nj.
      kl_weight: w_K, likewise.
      effective_beta: w_K / w_R, the beta of the equivalent beta-VAE with sums over pixels
        and latents (1 for the ELBO itself).
    """

    reconstruction_weight: float
    kl_weight: float
    effective_beta: float


class ReducedLoss(NamedTuple):
    """A loss as a particular implementation reports it.

    Attributes:
      loss: reconstruction_term + kl_term.
      reconstruction_term: -alpha * reduce_batch(reduce_pixels(log p(x | z))).
      kl_term: beta * reduce_batch(reduce_latents(KL)).
    """

    loss: jax.Array
    reconstruction_term: jax.Array
    kl_term: jax.Array


class LossBalance(NamedTuple):
    """What the loss-balance widget displays (Python floats, except the images).

    Attributes:
      effective_beta: the beta of the equivalent summed loss (:func:`loss_weights`).
      reconstruction_term: the reconstruction term as the chosen reductions report it, at
        the optimal q (expected over q, so no sampling noise).
      kl_term: the KL term likewise.
      loss: reconstruction_term + kl_term.
      reconstruction: E_q[log p(x | z)] per image (sum over pixels, mean over the batch),
        in nats, unweighted.
      kl: KL(q(z | x) || p(z)) per image (sum over latents, mean over the batch), unweighted.
      active_dims: latent dimensions whose batch-average KL exceeds 0.01 nats.
      reconstructions: (B, D) decoder means W m(x) + b at the optimal q's means.
    """

    effective_beta: float
    reconstruction_term: float
    kl_term: float
    loss: float
    reconstruction: float
    kl: float
    active_dims: int
    reconstructions: np.ndarray


# --------------------------------------------------------------------------- validation


def _check_reduction(value, name: str) -> str:
    if value not in REDUCTIONS:
        raise ValueError(f"{name} must be one of {REDUCTIONS}, got {value!r}")
    return value


def _reduce(values, reduction: str, axis: int):
    return jnp.sum(values, axis=axis) if reduction == "sum" else jnp.mean(values, axis=axis)


# ----------------------------------------------------------------- reductions as weights


def loss_weights(
    alpha,
    beta,
    *,
    num_pixels,
    latent_dim,
    batch_size=1,
    pixel_reduction="sum",
    latent_reduction="sum",
    batch_reduction="mean",
) -> LossWeights:
    r"""The weights that sum-or-mean reductions put on the two loss terms.

    A mean over n terms is a sum times 1/n, so

        loss = -alpha * c_B c_P * sum_{n,i} log p(x_ni | z_n) + beta * c_B c_L * sum_{n,j} KL_nj,

    with c_P = 1/D for a mean over the D pixels (1 for a sum), c_L = 1/d for a mean over the
    d latent dimensions and c_B = 1/B for a mean over the batch. Dividing by alpha c_B c_P
    (which rescales the gradient, not its direction) leaves the summed ELBO with

        beta_eff = (beta c_L) / (alpha c_P),

    e.g. a mean over pixels and a sum over latents is a beta-VAE with beta_eff = D beta / alpha
    (784 for MNIST): the most common bug in published VAE code.

    Args:
      alpha: weight alpha > 0 of the reconstruction term.
      beta: weight beta > 0 of the KL term.
      num_pixels: D, the data dimension.
      latent_dim: d, the latent dimension.
      batch_size: B (only the overall scale depends on it).
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean".

    Returns:
      LossWeights(reconstruction_weight = alpha c_B c_P, kl_weight = beta c_B c_L,
      effective_beta = kl_weight / reconstruction_weight), Python floats.

    Raises:
      ValueError: for a non-positive weight or count, or an unknown reduction.
    """
    alpha = _checks.positive_finite_scalar(alpha, "alpha")
    beta = _checks.positive_finite_scalar(beta, "beta")
    num_pixels = _checks.count(num_pixels, "num_pixels")
    latent_dim = _checks.count(latent_dim, "latent_dim")
    batch_size = _checks.count(batch_size, "batch_size")
    c_pixels = (
        1.0 if _check_reduction(pixel_reduction, "pixel_reduction") == "sum" else 1.0 / num_pixels
    )
    c_latents = (
        1.0 if _check_reduction(latent_reduction, "latent_reduction") == "sum" else 1.0 / latent_dim
    )
    c_batch = (
        1.0 if _check_reduction(batch_reduction, "batch_reduction") == "sum" else 1.0 / batch_size
    )
    reconstruction_weight = alpha * c_batch * c_pixels
    kl_weight = beta * c_batch * c_latents
    return LossWeights(reconstruction_weight, kl_weight, kl_weight / reconstruction_weight)


def reduced_loss(
    log_likelihood_per_pixel,
    kl_per_dim,
    *,
    alpha=1.0,
    beta=1.0,
    pixel_reduction="sum",
    latent_reduction="sum",
    batch_reduction="mean",
) -> ReducedLoss:
    r"""The loss a given implementation computes, from per-pixel and per-dimension terms.

        reconstruction_term = -alpha * reduce_batch( reduce_pixels( log p(x_ni | z_n) ) )
        kl_term             =  beta  * reduce_batch( reduce_latents( KL_nj ) )
        loss                = reconstruction_term + kl_term

    With every reduction a sum over pixels/latents and a mean over the batch, and
    alpha = beta = 1, this is -ELBO averaged over the batch (Odaibo 2019, eq. 43). Works
    under jax.jit (with the reductions static), jax.vmap and jax.grad.

    Args:
      log_likelihood_per_pixel: (B, D) log p(x_ni | z_n) of each pixel (for L samples,
        average over them first).
      kl_per_dim: (B, d) KL(q(z_j | x_n) || N(0, 1)) of each latent dimension.
      alpha: weight of the reconstruction term (a float or a traced scalar).
      beta: weight of the KL term.
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean".

    Returns:
      ReducedLoss(loss, reconstruction_term, kl_term), scalars.

    Raises:
      ValueError: for an unknown reduction, arrays that are not 2-D, or batch sizes that
        differ (the message names both shapes).
    """
    log_lik = _checks.as_float(log_likelihood_per_pixel, "log_likelihood_per_pixel")
    kl = _checks.as_float(kl_per_dim, "kl_per_dim")
    for array, name in ((log_lik, "log_likelihood_per_pixel"), (kl, "kl_per_dim")):
        if array.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, features), got {array.shape}")
    if log_lik.shape[0] != kl.shape[0]:
        raise ValueError(
            f"log_likelihood_per_pixel has shape {log_lik.shape} but kl_per_dim "
            f"has shape {kl.shape}; their batch sizes must match"
        )
    _check_reduction(pixel_reduction, "pixel_reduction")
    _check_reduction(latent_reduction, "latent_reduction")
    _check_reduction(batch_reduction, "batch_reduction")
    reconstruction_term = -alpha * _reduce(
        _reduce(log_lik, pixel_reduction, -1), batch_reduction, 0
    )
    kl_term = beta * _reduce(_reduce(kl, latent_reduction, -1), batch_reduction, 0)
    return ReducedLoss(reconstruction_term + kl_term, reconstruction_term, kl_term)


# ------------------------------------------------ the optimum on a linear Gaussian decoder


def loss_balance(
    model,
    images,
    alpha=1.0,
    beta=1.0,
    *,
    pixel_reduction="sum",
    latent_reduction="sum",
    batch_reduction="mean",
) -> LossBalance:
    r"""The two loss terms at the optimum of a re-weighted loss, for a batch of images.

    The reductions and weights define beta_eff (:func:`loss_weights`); the loss is
    minimised over diagonal Gaussian q(z | x) exactly by
    :func:`vae_edu.conjugate.weighted_optimal_q` with gamma = 1 / beta_eff, and both terms
    are then evaluated in closed form (expectations over q, no sampling;
    :func:`vae_edu.conjugate.expected_log_likelihood_per_pixel`) and reduced as the chosen
    implementation would.

    Args:
      model: a :class:`vae_edu.conjugate.LinearGaussianModel`, e.g. from
        :func:`vae_edu.conjugate.fit_ppca`.
      images: (B, D) a batch of data.
      alpha, beta: the weights of the two terms (> 0).
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean".

    Returns:
      A :class:`LossBalance`.

    Raises:
      ValueError: for bad weights or reductions, or images that are not (B, D).
    """
    images = _checks.as_float(images, "images")
    if images.ndim != 2:
        raise ValueError(f"images must have shape (batch, D), got {images.shape}")
    weights = loss_weights(
        alpha,
        beta,
        num_pixels=model.data_dim,
        latent_dim=model.latent_dim,
        batch_size=images.shape[0],
        pixel_reduction=pixel_reduction,
        latent_reduction=latent_reduction,
        batch_reduction=batch_reduction,
    )
    mean, log_var = weighted_optimal_q(model, images, 1.0 / weights.effective_beta)
    per_pixel = expected_log_likelihood_per_pixel(model, images, mean, log_var)
    per_dim = kl_diag_gaussians(mean[..., None], log_var[..., None])  # (B, d)
    reported = reduced_loss(
        per_pixel,
        per_dim,
        alpha=alpha,
        beta=beta,
        pixel_reduction=pixel_reduction,
        latent_reduction=latent_reduction,
        batch_reduction=batch_reduction,
    )
    reconstructions = np.asarray(mean @ model.weight.T + model.bias)
    return LossBalance(
        effective_beta=weights.effective_beta,
        reconstruction_term=float(reported.reconstruction_term),
        kl_term=float(reported.kl_term),
        loss=float(reported.loss),
        reconstruction=float(jnp.mean(jnp.sum(per_pixel, axis=-1))),
        kl=float(jnp.mean(jnp.sum(per_dim, axis=-1))),
        active_dims=int(jnp.sum(jnp.mean(per_dim, axis=0) > ACTIVE_KL_THRESHOLD)),
        reconstructions=reconstructions,
    )


def negative_elbo(x, logits, mean, log_var) -> jax.Array:
    r"""The training loss of a Bernoulli VAE from the networks' outputs (notebook 05, Exercise 5.1).

        loss = (1/B) sum_n KL(q(z | x_n) || N(0, I)) - (1/B) sum_n log p(x_n | z_n)

    (Odaibo 2019, eq. 43, corrected: a mean over the B examples of the batch), with
    log p(x_n | z_n) = sum_i [x_ni log sigmoid(l_ni) + (1 - x_ni) log sigmoid(-l_ni)] summed
    over the D pixels (:func:`vae_edu.elbo.bernoulli_log_likelihood`), l = ``logits`` the
    decoder's output at one reparameterized sample z_n, and the closed-form KL summed over the
    d latent dimensions (:func:`vae_edu.kl.kl_diag_gaussians`). The difference of the two
    batch means is what :meth:`vae_edu.models.VAE.loss` computes.

    Args:
      x: (B, D) binary pixels; logits: (B, D) the decoder's logits at the sample;
      mean, log_var: (B, d) the encoder's means and log-variances log sigma^2.

    Returns:
      A scalar.
    """
    x, logits = _checks.as_float(x, "x"), _checks.as_float(logits, "logits")
    mean, log_var = _checks.as_float(mean, "mean"), _checks.as_float(log_var, "log_var")
    if x.shape != logits.shape or x.ndim != 2:
        raise ValueError(
            f"x and logits must both have shape (batch, pixels), got {x.shape} and {logits.shape}"
        )
    if mean.shape != log_var.shape or mean.ndim != 2 or mean.shape[0] != x.shape[0]:
        raise ValueError(
            "mean and log_var must both have shape (batch, latent_dim) with the batch of x "
            f"{x.shape[0]}, got {mean.shape} and {log_var.shape}"
        )
    kl = kl_diag_gaussians(mean, log_var)  # (B,)
    return jnp.mean(kl) - jnp.mean(bernoulli_log_likelihood(x, logits))
