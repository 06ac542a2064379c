"""Shared machinery of the grading checks: results, safe calls of student functions,
value formatting, comparisons and the matching of outputs against a catalogue of known
mistakes."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Float32 student code against float64 hand values: this is the agreement we ask for.
RTOL = 1e-4
ATOL = 1e-4
# A known mistake "matches" if the student's output agrees with it this closely.
MISTAKE_RTOL = 1e-3
MISTAKE_ATOL = 1e-3
# Monte Carlo comparisons: |estimate - exact| < NUM_SE standard errors.
NUM_SE = 5.0


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


class Stop(Exception):
    """Ends a check early; its single argument is the message for the student."""


def run_check(
    name: str,
    steps: Sequence[Callable],
    student_fn,
    success: str,
    *,
    needs_function: bool = True,
    fresh_inputs: bool = True,
) -> CheckResult:
    """Runs a check: each ``step(student_fn)`` returns a list of problems (empty when the
    step passes); the first step with problems ends the check. Every failure, a
    :class:`Stop` or an exception of the student's function alike, becomes a result.

    With ``fresh_inputs`` the steps run twice: on the public inputs (fixed, so mistakes are
    named deterministically), then on inputs from the run's secret. Without it (a check
    too costly to run twice, such as re-running a training), once, on the run's secret."""
    if needs_function and not callable(student_fn):
        return CheckResult(
            name,
            False,
            (
                f"expected a function, got {type(student_fn).__name__}: pass the function "
                "itself (without calling it).",
            ),
        )
    # First on the PUBLIC inputs (the secret PUBLIC_SECRET: the same every run, so every
    # named mistake is caught and named the same way each time, as the mutation tests pin),
    # then, if that passes, on inputs drawn afresh from the run's secret (so a table of the
    # reference's values on the public inputs is not an answer).
    problems = _run_steps(steps, student_fn, PUBLIC_SECRET) if fresh_inputs else []
    if not problems:
        problems = _run_steps(steps, student_fn, _RUN_SECRET[0])
        if problems and fresh_inputs:
            problems[0] = "on inputs drawn afresh for this grading run: " + problems[0]
    if problems:
        return CheckResult(name, False, tuple(capitalized(p) for p in problems))
    return CheckResult(name, True, (success,))


def _run_steps(steps: Sequence[Callable], student_fn, secret: int) -> list[str]:
    """The problems of the first failing step, with :func:`hidden_rng` / :func:`hidden_key`
    drawing from ``secret`` while the steps run."""
    saved = _RUN_SECRET[0]
    _RUN_SECRET[0] = secret
    try:
        problems = []
        for step in steps:
            problems = list(step(student_fn))
            if problems:
                break
    except Stop as stop:
        problems = [str(stop.args[0])]
    except Exception as err:  # noqa: BLE001 - a check must never crash on odd student output
        problems = [
            f"the checker could not evaluate your function: {type(err).__name__}: {first_line(err)}"
        ]
    finally:
        _RUN_SECRET[0] = saved
    return problems


# --------------------------------------------------------------------------- helpers


def capitalized(text: str) -> str:
    """Capitalizes a message, unless it starts with a name (``class_means``, ``f(x)``)."""
    first = text.split(" ", 1)[0]
    if "_" in first or "(" in first or "`" in first:
        return text
    return text[:1].upper() + text[1:]


def first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[:limit] + "..."


