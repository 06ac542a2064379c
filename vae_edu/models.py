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

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_edu import elbo as elbo_lib
from vae_edu import kl as kl_lib
from vae_edu.config import ACTIVATIONS, LIKELIHOODS, VAEConfig  # moved; re-exported here
from vae_edu.data import prepare_images
from vae_edu.elbo import ELBOTerms

__all__ = ["VAEConfig", "VAE", "ACTIVATIONS", "LIKELIHOODS", "count_parameters"]

#: The encoder's log-variances are clipped to [-LOG_VAR_LIMIT, LOG_VAR_LIMIT].
LOG_VAR_LIMIT = 30.0


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
    def elbo_terms(self, key: jax.Array, x: jax.Array) -> ELBOTerms:
        """Per-example ELBO terms with one reparameterized sample and the closed-form KL.

        ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))   (Kingma & Welling eq. 10)

        Args:
          key: PRNG key for z = mean + exp(log_var / 2) * eps.
          x: (batch, input_dim) targets.

        Returns:
          ``ELBOTerms(elbo, reconstruction, kl)``, each (batch,).
        """
        return self._one_sample_elbo(key, x, self.log_likelihood)

    def _one_sample_elbo(self, key: jax.Array, x: jax.Array, log_likelihood) -> ELBOTerms:
        """ELBOTerms per example: one reparameterized z, closed-form KL, decoder term
        ``log_likelihood(x, logits)`` (the library form, or the training loss's faster one)."""
        mean, log_var = self.encode(x)
        return elbo_lib.elbo(
            key,
            mean,
            log_var,
            lambda z: log_likelihood(x, self.decode(z)),
            num_samples=1,
            beta=1.0,
            kl_method="closed_form",
        )

    def loss(
        self, key: jax.Array, x: jax.Array, *, beta: float = 1.0, alpha: float = 1.0
    ) -> tuple[jax.Array, ELBOTerms]:
        """The training loss: mean over the batch of -alpha * recon + beta * KL.

        Args:
          key: PRNG key for the reparameterized sample.
          x: (batch, input_dim) targets (binarized or grayscale pixels in [0, 1]).
          beta: weight of the KL term (1 = VAE, 0 = autoencoder, >1 = beta-VAE).
          alpha: weight of the reconstruction term.

        Returns:
          ``(loss, ELBOTerms(elbo, reconstruction, kl))``: a scalar to minimise and the
          batch averages (nats per example, for logging) of the *unweighted* ELBO
          reconstruction - kl (whatever alpha and beta are), of log p(x | z) with one
          z ~ q(z | x), and of the closed-form KL(q(z | x) || p(z)).
        """
        terms = self._one_sample_elbo(key, x, self._loss_log_likelihood)
        reconstruction = jnp.mean(terms.reconstruction)
        kl = jnp.mean(terms.kl)
        loss = -alpha * reconstruction + beta * kl
        return loss, ELBOTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)

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


# --------------------------------------------------------------------------------------
# Inference: the jitted encode / decode view of a trained VAE (notebooks 07 and 08)
# --------------------------------------------------------------------------------------

__all__ += ["LatentModel", "as_latent_model"]


@functools.partial(jax.jit, static_argnums=0)
def _decode_mean(graphdef, params, z):
    return nnx.merge(graphdef, params).mean_image(z)


@functools.partial(jax.jit, static_argnums=0)
def _encode_mean(graphdef, params, x):
    return nnx.merge(graphdef, params).encode(x)[0]


class LatentModel:
    """A VAE's encoder mean and decoder mean as jitted numpy-in, numpy-out calls.

    encode:  x -> mu(x), the mean of q(z | x) = N(mu(x), diag sigma^2(x));
    decode:  z -> E[x | z] = sigmoid(f_theta(z)), the decoded image.

    The parameters are split from the NNX module once, here (``nnx.split``), and passed to
    one compiled function per call (compiled once per graph and input shape, shared by
    every ``LatentModel`` of the same architecture), so decoding a code is a single XLA
    call with no Python work per layer: a slider update costs well under a millisecond.
    The parameters are a snapshot: train the VAE further and you need a new
    ``LatentModel``.

    Args:
      model: a :class:`VAE`.

    Attributes:
      config: the model's :class:`VAEConfig`.
      latent_dim: d.
      image_shape: (28, 28) for MNIST (square images), else ``(input_dim,)``.
    """

    def __init__(self, model: VAE):
        if not isinstance(model, VAE):
            raise TypeError(f"model must be a vae_edu.models.VAE, got {type(model).__name__}")
        graphdef, state = nnx.split(model, nnx.Param)
        self._graphdef = graphdef
        self._params = nnx.to_pure_dict(state)
        self.config = model.config
        self.latent_dim = model.config.latent_dim
        side = math.isqrt(model.config.input_dim)
        self.image_shape = (
            (side, side) if side * side == model.config.input_dim else (model.config.input_dim,)
        )

    def decode(self, z) -> np.ndarray:
        """E[x | z] = sigmoid(f_theta(z)) as images.

        Args:
          z: (..., latent_dim) codes.

        Returns:
          (..., *image_shape) float32 pixel means in [0, 1].

        Raises:
          ValueError: if the last axis of ``z`` is not ``latent_dim``.
        """
        z = np.asarray(z, np.float32)
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z has shape {z.shape} but the model expects (..., {self.latent_dim})"
            )
        out = np.asarray(_decode_mean(self._graphdef, self._params, z))
        return out.reshape(z.shape[:-1] + self.image_shape)

    def encode(self, images) -> np.ndarray:
        """The posterior means mu(x) of q(z | x) = N(mu(x), diag sigma^2(x)).

        Pixels are scaled by :func:`vae_edu.data.prepare_images` (uint8 / 255).

        Args:
          images: (..., 28, 28) uint8 pixels 0..255, or floats in [0, 1] of shape
            (..., 28, 28) or (..., input_dim).

        Returns:
          (..., latent_dim) float32 means.

        Raises:
          ValueError: if the trailing axes do not hold ``input_dim`` pixels.
        """
        arr = np.asarray(images)
        num_pixels = self.config.input_dim
        pixel_ndim = len(self.image_shape)
        if arr.shape[arr.ndim - pixel_ndim :] == self.image_shape:
            batch = arr.shape[: arr.ndim - pixel_ndim]
        elif arr.ndim >= 1 and arr.shape[-1] == num_pixels:
            batch = arr.shape[:-1]
        else:
            raise ValueError(
                f"images have shape {arr.shape} but the model expects "
                f"(..., {', '.join(map(str, self.image_shape))}) or "
                f"(..., {num_pixels})"
            )
        pixels = prepare_images(arr.reshape((math.prod(batch), num_pixels)), num_pixels)
        # The encoder sees the batch shape the caller gave (one image stays unbatched).
        pixels = np.asarray(pixels).reshape(batch + (num_pixels,))
        return np.asarray(_encode_mean(self._graphdef, self._params, pixels))


def as_latent_model(model) -> LatentModel:
    """``model`` itself if it is a :class:`LatentModel`, else ``LatentModel(model)``."""
    return model if isinstance(model, LatentModel) else LatentModel(model)
