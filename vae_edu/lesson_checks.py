r"""Checks (and reference solutions) for the lessons' coding exercises that the assignments lack.

In the style of :mod:`vae_edu.grading`: each ``check_*`` takes the student's function and
returns a :class:`vae_edu.grading.CheckResult`; it compares the function with values a
student can verify on paper, with a float64 reference on seeded random inputs, and, when it
fails, with a catalogue of *named known mistakes*. A check never raises.

* :func:`check_sample_means` (notebook 00): ``sample_means(key, num_means, sample_size)``,
  ``num_means`` means of ``sample_size`` standard-normal draws, with keys split, not reused.
* :func:`check_iwae_estimate` (notebook 03): ``iwae_estimate(log_w)``, one draw of the
  importance-weighted bound from k log-weights (axis 0),

      hat L_k = log (1/k) sum_i w_i = logsumexp_i(log w_i) - log k.

* :func:`check_quantile_traversal` (notebook 07): ``quantile_traversal(z0, k, n)``, z0 with
  coordinate k set to the prior's quantiles Phi^{-1}((i + 1/2) / n);
* :func:`check_spherical_path` (notebook 07): ``spherical_path(z_a, z_b, n)``, the n points
  of the spherical interpolation from z_a to z_b;
* :func:`check_iwae_bound` (notebook 08): ``iwae_bound(log_w, k)``, hat L_k of each image
  from the first k of its K log-weights (last axis);
* :func:`check_effective_sample_size` (notebook 08): ``effective_sample_size(log_w)``,
  Kish's (sum_i w_i)^2 / sum_i w_i^2 from log-weights (last axis);
* :func:`check_softplus` (notebook 09, the appendix): ``softplus(r)``, log(1 + e^r) in
  float32 without overflow for large r or rounding to 0 for very negative r.

The reference solutions the lessons fall back on (:func:`sample_means`,
:func:`iwae_estimate`, :func:`elbo_estimate`, :func:`quantile_traversal`,
:func:`spherical_path`, :func:`iwae_bound`, :func:`softplus`; 08's ESS falls back on
:func:`vae_edu.evaluate.effective_sample_size`) live here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu import _checks
from vae_edu.elbo import elbo
from vae_edu.grading import CheckResult
from vae_edu.grading.core import (
    Stop,
    as_array,
    call_student,
    close,
    diagnose,
    fmt,
)
from vae_edu.latent import as_code, quantile_grid, traversal_codes

__all__ = [
    "check_iwae_estimate",
    "check_sample_means",
    "check_softplus",
    "elbo_estimate",
    "iwae_estimate",
    "sample_means",
    "softplus",
]


# --------------------------------------------------------------------- reference solutions


def sample_means(key, num_means: int, sample_size: int) -> jax.Array:
    """``num_means`` independent means of ``sample_size`` standard-normal draws each.

    The i-th mean uses the i-th of ``jax.random.split(key, num_means)``: one fresh key per
    mean, the given key never reused.

    Args:
      key: a ``jax.random.key``.
      num_means: n >= 1.
      sample_size: m >= 1 draws per mean.

    Returns:
      (n,) float32: each entry ~ N(0, 1 / m).
    """
    keys = jax.random.split(key, num_means)
    return jax.vmap(lambda k: jnp.mean(jax.random.normal(k, (sample_size,))))(keys)


def iwae_estimate(log_w) -> jax.Array:
    r"""One draw of the IWAE bound from k log importance weights along axis 0.

        hat L_k = log (1/k) sum_{i=1}^k exp(log_w_i) = logsumexp_i(log_w_i) - log k

    (logsumexp subtracts the largest log-weight before exponentiating, so log-weights of
    -800 or +800 neither underflow nor overflow).

    Args:
      log_w: (k, ...) log-weights log w_i = log p(x, z_i) - log q(z_i).

    Returns:
      (...) one value per data point.
    """
    log_w = jnp.asarray(log_w)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def elbo_estimate(key, model, x, mean, log_var, num_samples: int) -> jax.Array:
    r"""Monte Carlo ELBO of q = N(mean, diag exp(log_var)) on a linear-Gaussian model.

        ELBO ~= (1/L) sum_l log p(x | z_l) - KL(q || N(0, I)),  z_l = mean + sigma * eps_l,

    via :func:`vae_edu.elbo.elbo` (closed-form KL; unbiased, like the all-Monte-Carlo
    (1/L) sum_l [log p(x | z_l) + log p(z_l) - log q(z_l)]).

    Args:
      key: a ``jax.random.key``.
      model: a :class:`vae_edu.conjugate.LinearGaussianModel` (prior N(0, I)).
      x: (D,) one observation.
      mean, log_var: (d,) the mean and the log-variance log sigma^2 of q.
      num_samples: L >= 1.

    Returns:
      () the estimate.
    """
    return elbo(
        key, mean, log_var, lambda z: model.log_likelihood(x, z), num_samples=num_samples
    ).elbo


# ------------------------------------------------------------------------------ machinery


def _run(name: str, body: Callable, student_fn, success: str) -> CheckResult:
    if not callable(student_fn):
        return CheckResult(
            name,
            False,
            (
                f"Expected a function, got {type(student_fn).__name__}: pass the function "
                "itself (without calling it).",
            ),
        )
    try:
        problems = list(body(student_fn))
    except Stop as stop:
        problems = [str(stop.args[0])]
    except Exception as err:  # noqa: BLE001 - a check never crashes on odd student code
        problems = [f"The checker could not evaluate your function: {type(err).__name__}: {err}"]
    if problems:
        return CheckResult(name, False, tuple(problems))
    return CheckResult(name, True, (success,))


# ------------------------------------------------------------------ notebook 00: the keys

_SPLIT_HINT = (
    "split the key once per mean: keys = jax.random.split(key, num_means), then draw the "
    "i-th mean's numbers with keys[i] (or jax.vmap over keys)."
)


def check_sample_means(student_fn) -> CheckResult:
    r"""Checks ``student_fn(key, num_means, sample_size) -> (num_means,)`` sample means.

    Each entry must be the mean of ``sample_size`` fresh standard-normal draws, so for
    n = 400 means of m = 25 draws: the output has shape (n,), is finite, is the same for
    the same key (no global random state), changes with the key, and its entries have
    mean 0 and variance 1 / m (within 5 standard errors: the sample variance of n
    Gaussian values has relative standard error sqrt(2 / (n - 1)) ~ 0.07).

    Named mistakes: the same key reused for every mean (all n entries equal), a key made
    inside the function (the output ignores the key), numpy's global random state, one
    draw per mean or one key reused for all the draws of a mean (variance 1 instead of
    1 / m), sums instead of means (variance m).
    """
    n, m = 400, 25
    call = "sample_means(key, 400, 25)"

    def body(fn):
        key = jax.random.key(2024)
        first = as_array(call_student(fn, key, n, m, call=call), "your sample_means")
        if first.shape != (n,):
            raise Stop(
                f"for num_means={n} your sample_means has shape {first.shape}; expected "
                f"({n},), one mean per entry (average over the sample_size draws)."
            )
        if not np.all(np.isfinite(first)):
            raise Stop("your sample_means contains inf or NaN.")
        if np.ptp(first) == 0.0:
            raise Stop(
                f"reused key: all {n} of your means are the same number "
                f"({fmt(first[0])}). The same key always gives the same draws, so every "
                "mean was computed from the same numbers: " + _SPLIT_HINT
            )
        again = as_array(call_student(fn, key, n, m, call=call), "your sample_means")
        if not np.array_equal(first, again):
            raise Stop(
                "called twice with the same key your sample_means returns different numbers: "
                "it draws from a global random state (np.random or Python's random), not from "
                "the key. Use jax.random.normal with keys split from the key argument."
            )
        other = as_array(call_student(fn, jax.random.key(7), n, m, call=call), "your sample_means")
        if np.array_equal(first, other):
            raise Stop(
                "your sample_means returns the same numbers for two different keys: you make "
                "a key inside the function (e.g. jax.random.key(0)) instead of using the key "
                "you are given. " + _SPLIT_HINT
            )
        mean = float(first.mean())
        ratio = float(first.var(ddof=1)) * m  # ~ 1 for means of m draws
        if abs(ratio - m * m) < 0.5 * m * m:
            raise Stop(
                f"your values have variance {ratio / m:.3g}, about sample_size = {m}: you "
                "return sums of the draws, not their means (divide by sample_size, or use "
                "jnp.mean)."
            )
        if abs(ratio - m) < 0.5 * m:
            raise Stop(
                f"your means have variance {ratio / m:.3g}, that of ONE standard-normal draw "
                f"(1), not of a mean of {m} draws (1/{m} = {1 / m:.3g}): either each mean is one "
                "draw, or all the draws of a mean share one key (so they are the same "
                "number). Draw jax.random.normal(keys[i], (sample_size,)) and average it."
            )
        tolerance = 5 * math.sqrt(2 / (n - 1))
        if abs(ratio - 1.0) > tolerance or abs(mean) > 5 / math.sqrt(n * m):
            return [
                f"the {n} means of {m} standard-normal draws should have mean 0 and variance "
                f"1/{m} = {1 / m:.3g}; yours have mean {mean:.3g} and variance "
                f"{ratio / m:.3g}. Draw with jax.random.normal (standard normal) and "
                "average the sample_size draws of each mean."
            ]
        if np.unique(np.round(first, 6)).size < n:
            return ["some of your means are repeated: a key was reused. " + _SPLIT_HINT]
        return []

    return _run(
        "check_sample_means",
        body,
        student_fn,
        "correct: one fresh key per mean (no two means equal), the same key gives the same "
        "means, and the means have mean 0 and variance 1/sample_size.",
    )


# ---------------------------------------------------------- notebook 03: the IWAE estimate

_LSE_HINT = (
    "compute log (1/k) sum_i exp(log_w_i) as jax.nn.logsumexp(log_w, axis=0) - log(k): "
    "logsumexp subtracts the largest log-weight before exponentiating."
)


def _lse(log_w, axis=0):
    log_w = np.asarray(log_w, np.float64)
    top = np.max(log_w, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(log_w - top), axis=axis))


def check_iwae_estimate(student_fn) -> CheckResult:
    r"""Checks ``student_fn(log_w) -> logsumexp(log_w, axis=0) - log k`` for log_w (k, ...).

    Compared with hand values (k equal weights give their common log-weight; weights 1 and 3
    give log 2), with a float64 reference on seeded random log-weights of shape (k, B) =
    (8, 5), on log-weights of -800 and +800 (where exp underflows to 0 or overflows to inf
    in float32), and through jax.grad (the gradient is the normalised weights, softmax over
    axis 0).

    Named mistakes: the mean of the log-weights (the ELBO estimate), the log of the SUM of the
    weights (no - log k), 1/k applied outside the log (divided by k) or log k added, the
    max-shift of a hand-made logsumexp not added back, the largest weight alone, a reduction
    over the wrong axis, and log(mean(exp(log_w))) without logsumexp (finite on moderate
    log-weights, inf or -inf on extreme ones).
    """
    call = "iwae_estimate(log_w)"
    k, batch = 8, 5

    def evaluate(fn, log_w, what="your estimate"):
        return as_array(call_student(fn, jnp.asarray(log_w, jnp.float32), call=call), what)

    def body(fn):
        rng = np.random.default_rng(3)
        log_w = rng.normal(-3.0, 1.5, size=(k, batch))
        got = evaluate(fn, log_w)
        if got.shape != (batch,):
            hint = ""
            if got.shape == (k,):
                hint = (
                    " You reduced over the last axis (the data points): the k samples are "
                    "along axis 0, so reduce with axis=0."
                )
            elif got.shape == ():
                hint = " You reduced over every axis: reduce over axis 0 (the samples) only."
            raise Stop(
                f"for log_w of shape ({k}, {batch}) (k = {k} samples of {batch} data points) "
                f"your estimate has shape {got.shape}; expected ({batch},).{hint}"
            )
        log_w64 = np.asarray(np.float32(log_w), np.float64)
        reference = _lse(log_w64) - math.log(k)
        cases = [
            ("four equal log-weights of -2", np.full((4, 1), -2.0), np.array([-2.0])),
            (
                "weights 1 and 3 (log_w = [0, log 3])",
                np.array([[0.0], [math.log(3.0)]]),
                np.array([math.log(2.0)]),
            ),
        ]
        problems = []
        for description, case, expected in cases:
            value = evaluate(fn, case)
            if not close(value, expected):
                problems.append(
                    f"for {description} your estimate is {fmt(value)}, expected {fmt(expected)}."
                )
                break
        if problems or not close(got, reference):
            if not problems:
                problems.append(
                    f"on random log-weights your estimate differs from the reference: for "
                    f"log_w[:, 0] = {fmt(log_w64[:, 0])} you return {fmt(got[0])}, expected "
                    f"{fmt(reference[0])}."
                )
            top = log_w64.max(axis=0)
            mistakes = [
                (
                    log_w64.mean(axis=0),
                    "you averaged the log-weights: that is the ELBO estimate "
                    "(1/k) sum_i log w_i, which Jensen's inequality puts below "
                    "log (1/k) sum_i w_i. "
                    "Take the log of the average weight: " + _LSE_HINT,
                ),
                (
                    reference + math.log(k),
                    "your estimate is log of the SUM of the weights: the "
                    "1/k is missing, so subtract log(k).",
                ),
                (
                    _lse(log_w64) / k,
                    "you divided logsumexp by k: the 1/k sits inside the log, "
                    "so it becomes - log(k) outside it.",
                ),
                (reference + 2 * math.log(k), "you added log(k) instead of subtracting it."),
                (
                    reference - top,
                    "you shifted the log-weights by their maximum (good) but "
                    "did not add the maximum back: "
                    "logsumexp(a) = max(a) + log sum exp(a - max(a)).",
                ),
                (top, "your estimate is the largest log-weight alone: every weight counts."),
                (
                    top - math.log(k),
                    "your estimate is the largest log-weight minus log k: "
                    "every weight counts, " + _LSE_HINT,
                ),
            ]
            hint = diagnose(got, mistakes)
            if hint is not None:
                problems.append(hint)
            else:
                problems.append("Compare your code with " + _LSE_HINT)
            return problems
        extreme = np.array([[-800.0, 800.0], [-801.0, 799.0], [-805.0, 790.0]])  # (3, 2)
        got = evaluate(fn, extreme)
        expected = _lse(extreme) - math.log(3)
        if not close(got, expected, rtol=1e-5, atol=1e-3):
            return [
                f"for log-weights of about -800 and +800 your estimate is {fmt(got)}, "
                f"expected {fmt(expected)}: exp(-800) underflows to 0 and exp(800) "
                "overflows to inf in floating point, so log(mean(exp(log_w))) gives -inf and "
                "inf. The bound needs no exp of a raw log-weight: " + _LSE_HINT
            ]
        try:
            grad = jax.grad(lambda a: jnp.sum(jnp.asarray(fn(a))))(jnp.asarray(log_w, jnp.float32))
        except NotImplementedError:
            raise Stop("Not implemented yet: your function raises NotImplementedError.") from None
        except Exception as err:  # noqa: BLE001
            return [
                f"jax.grad cannot differentiate your estimate ({type(err).__name__}): use "
                "jax.numpy (jnp), not numpy or math, inside it (training with L_k needs the "
                "gradient)."
            ]
        weights = np.exp(log_w64 - _lse(log_w64)[None])
        if not close(np.asarray(grad, np.float64), weights, rtol=1e-3, atol=1e-4):
            return [
                "your estimate has the right values but the wrong gradient (expected the "
                "normalised weights w_i / sum_j w_j): do not use stop_gradient or numpy."
            ]
        return []

    return _run(
        "check_iwae_estimate",
        body,
        student_fn,
        "correct: hand values, random log-weights, log-weights of -800 and +800 (no "
        "overflow or underflow) and the gradient all agree with the reference.",
    )


# ==========================================================================================
# Notebooks 07 and 08: a traversal on the prior's quantiles, the spherical path between two
# codes, hat L_k from the first k log-weights, and the effective sample size.
# ==========================================================================================

__all__ += [
    "check_effective_sample_size",
    "check_iwae_bound",
    "check_quantile_traversal",
    "check_spherical_path",
    "iwae_bound",
    "quantile_traversal",
    "spherical_path",
]

# ------------------------------------------------------------------- reference solutions


def quantile_traversal(z0, k: int, num_values: int) -> np.ndarray:
    r"""``num_values`` codes equal to ``z0`` except coordinate k, set to the prior's quantiles.

        out[i, j] = z0_j  (j != k),   out[i, k] = Phi^{-1}((i + 1/2) / n),   i = 0 .. n-1

    (:func:`vae_edu.latent.quantile_grid`: the midpoints, in probability, of n cells of
    prior mass 1/n each), so the strip of decoded images walks along axis k in steps of
    equal prior probability.

    Args:
      z0: (d,) the code held fixed in the other coordinates.
      k: the coordinate to vary, 0 <= k < d (0-based).
      num_values: n >= 1.

    Returns:
      (n, d) float32.
    """
    return traversal_codes(z0, k, quantile_grid(_checks.count(num_values, "num_values")))


def spherical_path(z_a, z_b, num_steps: int) -> np.ndarray:
    r"""``num_steps`` codes on the spherical interpolation ("slerp") from z_a to z_b.

        t_i = i / (n - 1),  i = 0 .. n-1   (t_0 = 0, t_{n-1} = 1),
        z(t) = sin((1 - t) theta) / sin(theta) z_a + sin(t theta) / sin(theta) z_b,
        cos(theta) = z_a . z_b / (|z_a| |z_b|)

    (White 2016). For |z_a| = |z_b| every point has that norm, where the straight line
    (1 - t) z_a + t z_b cuts through the middle of the prior. When z_a and z_b are (nearly)
    parallel, sin(theta) -> 0 and the weights tend to 1 - t and t: the straight line, used
    then.

    Args:
      z_a, z_b: (d,) the end codes.
      num_steps: n >= 2 points, both ends included.

    Returns:
      (n, d) float32; row 0 is z_a and row n-1 is z_b exactly.
    """
    a = as_code(z_a, "z_a").astype(np.float64)
    b = as_code(z_b, "z_b", a.shape[0]).astype(np.float64)
    n = _checks.count(num_steps, "num_steps", minimum=2)
    t = np.linspace(0.0, 1.0, n)[:, None]
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    theta = math.acos(float(np.clip(a @ b / norms, -1.0, 1.0))) if norms > 0 else 0.0
    if math.sin(theta) < 1e-6:
        weight_a, weight_b = 1.0 - t, t
    else:
        weight_a = np.sin((1.0 - t) * theta) / math.sin(theta)
        weight_b = np.sin(t * theta) / math.sin(theta)
    return (weight_a * a + weight_b * b).astype(np.float32)


def iwae_bound(log_w, k: int) -> np.ndarray:
    r"""hat L_k of every image from the first k of its K log importance weights (last axis).

        hat L_k = log (1/k) sum_{i=1}^k w_i = logsumexp_{i<=k}(log w_i) - log k

    (the weights of notebook 08 are about e^-90: only the log-sum-exp form is safe).

    Args:
      log_w: (..., K) log-weights, e.g. (N, K) of :func:`vae_edu.evaluate.per_image_log_weights`.
      k: 1 <= k <= K.

    Returns:
      (...) float64 nats.
    """
    log_w = np.asarray(log_w, np.float64)
    k = _checks.count(k, "k")
    if log_w.ndim < 1 or k > log_w.shape[-1]:
        raise ValueError(f"k = {k} needs log_w of shape (..., K) with K >= k, got {log_w.shape}")
    return _lse(log_w[..., :k], axis=-1) - math.log(k)


# --------------------------------------------------- notebook 07: traversal on quantiles


def _ppf(u) -> np.ndarray:
    # Phi^{-1}(u) elementwise, with Phi^{-1}(0) = -inf and Phi^{-1}(1) = +inf.
    normal = NormalDist()
    values = [normal.inv_cdf(v) if 0 < v < 1 else math.copysign(math.inf, v - 0.5) for v in u]
    return np.array(values, np.float64)


def check_quantile_traversal(student_fn) -> CheckResult:
    r"""Checks ``student_fn(z0, k, n) -> (n, d)``: z0 with z_k = Phi^{-1}((i + 1/2) / n).

    On a seeded random code of d = 5 (k = 2, n = 7), then k = 0 and n = 1 (one value: the
    prior median 0) on another code, against :func:`quantile_traversal` (the grid by
    ``statistics.NormalDist``); z0 must come back unchanged.

    Named mistakes: the values (n,) alone instead of codes, the transposed (d, n), every
    coordinate varied, the other coordinates 0 (z0 not held), coordinate k + 1 varied
    (1-based k), z0 changed in place; for the grid: probabilities i / n or i / (n - 1) (an
    infinite end), (i + 1) / (n + 1), evenly spaced values, the probabilities u_i
    themselves, Phi instead of Phi^{-1}.
    """
    call = "quantile_traversal(z0, k, num_values)"

    def one_case(fn, z0, k, n):
        given = z0.copy()
        got = as_array(call_student(fn, given, k, n, call=call), "your traversal")
        if not np.array_equal(given, z0):
            raise Stop(
                "your function changed z0 in place (e.g. `codes = z0` then `codes[k] = v`: "
                "both names are the same array). Copy it first: np.tile(z0, (n, 1)) makes "
                "n new rows."
            )
        d = z0.shape[0]
        u = (np.arange(n) + 0.5) / n
        grid = _ppf(u)
        expected = np.tile(z0.astype(np.float64), (n, 1))
        expected[:, k] = grid
        if got.shape != (n, d):
            if got.shape == (n,):
                hint = (
                    " You returned the n values of z_k alone: each row must be a whole code, "
                    "z0 with coordinate k replaced."
                )
            elif got.shape == (d, n):
                hint = " Your array is transposed: one row per value, one column per coordinate."
            elif got.ndim == 2 and got.shape[1] == d and abs(got.shape[0] - n) == 1:
                hint = f" Off by one: you returned {got.shape[0]} codes for num_values = {n}."
            else:
                hint = ""
            raise Stop(
                f"for z0 of shape ({d},) and num_values = {n} your traversal has shape "
                f"{got.shape}; expected ({n}, {d}).{hint}"
            )
        others = [j for j in range(d) if j != k]
        column = got[:, k]
        if not close(got[:, others], expected[:, others], rtol=1e-6, atol=1e-6):
            if np.allclose(got, np.broadcast_to(column[:, None], got.shape)):
                raise Stop(
                    "every coordinate of your codes is set to the traversal value: only "
                    "coordinate k changes, the others keep z0's values."
                )
            if np.allclose(got[:, others], 0.0):
                raise Stop(
                    "the other coordinates of your codes are 0: a traversal holds them at "
                    "z0 (start from copies of z0, not from zeros), so that it shows what "
                    "axis k does near that code."
                )
            if d > k + 1 and close(got[:, k + 1], grid, rtol=1e-5, atol=1e-5):
                raise Stop(
                    f"you varied coordinate k + 1 = {k + 1}, not k = {k}: k counts from 0 "
                    "(z_1 of the notebook is k = 0), so set codes[:, k]."
                )
            raise Stop(
                f"the coordinates other than k = {k} must keep z0's values in every row; "
                f"your first row is {fmt(got[0])}, z0 is {fmt(z0)}."
            )
        if close(column, grid, rtol=1e-5, atol=1e-5):
            return
        mistakes = [
            (_ppf(np.arange(n) / n), "i / n"),
            (_ppf(np.arange(1, n + 1) / n), "(i + 1) / n"),
            (_ppf(np.arange(n) / max(n - 1, 1)), "i / (n - 1)"),
        ]
        for wrong, name in mistakes:
            if np.array_equal(np.isinf(column), np.isinf(wrong)) and np.allclose(
                np.nan_to_num(column), np.nan_to_num(wrong), rtol=1e-3, atol=1e-3
            ):
                raise Stop(
                    f"your probabilities are u_i = {name}: one end is 0 or 1, where "
                    "Phi^{-1} is -inf or +inf. Take the midpoints of the n equal-mass cells, "
                    "u_i = (i + 1/2) / n."
                )
        if not np.all(np.isfinite(column)):
            raise Stop(
                f"your values of z_k, {fmt(column)}, are not all finite: Phi^{{-1}}(0) = -inf "
                "and Phi^{-1}(1) = +inf. Use u_i = (i + 1/2) / n, strictly inside (0, 1)."
            )
        named = [
            (
                _ppf(np.arange(1, n + 1) / (n + 1)),
                "your probabilities are u_i = (i + 1) / (n + 1): evenly spaced, but not the "
                "midpoints of n cells of mass 1/n. Use u_i = (i + 1/2) / n.",
            ),
            (
                np.linspace(-3.0, 3.0, n),
                "your values are evenly spaced in z, not in probability: map evenly spaced "
                "probabilities u_i = (i + 1/2) / n through Phi^{-1} (the prior's quantiles).",
            ),
            (
                u,
                "your values are the probabilities u_i themselves: map them through the "
                "inverse CDF, z_i = Phi^{-1}(u_i) (statistics.NormalDist().inv_cdf or "
                "scipy.stats.norm.ppf).",
            ),
            (
                np.array([NormalDist().cdf(float(v)) for v in u]),
                "you applied the CDF Phi to u_i: the quantiles need its inverse, "
                "Phi^{-1}(u_i) (NormalDist().inv_cdf, scipy.stats.norm.ppf).",
            ),
        ]
        hint = diagnose(column, named)
        raise Stop(
            hint
            or (
                f"for num_values = {n} your values of z_k are {fmt(column)}; expected the "
                f"prior's quantiles Phi^{{-1}}((i + 1/2) / n) = {fmt(grid)}."
            )
        )

    def body(fn):
        rng = np.random.default_rng(6)
        one_case(fn, rng.normal(size=5).astype(np.float32), 2, 7)
        one_case(fn, rng.normal(size=3).astype(np.float32), 0, 1)
        return []

    return _run(
        "check_quantile_traversal",
        body,
        student_fn,
        "correct: the other coordinates hold z0, coordinate k runs through the prior's "
        "quantiles Phi^{-1}((i + 1/2) / n), and z0 is left unchanged.",
    )


# ------------------------------------------------------ notebook 07: the spherical path

_SLERP_HINT = (
    "t_i = np.linspace(0, 1, num_steps) (both ends included), theta = arccos(z_a . z_b / "
    "(|z_a| |z_b|)), z(t) = [sin((1 - t) theta) z_a + sin(t theta) z_b] / sin(theta)."
)


def _slerp(a, b, t, theta):
    t = np.asarray(t, np.float64)[:, None]
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def check_spherical_path(student_fn) -> CheckResult:
    r"""Checks ``student_fn(z_a, z_b, num_steps) -> (num_steps, d)``, the spherical path.

    On two 6-D codes of norms 1.5 and 2 at cos(theta) = 0.25 with num_steps = 9 (compared
    with a float64 reference: first row z_a, last z_b), then on the unit vectors (1, 0),
    (0, 1) with 3 steps (the middle point is (1, 1) / sqrt 2).

    Named mistakes: num_steps + 1 or num_steps - 1 points, the transposed (d, n), t = i / n
    (never reaching z_b) or t = (i + 1) / n (skipping z_a), the ends swapped, the straight
    line instead of the arc, theta from the raw dot product (not divided by the norms), the
    weights not divided by sin(theta); NaN from arccos outside [-1, 1].
    """
    call = "spherical_path(z_a, z_b, num_steps)"
    n, d = 9, 6
    basis, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(d, 2)))
    cos = 0.25
    a = (1.5 * basis[:, 0]).astype(np.float32)
    b = (2.0 * (cos * basis[:, 0] + math.sqrt(1 - cos**2) * basis[:, 1])).astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    theta = math.acos(float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64))))
    ts = np.linspace(0.0, 1.0, n)

    def body(fn):
        with np.errstate(all="ignore"):  # arccos(1.5) = NaN is a result here, named below
            got = as_array(call_student(fn, a.copy(), b.copy(), n, call=call), "your path")
        if got.shape != (n, d):
            hint = ""
            if got.ndim == 2 and got.shape[1] == d and got.shape[0] == n + 1:
                hint = (
                    " Off by one: num_steps + 1 points. np.linspace(0, 1, num_steps) "
                    "already includes both ends."
                )
            elif got.ndim == 2 and got.shape[1] == d and got.shape[0] == n - 1:
                hint = " Off by one: one point short; the path includes both ends."
            elif got.shape == (d, n):
                hint = " Your array is transposed: one row per point of the path."
            raise Stop(
                f"for codes of shape ({d},) and num_steps = {n} your path has shape "
                f"{got.shape}; expected ({n}, {d}).{hint}"
            )
        if not np.all(np.isfinite(got)):
            raise Stop(
                "your path contains NaN or inf. arccos is NaN outside [-1, 1]: cos(theta) "
                "is the dot product divided by BOTH norms, z_a . z_b / (|z_a| |z_b|) (clip "
                "it to [-1, 1] against rounding). " + _SLERP_HINT
            )
        expected = _slerp(a64, b64, ts, theta)
        if close(got, expected, rtol=1e-5, atol=1e-5):
            return []
        raw_theta = math.acos(float(a64 @ b64))  # |a . b| = 0.75: no NaN, a wrong angle
        mistakes = [
            (
                expected[::-1],
                "your path runs from z_b to z_a: the ends are swapped. Row 0 must be z_a "
                "(the weight of z_a is sin((1 - t) theta) / sin(theta), 1 at t = 0).",
            ),
            (
                _slerp(a64, b64, np.arange(n) / n, theta),
                "your last point is not z_b: t = i / num_steps stops one step short of 1. "
                "Use t_i = i / (num_steps - 1), i.e. np.linspace(0, 1, num_steps).",
            ),
            (
                _slerp(a64, b64, np.arange(1, n + 1) / n, theta),
                "your first point is not z_a: t = (i + 1) / num_steps skips t = 0. Use "
                "np.linspace(0, 1, num_steps).",
            ),
            (
                (1 - ts[:, None]) * a64 + ts[:, None] * b64,
                "that is the straight line (1 - t) z_a + t z_b (linear interpolation), which "
                "cuts inside the sphere; the spherical path follows the arc: " + _SLERP_HINT,
            ),
            (
                _slerp(a64, b64, ts, raw_theta),
                "your angle is arccos(z_a . z_b) of the raw dot product: divide it by both "
                "norms first, cos(theta) = z_a . z_b / (|z_a| |z_b|).",
            ),
            (
                _slerp(a64, b64, ts, theta) * math.sin(theta),
                "your weights are sin((1 - t) theta) and sin(t theta) without the division by "
                "sin(theta), so the path starts at sin(theta) z_a instead of z_a.",
            ),
        ]
        hint = diagnose(got, mistakes)
        if hint is not None:
            return [hint]
        if not close(got[0], a64, rtol=1e-5, atol=1e-5) or not close(
            got[-1], b64, rtol=1e-5, atol=1e-5
        ):
            return [
                f"your path must start at z_a and end at z_b; its first point is "
                f"{fmt(got[0])} (z_a = {fmt(a64)}) and its last {fmt(got[-1])} "
                f"(z_b = {fmt(b64)}). " + _SLERP_HINT
            ]
        unit = as_array(
            call_student(
                fn, np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32), 3, call=call
            ),
            "your path",
        )
        half = math.sqrt(0.5)
        return [
            f"the ends are right but the points between are not on the spherical path: for "
            f"z_a = (1, 0), z_b = (0, 1), num_steps = 3 you return {fmt(unit)}, expected "
            f"[[1, 0], [{half:.4f}, {half:.4f}], [0, 1]] (a quarter circle). " + _SLERP_HINT
        ]

    return _run(
        "check_spherical_path",
        body,
        student_fn,
        "correct: the path starts at z_a, ends at z_b, has num_steps points and follows the "
        "arc of the spherical interpolation.",
    )


# ------------------------------------------------------- notebook 08: hat L_k from log w

_PREFIX_HINT = (
    "take the first k log-weights of every image, log_w[..., :k], and return "
    "logsumexp(log_w[..., :k], axis=-1) - log(k)."
)


def _stop_unless_one_per_row(got, rows: int, sample_counts, given: str, what: str) -> None:
    """Stop unless ``got`` has shape (rows,): one value per row of log-weights (N, K), whose
    samples lie along the last axis; names a reduction over axis 0 or over every axis."""
    if got.shape == (rows,):
        return
    hint = ""
    if got.shape in {(count,) for count in sample_counts}:
        hint = (
            " You reduced over axis 0, the rows (images): the samples of each row are along "
            "the LAST axis, so reduce with axis=-1."
        )
    elif got.shape == ():
        hint = " You reduced over every axis: reduce over the last axis only."
    raise Stop(
        f"for {given} your {what} has shape {got.shape}; expected ({rows},), one per row.{hint}"
    )


def check_iwae_bound(student_fn) -> CheckResult:
    r"""Checks ``student_fn(log_w, k) -> logsumexp(log_w[..., :k], axis=-1) - log k``.

    log_w has shape (N, K), the K samples of each image along the last axis (as
    :func:`vae_edu.evaluate.per_image_log_weights` returns them). Compared with a float64
    reference on seeded log-weights around -90 nats ((N, K) = (4, 50), k = 20), with hand
    values (k = 1 gives the first log-weight; weights 1 and 3 give log 2), and on log-weights
    of -800 and +800 (where exp underflows or overflows even in float64).

    Named mistakes: the mean of the log-weights (the ELBO estimate), no - log k (log of the
    sum), log K instead of log k, all K weights instead of the first k, an off-by-one slice,
    logsumexp divided by k or log k added, the max-shift not added back, the largest weight
    alone, a reduction over the images' axis, and log(mean(exp(log_w))) (inf or -inf on
    extreme log-weights).
    """
    call = "iwae_bound(log_w, k)"
    images, K, k = 4, 50, 20

    def value(fn, log_w, k, what="your bound"):
        with np.errstate(all="ignore"):  # exp(800) = inf is a result here, named below
            return as_array(call_student(fn, np.array(log_w, np.float64), k, call=call), what)

    def body(fn):
        log_w = np.random.default_rng(8).normal(-90.0, 3.0, size=(images, K))
        got = value(fn, log_w, k)
        _stop_unless_one_per_row(
            got, images, (K, k), f"log_w of shape ({images}, {K}) and k = {k}", "bound"
        )
        first = log_w[:, :k]
        reference = _lse(first, axis=1) - math.log(k)
        if not close(got, reference, rtol=1e-5, atol=1e-4):
            top = first.max(axis=1)
            mistakes = [
                (
                    first.mean(axis=1),
                    "you averaged the log-weights: that is the ELBO estimate "
                    "(1/k) sum_i log w_i, below log (1/k) sum_i w_i by Jensen's inequality. "
                    "Take the log of the average weight: " + _PREFIX_HINT,
                ),
                (
                    reference + math.log(k),
                    "your bound is the log of the SUM of the k weights: the 1/k is missing, "
                    "so subtract log(k).",
                ),
                (
                    _lse(log_w, axis=1) - math.log(K),
                    f"you used all K = {K} weights instead of the first k = {k}: " + _PREFIX_HINT,
                ),
                (
                    _lse(first, axis=1) - math.log(K),
                    f"you subtracted log K (K = {K}, all the computed weights) instead of log k "
                    f"(k = {k}, the weights you averaged).",
                ),
                (
                    _lse(log_w, axis=1) - math.log(k),
                    f"you summed all K = {K} weights but divided by k = {k}: " + _PREFIX_HINT,
                ),
                (
                    _lse(log_w[:, : k + 1], axis=1) - math.log(k),
                    "off by one: you summed k + 1 weights. The first k are log_w[..., :k] "
                    "(indices 0 .. k-1).",
                ),
                (
                    _lse(log_w[:, 1 : k + 1], axis=1) - math.log(k),
                    "off by one: you skipped the first weight. The first k are log_w[..., :k] "
                    "(indices 0 .. k-1).",
                ),
                (
                    _lse(log_w[:, : k - 1], axis=1) - math.log(k),
                    "off by one: you summed k - 1 weights. The first k are log_w[..., :k] "
                    "(indices 0 .. k-1).",
                ),
                (
                    _lse(first, axis=1) / k,
                    "you divided logsumexp by k: the 1/k sits inside the log, so it becomes "
                    "- log(k) outside it.",
                ),
                (reference + 2 * math.log(k), "you added log(k) instead of subtracting it."),
                (
                    reference - top,
                    "you shifted the log-weights by their maximum (good) but did not add the "
                    "maximum back: logsumexp(a) = max(a) + log sum exp(a - max(a)).",
                ),
                (top, "your bound is the largest log-weight alone: every weight counts."),
            ]
            hint = diagnose(got, mistakes)
            return [
                hint
                or (
                    f"for the first k = {k} log-weights of image 0 you return {fmt(got[0])}, "
                    f"expected {fmt(reference[0])}: " + _PREFIX_HINT
                )
            ]
        cases = [
            (
                "k = 1 (the one-sample bound is the first log-weight itself)",
                log_w[:2],
                1,
                log_w[:2, 0],
            ),
            (
                "weights 1, 3 and 10 with k = 2 (log of (1 + 3) / 2)",
                np.array([[0.0, math.log(3.0), math.log(10.0)]]),
                2,
                np.array([math.log(2.0)]),
            ),
        ]
        for description, case, k_case, expected in cases:
            got = value(fn, case, k_case)
            if not close(got, expected, rtol=1e-5, atol=1e-5):
                return [
                    f"for {description} your bound is {fmt(got)}, expected {fmt(expected)}: "
                    + _PREFIX_HINT
                ]
        extreme = np.array([[-800.0, -801.0, -805.0, -2000.0], [800.0, 799.0, 790.0, 0.0]])
        got = value(fn, extreme, 3)
        expected = _lse(extreme[:, :3], axis=1) - math.log(3)
        if not close(got, expected, rtol=1e-5, atol=1e-3):
            return [
                f"for log-weights of about -800 and +800 your bound is {fmt(got)}, expected "
                f"{fmt(expected)}: exp(-800) underflows to 0 and exp(800) overflows to inf "
                "(even in float64), so log(mean(exp(log_w))) gives -inf and inf. Never "
                "exponentiate a raw log-weight: " + _PREFIX_HINT
            ]
        return []

    return _run(
        "check_iwae_bound",
        body,
        student_fn,
        "correct: random log-weights (the first k of K), k = 1, hand values and log-weights "
        "of -800 and +800 (no overflow or underflow) all agree with the reference.",
    )


# ------------------------------------------------ notebook 08: the effective sample size

_ESS_HINT = (
    "In log space, ESS = exp(2 logsumexp(log_w) - logsumexp(2 log_w)) over the last axis; or "
    "normalise first, wbar = softmax(log_w), and return 1 / sum(wbar**2)."
)


def _ess(log_w) -> np.ndarray:
    log_w = np.asarray(log_w, np.float64)
    return np.exp(2 * _lse(log_w, axis=-1) - _lse(2 * log_w, axis=-1))


def check_effective_sample_size(student_fn) -> CheckResult:
    r"""Checks ``student_fn(log_w) -> (sum_i w_i)^2 / sum_i w_i^2`` over the last axis.

    Kish's effective sample size from log-weights of shape (N, k): hand values (k equal
    weights give k, one dominant weight gives 1, weights 1 and 3 give 16/10 = 1.6), a
    float64 reference on seeded log-weights of shape (5, 30), and log-weights of -800 and
    +800 (where exp underflows or overflows).

    Named mistakes: 1/sum w_i^2 of the unnormalised weights, weights normalised by their
    largest instead of their sum, the log-weights used as weights, sum wbar_i^2 (1/ESS),
    ESS/k, log ESS, the exponential of the weights' entropy (another "effective number"),
    a reduction over the wrong axis, and (sum w)^2 / sum w^2 with exp of raw log-weights
    (inf or NaN on extreme ones).
    """
    call = "effective_sample_size(log_w)"
    rows, k = 5, 30

    def value(fn, log_w, what="your ESS"):
        with np.errstate(all="ignore"):  # exp(800) = inf is a result here, named below
            return as_array(call_student(fn, np.array(log_w, np.float64), call=call), what)

    def body(fn):
        log_w = np.random.default_rng(9).normal(-2.0, 1.5, size=(rows, k))
        got = value(fn, log_w)
        _stop_unless_one_per_row(got, rows, (k,), f"log_w of shape ({rows}, {k})", "ESS")
        reference = _ess(log_w)
        if not close(got, reference, rtol=1e-4, atol=1e-4):
            w = np.exp(log_w)
            by_max = np.exp(log_w - log_w.max(axis=1, keepdims=True))
            normalised = w / w.sum(axis=1, keepdims=True)
            mistakes = [
                (
                    1.0 / (w**2).sum(axis=1),
                    "you returned 1 / sum_i w_i^2 of the raw weights: that formula needs "
                    "NORMALISED weights wbar_i = w_i / sum_j w_j (or keep the numerator: "
                    "(sum w)^2 / sum w^2). " + _ESS_HINT,
                ),
                (
                    1.0 / (by_max**2).sum(axis=1),
                    "you divided the weights by their LARGEST (w_i / max_j w_j) and returned "
                    "1 / sum of squares: normalise by their SUM, wbar_i = w_i / sum_j w_j "
                    "(or return (sum w)^2 / sum w^2, which any rescaling leaves unchanged).",
                ),
                (
                    log_w.sum(axis=1) ** 2 / (log_w**2).sum(axis=1),
                    "you used the log-weights as if they were the weights: the weights are "
                    "w_i = exp(log_w_i). " + _ESS_HINT,
                ),
                (
                    (normalised**2).sum(axis=1),
                    "you returned sum_i wbar_i^2, which is 1 / ESS: take its reciprocal.",
                ),
                (
                    reference / k,
                    f"you returned ESS / k, the fraction of the k = {k} samples: return the ESS "
                    "itself (between 1 and k).",
                ),
                (
                    np.log(reference),
                    "you returned log ESS: exponentiate it.",
                ),
                (
                    np.exp(-(normalised * np.log(normalised)).sum(axis=1)),
                    "you returned exp(entropy of the normalised weights), another 'effective "
                    "number of samples'; this exercise asks for Kish's (sum w)^2 / sum w^2.",
                ),
            ]
            hint = diagnose(got, mistakes)
            return [
                hint
                or (
                    f"for row 0 your ESS is {fmt(got[0])}, expected {fmt(reference[0])}. "
                    + _ESS_HINT
                )
            ]
        cases = [
            ("four equal log-weights of -90", np.full((1, 4), -90.0), np.array([4.0])),
            (
                "one weight much larger than the others (log-weights 0, -50, -60)",
                np.array([[0.0, -50.0, -60.0]]),
                np.array([1.0]),
            ),
            (
                "weights 1 and 3 ((1 + 3)^2 / (1 + 9))",
                np.array([[0.0, math.log(3.0)]]),
                np.array([1.6]),
            ),
        ]
        for description, case, expected in cases:
            got = value(fn, case)
            if not close(got, expected, rtol=1e-4, atol=1e-4):
                return [
                    f"for {description} your ESS is {fmt(got)}, expected {fmt(expected)}. "
                    + _ESS_HINT
                ]
        extreme = np.array([[-800.0, -801.0, -803.0], [800.0, 799.0, 795.0]])
        got = value(fn, extreme)
        expected = _ess(extreme)
        if not close(got, expected, rtol=1e-4, atol=1e-4):
            return [
                f"for log-weights of about -800 and +800 your ESS is {fmt(got)}, expected "
                f"{fmt(expected)}: exp(-800) underflows to 0 and exp(800) overflows to inf "
                "(even in float64), so (sum w)^2 / sum w^2 becomes 0/0 or inf/inf. Never "
                "exponentiate a raw log-weight. " + _ESS_HINT
            ]
        return []

    return _run(
        "check_effective_sample_size",
        body,
        student_fn,
        "correct: equal weights give k, one dominant weight gives 1, random log-weights and "
        "log-weights of -800 and +800 (no overflow or underflow) agree with the reference.",
    )


# --------------------------------------------- notebook 09 (appendix): a float32-safe softplus


def softplus(r) -> jax.Array:
    r"""softplus(r) = log(1 + e^r), computed so that float32 cannot break it (notebook 09).

        softplus(r) = max(r, 0) + log1p(exp(-|r|))

    exp(-|r|) <= 1 never overflows (the naive e^r is inf for r > 88.7), and ``log1p`` keeps
    the tiny values of very negative r (log(1 + 4e-18) rounds to log(1) = 0 in float32,
    log1p does not). Same shape as ``r``.
    """
    r = jnp.asarray(r, jnp.float32)
    return jnp.maximum(r, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(r)))


_SOFTPLUS_POINTS = np.array([-80.0, -40.0, -5.0, -0.5, 0.0, 0.5, 5.0, 40.0, 88.0, 89.0, 100.0])
_SOFTPLUS_HINT = "write it as max(r, 0) + log1p(exp(-|r|)) (jnp.maximum, jnp.log1p, jnp.abs)."


def check_softplus(student_fn) -> CheckResult:
    r"""Checks ``student_fn(r) -> log(1 + e^r)`` elementwise, in float32, for r in [-80, 100].

    Compared with a float64 reference (``numpy.logaddexp(0, r)``) to a relative error of
    1e-5 at r = -80 ... 100 (every value a normal float32), on the shape of the output, on
    the hand value softplus(0) = log 2, and through ``jax.grad``: d softplus / dr =
    sigmoid(r), finite everywhere (checked away from the kink of max(r, 0) at r = 0).

    Named mistakes: the naive ``log(1 + exp(r))`` (inf for r > 88.7, where exp overflows;
    0 for r = -40, where 1 + e^-40 rounds to 1), ``log1p(exp(r))`` without the max (still
    inf for large r), ``max(r, 0) + log(1 + exp(-|r|))`` (log instead of log1p: 0 at
    r = -40), the max dropped (``log1p(exp(-|r|))``: wrong for positive r), and a gradient
    that is NaN at large r.
    """
    call = "softplus(r)"
    r32 = _SOFTPLUS_POINTS.astype(np.float32)
    expected = np.logaddexp(0.0, r32.astype(np.float64))

    def body(fn):
        got = as_array(call_student(fn, jnp.asarray(r32), call=call), "your softplus")
        if got.shape != r32.shape:
            raise Stop(
                f"for r of shape {r32.shape} your softplus has shape {got.shape}: it must work "
                "elementwise and keep the shape of r."
            )
        at_zero = float(got[list(_SOFTPLUS_POINTS).index(0.0)])
        if abs(at_zero - math.log(2.0)) > 1e-6:
            raise Stop(f"softplus(0) = log(1 + 1) = log 2 = 0.6931; yours is {at_zero:.4f}.")
        big = _SOFTPLUS_POINTS >= 89.0
        if not np.all(np.isfinite(got[big])):
            raise Stop(
                f"overflow: your softplus is {fmt(got[big])} at r = {fmt(_SOFTPLUS_POINTS[big])}. "
                "In float32, exp(r) is inf for r > 88.7, so log(1 + exp(r)) is inf although "
                "softplus(r) is just about r there: " + _SOFTPLUS_HINT
            )
        relative = np.abs(got - expected) / np.abs(expected)
        tiny = _SOFTPLUS_POINTS <= -40.0
        if np.any(got[tiny] == 0.0):
            raise Stop(
                f"underflow of the answer: at r = {fmt(_SOFTPLUS_POINTS[tiny])} your softplus is "
                f"{fmt(got[tiny])}, but the true values are {expected[tiny][0]:.3g} and "
                f"{expected[tiny][1]:.3g}. In float32 1 + e^-40 rounds to exactly 1, so "
                "log(1 + exp(r)) returns 0; log1p(x) computes log(1 + x) without forming 1 + x: "
                + _SOFTPLUS_HINT
            )
        if np.any(relative > 1e-5):
            worst = int(np.argmax(relative))
            hint = ""
            if np.all(got[_SOFTPLUS_POINTS > 0] < 1.0):
                hint = " You dropped max(r, 0): for positive r, softplus(r) is about r."
            raise Stop(
                f"at r = {_SOFTPLUS_POINTS[worst]:g} your softplus is {got[worst]:.6g}, the true "
                f"value is {expected[worst]:.6g} (relative error {relative[worst]:.1e}).{hint} "
                + _SOFTPLUS_HINT
            )
        # The gradient away from r = 0, where max(r, 0) and |r| have kinks (their one-sided
        # slopes are right; JAX's choice at the kink itself is a convention).
        r_grad = r32[_SOFTPLUS_POINTS != 0.0]
        try:
            slope = jax.vmap(jax.grad(lambda x: jnp.sum(fn(x))))(jnp.asarray(r_grad))
            slope = np.asarray(slope, np.float64)
        except Exception as err:  # noqa: BLE001 - a check never crashes on student code
            raise Stop(
                f"jax.grad cannot differentiate your softplus ({type(err).__name__}): use "
                "jax.numpy functions only (no numpy, no float() inside)."
            ) from None
        sigmoid = 1.0 / (1.0 + np.exp(-r_grad.astype(np.float64)))
        if not np.all(np.isfinite(slope)):
            bad = r_grad[~np.isfinite(slope)]
            raise Stop(
                f"the gradient of your softplus is NaN or inf at r = {fmt(bad)}, although the "
                "values are right: a branch that is not taken still gets differentiated "
                "(e.g. jnp.where(r > 0, r + log1p(exp(-r)), log1p(exp(r))) evaluates exp(r) "
                "= inf on both sides). " + _SOFTPLUS_HINT
            )
        if not np.allclose(slope, sigmoid, rtol=1e-4, atol=1e-6):
            return [
                f"the gradient of your softplus is {fmt(slope)}; it should be sigmoid(r) = "
                f"{fmt(sigmoid)}."
            ]
        return []

    return _run(
        "check_softplus",
        body,
        student_fn,
        "correct: accurate to 1e-5 (relative) from r = -80 to 100 in float32, no overflow, "
        "no underflow to 0, and jax.grad gives sigmoid(r) everywhere.",
    )


# ========================================================================================
# Notebook 06: the training loss and one training step (Exercises 6.1 and 6.2)
# ========================================================================================
#
# negative_elbo(model, key, x): the loss of one mini-batch, with the model's encode / decode
# given (its reference solution is defined here); optimizer_step(loss_fn, optimizer, params,
# opt_state, key, x): one optax step, whose reference is the package's own training step
# vae_edu.train.optimizer_step (every step of vae_edu.train.train), re-exported here. The key
# comes before the batch, as in VAE.loss(key, x), jax.random's functions and assignment A3.

import optax  # noqa: E402 (this section's own import, kept beside it)

from vae_edu.elbo import reparameterize  # noqa: E402
from vae_edu.grading.core import gradient_tree  # noqa: E402
from vae_edu.loss import negative_elbo as loss_from_outputs  # noqa: E402 (notebook 05's Exercise 5.1)
from vae_edu.train import optimizer_step  # noqa: E402 (the package's own training step)

__all__ += ["check_negative_elbo", "check_optimizer_step", "negative_elbo", "optimizer_step"]


def negative_elbo(model, key, x) -> jax.Array:
    r"""The training loss of a Bernoulli VAE on a batch: the negative ELBO, batch-averaged.

        L = -(1/B) sum_n [ log p(x_n | z_n) - KL(q(z | x_n) || N(0, I)) ],
        z_n = mu_n + exp(log_var_n / 2) * eps_n,   eps = jax.random.normal(key, mu.shape),

    with log p(x | z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i) over the D
    pixels (l = model.decode(z)) and KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    over the d latent dimensions: **sums** over pixels and dimensions, **mean** over the batch.
    The loss from the networks' outputs is :func:`vae_edu.loss.negative_elbo` (the lesson on
    decoders and the loss, its Exercise 5.1); this wraps the encoder, the reparameterized
    sample and the decoder around it.

    Args:
      model: any object with ``encode(x) -> (mean, log_var)``, each (B, d), and
        ``decode(z) -> logits`` (B, D), e.g. a :class:`vae_edu.models.VAE`.
      key: the key of the reparameterization noise (used as given, not split).
      x: (B, D) binary batch.

    Returns:
      () the loss in nats per image (what ``VAE.loss(key, x)[0]`` computes).
    """
    mean, log_var = model.encode(x)
    z = reparameterize(key, mean, log_var)  # one z per image, eps = normal(key, mean.shape)
    return loss_from_outputs(x, model.decode(z), mean, log_var)


# ------------------------------------------------------ Exercise 6.1: the negative ELBO


class _TinyVAE:
    """A one-layer Gaussian encoder and Bernoulli decoder on a parameter dict (for checks).

    encode(x) = split(x W_e + b_e) into (mean, log_var), each (B, d); decode(z) = z W_d + b_d.
    Works with traced parameters, so ``jax.grad`` can differentiate the student's loss.
    """

    def __init__(self, params):
        self.params = params

    def encode(self, x):
        out = x @ self.params["enc_w"] + self.params["enc_b"]
        d = out.shape[-1] // 2
        return out[..., :d], out[..., d:]

    def decode(self, z):
        return z @ self.params["dec_w"] + self.params["dec_b"]


_ELBO_B, _ELBO_D, _ELBO_d = 5, 6, 2


def _tiny_params(seed: int, log_var_bias: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    d_in, d = _ELBO_D, _ELBO_d
    enc_b = np.concatenate([rng.normal(0.0, 0.5, d), np.full(d, log_var_bias)])
    enc_w = rng.normal(0.0, 0.4, (d_in, 2 * d))
    if log_var_bias != 0.0:  # log_var = log_var_bias exactly: sigma ~ 0, no noise
        enc_w[:, d:] = 0.0
    return {
        "enc_w": jnp.asarray(enc_w, jnp.float32),
        "enc_b": jnp.asarray(enc_b, jnp.float32),
        "dec_w": jnp.asarray(rng.normal(0.0, 0.8, (d, d_in)), jnp.float32),
        "dec_b": jnp.asarray(rng.normal(0.0, 0.5, d_in), jnp.float32),
    }


def _elbo_parts(params, x, eps, sigma_power=0.5):
    """float64 per-image log p(x | z) (B,) and KL (B,) and the pieces the mistakes need."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    out = x @ p["enc_w"] + p["enc_b"]
    mean, log_var = out[:, :_ELBO_d], out[:, _ELBO_d:]
    z = mean + np.exp(sigma_power * log_var) * eps
    logits = z @ p["dec_w"] + p["dec_b"]
    log_sig = -np.logaddexp(0.0, -logits)
    log_sig_neg = -np.logaddexp(0.0, logits)
    reconstruction = np.sum(x * log_sig + (1 - x) * log_sig_neg, axis=-1)
    kl_terms = mean**2 + np.exp(log_var) - 1.0 - log_var
    return {
        "reconstruction": reconstruction,
        "kl": 0.5 * np.sum(kl_terms, axis=-1),
        "kl_plus_log_var": 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 + log_var, axis=-1),
    }


