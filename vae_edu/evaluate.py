"""Evaluating a trained VAE: test ELBO, importance-weighted log-likelihood, active units.

All numbers are in nats per image (sum over the 784 pixels), on *dynamically binarized*
test images unless said otherwise: each "binarization draw" is a fresh Bernoulli sample
of every test image (``vae_edu.data.binarize``), and estimates are averaged over draws.

* :func:`test_elbo`: ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) with one
  reparameterized sample and the closed-form KL (a lower bound on log p(x)).
* :func:`iwae_log_likelihood`: log p(x) ~= hat L_k(x) = log (1/k) sum_i p(x|z_i) p(z_i) /
  q(z_i|x), one draw per image whose expectation is the bound L_k (Burda et al. 2016,
  eq. 8), the standard "test NLL" of VAE papers for k = 5000. L_k <= log p(x), increasing
  in k, so -hat L_k slightly *overstates* the NLL on average.
* :func:`active_units`: dimension u is active if A_u = Cov_x(E_q[z_u | x]) > 0.01
  (Burda et al. 2016, section 5.2).
* :func:`kl_per_dimension`: E_x KL(q(z_u|x) || N(0,1)) for each latent dimension u.

Per-image randomness is keyed by the image's index (``fold_in(key, i)``), so results do not
depend on how images are batched; the IWAE sample chunk size changes which samples are
drawn (not their distribution).

Reported errors: every estimate is a mean over N test images of a per-image quantity
(averaged over the binarization draws); ``std_error`` is the sample standard deviation of
those per-image values over sqrt(N). It measures how much the number would move with
another test set of the same size (plus the Monte Carlo and binarization noise, which are
part of the per-image spread).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from vae_edu import data as data_lib
from vae_edu import elbo as elbo_lib
from vae_edu.models import VAE

__all__ = [
    "Estimate",
    "ELBOSummary",
    "ActiveUnits",
    "QUICK_NUM_IMAGES",
    "QUICK_SEED",
    "per_image_elbo",
    "elbo_terms_mean",
    "test_elbo",
    "quick_test_elbo",
    "per_image_iwae",
    "iwae_log_likelihood",
    "iwae_memory_bytes",
    "iwae_chunks",
    "encode_dataset",
    "active_units",
    "kl_per_dimension",
]

#: The quick check stored in every shipped checkpoint: the mean ELBO of the first
#: QUICK_NUM_IMAGES test images, binarized and sampled with PRNGKey(QUICK_SEED).
QUICK_NUM_IMAGES = 500
QUICK_SEED = 0


class Estimate(NamedTuple):
    """A mean over test images (nats) and its standard error."""

    mean: float
    std_error: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} +/- {self.std_error:.2f}"


class ELBOSummary(NamedTuple):
    """Dataset averages (nats per image) of the ELBO and its two terms."""

    reconstruction: float
    kl: float
    elbo: float


class ActiveUnits(NamedTuple):
    """Active latent dimensions (Burda et al. 2016).

    Attributes:
      count: number of dimensions u with A_u > threshold.
      activity: (d,) A_u = Var_x(E_q[z_u | x]), the variance over the data set of the
        posterior mean.
      mask: (d,) bool, activity > threshold.
    """

    count: int
    activity: np.ndarray
    mask: np.ndarray


# ----------------------------------------------------------------------------- helpers
def _as_images(images, input_dim: int) -> jax.Array:

    return data_lib.prepare_images(images, input_dim)


def _default_test_images():
    return data_lib.load_mnist("test").images


def _split(model: VAE):
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vae_edu.models.VAE, got {type(model).__name__}")
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _pad_chunks(x: jax.Array, chunk: int) -> jax.Array:
    """(N, ...) -> (ceil(N / chunk), chunk, ...), zero-padded at the end."""
    n = x.shape[0]
    num = -(-n // chunk)
    x = jnp.pad(x, [(0, num * chunk - n)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(num, chunk, *x.shape[1:])


def _targets(images: jax.Array, key: jax.Array, draw: int, binarize: bool) -> jax.Array:
    if not binarize:
        return images
    return data_lib.binarize(jax.random.fold_in(key, draw), images)


def _summarise(per_image: np.ndarray) -> Estimate:
    per_image = np.asarray(per_image, np.float64)
    n = per_image.shape[0]
    se = float(np.std(per_image, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return Estimate(float(np.mean(per_image)), se)


# ----------------------------------------------------------------------------- ELBO
@functools.partial(jax.jit, static_argnames=("graphdef", "batch_size", "binarize"))
def _per_image_elbo_terms(graphdef, params, x, key, draw, batch_size, binarize):
    """ELBO terms (3, N) of binarization draw ``draw`` of x (N, D); see per_image_elbo."""
    n = x.shape[0]
    x = _targets(x, jax.random.fold_in(key, 0), draw, binarize)
    key = jax.random.fold_in(jax.random.fold_in(key, 1), draw)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    model = nnx.merge(graphdef, params)

    def one(k, xi):
        t = model.elbo_terms(k, xi[None])
        return jnp.stack([t.elbo[0], t.reconstruction[0], t.kl[0]])

    def chunk(args):
        ks, xs = args
        return jax.vmap(one)(ks, xs)

    out = jax.lax.map(chunk, (_pad_chunks(keys, batch_size), _pad_chunks(x, batch_size)))
    return out.reshape(-1, 3)[:n].T


def per_image_elbo(
    model: VAE,
    images,
    key: jax.Array,
    *,
    binarize: bool = True,
    num_binarizations: int = 1,
    batch_size: int = 1000,
) -> np.ndarray:
    """ELBO terms of every image, averaged over binarization draws.

    ELBO(x) = log p(x | z) - KL(q(z|x) || N(0, I)),  z = mu + sigma * eps (one sample),
    KL in closed form (vae_edu.kl.kl_diag_gaussians).

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1] (pixel probabilities).
      key: PRNG key; draw r binarizes with fold_in(fold_in(key, 0), r) and samples z for
        image i with fold_in(fold_in(fold_in(key, 1), r), i).
      binarize: draw binary targets (True) or use the images as targets (grayscale).
      num_binarizations: number of draws to average (1 if ``binarize`` is False).
      batch_size: images per vectorised chunk (memory only; results do not depend on it).

    Returns:
      (3, N) float64 array: rows elbo, reconstruction, kl.
    """
    num_binarizations = _check_count(num_binarizations, "num_binarizations")
    batch_size = _check_count(batch_size, "batch_size")
    graphdef, params = _split(model)
    x = _as_images(images, model.config.input_dim)
    draws = num_binarizations if binarize else 1
    total = np.zeros((3, x.shape[0]))
    for r in range(draws):
        total += np.asarray(
            _per_image_elbo_terms(
                graphdef, params, x, key, r, min(batch_size, x.shape[0]), binarize
            ),
            np.float64,
        )
    return total / draws


def elbo_terms_mean(
    model: VAE, images, key: jax.Array, *, binarize: bool = True, batch_size: int = 1000
) -> ELBOSummary:
    """Dataset means of the ELBO, reconstruction and KL terms (one binarization draw)."""
    elbo, rec, kl = per_image_elbo(
        model, images, key, binarize=binarize, batch_size=batch_size
    ).mean(axis=1)
    return ELBOSummary(float(rec), float(kl), float(elbo))


def test_elbo(
    model: VAE,
    images=None,
    key: jax.Array | None = None,
    *,
    num_binarizations: int = 1,
    binarize: bool = True,
    batch_size: int = 1000,
) -> Estimate:
    """Test-set ELBO (nats per image) with its standard error.

    Args:
      model: the VAE.
      images: default the 10,000 MNIST test images.
      key: default PRNGKey(0).
      num_binarizations: binarization draws averaged per image.
      binarize: False evaluates on the grayscale images themselves.
      batch_size: images per vectorised chunk.

    Returns:
      ``Estimate(mean, std_error)`` of the ELBO.
    """
    images = _default_test_images() if images is None else images
    key = jax.random.PRNGKey(0) if key is None else key
    return _summarise(
        per_image_elbo(
            model,
            images,
            key,
            binarize=binarize,
            num_binarizations=num_binarizations,
            batch_size=batch_size,
        )[0]
    )


def quick_test_elbo(model: VAE, *, binarize: bool = True) -> float:
    """Mean ELBO of the first 500 MNIST test images with the fixed key PRNGKey(0).

    Deterministic: the checkpoints of the shipped models store this number at save time,
    and a test recomputes it after loading to check that the file round-trips.
    """
    images = _default_test_images()[:QUICK_NUM_IMAGES]
    return float(
        per_image_elbo(
            model,
            images,
            jax.random.PRNGKey(QUICK_SEED),
            binarize=binarize,
            batch_size=QUICK_NUM_IMAGES,
        )[0].mean()
    )


# ----------------------------------------------------------------------------- IWAE
@functools.partial(
    jax.jit, static_argnames=("graphdef", "num_samples", "sample_chunk", "image_chunk", "binarize")
)
def _per_image_iwae(
    graphdef, params, x, key, draw, num_samples, sample_chunk, image_chunk, binarize
):
    """L_k of every row of draw ``draw`` of x (N, D); memory ~ image_chunk * sample_chunk.

    The k samples of an image are drawn in C = ceil(k / m) chunks of m = sample_chunk;
    the last chunk is padded to m samples, and its padded samples get log weight -inf, so
        hat L_k = logsumexp over all C m entries of log w - log k
    counts exactly the k real samples.
    """
    n = x.shape[0]
    x = _targets(x, jax.random.fold_in(key, 0), draw, binarize)
    key = jax.random.fold_in(jax.random.fold_in(key, 1), draw)
    num_sample_chunks = -(-num_samples // sample_chunk)
    model = nnx.merge(graphdef, params)

    def one_image(i, xi):
        mean, log_var = model.encode(xi)
        image_key = jax.random.fold_in(key, i)
        sigma = jnp.exp(0.5 * log_var)
        half_log_det = 0.5 * jnp.sum(log_var)

        def chunk_logsumexp(c):
            # z = mu + sigma eps (the draw of vae_edu.elbo.reparameterize for this key);
            # log q(z | x) = log N(eps; 0, I) - sum_j log sigma_j, exact even when
            # sigma << |mu|.
            eps = jax.random.normal(
                jax.random.fold_in(image_key, c), (sample_chunk, *mean.shape), mean.dtype
            )
            z = mean + sigma * eps
            log_w = (
                model.log_likelihood(xi, model.decode(z))
                + elbo_lib.diag_gaussian_log_density(z, 0.0, 0.0)
                - (elbo_lib.diag_gaussian_log_density(eps, 0.0, 0.0) - half_log_det)
            )
            real = c * sample_chunk + jnp.arange(sample_chunk) < num_samples
            return jax.nn.logsumexp(jnp.where(real, log_w, -jnp.inf))

        per_chunk = jax.lax.map(chunk_logsumexp, jnp.arange(num_sample_chunks))
        return jax.nn.logsumexp(per_chunk) - jnp.log(num_samples)

    def image_block(args):
        idx, xs = args
        return jax.vmap(one_image)(idx, xs)

    index = _pad_chunks(jnp.arange(n), image_chunk)
    out = jax.lax.map(image_block, (index, _pad_chunks(x, image_chunk)))
    return out.reshape(-1)[:n]


def iwae_chunks(num_samples: int, sample_chunk: int) -> tuple[int, int]:
    """``(samples per chunk, number of chunks)`` of the IWAE evaluation of k samples.

    Chunks have min(sample_chunk, k) samples; the last one is padded (its padded samples
    get log weight -inf), so a prime k such as 997 with sample_chunk = 500 runs 2 chunks
    of 500, not 997 chunks of 1.
    """
    num_samples = _check_count(num_samples, "num_samples")
    size = min(_check_count(sample_chunk, "sample_chunk"), num_samples)
    return size, -(-num_samples // size)


def per_image_iwae(
    model: VAE,
    images,
    key: jax.Array,
    *,
    num_samples: int = 5000,
    num_binarizations: int = 1,
    binarize: bool = True,
    sample_chunk: int = 500,
    image_chunk: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """One draw hat L_k of the importance-weighted bound for every image.

    hat L_k(x) = log (1/k) sum_{i=1}^k p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x), averaged
    over binarization draws; its expectation is the bound L_k (Burda et al. 2016, eq. 8;
    ``vae_edu.elbo.iwae_bound``), evaluated in chunks of
    ``sample_chunk`` samples and combined exactly by log-sum-exp.

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1].
      key: draw r binarizes with fold_in(fold_in(key, 0), r); image i of draw r uses
        fold_in(fold_in(fold_in(key, 1), r), i) for its samples.
      num_samples: k.
      num_binarizations: binarization draws averaged per image.
      binarize: False uses the images themselves as targets.
      sample_chunk: samples per vectorised chunk (at most k); the last chunk is padded
        and its padded samples get log weight -inf (:func:`iwae_chunks`). Chunk c of
        image i draws its samples with fold_in(image key, c), so another chunk size gives
        other (equally distributed) samples.
      image_chunk: images per vectorised chunk (memory only; results do not depend on it).
      progress: print one tqdm step per binarization draw.

    Returns:
      (N,) float64 per-image draws hat L_k in nats.
    """
    num_samples = _check_count(num_samples, "num_samples")
    num_binarizations = _check_count(num_binarizations, "num_binarizations")
    sample_chunk, _ = iwae_chunks(num_samples, sample_chunk)
    image_chunk = _check_count(image_chunk, "image_chunk")
    graphdef, params = _split(model)
    x = _as_images(images, model.config.input_dim)
    draws = num_binarizations if binarize else 1
    total = np.zeros(x.shape[0])
    for r in tqdm(range(draws), disable=not progress, desc=f"IWAE k={num_samples}"):
        total += np.asarray(
            _per_image_iwae(
                graphdef,
                params,
                x,
                key,
                r,
                num_samples,
                sample_chunk,
                min(image_chunk, x.shape[0]),
                binarize,
            ),
            np.float64,
        )
    return total / draws


def iwae_log_likelihood(
    model: VAE,
    images=None,
    key: jax.Array | None = None,
    *,
    num_samples: int = 5000,
    num_binarizations: int = 1,
    binarize: bool = True,
    sample_chunk: int = 500,
    image_chunk: int = 8,
    progress: bool = False,
) -> Estimate:
    """Importance-weighted estimate of the test log-likelihood log p(x) (nats per image).

    The negative of the returned mean is the "test NLL" reported in VAE papers (k = 5000,
    Burda et al. 2016). Computed with ``jax.lax.map`` over chunks of ``image_chunk``
    images and, inside, over chunks of ``sample_chunk`` importance samples, so memory does
    not grow with k. Measured on the 2-core CPU this package was developed on, for the
    shipped 784-512-256-32 model with the defaults (sample_chunk=500, image_chunk=8):
    XLA's temporary buffers for the compiled call (``iwae_memory_bytes``) are 125.6 MB for
    the 10,000 test images, the same for k = 500 and k = 5000; about 32 MB of that is the
    chunked computation and the rest three float32 copies of the binarized images
    (9.4 KB per image: 41 MB for 1,000 images). The peak resident memory of the whole
    process ``python -m vae_edu evaluate ... --report-memory`` (Python, JAX, MNIST, the
    model) was 571 MB.

    Args:
      model: the VAE.
      images: default the 10,000 MNIST test images.
      key: default PRNGKey(0).
      num_samples: k (importance samples per image).
      num_binarizations: binarization draws averaged per image.
      binarize: False evaluates grayscale targets.
      sample_chunk, image_chunk: chunk sizes (see :func:`per_image_iwae`).
      progress: show a progress bar over binarization draws.

    Returns:
      ``Estimate(mean, std_error)`` of the mean of L_k over the images.
    """
    images = _default_test_images() if images is None else images
    key = jax.random.PRNGKey(0) if key is None else key
    return _summarise(
        per_image_iwae(
            model,
            images,
            key,
            num_samples=num_samples,
            num_binarizations=num_binarizations,
            binarize=binarize,
            sample_chunk=sample_chunk,
            image_chunk=image_chunk,
            progress=progress,
        )
    )


def iwae_memory_bytes(
    model: VAE,
    num_images: int,
    *,
    num_samples: int = 5000,
    sample_chunk: int = 500,
    image_chunk: int = 8,
) -> int:
    """XLA's temporary-buffer size (bytes) of the compiled IWAE call for ``num_images``.

    Read from ``compiled.memory_analysis()`` (arguments and outputs excluded): the
    working memory the chunked evaluation needs on top of the model and the images.
    """
    graphdef, params = _split(model)
    sample_chunk, _ = iwae_chunks(num_samples, sample_chunk)
    x = jax.ShapeDtypeStruct((num_images, model.config.input_dim), jnp.float32)
    compiled = _per_image_iwae.lower(
        graphdef,
        params,
        x,
        jax.random.PRNGKey(0),
        0,
        num_samples,
        sample_chunk,
        min(image_chunk, num_images),
        True,
    ).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


# ----------------------------------------------------------------------------- latent usage
@functools.partial(jax.jit, static_argnames=("graphdef", "batch_size"))
def _encode_all(graphdef, params, x, batch_size):
    model = nnx.merge(graphdef, params)
    n = x.shape[0]
    mean, log_var = jax.lax.map(model.encode, _pad_chunks(x, batch_size))
    d = mean.shape[-1]
    return mean.reshape(-1, d)[:n], log_var.reshape(-1, d)[:n]


def encode_dataset(
    model: VAE, images, *, key: jax.Array | None = None, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior parameters of every image.

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1].
      key: if given, the images are binarized with it first; else encoded as they are.
      batch_size: images per chunk.

    Returns:
      ``(mean, log_var)``, numpy arrays of shape (N, latent_dim).
    """
    x = _as_images(images, model.config.input_dim)
    if key is not None:
        x = data_lib.binarize(key, x)
    graphdef, params = _split(model)
    mean, log_var = _encode_all(
        graphdef, params, x, min(_check_count(batch_size, "batch_size"), x.shape[0])
    )
    return np.asarray(mean), np.asarray(log_var)


