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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "A3_LOSS_CODE",
    "CheckResult",
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

# Float32 student code against float64 hand values: this is the agreement we ask for.
_RTOL = 1e-4
_ATOL = 1e-4
# A known mistake "matches" if the student's output agrees with it this closely.
_MISTAKE_RTOL = 1e-3
_MISTAKE_ATOL = 1e-3
# Monte Carlo comparisons: |estimate - exact| < _NUM_SE standard errors.
_NUM_SE = 5.0


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
      name: which check produced it, e.g. "check_kl_diag".
      passed: True if the student's function passed every test of the check.
      messages: what was found, one sentence or short paragraph each; on failure the
        first message is the most useful one to read.
    """

    name: str
    passed: bool
    messages: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.passed

    @property
    def feedback(self) -> str:
        """The messages as one readable block, headed by the check's name and verdict."""
        verdict = "passed" if self.passed else "failed"
        return "\n".join([f"{self.name}: {verdict}", *(f"- {m}" for m in self.messages)])

    def __str__(self) -> str:
        return self.feedback


def diagnosis(check: Callable, student_fn) -> str:
    """For a visible test's failure message: the check's named diagnosis, as extra lines.

    ``assert ok, f"... yours is {value}" + diagnosis(check_kl_diag, kl_standard_normal)``
    runs the check only when the assert fails. Empty if the check passes or cannot run.
    """
    try:
        result = check(student_fn)
    except Exception:  # noqa: BLE001 - a visible hint must never mask the assert
        return ""
    return "" if result.passed else "\n" + result.feedback


class KernelFunction:
    """A function a check passes to the student's function (e.g. ``log_q``), given as code.

    ``code`` defines ``f``; ``env`` holds the arrays and numbers it uses. Called in the
    grader's process it runs there; the grader's channel sends it to a student's kernel as
    code, where it is rebuilt (see :mod:`vae_edu.assignments._channel`).
    """

    def __init__(self, code: str, **env):
        self.code = code
        self.env = env
        self._fn = None

    def __call__(self, *args):
        if self._fn is None:
            namespace = {"jax": jax, "jnp": jnp, "np": np, **self.env}
            exec(self.code, namespace)  # noqa: S102 - the check's own code
            self._fn = namespace["f"]
        return self._fn(*args)


class _Stop(Exception):
    """Ends a check early; its single argument is the message for the student."""


def _run(
    name: str, body: Callable, student_fn, success: str, *, needs_function: bool = True
) -> CheckResult:
    """Runs ``body(student_fn)`` -> list of problems, turning every failure into a result."""
    if needs_function and not callable(student_fn):
        return CheckResult(
            name,
            False,
            (
                f"expected a function, got {type(student_fn).__name__}: pass the function "
                "itself (without calling it).",
            ),
        )
    try:
        problems = list(body(student_fn))
    except _Stop as stop:
        problems = [str(stop.args[0])]
    except Exception as err:  # noqa: BLE001 - a check must never crash on odd student output
        problems = [
            f"the checker could not evaluate your function: "
            f"{type(err).__name__}: {_first_line(err)}"
        ]
    if problems:
        return CheckResult(name, False, tuple(_capitalized(p) for p in problems))
    return CheckResult(name, True, (success,))


# --------------------------------------------------------------------------- helpers


def _capitalized(text: str) -> str:
    """Capitalizes a message, unless it starts with a name (``class_means``, ``f(x)``)."""
    first = text.split(" ", 1)[0]
    if "_" in first or "(" in first or "`" in first:
        return text
    return text[:1].upper() + text[1:]


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _call(fn, *args, call: str):
    """Calls the student's function; any exception becomes a readable _Stop."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise _Stop(
            "not implemented yet: your function raises NotImplementedError. "
            "Replace the line `raise NotImplementedError()` with your code."
        ) from None
    except Exception as err:  # noqa: BLE001 - reported to the student, not re-raised
        raise _Stop(
            f"your function raised {type(err).__name__}: {_first_line(err)} (called as {call})."
        ) from None


def _as_array(out, what: str) -> np.ndarray:
    if out is None:
        raise _Stop(f"{what} returned None: did you forget the `return` statement?")
    try:
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _Stop(
            f"{what} returned a {getattr(out, 'type_name', type(out).__name__)}, not an array "
            f"of numbers ({_first_line(err)})."
        ) from None


def _fmt(x) -> str:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return f"{float(x):.4f}"
    return np.array2string(x, precision=4, separator=", ", suppress_small=True)


def _close(a, b, rtol=_RTOL, atol=_ATOL) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (
        a.shape == b.shape
        and bool(np.all(np.isfinite(a)))
        and np.allclose(a, b, rtol=rtol, atol=atol)
    )


def _scalar(arr: np.ndarray, what: str) -> float:
    if arr.size != 1:
        raise _Stop(f"{what} should be a single number but has shape {arr.shape}.")
    return float(arr.reshape(()))


def _expect_finite(arr: np.ndarray, what: str, hint: str = "") -> None:
    if not np.all(np.isfinite(arr)):
        raise _Stop(f"{what} contains inf or NaN: {_fmt(arr)}. {hint}".strip())


def _diagnose(values: np.ndarray, mistakes: Sequence[tuple[np.ndarray, str]]) -> str | None:
    """The message of the first known mistake whose output the student reproduces."""
    for expected, message in mistakes:
        expected = np.asarray(expected, np.float64)
        if values.shape == expected.shape and np.allclose(
            values, expected, rtol=_MISTAKE_RTOL, atol=_MISTAKE_ATOL
        ):
            return message
    return None


def _gradient(fn, args, argnum: int, what: str):
    """d/d args[argnum] of sum(fn(*args)), or a _Stop explaining why it cannot be taken."""

    def total(*a):
        return jnp.sum(jnp.asarray(fn(*a)))

    try:
        if hasattr(fn, "grad"):  # the grader's proxy: jax.grad runs in the student's kernel
            grad = fn.grad(args, argnum)
        else:
            grad = jax.grad(total, argnums=argnum)(*args)
    except NotImplementedError:
        raise _Stop("not implemented yet: your function raises NotImplementedError.") from None
    except Exception as err:  # noqa: BLE001
        raise _Stop(
            f"{what} cannot be differentiated by jax.grad ({type(err).__name__}: "
            f"{_first_line(err)}). "
            "Training a VAE needs gradients through it: use jax.numpy (jnp) and jax.random, "
            "not numpy, math or Python floats, inside your function."
        ) from None
    return np.asarray(grad, np.float64)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(x) -> jax.Array:
    return jnp.asarray(np.asarray(x, np.float64), dtype=jnp.float32)


# ------------------------------------------------- KL(q || N(0, I)), closed form

_KL_FORMULA = "KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)"

_SIGN_HINT = (
    "a KL divergence is never negative, so check the sign. " + _KL_FORMULA + "; the "
    "expression 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2) is MINUS the KL (it is "
    "the term the ELBO adds)."
)


def _kl_std_hand(mean, log_var):
    """1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2) in float64 (numpy), the hand formula."""
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)


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


def _check_event_shape(arr: np.ndarray, batch: int, dim: int, what: str) -> None:
    """The output of a 'sum over the last axis' function on a (batch, dim) input."""
    if arr.shape == (batch,):
        return
    if arr.shape == (batch, dim):
        raise _Stop(
            f"for inputs of shape ({batch}, {dim}) your {what} has shape "
            f"{arr.shape}, one value per dimension; return one value per example, "
            f"shape ({batch},): sum over the last axis (axis=-1)."
        )
    if arr.shape == ():
        raise _Stop(
            f"for a batch of {batch} examples (inputs of shape ({batch}, {dim})) your "
            f"{what} is a single number; return one value per example, shape "
            f"({batch},): sum over the last axis only (axis=-1), not over the batch."
        )
    raise _Stop(
        f"for inputs of shape ({batch}, {dim}) your {what} has shape {arr.shape}; "
        f"expected ({batch},), one value per example (sum over the last axis)."
    )


def _compare_known(fn, cases, make_args, call: str, what: str):
    """Evaluates the student's function on hand-checkable cases.

    Returns (values, mismatches) with mismatches a list of (description, got, expected).
    """
    values, mismatches = [], []
    for description, args, expected in cases:
        got = _scalar(
            _as_array(_call(fn, *make_args(args), call=call), what),
            f"{what} for 1-dimensional inputs",
        )
        values.append(got)
        if not (math.isfinite(got) and math.isclose(got, expected, rel_tol=_RTOL, abs_tol=_ATOL)):
            mismatches.append((description, got, expected))
    return values, mismatches


def _negative_case(cases, values) -> str | None:
    for (description, _, _), got in zip(cases, values, strict=True):
        if got < -_ATOL:
            return description
    return None


def check_kl_diag(student_fn) -> CheckResult:
    r"""Checks ``student_fn(mean, log_var) -> KL(N(mean, diag exp(log_var)) || N(0, I))``.

    The student's function must return, for inputs of shape (..., d), the closed form

        KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2),   sigma_j^2 = exp(log_var_j)

    of shape (...), agree with :func:`vae_edu.kl.kl_diag_gaussians` on seeded random
    inputs, stay finite for log-variances in [-30, 30], and be differentiable by jax.grad
    (dKL/dmu = mu, dKL/dlog_var = (sigma^2 - 1) / 2).

    Args:
      student_fn: the student's function.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.kl import kl_diag_gaussians

    cases = [  # (description, (mu, log_var), exact KL by hand)
        ("mu=0, sigma=1", (0.0, 0.0), 0.0),
        ("mu=2, sigma=1", (2.0, 0.0), 2.0),
        ("mu=0, sigma^2=e^2 (log_var=2)", (0.0, 2.0), 0.5 * (math.exp(2.0) - 3.0)),
        ("mu=-1, sigma^2=e^-2 (log_var=-2)", (-1.0, -2.0), 0.5 * (1.0 + math.exp(-2.0) + 1.0)),
    ]
    call = "kl(mean, log_var)"

    def body(fn):
        rng = _rng(0)
        batch, dim = 5, 3
        mean = rng.normal(0.0, 1.5, size=(batch, dim))
        log_var = rng.uniform(-2.0, 2.0, size=(batch, dim))
        got = _as_array(_call(fn, _f32(mean), _f32(log_var), call=call), "your KL")
        _check_event_shape(got, batch, dim, "KL")
        reference = np.asarray(kl_diag_gaussians(_f32(mean), _f32(log_var)), np.float64)
        values, mismatches = _compare_known(
            fn, cases, lambda a: (_f32([a[0]]), _f32([a[1]])), call, "your KL"
        )
        if mismatches or not _close(got, reference):
            return _kl_problems(
                cases,
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
                        for m in _log_sigma_mistakes(_kl_std_hand, (mean, log_var), (1,))
                    ),
                    (
                        _kl_std_hand(mean, log_var) + 0.5 * dim,
                        ("your KL is not 0 for q = N(0, I): the -1 in each dimension is missing."),
                    ),
                ],
                describe_input=f"mean={_fmt(mean[0])}, log_var={_fmt(log_var[0])}",
            )
        # Extreme but legal log-variances and large means must stay finite and accurate.
        extreme_mean = np.array([[0.0, 10.0, -10.0], [1.0, 0.0, 3.0]])
        extreme_log_var = np.array([[-30.0, 30.0, 0.0], [30.0, -30.0, -5.0]])
        got = _as_array(_call(fn, _f32(extreme_mean), _f32(extreme_log_var), call=call), "your KL")
        expected = _kl_std_hand(extreme_mean, extreme_log_var)
        if not _close(got, expected, rtol=1e-4, atol=1e-3):
            return [
                f"for log-variances at the edges of the legal range "
                f"(log_var={_fmt(extreme_log_var[0])}) your KL is {_fmt(got)}, expected "
                f"{_fmt(expected)}: use exp(log_var) for sigma^2 and log_var for log sigma^2 "
                "directly, without taking log(exp(...))."
            ]
        grad_mean = _gradient(fn, (_f32(mean), _f32(log_var)), 0, "your KL")
        grad_log_var = _gradient(fn, (_f32(mean), _f32(log_var)), 1, "your KL")
        if not (
            _close(grad_mean, mean, rtol=1e-3, atol=1e-3)
            and _close(grad_log_var, 0.5 * (np.exp(log_var) - 1.0), rtol=1e-3, atol=1e-3)
        ):
            return [
                "your KL has the right values but the wrong gradients (expected "
                "dKL/dmu = mu and dKL/dlog_var = (exp(log_var) - 1) / 2): do not use "
                "jax.lax.stop_gradient or numpy inside it."
            ]
        return []

    return _run(
        "check_kl_diag",
        body,
        student_fn,
        "correct: known values, random inputs, batch shapes, extreme log-variances "
        "and gradients all agree with the reference.",
    )


