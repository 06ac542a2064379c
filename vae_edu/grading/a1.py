"""Assignment 1 checks: the KL divergence of diagonal Gaussians (closed form, two
Gaussians) and its Monte Carlo estimate with a standard error."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu.grading.core import (
    ATOL,
    KL_STANDARD_NORMAL_CODE,
    NUM_SE,
    CheckResult,
    KernelFunction,
    Stop,
    as_array,
    call_student,
    check_event_shape,
    close,
    compare_known,
    diagnose,
    f32,
    fmt,
    gradient,
    hidden_key,
    hidden_rng,
    kl_standard_normal_by_hand,
    negative_case,
    run_check,
    scalar,
    with_reference_names,
)
from vae_edu.kl import kl_diag_gaussians, kl_monte_carlo

# ------------------------------------------------- KL(q || N(0, I)), closed form

_KL_FORMULA = "KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)"

_SIGN_HINT = (
    "a KL divergence is never negative, so check the sign. " + _KL_FORMULA + "; the "
    "expression 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2) is MINUS the KL (it is "
    "the term the ELBO adds)."
)


def _kl_two_hand(mean_q, log_var_q, mean_p, log_var_p):
    """KL(N(mu_q, s_q^2) || N(mu_p, s_p^2)) summed over the last axis, float64 numpy."""
    mq, lq, mp, lp = (np.asarray(a, np.float64) for a in (mean_q, log_var_q, mean_p, log_var_p))
    per_dim = lp - lq + (np.exp(lq) + (mq - mp) ** 2) / np.exp(lp) - 1.0
    return 0.5 * np.sum(per_dim, axis=-1)


def _log_sigma_mistakes(kl, args, var_indices):
    """Outputs of ``kl`` when log-variances are mistaken for log standard deviations.

    ``kl(*args)`` is the correct KL; ``var_indices`` says which arguments are log-variances
    (one for KL(q || N(0, I)), two for KL(q || p)). Three common variants:

    1. log_var read as log sigma: sigma^2 = exp(2 log_var) and log sigma^2 = 2 log_var,
       i.e. the correct formula at doubled log-variances;
    2. the log term uses log sigma = log_var / 2 instead of log sigma^2 = log_var: the log
       term log(sigma_p^2 / sigma_q^2) = lp - lq is halved;
    3. sigma = exp(log_var / 2) used where sigma^2 = exp(log_var) belongs in the variance
       term sigma_q^2 / sigma_p^2.
    """
    m = [np.asarray(a, np.float64) for a in args]
    doubled = list(m)
    for i in var_indices:
        doubled[i] = 2.0 * m[i]
    lq = m[var_indices[0]]
    lp = m[var_indices[1]] if len(var_indices) > 1 else np.zeros_like(lq)
    correct = kl(*m)
    return [
        kl(*doubled),
        correct - 0.5 * np.sum(0.5 * (lp - lq), axis=-1),
        correct + 0.5 * np.sum((np.exp(lq / 2) - np.exp(lq)) * np.exp(-lp), axis=-1),
    ]


_LOG_SIGMA_HINT = (
    "you seem to mix up log sigma and log sigma^2. The argument log_var IS log sigma^2, so "
    "sigma^2 = exp(log_var) and log sigma = log_var / 2. In the form "
    "1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) the log term is log_var itself; in "
    "notebook 02's form log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) "
    "- 1/2 it is (log_var_p - log_var_q) / 2. Halve it once: not twice, not never."
)


def _mean_dims_hint(d: int, what: str = "KL") -> str:
    return (
        f"for a {d}-dimensional latent your {what} is 1/{d} of the correct value: you "
        "averaged over the latent dimensions. The KL between distributions with "
        "independent dimensions is the SUM of the per-dimension KLs: sum over the last "
        "axis, do not take the mean."
    )


def _half_hint(what: str = "KL") -> str:
    return f"your {what} is twice the correct value: the factor 1/2 in front of the sum is missing."


def check_kl_diag(student_fn) -> CheckResult:
    r"""Checks ``student_fn(mean, log_var) -> KL(N(mean, diag exp(log_var)) || N(0, I))``.

    The student's function must return, for inputs of shape (..., d), the closed form

        KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2),   sigma_j^2 = exp(log_var_j)

    of shape (...), agree with :func:`vae_edu.kl.kl_diag_gaussians` on seeded random
    inputs, stay finite for log-variances in [-30, 30], and be differentiable by jax.grad
    (dKL/dmu = mu, dKL/dlog_var = (sigma^2 - 1) / 2).
    """
    return run_check(
        "check_kl_diag",
        (_kl_diag_values, _kl_diag_extremes, _kl_diag_gradients),
        student_fn,
        "correct: known values, random inputs, batch shapes, extreme log-variances "
        "and gradients all agree with the reference.",
    )


_KL_DIAG_CALL = "kl(mean, log_var)"
_KL_DIAG_CASES = [  # (description, (mu, log_var), exact KL by hand)
    ("mu=0, sigma=1", (0.0, 0.0), 0.0),
    ("mu=2, sigma=1", (2.0, 0.0), 2.0),
    ("mu=0, sigma^2=e^2 (log_var=2)", (0.0, 2.0), 0.5 * (math.exp(2.0) - 3.0)),
    ("mu=-1, sigma^2=e^-2 (log_var=-2)", (-1.0, -2.0), 0.5 * (1.0 + math.exp(-2.0) + 1.0)),
]


def _kl_diag_inputs():
    """A random batch drawn from the run's secret: (mean, log_var), each of shape (5, 3)."""
    rng = hidden_rng(0)
    mean = rng.normal(0.0, 1.5, size=(5, 3))
    log_var = rng.uniform(-2.0, 2.0, size=(5, 3))
    return mean, log_var


