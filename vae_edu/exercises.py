"""In-lesson coding exercises: run the student's function through a check, never break the lesson.

A lesson's exercise is three cells (tagged in the notebook's cell metadata):

* ``exercise``: a stub the student fills in. The stub convention is one line,

      raise NotImplementedError("Exercise 2.1: your code here")

  (:func:`stub_message` gives the text), so that :func:`run` can tell "not done yet" apart
  from "done, but wrong".
* ``solution``: the worked solution, in a collapsed cell under a "Solution (try first)"
  heading (both cells are tagged ``solution``; the student edition drops them).
* ``feedback``: ``kl_diag = exercises.run(check_kl_two_gaussians, kl_diag,
  kl_diag_gaussians, name="Exercise 2.1")``. It prints one verdict and returns the function
  the rest of the lesson uses:

  - the stub: "not done yet", and the lesson goes on with the package's reference
    implementation (named);
  - a correct function: "correct", and the lesson goes on with the student's function;
  - a wrong function: the check's named feedback ("you computed KL(p || q) instead of
    KL(q || p) ..."), and the lesson goes on with the reference.

:func:`run` never raises, whatever the student's function does (raises, returns None,
calls ``sys.exit``...), except for ``KeyboardInterrupt``: interrupting the kernel
must still interrupt it.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Outcome", "evaluate", "reference_name", "run", "stub_message"]


def stub_message(name: str) -> str:
    """The message of an exercise's stub: ``raise NotImplementedError(stub_message("2.1"))``.

    Written out in the notebooks as ``raise NotImplementedError("Exercise 2.1: your code
    here")``, which is the same text.
    """
    label = name if name.lower().startswith("exercise") else f"Exercise {name}"
    return f"{label}: your code here"


def reference_name(fn: Callable) -> str:
    """``module.qualname`` of a function, e.g. ``vae_edu.kl.kl_diag_gaussians``."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:
        return repr(fn)
    return f"{module}.{qualname}" if module else qualname


class Outcome:
    """What :func:`evaluate` found.

    Attributes:
      status: "stub", "correct" or "wrong".
      message: the text :func:`run` prints (several lines for "wrong").
      function: the function the lesson goes on with.
    """

    def __init__(self, status: str, message: str, function: Callable):
        self.status = status
        self.message = message
        self.function = function

    def __repr__(self) -> str:
        return f"Outcome(status={self.status!r})"


class _StubTracker:
    """Wraps the student's function and remembers whether it raised NotImplementedError."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.hit_stub = False

    def wrapped(self) -> Callable:
        fn = self.fn

        def student(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except NotImplementedError:
                self.hit_stub = True
                raise

        student.__name__ = getattr(fn, "__name__", "student")
        student.__doc__ = getattr(fn, "__doc__", None)
        return student


def evaluate(check: Callable, student_fn, reference_fn: Callable, *, name: str) -> Outcome:
    """Runs ``check(student_fn)`` and decides which function the lesson goes on with.

    Args:
      check: a check returning an object with ``passed`` and ``messages`` (a
        :class:`vae_edu.grading.CheckResult`), e.g. ``vae_edu.grading.check_kl_two_gaussians``.
      student_fn: the student's function (or anything else: None, a number...).
      reference_fn: the package's implementation with the same signature.
      name: the exercise's name for the messages, e.g. "Exercise 2.1".

    Returns:
      An :class:`Outcome`; never raises, except ``KeyboardInterrupt``.
    """
    reference = f"`{reference_name(reference_fn)}`"
    fallback = f"the lesson goes on with the reference implementation {reference}."
    if student_fn is None:
        return Outcome(
            "wrong",
            f"{name}: there is no function to check (got None: did you define it in the "
            f"cell above and run that cell?); " + fallback,
            reference_fn,
        )
    if student_fn is reference_fn:
        # The feedback cell ran again without the student's cell: the name now holds the
        # reference this cell returned last time.
        return Outcome(
            "stub",
            f"{name}: not done yet: the function is still the reference implementation "
            f"{reference} (this cell returned it when it last ran). Run the cell with your "
            "function, then this cell again.",
            reference_fn,
        )
    tracker = _StubTracker(student_fn) if callable(student_fn) else None
    candidate = tracker.wrapped() if tracker is not None else student_fn
    try:
        result = check(candidate)
        passed = bool(result.passed)
        messages = [str(m) for m in result.messages]
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a lesson must never break here
        passed = False
        messages = [f"the check could not run your function: {type(err).__name__}: {err}"]
    if tracker is not None and tracker.hit_stub:
        return Outcome("stub", f"{name}: not done yet: {fallback}", reference_fn)
    if passed:
        detail = messages[0] if messages else "correct."
        detail = detail[:1].lower() + detail[1:]
        if not detail.startswith("correct"):
            detail = "correct: " + detail
        own = getattr(student_fn, "__name__", "function")
        return Outcome(
            "correct", f"{name}: {detail}\nThe lesson goes on with your `{own}`.", student_fn
        )
    lines = [f"{name}: not correct yet."]
    lines += [f"- {m}" for m in messages]
    lines.append(fallback[:1].upper() + fallback[1:])
    return Outcome("wrong", "\n".join(lines), reference_fn)


def run(check: Callable, student_fn, reference_fn: Callable, *, name: str) -> Callable:
    """Prints the verdict on the student's function and returns the function to go on with.

    ``kl_diag = run(check_kl_two_gaussians, kl_diag, kl_diag_gaussians, name="Exercise 2.1")``
    prints "Exercise 2.1: not done yet: the lesson goes on with the reference implementation
    `vae_edu.kl.kl_diag_gaussians`." for the stub, "Exercise 2.1: correct: ..." for a correct
    function, or the check's named feedback followed by "The lesson goes on with the
    reference implementation ..." for a wrong one (see :func:`evaluate`).

    Returns:
      The student's function if it passes the check, else ``reference_fn``.
    """
    outcome = evaluate(check, student_fn, reference_fn, name=name)
    print(outcome.message)
    return outcome.function
