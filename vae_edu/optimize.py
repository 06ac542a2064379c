"""The one L-BFGS loop of the course: a fixed number of optax L-BFGS steps inside ``lax.scan``.

The lessons fit small models by minimising a smooth objective (a Gaussian to a mixture
under forward or reverse KL in notebook 02; the best diagonal q(z|x) for a fixed decoder
in notebook 08). A fixed step count keeps the loop a single compiled ``lax.scan`` (no
Python loop, no data-dependent stopping), so it runs under ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

__all__ = ["lbfgs_minimize"]


def lbfgs_minimize(objective: Callable, init, num_steps: int):
    """Minimises ``objective(params)`` by ``num_steps`` L-BFGS steps from ``init``.

    Uses ``optax.lbfgs()`` (zoom line search) and
    ``optax.value_and_grad_from_state`` so that the line search's last evaluation is
    reused. Works inside ``jit`` and ``vmap``; ``num_steps`` must be static.

    Args:
      objective: a scalar function of a pytree of arrays.
      init: the starting pytree.
      num_steps: the number of L-BFGS iterations (a Python int >= 1).

    Returns:
      The parameters after ``num_steps`` iterations (the same pytree structure as init).
    """
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (init, solver.init(init)), None, length=num_steps)
    return params
