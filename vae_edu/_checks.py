"""Input validation shared by the package's modules (private by name, shared by design).

Shapes are static under ``jax.jit``, so these checks run at trace time and cost nothing
inside compiled code. Each error names the arguments and their shapes, so a student sees
*which* array is wrong, not a broadcasting traceback from deep inside JAX.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def as_float(x, name: str):
    """Converts ``x`` to a floating JAX array (keeps float64 if x64 is on), naming it on failure."""
    try:
        arr = jnp.asarray(x)
    except TypeError as err:  # e.g. a string, None, a dict or an array of strings
        dtype = getattr(x, "dtype", None)
        if dtype is not None:
            raise TypeError(f"{name} must hold numbers, got dtype {dtype}") from err
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from err
    except ValueError as err:  # e.g. a ragged list [[0.0, 1.0], [0.0]]
        raise ValueError(
            f"{name} is not a rectangular array: a ragged {type(x).__name__} (rows of "
            f"different lengths) or a sequence mixing numbers and arrays cannot be converted "
            f"({err})"
        ) from None
    if not (jnp.issubdtype(arr.dtype, jnp.number) or jnp.issubdtype(arr.dtype, jnp.bool_)):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):  # astype(float) drops the imaginary part
        raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def broadcast_shape(**arrays) -> tuple[int, ...]:
    """The broadcast shape of the named arrays, or a ValueError naming every shape."""
    shapes = {name: tuple(np.shape(a)) for name, a in arrays.items()}
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        listed = ", ".join(f"{n} has shape {s}" for n, s in shapes.items())
        raise ValueError(f"shapes do not broadcast: {listed}") from None


def same_shape(a, b, name_a: str, name_b: str) -> None:
    """Raises a ValueError naming both shapes unless ``a`` and ``b`` have the same shape."""
    sa, sb = tuple(np.shape(a)), tuple(np.shape(b))
    if sa != sb:
        raise ValueError(f"{name_a} has shape {sa} but {name_b} has shape {sb}; they must match")


def at_least_1d(x, name: str) -> None:
    """Raises a ValueError unless ``x`` has a last (event) axis to sum over."""
    if np.ndim(x) < 1:
        raise ValueError(f"{name} must have at least one axis (the event axis), got a scalar")


def positive_finite_scalar(value, name: str) -> float:
    """``float(value)``, or a ValueError naming ``name`` unless it is finite and > 0."""
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def count(value, name: str, minimum: int = 1) -> int:
    """``int(value)`` for a Python/NumPy integer >= ``minimum`` (sizes, sample counts, steps).

    Sizes are static shapes under ``jax.jit``, so a float such as 10.0 is refused rather
    than rounded.

    Raises:
      TypeError: ``value`` is not an integer (a bool, a float, a string, None ...).
      ValueError: ``value < minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


# --- added for the lessons' slider values (helper W2)


def finite_scalar(value, name: str) -> float:
    """``float(value)``, or a ValueError naming ``name`` unless it is a finite number."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


# --------------------------------------------------------------------------------------
# Value checks that need concrete arrays (skipped under jit / vmap / grad)
# --------------------------------------------------------------------------------------


def concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array, or None when it is a tracer (inside jit / vmap / grad).

    Checks that need the *values* of an array run only on concrete arrays: under a JAX
    transformation the values do not exist yet (shapes, checked elsewhere, always do).
    """
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def batch_index(bad) -> str:
    """`` at batch index (i, j)`` naming the first True entry of ``bad`` ("" if a scalar)."""
    if np.ndim(bad) == 0:
        return ""
    return f" at batch index {tuple(int(i) for i in np.argwhere(bad)[0])}"


def finite(x, name: str, *, event_axis: bool = True) -> None:
    """A ValueError naming ``name`` (and the batch index) if concrete ``x`` has NaN or inf.

    With ``event_axis`` the last axis is the event axis, so the reported batch index is the
    index of the leading axes; otherwise it is the index of the entry itself.
    """
    values = concrete(x)
    if values is None or values.size == 0:
        return
    bad = ~np.isfinite(values)
    if not np.any(bad):
        return
    first = values[tuple(np.argwhere(bad)[0])] if values.ndim else values
    if event_axis and values.ndim >= 1:
        bad = np.any(bad, axis=-1)
    raise ValueError(f"{name} must be finite, got {first}{batch_index(bad)}")