def call_student(fn, *args, call: str):
    """Calls the student's function; any exception becomes a readable Stop."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise Stop(
            "not implemented yet: your function raises NotImplementedError. "
            "Replace the line `raise NotImplementedError()` with your code."
        ) from None
    except Exception as err:  # noqa: BLE001 - reported to the student, not re-raised
        raise Stop(
            f"your function raised {type(err).__name__}: {first_line(err)} (called as {call})."
        ) from None


def as_array(out, what: str) -> np.ndarray:
    if out is None:
        raise Stop(f"{what} returned None: did you forget the `return` statement?")
    try:
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise Stop(
            f"{what} returned a {getattr(out, 'type_name', type(out).__name__)}, not an array "
            f"of numbers ({first_line(err)})."
        ) from None


def fmt(x) -> str:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return f"{float(x):.4f}"
    return np.array2string(x, precision=4, separator=", ", suppress_small=True)


def close(a, b, rtol=RTOL, atol=ATOL) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (
        a.shape == b.shape
        and bool(np.all(np.isfinite(a)))
        and np.allclose(a, b, rtol=rtol, atol=atol)
    )


def scalar(arr: np.ndarray, what: str) -> float:
    if arr.size != 1:
        raise Stop(f"{what} should be a single number but has shape {arr.shape}.")
    return float(arr.reshape(()))


def expect_finite(arr: np.ndarray, what: str, hint: str = "") -> None:
    if not np.all(np.isfinite(arr)):
        raise Stop(f"{what} contains inf or NaN: {fmt(arr)}. {hint}".strip())


def diagnose(values: np.ndarray, mistakes: Sequence[tuple[np.ndarray, str]]) -> str | None:
    """The message of the first known mistake whose output the student reproduces."""
    for expected, message in mistakes:
        expected = np.asarray(expected, np.float64)
        if values.shape == expected.shape and np.allclose(
            values, expected, rtol=MISTAKE_RTOL, atol=MISTAKE_ATOL
        ):
            return message
    return None


GRADIENT_ADVICE = (
    "Training a VAE needs gradients through it: use jax.numpy (jnp) and jax.random, "
    "not numpy, math or Python floats, inside your function."
)


def gradient_tree(fn, args, argnum: int, what: str, advice: str = GRADIENT_ADVICE):
    """d/d args[argnum] of sum(fn(*args)), shaped like args[argnum] (a dict of parameters
    gives a dict), or a Stop explaining why it cannot be taken."""
    try:
        if hasattr(fn, "grad"):  # the grader's proxy: jax.grad runs in the student's kernel
            return fn.grad(args, argnum)
        return jax.grad(lambda *a: jnp.sum(jnp.asarray(fn(*a))), argnums=argnum)(*args)
    except NotImplementedError:
        raise Stop("not implemented yet: your function raises NotImplementedError.") from None
    except Exception as err:  # noqa: BLE001
        raise Stop(
            f"{what} cannot be differentiated by jax.grad ({type(err).__name__}: "
            f"{first_line(err)}). " + advice
        ) from None


def gradient(fn, args, argnum: int, what: str):
    """:func:`gradient_tree` of an array argument, as a float64 array."""
    return np.asarray(gradient_tree(fn, args, argnum, what), np.float64)


def seeded_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ hidden inputs
#
# The random inputs of the checks are drawn from a secret of the grading run, so that they
# cannot be tabulated in advance: a table of the reference's values on last run's inputs
# answers nothing this run. The hand-checkable cases stay fixed (they are in the notebooks
# anyway). The grader draws a new secret for every submission; tests that need fixed
# inputs set one with ``new_run_secret(0)``.

_RUN_SECRET = [secrets.randbits(62)]
#: The secret of the public inputs every check runs on first (see :func:`run_check`).
PUBLIC_SECRET = 0


def new_run_secret(value: int | None = None) -> int:
    """Draws (or sets) the secret behind :func:`hidden_rng` and :func:`hidden_key`."""
    _RUN_SECRET[0] = secrets.randbits(62) if value is None else int(value)
    return _RUN_SECRET[0]


def hidden_rng(seed: int) -> np.random.Generator:
    """A generator for a check's random inputs: ``seed`` mixed with the run's secret."""
    return np.random.default_rng([seed, _RUN_SECRET[0]])


def hidden_key(seed: int) -> jax.Array:
    """A PRNG key for a check's random inputs: ``seed`` mixed with the run's secret."""
    secret = _RUN_SECRET[0]
    key = jax.random.fold_in(jax.random.key(seed), secret & 0x7FFFFFFF)
    return jax.random.fold_in(key, (secret >> 31) & 0x7FFFFFFF)


# ------------------------------------------------------------------ one mistake costs once


class _WithNames:
    """A plain function with some of its global names bound to other functions while it
    runs (the grader's proxy does the same in the student's kernel)."""

    def __init__(self, fn, names: dict):
        self._fn, self._names = fn, names
        self.__name__ = getattr(fn, "__name__", "function")

    def __call__(self, *args):
        space = getattr(self._fn, "__globals__", None)
        if not isinstance(space, dict):
            return self._fn(*args)
        missing = object()
        saved = {k: space.get(k, missing) for k in self._names}
        space.update(self._names)
        try:
            return self._fn(*args)
        finally:
            for k, v in saved.items():
                if v is missing:
                    space.pop(k, None)
                else:
                    space[k] = v


def with_reference_names(student_fn, **codes: str):
    """``student_fn`` with the student's OTHER answers it may call (``reparameterize``, ...)
    replaced, for the duration of each call, by the grader's correct code (``codes``: name
    -> code defining ``f``, as for :class:`KernelFunction`): a mistake in one answer then
    costs that answer's question only."""
    functions = {name: KernelFunction(code) for name, code in codes.items()}
    if hasattr(student_fn, "with_names"):  # the grader's proxy: bound in the kernel
        return student_fn.with_names(functions)
    if not callable(student_fn):
        return student_fn
    return _WithNames(student_fn, functions)


