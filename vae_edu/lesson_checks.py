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

The reference solutions the lessons fall back on (:func:`sample_means`,
:func:`iwae_estimate`, :func:`elbo_estimate`) live here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

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
      mean, log_var: (d,) parameters of q.
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