def _elbo_inputs(seed: int):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(_ELBO_B, _ELBO_D)) < 0.4).astype(np.float32)
    return x, jax.random.key(seed)


_REPARAMETERIZE_HINT = (
    "z = mean + jnp.exp(0.5 * log_var) * eps with eps = jax.random.normal(key, mean.shape)"
)


def _elbo_mistakes(params, key, x) -> tuple[float, list[tuple[float, str]]]:
    """The float64 reference loss and the loss of each named mistake, on one input."""
    eps = np.asarray(jax.random.normal(key, (_ELBO_B, _ELBO_d)), np.float64)
    parts = _elbo_parts(params, x, eps)
    rec, kl = parts["reconstruction"], parts["kl"]
    reference = -np.mean(rec - kl)
    no_noise = _elbo_parts(params, x, 0.0 * eps)
    sigma_as_var = _elbo_parts(params, x, eps, sigma_power=1.0)
    d_in, d = _ELBO_D, _ELBO_d
    return reference, [
        (
            np.mean(rec - kl),
            "you returned the ELBO itself: the loss to MINIMISE is its negative, "
            "-(reconstruction - KL), averaged over the batch.",
        ),
        (
            -np.mean(rec + kl),
            "the KL term has the wrong sign: the ELBO is reconstruction MINUS the KL, "
            "so the loss is -reconstruction + KL.",
        ),
        (
            -np.mean(rec - 2 * kl),
            "your KL is twice too large: the 0.5 in front of "
            "sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) is missing.",
        ),
        (
            -np.mean(rec - parts["kl_plus_log_var"]),
            "the log-variance term of your KL has the wrong sign: "
            "KL = 0.5 * sum(mean**2 + exp(log_var) - 1 - log_var).",
        ),
        (
            _ELBO_B * reference,
            f"your loss is {_ELBO_B} times too large for a batch of {_ELBO_B}: you "
            "summed over the batch instead of averaging (jnp.mean over the images; "
            "a sum makes the step size grow with the batch size).",
        ),
        (
            -np.mean(rec / d_in - kl),
            f"you averaged the reconstruction term over the {d_in} pixels instead of "
            "summing it: that divides log p(x | z) by the number of pixels, a "
            f"beta-VAE with beta = {d_in} in disguise (784 on MNIST). Sum over "
            "pixels, average over the batch only.",
        ),
        (
            -np.mean(rec / d_in - kl / d),
            "you averaged over the pixels and the latent dimensions (jnp.mean "
            "everywhere): sum log p(x | z) over the pixels and the KL over the "
            "latent dimensions, and average over the batch only.",
        ),
        (
            -np.mean(rec - kl / d),
            f"you averaged the KL over the {d} latent dimensions instead of summing "
            "it (the KL of a diagonal Gaussian is the sum of the per-dimension KLs).",
        ),
        (
            -np.mean(sigma_as_var["reconstruction"] - kl),
            "your noise has the wrong size: exp(log_var) is sigma^2, not sigma. "
            + _REPARAMETERIZE_HINT
            + ".",
        ),
        (
            -np.mean(no_noise["reconstruction"] - kl),
            "your z is the mean alone: the ELBO's reconstruction term is an "
            "expectation over z ~ q(z | x), so draw one sample per image, "
            + _REPARAMETERIZE_HINT
            + ".",
        ),
    ]


