"""Update functions behind the widgets of ``notebooks/02_information_and_kl.ipynb``.

Two demos, each a plain function of the slider values that draws into matplotlib axes and
returns the numbers it displays, so a unit test can "move the slider" by calling it:

* :func:`show_kl_to_standard_normal` -- q = N(mu, sigma^2) against p = N(0, 1), with the
  integrand q log(q/p) whose area is KL(q || p).
* :func:`show_forward_reverse_fits` -- one Gaussian fitted to a two-component mixture by
  minimising the forward KL(p || q) (mass-covering) and the reverse KL(q || p)
  (mode-seeking); the fits themselves come from :func:`fit_forward_reverse`.

The integrals over x are trapezoidal quadrature on a fixed grid (:data:`QUADRATURE_GRID`);
the fits are found by L-BFGS (optax) on gradients from ``jax.grad``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from vae_edu.kl import kl_diag_gaussians

__all__ = [
    "QUADRATURE_GRID",
    "GaussianFit",
    "ForwardReverseFits",
    "StandardNormalKL",
    "mixture_log_density",
    "fit_forward_reverse",
    "show_forward_reverse_fits",
    "show_kl_to_standard_normal",
]

# x-grid for every integral in this module: [-25, 25] in steps of 0.01. Wide enough that
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
    """What :func:`show_kl_to_standard_normal` displays.

    Attributes:
      kl: KL(q || N(0, 1)) in nats from the closed form (:func:`vae_edu.kl.kl_diag_gaussians`).
      kl_quadrature: the same KL as the area under the drawn integrand q log(q / p).
    """

    kl: float
    kl_quadrature: float


def _fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, never as '-0.00' for a rounding-level negative."""
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


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


def _kl_on_grid(log_a, log_b, grid):
    """KL(a || b) = int a(x) (log a(x) - log b(x)) dx by the trapezoid rule on ``grid``."""
    return jnp.trapezoid(jnp.exp(log_a) * (log_a - log_b), grid)


def _minimise(objective, init):
    """Runs L-BFGS (optax, zoom line search) for a fixed number of steps from ``init``."""
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (init, solver.init(init)), None, length=_LBFGS_STEPS)
    return params


@jax.jit
def _fit(separation, weight):
    grid = jnp.asarray(QUADRATURE_GRID)
    log_p = mixture_log_density(grid, separation, weight)

    def log_q(params):  # params = (mean, log_std)
        return norm.logpdf(grid, params[0], jnp.exp(params[1]))

    def forward(params):
        return _kl_on_grid(log_p, log_q(params), grid)

    def reverse(params):
        return _kl_on_grid(log_q(params), log_p, grid)

    # Forward KL is convex in (mean, log_std): any start reaches the optimum.
    forward_params = _minimise(forward, jnp.zeros(2))

    # Reverse KL has one local minimum per mode, so start at the best unit-variance
    # Gaussian on a grid of means. With a symmetric mixture the two modes tie up to
    # rounding; taking the right-most candidate within 1e-5 of the best keeps the choice
    # identical on every machine.
    init_means = jnp.asarray(_REVERSE_INIT_MEANS)
    candidates = jax.vmap(lambda m: reverse(jnp.stack([m, 0.0])))(init_means)
    near_best = candidates <= jnp.min(candidates) + 1e-5
    start = init_means[jnp.max(jnp.where(near_best, jnp.arange(init_means.size), -1))]
    reverse_params = _minimise(reverse, jnp.stack([start, 0.0]))

    return (forward_params, forward(forward_params), reverse_params, reverse(reverse_params))