def _kl_problems(
    cases, values, mismatches, got, reference, *, mistakes, sign_hint, formula, describe_input
):
    """Feedback for a wrong KL: the first wrong known value, and the mistake it matches.

    ``mistakes`` are (output, message) pairs, the sign mistake among them; a negative KL
    that matches no other known mistake gets the sign message.
    """
    problems = []
    hint = _diagnose(got, mistakes)
    negative = _negative_case(cases, values)
    if negative is None and np.any(got < -_ATOL):
        negative = describe_input
    if negative is not None and hint in (None, sign_hint):
        problems.append(f"your KL is negative for {negative}: " + sign_hint)
        hint = None
    if mismatches:
        description, value, expected = mismatches[0]
        problems.append(
            f"for {description} your KL is {value:.4f} but it should be {expected:.4f}."
        )
    elif not _close(got, reference):
        problems.append(
            f"on random inputs your KL differs from the reference: for "
            f"{describe_input} you return {_fmt(got[0])}, expected "
            f"{_fmt(reference[0])}."
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

    Args:
      student_fn: the student's function.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.kl import kl_diag_gaussians

    log4 = math.log(4.0)
    cases = [  # (description, (mu_q, log_var_q, mu_p, log_var_p), exact KL by hand)
        ("q = p = N(1, e)", (1.0, 1.0, 1.0, 1.0), 0.0),
        ("q = N(1, 1), p = N(0, 1)", (1.0, 0.0, 0.0, 0.0), 0.5),
        ("q = N(0, 1), p = N(0, 4)", (0.0, 0.0, 0.0, log4), 0.5 * (log4 + 0.25 - 1.0)),
        ("q = N(0, 4), p = N(0, 1)", (0.0, log4, 0.0, 0.0), 0.5 * (-log4 + 4.0 - 1.0)),
        ("q = N(1, 1), p = N(-1, 4)", (1.0, 0.0, -1.0, log4), 0.5 * (log4 + 5.0 / 4.0 - 1.0)),
    ]
    call = "kl(mean_q, log_var_q, mean_p, log_var_p)"

    def body(fn):
        rng = _rng(1)
        batch, dim = 5, 3
        mq, mp = rng.normal(0.0, 1.5, size=(2, batch, dim))
        lq, lp = rng.uniform(-2.0, 2.0, size=(2, batch, dim))
        args = tuple(_f32(a) for a in (mq, lq, mp, lp))
        got = _as_array(_call(fn, *args, call=call), "your KL")
        _check_event_shape(got, batch, dim, "KL")
        reference = np.asarray(kl_diag_gaussians(*args), np.float64)
        values, mismatches = _compare_known(
            fn, cases, lambda a: tuple(_f32([v]) for v in a), call, "your KL"
        )
        if mismatches or not _close(got, reference):
            swapped = _kl_two_hand(mp, lp, mq, lq)
            swap_hint = (
                "you computed KL(p || q) instead of KL(q || p): the KL is not symmetric. In "
                "KL(q || p) the expectation is under q, so sigma_q^2 is in the numerator and "
                "sigma_p^2 in the denominator: " + _KL_TWO_FORMULA + "."
            )
            unscaled = _kl_two_hand(mq, lq, mp, lp) + 0.5 * np.sum(
                (mq - mp) ** 2 * (1.0 - np.exp(-lp)), axis=-1
            )
            sign_hint = (
                "a KL divergence is never negative, so check the sign of each term: "
                + _KL_TWO_FORMULA
                + "."
            )
            return _kl_problems(
                cases,
                values,
                mismatches,
                got,
                reference,
                sign_hint=sign_hint,
                formula=_KL_TWO_FORMULA,
                mistakes=[
                    (swapped, swap_hint),
                    (-reference, sign_hint),
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
                describe_input=f"mean_q={_fmt(mq[0])}, log_var_q={_fmt(lq[0])}, "
                f"mean_p={_fmt(mp[0])}, log_var_p={_fmt(lp[0])}",
            )
        zeros = np.zeros((batch, dim))
        standard = _as_array(
            _call(fn, args[0], args[1], _f32(zeros), _f32(zeros), call=call), "your KL"
        )
        if not _close(standard, _kl_std_hand(mq, lq)):
            return [
                "with p = N(0, I) (mean_p = 0, log_var_p = 0) your KL does not reduce to "
                f"the standard-normal case: {_fmt(standard)} instead of "
                f"{_fmt(_kl_std_hand(mq, lq))}."
            ]
        extreme = tuple(
            _f32(a) for a in ([[0.0, 5.0]], [[-30.0, 30.0]], [[1.0, 0.0]], [[30.0, -30.0]])
        )
        got = _as_array(_call(fn, *extreme, call=call), "your KL")
        expected = _kl_two_hand(*extreme)
        if not _close(got, expected, rtol=1e-4, atol=1e-3):
            return [
                f"for log-variances at the edges of the legal range [-30, 30] your KL is "
                f"{_fmt(got)}, expected {_fmt(expected)}: compute sigma_q^2 / sigma_p^2 as "
                "exp(log_var_q - log_var_p) so that nothing overflows."
            ]
        grad_mq = _gradient(fn, args, 0, "your KL")
        if not _close(grad_mq, (mq - mp) * np.exp(-lp), rtol=1e-3, atol=1e-3):
            return [
                "your KL has the right values but the wrong gradient with respect to mean_q "
                "(expected (mu_q - mu_p) / sigma_p^2): do not use stop_gradient or numpy."
            ]
        return []

    return _run(
        "check_kl_two_gaussians",
        body,
        student_fn,
        "correct: known values (including the asymmetric pair), random inputs, the "
        "standard-normal special case, extreme log-variances and gradients.",
    )


# ------------------------------------------------- Monte Carlo KL with its standard error


def _unpack_estimate(out) -> tuple[np.ndarray, np.ndarray]:
    if out is None:
        raise _Stop("your function returned None: did you forget the `return` statement?")
    if hasattr(out, "estimate") and hasattr(out, "std_error"):
        estimate, std_error = out.estimate, out.std_error
    else:
        try:
            estimate, std_error = out
        except (TypeError, ValueError):
            raise _Stop(
                "return two things, (estimate, std_error), e.g. "
                "`return estimate, std_error`; got a "
                f"{type(out).__name__}."
            ) from None
    return (
        _as_array(estimate, "the estimate of your function"),
        _as_array(std_error, "the std_error of your function"),
    )


def check_kl_monte_carlo(student_fn) -> CheckResult:
    r"""Checks ``student_fn(samples_q, log_q, log_p) -> (estimate, std_error)``.

    With draws z_1..z_n ~ q (leading axis of ``samples_q``) and log-ratios
    r_i = log q(z_i) - log p(z_i):

        estimate  = (1/n) sum_i r_i                    (unbiased for KL(q || p))
        std_error = s / sqrt(n),   s^2 = sample variance of the r_i

    (either n or n - 1 in the sample variance is accepted). Checked on four log-ratios a
    student can average by hand, against :func:`vae_edu.kl.kl_monte_carlo` on 20,000 draws
    from a 2-D Gaussian, and against the exact KL (within 5 standard errors).

    Args:
      student_fn: the student's function; ``log_q`` and ``log_p`` are callables mapping
        the (n, ...) samples to (n,) log-densities.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.kl import kl_diag_gaussians, kl_monte_carlo

    call = "kl_monte_carlo(samples_q, log_q, log_p)"

    def body(fn):
        # Hand-checkable: log-ratios 0, 1, 2, 3 -> mean 1.5, s = 1.2910 (n - 1) or 1.1180 (n).
        ratios = np.array([0.0, 1.0, 2.0, 3.0])
        n = ratios.size
        est, se = _unpack_estimate(
            _call(
                fn,
                _f32(ratios),
                KernelFunction("def f(z):\n    return z"),
                KernelFunction("def f(z):\n    return jnp.zeros_like(z)"),
                call=call,
            )
        )
        est = _scalar(est, "your estimate")
        se = _scalar(se, "your std_error")
        s1, s0 = np.std(ratios, ddof=1), np.std(ratios, ddof=0)
        problems = []
        where = (
            "for the 4 log-ratios log q - log p = 0, 1, 2, 3 (their average is 1.5000, "
            "their standard error 1.2910 / 2 = 0.6455)"
        )
        if not math.isclose(est, 1.5, abs_tol=_ATOL):
            if math.isclose(est, ratios.sum(), abs_tol=_ATOL):
                problems.append(
                    f"your estimate is n times too large {where}: you return "
                    f"{est:.4f}, the SUM. A Monte Carlo estimate is an average: "
                    "divide the sum by n (use the mean)."
                )
            elif math.isclose(est, -1.5, abs_tol=_ATOL):
                problems.append(
                    f"your estimate is negative ({est:.4f}) {where}: you averaged "
                    "log p - log q. KL(q || p) = E_q[log q(z) - log p(z)]."
                )
            else:
                problems.append(f"your estimate is {est:.4f} {where}; it should be 1.5000.")
        if not any(math.isclose(se, s / math.sqrt(n), rel_tol=1e-3) for s in (s1, s0)):
            hint = None
            for s in (s1, s0):
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
                    if hint is None and math.isclose(se, value, rel_tol=1e-3):
                        hint = message
            problems.append(
                f"your std_error is {se:.4f} {where}; it should be 0.6455 (or "
                "0.5590 with n instead of n - 1 in the sample variance). "
                + (hint or "The standard error is s / sqrt(n).")
            )
        if problems:
            return problems

        # A real Monte Carlo problem: q = N((1, -0.5), diag(0.25, 1.5)), p = N(0, I).
        mean_q = np.array([1.0, -0.5])
        log_var_q = np.log(np.array([0.25, 1.5]))
        num_samples = 20_000
        eps = jax.random.normal(jax.random.key(2), (num_samples, 2))
        samples = _f32(mean_q) + jnp.exp(0.5 * _f32(log_var_q)) * eps

        # Given as code, so that the grader can send them to the student's kernel.
        log_q = KernelFunction(
            "from vae_edu.elbo import diag_gaussian_log_density\n"
            "def f(z):\n    return diag_gaussian_log_density(z, m, v)",
            m=_f32(mean_q),
            v=_f32(log_var_q),
        )
        log_p = KernelFunction(
            "from vae_edu.elbo import diag_gaussian_log_density\n"
            "def f(z):\n    return diag_gaussian_log_density(z, 0.0, 0.0)"
        )

        est, se = _unpack_estimate(_call(fn, samples, log_q, log_p, call=call))
        est, se = _scalar(est, "your estimate"), _scalar(se, "your std_error")
        reference = kl_monte_carlo(samples, log_q, log_p)
        ref_est, ref_se = float(reference.mean), float(reference.std_error)
        exact = float(kl_diag_gaussians(_f32(mean_q), _f32(log_var_q)))
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
        if abs(est - exact) > _NUM_SE * ref_se:  # pragma: no cover - guards the reference
            return [
                f"your estimate {est:.4f} is more than {_NUM_SE:g} standard errors from "
                f"the exact KL {exact:.4f}."
            ]
        return []

    return _run(
        "check_kl_monte_carlo",
        body,
        student_fn,
        "correct: the hand-checkable average and standard error, and agreement with "
        "the exact KL within 5 standard errors on 20,000 draws.",
    )


# ------------------------------------------------- reparameterized sampling

_REPARAM_HINT = (
    "no gradient reaches mu: dz/dmu should be 1 but yours is 0, so you sampled z without the "
    "reparameterization trick (for example through jax.lax.stop_gradient, or by drawing z "
    "directly as jax.random.normal(key) * sigma + stop_gradient(mu)). Write "
    "z = mu + sigma * eps with eps = jax.random.normal(key, mean.shape) drawn independently "
    "of mu and sigma, so that dz/dmu = 1 and dz/dsigma = eps."
)


def check_reparameterize(student_fn) -> CheckResult:
    r"""Checks ``student_fn(key, mean, log_var) -> z``, a reparameterized draw from q.

        z = mu + sigma * eps,   sigma = exp(log_var / 2),   eps ~ N(0, I)  (same shape as mu)

    Checked by Monte Carlo (20,000 draws: sample means and variances within 5 standard
    errors of mu and sigma^2), for independent noise per example, for reproducibility under
    a fixed key, for finite draws at log-variances of +-30, and for the gradients that make
    the trick worth doing: dz/dmu = 1 and dz/dlog_var = (z - mu) / 2.

    Args:
      student_fn: the student's function.

    Returns:
      A :class:`CheckResult`.
    """
    call = "reparameterize(key, mean, log_var)"

    def sample(fn, key, mean, log_var):
        z = _as_array(_call(fn, key, _f32(mean), _f32(log_var), call=call), "your sampler")
        if z.shape != np.shape(mean):
            raise _Stop(
                f"for mean and log_var of shape {np.shape(mean)} your z has shape "
                f"{z.shape}; z must have the shape of mean (one draw per entry): "
                "eps = jax.random.normal(key, mean.shape)."
            )
        return z

    def body(fn):
        mu, sigma2 = np.array([1.0, -2.0]), np.array([4.0, 0.25])
        num = 20_000
        mean = np.broadcast_to(mu, (num, 2))
        log_var = np.broadcast_to(np.log(sigma2), (num, 2))
        z = sample(fn, jax.random.key(3), mean, log_var)
        _expect_finite(z, "your samples")
        if np.allclose(z, mean, atol=1e-6):
            raise _Stop("your samples are exactly mu: the noise term sigma * eps is missing.")
        if np.allclose(z[0], z[1]) and np.allclose(z.std(axis=0), 0.0):
            raise _Stop(
                "every example received the same noise: draw eps with the shape of "
                "mean, jax.random.normal(key, mean.shape), so that each entry gets "
                "its own independent eps."
            )
        sample_mean, sample_var = z.mean(axis=0), z.var(axis=0, ddof=1)
        se_mean = np.sqrt(sigma2 / num)
        se_var = sigma2 * np.sqrt(2.0 / (num - 1))
        bad_var = np.abs(sample_var - sigma2) > _NUM_SE * se_var
        if np.any(bad_var):
            j = int(np.argmax(bad_var))
            where = (
                f"your samples have variance {sample_var[j]:.4f} in a dimension where "
                f"sigma^2 = exp(log_var) = {sigma2[j]:.4f}"
            )
            if np.allclose(sample_var, sigma2**2, rtol=0.05):
                return [
                    f"{where}, which is sigma^4: you scaled eps by sigma^2 = exp(log_var). "
                    "Scale it by the standard deviation sigma = exp(log_var / 2)."
                ]
            if np.allclose(sample_var, 1.0, rtol=0.05):
                return [
                    f"{where}: eps was not scaled at all. z = mu + sigma * eps with "
                    "sigma = exp(log_var / 2)."
                ]
            return [
                f"{where} (expected within {_NUM_SE:g} standard errors): z = mu + sigma * "
                "eps with sigma = exp(log_var / 2)."
            ]
        bad_mean = np.abs(sample_mean - mu) > _NUM_SE * se_mean
        if np.any(bad_mean):
            j = int(np.argmax(bad_mean))
            return [
                f"your samples have mean {sample_mean[j]:.4f} in a dimension where "
                f"mu = {mu[j]:.4f}: z = mu + sigma * eps (did you add mu?)."
            ]
        # The two latent dimensions must get independent noise: correlation ~ 0.
        eps = (z - mu) / np.sqrt(sigma2)
        corr = float(np.corrcoef(eps[:, 0], eps[:, 1])[0, 1])
        if abs(corr) > _NUM_SE / np.sqrt(num):
            return [
                f"the noise of the two latent dimensions is correlated (correlation "
                f"{corr:.3f} over {num} draws, expected 0): all dimensions of an example "
                "share one eps, as with noise of shape (B, 1). Draw eps with the shape of "
                "mean: jax.random.normal(key, mean.shape)."
            ]
        # ... and be Gaussian: 4.55% of standard normal draws lie beyond 2 (a uniform
        # noise of unit variance has none, a Laplace one 5.9%).
        beyond = float(np.mean(np.abs(eps) > 2.0))
        expected, se_beyond = 0.0455, np.sqrt(0.0455 * (1 - 0.0455) / eps.size)
        if abs(beyond - expected) > _NUM_SE * se_beyond:
            return [
                f"your noise is not Gaussian: {100 * beyond:.2f}% of the standardized draws "
                f"(z - mu) / sigma lie beyond 2, where a standard normal puts 4.55% (mean and "
                "variance alone do not make a Gaussian; uniform noise has no such tails). "
                "Use eps = jax.random.normal(key, mean.shape)."
            ]

        small_mean = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0]])
        small_log_var = np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, -2.0]])
        key = jax.random.key(4)
        z1 = sample(fn, key, small_mean, small_log_var)
        z2 = sample(fn, key, small_mean, small_log_var)
        z3 = sample(fn, jax.random.key(5), small_mean, small_log_var)
        if not np.array_equal(z1, z2):
            return [
                "two calls with the same key gave different samples: take all randomness "
                "from the key argument (jax.random.normal(key, ...)), not from numpy or a "
                "global random state."
            ]
        if np.array_equal(z1, z3):
            return [
                "different keys gave identical samples: draw eps with the key you are "
                "given, jax.random.normal(key, mean.shape)."
            ]

        args = (key, _f32(small_mean), _f32(small_log_var))
        grad_mean = _gradient(fn, args, 1, "your sampler")
        if np.allclose(grad_mean, 0.0):
            return [_REPARAM_HINT]
        if not _close(grad_mean, np.ones_like(small_mean), rtol=1e-4, atol=1e-4):
            return [
                f"dz/dmu should be 1 for every entry, yours is {_fmt(grad_mean)}: "
                "z = mu + sigma * eps."
            ]
        grad_log_var = _gradient(fn, args, 2, "your sampler")
        expected = 0.5 * (z1 - small_mean)
        if np.allclose(grad_log_var, 0.0):
            return [
                "no gradient reaches log_var (dz/dlog_var is 0): compute sigma = "
                "exp(log_var / 2) inside the sample, without stop_gradient."
            ]
        if not _close(grad_log_var, expected, rtol=1e-3, atol=1e-4):
            return [
                f"dz/dlog_var should be sigma * eps / 2 = (z - mu) / 2 = {_fmt(expected)}, "
                f"yours is {_fmt(grad_log_var)}."
            ]

        extreme_mean = np.array([[0.0, 1.0], [5.0, -5.0]])
        extreme_log_var = np.array([[-30.0, 30.0], [30.0, -30.0]])
        z = sample(fn, jax.random.key(6), extreme_mean, extreme_log_var)
        _expect_finite(
            z,
            "for log-variances of -30 and 30 your samples",
            "Compute sigma as exp(log_var / 2), which is finite for |log_var| <= 30.",
        )
        return []

    return _run(
        "check_reparameterize",
        body,
        student_fn,
        "correct: sample means and variances match mu and sigma^2 (20,000 draws), "
        "the noise is independent per entry and driven by the key, and gradients "
        "flow to mu and log_var.",
    )


# ------------------------------------------------- Bernoulli log-likelihood from logits

_LOGITS_HINT = (
    "Computing p = sigmoid(logits) and then log(p), log(1 - p) breaks down once p rounds to "
    "exactly 0 or 1 in floating point (already at |logit| ~ 17 in float32): log(0) = -inf. "
    "Work with the logits directly: log p(x | z) = sum_j [x_j * l_j - softplus(l_j)], e.g. "
    "with jax.nn.log_sigmoid(l) = log p and jax.nn.log_sigmoid(-l) = log(1 - p)."
)


def _bernoulli_hand(x, logits):
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def check_bernoulli_log_likelihood(student_fn) -> CheckResult:
    r"""Checks ``student_fn(x, logits) -> log p(x | logits)``, summed over the last axis.

        log p(x | z) = sum_j [ x_j log sigmoid(l_j) + (1 - x_j) log(1 - sigmoid(l_j)) ]
                     = sum_j [ x_j l_j - softplus(l_j) ]

    for binary x of shape (..., D) and logits of the same shape; result shape (...).
    Checked on hand values (logits 0 give -D log 2), on logits of +-100 (where the
    probability form gives -inf or NaN), against :func:`vae_edu.elbo.bernoulli_log_likelihood`
    on seeded random inputs, and through jax.grad (d/dl = x - sigmoid(l), finite).

    Args:
      student_fn: the student's function.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.elbo import bernoulli_log_likelihood

    call = "bernoulli_log_likelihood(x, logits)"
    cases = [
        ("x=(1, 0, 1), logits=(0, 0, 0)", ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]), 3 * math.log(0.5)),
        ("x=1, logit=2", ([1.0], [2.0]), -math.log1p(math.exp(-2.0))),
        ("x=0, logit=2", ([0.0], [2.0]), -math.log1p(math.exp(2.0))),
    ]

    def body(fn):
        rng = _rng(5)
        batch, dim = 4, 6
        x = rng.integers(0, 2, size=(batch, dim)).astype(np.float64)
        logits = rng.normal(0.0, 3.0, size=(batch, dim))
        got = _as_array(_call(fn, _f32(x), _f32(logits), call=call), "your log-likelihood")
        _check_event_shape(got, batch, dim, "log-likelihood")
        problems = []
        for description, (xs, ls), expected in cases:
            value = _scalar(
                _as_array(_call(fn, _f32([xs]), _f32([ls]), call=call), "your log-likelihood"),
                "your log-likelihood",
            )
            if not math.isclose(value, expected, rel_tol=_RTOL, abs_tol=_ATOL):
                problems.append(
                    f"for {description} your log-likelihood is {value:.4f} but it "
                    f"should be {expected:.4f}."
                )
                break
        extreme_x = np.array([[1.0, 0.0, 1.0, 0.0]])
        extreme_logits = np.array([[100.0, -100.0, -100.0, 100.0]])
        value = _as_array(
            _call(fn, _f32(extreme_x), _f32(extreme_logits), call=call), "your log-likelihood"
        )
        expected = _bernoulli_hand(extreme_x, extreme_logits)
        if not np.all(np.isfinite(value)):
            problems.insert(
                0,
                f"your log-likelihood is {_fmt(value.ravel()[0])} for "
                "x=(1, 0, 1, 0) and logits=(100, -100, -100, 100), where the "
                f"right answer is {_fmt(expected[0])} (each wrong pixel costs "
                "100 nats). " + _LOGITS_HINT,
            )
            return problems
        if not problems and not _close(value, expected):
            problems.append(
                f"for x=(1, 0, 1, 0) and logits=(100, -100, -100, 100) your "
                f"log-likelihood is {_fmt(value.ravel()[0])} but it should be "
                f"{_fmt(expected[0])}: "
                "clipping or adding a small constant inside the log changes the "
                "answer. " + _LOGITS_HINT
            )
        reference = np.asarray(bernoulli_log_likelihood(_f32(x), _f32(logits)), np.float64)
        if problems or not _close(got, reference):
            if not problems:
                problems.append(
                    f"on random inputs your log-likelihood differs from the "
                    f"reference: for x={_fmt(x[0])}, logits={_fmt(logits[0])} you "
                    f"return {_fmt(got[0])}, expected {_fmt(reference[0])}."
                )
            hint = _diagnose(
                got,
                [
                    (
                        -reference,
                        "your log-likelihood is positive: a probability is at most 1, so "
                        "its log is <= 0. You returned the binary cross-entropy (the "
                        "NEGATIVE log-likelihood): flip the sign.",
                    ),
                    (
                        reference / dim,
                        f"your log-likelihood for {dim} pixels is 1/{dim} of the "
                        "correct value: you averaged over the pixels. The pixels are "
                        "independent given z, so log p(x | z) is the SUM of the "
                        "per-pixel terms (averaging would weaken the reconstruction "
                        "term 784-fold against the KL on MNIST).",
                    ),
                    (
                        _bernoulli_hand(1.0 - x, logits),
                        "you swapped x and 1 - x: the term x_j log "
                        "sigmoid(l_j) belongs to pixels that are on "
                        "(x_j = 1).",
                    ),
                ],
            )
            if hint:
                problems.append(hint)
            return problems
        grad = _gradient(fn, (_f32(extreme_x), _f32(extreme_logits)), 1, "your log-likelihood")
        expected_grad = extreme_x - 1.0 / (1.0 + np.exp(-extreme_logits))
        if not _close(grad, expected_grad, rtol=1e-4, atol=1e-4):
            return [
                f"at logits=(100, -100, -100, 100) your gradient is {_fmt(grad)}, expected "
                f"x - sigmoid(logits) = {_fmt(expected_grad)}. " + _LOGITS_HINT
            ]
        return []

    return _run(
        "check_bernoulli_log_likelihood",
        body,
        student_fn,
        "correct: hand values, random inputs, logits of +-100 (values and gradients "
        "finite) and the sum over pixels.",
    )


