r"""Autograder checks for the classroom assignments (``notebooks/assignments/``).

Each ``check_*`` function takes a student's function, compares it with the package's
reference implementation and with hand-checkable values, and returns a
:class:`CheckResult` whose ``feedback`` says in plain words what is wrong:

    >>> result = check_kl_diag(my_kl)
    >>> assert result.passed, result.feedback

Three independent routes are used wherever they apply:

* **known values** a student can verify on paper (KL(N(0,1) || N(0,1)) = 0, KL = 2 for
  mu = 2, sigma = 1, log p(x | logits = 0) = -D log 2, ...);
* **the reference** from :mod:`vae_edu.kl` / :mod:`vae_edu.elbo` on seeded random inputs
  (:func:`numpy.random.default_rng`, :func:`jax.random.key`), so every check is deterministic;
* **Monte Carlo** for random quantities (sample moments within 5 standard errors).

For the training assignment (A3), :func:`check_a3_loss` checks the student's loss,
:func:`check_a3_training` re-runs the whole training with the student's step function
(and verifies it segment by segment), and :func:`check_latent_statistics` recomputes the
latent statistics from the student's parameters.

When a check fails it also compares the student's output with a catalogue of *known
mistakes* (the missing minus sign, log sigma used for log sigma^2, a mean where a sum
belongs, KL(p || q) for KL(q || p), ...) and names the mistake it matches. A check never
raises: a student function that raises, returns None, or returns the wrong shape gives a
failed result with a message.

The checks live in one module per assignment (:mod:`.a1`, :mod:`.a2`, :mod:`.a3`) and
share the machinery of :mod:`.core` (results, safe calls of student functions, value
formatting, matching against known mistakes).
"""

from vae_edu.grading.a1 import check_kl_diag, check_kl_monte_carlo, check_kl_two_gaussians
from vae_edu.grading.a2 import (
    check_bernoulli_log_likelihood,
    check_elbo_estimate,
    check_negative_elbo,
    check_reparameterize,
)
from vae_edu.grading.a3 import (
    A3_LOSS_CODE,
    check_a3_loss,
    check_a3_training,
    check_latent_statistics,
)
from vae_edu.grading.core import CheckResult, KernelFunction, diagnosis

__all__ = [
    "A3_LOSS_CODE",
    "CheckResult",
    "KernelFunction",
    "check_a3_loss",
    "check_a3_training",
    "check_bernoulli_log_likelihood",
    "check_elbo_estimate",
    "check_kl_diag",
    "check_kl_monte_carlo",
    "check_kl_two_gaussians",
    "check_latent_statistics",
    "check_negative_elbo",
    "check_reparameterize",
    "diagnosis",
]