_KEY_FIRST = (
    "The key comes before the batch, negative_elbo(model, key, x), as in VAE.loss(key, x), "
    "jax.random.normal(key, shape) and assignment A3's negative_elbo(params, key, x)."
)
_BATCH_BEFORE_KEY = (
    "your function takes the batch before the key, (model, x, key): called with the two "
    "swapped it gives the right loss. " + _KEY_FIRST
)


def check_negative_elbo(student_fn) -> CheckResult:
    r"""Checks ``student_fn(model, key, x) -> ()`` the batch-averaged negative ELBO.

    On a tiny one-layer model (D = 6 pixels, d = 2 latent dimensions, B = 5 images) with the
    noise ``eps = jax.random.normal(key, mean.shape)``, the value is compared with a float64
    reference, then its gradient with respect to every parameter with the reference's
    (through ``jax.grad``). On a model whose log-variance is -30 (sigma ~ 3e-7, no noise to
    speak of) the formula is checked whatever noise was drawn.

    Named mistakes: the ELBO instead of its negative; the KL with the wrong sign, without its
    1/2, or with + log sigma^2; one value per image (no mean), a sum over the batch, a mean
    over the pixels (beta = D in disguise), a mean over the latent dimensions; sigma =
    exp(log_var) instead of exp(log_var / 2); no noise (z = mean); a key made inside the
    function (the loss ignores the key); noise drawn differently (the formula right, the
    draws not the reference's); z sampled outside the gradient (stop_gradient: the encoder
    gets no gradient through the reconstruction term); the arguments in the order
    ``(model, x, key)`` (the function fails or is wrong when called as ``(model, key, x)``,
    and called with the batch and the key swapped it gives the reference's value).
    """
    call = "negative_elbo(model, key, x)"

    def value(fn, params, key, x, what="your loss"):
        return as_array(call_student(fn, _TinyVAE(params), key, jnp.asarray(x), call=call), what)

    def batch_first(fn, params, key, x):
        """``fn(model, x, key)``, the batch before the key, or None if that fails too."""
        try:
            return as_array(fn(_TinyVAE(params), jnp.asarray(x), key), "your loss")
        except Exception:  # noqa: BLE001 - any failure: the order is not the explanation
            return None

    def batch_first_is_right(fn, params, key, x, reference) -> bool:
        swapped = batch_first(fn, params, key, x)
        return (
            swapped is not None
            and swapped.size == 1
            and close(swapped.reshape(()), reference, 1e-4, 1e-4)
        )

    def body(fn):
        params = _tiny_params(0)
        x, key = _elbo_inputs(1)
        eps = np.asarray(jax.random.normal(key, (_ELBO_B, _ELBO_d)), np.float64)
        parts = _elbo_parts(params, x, eps)
        rec, kl = parts["reconstruction"], parts["kl"]
        reference = -np.mean(rec - kl)
        try:
            got = value(fn, params, key, x)
        except Stop as failed:
            swapped = batch_first(fn, params, key, x)
            if swapped is None:
                raise
            if swapped.size == 1 and close(swapped.reshape(()), reference, 1e-4, 1e-4):
                return [_BATCH_BEFORE_KEY]
            return [
                f"{failed.args[0]} It runs with the batch and the key swapped, (model, x, key), "
                f"but its value is {fmt(swapped)} there, expected {fmt(reference)}: put the key "
                "first, then check the formula. " + _KEY_FIRST
            ]
        if not (got.size == 1 and close(got.reshape(()), reference, rtol=1e-4, atol=1e-4)):
            if batch_first_is_right(fn, params, key, x, reference):
                return [_BATCH_BEFORE_KEY]
        if got.shape == (_ELBO_B,):
            if close(got, -(rec - kl), rtol=1e-3, atol=1e-3):
                raise Stop(
                    f"your loss has shape ({_ELBO_B},), one value per image: average it over "
                    "the batch (jnp.mean) to get one number to minimise."
                )
            raise Stop(
                f"your loss has shape ({_ELBO_B},) for a batch of {_ELBO_B} images: return one "
                "number, the mean over the batch of -(reconstruction - KL)."
            )
        if got.size != 1:
            raise Stop(
                f"your loss has shape {got.shape} for a batch of {_ELBO_B} images of "
                f"{_ELBO_D} pixels; expected a single number: sum over pixels (axis -1) and "
                "latent dimensions (axis -1), then average over the batch."
            )
        got = got.reshape(())
        if not np.isfinite(got):
            raise Stop(f"your loss is {fmt(got)}: it should be a finite number of nats.")
        if not close(got, reference, rtol=1e-4, atol=1e-4):
            # A mistake is named only if it reproduces the loss on two inputs (two models,
            # batches and keys): one noisy value could match a wrong formula by chance.
            params2 = _tiny_params(3)
            x2, key2 = _elbo_inputs(4)
            got2 = value(fn, params2, key2, x2)
            _, first = _elbo_mistakes(params, key, x)
            _, second = _elbo_mistakes(params2, key2, x2)
            mistakes = [
                (np.array([a, b]), message)
                for (a, message), (b, _) in zip(first, second, strict=True)
            ]
            both = np.array([got, got2.reshape(-1)[0] if got2.size == 1 else np.nan])
            hint = diagnose(both, mistakes)
            if hint is not None:
                return [hint]
            other = value(fn, params, jax.random.key(2), x)
            if np.array_equal(other, got.reshape(other.shape)):
                return [
                    "your loss does not change with the key: you draw the noise with a key "
                    "of your own (or none). Use the key you are given: " + _REPARAMETERIZE_HINT
                ]
            quiet = _tiny_params(0, log_var_bias=-30.0)
            quiet_parts = _elbo_parts(quiet, x, eps)
            quiet_reference = -np.mean(quiet_parts["reconstruction"] - quiet_parts["kl"])
            quiet_got = value(fn, quiet, key, x)
            if quiet_got.size == 1 and close(quiet_got.reshape(()), quiet_reference, 1e-4, 1e-3):
                return [
                    "your formula is right when sigma is ~0 (no noise), but your noise is not "
                    "the reference's: draw it as eps = jax.random.normal(key, mean.shape) with "
                    "the key as given (do not split it), and use "
                    "z = mean + jnp.exp(0.5 * log_var) * eps."
                ]
            return [
                f"for a batch of {_ELBO_B} images your loss is {fmt(got)}, expected "
                f"{fmt(reference)} (reconstruction {fmt(np.mean(rec))} per image, KL "
                f"{fmt(np.mean(kl))}). The loss is -mean_n[sum_i (x log sigmoid(l) + (1 - x) "
                "log sigmoid(-l)) - 0.5 * sum_j (mean^2 + exp(log_var) - 1 - log_var)] with "
                + _REPARAMETERIZE_HINT
                + "."
            ]
        grads = gradient_tree(
            lambda p: fn(_TinyVAE(p), key, jnp.asarray(x)), (params,), 0, "your loss"
        )
        expected = jax.grad(lambda p: negative_elbo(_TinyVAE(p), key, jnp.asarray(x)))(params)
        wrong = [
            name
            for name in sorted(expected)
            if not close(np.asarray(grads[name]), np.asarray(expected[name]), 1e-3, 1e-4)
        ]
        if wrong:
            if all(name.startswith("enc") for name in wrong):
                return [
                    "your loss has the right value, but the encoder gets the wrong gradient: "
                    "no gradient flows from the reconstruction term back through z (z "
                    "sampled outside the gradient, e.g. with jax.lax.stop_gradient). "
                    "Reparameterize: the noise eps is the only random part, "
                    + _REPARAMETERIZE_HINT
                    + ", so dz/dmean = 1 and the encoder learns from the reconstruction."
                ]
            return [
                "your loss has the right value but the wrong gradient with respect to "
                + ", ".join(wrong)
                + ": do not use stop_gradient, numpy or Python floats inside it."
            ]
        return []

    return _run(
        "check_negative_elbo",
        body,
        student_fn,
        "correct: the value on the same noise as the reference (sums over pixels and "
        "latent dimensions, mean over the batch, the KL with its 1/2 and its sign) and the "
        "gradient of every encoder and decoder parameter, through the reparameterized z.",
    )