# ------------------------------------------------- the negative ELBO of a batch


def _log_sigmoid(v):
    return -np.logaddexp(0.0, -np.asarray(v, np.float64))


def _negative_elbo_mistakes(x, logits, mean, log_var, extra=()):
    """(value, message) for the known mistakes in a batch's negative ELBO (float64)."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    batch, dim_x = x.shape
    dim_z = mean.shape[-1]

    def recon_of(lg):
        return np.sum(x * _log_sigmoid(lg) + (1.0 - x) * _log_sigmoid(-lg), axis=-1)

    recon = recon_of(logits)
    kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)
    reference = float(np.mean(-recon + kl))
    return [
        *extra,
        (
            np.mean(-recon / dim_x + kl),
            f"your reconstruction term is averaged over the {dim_x} pixels: the "
            "reconstruction log-likelihood of an image is the SUM over its pixels "
            "(averaging weakens it 784-fold against the KL on MNIST and the VAE learns "
            "blurry digits).",
        ),
        (
            np.sum(-recon + kl),
            f"your loss is {batch} times too large for a batch of {batch}: "
            "you summed over the batch. Sum over pixels and latent dimensions, "
            "then take the MEAN over the batch (so the learning rate does not depend "
            "on the batch size).",
        ),
        (
            np.mean(-recon) + np.sum(kl),
            f"your KL term is summed over the batch of {batch} while the reconstruction "
            "term is averaged: take the MEAN over the batch of both (the KL is summed over "
            "the latent dimensions only).",
        ),
        (
            np.mean(-recon + kl / dim_z),
            f"your KL term is averaged over the {dim_z} latent dimensions: sum it."
            + (
                " (Or you weighted it by 1/2, beta = 0.5, which gives the same number for "
                "d = 2: the negative ELBO weights the KL by 1.)"
                if dim_z == 2
                else ""
            ),
        ),
        (
            np.mean(-recon / dim_x + kl / dim_z),
            "you averaged over pixels and over latent dimensions: sum over both, then "
            "take the mean over the batch.",
        ),
        (
            np.mean(-recon + 0.5 * np.sum(mean**2 + np.exp(0.5 * log_var) - 1.0 - log_var, -1)),
            "your KL uses exp(log_var / 2) = sigma where the variance belongs: the KL to "
            "N(0, I) is 1/2 sum_j (mu_j^2 + exp(log_var_j) - 1 - log_var_j), with "
            "sigma^2 = exp(log_var) (exp(log_var / 2) is the sigma of the sampling step).",
        ),
        (
            np.mean(-recon + 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - 0.5 * log_var, -1)),
            "the log term of your KL is halved: inside 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - "
            "log sigma_j^2) the log term is log sigma^2 = log_var itself, not log_var / 2 "
            "(the 1/2 in front already applies to it).",
        ),
        (
            np.mean(-recon + 0.5 * kl),
            "your KL term carries a weight of 1/2 (beta = 0.5): the negative ELBO is "
            "-log p(x | z) + KL with weight 1 (beta = 1); a factor 1/2 belongs only inside "
            "the KL formula.",
        ),
        (
            np.mean(-recon_of(1.0 / (1.0 + np.exp(-logits))) + kl),
            "you applied the sigmoid twice: the decoder's outputs are LOGITS, and the "
            "log-likelihood from logits uses log_sigmoid(logits) and log_sigmoid(-logits) "
            "directly (do not pass sigmoid(logits) as the logits).",
        ),
        (
            -reference,
            "you returned the ELBO itself; the loss to MINIMISE is the "
            "negative ELBO, -log p(x | z) + KL.",
        ),
        (
            np.mean(-recon - kl),
            "you subtracted the KL: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(recon + kl),
            "the reconstruction term has the wrong sign: the "
            "negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(-recon),
            "the KL term is missing: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(kl),
            "the reconstruction term is missing: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
    ]


def check_negative_elbo(student_fn) -> CheckResult:
    r"""Checks ``student_fn(x, logits, mean, log_var) -> loss``, the VAE training loss.

        loss = (1/B) sum_b [ -log p(x_b | z_b) + KL(q(z | x_b) || N(0, I)) ]

    with log p(x_b | z_b) the Bernoulli log-likelihood summed over the D pixels (logits are
    the decoder's output at the sampled z_b), the KL summed over the d latent dimensions,
    and the mean over the B examples of the batch (Odaibo 2019, eq. 43). x, logits: (B, D);
    mean, log_var: (B, d); loss: a scalar. Checked on hand values, against the package's
    reference on seeded random inputs, at logits of +-100, and through jax.grad.

    Args:
      student_fn: the student's function.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.elbo import bernoulli_log_likelihood
    from vae_edu.kl import kl_diag_gaussians

    call = "negative_elbo(x, logits, mean, log_var)"
    log2 = math.log(2.0)
    x2 = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    cases = [
        (
            "a batch of 2 images with 3 pixels, logits=0, mu=0, sigma=1 (KL = 0)",
            (x2, np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2))),
            3 * log2,
        ),
        (
            "the same batch with mu=(2, 0) for both images, sigma=1 (KL = 2 per image)",
            (x2, np.zeros((2, 3)), [[2.0, 0.0], [2.0, 0.0]], np.zeros((2, 2))),
            3 * log2 + 2.0,
        ),
    ]

    def loss_of(fn, *args):
        out = _as_array(_call(fn, *(_f32(a) for a in args), call=call), "your loss")
        if out.shape != ():
            batch = np.shape(args[0])[0]
            per_example = " (one value per example)" if out.shape == (batch,) else ""
            raise _Stop(
                f"your loss has shape {out.shape}{per_example}; the loss is a single "
                "number, the MEAN over the batch of the per-example negative ELBOs."
            )
        return float(out)

    def body(fn):
        rng = _rng(6)
        batch, dim_x, dim_z = 4, 6, 3
        x = rng.integers(0, 2, size=(batch, dim_x)).astype(np.float64)
        logits = rng.normal(0.0, 2.0, size=(batch, dim_x))
        mean = rng.normal(0.0, 1.0, size=(batch, dim_z))
        log_var = rng.uniform(-1.0, 1.0, size=(batch, dim_z))
        got = loss_of(fn, x, logits, mean, log_var)
        recon = np.asarray(bernoulli_log_likelihood(_f32(x), _f32(logits)), np.float64)
        kl = np.asarray(kl_diag_gaussians(_f32(mean), _f32(log_var)), np.float64)
        reference = float(np.mean(-recon + kl))
        problems = []
        for description, args, expected in cases:
            value = loss_of(fn, *args)
            if not math.isclose(value, expected, rel_tol=_RTOL, abs_tol=_ATOL):
                problems.append(
                    f"for {description} your loss is {value:.4f} but it should be "
                    f"{expected:.4f} (= 3 log 2 + KL)."
                )
                break
        if problems or not math.isclose(got, reference, rel_tol=_RTOL, abs_tol=_ATOL):
            if not problems:
                problems.append(
                    f"on a random batch (B={batch}, D={dim_x}, d={dim_z}) your loss "
                    f"is {got:.4f}, expected {reference:.4f}."
                )
            hint = _diagnose(np.asarray(got), _negative_elbo_mistakes(x, logits, mean, log_var))
            if hint:
                problems.append(hint)
            return problems
        extreme_x = np.array([[1.0, 0.0], [0.0, 1.0]])
        extreme_logits = np.array([[100.0, -100.0], [100.0, -100.0]])
        zeros = np.zeros((2, 2))
        value = loss_of(fn, extreme_x, extreme_logits, zeros, zeros)
        if not math.isclose(value, 100.0, rel_tol=1e-4):
            return [
                f"for logits of +-100 your loss is {value:.4f}, expected 100.0000 (the "
                "second image has two pixels wrong by 100 nats each, the first none). "
                + _LOGITS_HINT
            ]
        args = (_f32(x), _f32(logits), _f32(mean), _f32(log_var))
        grad = _gradient(fn, args, 1, "your loss")
        expected_grad = (1.0 / (1.0 + np.exp(-logits)) - x) / batch
        if not _close(grad, expected_grad, rtol=1e-3, atol=1e-5):
            return [
                f"your loss has the right value but d loss / d logits is {_fmt(grad[0])} "
                f"for the first image, expected (sigmoid(logits) - x) / B = "
                f"{_fmt(expected_grad[0])}."
            ]
        return []

    return _run(
        "check_negative_elbo",
        body,
        student_fn,
        "correct: hand values, the reference on a random batch, logits of +-100 and "
        "gradients (sum over pixels and latent dimensions, mean over the batch).",
    )