def _kl_diag_values(fn) -> list[str]:
    """Step 1: shape, hand values and the reference on a random batch; names the mistake."""
    mean, log_var = _kl_diag_inputs()
    batch, dim = mean.shape
    got = as_array(call_student(fn, f32(mean), f32(log_var), call=_KL_DIAG_CALL), "your KL")
    check_event_shape(got, batch, dim, "KL")
    reference = np.asarray(kl_diag_gaussians(f32(mean), f32(log_var)), np.float64)
    values, mismatches = compare_known(
        fn, _KL_DIAG_CASES, lambda a: (f32([a[0]]), f32([a[1]])), _KL_DIAG_CALL, "your KL"
    )
    if not mismatches and close(got, reference):
        return []
    return _kl_problems(
        _KL_DIAG_CASES,
        values,
        mismatches,
        got,
        reference,
        sign_hint=_SIGN_HINT,
        formula=_KL_FORMULA,
        mistakes=[
            (-reference, _SIGN_HINT),
            (2.0 * reference, _half_hint()),
            (reference / dim, _mean_dims_hint(dim)),
            *(
                (m, _LOG_SIGMA_HINT)
                for m in _log_sigma_mistakes(kl_standard_normal_by_hand, (mean, log_var), (1,))
            ),
            (
                kl_standard_normal_by_hand(mean, log_var) + 0.5 * dim,
                ("your KL is not 0 for q = N(0, I): the -1 in each dimension is missing."),
            ),
        ],
        describe_input=f"mean={fmt(mean[0])}, log_var={fmt(log_var[0])}",
    )