#: Correct code for the answers other questions may call (self-contained: plain jax).
REPARAMETERIZE_CODE = """
def f(key, mean, log_var):
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, jnp.shape(mean))
"""
BERNOULLI_CODE = """
def f(x, logits):
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits), -1)
"""
KL_STANDARD_NORMAL_CODE = """
def f(mean, log_var):
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
"""


def f32(x) -> jax.Array:
    return jnp.asarray(np.asarray(x, np.float64), dtype=jnp.float32)


def check_event_shape(arr: np.ndarray, batch: int, dim: int, what: str) -> None:
    """The output of a 'sum over the last axis' function on a (batch, dim) input."""
    if arr.shape == (batch,):
        return
    if arr.shape == (batch, dim):
        raise Stop(
            f"for inputs of shape ({batch}, {dim}) your {what} has shape "
            f"{arr.shape}, one value per dimension; return one value per example, "
            f"shape ({batch},): sum over the last axis (axis=-1)."
        )
    if arr.shape == ():
        raise Stop(
            f"for a batch of {batch} examples (inputs of shape ({batch}, {dim})) your "
            f"{what} is a single number; return one value per example, shape "
            f"({batch},): sum over the last axis only (axis=-1), not over the batch."
        )
    raise Stop(
        f"for inputs of shape ({batch}, {dim}) your {what} has shape {arr.shape}; "
        f"expected ({batch},), one value per example (sum over the last axis)."
    )


def compare_known(fn, cases, make_args, call: str, what: str):
    """Evaluates the student's function on hand-checkable cases.

    Returns (values, mismatches) with mismatches a list of (description, got, expected).
    """
    values, mismatches = [], []
    for description, args, expected in cases:
        got = scalar(
            as_array(call_student(fn, *make_args(args), call=call), what),
            f"{what} for 1-dimensional inputs",
        )
        values.append(got)
        if not (math.isfinite(got) and math.isclose(got, expected, rel_tol=RTOL, abs_tol=ATOL)):
            mismatches.append((description, got, expected))
    return values, mismatches


def negative_case(cases, values) -> str | None:
    for (description, _, _), got in zip(cases, values, strict=True):
        if got < -ATOL:
            return description
    return None


def bernoulli_by_hand(x, logits):
    """log p(x | logits) = sum_j [x_j l_j - softplus(l_j)] over the last axis, in float64
    (numpy): the hand formula the checks compare with."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def kl_standard_normal_by_hand(mean, log_var):
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2) over
    the last axis, in float64 (numpy): the hand formula the checks compare with."""
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)