# ------------------------------------------------- ELBO <= log p(x) on the conjugate model


def check_elbo_estimate(
    student_fn, *, num_repeats: int = 20, num_samples: int = 100
) -> CheckResult:
    r"""Checks ``student_fn(key, model, x, mean, log_var, num_samples) -> ELBO estimate``.

    On the linear-Gaussian model of :mod:`vae_edu.conjugate` (here D = 3, d = 1), for
    q = N(mean, diag exp(log_var)) the estimator must be unbiased for

        ELBO(q) = E_q[log p(x | z) + log p(z) - log q(z)] = log p(x) - KL(q || p(z | x)),

    which the model gives exactly (``model.exact_elbo``). The check repeats the student's
    estimate with ``num_repeats`` keys and compares the average with the exact ELBO within
    5 standard errors (plus 1e-3 nats) for four q's: the exact posterior (where
    ELBO = log p(x)) and three others (where ELBO < log p(x)).

    Args:
      student_fn: the student's function; ``model`` is a
        :class:`vae_edu.conjugate.LinearGaussianModel`, x: (D,), mean and log_var: (d,).
      num_repeats: independent calls per q.
      num_samples: the ``num_samples`` passed to each call.

    Returns:
      A :class:`CheckResult`.
    """
    from vae_edu.conjugate import make_model

    call = "elbo_estimate(key, model, x, mean, log_var, num_samples)"

    def body(fn):
        model = make_model(jax.random.key(7), data_dim=3, latent_dim=1, noise_std=0.7)
        x = _f32([0.5, -1.0, 2.0])
        log_evidence = float(model.log_evidence(x))
        post_mean, post_cov = model.posterior(x)
        m, v = np.asarray(post_mean, np.float64), np.diag(np.asarray(post_cov, np.float64))
        candidates = [
            ("the exact posterior q = p(z | x)", m, np.log(v)),
            ("q with its mean shifted by +1", m + 1.0, np.log(v)),
            ("q with 4 times the posterior variance", m, np.log(4.0 * v)),
            ("q = N(m - 0.5, v / 4)", m - 0.5, np.log(v / 4.0)),
        ]

        # Compiled once for all calls when the student's code allows it (it should: it is
        # jax code); otherwise called as it is, which is slower but gives the same numbers.
        # The grader's proxy does this in the student's kernel, in one request per q.
        def call_many(arg_lists):
            if hasattr(fn, "call_many"):
                return list(fn.call_many(arg_lists, static_argnums=(5,)))
            compiled = jax.jit(fn, static_argnums=5)
            try:
                first = compiled(*arg_lists[0])
            except Exception:  # noqa: BLE001 - not jittable: fall back to plain calls
                compiled = fn
                first = compiled(*arg_lists[0])
            return [first] + [compiled(*a) for a in arg_lists[1:]]

        # The spread of the estimate must fall like 1 / sqrt(L): with L = 100 samples it
        # is 10 times smaller than with L = 1 (unless the L draws are one draw reused, the
        # same key for every draw, or num_samples ignored).
        mean, log_var = candidates[1][1], candidates[1][2]
        spreads = {}
        for num in (1, num_samples):
            arg_lists = [
                (jax.random.fold_in(jax.random.key(9), i), model, x, _f32(mean), _f32(log_var), num)
                for i in range(num_repeats)
            ]
            outs = _call(call_many, arg_lists, call=call)
            values = np.array(
                [_scalar(_as_array(o, "your ELBO estimate"), "your ELBO estimate") for o in outs]
            )
            _expect_finite(values, "your ELBO estimates")
            spreads[num] = float(values.std(ddof=1))
        if spreads[1] == 0.0:
            return [
                "your estimate is the same for every key with a single sample away from the "
                "posterior: the samples z must be drawn with the key (jax.random.normal(key, "
                "...)), so that different keys give different draws."
            ]
        for description, mean, log_var in candidates:
            arg_lists = [
                (
                    jax.random.fold_in(jax.random.key(8), i),
                    model,
                    x,
                    _f32(mean),
                    _f32(log_var),
                    num_samples,
                )
                for i in range(num_repeats)
            ]
            outs = _call(call_many, arg_lists, call=call)
            if not isinstance(outs, list) or len(outs) != num_repeats:
                raise _Stop("the grader could not collect your ELBO estimates.")
            estimates = [
                _scalar(_as_array(out, "your ELBO estimate"), "your ELBO estimate") for out in outs
            ]
            estimates = np.array(estimates)
            _expect_finite(estimates, "your ELBO estimates")
            average = float(estimates.mean())
            std_error = float(estimates.std(ddof=1) / math.sqrt(num_repeats))
            cov = jnp.diag(jnp.exp(_f32(log_var)))
            exact = float(model.exact_elbo(x, _f32(mean), cov))
            tolerance = _NUM_SE * std_error + 1e-3
            if abs(average - exact) <= tolerance:
                continue
            expected_ll = float(model.expected_log_likelihood(x, _f32(mean), cov))
            kl_prior = expected_ll - exact
            entropy = 0.5 * float(np.sum(1.0 + math.log(2.0 * math.pi) + log_var))
            hint = None
            for wrong, message in (
                (
                    expected_ll,
                    "Your estimate matches E_q[log p(x | z)] alone: the KL term "
                    "(or log p(z) - log q(z)) is missing.",
                ),
                (
                    expected_ll + kl_prior,
                    "You added the KL instead of subtracting it: "
                    "ELBO = E_q[log p(x | z)] - KL(q || p(z)).",
                ),
                (
                    exact - entropy,
                    "Your estimate matches E_q[log p(x | z) + log p(z)]: "
                    "the - log q(z) term is missing.",
                ),
                (
                    num_samples * exact,
                    f"Your estimate is {num_samples} times the ELBO: "
                    "average over the samples, do not sum.",
                ),
            ):
                if abs(average - wrong) <= tolerance:
                    hint = message
                    break
            if hint is None:
                hint = _elbo_estimate_mutants(
                    model, x, mean, log_var, num_samples, average, std_error
                )
            return [
                f"for {description} your ELBO estimates average {average:.4f} "
                f"(standard error {std_error:.4f} over {num_repeats} calls), but the exact "
                f"ELBO is {exact:.4f} and log p(x) = {log_evidence:.4f}. "
                + (
                    hint
                    or "Estimate E_q[log p(x | z) + log p(z) - log q(z)] with "
                    "reparameterized samples z ~ q."
                )
            ]
        ratio = spreads[num_samples] / spreads[1]
        if ratio > 3.0 / math.sqrt(num_samples):
            return [
                f"the spread of your estimate over {num_repeats} keys is {spreads[1]:.4f} with "
                f"num_samples=1 and {spreads[num_samples]:.4f} with num_samples="
                f"{num_samples}: it should fall like 1 / sqrt(L), about "
                f"{1 / math.sqrt(num_samples):.2f} times smaller, but yours is "
                f"{ratio:.2f} times. Use num_samples independent draws: one draw reused L "
                "times, one key for every draw, or a fixed number of samples average nothing."
            ]
        return []

    return _run(
        "check_elbo_estimate",
        body,
        student_fn,
        "correct: unbiased for the exact ELBO of four q's (within 5 standard errors), "
        "equal to log p(x) at the exact posterior.",
    )