def _kl_diag_extremes(fn) -> list[str]:
    """Step 2: extreme but legal log-variances and large means stay finite and accurate."""
    extreme_mean = np.array([[0.0, 10.0, -10.0], [1.0, 0.0, 3.0]])
    extreme_log_var = np.array([[-30.0, 30.0, 0.0], [30.0, -30.0, -5.0]])
    got = as_array(
        call_student(fn, f32(extreme_mean), f32(extreme_log_var), call=_KL_DIAG_CALL), "your KL"
    )
    expected = kl_standard_normal_by_hand(extreme_mean, extreme_log_var)
    if close(got, expected, rtol=1e-4, atol=1e-3):
        return []
    return [
        f"for log-variances at the edges of the legal range "
        f"(log_var={fmt(extreme_log_var[0])}) your KL is {fmt(got)}, expected "
        f"{fmt(expected)}: use exp(log_var) for sigma^2 and log_var for log sigma^2 "
        "directly, without taking log(exp(...))."
    ]


def _kl_diag_gradients(fn) -> list[str]:
    """Step 3: dKL/dmu = mu and dKL/dlog_var = (exp(log_var) - 1) / 2 through jax.grad."""
    mean, log_var = _kl_diag_inputs()
    grad_mean = gradient(fn, (f32(mean), f32(log_var)), 0, "your KL")
    grad_log_var = gradient(fn, (f32(mean), f32(log_var)), 1, "your KL")
    if close(grad_mean, mean, rtol=1e-3, atol=1e-3) and close(
        grad_log_var, 0.5 * (np.exp(log_var) - 1.0), rtol=1e-3, atol=1e-3
    ):
        return []
    return [
        "your KL has the right values but the wrong gradients (expected "
        "dKL/dmu = mu and dKL/dlog_var = (exp(log_var) - 1) / 2): do not use "
        "jax.lax.stop_gradient or numpy inside it."
    ]


def _kl_problems(
    cases, values, mismatches, got, reference, *, mistakes, sign_hint, formula, describe_input
):
    """Feedback for a wrong KL: the first wrong known value, and the mistake it matches.

    ``mistakes`` are (output, message) pairs, the sign mistake among them; a negative KL
    that matches no other known mistake gets the sign message.
    """
    problems = []
    hint = diagnose(got, mistakes)
    negative = negative_case(cases, values)
    if negative is None and np.any(got < -ATOL):
        negative = describe_input
    if negative is not None and hint in (None, sign_hint):
        problems.append(f"your KL is negative for {negative}: " + sign_hint)
        hint = None
    if mismatches:
        description, value, expected = mismatches[0]
        problems.append(
            f"for {description} your KL is {value:.4f} but it should be {expected:.4f}."
        )
    elif not close(got, reference):
        problems.append(
            f"on random inputs your KL differs from the reference: for "
            f"{describe_input} you return {fmt(got[0])}, expected "
            f"{fmt(reference[0])}."
        )
    if hint is not None and hint != sign_hint:
        problems.append(hint)
    elif hint is None and negative is None:
        problems.append("Compare your code with " + formula + " term by term.")
    return problems


# ------------------------------------------------- KL(q || p) between two diagonal Gaussians

_KL_TWO_FORMULA = (
    "KL(q || p) = 1/2 sum_j [ log(sigma_p,j^2 / sigma_q,j^2) + (sigma_q,j^2 "
    "+ (mu_q,j - mu_p,j)^2) / sigma_p,j^2 - 1 ]"
)


def check_kl_two_gaussians(student_fn) -> CheckResult:
    r"""Checks ``student_fn(mean_q, log_var_q, mean_p, log_var_p) -> KL(q || p)``.

    For q = N(mu_q, diag sigma_q^2), p = N(mu_p, diag sigma_p^2), inputs of shape (..., d):

        KL(q || p) = 1/2 sum_j [ log(sigma_p^2 / sigma_q^2)
                                 + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1 ],

    of shape (...). Compared with hand values (including an asymmetric pair, where
    KL(q || p) != KL(p || q)), with :func:`vae_edu.kl.kl_diag_gaussians` on seeded random
    inputs, with the standard-normal special case, and through jax.grad.
    """
    # a student's kl_two_gaussians may call their kl_standard_normal: the grader's is used
    student_fn = with_reference_names(student_fn, kl_standard_normal=KL_STANDARD_NORMAL_CODE)
    return run_check(
        "check_kl_two_gaussians",
        (
            _kl_two_values,
            _kl_two_standard_case,
            _kl_two_extremes,
            _kl_two_gradient,
        ),
        student_fn,
        "correct: known values (including the asymmetric pair), random inputs, the "
        "standard-normal special case, extreme log-variances and gradients.",
    )


