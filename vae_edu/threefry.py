"""Uniform random numbers on the CPU: JAX's own draws, with the Threefry rounds unrolled.

Why this module exists (it is speed, not a lesson): dynamic binarization draws one uniform
per pixel per training step, 47 million per epoch of MNIST. ``jax.random`` makes them with
the Threefry-2x32 hash (Salmon et al. 2011), 20 rounds of add, rotate and xor on a pair of
32-bit counters. On the CPU, JAX emits those rounds as a *rolled* loop (smaller programs
and faster compilation: ``jax/_src/random/threefry2x32.py``), so every group of four
rounds is a separate pass over the counters; on GPUs it unrolls them. :func:`uniform`
computes the same hash with the rounds written out, which XLA compiles into one pass, and
returns **the same bits** as ``jax.random.uniform(key, shape, jnp.float32)``:
``tests/test_threefry.py`` compares the two bit for bit and checks the hash against the
published known-answer vectors. Whenever the draw would not be JAX's (a key of another PRNG
implementation, the ``jax_threefry_partitionable`` flag switched off, 2**32 numbers or
more, an array of keys), :func:`uniform` simply calls ``jax.random.uniform`` (which
refuses a key array).

How JAX turns a Threefry key into uniforms (its default, "partitionable" scheme): element
n of the (row-major) output hashes the 64-bit counter n, split into its high and low 32-bit
words, under the key's two words; the two output words are xor-ed into 32 random bits b;
the top 23 bits become the mantissa of a float in [1, 2), and 1 is subtracted:
u = bitcast(b >> 9 | 0x3F800000) - 1, a multiple of 2**-23 in [0, 1).
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["threefry2x32", "uniform"]

# Rotation distances of Threefry-2x32 (Salmon et al. 2011, Table 4): rounds alternate
# between the two groups of four; the key is injected after every fourth round.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_SCHEDULE_PARITY = 0x1BD11BDA  # the Threefish key-schedule constant


def _rotate_left(v: jax.Array, distance: int) -> jax.Array:
    return lax.shift_left(v, np.uint32(distance)) | lax.shift_right_logical(
        v, np.uint32(32 - distance)
    )


def threefry2x32(key0, key1, x0, x1) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash with 20 rounds (Salmon et al. 2011), rounds unrolled.

    With key words k0, k1 and k2 = k0 ^ k1 ^ 0x1BD11BDA, the counter pair (x0, x1) gets
    x0 += k0, x1 += k1, then 5 times: four rounds of ``x0 += x1; x1 = rotl(x1, r) ^ x0``
    with the rotation distances r of the round group, followed by the key injection
    x0 += k[(i+1) mod 3], x1 += k[(i+2) mod 3] + (i+1) for i = 0..4 (mod 2**32 throughout).

    Args:
      key0, key1: uint32 key words (scalars, or arrays broadcastable against the counters).
      x0, x1: uint32 counter words of one shape.

    Returns:
      The two uint32 output words, each of the counters' shape.
    """
    ks = (key0, key1, key0 ^ key1 ^ np.uint32(_KEY_SCHEDULE_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for distance in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, distance) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _is_jax_threefry(key: jax.Array) -> bool:
    """Whether jax.random draws from ``key`` with the scheme written out above."""
    return str(jax.random.key_impl(key)) == "threefry2x32" and bool(
        jax.config.jax_threefry_partitionable
    )


def uniform(key: jax.Array, shape: int | tuple[int, ...]) -> jax.Array:
    """float32 uniforms on [0, 1): bit for bit ``jax.random.uniform(key, shape, jnp.float32)``.

    Compiled (``jax.jit``) also when called eagerly: op by op, the 20 rounds would each
    materialize the whole counter array (31 MB apiece for the 10,000 test images).

    Args:
      key: a JAX PRNG key (typed, or legacy raw uint32 key data); also under ``jax.vmap``.
      shape: the output shape.

    Returns:
      (*shape) float32, each a multiple of 2**-23 in [0, 1).
    """
    shape = (shape,) if isinstance(shape, int) else shape
    return _uniform(key, tuple(operator.index(n) for n in shape))  # refuses 2.0 as JAX does


@functools.partial(jax.jit, static_argnums=1)
def _uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    size = math.prod(shape)
    words = jax.random.key_data(key)
    if size == 0 or size >= 2**32 or words.shape != (2,) or not _is_jax_threefry(key):
        return jax.random.uniform(key, shape, jnp.float32)  # also its error for a key array
    counter = lax.iota(np.uint32, size).reshape(shape)  # the low word; the high word is 0
    high, low = threefry2x32(words[..., 0], words[..., 1], jnp.zeros_like(counter), counter)
    mantissa = lax.shift_right_logical(high ^ low, np.uint32(9))
    one_to_two = lax.bitcast_convert_type(mantissa | np.uint32(0x3F800000), jnp.float32)
    return one_to_two - np.float32(1.0)
