"""Tests for vae_edu.threefry: the published Threefry-2x32 vectors; JAX's draws bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from vae_edu import threefry

# Known-answer vectors of Threefry-2x32 with 20 rounds, from the Random123 distribution
# (Salmon et al. 2011, kat_vectors): (key words, counter words) -> output words.
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def as_bits(a) -> np.ndarray:
    return np.asarray(a).view(np.uint32)


@pytest.mark.parametrize("key, counter, expected", KNOWN_ANSWERS)
def test_hash_gives_the_published_known_answers(key, counter, expected):
    out = threefry.threefry2x32(*(jnp.uint32(w) for w in (*key, *counter)))
    assert tuple(int(w) for w in out) == expected


def test_hash_agrees_with_jax_on_random_counters():
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2**32, size=2, dtype=np.uint32)
    counters = rng.integers(0, 2**32, size=(2, 1000), dtype=np.uint32)
    words = (*jnp.asarray(key), *jnp.asarray(counters))
    ours = np.concatenate([np.asarray(w) for w in threefry.threefry2x32(*words)])
    # JAX hashes the first half of its count array as x0 and the second half as x1.
    theirs = np.asarray(threefry_2x32(jnp.asarray(key), jnp.asarray(counters.reshape(-1))))
    np.testing.assert_array_equal(ours, theirs)


SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (128, 784)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 123456789])
def test_uniform_is_jax_random_uniform_bit_for_bit(shape, seed):
    key = jax.random.fold_in(jax.random.key(seed), 17)
    expected = as_bits(jax.random.uniform(key, shape))
    np.testing.assert_array_equal(as_bits(threefry.uniform(key, shape)), expected)
    jitted = jax.jit(threefry.uniform, static_argnums=1)
    np.testing.assert_array_equal(as_bits(jitted(key, shape)), expected)
    raw = jax.random.key_data(key)  # a legacy uint32 key gives the same draw
    np.testing.assert_array_equal(as_bits(threefry.uniform(raw, shape)), expected)


def test_uniform_under_vmap_over_keys():
    keys = jax.random.split(jax.random.key(5), 6)
    ours = jax.jit(jax.vmap(lambda k: threefry.uniform(k, (4, 9))))(keys)
    theirs = jax.vmap(lambda k: jax.random.uniform(k, (4, 9)))(keys)
    np.testing.assert_array_equal(as_bits(ours), as_bits(theirs))
    u = np.asarray(ours)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u * 2**23 == np.round(u * 2**23))  # multiples of 2**-23


def test_other_generators_and_the_old_counter_layout_fall_back_to_jax():
    for impl in ("rbg", "unsafe_rbg"):
        key = jax.random.key(0, impl=impl)
        np.testing.assert_array_equal(
            as_bits(threefry.uniform(key, (3, 4))), as_bits(jax.random.uniform(key, (3, 4)))
        )
    key = jax.random.key(3)
    with jax.threefry_partitionable(False):  # JAX's older counter layout: not ours
        expected = as_bits(jax.random.uniform(key, (5, 6)))
        np.testing.assert_array_equal(as_bits(threefry.uniform(key, (5, 6))), expected)
    assert not np.array_equal(expected, as_bits(jax.random.uniform(key, (5, 6))))
    assert threefry.uniform(key, (0, 3)).shape == (0, 3)


def test_a_key_array_is_refused_as_jax_refuses_it():
    keys = jax.random.split(jax.random.key(0), 3)  # a common slip: split(key) for a key
    for call in (lambda: threefry.uniform(keys, (4, 3)), lambda: jax.random.uniform(keys, (4,))):
        with pytest.raises((TypeError, ValueError), match="single key"):
            call()


def test_shapes_as_jax_takes_them():
    key = jax.random.key(1)
    np.testing.assert_array_equal(
        as_bits(threefry.uniform(key, 5)), as_bits(jax.random.uniform(key, 5))
    )
    with pytest.raises(TypeError):
        threefry.uniform(key, (2.0, 3))


X64_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from vae_edu import data, threefry
assert jax.config.jax_enable_x64
key = jax.random.key(7)
bits = lambda a: np.asarray(a).view(np.uint32)
u = threefry.uniform(key, (33, 5))
assert u.dtype == np.float32
np.testing.assert_array_equal(bits(u), bits(jax.random.uniform(key, (33, 5), jnp.float32)))
p = np.linspace(0.0, 1.0, 165).reshape(33, 5)
for dtype in (np.float64, np.float32):
    expected = jax.random.bernoulli(key, p.astype(dtype)).astype(np.float32)
    np.testing.assert_array_equal(data.binarize(key, p.astype(dtype)), expected)
print("x64 ok")
"""


def test_with_64_bit_mode_switched_on(tmp_path):
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT],
        env={**os.environ, "JAX_ENABLE_X64": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "x64 ok" in done.stdout
