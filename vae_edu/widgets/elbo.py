"""Update functions behind the elbo notebook's widgets (plain functions, unit-tested).

The demo lives on the exact linear-Gaussian model of :mod:`vae_edu.conjugate`,

    z ~ N(0, I_d),    x | z ~ N(W z + b, sigma_x^2 I_D),

where the evidence log p(x) and the posterior p(z|x) are known in closed form, so the
ELBO of a Gaussian q(z|x) = N(m, diag s^2) and its gap to log p(x) can be shown exactly
(no Monte Carlo noise) while a slider moves m and s.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from vae_edu import _checks
from vae_edu.kl import kl_diag_gaussians

__all__ = ["ELBOReadout", "elbo_readout", "plot_elbo_gap"]


class ELBOReadout(NamedTuple):
    """What the ELBO widget displays, all in nats.

    Attributes:
      log_evidence: log p(x), exact.
      elbo: ELBO(q) = reconstruction - kl, exact (closed form).
      gap: log p(x) - ELBO(q), which equals KL(q(z|x) || p(z|x)) >= 0.
      reconstruction: E_q[log p(x|z)].
      kl: KL(q(z|x) || p(z)), the regulariser.
    """

    log_evidence: object
    elbo: object
    gap: object
    reconstruction: object
    kl: object


def elbo_readout(model, x, q_mean, q_log_var) -> ELBOReadout:
    r"""Exact log p(x), ELBO and gap of q(z|x) = N(m, diag s^2) on the linear-Gaussian model.

    With x | z ~ N(W z + b, sigma_x^2 I_D) and z ~ N(0, I_d) both ELBO terms are Gaussian
    integrals with closed forms (E_q[z] = m, Cov_q[z] = diag s^2):

        E_q[log p(x|z)] = -D/2 log(2 pi sigma_x^2)
                          - 1/(2 sigma_x^2) * ( ||x - W m - b||^2 + sum_j s_j^2 ||W_{:,j}||^2 )

        KL(q || p(z))   = 1/2 * sum_j ( m_j^2 + s_j^2 - 1 - log s_j^2 )

        ELBO = E_q[log p(x|z)] - KL(q || p(z)),    gap = log p(x) - ELBO = KL(q || p(z|x)).

    The first is ``model.expected_log_likelihood``, the second
    :func:`vae_edu.kl.kl_diag_gaussians` (log-variance form, finite for log s^2 in
    [-30, 30]), log p(x) is ``model.log_evidence``.

    Args:
      model: a :class:`vae_edu.conjugate.LinearGaussianModel` (weight (D, d), bias (D,),
        scalar log_var_x).
      x: (..., D) observation(s).
      q_mean: (..., d) mean m of q.
      q_log_var: (..., d) log-variance log s^2 of q.

    Returns:
      An :class:`ELBOReadout` of (...)-shaped arrays (log_evidence, elbo, gap,
      reconstruction, kl).

    Raises:
      ValueError: if x's last axis is not D, q_mean's last axis is not d, or q_mean and
        q_log_var differ in shape (the message names the shapes).
    """
    weight = _checks.as_float(model.weight, "model.weight")
    x = _checks.as_float(x, "x")
    q_mean = _checks.as_float(q_mean, "q_mean")
    q_log_var = _checks.as_float(q_log_var, "q_log_var")
    _checks.at_least_1d(x, "x")
    _checks.at_least_1d(q_mean, "q_mean")
    _checks.same_shape(q_mean, q_log_var, "q_mean", "q_log_var")
    if weight.ndim != 2:
        raise ValueError(f"model.weight must have shape (D, d), got {weight.shape}")
    data_dim, latent_dim = weight.shape
    if x.shape[-1] != data_dim:
        raise ValueError(
            f"x has shape {x.shape} but model.weight has shape {weight.shape}; "
            f"x's last axis must be D = {data_dim}"
        )
    if q_mean.shape[-1] != latent_dim:
        raise ValueError(
            f"q_mean has shape {q_mean.shape} but model.weight has shape {weight.shape}; "
            f"q_mean's last axis must be d = {latent_dim}"
        )

    q_cov = jnp.exp(q_log_var)[..., :, None] * jnp.eye(latent_dim, dtype=q_log_var.dtype)
    reconstruction = model.expected_log_likelihood(x, q_mean, q_cov)
    kl = kl_diag_gaussians(q_mean, q_log_var)
    elbo = reconstruction - kl
    log_evidence = model.log_evidence(x)
    return ELBOReadout(
        log_evidence=log_evidence,
        elbo=elbo,
        gap=log_evidence - elbo,
        reconstruction=reconstruction,
        kl=kl,
    )


def _normal_pdf(z, mean, std):
    return np.exp(-0.5 * ((z - mean) / std) ** 2) / (std * np.sqrt(2.0 * np.pi))


def plot_elbo_gap(q_mean: float, q_std: float, model, x, fig=None):
    """The ELBO widget: q's mean and scale in, log p(x), ELBO and gap out (and drawn).

    Left panel: the exact posterior p(z|x), the prior p(z) and q(z) = N(q_mean, q_std^2).
    Right panel: the ELBO as a function of q's mean at the current scale, the horizontal
    line log p(x) it can never cross, and the gap KL(q || p(z|x)) at the current q.

    Args:
      q_mean: mean m of q (slider value).
      q_std: standard deviation s > 0 of q (slider value).
      model: a 1-D-latent :class:`vae_edu.conjugate.LinearGaussianModel` (weight (D, 1)).
      x: (D,) one observation.
      fig: optional matplotlib Figure or SubFigure to draw into (cleared first); a new
        10 x 3.6 inch figure with constrained layout is created when None.

    Returns:
      (fig, readout): the Figure and an :class:`ELBOReadout` of Python floats.

    Raises:
      ValueError: if q_std <= 0 or is not finite, the model's latent is not 1-D, or x is
        not a single (D,) observation.
    """
    q_mean, q_std = float(q_mean), float(q_std)
    if not np.isfinite(q_std) or q_std <= 0.0:
        raise ValueError(f"q_std must be a positive finite number, got {q_std}")
    if not np.isfinite(q_mean):
        raise ValueError(f"q_mean must be finite, got {q_mean}")
    if np.ndim(model.weight) != 2 or np.shape(model.weight)[1] != 1:
        raise ValueError(
            f"plot_elbo_gap needs a 1-D latent: model.weight must have shape (D, 1), "
            f"got {np.shape(model.weight)}"
        )
    if np.ndim(x) != 1:
        raise ValueError(f"x must be one observation of shape (D,), got shape {np.shape(x)}")

    log_var = 2.0 * np.log(q_std)
    terms = elbo_readout(model, x, jnp.array([q_mean]), jnp.array([log_var]))
    readout = ELBOReadout(*(float(v) for v in terms))
    post_mean, post_cov = model.posterior(x)
    post_mean = float(np.reshape(post_mean, ()))
    post_std = float(np.sqrt(np.reshape(post_cov, ())))

    # A z-range that holds the prior and posterior (fixed) and follows q only when it
    # wanders off, so the axes do not jump while the slider moves inside the usual range.
    lo = min(-3.5, post_mean - 4.0 * post_std, q_mean - 3.0 * q_std)
    hi = max(3.5, post_mean + 4.0 * post_std, q_mean + 3.0 * q_std)
    z = np.linspace(lo, hi, 401)

    if fig is None:
        fig = plt.figure(figsize=(10, 3.6), layout="constrained")
    else:
        fig.clf()
    ax_density, ax_elbo = fig.subplots(1, 2)

    # Drawn on top (zorder 3) and dashed, so it stays visible when q equals the prior.
    ax_density.plot(
        z, _normal_pdf(z, 0.0, 1.0), color="0.3", ls="--", lw=1.5, zorder=3, label="prior p(z)"
    )
    ax_density.plot(
        z, _normal_pdf(z, post_mean, post_std), color="C0", lw=2, label="exact posterior p(z|x)"
    )
    ax_density.plot(
        z,
        _normal_pdf(z, q_mean, q_std),
        color="C1",
        lw=2,
        label=f"q(z) = N({q_mean:.2f}, {q_std:.2f}$^2$)",
    )
    ax_density.set_xlabel("z")
    ax_density.set_ylabel("density")
    ax_density.set_title("q against the exact posterior")
    ax_density.legend(loc="upper left", fontsize=8)

    sweep = elbo_readout(model, x, jnp.asarray(z)[:, None], jnp.full((z.size, 1), log_var))
    elbo_curve = np.asarray(sweep.elbo)
    ax_elbo.plot(z, elbo_curve, color="C1", label=f"ELBO(m, s={q_std:.2f})")
    ax_elbo.axhline(readout.log_evidence, color="C0", lw=2, label="log p(x)")
    ax_elbo.plot(
        [q_mean, q_mean],
        [readout.elbo, readout.log_evidence],
        color="C3",
        lw=2,
        label="gap = KL(q || p(z|x))",
    )
    ax_elbo.plot([q_mean], [readout.elbo], "o", color="C1", label="current q")
    bottom = min(readout.log_evidence - 8.0, readout.elbo - 1.0)
    ax_elbo.set_ylim(bottom, readout.log_evidence + 1.5)
    ax_elbo.set_xlim(lo, hi)
    ax_elbo.set_xlabel("mean m of q")
    ax_elbo.set_ylabel("nats")
    ax_elbo.set_title(
        f"log p(x) = {readout.log_evidence:.3f}   ELBO = {readout.elbo:.3f}"
        f"   gap = {readout.gap:.3f}",
        fontsize=10,
    )
    ax_elbo.legend(loc="lower center", fontsize=8)
    return fig, readout