# ------------------------------------------------------ Exercise 6.2: one training step


def _quadratic_loss(params, key, x):
    """A small noisy least-squares loss with a dict of parameters (for the step's check)."""
    if jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
        raise TypeError(
            "loss_fn received the key where the batch goes: call it as loss_fn(params, key, x), "
            "the key before the batch"
        )
    noise = 0.5 * jax.random.normal(key, (x.shape[0],))
    prediction = x @ params["w"] + params["b"] + noise
    target = jnp.arange(x.shape[0], dtype=x.dtype) / x.shape[0]
    return jnp.mean((prediction - target) ** 2)


def _step_setup():
    rng = np.random.default_rng(5)
    params = {
        "w": jnp.asarray(rng.normal(size=3), jnp.float32),
        "b": jnp.asarray(0.3, jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
    keys = list(jax.random.split(jax.random.key(6), 3))
    return params, x, keys


def _simulate(
    optimizer, params, x, keys, *, sign=1.0, carry_state=True, raw_gradient=False, key_fn=None
):
    """Parameters after each of len(keys) steps of a (possibly mistaken) training step."""
    state0 = optimizer.init(params)
    state, trail = state0, []
    for key in keys:
        grads = jax.grad(_quadratic_loss)(params, key if key_fn is None else key_fn(key), x)
        if raw_gradient:
            params = jax.tree.map(lambda p, g: p - g, params, grads)
        else:
            updates, new_state = optimizer.update(grads, state, params)
            params = jax.tree.map(lambda p, u: p + sign * u, params, updates)
            state = new_state if carry_state else state0
        trail.append(params)
    return trail


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(tree)])


