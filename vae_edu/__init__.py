"""vae_edu: variational autoencoders from first principles.

One module per concept:

* :mod:`vae_edu.estimate`    one Estimate(mean, std_error) and how the course makes one.
* :mod:`vae_edu.optimize`    the one L-BFGS loop (optax, inside lax.scan).
* :mod:`vae_edu.kl`          KL divergences (closed forms and Monte Carlo).
* :mod:`vae_edu.elbo`        reparameterization, decoder log-likelihoods, ELBO, IWAE bound,
                             estimators of the evidence log p(x).
* :mod:`vae_edu.conjugate`   the linear-Gaussian model where log p(x) and p(z|x) are exact.
* :mod:`vae_edu.loss`        how a loss's reductions weight its two terms (beta_eff).
* :mod:`vae_edu.data`        the MNIST IDX files shipped with the package.
* :mod:`vae_edu.threefry`    JAX's uniform draws with the Threefry rounds unrolled (speed).
* :mod:`vae_edu.config`      VAEConfig and TrainConfig (and the CLI options derived from them).
* :mod:`vae_edu.models`      the Flax NNX VAE, and its jitted encode/decode view LatentModel.
* :mod:`vae_edu.latent`      the prior's quantile grid, latent traversals and interpolations.
* :mod:`vae_edu.train`       jitted training epochs with optax.
* :mod:`vae_edu.evaluate`    test ELBO, importance-weighted log-likelihood, active units,
                             latent-space statistics, rate and distortion.
* :mod:`vae_edu.checkpoints` safe (msgpack) checkpoints.
* :mod:`vae_edu.plots`       figures, and PNG pictures for the widgets.
* :mod:`vae_edu.diagrams`    the drawn diagrams (architecture, reparameterization graph).
* :mod:`vae_edu.bench`       timing and the training benchmark.
* :mod:`vae_edu.system`      peak memory and load average, portably.
* :mod:`vae_edu.widgets`     the notebooks' interactive widgets (built and wired only).
* :mod:`vae_edu.exercises`   the in-lesson exercises: feedback, and the reference as fallback.
* :mod:`vae_edu.lesson_checks` checks of the lesson exercises that no assignment has.
* :mod:`vae_edu.grading`     autograder checks for the classroom assignments (core, a1-a3).
* :mod:`vae_edu.mlp_vae`     the small functional VAE and training budget of assignment A3.

Submodules are imported lazily, so ``import vae_edu`` is cheap and
``vae_edu.kl.kl_diag_gaussians`` works without an explicit ``import vae_edu.kl``.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "estimate",
    "optimize",
    "kl",
    "elbo",
    "conjugate",
    "loss",
    "data",
    "threefry",
    "config",
    "models",
    "latent",
    "train",
    "evaluate",
    "checkpoints",
    "widgets",
    "plots",
    "diagrams",
    "bench",
    "system",
    "exercises",
    "lesson_checks",
    "mlp_vae",
    "grading",
    "assignments",
    "pretrained",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
