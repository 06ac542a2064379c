"""Shared pytest configuration.

* Matplotlib renders off-screen (Agg) in the test process so unit tests never need a
  display. This is set with ``matplotlib.use`` and NOT through the ``MPLBACKEND``
  environment variable: nbval's kernels inherit the environment, and with
  ``MPLBACKEND=Agg`` a notebook's ``plt.show()`` would produce no output at all.
* ``browser`` tests need Debian's chromium; on a student's machine without it they are
  skipped with instructions, but where ``VAE_EDU_REQUIRE_BROWSER=1`` (set by ``.ci/run``)
  a missing browser is a failure, so CI can never pass by skipping them.
* The lessons save their figures (``vae_edu.plots.save_figure``) and nbval re-executes
  every lesson: unless ``VAE_EDU_FIGURES`` is already set, the figures of a test run go to
  a temporary folder (the kernels inherit the environment), so running the tests never
  rewrites the committed PNGs under ``figures/``. Tests of the default location unset it.
"""

import atexit
import os
import shutil
import tempfile

import matplotlib
import pytest

matplotlib.use("Agg")

if "VAE_EDU_FIGURES" not in os.environ:
    _figures = tempfile.mkdtemp(prefix="vae_edu_test_figures_")
    os.environ["VAE_EDU_FIGURES"] = _figures
    atexit.register(shutil.rmtree, _figures, ignore_errors=True)


# --- shared models of the conjugate-model lessons (test_conjugate_lessons, test_loss,
# test_plots_lessons). The package is imported inside the fixtures, so that collecting
# the other tests does not import JAX or load MNIST.


@pytest.fixture(scope="module")
def mnist_ppca():
    """PPCA (d = 8) fitted to 2000 MNIST test digits, and 64 other digits: (model, images)."""
    import numpy as np

    from vae_edu import data
    from vae_edu.conjugate import fit_ppca

    images = np.asarray(
        data.to_unit_interval(data.load_mnist("test").images[:2064]), np.float32
    ).reshape(-1, 784)
    return fit_ppca(images[64:], latent_dim=8), images[:64]


@pytest.fixture(scope="module")
def small_model():
    """A linear-Gaussian model whose W has correlated (non-orthogonal) columns."""
    import jax

    from vae_edu.conjugate import make_model

    return make_model(jax.random.key(0), data_dim=5, latent_dim=3, noise_std=0.6)


@pytest.fixture(scope="module")
def model_2d():
    """A random linear-Gaussian model with D = 3, d = 2."""
    import jax

    from vae_edu.conjugate import make_model

    return make_model(jax.random.key(0), data_dim=3, latent_dim=2, noise_std=0.7)


@pytest.fixture(scope="module")
def model_1d():
    """A random linear-Gaussian model with D = 2 and a 1-D latent."""
    import jax

    from vae_edu.conjugate import make_model

    return make_model(jax.random.key(1), data_dim=2, latent_dim=1, noise_std=0.5)


# ----------------------------------------------------------------------------- shared fixtures
# Tiny random VAEs and data of the latent-space and evaluation tests (tests/vae_test_models.py
# builds them; imported inside each fixture so that other tests do not import JAX for them).
@pytest.fixture(scope="module")
def vae_2d():
    from vae_test_models import tiny_vae

    return tiny_vae(2, 0)


@pytest.fixture(scope="module")
def vae_5d():
    from vae_test_models import tiny_vae

    return tiny_vae(5, 1)


@pytest.fixture(scope="module")
def test_set():
    """40 random 'test images' (uint8) with labels 0..9 repeating."""
    from vae_test_models import random_test_set

    return random_test_set()


@pytest.fixture(scope="module")
def images():
    """60 random grayscale 'test images' (uint8, 28 x 28)."""
    from vae_test_models import random_images

    return random_images()


@pytest.fixture(scope="module")
def sweep(images):
    """Three evaluated tiny models playing beta = 0.5, 1, 2 (the last has a dead unit)."""
    from vae_test_models import evaluated_sweep

    return evaluated_sweep(images)


@pytest.fixture(scope="module")
def bounds():
    """Synthetic per-image bounds with gaps growing in k (only their arithmetic matters)."""
    import numpy as np

    rng = np.random.default_rng(2)
    elbo = rng.normal(-100.0, 15.0, size=300)
    out = {k: elbo + np.log10(k) * 1.5 + rng.normal(0.0, 1.0, size=300) for k in (1, 10, 100, 1000)}
    return out, elbo
