r"""Update functions behind notebook 04's loss-balance demo (plain functions, unit-tested).

The training loss of a VAE has two terms, a reconstruction term and a KL term:

    loss = reduce_batch[ -alpha * reduce_pixels(log p(x_i | z)) ]
         + reduce_batch[  beta  * reduce_latents(KL(q(z_j | x) || N(0, 1))) ],

where each ``reduce`` is a sum or a mean. A mean divides by the number of terms, so the
reductions are hidden weights: up to an overall scale the loss is always

    -sum_i log p(x_i | z) + beta_eff * sum_j KL_j,
    beta_eff = (beta * c_latents) / (alpha * c_pixels),   c = 1 (sum) or 1 / count (mean),

i.e. a beta-VAE with beta_eff (:func:`loss_weights`). The batch reduction multiplies both
terms by the same factor and leaves beta_eff alone.

To *see* what beta_eff does we need the optimum of the loss, not only its value. It is in
closed form for a linear Gaussian decoder, p(x | z) = N(W z + b, sigma^2 I) (probabilistic
PCA, Tipping & Bishop 1999, fitted by :func:`fit_ppca`): the best diagonal Gaussian
q(z | x) for a given weighting is :func:`weighted_optimal_q`. :func:`plot_loss_balance` is
the slider callback: it draws the two terms as the chosen reductions report them, the
effective beta, and the reconstructions that the optimal encoder gives.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from vae_edu import _checks
from vae_edu.conjugate import LinearGaussianModel
from vae_edu.kl import kl_diag_gaussians

__all__ = [
    "REDUCTIONS",
    "LossWeights",
    "ReducedLoss",
    "LossBalance",
    "LossBalancePlot",
    "loss_weights",
    "reduced_loss",
    "fit_ppca",
    "weighted_optimal_q",
    "expected_log_likelihood_per_pixel",
    "loss_balance",
    "plot_loss_balance",
]

#: The two ways to reduce an axis of per-element losses.
REDUCTIONS = ("sum", "mean")

_LOG_2PI = math.log(2.0 * math.pi)
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


class LossBalancePlot(NamedTuple):
    """The figure drawn by :func:`plot_loss_balance` and the numbers it shows."""

    figure: plt.Figure
    balance: LossBalance


# --------------------------------------------------------------------------- validation


def _check_reduction(value, name: str) -> str:
    if value not in REDUCTIONS:
        raise ValueError(f"{name} must be one of {REDUCTIONS}, got {value!r}")
    return value


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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
    num_pixels = _check_count(num_pixels, "num_pixels")
    latent_dim = _check_count(latent_dim, "latent_dim")
    batch_size = _check_count(batch_size, "batch_size")
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


# ----------------------------------------------------- the linear Gaussian decoder (PPCA)


def fit_ppca(images, latent_dim) -> LinearGaussianModel:
    r"""Maximum-likelihood probabilistic PCA (Tipping & Bishop 1999, eqs. 7-8).

    For x | z ~ N(W z + b, sigma^2 I_D), z ~ N(0, I_d), the likelihood of data with sample
    mean x_bar and covariance S = (1/N) sum_n (x_n - x_bar)(x_n - x_bar)^T (eigenvalues
    lambda_1 >= ... >= lambda_D, eigenvectors U) is maximised by

        b = x_bar,   sigma^2 = (1 / (D - d)) sum_{k > d} lambda_k,
        W = U_d (Lambda_d - sigma^2 I)^{1/2}            (up to a rotation, here none).

    W's columns are orthogonal, so W^T W is diagonal and so is the exact posterior
    covariance: a VAE's diagonal q(z | x) can match it exactly.

    Args:
      images: (N, D) data, e.g. MNIST pixels in [0, 1] (computed in float64 with numpy).
      latent_dim: d with 1 <= d < D.

    Returns:
      A :class:`vae_edu.conjugate.LinearGaussianModel` (float32 weight (D, d), bias (D,),
      scalar log_var_x).

    Raises:
      ValueError: if images is not 2-D with N >= 2, or d is not in [1, D).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"images must have shape (N, D) with N >= 2, got {x.shape}")
    data_dim = x.shape[1]
    latent_dim = _check_count(latent_dim, "latent_dim")
    if latent_dim >= data_dim:
        raise ValueError(
            f"latent_dim must be below the data dimension {data_dim}, got {latent_dim}"
        )
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / x.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    noise_var = float(np.mean(eigenvalues[latent_dim:]))
    if noise_var <= 0.0:
        raise ValueError("the data span at most latent_dim directions: sigma^2 would be 0")
    scales = np.sqrt(np.maximum(eigenvalues[:latent_dim] - noise_var, 0.0))
    weight = eigenvectors[:, :latent_dim] * scales
    return LinearGaussianModel(
        weight=jnp.asarray(weight, jnp.float32),
        bias=jnp.asarray(mean, jnp.float32),
        log_var_x=jnp.asarray(math.log(noise_var), jnp.float32),
    )