def fit_forward_reverse(separation: float, weight: float = 0.5) -> ForwardReverseFits:
    r"""Fits one Gaussian q = N(m, s^2) to the mixture p of :func:`mixture_log_density`.

    Forward (inclusive) KL, mass-covering:

        q_fwd = argmin_q KL(p || q) = argmin_q int p(x) log(p(x) / q(x)) dx

    whose exact solution matches the moments of p (m = E_p[x], s^2 = Var_p[x]).

    Reverse (exclusive) KL, mode-seeking -- the direction a VAE's ELBO uses:

        q_rev = argmin_q KL(q || p) = argmin_q int q(x) log(q(x) / p(x)) dx

    Both integrals are trapezoidal quadrature on :data:`QUADRATURE_GRID`; both minimisations
    run L-BFGS over (m, log s) with ``jax.grad`` gradients. The reverse fit starts at the
    best unit-variance Gaussian over a grid of means (ties go to the right-hand mode).

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


def show_forward_reverse_fits(
    separation: float, weight: float = 0.5, ax=None
) -> ForwardReverseFits:
    """Draws the mixture p and its forward- and reverse-KL Gaussian fits; returns the fits.

    Widget callback for the mixture-separation slider. The legend shows the KL each fit
    reached (the numbers returned).

    Args:
      separation: s >= 0, distance between the mixture's component means.
      weight: w in (0, 1), weight of the right-hand component.
      ax: matplotlib Axes to draw into; a new figure is created if None.

    Returns:
      The ForwardReverseFits from :func:`fit_forward_reverse`.
    """
    fits = fit_forward_reverse(separation, weight)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    x = np.linspace(-10.0, 10.0, 801)
    ax.fill_between(
        x,
        np.exp(mixture_log_density(x, separation, weight)),
        color="0.85",
        label="target p (mixture)",
    )
    for fit, name, style in [
        (fits.forward, "forward: min KL(p||q)", "C0-"),
        (fits.reverse, "reverse: min KL(q||p)", "C3--"),
    ]:
        density = np.exp(norm.logpdf(x, fit.mean, fit.std))
        ax.plot(
            x,
            density,
            style,
            lw=2,
            label=f"{name} = {_fixed(fit.kl, 3)}\n"
            f"  q = N({_fixed(fit.mean, 2)}, {_fixed(fit.std, 2)}$^2$)",
        )
    ax.set_xlim(-10, 10)
    ax.set_ylim(0, 0.45)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"separation {separation:.1f}, weight of right mode {weight:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    return fits


def show_kl_to_standard_normal(mu: float, sigma: float, axes=None) -> StandardNormalKL:
    r"""Draws q = N(mu, sigma^2), p = N(0, 1) and the integrand of KL(q || p); returns the KL.

    Widget callback for the mu and sigma sliders. The closed form shown is

        KL(q || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)

    (:func:`vae_edu.kl.kl_diag_gaussians` with one dimension); the lower panel shows the
    integrand q(x) log(q(x)/p(x)), negative where q < p, whose total area is that KL.

    Args:
      mu: mean of q.
      sigma: standard deviation of q, > 0.
      axes: two matplotlib Axes (densities, integrand); a new figure is created if None.

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
    kl_quadrature = float(_kl_on_grid(log_q, norm.logpdf(grid, 0.0, 1.0), grid))

    if axes is None:
        _, axes = plt.subplots(
            2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
    top, bottom = axes
    x = np.linspace(-6.0, 6.0, 601)
    q = np.exp(norm.logpdf(x, mu, sigma))
    log_ratio = norm.logpdf(x, mu, sigma) - norm.logpdf(x, 0.0, 1.0)
    top.plot(x, np.exp(norm.logpdf(x, 0.0, 1.0)), "k--", lw=1.5, label="p = N(0, 1)")
    top.plot(x, q, "C0-", lw=2, label=f"q = N({_fixed(mu, 2)}, {_fixed(sigma, 2)}$^2$)")
    top.set_ylabel("density")
    top.set_ylim(0, max(0.45, 1.05 * float(q.max())))
    top.set_title(f"KL(q || N(0,1)) = {_fixed(kl, 4)} nats")
    top.legend(loc="upper left", fontsize=8)
    integrand = q * np.asarray(log_ratio)
    bottom.plot(x, integrand, "C3-", lw=1.5)
    bottom.fill_between(x, integrand, color="C3", alpha=0.3)
    bottom.axhline(0.0, color="k", lw=0.5)
    bottom.set_xlabel("x")
    bottom.set_ylabel("q log(q/p)")
    bottom.set_xlim(-6, 6)
    return StandardNormalKL(kl, kl_quadrature)
