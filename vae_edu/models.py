"""The variational autoencoder of the course, in Flax NNX.

Generative model (Kingma & Welling 2014, section 3):

    p(z) = N(0, I_d),        p_theta(x | z) = prod_i Bernoulli(x_i ; sigmoid(f_theta(z)_i))

and the amortised approximate posterior (the *encoder*):

    q_phi(z | x) = N(z ; mu_phi(x), diag exp(log_var_phi(x))).

Both networks are MLPs. ``f_theta(z)`` is the decoder's output, one *logit* per pixel. With
``likelihood="gaussian"`` the same logits give the mean sigmoid(f_theta(z)) of a Gaussian
with a fixed variance exp(gaussian_log_var): its log-likelihood is
``-||x - mean||^2 / (2 sigma^2) + const``, i.e. a weighted squared error (the MSE lesson).

The loss minimised in training is the negative *weighted* ELBO, averaged over the batch,

    loss = mean_n [ -alpha * E_q[log p(x_n | z)] + beta * KL(q(z | x_n) || p(z)) ],

with one reparameterized sample z = mu + exp(log_var / 2) * eps for the expectation and the
closed-form KL. alpha = beta = 1 is the plain VAE; beta = 0 is an autoencoder with noise.
Everything is summed over pixels and latent dimensions, averaged over the batch.

Example::

    model = VAE(VAEConfig(hidden_sizes=(400,), latent_dim=20), rngs=nnx.Rngs(0))
    mean, log_var = model.encode(x)          # x: (batch, 784) in [0, 1]
    logits = model.decode(mean)              # (batch, 784)
    images = model.mean_image(mean)          # sigmoid(logits)
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_edu import elbo as elbo_lib
from vae_edu import kl as kl_lib

__all__ = ["VAEConfig", "VAE", "LossTerms", "ACTIVATIONS", "LIKELIHOODS", "count_parameters"]

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}
LIKELIHOODS = ("bernoulli", "gaussian")
#: The encoder's log-variances are clipped to [-LOG_VAR_LIMIT, LOG_VAR_LIMIT].
LOG_VAR_LIMIT = 30.0


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The architecture of a :class:`VAE` (frozen, hashable, JSON-serialisable).

    Attributes:
      input_dim: number of pixels D (784 for MNIST).
      hidden_sizes: widths of the encoder's hidden layers, e.g. ``(512, 256)`` for
        784-512-256-d. The decoder mirrors them (d-256-512-784) unless
        ``decoder_hidden_sizes`` is given.
      latent_dim: dimension d of z.
      decoder_hidden_sizes: the decoder's hidden widths (from z to x); ``None`` = mirror.
      activation: one of :data:`ACTIVATIONS`.
      likelihood: ``"bernoulli"`` (logits) or ``"gaussian"`` (mean sigmoid(logits) and a
        fixed variance exp(gaussian_log_var)).
      gaussian_log_var: log sigma^2 of the Gaussian decoder; ignored for Bernoulli.
    """

    input_dim: int = 784
    hidden_sizes: tuple[int, ...] = (400,)
    latent_dim: int = 20
    decoder_hidden_sizes: tuple[int, ...] | None = None
    activation: str = "relu"
    likelihood: str = "bernoulli"
    gaussian_log_var: float = 0.0

    def __post_init__(self):
        # Normalise lists (e.g. from JSON) to tuples so the config stays hashable.
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.decoder_hidden_sizes is not None:
            object.__setattr__(
                self, "decoder_hidden_sizes", tuple(int(h) for h in self.decoder_hidden_sizes)
            )
        for name in ("input_dim", "latent_dim"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, sizes in (
            ("hidden_sizes", self.hidden_sizes),
            ("decoder_hidden_sizes", self.decoder_hidden_sizes or ()),
        ):
            if any(h < 1 for h in sizes):
                raise ValueError(f"{name} must be positive integers, got {sizes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not math.isfinite(self.gaussian_log_var):
            raise ValueError(f"gaussian_log_var must be finite, got {self.gaussian_log_var}")

    @property
    def decoder_sizes(self) -> tuple[int, ...]:
        """The decoder's hidden widths, from z towards x."""
        if self.decoder_hidden_sizes is not None:
            return self.decoder_hidden_sizes
        return tuple(reversed(self.hidden_sizes))

    def describe(self) -> str:
        """A short name such as ``"784-512-256-32 (relu, bernoulli)"``."""
        sizes = "-".join(str(s) for s in (self.input_dim, *self.hidden_sizes, self.latent_dim))
        return f"{sizes} ({self.activation}, {self.likelihood})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        if self.decoder_hidden_sizes is not None:
            out["decoder_hidden_sizes"] = list(self.decoder_hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        return cls.from_dict(json.loads(text))


class LossTerms(NamedTuple):
    """Batch averages (nats per example) returned next to the loss.

    Attributes:
      reconstruction: mean over the batch of log p(x | z), z ~ q(z | x) (one sample).
      kl: mean over the batch of KL(q(z | x) || p(z)) (closed form).
      elbo: reconstruction - kl, the *unweighted* ELBO whatever alpha and beta are.
    """

    reconstruction: jax.Array
    kl: jax.Array
    elbo: jax.Array


class MLP(nnx.Module):
    """Dense layers ``hidden_0, hidden_1, ...`` with an activation, then a linear ``output``.

    Layers are named attributes (not a list) so checkpoint paths read
    ``encoder.hidden_0.kernel``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: tuple[int, ...],
        out_features: int,
        activation: str,
        *,
        rngs: nnx.Rngs,
    ):
        self.num_hidden = len(hidden_sizes)
        self.activation = activation
        width = in_features
        for i, size in enumerate(hidden_sizes):
            setattr(self, f"hidden_{i}", nnx.Linear(width, size, rngs=rngs))
            width = size
        self.output = nnx.Linear(width, out_features, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i in range(self.num_hidden):
            x = act(getattr(self, f"hidden_{i}")(x))
        return self.output(x)


class VAE(nnx.Module):
    """An MLP VAE with a diagonal-Gaussian encoder and a Bernoulli (or Gaussian) decoder.

    Args:
      config: the architecture (:class:`VAEConfig`).
      rngs: ``nnx.Rngs`` for the initial weights (LeCun-normal kernels, zero biases).
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}")
        self.config = config
        # The encoder's last layer outputs [mean, log_var] side by side: (..., 2 d).
        self.encoder = MLP(
            config.input_dim,
            config.hidden_sizes,
            2 * config.latent_dim,
            config.activation,
            rngs=rngs,
        )
        self.decoder = MLP(
            config.latent_dim, config.decoder_sizes, config.input_dim, config.activation, rngs=rngs
        )

    # ----------------------------------------------------------------------------- networks
    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The posterior q(z | x) = N(mean, diag exp(log_var)).

        Args:
          x: (..., input_dim) pixels in [0, 1] (binary or grayscale).

        Returns:
          ``(mean, log_var)``, each (..., latent_dim); log_var is clipped to
          [-LOG_VAR_LIMIT, LOG_VAR_LIMIT] = [-30, 30].

        Raises:
          ValueError: if the last axis of ``x`` is not ``input_dim``.
        """
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"x has shape {x.shape} but the model expects (..., {self.config.input_dim})"
            )
        out = self.encoder(x.astype(jnp.float32) if x.dtype != jnp.float64 else x)
        mean, log_var = jnp.split(out, 2, axis=-1)
        # Keep log sigma^2 in the range where exp() and the KL are finite in float32
        # (a trained encoder stays far inside it; this only guards against blow-ups).
        return mean, jnp.clip(log_var, -LOG_VAR_LIMIT, LOG_VAR_LIMIT)

    def decode(self, z: jax.Array) -> jax.Array:
        """The decoder's logits f_theta(z).

        Args:
          z: (..., latent_dim) latent codes.

        Returns:
          (..., input_dim) logits: p(x_i = 1 | z) = sigmoid(logits_i) for the Bernoulli
          decoder; the Gaussian decoder's mean is sigmoid(logits) as well.

        Raises:
          ValueError: if the last axis of ``z`` is not ``latent_dim``.
        """
        z = jnp.asarray(z)
        if z.ndim < 1 or z.shape[-1] != self.config.latent_dim:
            raise ValueError(
                f"z has shape {z.shape} but the model expects (..., {self.config.latent_dim})"
            )
        return self.decoder(z)

    def mean_image(self, z: jax.Array) -> jax.Array:
        """E[x | z] = sigmoid(decode(z)), (..., input_dim) in [0, 1]."""
        return jax.nn.sigmoid(self.decode(z))

    def log_likelihood(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        """log p(x | z) from the decoder's logits, summed over pixels.

        Bernoulli: sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i).
        Gaussian:  sum_i log N(x_i ; sigmoid(l_i), exp(gaussian_log_var)).

        Args:
          x: (..., input_dim) targets in [0, 1].
          logits: decoder output broadcastable with ``x`` (e.g. (L, batch, input_dim)).

        Returns:
          The broadcast leading shape (...), nats.
        """
        if self.config.likelihood == "bernoulli":
            return elbo_lib.bernoulli_log_likelihood(x, logits)
        mean = jax.nn.sigmoid(logits)
        return elbo_lib.gaussian_log_likelihood(
            x, mean, jnp.full_like(mean, self.config.gaussian_log_var)
        )

    # ----------------------------------------------------------------------------- the loss
    def elbo_terms(self, key: jax.Array, x: jax.Array) -> elbo_lib.ELBOTerms:
        """Per-example ELBO terms with one reparameterized sample and the closed-form KL.

        ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))   (Kingma & Welling eq. 10)

        Args:
          key: PRNG key for z = mean + exp(log_var / 2) * eps.
          x: (batch, input_dim) targets.

        Returns:
          ``ELBOTerms(elbo, reconstruction, kl)``, each (batch,).
        """
        mean, log_var = self.encode(x)
        return elbo_lib.elbo(
            key,
            mean,
            log_var,
            lambda z: self.log_likelihood(x, self.decode(z)),
            num_samples=1,
            beta=1.0,
            kl_method="closed_form",
        )

    def loss(
        self, key: jax.Array, x: jax.Array, *, beta: float = 1.0, alpha: float = 1.0
    ) -> tuple[jax.Array, LossTerms]:
        """The training loss: mean over the batch of -alpha * recon + beta * KL.

        Args:
          key: PRNG key for the reparameterized sample.
          x: (batch, input_dim) targets (binarized or grayscale pixels in [0, 1]).
          beta: weight of the KL term (1 = VAE, 0 = autoencoder, >1 = beta-VAE).
          alpha: weight of the reconstruction term.

        Returns:
          ``(loss, LossTerms)``: a scalar to minimise and the batch-averaged, unweighted
          reconstruction, KL and ELBO (for logging).
        """
        mean, log_var = self.encode(x)
        terms = elbo_lib.elbo(
            key,
            mean,
            log_var,
            lambda z: self._loss_log_likelihood(x, self.decode(z)),
            num_samples=1,
            beta=1.0,
            kl_method="closed_form",
        )
        reconstruction = jnp.mean(terms.reconstruction)
        kl = jnp.mean(terms.kl)
        loss = -alpha * reconstruction + beta * kl
        return loss, LossTerms(reconstruction, kl, reconstruction - kl)

    def _loss_log_likelihood(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        """:meth:`log_likelihood` in the form the training loss evaluates fastest.

        Bernoulli: x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l), since
        log sigmoid(l) = l - softplus(l) and log sigmoid(-l) = -softplus(l): one softplus
        per pixel instead of two log-sigmoids (stable for any finite logit; its gradient
        is x - sigmoid(l)). On a 2-core CPU this elementwise work is about 8 % of a training
        step of the 784-400-20 model (docs/speed.md). Gaussian: :meth:`log_likelihood`.
        """
        if self.config.likelihood == "bernoulli":
            return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
        return self.log_likelihood(x, logits)

    def kl_per_dimension(self, x: jax.Array) -> jax.Array:
        """KL(q(z_j | x) || N(0, 1)) for each latent dimension j: (..., latent_dim)."""
        mean, log_var = self.encode(x)
        # A trailing event axis of size 1 makes kl_diag_gaussians return one KL per j.
        return kl_lib.kl_diag_gaussians(mean[..., None], log_var[..., None])

    def set_output_bias(self, pixel_mean: jax.Array, eps: float = 1e-3) -> None:
        """Starts the decoder's output bias at logit(pixel_mean) (clipped to [eps, 1 - eps]).

        With near-zero weights the initial decoder then predicts the average image, so the
        first updates learn digits rather than the background (a common trick since
        Kingma & Welling's code).

        Args:
          pixel_mean: (input_dim,) mean pixel intensity of the training set (a concrete
            array, not a traced value).
        """
        pixel_mean = np.asarray(pixel_mean, np.float64)
        if pixel_mean.shape != (self.config.input_dim,):
            raise ValueError(
                f"pixel_mean has shape {pixel_mean.shape} but the model expects "
                f"({self.config.input_dim},)"
            )
        p = np.clip(pixel_mean, eps, 1.0 - eps)
        self.decoder.output.bias[...] = jnp.asarray(np.log(p) - np.log1p(-p), jnp.float32)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return int(sum(np.size(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))))