def active_units(
    model: VAE, images=None, *, key: jax.Array | None = None, threshold: float = 0.01
) -> ActiveUnits:
    """Counts latent dimensions the model uses (Burda et al. 2016, section 5.2).

    A_u = Cov_x( E_{q(z|x)}[z_u] ) = Var over the data set of the posterior mean mu_u(x);
    dimension u is active if A_u > threshold (0.01). An inactive dimension has
    q(z_u|x) ~ p(z_u) for every x: its KL is ~0 and the decoder ignores it.

    Args:
      model: the VAE.
      images: default the MNIST test images.
      key: binarize the images with this key first (None: use them as they are).
      threshold: activity threshold.

    Returns:
      :class:`ActiveUnits` ``(count, activity, mask)``.
    """
    images = _default_test_images() if images is None else images
    mean, _ = encode_dataset(model, images, key=key)
    activity = np.var(mean.astype(np.float64), axis=0)
    mask = activity > threshold
    return ActiveUnits(int(mask.sum()), activity, mask)


def kl_per_dimension(model: VAE, images=None, *, key: jax.Array | None = None) -> np.ndarray:
    """E_x KL(q(z_u | x) || N(0, 1)) for every latent dimension u, (latent_dim,) nats.

    KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2 per dimension
    (vae_edu.kl.kl_diag_gaussians on each coordinate); the sum over u is the KL term of
    the ELBO.

    Args:
      model: the VAE.
      images: default the MNIST test images.
      key: binarize the images with this key first (None: use them as they are).
    """
    from vae_edu.kl import kl_diag_gaussians

    images = _default_test_images() if images is None else images
    mean, log_var = encode_dataset(model, images, key=key)
    per_dim = kl_diag_gaussians(jnp.asarray(mean)[..., None], jnp.asarray(log_var)[..., None])
    return np.asarray(per_dim, np.float64).mean(axis=0)