def _model_params(model):
    weight = _checks.as_float(model.weight, "model.weight")
    bias = _checks.as_float(model.bias, "model.bias")
    log_var_x = _checks.as_float(model.log_var_x, "model.log_var_x")
    if weight.ndim != 2 or bias.shape != weight.shape[:1] or log_var_x.ndim != 0:
        raise ValueError(
            f"model must have weight (D, d), bias (D,) and a scalar log_var_x; "
            f"got shapes {weight.shape}, {bias.shape}, {log_var_x.shape}"
        )
    return weight, bias, log_var_x


def _check_images(x, weight):
    x = _checks.as_float(x, "x")
    _checks.at_least_1d(x, "x")
    if x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"x has shape {x.shape} but model.weight has shape {weight.shape}; "
            f"x's last axis must be D = {weight.shape[0]}"
        )
    return x


def weighted_optimal_q(model, x, reconstruction_weight):
    r"""The best diagonal Gaussian q(z | x) under a re-weighted ELBO, in closed form.

    Maximises, over q = N(m, diag s^2),

        gamma * E_q[log p(x | z)] - KL(q || N(0, I)),    p(x | z) = N(W z + b, sigma^2 I),

    (gamma = 1 / beta_eff; gamma = 1 is the ELBO). Setting the derivatives to zero,

        m     = G^{-1} gamma W^T (x - b) / sigma^2,   G = I + gamma W^T W / sigma^2,
        s_j^2 = 1 / (1 + gamma ||W_{:,j}||^2 / sigma^2)      (= 1 / G_jj).

    For every W this q is the best *diagonal* Gaussian for the ordinary ELBO of the same model
    with decoder variance sigma^2 / gamma (the two objectives differ by a constant in q), so
    for the encoder gamma acts like that decoder variance. It is that model's exact posterior
    only when W^T W is diagonal (orthogonal columns, as for a PPCA fit): otherwise the exact
    posterior covariance G^{-1} is not diagonal and 1 / G_jj < (G^{-1})_jj. gamma -> 0 gives
    m -> 0, s -> 1: q(z | x) = p(z) for every x (posterior collapse); gamma -> infinity
    gives s -> 0 and m -> the least-squares code: a deterministic autoencoder.

    Args:
      model: a :class:`vae_edu.conjugate.LinearGaussianModel` (weight (D, d), bias (D,),
        log_var_x).
      x: (..., D) data.
      reconstruction_weight: gamma > 0 (a float or a traced scalar).

    Returns:
      (mean, log_var), each (..., d).

    Raises:
      ValueError: if x's last axis is not D (names both shapes) or the model's shapes are
        inconsistent.
    """
    weight, bias, log_var_x = _model_params(model)
    x = _check_images(x, weight)
    if not isinstance(reconstruction_weight, jax.core.Tracer):
        _checks.positive_finite_scalar(reconstruction_weight, "reconstruction_weight")
    return _weighted_optimal_q(weight, bias, log_var_x, x, reconstruction_weight)