def _elbo_estimate_mutants(model, x, mean, log_var, num_samples, average, std_error):
    """Names an ELBO estimate that is the IWAE bound, uses the average z, or counts log p(z)
    twice: their expectations are estimated here by Monte Carlo (100,000 draws in all)."""
    repeats = 2000
    mean, log_var = _f32(mean), _f32(log_var)
    eps = jax.random.normal(jax.random.key(123), (repeats, num_samples, *mean.shape))
    z = mean + jnp.exp(0.5 * log_var) * eps
    log_q = jax.vmap(jax.vmap(lambda v: _diag_log_density(v, mean, log_var)))(z)
    log_p = model.log_likelihood(x, z) + model.log_prior(z)
    log_w = np.asarray(log_p - log_q, np.float64)
    z_bar = jnp.mean(z, axis=1)
    at_mean = np.asarray(
        model.log_likelihood(x, z_bar)
        + model.log_prior(z_bar)
        - jax.vmap(lambda v: _diag_log_density(v, mean, log_var))(z_bar),
        np.float64,
    )
    twice = log_w + np.asarray(model.log_prior(z), np.float64)
    iwae = np.log(np.mean(np.exp(log_w - log_w.max(1, keepdims=True)), 1)) + log_w.max(1)
    for values, message in (
        (
            iwae,
            "Your estimate matches the IWAE bound log (1/L) sum_l w_l (the log of the average "
            "weight), which is above the ELBO: the ELBO averages the LOGS, "
            "(1/L) sum_l [log p(x | z_l) + log p(z_l) - log q(z_l)].",
        ),
        (
            at_mean,
            "Your estimate matches log p(x, z_bar) - log q(z_bar) at the AVERAGE z_bar of the "
            "L draws: average the L values of log p(x | z_l) + log p(z_l) - log q(z_l), not "
            "the z_l themselves.",
        ),
        (
            np.mean(twice, axis=1),
            "Your estimate counts the prior twice (log p(x, z) already contains log p(z)): "
            "use log p(x | z) + log p(z) - log q(z).",
        ),
    ):
        mc_se = float(values.std(ddof=1) / math.sqrt(repeats))
        if abs(average - float(values.mean())) <= _NUM_SE * (std_error + mc_se) + 1e-3:
            return message
    return None