_KL_TWO_CALL = "kl(mean_q, log_var_q, mean_p, log_var_p)"
_LOG4 = math.log(4.0)
_KL_TWO_CASES = [  # (description, (mu_q, log_var_q, mu_p, log_var_p), exact KL by hand)
    ("q = p = N(1, e)", (1.0, 1.0, 1.0, 1.0), 0.0),
    ("q = N(1, 1), p = N(0, 1)", (1.0, 0.0, 0.0, 0.0), 0.5),
    ("q = N(0, 1), p = N(0, 4)", (0.0, 0.0, 0.0, _LOG4), 0.5 * (_LOG4 + 0.25 - 1.0)),
    ("q = N(0, 4), p = N(0, 1)", (0.0, _LOG4, 0.0, 0.0), 0.5 * (-_LOG4 + 4.0 - 1.0)),
    ("q = N(1, 1), p = N(-1, 4)", (1.0, 0.0, -1.0, _LOG4), 0.5 * (_LOG4 + 5.0 / 4.0 - 1.0)),
]
_KL_SWAP_HINT = (
    "you computed KL(p || q) instead of KL(q || p): the KL is not symmetric. In "
    "KL(q || p) the expectation is under q, so sigma_q^2 is in the numerator and "
    "sigma_p^2 in the denominator: " + _KL_TWO_FORMULA + "."
)
_KL_TWO_SIGN_HINT = (
    "a KL divergence is never negative, so check the sign of each term: " + _KL_TWO_FORMULA + "."
)


def _kl_two_inputs():
    """A random batch drawn from the run's secret: (mean_q, log_var_q, mean_p, log_var_p),
    each (5, 3), float64."""
    rng = hidden_rng(1)
    mq, mp = rng.normal(0.0, 1.5, size=(2, 5, 3))
    lq, lp = rng.uniform(-2.0, 2.0, size=(2, 5, 3))
    return mq, lq, mp, lp


def _kl_two_values(fn) -> list[str]:
    """Step 1: shape, hand values and the reference on a random batch; names the mistake."""
    mq, lq, mp, lp = _kl_two_inputs()
    batch, dim = mq.shape
    args = tuple(f32(a) for a in (mq, lq, mp, lp))
    got = as_array(call_student(fn, *args, call=_KL_TWO_CALL), "your KL")
    check_event_shape(got, batch, dim, "KL")
    reference = np.asarray(kl_diag_gaussians(*args), np.float64)
    values, mismatches = compare_known(
        fn, _KL_TWO_CASES, lambda a: tuple(f32([v]) for v in a), _KL_TWO_CALL, "your KL"
    )
    if not mismatches and close(got, reference):
        return []
    unscaled = _kl_two_hand(mq, lq, mp, lp) + 0.5 * np.sum(
        (mq - mp) ** 2 * (1.0 - np.exp(-lp)), axis=-1
    )
    return _kl_problems(
        _KL_TWO_CASES,
        values,
        mismatches,
        got,
        reference,
        sign_hint=_KL_TWO_SIGN_HINT,
        formula=_KL_TWO_FORMULA,
        mistakes=[
            (_kl_two_hand(mp, lp, mq, lq), _KL_SWAP_HINT),
            (-reference, _KL_TWO_SIGN_HINT),
            (2.0 * reference, _half_hint()),
            (reference / dim, _mean_dims_hint(dim)),
            *(
                (m, _LOG_SIGMA_HINT)
                for m in _log_sigma_mistakes(_kl_two_hand, (mq, lq, mp, lp), (1, 3))
            ),
            (
                unscaled,
                "the squared difference of the means must be divided by "
                "sigma_p^2 (it is (mu_q - mu_p)^2 / sigma_p^2).",
            ),
        ],
        describe_input=f"mean_q={fmt(mq[0])}, log_var_q={fmt(lq[0])}, "
        f"mean_p={fmt(mp[0])}, log_var_p={fmt(lp[0])}",
    )