@jax.jit
def _weighted_optimal_q(weight, bias, log_var_x, x, gamma):
    # gamma / sigma^2 in log space so that tiny sigma^2 or huge gamma cannot overflow early.
    scale = jnp.exp(jnp.log(gamma) - log_var_x)
    latent_dim = weight.shape[1]
    precision = jnp.eye(latent_dim, dtype=weight.dtype) + scale * weight.T @ weight  # G
    rhs = scale * (x - bias) @ weight  # (..., d) = gamma W^T (x - b) / sigma^2
    chol = jnp.linalg.cholesky(precision)
    mean = jax.scipy.linalg.cho_solve((chol, True), rhs.reshape(-1, latent_dim).T).T
    log_var = -jnp.log1p(scale * jnp.sum(jnp.square(weight), axis=0))
    return mean.reshape(rhs.shape), jnp.broadcast_to(log_var, rhs.shape)


def expected_log_likelihood_per_pixel(model, x, mean, log_var):
    r"""E_q[log N(x_i; (W z + b)_i, sigma^2)] for each pixel i, q = N(m, diag s^2).

        E_q[log p(x_i | z)] = -1/2 [ log(2 pi sigma^2)
                                     + ((x_i - (W m + b)_i)^2 + sum_j W_ij^2 s_j^2) / sigma^2 ]

    (the variance of (W z)_i under q is sum_j W_ij^2 s_j^2). Summed over i it is
    ``model.expected_log_likelihood`` with a diagonal covariance.

    Args:
      model: a :class:`vae_edu.conjugate.LinearGaussianModel`.
      x: (..., D) data.
      mean: (..., d) mean of q.
      log_var: (..., d) log-variance of q.

    Returns:
      (..., D) expected log-likelihood of each pixel, nats.
    """
    weight, bias, log_var_x = _model_params(model)
    x = _check_images(x, weight)
    mean = _checks.as_float(mean, "mean")
    log_var = _checks.as_float(log_var, "log_var")
    _checks.same_shape(mean, log_var, "mean", "log_var")
    if mean.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"mean has shape {mean.shape} but model.weight has shape "
            f"{weight.shape}; mean's last axis must be d = {weight.shape[1]}"
        )
    decoded = mean @ weight.T + bias
    spread = jnp.exp(log_var) @ jnp.square(weight).T
    return -0.5 * (_LOG_2PI + log_var_x + (jnp.square(x - decoded) + spread) * jnp.exp(-log_var_x))


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
    minimised over diagonal Gaussian q(z | x) exactly by :func:`weighted_optimal_q` with
    gamma = 1 / beta_eff, and both terms are then evaluated in closed form (expectations
    over q, no sampling) and reduced as the chosen implementation would.

    Args:
      model: a :class:`vae_edu.conjugate.LinearGaussianModel`, e.g. from :func:`fit_ppca`.
      images: (B, D) a batch of data.
      alpha, beta: the weights of the two terms (> 0).
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean".

    Returns:
      A :class:`LossBalance`.

    Raises:
      ValueError: for bad weights or reductions, or images that are not (B, D).
    """
    weight, _, _ = _model_params(model)
    images = _check_images(images, weight)
    if images.ndim != 2:
        raise ValueError(f"images must have shape (batch, D), got {images.shape}")
    weights = loss_weights(
        alpha,
        beta,
        num_pixels=weight.shape[0],
        latent_dim=weight.shape[1],
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


def plot_loss_balance(
    alpha=1.0,
    beta=1.0,
    pixel_reduction="sum",
    latent_reduction="sum",
    batch_reduction="mean",
    *,
    model,
    images,
    fig=None,
    num_shown=8,
) -> LossBalancePlot:
    """The loss-balance widget: weights and reductions in, both terms and their effect out.

    Top left: the reconstruction and KL terms as the chosen loss reports them (bars, at
    the optimal q). Top right: beta_eff on a log axis, with the ELBO (beta_eff = 1) marked.
    Bottom: the first ``num_shown`` images and their reconstructions W m(x) + b under the
    encoder that minimises this loss (clipped to [0, 1] for display).

    Args:
      alpha, beta: slider values, the weights of the two terms (> 0).
      pixel_reduction, latent_reduction, batch_reduction: "sum" or "mean" (dropdowns).
      model: a 28 x 28-image :class:`vae_edu.conjugate.LinearGaussianModel` (D = 784).
      images: (B, 784) a batch of images.
      fig: a matplotlib Figure or SubFigure to draw into (cleared first); a new one if None.
      num_shown: how many images (at most B) to show.

    Returns:
      LossBalancePlot(figure, balance) with the :class:`LossBalance` displayed.

    Raises:
      ValueError: as :func:`loss_balance`, or if the images are not 28 x 28.
    """
    balance = loss_balance(
        model,
        images,
        alpha,
        beta,
        pixel_reduction=pixel_reduction,
        latent_reduction=latent_reduction,
        batch_reduction=batch_reduction,
    )
    images = np.asarray(images)
    if images.shape[-1] != 784:
        raise ValueError(
            f"plot_loss_balance shows 28 x 28 images: images must have shape "
            f"(B, 784), got {images.shape}"
        )
    num_shown = min(_check_count(num_shown, "num_shown"), images.shape[0])

    if fig is None:
        fig = plt.figure(figsize=(10, 5.2), layout="constrained")
    else:
        fig.clf()
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.0])
    ax_terms, ax_beta = top.subplots(1, 2, width_ratios=[1.3, 1.0])

    labels = ["reconstruction\nterm", "KL term"]
    values = [balance.reconstruction_term, balance.kl_term]
    bars = ax_terms.barh(labels, values, color=["tab:blue", "tab:orange"])
    ax_terms.axvline(0.0, color="0.3", lw=0.8)
    ax_terms.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize=8, padding=3)
    span = max(abs(v) for v in values) or 1.0
    ax_terms.set_xlim(min(0.0, min(values)) - 0.35 * span, max(0.0, max(values)) + 0.35 * span)
    ax_terms.set_xlabel("value in the loss")
    ax_terms.set_title(
        f"loss = {balance.loss:.4g}  (alpha={float(alpha):.3g}, "
        f"beta={float(beta):.3g}; {pixel_reduction}/{latent_reduction}/"
        f"{batch_reduction})",
        fontsize=9,
    )

    log_beta = math.log10(balance.effective_beta)
    ax_beta.axvspan(-5, -1, color="tab:green", alpha=0.12)
    ax_beta.axvspan(1, 5, color="tab:red", alpha=0.12)
    ax_beta.text(-3, 0.75, "autoencoder-like\n(tiny KL weight)", ha="center", fontsize=8)
    ax_beta.text(3, 0.75, "posterior collapse\n(KL dominates)", ha="center", fontsize=8)
    ax_beta.axvline(0.0, color="0.4", ls="--", lw=1)
    ax_beta.text(0.1, 0.2, "ELBO", fontsize=8, color="0.3")
    ax_beta.plot([np.clip(log_beta, -5, 5)], [0.5], "D", color="black", markersize=9)
    ax_beta.set_xlim(-5, 5)
    ax_beta.set_ylim(0, 1)
    ax_beta.set_yticks([])
    ax_beta.set_xlabel("log10 effective beta")
    ax_beta.set_title(
        f"effective beta = {balance.effective_beta:.4g};  KL = {balance.kl:.1f} "
        f"nats, {balance.active_dims} active dims",
        fontsize=9,
    )

    axes = bottom.subplots(2, num_shown, squeeze=False)
    for k in range(num_shown):
        for row, picture in enumerate((images[k], balance.reconstructions[k])):
            ax = axes[row, k]
            ax.imshow(np.clip(picture, 0.0, 1.0).reshape(28, 28), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("data", fontsize=8)
    axes[1, 0].set_ylabel("recon.", fontsize=8)
    bottom.suptitle(
        f"reconstructions by the encoder that minimises this loss "
        f"(E_q log p(x|z) = {balance.reconstruction:.1f} nats per image)",
        fontsize=9,
    )
    return LossBalancePlot(figure=fig, balance=balance)