def _same_trail(got, expected) -> bool:
    return all(close(_flat(a), _flat(b)) for a, b in zip(got, expected, strict=True))


# What a step that does not pass its key on may use instead: a half of the split key, a key of
# its own.
_OTHER_KEYS = (
    lambda k: jax.random.split(k)[0],
    lambda k: jax.random.split(k)[1],
    lambda k: jax.random.key(0),
)
_KEY_AS_GIVEN = (
    "the loss was not computed with the key you were given: pass the key to loss_fn as it "
    "is (the training loop splits a fresh key for every step; the step itself does not)."
)


def check_optimizer_step(student_fn) -> CheckResult:
    r"""Checks ``student_fn(loss_fn, optimizer, params, opt_state, key, x) -> (params,
    opt_state, loss)``, one optax step of gradient descent.

    Three steps of Adam (learning rate 0.1) on a small noisy least-squares loss with a dict
    of parameters, the state carried from step to step, against the reference
    :func:`optimizer_step`: the parameters after every step, and the returned loss (the loss
    at the parameters the gradient was taken at, with the key as given).

    Named mistakes: gradient ascent (updates subtracted, or the gradient of -loss), the old
    optimizer state returned (Adam restarts every step), the raw gradient subtracted without
    the optimizer, the loss of the updated parameters returned, the key split or replaced
    before it reaches ``loss_fn``, a result that is not the triple, ``loss_fn`` called with
    the batch before the key (its ``TypeError`` says so).
    """
    call = "optimizer_step(loss_fn, optimizer, params, opt_state, key, x)"
    optimizer = optax.adam(0.1)

    def body(fn):
        params0, x, keys = _step_setup()
        params, state = params0, optimizer.init(params0)
        trail, losses = [], []
        for step, key in enumerate(keys, start=1):
            out = call_student(fn, _quadratic_loss, optimizer, params, state, key, x, call=call)
            if not isinstance(out, tuple | list) or len(out) != 3:
                raise Stop(
                    f"your optimizer_step returned {type(out).__name__}"
                    + (f" of length {len(out)}" if isinstance(out, tuple | list) else "")
                    + ": return the triple (new_params, new_opt_state, loss)."
                )
            params, state, loss = out
            if not isinstance(params, dict) or set(params) != set(params0):
                raise Stop(
                    "the first thing your optimizer_step returns should be the new parameters, "
                    f"a dict like the one it was given (keys {sorted(params0)}); got "
                    f"{type(params).__name__}."
                )
            trail.append(params)
            losses.append(_checks_scalar(loss, step))
        expected = _simulate(optimizer, params0, x, keys)
        if not _same_trail(trail, expected):
            mistakes = [
                (
                    _simulate(optimizer, params0, x, keys, sign=-1.0),
                    "gradient ascent: your parameters move uphill and the loss grows. optax's "
                    "updates already point downhill (Adam's are -lr * m / sqrt(v)): add them "
                    "with optax.apply_updates(params, updates); do not subtract them, and "
                    "differentiate the loss itself, not -loss.",
                ),
                (
                    _simulate(optimizer, params0, x, keys, carry_state=False),
                    "you returned the old optimizer state: the first step is right, but Adam "
                    "then restarts at every step (its moments and step count are lost). "
                    "Return the state that optimizer.update gives back.",
                ),
                (
                    _simulate(optimizer, params0, x, keys, raw_gradient=True),
                    "you subtracted the raw gradient: the optimizer must make the step: "
                    "updates, opt_state = optimizer.update(grads, opt_state, params), then "
                    "optax.apply_updates(params, updates).",
                ),
            ]
            mistakes += [
                (_simulate(optimizer, params0, x, keys, key_fn=key_fn), _KEY_AS_GIVEN)
                for key_fn in _OTHER_KEYS
            ]
            for trail_expected, message in mistakes:
                if _same_trail(trail, trail_expected):
                    return [message]
            return [
                f"after step 1 your parameters are {fmt(_flat(trail[0]))}, expected "
                f"{fmt(_flat(expected[0]))}: loss, grads = jax.value_and_grad(loss_fn)(params, "
                "key, x); updates, opt_state = optimizer.update(grads, opt_state, params); "
                "params = optax.apply_updates(params, updates)."
            ]
        before = [params0, *expected[:-1]]
        wanted = [float(_quadratic_loss(p, k, x)) for p, k in zip(before, keys, strict=True)]
        if not close(losses, wanted):
            after = [float(_quadratic_loss(p, k, x)) for p, k in zip(expected, keys, strict=True)]
            if close(losses, after):
                return [
                    "the loss you return is that of the UPDATED parameters: return the loss at "
                    "which the gradient was taken (jax.value_and_grad gives both at once)."
                ]
            other_keys = [
                [float(_quadratic_loss(p, key_fn(k), x)) for p, k in zip(before, keys, strict=True)]
                for key_fn in _OTHER_KEYS
            ]
            if any(close(losses, other) for other in other_keys):
                return [_KEY_AS_GIVEN]
            return [
                f"your parameters are right, but the losses you return are {fmt(losses)}, "
                f"expected {fmt(wanted)}: return loss_fn(params, key, x) at the parameters "
                "before the update (jax.value_and_grad returns it with the gradient)."
            ]
        return []

    return _run(
        "check_optimizer_step",
        body,
        student_fn,
        "correct: three Adam steps match the reference (descent, the optimizer state carried "
        "from step to step), and each returned loss is the one the gradient was taken at.",
    )


def _checks_scalar(loss, step: int) -> float:
    value = as_array(loss, f"the loss your optimizer_step returned at step {step}")
    if value.size != 1:
        raise Stop(
            f"the loss your optimizer_step returns has shape {value.shape}; expected one number "
            "(the value of loss_fn)."
        )
    return float(value.reshape(()))
