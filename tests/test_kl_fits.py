"""Tests for the lesson section of vae_edu.kl (notebook 02): quadrature and the two fits.

Every number is checked against an independent route: scipy's adaptive quadrature with
scipy.stats densities, the exact moment-matching solution of the forward-KL fit, the
analytic large-separation limit of the reverse-KL fit, and kl_diag_gaussians.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_edu import kl
from vae_edu.kl import (
    fit_forward_reverse,
    kl_diag_gaussians,
    kl_to_standard_normal,
    mixture_log_density,
)


def scipy_mixture_pdf(x, separation, weight):
    return (1 - weight) * stats.norm.pdf(x, -separation / 2, 1.0) + weight * stats.norm.pdf(
        x, separation / 2, 1.0
    )


def normal_logpdf(x, mean, std):
    """log N(x; mean, std^2) written out (scalar math: fast inside scipy's quad loop)."""
    return -0.5 * math.log(2 * math.pi) - math.log(std) - 0.5 * ((x - mean) / std) ** 2


def mixture_logpdf(x, separation, weight):
    return np.logaddexp(
        math.log1p(-weight) + normal_logpdf(x, -separation / 2, 1.0),
        math.log(weight) + normal_logpdf(x, separation / 2, 1.0),
    )


def scipy_kl(log_a, log_b):
    """KL(a || b) by scipy's adaptive quadrature on [-40, 40]."""
    value, _ = integrate.quad(
        lambda x: math.exp(log_a(x)) * (log_a(x) - log_b(x)),
        -40.0,
        40.0,
        points=[-5, -2, 0, 2, 5],
        limit=400,
        epsabs=1e-11,
        epsrel=1e-10,
    )
    return value


def forward_and_reverse_kl(separation, weight, mean, std):
    """(KL(p || q), KL(q || p)) for the mixture p and q = N(mean, std^2), by scipy."""

    def log_p(x):
        return mixture_logpdf(x, separation, weight)

    def log_q(x):
        return normal_logpdf(x, mean, std)

    return scipy_kl(log_p, log_q), scipy_kl(log_q, log_p)


# -------------------------------------------------------------------------- mixture


@pytest.mark.parametrize("separation, weight", [(0.0, 0.5), (3.0, 0.5), (6.0, 0.2)])
def test_mixture_log_density_matches_scipy_and_normalises(separation, weight):
    x = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(
        mixture_log_density(x, separation, weight),
        np.log(scipy_mixture_pdf(x, separation, weight)),
        rtol=1e-5,
        atol=1e-5,
    )
    total, _ = integrate.quad(lambda t: scipy_mixture_pdf(t, separation, weight), -30, 30)
    on_grid = np.trapezoid(
        np.exp(mixture_log_density(kl.QUADRATURE_GRID, separation, weight)),
        kl.QUADRATURE_GRID,
    )
    assert abs(total - 1.0) < 1e-8
    assert abs(on_grid - 1.0) < 1e-5


def test_mixture_log_density_is_finite_far_in_the_tails_and_jits_vmaps_grads():
    x = jnp.array([-60.0, 0.0, 60.0])
    assert np.all(np.isfinite(mixture_log_density(x, 8.0, 0.5)))
    jitted = jax.jit(mixture_log_density)(x, 8.0, 0.5)
    np.testing.assert_allclose(jitted, mixture_log_density(x, 8.0, 0.5), rtol=1e-6)
    mapped = jax.vmap(lambda s: mixture_log_density(1.0, s))(jnp.array([0.0, 2.0]))
    np.testing.assert_allclose(
        mapped, [mixture_log_density(1.0, 0.0), mixture_log_density(1.0, 2.0)], rtol=1e-6
    )
    # d/dx log p(x) = E[component mean - x | x]; at separation 0 it is just -x.
    assert float(jax.grad(mixture_log_density)(1.5, 0.0)) == pytest.approx(-1.5, abs=1e-5)
    # Independent route: central finite difference of the scipy log-density.
    h = 1e-4
    fd = (
        np.log(scipy_mixture_pdf(0.7 + h, 4.0, 0.3)) - np.log(scipy_mixture_pdf(0.7 - h, 4.0, 0.3))
    ) / (2 * h)
    assert float(jax.grad(mixture_log_density)(0.7, 4.0, 0.3)) == pytest.approx(fd, abs=1e-4)


# ---------------------------------------------------------------- forward / reverse


@pytest.mark.parametrize(
    "separation, weight", [(0.0, 0.5), (2.0, 0.5), (6.0, 0.5), (5.0, 0.3), (8.0, 0.8)]
)
def test_forward_fit_is_moment_matching(separation, weight):
    """argmin_q KL(p||q) over Gaussians has q's mean and variance equal to p's."""
    fits = fit_forward_reverse(separation, weight)
    mean = (2 * weight - 1) * separation / 2
    std = np.sqrt(1 + weight * (1 - weight) * separation**2)
    assert fits.forward.mean == pytest.approx(mean, abs=1e-4)
    assert fits.forward.std == pytest.approx(std, abs=1e-4)


@pytest.mark.parametrize("separation, weight", [(2.0, 0.5), (4.0, 0.5), (6.0, 0.5), (5.0, 0.3)])
def test_reported_kls_match_scipy_quadrature(separation, weight):
    fits = fit_forward_reverse(separation, weight)
    fwd_kl, _ = forward_and_reverse_kl(separation, weight, fits.forward.mean, fits.forward.std)
    _, rev_kl = forward_and_reverse_kl(separation, weight, fits.reverse.mean, fits.reverse.std)
    assert fits.forward.kl == pytest.approx(fwd_kl, abs=2e-5)
    assert fits.reverse.kl == pytest.approx(rev_kl, abs=2e-5)


@pytest.mark.parametrize("separation, weight", [(3.0, 0.5), (6.0, 0.5), (5.0, 0.3)])
def test_each_fit_is_optimal_for_its_own_direction(separation, weight):
    """Each fit beats the other fit, and every small perturbation, in its own KL."""
    fits = fit_forward_reverse(separation, weight)
    fwd_of_rev, _ = forward_and_reverse_kl(separation, weight, fits.reverse.mean, fits.reverse.std)
    _, rev_of_fwd = forward_and_reverse_kl(separation, weight, fits.forward.mean, fits.forward.std)
    assert fits.forward.kl <= fwd_of_rev + 1e-6
    assert fits.reverse.kl <= rev_of_fwd + 1e-6
    for d_mean, d_std in [(0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05)]:
        fwd, _ = forward_and_reverse_kl(
            separation, weight, fits.forward.mean + d_mean, fits.forward.std + d_std
        )
        _, rev = forward_and_reverse_kl(
            separation, weight, fits.reverse.mean + d_mean, fits.reverse.std + d_std
        )
        assert fwd > fits.forward.kl
        assert rev > fits.reverse.kl


def test_reverse_fit_locks_onto_one_mode_when_modes_are_far_apart():
    """Far-apart modes: q_rev ~ one component and KL(q||p) -> -log(weight of that mode)."""
    symmetric = fit_forward_reverse(10.0, 0.5)
    assert symmetric.reverse.mean == pytest.approx(5.0, abs=1e-3)  # ties go right
    assert symmetric.reverse.std == pytest.approx(1.0, abs=1e-3)
    assert symmetric.reverse.kl == pytest.approx(np.log(2.0), abs=1e-3)
    lopsided = fit_forward_reverse(10.0, 0.3)  # the heavier mode is the left one
    assert lopsided.reverse.mean == pytest.approx(-5.0, abs=1e-3)
    assert lopsided.reverse.kl == pytest.approx(-np.log(0.7), abs=1e-3)
    # ... while the forward fit sits between the modes, covering both.
    assert symmetric.forward.mean == pytest.approx(0.0, abs=1e-4)
    assert symmetric.forward.std > 5.0


def test_zero_separation_both_fits_recover_the_target_exactly():
    fits = fit_forward_reverse(0.0)
    for fit in fits:
        assert fit.mean == pytest.approx(0.0, abs=1e-4)
        assert fit.std == pytest.approx(1.0, abs=1e-4)
        assert fit.kl == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("separation, weight", [(-1.0, 0.5), (np.nan, 0.5), (2.0, 0.0), (2.0, 1.0)])
def test_fit_rejects_bad_mixtures(separation, weight):
    with pytest.raises(ValueError, match="separation|weight"):
        fit_forward_reverse(separation, weight)


# ---------------------------------------------------------- KL to a standard normal


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (2.0, 1.0), (-1.3, 0.4), (0.5, 2.5), (0.0, 0.1)])
def test_kl_to_standard_normal_matches_closed_form_and_scipy(mu, sigma):
    shown = kl_to_standard_normal(mu, sigma)
    closed = float(kl_diag_gaussians(jnp.array([mu]), jnp.array([2 * np.log(sigma)])))
    by_scipy = scipy_kl(
        lambda x: stats.norm.logpdf(x, mu, sigma), lambda x: stats.norm.logpdf(x, 0.0, 1.0)
    )
    assert shown.kl == pytest.approx(closed, rel=1e-6)
    assert shown.kl == pytest.approx(by_scipy, rel=1e-5, abs=1e-6)
    assert shown.kl_quadrature == pytest.approx(by_scipy, rel=1e-4, abs=1e-6)


def test_kl_to_standard_normal_known_values():
    """The values a student can check by hand: 0 at q = p, mu^2 / 2 for unit sigma."""
    assert kl_to_standard_normal(0.0, 1.0).kl == pytest.approx(0.0)
    assert kl_to_standard_normal(2.0, 1.0).kl == pytest.approx(2.0)
    assert kl_to_standard_normal(-2.0, 1.0).kl == pytest.approx(kl_to_standard_normal(2.0, 1.0).kl)


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.inf, np.nan])
def test_kl_to_standard_normal_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        kl_to_standard_normal(0.0, sigma)
