r"""The linear-Gaussian latent-variable model, where everything a VAE approximates is exact.

    z ~ N(0, I_d),        x | z ~ N(W z + b, sigma_x^2 I_D),        W: (D, d), b: (D,).

It is the generative model of probabilistic PCA (Tipping & Bishop 1999) and the textbook
linear-Gaussian system of Bishop, *Pattern Recognition and Machine Learning* (PRML),
section 2.3.3, with (in PRML's notation) mu = 0, Lambda = I, A = W, L = sigma_x^{-2} I:

    evidence   p(x)     = N(x; b, C),          C = W W^T + sigma_x^2 I_D      (PRML 2.115)
    posterior  p(z | x) = N(z; m, S),          S = (I_d + W^T W / sigma_x^2)^{-1}  (2.117)
                                               m = S W^T (x - b) / sigma_x^2       (2.116)

so log p(x), p(z | x), the ELBO of any Gaussian q and the gap KL(q || p(z | x)) are all
available in closed form: the reference against which the Monte Carlo estimators in
:mod:`vae_edu.elbo` are tested, and the playground of the notebooks (d = D = 1 included).

Numerics. Everything is computed from Cholesky factors of whichever matrix is well
conditioned, chosen from the (static) shapes:

* d < D: the d x d matrix G = S^{-1} = I_d + W^T W / sigma_x^2 (eigenvalues >= 1), never C
  itself: for sigma_x^2 = e^{-30}, C has D - d eigenvalues of 1e-13 and its float32 Cholesky
  fails. Then log det C = D log sigma_x^2 + log det G (Sylvester's determinant identity) and
  (x - b)^T C^{-1} (x - b) = ||x - b - W m||^2 / sigma_x^2 + ||m||^2, a sum of non-negative
  terms (the minimum over z of ||x - b - W z||^2 / sigma_x^2 + ||z||^2, attained at z = m).
* d >= D: the D x D matrix C = W W^T + sigma_x^2 I_D (full rank through W W^T), with
  m = W^T C^{-1} (x - b) by the push-through identity S W^T / sigma_x^2 = W^T C^{-1}.

So log-variances log sigma_x^2 in [-30, 30] give finite values and gradients.

The model is a NamedTuple, hence a JAX pytree: it can be passed through jax.jit, vmapped
over, and differentiated with respect to W, b and log sigma_x^2 (maximum likelihood fits).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from vae_edu import _checks
from vae_edu.elbo import diag_gaussian_log_density, gaussian_log_likelihood
from vae_edu.kl import kl_diag_gaussians, kl_mvn

__all__ = [
    "GaussianPosterior",
    "JointSample",
    "LinearGaussianModel",
    "make_model",
    "make_scalar_model",
]

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianPosterior(NamedTuple):
    """The exact posterior p(z | x) = N(mean, cov); unpacks as ``mean, cov = ...``.

    Attributes:
      mean: (..., d) posterior mean m, one per data point.
      cov: (d, d) posterior covariance S (the same for every x in this model).
    """

    mean: jax.Array
    cov: jax.Array


class JointSample(NamedTuple):
    """Draws (z_i, x_i) ~ p(z) p(x | z); z: (n, d), x: (n, D)."""

    z: jax.Array
    x: jax.Array


def _check_batch_axes(a, b, name_a: str, name_b: str, event_a: int = 1, event_b: int = 1):
    """A ValueError naming both full shapes unless the leading (batch) axes broadcast."""
    try:
        np.broadcast_shapes(a.shape[: a.ndim - event_a], b.shape[: b.ndim - event_b])
    except ValueError:
        raise ValueError(
            f"{name_a} has shape {a.shape} and {name_b} has shape {b.shape}: their leading "
            "(batch) axes do not broadcast"
        ) from None


def _solve(chol, rhs):
    """G^{-1} rhs for vectors on the last axis of rhs (..., k), with chol = cholesky(G)."""
    flat = rhs.reshape(-1, rhs.shape[-1]).T  # (k, N)
    return cho_solve((chol, True), flat).T.reshape(rhs.shape)


class LinearGaussianModel(NamedTuple):
    r"""z ~ N(0, I_d), x | z ~ N(W z + b, sigma_x^2 I_D), with everything exact.

    Attributes:
      weight: (D, d) loading matrix W.
      bias: (D,) offset b.
      log_var_x: () observation-noise log-variance log sigma_x^2.

    Every method validates the shapes of the parameters and of its arguments and raises a
    ValueError naming both shapes on a mismatch. The methods are compiled with jax.jit
    (once per input shape), so repeated calls from a notebook slider are fast; they can
    also be used inside jit, vmap and grad.
    """

    weight: jax.Array
    bias: jax.Array
    log_var_x: jax.Array

    # ----------------------------------------------------------------- helpers

    def _params(self):
        weight = _checks.as_float(self.weight, "weight")
        bias = _checks.as_float(self.bias, "bias")
        log_var_x = _checks.as_float(self.log_var_x, "log_var_x")
        if weight.ndim != 2:
            raise ValueError(f"weight must have shape (D, d), got shape {weight.shape}")
        if bias.shape != weight.shape[:1]:
            raise ValueError(
                f"bias has shape {bias.shape} but weight has shape {weight.shape}; bias "
                f"must have shape (D,) = ({weight.shape[0]},)"
            )
        if log_var_x.ndim != 0:
            raise ValueError(f"log_var_x must be a scalar, got shape {log_var_x.shape}")
        return weight, bias, log_var_x

    @staticmethod
    def _check_last_axis(array, name, size, what, weight):
        _checks.at_least_1d(array, name)
        if array.shape[-1] != size:
            raise ValueError(
                f"{name} has shape {array.shape} but weight has shape {weight.shape}; the "
                f"last axis of {name} must be the {what} ({size})"
            )

    def _data(self, x, weight):
        x = _checks.as_float(x, "x")
        self._check_last_axis(x, "x", weight.shape[0], "data dimension D", weight)
        return x

    def _latent(self, z, name, weight):
        z = _checks.as_float(z, name)
        self._check_last_axis(z, name, weight.shape[1], "latent dimension d", weight)
        return z

    @staticmethod
    def _latent_gram_cholesky(weight, log_var_x):
        """Cholesky factor of G = S^{-1} = I_d + W^T W / sigma_x^2 (eigenvalues >= 1)."""
        gram = weight.T @ weight * jnp.exp(-log_var_x)
        return jnp.linalg.cholesky(jnp.eye(gram.shape[0], dtype=gram.dtype) + gram)

    @staticmethod
    def _evidence_cov_cholesky(weight, log_var_x):
        """Cholesky factor of C = W W^T + sigma_x^2 I_D."""
        cov = weight @ weight.T + jnp.exp(log_var_x) * jnp.eye(weight.shape[0], dtype=weight.dtype)
        return jnp.linalg.cholesky(cov)

    def _evidence_terms(self, residual, weight, log_var_x):
        """(m, (x-b)^T C^{-1} (x-b), log det C, log det S^{-1}) for r = x - b, (..., D)."""
        data_dim, latent_dim = weight.shape
        inv_var = jnp.exp(-log_var_x)
        if latent_dim < data_dim:
            # d x d route. m = G^{-1} W^T r / sigma^2 (PRML 2.116); quadratic form as the
            # minimum ||r - W m||^2 / sigma^2 + ||m||^2, a sum of non-negative terms; and
            # log det C = D log sigma^2 + log det G (Sylvester).
            chol = self._latent_gram_cholesky(weight, log_var_x)
            mean = _solve(chol, (residual @ weight) * inv_var)
            quadratic = jnp.sum(
                jnp.square(residual - mean @ weight.T), axis=-1
            ) * inv_var + jnp.sum(jnp.square(mean), axis=-1)
            log_det_precision = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
            log_det_cov = data_dim * log_var_x + log_det_precision
        else:
            # D x D route (C is well conditioned when d >= D): m = W^T C^{-1} r (push-through
            # identity S W^T / sigma^2 = W^T C^{-1}).
            chol = self._evidence_cov_cholesky(weight, log_var_x)
            solved = _solve(chol, residual)  # C^{-1} r
            mean = solved @ weight
            quadratic = jnp.sum(residual * solved, axis=-1)
            log_det_cov = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
            log_det_precision = log_det_cov - data_dim * log_var_x  # Sylvester
        return mean, quadratic, log_det_cov, log_det_precision

    # ---------------------------------------------------------------- properties

    @property
    def data_dim(self) -> int:
        """D, the number of observed dimensions."""
        return int(np.shape(self.weight)[0])

    @property
    def latent_dim(self) -> int:
        """d, the number of latent dimensions."""
        return int(np.shape(self.weight)[1])

    # ----------------------------------------------------------------- densities

    @jax.jit
    def log_prior(self, z):
        r"""log p(z) = log N(z; 0, I_d) = -1/2 sum_j (log 2 pi + z_j^2).

        Args:
          z: (..., d) latent points.

        Returns:
          (...) log-density in nats.
        """
        weight, _, _ = self._params()
        z = self._latent(z, "z", weight)
        return diag_gaussian_log_density(z, 0.0, 0.0)

    @jax.jit
    def log_likelihood(self, x, z):
        r"""log p(x | z) = log N(x; W z + b, sigma_x^2 I_D)  (PRML 2.114).

            = -1/2 [ D log(2 pi sigma_x^2) + ||x - W z - b||^2 / sigma_x^2 ]

        Batched over the leading axes of z, so ``functools.partial(model.log_likelihood, x)``
        is a ``log_likelihood_fn`` for :func:`vae_edu.elbo.elbo`.

        Args:
          x: (..., D) data, broadcast against the leading axes of z.
          z: (..., d) latent points, e.g. (L, d) samples for one x or (L, B, d) for a batch
            x of shape (B, D).

        Returns:
          (...) log p(x | z), the broadcast of x.shape[:-1] and z.shape[:-1].
        """
        weight, bias, log_var_x = self._params()
        x = self._data(x, weight)
        z = self._latent(z, "z", weight)
        _check_batch_axes(x, z, "x", "z")
        return gaussian_log_likelihood(x, z @ weight.T + bias, log_var_x)

    @jax.jit
    def log_evidence(self, x):
        r"""Exact log p(x) = log N(x; b, W W^T + sigma_x^2 I_D)  (PRML 2.115).

            log p(x) = -1/2 [ D log 2 pi + log det C + (x - b)^T C^{-1} (x - b) ],
            log det C = D log sigma_x^2 + log det G                   (Sylvester),
            (x - b)^T C^{-1} (x - b) = ||x - b - W m||^2 / sigma_x^2 + ||m||^2,

        with m the posterior mean (see the module docstring for G).

        Args:
          x: (..., D) data.

        Returns:
          (...) log p(x) in nats.
        """
        weight, bias, log_var_x = self._params()
        x = self._data(x, weight)
        _, quadratic, log_det_cov, _ = self._evidence_terms(x - bias, weight, log_var_x)
        data_dim = weight.shape[0]
        return -0.5 * (data_dim * _LOG_2PI + log_det_cov + quadratic)

    @jax.jit
    def posterior(self, x) -> GaussianPosterior:
        r"""Exact posterior p(z | x) = N(m, S)  (PRML 2.116-2.117).

            S = (I_d + W^T W / sigma_x^2)^{-1},      m = S W^T (x - b) / sigma_x^2.

        For d > D this is evaluated through the push-through/Woodbury forms
        m = W^T C^{-1} (x - b) and S = I_d - W^T C^{-1} W with C = W W^T + sigma_x^2 I_D,
        which need only a D x D factorisation. (For d > D and tiny sigma_x^2, S has D
        eigenvalues of order sigma_x^2 that float32 cannot resolve; use log_posterior,
        which never forms S, for densities.)

        Args:
          x: (..., D) data.

        Returns:
          GaussianPosterior(mean (..., d), cov (d, d)).
        """
        weight, bias, log_var_x = self._params()
        x = self._data(x, weight)
        mean, _, _, _ = self._evidence_terms(x - bias, weight, log_var_x)
        data_dim, latent_dim = weight.shape
        if latent_dim <= data_dim:
            chol = self._latent_gram_cholesky(weight, log_var_x)
            cov = cho_solve((chol, True), jnp.eye(latent_dim, dtype=chol.dtype))
        else:
            chol = self._evidence_cov_cholesky(weight, log_var_x)
            cov = jnp.eye(latent_dim, dtype=chol.dtype) - weight.T @ cho_solve((chol, True), weight)
        return GaussianPosterior(mean=mean, cov=0.5 * (cov + cov.T))

    @jax.jit
    def log_posterior(self, x, z):
        r"""Exact log p(z | x) = log N(z; m, S), in precision form (no inverse of S needed).

            log p(z | x) = -1/2 [ d log 2 pi - log det S^{-1}
                                  + ||z - m||^2 + ||W (z - m)||^2 / sigma_x^2 ],

        since S^{-1} = I_d + W^T W / sigma_x^2 and log det S^{-1} = log det G (Sylvester).

        Args:
          x: (..., D) data.
          z: (..., d) latent points; leading axes broadcast against those of x.

        Returns:
          (...) log p(z | x) in nats.
        """
        weight, bias, log_var_x = self._params()
        x = self._data(x, weight)
        z = self._latent(z, "z", weight)
        _check_batch_axes(x, z, "x", "z")
        mean, _, _, log_det_precision = self._evidence_terms(x - bias, weight, log_var_x)
        delta = z - mean
        quadratic = jnp.sum(jnp.square(delta), axis=-1) + jnp.sum(
            jnp.square(delta @ weight.T), axis=-1
        ) * jnp.exp(-log_var_x)
        return -0.5 * (weight.shape[1] * _LOG_2PI - log_det_precision + quadratic)

    # ------------------------------------------------- the ELBO of a Gaussian q

    def _gaussian_q(self, mean, cov, weight):
        mean = self._latent(mean, "mean", weight)
        cov = _checks.as_float(cov, "cov")
        latent_dim = weight.shape[1]
        if cov.ndim < 2 or cov.shape[-2:] != (latent_dim, latent_dim):
            raise ValueError(
                f"cov has shape {cov.shape} but mean has shape {mean.shape}; cov must have "
                f"shape (..., d, d) = (..., {latent_dim}, {latent_dim})"
            )
        _check_batch_axes(mean, cov, "mean", "cov", event_b=2)
        return mean, cov

    @jax.jit
    def expected_log_likelihood(self, x, mean, cov):
        r"""E_{q}[log p(x | z)] for q(z) = N(mean, cov), in closed form.

            E_q[log p(x | z)] = -1/2 [ D log(2 pi sigma_x^2)
                                       + (||x - W mu_q - b||^2 + tr(W Sigma_q W^T)) / sigma_x^2 ]

        (E||x - W z - b||^2 = ||x - W mu_q - b||^2 + tr(W Sigma_q W^T) for z ~ q.) This is the
        exact reconstruction term that the Monte Carlo ELBO estimates.

        Args:
          x: (..., D) data.
          mean: (..., d) mean of q.
          cov: (d, d) or (..., d, d) covariance of q (e.g. ``jnp.diag(jnp.exp(log_var))``
            for the diagonal q of a VAE encoder).

        Returns:
          (...) the expected log-likelihood in nats.
        """
        weight, bias, log_var_x = self._params()
        x = self._data(x, weight)
        mean, cov = self._gaussian_q(mean, cov, weight)
        squared_error = jnp.sum(jnp.square(x - mean @ weight.T - bias), axis=-1)
        trace = jnp.sum(weight * (weight @ cov), axis=(-2, -1))  # tr(W Sigma W^T)
        data_dim = weight.shape[0]
        return -0.5 * (
            data_dim * (_LOG_2PI + log_var_x) + (squared_error + trace) * jnp.exp(-log_var_x)
        )

    def exact_elbo(self, x, mean, cov):
        r"""The ELBO of q(z) = N(mean, cov), exactly (no sampling).

            ELBO(q) = E_q[log p(x | z)] - KL(N(mu_q, Sigma_q) || N(0, I_d)),
            KL = 1/2 [ tr Sigma_q + ||mu_q||^2 - d - log det Sigma_q ]   (vae_edu.kl.kl_mvn),

        and log p(x) - ELBO(q) = KL(q || p(z | x)) >= 0, zero iff q is the exact posterior.

        Args:
          x: (..., D) data.
          mean: (..., d) mean of q.
          cov: (d, d) or (..., d, d) positive-definite covariance of q.

        Returns:
          (...) the ELBO in nats.
        """
        weight, _, _ = self._params()
        mean, cov = self._gaussian_q(mean, cov, weight)
        latent_dim = weight.shape[1]
        kl = kl_mvn(
            mean,
            cov,
            jnp.zeros(latent_dim, dtype=mean.dtype),
            jnp.eye(latent_dim, dtype=mean.dtype),
        )
        return self.expected_log_likelihood(x, mean, cov) - kl

    # ------------------------------------------------------------------ sampling

    @functools.partial(jax.jit, static_argnames="num_samples")
    def sample(self, key, num_samples) -> JointSample:
        r"""Ancestral samples: z_i ~ N(0, I_d), then x_i = W z_i + b + sigma_x eps_i.

        Args:
          key: a jax.random key.
          num_samples: n >= 1.

        Returns:
          JointSample(z (n, d), x (n, D)); the x_i are draws from the evidence p(x).
        """
        weight, bias, log_var_x = self._params()
        num_samples = _checks.count(num_samples, "num_samples")
        key_z, key_x = jax.random.split(key)
        data_dim, latent_dim = weight.shape
        z = jax.random.normal(key_z, (num_samples, latent_dim), dtype=weight.dtype)
        noise = jax.random.normal(key_x, (num_samples, data_dim), dtype=weight.dtype)
        return JointSample(z=z, x=z @ weight.T + bias + jnp.exp(0.5 * log_var_x) * noise)


def _check_positive(value, name: str):
    """``value`` as a float array; a ValueError naming it if concrete and not all > 0."""
    value = _checks.as_float(value, name)
    concrete = _checks.concrete(value)  # None under jit / vmap / grad: values unknown
    if concrete is not None and not np.all(concrete > 0):
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_parameters(key, data_dim, latent_dim):
    key_w, key_b = jax.random.split(key)
    return (jax.random.normal(key_w, (data_dim, latent_dim)), jax.random.normal(key_b, (data_dim,)))


def make_model(key, data_dim, latent_dim, noise_std) -> LinearGaussianModel:
    r"""A random linear-Gaussian model: W_ij ~ N(0, 1), b_i ~ N(0, 1), sigma_x = noise_std.

    Args:
      key: a jax.random key.
      data_dim: D >= 1.
      latent_dim: d >= 1.
      noise_std: sigma_x > 0 (stored as log_var_x = 2 log sigma_x).

    Returns:
      LinearGaussianModel with weight (D, d), bias (D,), log_var_x ().

    Raises:
      ValueError: for non-positive dimensions or noise_std.
    """
    data_dim = _checks.count(data_dim, "data_dim")
    latent_dim = _checks.count(latent_dim, "latent_dim")
    noise_std = _check_positive(noise_std, "noise_std")
    weight, bias = _random_parameters(key, data_dim, latent_dim)
    return LinearGaussianModel(
        weight=weight, bias=bias, log_var_x=(2.0 * jnp.log(noise_std)).astype(weight.dtype)
    )


def make_scalar_model(weight, bias, noise_std) -> LinearGaussianModel:
    r"""The one-dimensional model z ~ N(0, 1), x | z ~ N(w z + b, sigma_x^2) (d = D = 1).

    Then p(x) = N(x; b, w^2 + sigma_x^2) and p(z | x) = N(w (x - b) / (w^2 + sigma_x^2),
    sigma_x^2 / (w^2 + sigma_x^2)). Data and latents keep a trailing axis of size 1:
    use ``x[..., None]``.

    Args:
      weight: scalar w.
      bias: scalar b.
      noise_std: scalar sigma_x > 0.

    Returns:
      LinearGaussianModel with weight (1, 1), bias (1,), log_var_x ().
    """
    weight, bias = _checks.as_float(weight, "weight"), _checks.as_float(bias, "bias")
    noise_std = _check_positive(noise_std, "noise_std")
    for name, value in (("weight", weight), ("bias", bias), ("noise_std", noise_std)):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got shape {value.shape}")
    dtype = jnp.result_type(weight.dtype, bias.dtype, noise_std.dtype)
    return LinearGaussianModel(
        weight=weight.reshape(1, 1).astype(dtype),
        bias=bias.reshape(1).astype(dtype),
        log_var_x=(2.0 * jnp.log(noise_std)).astype(dtype),
    )


# --------------------------------------------------------------------------------------
# Lessons on the conjugate model (notebooks 01, 03, 05): the 1-D Bayes update, the
# exact ELBO readout of a diagonal q, probabilistic PCA and the tempered optimal q.
# --------------------------------------------------------------------------------------

__all__ += [
    "ELBOReadout",
    "GaussianBayesUpdate",
    "elbo_readout",
    "expected_log_likelihood_per_pixel",
    "fit_ppca",
    "gaussian_bayes_update",
    "weighted_optimal_q",
]


class GaussianBayesUpdate(NamedTuple):
    """Exact Bayes update of the 1-D conjugate Gaussian model (Python floats).

    The posterior p(z | x) = N(mean, std^2) together with the evidence p(x): for the
    posterior alone, in any dimension, see :class:`GaussianPosterior`.

    Attributes:
      mean: posterior mean E[z | x].
      std: posterior standard deviation sqrt(Var[z | x]).
      evidence: p(x), the marginal density of the observation.
      log_evidence: log p(x) (finite even where p(x) underflows to 0).
    """

    mean: float
    std: float
    evidence: float
    log_evidence: float


def gaussian_bayes_update(prior_mean, prior_std, noise_std, x) -> GaussianBayesUpdate:
    r"""Exact posterior and evidence of the 1-D conjugate Gaussian model (notebook 01, step 4).

    Prior z ~ N(m_0, s_0^2), likelihood x | z ~ N(z, sigma^2). Completing the square in
    log p(x | z) + log p(z) gives precisions that add and a precision-weighted mean:

        1 / s_post^2 = 1 / s_0^2 + 1 / sigma^2
        m_post       = s_post^2 * (m_0 / s_0^2 + x / sigma^2)

    and the evidence is the integral of the joint over z,

        p(x) = int N(x; z, sigma^2) N(z; m_0, s_0^2) dz = N(x; m_0, s_0^2 + sigma^2).

    This is :class:`LinearGaussianModel` with d = D = 1 written for z = m_0 + s_0 u (W = s_0,
    b = m_0), in float64 scalar arithmetic: the closed form that notebook 01 checks the
    general (float32, matrix) model against.

    Args:
      prior_mean: scalar m_0.
      prior_std: scalar s_0 > 0 (a standard deviation, not a variance).
      noise_std: scalar sigma > 0, the likelihood's noise standard deviation.
      x: scalar observation.

    Returns:
      GaussianBayesUpdate(mean, std, evidence, log_evidence) as Python floats.

    Raises:
      ValueError: if a standard deviation is not positive and finite, or a location is
        not finite.
    """
    prior_mean = _checks.finite_scalar(prior_mean, "prior_mean")
    prior_std = _checks.positive_finite_scalar(prior_std, "prior_std")
    noise_std = _checks.positive_finite_scalar(noise_std, "noise_std")
    x = _checks.finite_scalar(x, "x")
    prior_var, noise_var = prior_std**2, noise_std**2
    # s_post^2 = s_0^2 sigma^2 / (s_0^2 + sigma^2): the same as 1 / (1/s_0^2 + 1/sigma^2),
    # written so that neither tiny nor huge standard deviations overflow.
    marginal_var = prior_var + noise_var
    post_var = prior_var * (noise_var / marginal_var)
    post_mean = (prior_mean * noise_var + x * prior_var) / marginal_var
    marginal_std = math.sqrt(marginal_var)
    log_evidence = (
        -0.5 * ((x - prior_mean) / marginal_std) ** 2 - math.log(marginal_std) - 0.5 * _LOG_2PI
    )
    return GaussianBayesUpdate(
        mean=float(post_mean),
        std=math.sqrt(post_var),
        evidence=math.exp(log_evidence),
        log_evidence=log_evidence,
    )


class ELBOReadout(NamedTuple):
    """The exact ELBO of a Gaussian q and its gap to log p(x), all in nats.

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
      model: a :class:`LinearGaussianModel` (weight (D, d), bias (D,), scalar log_var_x).
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
      A :class:`LinearGaussianModel` (float32 weight (D, d), bias (D,), scalar log_var_x).

    Raises:
      ValueError: if images is not 2-D with N >= 2, or d is not in [1, D).
      TypeError: if latent_dim is not an integer.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"images must have shape (N, D) with N >= 2, got {x.shape}")
    data_dim = x.shape[1]
    latent_dim = _checks.count(latent_dim, "latent_dim")
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