def _diag_log_density(z, mean, log_var):
    return -0.5 * jnp.sum(
        jnp.log(2 * jnp.pi) + log_var + (z - mean) ** 2 * jnp.exp(-log_var), axis=-1
    )


# ------------------------------------------------- A3: the loss, the training step, the latents

#: The reference loss of A3 as self-contained code (sent to the student's kernel as the
#: ``loss_fn`` their ``train_step`` trains with, so that Question 1 does not cost Question 2).
A3_LOSS_CODE = """
def f(params, key, x):
    h = jax.nn.relu(x @ params["enc_w1"] + params["enc_b1"])
    mean, log_var = jnp.split(h @ params["enc_w2"] + params["enc_b2"], 2, axis=-1)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    g = jax.nn.relu(z @ params["dec_w1"] + params["dec_b1"])
    logits = g @ params["dec_w2"] + params["dec_b2"]
    rec = jnp.sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits), -1)
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, -1)
    return jnp.mean(kl - rec)
"""

_A3_REFERENCE_LOSS = KernelFunction(A3_LOSS_CODE)  # one object: compiled runs are cached
_A3_JIT = {
    "loss": jax.jit(_A3_REFERENCE_LOSS),
    "grad": jax.jit(jax.grad(_A3_REFERENCE_LOSS)),
}


def _a3_probe_params(seed: int, hidden: int = 16):
    """Small random parameters (784-hidden-2 VAE) with a non-trivial posterior."""
    from vae_edu import mlp_vae

    params = mlp_vae.init_params(jax.random.key(seed), hidden=hidden)
    rng = _rng(seed)
    params["enc_b2"] = _f32(rng.normal(0.0, 0.7, size=4))
    params["enc_b1"] = _f32(rng.normal(0.0, 0.5, size=hidden))
    params["dec_b1"] = _f32(rng.normal(0.0, 0.5, size=hidden))
    return params


def _a3_probe_batch(seed: int, batch: int = 8):
    return (_rng(seed).uniform(size=(batch, 784)) < 0.2).astype(np.float32)


