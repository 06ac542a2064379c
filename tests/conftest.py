"""Shared pytest configuration.

* Matplotlib renders off-screen (Agg) in the test process so unit tests never need a
  display. This is set with ``matplotlib.use`` and NOT through the ``MPLBACKEND``
  environment variable: nbval's kernels inherit the environment, and with
  ``MPLBACKEND=Agg`` a notebook's ``plt.show()`` would produce no output at all.
* ``browser`` tests need Debian's chromium; on a student's machine without it they are
  skipped with instructions, but where ``VAE_EDU_REQUIRE_BROWSER=1`` (set by ``.ci/run``)
  a missing browser is a failure, so CI can never pass by skipping them.
"""

import matplotlib
import pytest

matplotlib.use("Agg")


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
