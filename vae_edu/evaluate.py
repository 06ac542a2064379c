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
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from vae_edu import _checks
from vae_edu import data as data_lib
from vae_edu import elbo as elbo_lib
from vae_edu.elbo import ELBOTerms
from vae_edu.estimate import Estimate, mean_estimate, paired_difference
from vae_edu.kl import kl_diag_gaussians, kl_mvn
from vae_edu.latent import prior_cell_edges
from vae_edu.models import VAE, as_latent_model
from vae_edu.optimize import lbfgs_minimize

__all__ = [
    "Estimate",
    "ELBOTerms",
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
#: QUICK_NUM_IMAGES test images, binarized and sampled with jax.random.key(QUICK_SEED).
QUICK_NUM_IMAGES = 500
QUICK_SEED = 0


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


def _pad_chunks(x: jax.Array, chunk: int) -> jax.Array:
    """(N, ...) -> (ceil(N / chunk), chunk, ...), zero-padded at the end.

    Typed keys (``jax.random.key``) are padded through their key data (zeros padded there
    are the keys of the padding rows, whose results are dropped).
    """
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_pad_chunks(jax.random.key_data(x), chunk))
    n = x.shape[0]
    num = -(-n // chunk)
    x = jnp.pad(x, [(0, num * chunk - n)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(num, chunk, *x.shape[1:])


def _targets(images: jax.Array, key: jax.Array, draw: int, binarize: bool) -> jax.Array:
    """Binarization draw ``draw`` of the evaluation key ``key`` (see binarization_key)."""
    if not binarize:
        return images
    return data_lib.binarize(binarization_key(key, draw), images)


def _summarise(per_image: np.ndarray) -> Estimate:
    """``estimate.mean_estimate`` of the per-image values; one image gives SE = NaN."""
    per_image = np.asarray(per_image, np.float64)
    if per_image.shape[0] == 1:  # no spread to measure from a single image
        return Estimate(float(per_image[0]), float("nan"))
    return mean_estimate(per_image)


# ----------------------------------------------------------------------------- ELBO
@functools.partial(jax.jit, static_argnames=("graphdef", "batch_size", "binarize"))
def _per_image_elbo_terms(graphdef, params, x, key, draw, batch_size, binarize):
    """ELBOTerms of (N,) arrays for binarization draw ``draw`` of x (N, D); see per_image_elbo."""
    n = x.shape[0]
    x = _targets(x, key, draw, binarize)
    key = jax.random.fold_in(jax.random.fold_in(key, 1), draw)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    model = nnx.merge(graphdef, params)

    def one(k, xi):  # one image: ELBOTerms of scalars
        return jax.tree.map(lambda t: t[0], model.elbo_terms(k, xi[None]))

    def chunk(args):
        ks, xs = args
        return jax.vmap(one)(ks, xs)

    out = jax.lax.map(chunk, (_pad_chunks(keys, batch_size), _pad_chunks(x, batch_size)))
    return jax.tree.map(lambda t: t.reshape(-1)[:n], out)


def per_image_elbo(
    model: VAE,
    images,
    key: jax.Array,
    *,
    binarize: bool = True,
    num_binarizations: int = 1,
    batch_size: int = 1000,
) -> ELBOTerms:
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
      ``ELBOTerms(elbo, reconstruction, kl)`` of (N,) float64 arrays (nats per image).
    """
    num_binarizations = _checks.count(num_binarizations, "num_binarizations")
    batch_size = _checks.count(batch_size, "batch_size")
    graphdef, params = _split(model)
    x = _as_images(images, model.config.input_dim)
    draws = num_binarizations if binarize else 1
    total = np.zeros((3, x.shape[0]))
    for r in range(draws):
        terms = _per_image_elbo_terms(
            graphdef, params, x, key, r, min(batch_size, x.shape[0]), binarize
        )
        total += np.stack([np.asarray(t, np.float64) for t in terms])
    return ELBOTerms(*(total / draws))


def elbo_terms_mean(
    model: VAE, images, key: jax.Array, *, binarize: bool = True, batch_size: int = 1000
) -> ELBOTerms:
    """Dataset means of the ELBO, reconstruction and KL terms (one binarization draw).

    Returns:
      ``ELBOTerms(elbo, reconstruction, kl)`` of Python floats (nats per image).
    """
    terms = per_image_elbo(model, images, key, binarize=binarize, batch_size=batch_size)
    return ELBOTerms(*(float(np.mean(t)) for t in terms))


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
      key: default jax.random.key(0).
      num_binarizations: binarization draws averaged per image.
      binarize: False evaluates on the grayscale images themselves.
      batch_size: images per vectorised chunk.

    Returns:
      ``Estimate(mean, std_error)`` of the ELBO.
    """
    images = _default_test_images() if images is None else images
    key = jax.random.key(0) if key is None else key
    return _summarise(
        per_image_elbo(
            model,
            images,
            key,
            binarize=binarize,
            num_binarizations=num_binarizations,
            batch_size=batch_size,
        ).elbo
    )


def quick_test_elbo(model: VAE, *, binarize: bool = True) -> float:
    """Mean ELBO of the first 500 MNIST test images with the fixed key jax.random.key(0).

    Deterministic: the checkpoints of the shipped models store this number at save time,
    and a test recomputes it after loading to check that the file round-trips.
    """
    images = _default_test_images()[:QUICK_NUM_IMAGES]
    return float(
        per_image_elbo(
            model,
            images,
            jax.random.key(QUICK_SEED),
            binarize=binarize,
            batch_size=QUICK_NUM_IMAGES,
        ).elbo.mean()
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
    x = _targets(x, key, draw, binarize)
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
    num_samples = _checks.count(num_samples, "num_samples")
    size = min(_checks.count(sample_chunk, "sample_chunk"), num_samples)
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
    num_samples = _checks.count(num_samples, "num_samples")
    num_binarizations = _checks.count(num_binarizations, "num_binarizations")
    sample_chunk, _ = iwae_chunks(num_samples, sample_chunk)
    image_chunk = _checks.count(image_chunk, "image_chunk")
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
      key: default jax.random.key(0).
      num_samples: k (importance samples per image).
      num_binarizations: binarization draws averaged per image.
      binarize: False evaluates grayscale targets.
      sample_chunk, image_chunk: chunk sizes (see :func:`per_image_iwae`).
      progress: show a progress bar over binarization draws.

    Returns:
      ``Estimate(mean, std_error)`` of the mean of L_k over the images.
    """
    images = _default_test_images() if images is None else images
    key = jax.random.key(0) if key is None else key
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
        jax.random.key(0),
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
        graphdef, params, x, min(_checks.count(batch_size, "batch_size"), x.shape[0])
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
    images = _default_test_images() if images is None else images
    mean, log_var = encode_dataset(model, images, key=key)
    per_dim = kl_diag_gaussians(jnp.asarray(mean)[..., None], jnp.asarray(log_var)[..., None])
    return np.asarray(per_dim, np.float64).mean(axis=0)


# --------------------------------------------------------------------------------------
# Latent space and model comparison (notebooks 06 and 08)
# --------------------------------------------------------------------------------------
#
# The aggregate posterior q(z) = (1/N) sum_n N(z ; mu_n, diag sigma_n^2) is the
# distribution of the code of a random image. Its moments (law of total variance)
#
#     E_q[z] = (1/N) sum_n mu_n,
#     Cov_q[z] = (1/N) sum_n (mu_n - E_q[z]) (mu_n - E_q[z])^T + diag((1/N) sum_n sigma_n^2),
#
# and the codes counted in the n x n equal-prior-mass cells of vae_edu.latent say how
# prior-like a latent space is. A model trained on alpha * D + beta * R sits at a point
# (R, D) of the rate-distortion plane (Alemi et al. 2018):
#
#     rate R = E_x KL(q(z|x) || p(z)),  distortion D = -E_x E_q[log p(x|z)],
#     ELBO = -(D + R).

__all__ += [
    "LatentSpaceStats",
    "aggregate_posterior_moments",
    "aggregate_kl_to_prior",
    "prior_cell_fractions",
    "latent_space_stats",
    "binarization_key",
    "IWAEGap",
    "iwae_gaps",
    "iwae_gap",
    "RateDistortion",
    "rate_distortion",
    "SweepEntry",
    "evaluate_sweep_entry",
    "ImageRows",
    "reconstructions_and_samples",
    "PosteriorFit",
    "optimal_posterior",
]


class LatentSpaceStats(NamedTuple):
    """How prior-like a set of 2-D codes is.

    Attributes:
      code_mean: (d,) mean of the posterior means mu_n.
      code_std: (d,) standard deviation of the posterior means.
      aggregate_kl: KL(N(E_q[z], Cov_q[z]) || N(0, I)) of the aggregate posterior's
        moments, nats: a lower bound on KL(q(z) || N(0, I)) itself (the Gaussian has the
        largest entropy for given moments).
      underpopulated_fraction: fraction of the n x n equal-prior-mass cells holding fewer
        than ``min_share`` times their share 1/n^2 of the codes.
      total_variation: (1/2) sum over cells of |fraction of codes - 1/n^2|, in [0, 1):
        the fraction of codes that would have to move to other cells to match the prior.
      cell_fractions: (n, n) fraction of the codes in each cell (row i: z_1, column j: z_2).
    """

    code_mean: np.ndarray
    code_std: np.ndarray
    aggregate_kl: float
    underpopulated_fraction: float
    total_variation: float
    cell_fractions: np.ndarray


def as_codes(means, name: str = "means", dim: int | None = None) -> np.ndarray:
    """(N, d) finite codes with N >= 2 as float64 (``dim``: required d), else a ValueError."""
    codes = np.asarray(means, np.float64)
    if codes.ndim != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, d) with N >= 2, got {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"{name} contains NaN or inf")
    if dim is not None and codes.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) for the 2-D grid, got {codes.shape}")
    return codes


def aggregate_posterior_moments(means, log_vars=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the aggregate posterior q(z) = (1/N) sum_n N(mu_n, diag sigma_n^2).

    E_q[z]   = (1/N) sum_n mu_n
    Cov_q[z] = (1/N) sum_n (mu_n - E_q[z])(mu_n - E_q[z])^T + diag((1/N) sum_n sigma_n^2)
    (law of total variance: the spread of the centres plus the average width).

    Args:
      means: (N, d) posterior means mu_n.
      log_vars: (N, d) posterior log-variances log sigma_n^2, or None for point codes
        (sigma_n = 0).

    Returns:
      ``(mean (d,), cov (d, d))`` float64.

    Raises:
      ValueError: bad shapes (both named) or non-finite values.
    """
    codes = as_codes(means)
    centre = codes.mean(axis=0)
    deviations = codes - centre
    cov = deviations.T @ deviations / codes.shape[0]
    if log_vars is not None:
        log_vars = np.asarray(log_vars, np.float64)
        _checks.same_shape(log_vars, codes, "log_vars", "means")
        if not np.all(np.isfinite(log_vars)):
            raise ValueError("log_vars contains NaN or inf")
        cov = cov + np.diag(np.exp(log_vars).mean(axis=0))
    return centre, cov


def aggregate_kl_to_prior(means, log_vars=None) -> float:
    """KL(N(m, S) || N(0, I)) for the moments (m, S) of the aggregate posterior.

    KL = 1/2 [ tr S + m^T m - d - log det S ]  (vae_edu.kl.kl_mvn with p = N(0, I)).

    Only a lower bound on KL(q(z) || N(0, I)) for the aggregate posterior q(z) itself: the
    cross-entropy term depends on q only through (m, S), and the Gaussian has the largest
    entropy of all distributions with those moments.
    Zero exactly when the codes have the prior's mean 0 and covariance I. It sees only the
    first two moments: clusters and gaps inside the cloud do not change it.

    Args:
      means: (N, d) posterior means.
      log_vars: (N, d) posterior log-variances, or None (point codes).

    Returns:
      The KL in nats (float).
    """
    mean, cov = aggregate_posterior_moments(means, log_vars)
    d = mean.shape[0]
    return float(kl_mvn(mean, cov, np.zeros(d), np.eye(d)))


def prior_cell_fractions(codes, grid_size: int = 20) -> np.ndarray:
    """Fraction of the codes in each cell of the n x n prior-quantile grid.

    Cell (i, j) = [e_i, e_{i+1}) x [e_j, e_{j+1}) with e from
    :func:`vae_edu.latent.prior_cell_edges`; under the prior N(0, I) every cell has
    probability 1/n^2 (and holds one point of ``quantile_grid(n) x quantile_grid(n)``).

    Args:
      codes: (N, 2) codes.
      grid_size: n, cells per axis.

    Returns:
      (n, n) float64 fractions summing to 1; entry [i, j] counts z_1 in cell i, z_2 in cell j.
    """
    codes = as_codes(codes, "codes", dim=2)
    edges = prior_cell_edges(grid_size)
    n = edges.shape[0] + 1
    index = np.searchsorted(edges, codes, side="right")  # (N, 2) in 0..n-1
    counts = np.bincount(index[:, 0] * n + index[:, 1], minlength=n * n)
    return counts.reshape(n, n) / codes.shape[0]


def latent_space_stats(
    means, log_vars=None, *, grid_size: int = 20, min_share: float = 0.25
) -> LatentSpaceStats:
    """The numbers of :class:`LatentSpaceStats` for (N, 2) codes.

    Args:
      means: (N, 2) posterior means (the codes).
      log_vars: (N, 2) posterior log-variances for the aggregate posterior, or None.
      grid_size: n, cells per axis of the prior-quantile grid.
      min_share: a cell is underpopulated if it holds less than min_share / n^2 of the codes.
    """
    codes = as_codes(means, dim=2)
    min_share = _checks.positive_finite_scalar(min_share, "min_share")
    fractions = prior_cell_fractions(codes, grid_size)
    share = 1.0 / fractions.size
    return LatentSpaceStats(
        codes.mean(axis=0),
        codes.std(axis=0),
        aggregate_kl_to_prior(codes, log_vars),
        float(np.mean(fractions < min_share * share)),
        float(0.5 * np.abs(fractions - share).sum()),
        fractions,
    )


def binarization_key(key: jax.Array, draw: int = 0) -> jax.Array:
    """The key with which the evaluation functions binarize draw ``draw`` of ``key``.

    fold_in(fold_in(key, 0), draw): :func:`per_image_elbo` and :func:`per_image_iwae` use
    it (the samples of z use fold_in(key, 1)); passing it to :func:`kl_per_dimension` /
    :func:`active_units` evaluates them on the very binary images the rate was computed on.
    """
    return jax.random.fold_in(jax.random.fold_in(key, 0), draw)


# ----------------------------------------------------------------------------- IWAE gap
class IWAEGap(NamedTuple):
    """The bound L_k and the gap L_k - ELBO (nats per image).

    Attributes:
      k: number of importance samples.
      bound: mean of L_k over the images and its SE (image-to-image spread included).
      gap: mean of L_k - ELBO and its paired SE; in expectation a lower bound on the
        average KL(q(z|x) || p(z|x)) (zero in expectation for k = 1).
    """

    k: int
    bound: Estimate
    gap: Estimate


def iwae_gaps(bounds: Mapping[int, np.ndarray], elbo) -> dict[int, Estimate]:
    """k -> paired estimate of the mean of L_k(x) - ELBO(x), for every k in ``bounds``, sorted.

    Args:
      bounds: k -> (N,) per-image L_k (:func:`per_image_iwae`).
      elbo: (N,) per-image ELBO on the same images (``per_image_elbo(...)[0]``).

    Raises:
      ValueError: no bounds, or shapes that differ.
    """
    if not bounds:
        raise ValueError("bounds must map at least one k to per-image values")
    elbo = np.asarray(elbo, np.float64)
    for k, values in bounds.items():
        _checks.same_shape(values, elbo, f"bounds[{k}]", "elbo")
    return {int(k): paired_difference(bounds[k], elbo) for k in sorted(bounds)}


def iwae_gap(k: int, bounds: Mapping[int, np.ndarray], elbo) -> IWAEGap:
    """:class:`IWAEGap` of the selected k: the bound L_k and the paired gap L_k - ELBO.

    Raises:
      ValueError: k not in ``bounds`` or shapes that differ.
    """
    gaps = iwae_gaps(bounds, elbo)
    if k not in bounds:
        raise ValueError(f"k = {k!r} is not one of the computed values {list(gaps)}")
    return IWAEGap(int(k), mean_estimate(bounds[k]), gaps[int(k)])


# ----------------------------------------------------------------------------- rate, distortion
class RateDistortion(NamedTuple):
    """A model's point in the rate-distortion plane (means over images, with SEs; nats).

    Attributes:
      rate: R = E_x KL(q(z|x) || p(z)).
      distortion: D = -E_x E_q[log p(x|z)] (one reparameterized sample per image).
      elbo: E_x ELBO(x) = -(D + R).
    """

    rate: Estimate
    distortion: Estimate
    elbo: Estimate

    def weighted_loss(self, alpha: float = 1.0, beta: float = 1.0) -> float:
        """alpha * D + beta * R: the training loss of weights (alpha, beta) at this point."""
        return alpha * self.distortion.mean + beta * self.rate.mean


def rate_distortion(
    model: VAE, images, key: jax.Array, *, binarize: bool = True, num_binarizations: int = 1
) -> RateDistortion:
    """Rate R = E KL(q(z|x) || p(z)) and distortion D = -E log p(x|z) of a model on images.

    Computed by :func:`per_image_elbo` (closed-form KL, one reparameterized sample of z per
    image and binarization draw), so ELBO = -(D + R) holds image by image.

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1], N >= 2.
      key: PRNG key (binarization draw r uses ``binarization_key(key, r)``).
      binarize: dynamically binarize the targets (True) or use the grayscale pixels.
      num_binarizations: binarization draws averaged per image.

    Returns:
      :class:`RateDistortion`.
    """
    elbo, reconstruction, kl = per_image_elbo(
        model, images, key, binarize=binarize, num_binarizations=num_binarizations
    )
    return RateDistortion(
        mean_estimate(kl),
        mean_estimate(-reconstruction),
        mean_estimate(elbo),
    )


class SweepEntry(NamedTuple):
    """One model of the beta sweep, evaluated.

    Attributes:
      name: e.g. ``"beta_1"``.
      model: the VAE.
      alpha, beta: the weights it was trained with (loss alpha * D + beta * R).
      point: its :class:`RateDistortion`.
      kl_per_dimension: (d,) E_x KL(q(z_j|x) || N(0, 1)) per latent dimension (nats).
      activity: (d,) A_j = Var_x(E_q[z_j | x]) (Burda et al. 2016, section 5.2).
      active_units: number of j with A_j > threshold.
      threshold: the activity threshold (0.01).
    """

    name: str
    model: VAE
    alpha: float
    beta: float
    point: RateDistortion
    kl_per_dimension: np.ndarray
    activity: np.ndarray
    active_units: int
    threshold: float

    @property
    def ratio(self) -> float:
        """beta / alpha, the only weight that matters for the optimum (inf if alpha = 0)."""
        return self.beta / self.alpha if self.alpha > 0 else math.inf


def evaluate_sweep_entry(
    name: str,
    model: VAE,
    images,
    key: jax.Array,
    *,
    beta: float,
    alpha: float = 1.0,
    threshold: float = 0.01,
) -> SweepEntry:
    """Rate, distortion, KL per dimension and active units of one model, on one binarization.

    All four use the same binary images (``binarization_key(key, 0)``), so the KL per
    dimension sums to the rate exactly (up to float rounding).

    Args:
      name: a label.
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) in [0, 1], N >= 2.
      key: PRNG key (as :func:`rate_distortion`).
      beta, alpha: the training weights of the model (for labels and the loss line).
      threshold: activity threshold of an active unit.

    Returns:
      :class:`SweepEntry`.
    """
    for label, value in (("alpha", alpha), ("beta", beta), ("threshold", threshold)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    point = rate_distortion(model, images, key)
    bkey = binarization_key(key, 0)
    per_dim = kl_per_dimension(model, images, key=bkey)
    units = active_units(model, images, key=bkey, threshold=threshold)
    return SweepEntry(
        str(name),
        model,
        float(alpha),
        float(beta),
        point,
        per_dim,
        units.activity,
        units.count,
        float(threshold),
    )


class ImageRows(NamedTuple):
    """Pictures of one model (each (n, H, W) floats in [0, 1]).

    Attributes:
      originals: the binarized test images fed to the encoder.
      reconstructions: E[x | z = mu(x)] = sigmoid(f(mu(x))), the decoder at the posterior mean.
      samples: E[x | z] for z ~ N(0, I) prior draws.
    """

    originals: np.ndarray
    reconstructions: np.ndarray
    samples: np.ndarray


def reconstructions_and_samples(model, images, key: jax.Array, num: int = 8) -> ImageRows:
    """Reconstructions of ``num`` binarized test images and ``num`` decoded prior samples.

    With key1, key2 = split(key): x = binarize(key1, images[:num]); z ~ N(0, I) drawn with
    key2. The same key gives the same images and codes for every model of the same latent
    size, so models can be compared picture by picture.

    Args:
      model: a VAE or :class:`vae_edu.models.LatentModel`.
      images: (N, 28, 28) uint8 or floats in [0, 1], N >= num.
      key: PRNG key.
      num: how many of each.

    Returns:
      :class:`ImageRows`.
    """
    num = _checks.count(num, "num")
    latent = as_latent_model(model)
    arr = np.asarray(images)
    if arr.shape[0] < num:
        raise ValueError(f"images has {arr.shape[0]} images, fewer than num={num}")
    first = arr[:num]
    pixels = np.asarray(data_lib.prepare_images(first, latent.config.input_dim))
    binarize_key, sample_key = jax.random.split(key)
    x = data_lib.binarize(binarize_key, pixels.reshape(first.shape))
    x = np.asarray(x).reshape((num,) + latent.image_shape)
    reconstructions = latent.decode(latent.encode(x))
    z = np.asarray(jax.random.normal(sample_key, (num, latent.latent_dim)))
    return ImageRows(x, reconstructions, latent.decode(z))


# ----------------------------------------------------------------------------- alpha vs beta
class PosteriorFit(NamedTuple):
    """Diagonal Gaussians q fitted to maximise alpha * E_q[log p(x|z)] - beta * KL(q || p).

    Attributes:
      mean, log_var: (..., d) parameters of q, one per image.
      reconstruction: (...) E_q[log p(x|z)] at the optimum (the fixed-noise average).
      kl: (...) KL(q || N(0, I)) at the optimum.
      objective: (...) alpha * reconstruction - beta * kl.
    """

    mean: np.ndarray
    log_var: np.ndarray
    reconstruction: np.ndarray
    kl: np.ndarray
    objective: np.ndarray


@functools.partial(jax.jit, static_argnames=("log_likelihood_fn", "num_steps"))
def _fit_posteriors(log_likelihood_fn, x, eps, alpha, beta, mean0, log_var0, num_steps):
    """L-BFGS on every row of x (B, D) from (mean0, log_var0) (B, d); see optimal_posterior."""

    def terms(params, xi):
        mean, log_var = params
        z = mean + jnp.exp(0.5 * log_var) * eps
        return jnp.mean(log_likelihood_fn(xi, z)), kl_diag_gaussians(mean, log_var)

    def fit_one(xi, m0, v0):
        def loss(params):
            reconstruction, kl = terms(params, xi)
            return -(alpha * reconstruction - beta * kl)

        params = lbfgs_minimize(loss, (m0, v0), num_steps)
        reconstruction, kl = terms(params, xi)
        return params[0], params[1], reconstruction, kl

    return jax.vmap(fit_one)(x, mean0, log_var0)


def optimal_posterior(
    log_likelihood_fn: Callable,
    x,
    eps,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    init_mean=None,
    init_log_var=None,
    num_steps: int = 100,
) -> PosteriorFit:
    """Fits q(z|x) = N(m, diag exp(v)) to each image by L-BFGS on the weighted ELBO.

    J(m, v) = alpha * (1/L) sum_l log p(x | m + exp(v/2) * eps_l) - beta * KL(q || N(0, I))

    with *fixed* noise eps (common random numbers: J is then a deterministic function of
    (m, v), so its maximiser is well defined), maximised by
    :func:`vae_edu.optimize.lbfgs_minimize` on -J. The decoder is held fixed: this is the
    best q for it, not an amortised encoder. For alpha > 0, J_{alpha, beta} =
    alpha * J_{1, beta/alpha}: both have the same maximiser, so only beta/alpha matters.
    For a decoder log-likelihood quadratic in z (linear-Gaussian) and eps with exact
    sample moments (mean 0, covariance I), J equals the exact weighted ELBO.

    Args:
      log_likelihood_fn: ``(x, z) -> log p(x | z)`` mapping one image x (D,) and codes
        z (L, d) to (L,). Compiled once per function object: define it once and reuse it.
      x: (D,) one image or (B, D) images.
      eps: (L, d) standard-normal noise, shared by all images and weights.
      alpha, beta: weights, both > 0 (beta = 0 has no maximiser in v).
      init_mean, init_log_var: starting point, shaped like x's batch plus (d,)
        (default zeros, i.e. the prior).
      num_steps: L-BFGS iterations (zoom line search).

    Returns:
      :class:`PosteriorFit` of numpy arrays (batch shape of x).

    Raises:
      ValueError: non-positive weights or shapes that do not fit together.
    """
    for label, value in (("alpha", alpha), ("beta", beta)):
        _checks.positive_finite_scalar(value, label)
    num_steps = _checks.count(num_steps, "num_steps")
    eps = jnp.asarray(eps, jnp.float32)
    if eps.ndim != 2:
        raise ValueError(f"eps must have shape (L, d), got {eps.shape}")
    x = jnp.asarray(x, jnp.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (D,) or (B, D), got {x.shape}")
    batch = x.shape[:-1]
    expected = batch + (eps.shape[1],)
    starts = []
    for label, value in (("init_mean", init_mean), ("init_log_var", init_log_var)):
        value = (
            jnp.zeros(expected, jnp.float32) if value is None else jnp.asarray(value, jnp.float32)
        )
        if value.shape != expected:
            raise ValueError(
                f"{label} has shape {value.shape} but x has shape {x.shape} "
                f"and eps has shape {eps.shape}; expected {expected}"
            )
        starts.append(value.reshape(-1, eps.shape[1]))
    out = _fit_posteriors(
        log_likelihood_fn,
        x.reshape(-1, x.shape[-1]),
        eps,
        jnp.float32(alpha),
        jnp.float32(beta),
        *starts,
        num_steps,
    )
    mean, log_var, reconstruction, kl = (np.asarray(o).reshape(batch + o.shape[1:]) for o in out)
    objective = alpha * reconstruction.astype(np.float64) - beta * kl.astype(np.float64)
    return PosteriorFit(mean, log_var, reconstruction, kl, objective)


# --------------------------------------------------------------------------------------
# Importance weights of a few images (notebook 08's live k slider)
# --------------------------------------------------------------------------------------
#
# The slider recomputes hat L_k and the effective sample size for every k from ONE set of
# K importance weights per image: hat L_k uses the first k of them (a prefix of one draw).
# So the K weights are computed once (one jitted call, fixed shapes), and moving the slider
# is a cumulative log-sum-exp in numpy: no recompilation, nothing sampled per move.

__all__ += [
    "per_image_log_weights",
    "effective_sample_size",
    "prefix_iwae_bounds",
    "prefix_effective_sample_sizes",
    "ImportanceWeights",
    "importance_weights_at",
]


@functools.partial(jax.jit, static_argnames=("graphdef", "num_samples", "sample_chunk"))
def _log_weights(graphdef, params, x, key, num_samples, sample_chunk):
    """(N, K) log w of the rows of the (already binarized) x (N, D), K = num_samples."""
    model = nnx.merge(graphdef, params)
    sample_key = jax.random.fold_in(jax.random.fold_in(key, 1), 0)

    def one_image(args):
        i, xi = args
        mean, log_var = model.encode(xi)
        image_key = jax.random.fold_in(sample_key, i)

        def chunk(c):
            eps = jax.random.normal(jax.random.fold_in(image_key, c), (sample_chunk, *mean.shape))
            z = mean + jnp.exp(0.5 * log_var) * eps
            log_lik = model.log_likelihood(xi, model.decode(z))
            # log N(z; 0, I) - log N(z; mu, sigma^2) = -1/2 sum_j (z_j^2 - eps_j^2 - log sigma_j^2)
            log_prior_minus_log_q = -0.5 * jnp.sum(z**2 - eps**2 - log_var, axis=-1)
            return log_lik + log_prior_minus_log_q

        num_chunks = -(-num_samples // sample_chunk)  # the last chunk padded, then cut
        return jax.lax.map(chunk, jnp.arange(num_chunks)).reshape(-1)[:num_samples]

    return jax.lax.map(one_image, (jnp.arange(x.shape[0]), x))


def per_image_log_weights(
    model: VAE,
    images,
    key: jax.Array,
    *,
    num_samples: int = 5000,
    binarize: bool = True,
    sample_chunk: int = 500,
) -> np.ndarray:
    """The log importance weights log w_i of ``num_samples`` codes per image.

        log w_i = log p(x | z_i) + log N(z_i; 0, I) - log N(z_i; mu(x), diag sigma^2(x)),
        z_i = mu(x) + sigma(x) * eps_i,  eps_i ~ N(0, I),  i = 1..K

    so that hat L_k(x) = logsumexp_{i<=k}(log w_i) - log k is one draw of the
    importance-weighted bound with the first k samples (:func:`prefix_iwae_bounds`).

    Randomness: the images are binarized with :func:`binarization_key` (key, 0), as in
    :func:`per_image_iwae`; the noise of image n, samples c*m+1 .. (c+1)*m (m the chunk
    size), is ``jax.random.normal(fold_in(fold_in(fold_in(fold_in(key, 1), 0), n), c),
    (m, latent_dim))``: the draws of :func:`per_image_iwae` with the same chunk size.

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1]; meant for a few images
        (memory and time grow as N * K decoder passes).
      key: evaluation key.
      num_samples: K, the largest k the caller needs.
      binarize: False uses the images themselves as targets.
      sample_chunk: samples per vectorised chunk, m = min(sample_chunk, K) (as
        :func:`iwae_chunks`; the last chunk is drawn in full and cut to K samples).

    Returns:
      (N, K) float64 array of log w in nats.
    """
    num_samples = _checks.count(num_samples, "num_samples")
    sample_chunk, _ = iwae_chunks(num_samples, sample_chunk)
    graphdef, params = _split(model)
    x = _targets(_as_images(images, model.config.input_dim), key, 0, binarize)
    log_w = _log_weights(graphdef, params, x, key, num_samples, sample_chunk)
    return np.asarray(log_w, np.float64)


def _as_log_weights(log_w, name: str = "log_w") -> np.ndarray:
    log_w = np.asarray(log_w, np.float64)
    if log_w.ndim < 1 or log_w.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., k) with k >= 1, got {log_w.shape}")
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError(f"{name} must not contain NaN or +inf")
    if np.isneginf(log_w).all(axis=-1).any():
        raise ValueError(f"{name}: every weight of some row is 0 (log w = -inf)")
    return log_w


def effective_sample_size(log_w) -> np.ndarray:
    """Kish's effective sample size of importance weights given by their logs.

        ESS = (sum_i w_i)^2 / sum_i w_i^2
            = exp(2 logsumexp_i(log w_i) - logsumexp_i(2 log w_i))

    computed in log space, so weights like exp(-90) neither underflow nor overflow. ESS is
    k for k equal weights and 1 when one weight dominates; 1 <= ESS <= k always.

    Args:
      log_w: (..., k) log weights (last axis: the samples).

    Returns:
      (...) float64 ESS.

    Raises:
      ValueError: empty last axis, NaN or +inf, or a row of zero weights.
    """
    log_w = _as_log_weights(log_w)
    return np.exp(2.0 * _logsumexp(log_w) - _logsumexp(2.0 * log_w))


def _logsumexp(log_w: np.ndarray) -> np.ndarray:
    """log sum_i exp(log_w_i) over the last axis, shifted by the maximum (no overflow)."""
    top = log_w.max(axis=-1)
    return top + np.log(np.exp(log_w - top[..., None]).sum(axis=-1))


def _cumulative_logsumexp(log_w: np.ndarray) -> np.ndarray:
    return np.logaddexp.accumulate(log_w, axis=-1)


def prefix_iwae_bounds(log_w) -> np.ndarray:
    """hat L_k for every prefix: out[..., k-1] = logsumexp_{i<=k}(log w_i) - log k.

    Args:
      log_w: (..., K) log weights (:func:`per_image_log_weights`).

    Returns:
      (..., K) float64, column k-1 the bound from the first k weights.
    """
    log_w = _as_log_weights(log_w)
    return _cumulative_logsumexp(log_w) - np.log(np.arange(1, log_w.shape[-1] + 1))


def prefix_effective_sample_sizes(log_w) -> np.ndarray:
    """:func:`effective_sample_size` of every prefix: out[..., k-1] uses the first k weights.

    Args:
      log_w: (..., K) log weights.

    Returns:
      (..., K) float64.
    """
    log_w = _as_log_weights(log_w)
    return np.exp(2.0 * _cumulative_logsumexp(log_w) - _cumulative_logsumexp(2.0 * log_w))


class ImportanceWeights(NamedTuple):
    """The first k importance weights of each image, summarised for the k slider.

    Attributes:
      k: number of weights used.
      relative_log_w: (N, k) log w_i - max_i log w_i (0 for the largest weight).
      bound: (N,) hat L_k of each image (nats).
      ess: (N,) effective sample size of the k weights (between 1 and k).
    """

    k: int
    relative_log_w: np.ndarray
    bound: np.ndarray
    ess: np.ndarray


def importance_weights_at(log_w, k: int) -> ImportanceWeights:
    """:class:`ImportanceWeights` of the first k columns of ``log_w`` (N, K).

    Raises:
      ValueError: k not in 1..K, or bad log weights.
    """
    log_w = _as_log_weights(log_w)
    if log_w.ndim != 2:
        raise ValueError(f"log_w must have shape (N, K), got {log_w.shape}")
    k = _checks.count(k, "k")
    if k > log_w.shape[1]:
        raise ValueError(f"k = {k} is larger than the {log_w.shape[1]} computed weights")
    first = log_w[:, :k]
    bound = _logsumexp(first) - np.log(k)
    relative = first - first.max(axis=1, keepdims=True)
    return ImportanceWeights(k, relative, bound, effective_sample_size(first))


# --------------------------------------------------------------------------------------
# How a model uses its latent space (notebook 06's beta slider)
# --------------------------------------------------------------------------------------

__all__ += ["LatentUsage", "latent_usage"]


class LatentUsage(NamedTuple):
    """The codes of a data set and how much each latent dimension is used.

    Attributes:
      means, log_vars: (N, d) parameters of q(z|x) for every image.
      kl_per_dimension: (d,) E_x KL(q(z_u|x) || N(0, 1)) in nats (as :func:`kl_per_dimension`).
      activity: (d,) A_u = Var_x mu_u(x) (as :func:`active_units`).
      threshold: a dimension is active if A_u > threshold.
    """

    means: np.ndarray
    log_vars: np.ndarray
    kl_per_dimension: np.ndarray
    activity: np.ndarray
    threshold: float

    @property
    def active_units(self) -> int:
        """Number of dimensions with A_u > threshold."""
        return int((self.activity > self.threshold).sum())


def latent_usage(
    model: VAE, images, *, key: jax.Array | None = None, threshold: float = 0.01
) -> LatentUsage:
    """:func:`kl_per_dimension` and :func:`active_units` from one encoding pass, with the codes.

        KL_u = mean_x (mu_u^2 + sigma_u^2 - 1 - log sigma_u^2) / 2,   A_u = Var_x mu_u(x)

    Args:
      model: the VAE.
      images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1].
      key: binarize the images with this key first (None: use them as they are).
      threshold: activity threshold (0.01, Burda et al. 2016).

    Returns:
      :class:`LatentUsage`.
    """
    means, log_vars = encode_dataset(model, images, key=key)
    per_dim = kl_diag_gaussians(jnp.asarray(means)[..., None], jnp.asarray(log_vars)[..., None])
    kl = np.asarray(per_dim, np.float64).mean(axis=0)
    activity = np.var(means.astype(np.float64), axis=0)
    return LatentUsage(means, log_vars, kl, activity, float(threshold))