def check_a3_loss(student_fn) -> CheckResult:
    r"""Checks A3's ``negative_elbo(params, key, x) -> loss`` for the :mod:`vae_edu.mlp_vae` VAE.

        loss = (1/B) sum_b [ -log p(x_b | z_b) + KL(q(z | x_b) || N(0, I)) ],
        z_b = mean_b + exp(log_var_b / 2) * eps_b,  eps = jax.random.normal(key, mean.shape)

    Checked on a hand value (all-zero parameters: every image costs 784 log 2), against the
    reference on seeded random parameters and batches (the same key, so the same eps), for
    gradients with respect to every parameter (through the proxy's ``jax.grad``), and that
    another key gives another sample. Known mistakes are named.
    """
    from vae_edu import mlp_vae

    call = "negative_elbo(params, key, x)"

    def loss_of(fn, params, key, x):
        out = _as_array(_call(fn, params, key, jnp.asarray(x), call=call), "your loss")
        if out.shape != ():
            raise _Stop(
                f"your loss has shape {out.shape}; it is a single number, the MEAN over the "
                "batch of the per-image negative ELBOs."
            )
        return float(out)

    def body(fn):
        zeros = {k: jnp.zeros_like(v) for k, v in _a3_probe_params(0).items()}
        x0 = _a3_probe_batch(1)
        value = loss_of(fn, zeros, jax.random.key(0), x0)
        expected = 784 * math.log(2.0)
        if not math.isclose(value, expected, rel_tol=_RTOL):
            hint = (
                f" You summed over the batch of {len(x0)} instead of averaging."
                if math.isclose(value, len(x0) * expected, rel_tol=_RTOL)
                else ""
            )
            return [
                f"with all parameters zero (mean = 0, log_var = 0, logits = 0) every image "
                f"costs 784 log 2 = {expected:.4f} nats and the KL is 0, but your loss is "
                f"{value:.4f}.{hint}"
            ]
        problems = []
        for seed in (11, 12):
            params = _a3_probe_params(seed)
            x = _a3_probe_batch(seed)
            key = jax.random.key(seed)
            got = loss_of(fn, params, key, x)
            mean, log_var = mlp_vae.encode(params, x)
            eps = jax.random.normal(key, mean.shape)
            logits = mlp_vae.decode(params, mean + jnp.exp(0.5 * log_var) * eps)
            reference = float(_A3_JIT["loss"](params, key, x))
            if math.isclose(got, reference, rel_tol=_RTOL, abs_tol=1e-3):
                continue
            at_mean = np.asarray(mlp_vae.decode(params, mean), np.float64)
            kl = 0.5 * np.sum(
                np.asarray(mean, np.float64) ** 2
                + np.exp(np.asarray(log_var, np.float64))
                - 1.0
                - np.asarray(log_var, np.float64),
                axis=-1,
            )
            recon_at_mean = np.sum(x * _log_sigmoid(at_mean) + (1 - x) * _log_sigmoid(-at_mean), -1)
            extra = [
                (
                    float(_A3_JIT["loss"](params, jax.random.key(0), x)),
                    "your loss ignores the key it is given (it always uses jax.random.key(0), "
                    "a fixed PRNG key): every training step would reuse the same noise. Draw "
                    "eps = jax.random.normal(key, mean.shape) with the key argument.",
                ),
                (
                    float(np.mean(-recon_at_mean + kl)),
                    "you decoded the posterior mean (z = mean): the loss needs a SAMPLE "
                    "z = mean + exp(log_var / 2) * eps, or the encoder's variance gets no "
                    "training signal from the reconstruction.",
                ),
            ]
            hint = _diagnose(
                np.asarray(got), _negative_elbo_mistakes(x, logits, mean, log_var, extra)
            )
            problems.append(
                f"on random parameters and a batch of {x.shape[0]} images (key "
                f"jax.random.key({seed})) your loss is {got:.4f}, expected {reference:.4f}. "
                + (
                    hint
                    or "Encode, sample z with the given key, decode, then average "
                    "-log p(x | z) + KL over the batch."
                )
            )
            return problems
        params = _a3_probe_params(13)
        x = jnp.asarray(_a3_probe_batch(13))
        key = jax.random.key(13)
        if math.isclose(
            loss_of(fn, params, key, x),
            loss_of(fn, params, jax.random.key(14), x),
            rel_tol=1e-7,
            abs_tol=0.0,
        ):
            return [
                "your loss is the same for two different keys: draw eps with the key "
                "argument, jax.random.normal(key, mean.shape)."
            ]
        try:
            if hasattr(fn, "grad"):
                grads = fn.grad((params, key, x), 0)
            else:
                grads = jax.grad(lambda p: jnp.sum(jnp.asarray(fn(p, key, x))))(params)
        except NotImplementedError:
            raise _Stop("not implemented yet: your function raises NotImplementedError.") from None
        except Exception as err:  # noqa: BLE001
            raise _Stop(
                f"your loss cannot be differentiated by jax.grad ({type(err).__name__}: "
                f"{_first_line(err)}). Use jax.numpy and jax.random only."
            ) from None
        expected_grads = _A3_JIT["grad"](params, key, x)
        if not isinstance(grads, dict) or set(grads) != set(expected_grads):
            return ["the gradient of your loss is not a dict like params."]
        for name in mlp_vae.PARAM_NAMES:
            if not _close(grads[name], expected_grads[name], rtol=1e-3, atol=1e-4):
                return [
                    f"your loss has the right value but its gradient with respect to "
                    f"params[{name!r}] is wrong (e.g. {_fmt(np.ravel(grads[name])[:3])}, "
                    f"expected {_fmt(np.ravel(expected_grads[name])[:3])}): is a "
                    "jax.lax.stop_gradient, a NumPy call or a Python float in the way?"
                ]
        return []

    return _run(
        "check_a3_loss",
        body,
        student_fn,
        "correct: 784 log 2 at zero parameters, the reference on random parameters (same "
        "key), a new sample for a new key, and the gradient for every parameter.",
    )


def _a3_distance(a: dict, b: dict) -> float:
    return math.sqrt(
        sum(
            float(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2))
            for k in a
        )
    )


def _a3_unpack(pair, reference_state, what: str):
    """(params, opt_state) from the kernel's numbers, checked against the reference layout."""
    from vae_edu import mlp_vae

    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], dict):
        raise _Stop(
            f"{what}: your train_step must return (params, opt_state, loss), params the "
            "same dict of arrays it was given."
        )
    params, state = pair
    if set(params) != set(mlp_vae.PARAM_NAMES):
        raise _Stop(
            f"{what}: the params your train_step returns have the keys {sorted(params)}; "
            f"expected {sorted(mlp_vae.PARAM_NAMES)}."
        )
    leaves = jax.tree_util.tree_leaves(state)
    ref_leaves, treedef = jax.tree_util.tree_flatten(reference_state)
    if len(leaves) != len(ref_leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(leaves, ref_leaves, strict=True)
    ):
        raise _Stop(
            f"{what}: the optimizer state your train_step returns is not Adam's state for "
            "these parameters: return the new state from optimizer.update(...)."
        )
    state = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(v, r.dtype) for v, r in zip(leaves, ref_leaves, strict=True)]
    )
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    return params, state


def _a3_train(fn, params, images, budget):
    from vae_edu import mlp_vae

    loss = _A3_REFERENCE_LOSS
    runner = getattr(fn, "run_training", None)
    try:
        if runner is not None:  # the grader's proxy: the run happens in the student's kernel
            return runner(params, images, loss, dataclasses.asdict(budget))
        return mlp_vae.run_training(fn, params, images, loss, budget)
    except NotImplementedError:
        raise _Stop("not implemented yet: your function raises NotImplementedError.") from None
    except _Stop:
        raise
    except Exception as err:  # noqa: BLE001
        raise _Stop(
            f"training with your train_step failed: {type(err).__name__}: {_first_line(err)} "
            "(called as train_step(loss_fn, params, opt_state, key, x) inside a jax.jit-"
            "compiled loop: use jax.numpy, no Python side effects)."
        ) from None