def _kl_two_standard_case(fn) -> list[str]:
    """Step 2: with p = N(0, I) the KL reduces to KL(q || N(0, I))."""
    mq, lq, _, _ = _kl_two_inputs()
    zeros = f32(np.zeros(mq.shape))
    standard = as_array(
        call_student(fn, f32(mq), f32(lq), zeros, zeros, call=_KL_TWO_CALL), "your KL"
    )
    if close(standard, kl_standard_normal_by_hand(mq, lq)):
        return []
    return [
        "with p = N(0, I) (mean_p = 0, log_var_p = 0) your KL does not reduce to "
        f"the standard-normal case: {fmt(standard)} instead of "
        f"{fmt(kl_standard_normal_by_hand(mq, lq))}."
    ]


def _kl_two_extremes(fn) -> list[str]:
    """Step 3: extreme log-variances stay finite. +-30 (where exp of either log-variance is
    still a float32 number), and log_var_q = -88.5, log_var_p = -87.5 with equal means, where
    exp(-88.5) and exp(-87.5) are both flushed to 0 in float32 (below e^-87.34), so
    exp(log_var_q) / exp(log_var_p) is 0 / 0, although the ratio sigma_q^2 / sigma_p^2 =
    e^-1 is not: KL = (e^-1 - 1 + 1) / 2 = 0.1839 there."""
    rows = ([[0.0, 5.0, 0.3]], [[-30.0, 30.0, -88.5]], [[1.0, 0.0, 0.3]], [[30.0, -30.0, -87.5]])
    extreme = tuple(f32(a) for a in rows)
    got = as_array(call_student(fn, *extreme, call=_KL_TWO_CALL), "your KL")
    expected = _kl_two_hand(*extreme)
    if close(got, expected, rtol=1e-4, atol=1e-3):
        return []
    return [
        f"for (log_var_q, log_var_p) = (-30, 30), (30, -30) and (-88.5, -87.5) in three "
        f"dimensions your KL is {fmt(got)}, expected {fmt(expected)}: compute "
        "sigma_q^2 / sigma_p^2 as exp(log_var_q - log_var_p). In float32 exp of a "
        "log-variance alone overflows to inf above 88.7 and is flushed to 0 below -87.3, "
        "so exp(log_var_q) / exp(log_var_p) is 0 / 0 = NaN at (-88.5, -87.5), while "
        "exp(-88.5 - (-87.5)) = e^-1."
    ]


def _kl_two_gradient(fn) -> list[str]:
    """Step 4: dKL/dmu_q = (mu_q - mu_p) / sigma_p^2 through jax.grad."""
    mq, lq, mp, lp = _kl_two_inputs()
    args = tuple(f32(a) for a in (mq, lq, mp, lp))
    grad_mq = gradient(fn, args, 0, "your KL")
    if close(grad_mq, (mq - mp) * np.exp(-lp), rtol=1e-3, atol=1e-3):
        return []
    return [
        "your KL has the right values but the wrong gradient with respect to mean_q "
        "(expected (mu_q - mu_p) / sigma_p^2): do not use stop_gradient or numpy."
    ]


# ------------------------------------------------- Monte Carlo KL with its standard error


