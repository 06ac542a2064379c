"""Tiny random VAEs, data and picture helpers shared by the latent-space and evaluation tests.

Not a test module: the tests import it by name (pytest puts tests/ on sys.path).
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from vae_edu.evaluate import evaluate_sweep_entry
from vae_edu.models import VAE, VAEConfig

#: Latent size of the models of the beta-sweep tests.
LATENT_DIM = 4


def tiny_vae(latent_dim: int, seed: int) -> VAE:
    """A 784-16-d VAE with random weights N(0, 1/fan_in) and biases N(0, 0.1^2).

    Built from the abstract module (nnx.eval_shape) and numpy draws: no XLA compilation
    of initialisers, so the fixture takes milliseconds.
    """
    config = VAEConfig(hidden_sizes=(16,), latent_dim=latent_dim)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0))), nnx.Param)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 1.0 / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.1
        return jnp.asarray(rng.normal(scale=scale, size=leaf.shape), jnp.float32)

    return nnx.merge(graphdef, jax.tree.map(draw, nnx.to_pure_dict(state)))


def sweep_vae(seed: int) -> VAE:
    """A tiny VAE of the beta-sweep tests (latent size :data:`LATENT_DIM`)."""
    return tiny_vae(LATENT_DIM, seed)


def with_dead_unit(model: VAE, unit: int) -> VAE:
    """``model`` with latent unit ``unit`` switched off in the encoder: mean 0, log_var 0.

    Its posterior is then exactly the prior N(0, 1) for every image: activity 0, KL 0.
    """
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    out = params["encoder"]["output"]
    d = model.config.latent_dim
    for column in (unit, d + unit):  # the mean and the log-variance of the unit
        out["kernel"] = out["kernel"].at[:, column].set(0.0)
        out["bias"] = out["bias"].at[column].set(0.0)
    return nnx.merge(graphdef, params)


def random_test_set():
    """40 random 'test images' (uint8) with labels 0..9 repeating."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    return images, np.arange(40) % 10


def random_images():
    """60 random grayscale 'test images' (uint8, 28 x 28)."""
    return np.random.default_rng(0).integers(0, 256, size=(60, 28, 28), dtype=np.uint8)


def evaluated_sweep(images):
    """Three evaluated tiny models playing beta = 0.5, 1, 2 (the last has a dead unit)."""
    key = jax.random.PRNGKey(0)
    models = [sweep_vae(1), sweep_vae(2), with_dead_unit(sweep_vae(3), 1)]
    return [
        evaluate_sweep_entry(f"beta_{b:g}", m, images, key, beta=b)
        for b, m in zip((0.5, 1.0, 2.0), models, strict=True)
    ]


def png_pixels(data: bytes) -> np.ndarray:
    """Decodes PNG bytes with Pillow (independent of how they were written)."""
    return np.asarray(Image.open(io.BytesIO(data)))


def expected_pixels(model: VAE, z, scale: int) -> np.ndarray:
    """round(255 * E[x|z]) through the VAE's own mean_image, enlarged by repetition."""
    mean = np.asarray(model.mean_image(np.asarray(z, np.float32)), np.float64).reshape(28, 28)
    pixels = np.round(mean * 255.0).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def encoding(model: VAE, image) -> np.ndarray:
    """mu(x) through the VAE itself, for a uint8 (28, 28) image."""
    x = np.asarray(image, np.float32).reshape(1, 784) / 255.0
    return np.asarray(model.encode(x)[0][0])


def numpy_kl(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis, written out."""
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)


def flat_unit(images) -> np.ndarray:
    return images.reshape(images.shape[0], 784).astype(np.float32) / np.float32(255.0)


def whitened(n, d, seed):
    """n rows whose sample mean is exactly 0 and population covariance exactly I."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x -= x.mean(axis=0)
    chol = np.linalg.cholesky(x.T @ x / n)
    return np.linalg.solve(chol, x.T).T


def posterior_params(n=300, seed=0):
    """(means, log_vars), each (n, 2): correlated centres and varied widths."""
    rng = np.random.default_rng(seed)
    means = rng.normal([1.0, -0.5], [1.5, 0.7], size=(n, 2))
    means[:, 1] += 0.6 * means[:, 0]  # correlated centres
    log_vars = rng.uniform(-3.0, 1.0, size=(n, 2))
    return means, log_vars


def selected_marker(ax):
    """(x, y) of the line labelled "selected ..." on ``ax``."""
    (line,) = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("selected")]
    return float(line.get_xdata()[0]), float(line.get_ydata()[0])