def check_a3_training(student_fn, budget=None) -> CheckResult:
    r"""Re-runs A3's training with the student's ``train_step`` and verifies every segment.

    ``train_step(loss_fn, params, opt_state, key, x) -> (params, opt_state, loss)`` must be
    one Adam step (``optax.adam(budget.learning_rate)``) on ``loss_fn(params, key, x)``.
    The grader picks the initial parameters, the binarized training images and the keys
    (:mod:`vae_edu.mlp_vae`) and gives the step its own reference loss (so a wrong Question
    1 does not cost this question). First a probe of two steps names common mistakes; then
    the whole run (``budget.num_steps`` steps) returns a checkpoint every
    ``budget.checkpoint_every`` steps. The grader replays every segment from the student's
    checkpoint with the reference step and requires the student's end of segment to match
    (parameters within 0.1% of the segment's move, or within 50% and the same test ELBO to
    1 nat: float32 chaos): a run that did not train (a shipped model, made-up numbers)
    cannot pass. Finally the test ELBO of the trained parameters must reach
    ``budget.target_elbo``.
    """
    import optax

    from vae_edu import mlp_vae

    budget = budget or mlp_vae.BUDGET

    def body(fn):
        images = mlp_vae.training_images(budget)
        tests = mlp_vae.test_images(budget)
        params0 = mlp_vae.init_params(
            jax.random.key(budget.seed), budget.hidden, budget.latent_dim, images.mean(axis=0)
        )
        optimizer = optax.adam(budget.learning_rate)
        state0 = optimizer.init(params0)
        reference_loss = _A3_REFERENCE_LOSS

        def replay(params, state, start, size, step=mlp_vae.train_step):
            return mlp_vae.run_steps(
                step, reference_loss, params, state, images, start, size, budget
            )

        # 1. a probe: two steps, checkpoints after each; named mistakes.
        probe_budget = dataclasses.replace(budget, num_steps=2, checkpoint_every=1)
        probe = _a3_train(fn, params0, images, probe_budget)
        if not isinstance(probe, dict) or "checkpoints" not in probe or "final" not in probe:
            raise _Stop("the grader got no training checkpoints back from your notebook.")
        got1, got_state1 = _a3_unpack(probe["checkpoints"][1], state0, "after one step")
        want1, want_state1, _ = replay(params0, state0, 0, 1)
        moved = _a3_distance(want1, params0)
        if _a3_distance(got1, want1) > 1e-3 * moved:
            grads = _A3_JIT["grad"](
                params0,
                mlp_vae.step_key(budget.seed, 0),
                mlp_vae.step_batch(images, 0, budget.batch_size),
            )
            mutants = [
                (
                    jax.tree_util.tree_map(lambda p, n: 2 * p - n, params0, want1),
                    "your step goes UP the loss: optax's updates already point downhill, "
                    "apply them with optax.apply_updates(params, updates) (do not negate or "
                    "subtract them).",
                ),
                (
                    params0,
                    "your train_step returns the parameters unchanged: apply the updates, "
                    "params = optax.apply_updates(params, updates), and return the new params.",
                ),
                (
                    jax.tree_util.tree_map(
                        lambda p, g: p - budget.learning_rate * g, params0, grads
                    ),
                    "your step is plain gradient descent: use the given Adam optimizer, "
                    "updates, opt_state = optimizer.update(grads, opt_state, params).",
                ),
                (
                    replay(params0, state0, 0, 1, _fixed_key_step)[0],
                    "your train_step ignores the key it is given (a fixed PRNG key): pass "
                    "the key argument to loss_fn, or every step reuses the same noise.",
                ),
            ]
            for params, message in mutants:
                if _a3_distance(got1, params) <= 1e-3 * moved:
                    raise _Stop(message)
            raise _Stop(
                "after one step from the grader's parameters, your train_step's parameters "
                f"differ from one Adam step on loss_fn (distance {_a3_distance(got1, want1):.3g},"
                f" the step itself moves them by {moved:.3g}). Take the gradient of loss_fn "
                "with jax.value_and_grad, then optimizer.update and optax.apply_updates."
            )
        got2, _ = _a3_unpack(probe["final"], state0, "after two steps")
        want2, _, _ = replay(got1, want_state1, 1, 1)
        if _a3_distance(got2, want2) > 1e-3 * _a3_distance(want2, got1):
            state_reused = replay(got1, state0, 1, 1)[0]
            if _a3_distance(got2, state_reused) <= 1e-3 * _a3_distance(want2, got1):
                raise _Stop(
                    "your train_step returns the OLD optimizer state: return the new one "
                    "from optimizer.update, or Adam restarts at every step."
                )
            raise _Stop(
                "your first step is right but the second is not: return the new params "
                "and the new opt_state, and use the key and batch you are given."
            )
        del got_state1

        # 2. the whole run, verified segment by segment.
        run = _a3_train(fn, params0, images, budget)
        checkpoints = list(run.get("checkpoints", [])) if isinstance(run, dict) else []
        expected_count = math.ceil(budget.num_steps / budget.checkpoint_every)
        if len(checkpoints) != expected_count or "final" not in run:
            raise _Stop("the grader did not get the checkpoints of the training run back.")
        states = [_a3_unpack(c, state0, "during training") for c in checkpoints]
        states.append(_a3_unpack(run["final"], state0, "at the end of training"))
        if _a3_distance(states[0][0], params0) > 0:
            raise _Stop("your training run did not start from the grader's initial parameters.")
        subset = tests[:500]
        for i in range(expected_count):
            start = i * budget.checkpoint_every
            size = min(budget.checkpoint_every, budget.num_steps - start)
            (p, st), (q, _) = states[i], states[i + 1]
            want, _, _ = replay(p, st, start, size)
            gap, move = _a3_distance(q, want), _a3_distance(want, p)
            agree = gap <= 1e-3 * move or (
                gap <= 0.5 * move
                and abs(mlp_vae.test_elbo(q, subset) - mlp_vae.test_elbo(want, subset)) <= 1.0
            )
            if not agree:
                raise _Stop(
                    f"the training run does not reproduce: from the checkpoint at step {start}, "
                    f"{size} Adam steps on the reference loss do not lead to your checkpoint "
                    f"at step {start + size} (distance {gap:.3g}; the steps move the "
                    f"parameters by {move:.3g}). Only a run of your train_step counts: a "
                    "model trained or loaded elsewhere does not."
                )
        final = states[-1][0]
        elbo = mlp_vae.test_elbo(final, tests)
        if not math.isfinite(elbo):
            raise _Stop("the test ELBO of the trained parameters is not finite: training diverged.")
        if elbo < budget.target_elbo:
            return [
                f"training with your train_step reaches a test ELBO of {elbo:.1f} nats per "
                f"image, below the target {budget.target_elbo:.1f}."
            ]
        return []

    return _run(
        "check_a3_training",
        body,
        student_fn,
        f"correct: the grader re-ran {budget.num_steps} steps of your train_step, every "
        f"segment reproduces, and the test ELBO reaches the target {budget.target_elbo:.1f}.",
    )


def _fixed_key_step(loss_fn, params, opt_state, key, x):
    from vae_edu import mlp_vae

    return mlp_vae.train_step(loss_fn, params, opt_state, jax.random.key(0), x)


def check_latent_statistics(
    params, *, class_means=None, farthest_digit=None, centroid_accuracy=None
) -> CheckResult:
    r"""Checks three statistics of an A3 model's latent space on the test images.

    With mu(x) the posterior mean of image x (:func:`vae_edu.mlp_vae.encode` of ``params``
    on :func:`vae_edu.mlp_vae.test_images`, labels of the same first test images):

    * ``class_means``: (10, d) array, row k = the average of mu(x) over test images of digit k;
    * ``farthest_digit``: the digit whose class mean is farthest (Euclidean) from the origin;
    * ``centroid_accuracy``: the fraction (in [0, 1]) of test images whose nearest class mean
      is the class mean of their own digit.

    All three are recomputed from ``params`` (whatever they are: the statistics are
    graded, not the model), so any parameters get their own correct answers.
    """
    from vae_edu import data, mlp_vae

    def body(_):
        if not isinstance(params, dict) or set(params) != set(mlp_vae.PARAM_NAMES):
            raise _Stop("`params` is not the parameter dict of the A3 model.")
        p = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in params.items()}
        images = mlp_vae.test_images()
        labels = np.asarray(data.load_mnist("test").labels[: images.shape[0]])
        mean, log_var = (np.asarray(a, np.float64) for a in mlp_vae.encode(p, images))
        expected = np.stack([mean[labels == k].mean(axis=0) for k in range(10)])
        problems = []
        got = expected if class_means is None else _as_array(class_means, "class_means")
        if got.shape != expected.shape:
            problems.append(
                f"class_means has shape {got.shape}; it should be {expected.shape}, "
                "one row (the average posterior mean) per digit 0-9."
            )
        elif not _close(got, expected, rtol=1e-3, atol=1e-3):
            wrong_input = np.stack([log_var[labels == k].mean(axis=0) for k in range(10)])
            hint = _diagnose(
                got,
                [
                    (wrong_input, "You averaged the log-variances: use the posterior MEANS mu(x)."),
                    (expected[::-1], "Your rows are in reverse order: row k belongs to digit k."),
                ],
            )
            bad = [k for k in range(10) if not _close(got[k], expected[k], 1e-3, 1e-3)]
            row = bad[0]
            permuted = next(
                (j for j in range(10) if _close(got[row], expected[j], 1e-3, 1e-3)), None
            )
            where = (
                f" (it holds the class mean of digit {permuted})" if permuted is not None else ""
            )
            problems.append(
                f"class_means differs from the average posterior mean of each digit in "
                f"{len(bad)} of 10 rows (row {row}: yours {_fmt(got[row])}{where}, expected "
                f"{_fmt(expected[row])}). "
                + (hint or "Row k is the average of mu(x) over the test images with label k.")
            )
        norms = np.linalg.norm(expected, axis=1)
        if farthest_digit is not None and int(np.asarray(farthest_digit)) != int(np.argmax(norms)):
            hint = (
                " You picked the NEAREST one."
                if int(np.asarray(farthest_digit)) == int(np.argmin(norms))
                else ""
            )
            problems.append(
                f"farthest_digit is {farthest_digit}, but the class mean farthest from "
                f"the origin is that of digit {int(np.argmax(norms))} (distance "
                f"{norms.max():.3f}).{hint}"
            )
        distances = np.linalg.norm(mean[:, None, :] - expected[None, :, :], axis=-1)
        accuracy = float(np.mean(np.argmin(distances, axis=1) == labels))
        value = (
            None
            if centroid_accuracy is None
            else _scalar(_as_array(centroid_accuracy, "centroid_accuracy"), "centroid_accuracy")
        )
        if value is not None and not math.isclose(value, accuracy, abs_tol=1e-3):
            hint = (
                " Give a fraction between 0 and 1, not a percentage."
                if math.isclose(value, 100 * accuracy, abs_tol=0.1)
                else ""
            )
            problems.append(
                f"centroid_accuracy is {value:.4f}, but {accuracy:.4f} of the "
                f"{len(labels)} test images are nearest to their own class mean.{hint}"
            )
        return problems

    return _run(
        "check_latent_statistics",
        body,
        params,
        needs_function=False,
        success="correct: class means, the farthest class mean and the nearest-class-mean "
        "accuracy all match.",
    )