def _unpack_estimate(out) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std_error) from a pair, a :class:`vae_edu.estimate.Estimate` (a NamedTuple),
    or an object with ``std_error`` and ``mean`` (or ``estimate``) attributes."""
    if out is None:
        raise Stop("your function returned None: did you forget the `return` statement?")
    if not isinstance(out, tuple) and hasattr(out, "std_error"):
        value = out.estimate if hasattr(out, "estimate") else getattr(out, "mean", None)
        estimate, std_error = value, out.std_error
    else:
        try:
            estimate, std_error = out
        except (TypeError, ValueError):
            raise Stop(
                "return two things, (estimate, std_error), e.g. "
                "`return estimate, std_error`; got a "
                f"{type(out).__name__}."
            ) from None
    return (
        as_array(estimate, "the estimate of your function"),
        as_array(std_error, "the std_error of your function"),
    )


def check_kl_monte_carlo(student_fn) -> CheckResult:
    r"""Checks ``student_fn(samples_q, log_q, log_p) -> (estimate, std_error)``.

    With draws z_1..z_n ~ q (leading axis of ``samples_q``) and log-ratios
    r_i = log q(z_i) - log p(z_i):

        estimate  = (1/n) sum_i r_i                    (unbiased for KL(q || p))
        std_error = s / sqrt(n),   s^2 = sample variance of the r_i

    (either n or n - 1 in the sample variance is accepted). The pair may be a tuple or a
    :class:`vae_edu.estimate.Estimate` ``(mean, std_error)``, what
    :func:`vae_edu.kl.kl_monte_carlo` returns. Checked on four log-ratios a student can
    average by hand, against :func:`vae_edu.kl.kl_monte_carlo` on 20,000 draws from a 2-D
    Gaussian, and against the exact KL (within 5 standard errors).

    Args:
      student_fn: the student's function; ``log_q`` and ``log_p`` are callables mapping
        the (n, ...) samples to (n,) log-densities.

    Returns:
      A :class:`CheckResult`.
    """
    return run_check(
        "check_kl_monte_carlo",
        (_kl_mc_hand_values, _kl_mc_gaussian),
        student_fn,
        "correct: the hand-checkable average and standard error, and agreement with "
        "the exact KL within 5 standard errors on 20,000 draws.",
    )


_KL_MC_CALL = "kl_monte_carlo(samples_q, log_q, log_p)"
# Hand-checkable: log-ratios 0, 1, 2, 3 -> mean 1.5, s = 1.2910 (n - 1) or 1.1180 (n).
_HAND_RATIOS = np.array([0.0, 1.0, 2.0, 3.0])
_HAND_WHERE = (
    "for the 4 log-ratios log q - log p = 0, 1, 2, 3 (their average is 1.5000, "
    "their standard error 1.2910 / 2 = 0.6455)"
)


def _kl_mc_hand_values(fn) -> list[str]:
    """Step 1: the estimate and standard error of four log-ratios, by hand."""
    ratios = _HAND_RATIOS
    est, se = _unpack_estimate(
        call_student(
            fn,
            f32(ratios),
            KernelFunction("def f(z):\n    return z"),
            KernelFunction("def f(z):\n    return jnp.zeros_like(z)"),
            call=_KL_MC_CALL,
        )
    )
    est = scalar(est, "your estimate")
    se = scalar(se, "your std_error")
    problems = []
    estimate_problem = _hand_estimate_problem(est, ratios)
    if estimate_problem:
        problems.append(estimate_problem)
    n = ratios.size
    s1, s0 = np.std(ratios, ddof=1), np.std(ratios, ddof=0)
    if not any(math.isclose(se, s / math.sqrt(n), rel_tol=1e-3) for s in (s1, s0)):
        problems.append(
            f"your std_error is {se:.4f} {_HAND_WHERE}; it should be 0.6455 (or "
            "0.5590 with n instead of n - 1 in the sample variance). "
            + (_std_error_hint(se, (s1, s0), n) or "The standard error is s / sqrt(n).")
        )
    return problems


def _hand_estimate_problem(est: float, ratios: np.ndarray) -> str | None:
    """What is wrong with the estimate of the hand-checkable ratios, or None."""
    if math.isclose(est, 1.5, abs_tol=ATOL):
        return None
    if math.isclose(est, ratios.sum(), abs_tol=ATOL):
        return (
            f"your estimate is n times too large {_HAND_WHERE}: you return "
            f"{est:.4f}, the SUM. A Monte Carlo estimate is an average: "
            "divide the sum by n (use the mean)."
        )
    if math.isclose(est, -1.5, abs_tol=ATOL):
        return (
            f"your estimate is negative ({est:.4f}) {_HAND_WHERE}: you averaged "
            "log p - log q. KL(q || p) = E_q[log q(z) - log p(z)]."
        )
    return f"your estimate is {est:.4f} {_HAND_WHERE}; it should be 1.5000."


def _std_error_hint(se: float, deviations, n: int) -> str | None:
    """Names a standard error that is s / n, s, s^2 / n or s^2 (for either ddof), or None."""
    for s in deviations:
        for value, message in (
            (
                s / n,
                "Your standard error shrinks like 1/n: it is s / sqrt(n), the "
                "sample standard deviation s divided by the SQUARE ROOT of n.",
            ),
            (
                s,
                "You returned the standard deviation s of the log-ratios, not the "
                "standard error of their mean: divide by sqrt(n).",
            ),
            (
                s**2 / n,
                "You used the variance s^2 where the standard deviation s "
                "belongs: the standard error is sqrt(s^2 / n) = s / sqrt(n).",
            ),
            (
                s**2,
                "You returned the variance of the log-ratios: the standard "
                "error is s / sqrt(n) with s the standard deviation.",
            ),
        ):
            if math.isclose(se, value, rel_tol=1e-3):
                return message
    return None


def _kl_mc_gaussian(fn) -> list[str]:
    """Step 2: a real Monte Carlo problem, q = N((1, -0.5), diag(0.25, 1.5)), p = N(0, I):
    the reference's average and standard error on the same 20,000 draws."""
    mean_q = np.array([1.0, -0.5])
    log_var_q = np.log(np.array([0.25, 1.5]))
    num_samples = 20_000
    eps = jax.random.normal(hidden_key(2), (num_samples, 2))
    samples = f32(mean_q) + jnp.exp(0.5 * f32(log_var_q)) * eps

    # Given as code, so that the grader can send them to the student's kernel.
    log_q = KernelFunction(
        "from vae_edu.elbo import diag_gaussian_log_density\n"
        "def f(z):\n    return diag_gaussian_log_density(z, m, v)",
        m=f32(mean_q),
        v=f32(log_var_q),
    )
    log_p = KernelFunction(
        "from vae_edu.elbo import diag_gaussian_log_density\n"
        "def f(z):\n    return diag_gaussian_log_density(z, 0.0, 0.0)"
    )

    est, se = _unpack_estimate(call_student(fn, samples, log_q, log_p, call=_KL_MC_CALL))
    est, se = scalar(est, "your estimate"), scalar(se, "your std_error")
    ref_est, ref_se = (float(v) for v in kl_monte_carlo(samples, log_q, log_p))
    exact = float(kl_diag_gaussians(f32(mean_q), f32(log_var_q)))
    if not math.isclose(est, ref_est, rel_tol=1e-4, abs_tol=1e-4):
        return [
            f"with {num_samples} samples from q = N((1, -0.5), diag(0.25, 1.5)) and "
            f"p = N(0, I) your estimate is {est:.4f}, but the average of log q - log p "
            f"over those samples is {ref_est:.4f} (the exact KL is {exact:.4f})."
        ]
    if not math.isclose(se, ref_se, rel_tol=1e-2):
        return [
            f"with {num_samples} samples your std_error is {se:.5f}, expected "
            f"{ref_se:.5f} (s / sqrt(n))."
        ]
    if abs(est - exact) > NUM_SE * ref_se:  # pragma: no cover - guards the reference
        return [
            f"your estimate {est:.4f} is more than {NUM_SE:g} standard errors from "
            f"the exact KL {exact:.4f}."
        ]
    return []
