r"""One type for every estimate with a standard error, and the two ways the course makes one.

A Monte Carlo average of n independent draws f_1, ..., f_n estimates E[f] with

    mean      = (1/n) sum_i f_i
    std_error = sqrt( 1/(n-1) sum_i (f_i - mean)^2 ) / sqrt(n)          (ddof = 1)

(the central limit theorem: mean +- 2 std_error covers E[f] about 95% of the time). The
same formula gives the test-set average of a per-image quantity (ELBO, IWAE bound) with
the standard error that says how much another test set of the same size would move it.

* :func:`mean_and_standard_error` works on JAX arrays inside ``jit`` / ``grad`` (the
  sample axis first, any trailing batch shape): :func:`vae_edu.kl.kl_monte_carlo` uses it.
* :func:`mean_estimate` and :func:`paired_difference` summarise per-image values as Python
  floats (float64), with input checks: the evaluation notebooks use them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Estimate", "mean_and_standard_error", "mean_estimate", "paired_difference"]


class Estimate(NamedTuple):
    """An estimate and its standard error (the same shape: floats or arrays).

    Attributes:
      mean: the sample mean (1/n) sum_i f_i.
      std_error: its standard error, std(ddof=1) / sqrt(n).
    """

    mean: Any
    std_error: Any

    def __str__(self) -> str:
        if np.ndim(self.mean) == 0 and np.ndim(self.std_error) == 0:
            return f"{float(self.mean):.2f} +/- {float(self.std_error):.2f}"
        return f"Estimate(mean={self.mean}, std_error={self.std_error})"


@jax.jit
def mean_and_standard_error(values) -> Estimate:
    """Sample mean over the leading axis and its standard error std(ddof=1) / sqrt(n).

    Args:
      values: (n, ...) draws, the sample axis first (n >= 2 for a finite standard error).

    Returns:
      ``Estimate(mean, std_error)`` of JAX arrays of shape (...).
    """
    n = values.shape[0]
    return Estimate(jnp.mean(values, axis=0), jnp.std(values, axis=0, ddof=1) / np.sqrt(n))


def mean_estimate(values) -> Estimate:
    """Mean of per-image values with its standard error std(ddof=1) / sqrt(N), as floats.

    Args:
      values: (N,) finite per-image values, N >= 2 (e.g. ``evaluate.per_image_iwae``).

    Returns:
      ``Estimate(mean, std_error)`` of Python floats (computed in float64).

    Raises:
      ValueError: not 1-D, fewer than 2 values, or a value that is not finite.
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(
            f"need a 1-D array of at least 2 per-image values, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"per-image values must be finite, got {values[bad]} at index {bad}")
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.shape[0])))


def paired_difference(a, b) -> Estimate:
    """Mean of a_n - b_n over images with its paired standard error.

    mean = (1/N) sum_n (a_n - b_n),   SE = std_n(a_n - b_n) / sqrt(N)   (ddof = 1).

    Two estimates on the *same* images share the image-to-image spread (some digits are
    simply more probable than others), which dominates the SE of each mean; the SE of the
    paired difference does not contain it, so it is usually far smaller than
    sqrt(SE_a^2 + SE_b^2).

    Args:
      a, b: (N,) per-image values on the same N images, N >= 2.

    Returns:
      ``Estimate(mean, std_error)`` of Python floats.

    Raises:
      ValueError: shapes differ, are not 1-D, N < 2, or values are not finite.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}; they must match")
    return mean_estimate(a - b)