def _model_and_data(model, x):
    """(weight, bias, log_var_x, x) after the model's own shape checks (names both shapes)."""
    weight, bias, log_var_x = model._params()
    return weight, bias, log_var_x, model._data(x, weight)


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

    The mean is the posterior mean of the tempered model (log sigma^2 - log gamma in place
    of log sigma^2), computed by the same Cholesky solve as :meth:`LinearGaussianModel.posterior`.

    Args:
      model: a :class:`LinearGaussianModel` (weight (D, d), bias (D,), log_var_x).
      x: (..., D) data.
      reconstruction_weight: gamma > 0 (a float or a traced scalar).

    Returns:
      (mean, log_var), each (..., d).

    Raises:
      ValueError: if x's last axis is not D (names both shapes) or the model's shapes are
        inconsistent.
    """
    weight, bias, log_var_x, x = _model_and_data(model, x)
    if not isinstance(reconstruction_weight, jax.core.Tracer):
        _checks.positive_finite_scalar(reconstruction_weight, "reconstruction_weight")
    return _weighted_optimal_q(weight, bias, log_var_x, x, reconstruction_weight)


@jax.jit
def _weighted_optimal_q(weight, bias, log_var_x, x, gamma):
    # The tempered decoder variance sigma^2 / gamma, in log space so that a tiny sigma^2 or
    # a huge gamma cannot overflow early.
    tempered = LinearGaussianModel(weight, bias, log_var_x - jnp.log(gamma))
    mean, _, _, _ = tempered._evidence_terms(x - bias, weight, tempered.log_var_x)
    log_var = -jnp.log1p(jnp.exp(-tempered.log_var_x) * jnp.sum(jnp.square(weight), axis=0))
    return mean, jnp.broadcast_to(log_var, mean.shape)


def expected_log_likelihood_per_pixel(model, x, mean, log_var):
    r"""E_q[log N(x_i; (W z + b)_i, sigma^2)] for each pixel i, q = N(m, diag s^2).

        E_q[log p(x_i | z)] = -1/2 [ log(2 pi sigma^2)
                                     + ((x_i - (W m + b)_i)^2 + sum_j W_ij^2 s_j^2) / sigma^2 ]

    (the variance of (W z)_i under q is sum_j W_ij^2 s_j^2). Summed over i it is
    :meth:`LinearGaussianModel.expected_log_likelihood` with a diagonal covariance.

    Args:
      model: a :class:`LinearGaussianModel`.
      x: (..., D) data.
      mean: (..., d) mean of q.
      log_var: (..., d) log-variance of q.

    Returns:
      (..., D) expected log-likelihood of each pixel, nats.
    """
    weight, bias, log_var_x, x = _model_and_data(model, x)
    mean = model._latent(mean, "mean", weight)
    log_var = _checks.as_float(log_var, "log_var")
    _checks.same_shape(mean, log_var, "mean", "log_var")
    decoded = mean @ weight.T + bias
    spread = jnp.exp(log_var) @ jnp.square(weight).T
    return -0.5 * (_LOG_2PI + log_var_x + (jnp.square(x - decoded) + spread) * jnp.exp(-log_var_x))
