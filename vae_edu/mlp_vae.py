r"""A small VAE written as plain functions of a parameter dict (assignment A3).

The :mod:`vae_edu.models` VAE hides its weights inside Flax modules. Assignment A3 asks
students to write the training loss and the training step themselves, so its model is
spelled out here with nothing but :mod:`jax.numpy`:

* ``params`` is a flat ``dict`` of arrays (``enc_w1``, ``enc_b1``, ``enc_w2``, ``enc_b2``,
  ``dec_w1``, ``dec_b1``, ``dec_w2``, ``dec_b2``): one hidden ReLU layer in the encoder
  and one in the decoder;
* :func:`encode` maps (B, 784) images to the mean and log-variance of q(z | x), each (B, d);
* :func:`decode` maps (..., d) codes to (..., 784) Bernoulli logits.

:data:`BUDGET` is the assignment's training budget and target (one place: the notebook,
the grader and the tests read it from here). :func:`negative_elbo` and :func:`train_step`
are the reference answers the grader compares with (a submission may not use them).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_edu import data

__all__ = [
    "BUDGET",
    "Budget",
    "decode",
    "encode",
    "init_params",
    "negative_elbo",
    "run_steps",
    "run_training",
    "step_batch",
    "step_key",
    "test_elbo",
    "test_images",
    "train_step",
    "training_images",
]

PARAM_NAMES = ("dec_b1", "dec_b2", "dec_w1", "dec_w2", "enc_b1", "enc_b2", "enc_w1", "enc_w2")


@dataclasses.dataclass(frozen=True)
class Budget:
    """A3's training run: what the grader re-runs with the student's ``train_step``.

    Attributes:
      num_train_images: the first N MNIST training images, binarized once with
        ``jax.random.key(data_seed)``.
      hidden: units of the encoder's and of the decoder's hidden layer.
      latent_dim: d.
      batch_size, num_steps, learning_rate: Adam steps on consecutive batches (see
        :func:`step_batch`), the loss key of step t is :func:`step_key`.
      seed: the initial weights are ``init_params(jax.random.key(seed), ...)``.
      target_elbo: the test ELBO (nats per image, first ``num_test_images`` test images,
        binarized with ``key(data_seed)``, one sample with ``key(0)``) the trained
        parameters must reach.
      checkpoint_every: the grader verifies the run in segments of this many steps.
    """

    num_train_images: int = 10_000
    hidden: int = 200
    latent_dim: int = 2
    batch_size: int = 100
    num_steps: int = 1_000
    learning_rate: float = 2e-3
    seed: int = 0
    data_seed: int = 1
    num_test_images: int = 2_000
    target_elbo: float = -170.0
    checkpoint_every: int = 200


#: The A3 budget and target.
BUDGET = Budget()


def init_params(
    key, hidden: int = BUDGET.hidden, latent_dim: int = BUDGET.latent_dim, pixel_mean=None
) -> dict:
    """Initial weights: LeCun-normal matrices, zero biases (decoder output bias at
    logit(pixel_mean) when given, so the untrained decoder draws the average image)."""
    keys = jax.random.split(key, 4)

    def dense(k, n_in, n_out):
        return jax.random.normal(k, (n_in, n_out), jnp.float32) / jnp.sqrt(n_in)

    out_bias = jnp.zeros(784, jnp.float32)
    if pixel_mean is not None:
        p = jnp.clip(jnp.asarray(pixel_mean, jnp.float32), 1e-3, 1 - 1e-3)
        out_bias = jnp.log(p) - jnp.log1p(-p)
    return {
        "enc_w1": dense(keys[0], 784, hidden),
        "enc_b1": jnp.zeros(hidden, jnp.float32),
        "enc_w2": dense(keys[1], hidden, 2 * latent_dim),
        "enc_b2": jnp.zeros(2 * latent_dim, jnp.float32),
        "dec_w1": dense(keys[2], latent_dim, hidden),
        "dec_b1": jnp.zeros(hidden, jnp.float32),
        "dec_w2": dense(keys[3], hidden, 784),
        "dec_b2": out_bias,
    }


def encode(params: dict, x):
    """q(z | x) = N(mean, diag exp(log_var)): ``(mean, log_var)``, each (..., d)."""
    h = jax.nn.relu(x @ params["enc_w1"] + params["enc_b1"])
    out = h @ params["enc_w2"] + params["enc_b2"]
    mean, log_var = jnp.split(out, 2, axis=-1)
    return mean, log_var


def decode(params: dict, z):
    """The Bernoulli logits f(z), (..., 784)."""
    h = jax.nn.relu(z @ params["dec_w1"] + params["dec_b1"])
    return h @ params["dec_w2"] + params["dec_b2"]


# BEGIN GRADER ONLY: _terms, negative_elbo, train_step
# The reference answers of A3 Questions 1 and 2: the grader needs them, students must not
# get them, so the student kit's wheel replaces this region by stubs
# (vae_edu.assignments.kit.strip_grader_only).
def _terms(params, key, x):
    mean, log_var = encode(params, x)
    eps = jax.random.normal(key, mean.shape)
    z = mean + jnp.exp(0.5 * log_var) * eps
    logits = decode(params, z)
    reconstruction = jnp.sum(
        x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits), axis=-1
    )
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
    return reconstruction, kl


def negative_elbo(params: dict, key, x):
    """Reference: batch mean of -log p(x | z) + KL(q(z | x) || N(0, I)), one sample
    ``z = mean + exp(log_var / 2) * eps`` with ``eps = jax.random.normal(key, mean.shape)``."""
    reconstruction, kl = _terms(params, key, x)
    return jnp.mean(kl - reconstruction)


def train_step(loss_fn, params, opt_state, key, x, optimizer=None):
    """Reference: one Adam step on ``loss_fn(params, key, x)``; ``(params, opt_state, loss)``."""
    optimizer = optimizer or optax.adam(BUDGET.learning_rate)
    loss, grads = jax.value_and_grad(loss_fn)(params, key, x)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


# END GRADER ONLY


def step_key(seed: int, step: int):
    """The loss key of training step ``step``."""
    return jax.random.fold_in(jax.random.key(seed), step)


def step_batch(images, step, batch_size: int = BUDGET.batch_size):
    """The batch of step ``step``: images ``[s * B, (s + 1) * B)`` modulo N (a multiple of B)."""
    n = images.shape[0]
    start = (step * batch_size) % n
    return jax.lax.dynamic_slice_in_dim(jnp.asarray(images), start, batch_size)


def run_steps(
    step_fn, loss_fn, params, opt_state, images, start: int, num_steps: int, budget: Budget = BUDGET
):
    """Steps ``start, ..., start + num_steps - 1`` of the A3 training run, compiled as one loop.

    Step t is ``step_fn(loss_fn, params, opt_state, step_key(seed, t), step_batch(images, t))``
    (a student's ``train_step`` or :func:`train_step`). Returns ``(params, opt_state, losses)``.
    """

    run = _runner(step_fn, loss_fn, num_steps, budget.seed, budget.batch_size)
    return run(params, opt_state, jnp.asarray(images), start)


@functools.lru_cache(maxsize=16)
def _runner(step_fn, loss_fn, num_steps: int, seed: int, batch_size: int):
    def body(t, carry):
        params, opt_state, losses, images, start = carry
        key = step_key(seed, start + t)
        x = step_batch(images, start + t, batch_size)
        params, opt_state, loss = step_fn(loss_fn, params, opt_state, key, x)
        losses = losses.at[t].set(jnp.asarray(loss, jnp.float32).reshape(()))
        return params, opt_state, losses, images, start

    @jax.jit
    def run(params, opt_state, images, start):
        carry = (params, opt_state, jnp.zeros(num_steps, jnp.float32), images, start)
        params, opt_state, losses, _, _ = jax.lax.fori_loop(0, num_steps, body, carry)
        return params, opt_state, losses

    return run


@functools.lru_cache(maxsize=2)
def training_images(budget: Budget = BUDGET) -> np.ndarray:
    """The binarized training images (float32 0/1, (num_train_images, 784)), shuffled once.

    Cached: the same read-only array on every call."""
    images = data.to_unit_interval(data.load_mnist("train").images[: budget.num_train_images])
    images = jnp.asarray(images, jnp.float32).reshape(-1, 784)
    key = jax.random.key(budget.data_seed)
    binary = data.binarize(key, images)
    order = jax.random.permutation(jax.random.fold_in(key, 1), binary.shape[0])
    out = np.array(binary[order], np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=2)
def test_images(budget: Budget = BUDGET) -> np.ndarray:
    """The binarized test images (float32 0/1, (num_test_images, 784)); cached, read-only."""
    images = data.to_unit_interval(data.load_mnist("test").images[: budget.num_test_images])
    images = jnp.asarray(images, jnp.float32).reshape(-1, 784)
    out = np.array(data.binarize(jax.random.key(budget.data_seed), images), np.float32)
    out.flags.writeable = False
    return out


def test_elbo(params: dict, images) -> float:
    """The ELBO (nats per image) of ``params`` on ``images``: one sample, ``key(0)``."""
    reconstruction, kl = jax.jit(_terms)(params, jax.random.key(0), jnp.asarray(images))
    return float(jnp.mean(reconstruction - kl))


def run_training(step_fn, params, images, loss_fn, budget=None) -> dict:
    """The whole A3 run with ``step_fn``, starting from ``params`` and a fresh Adam state.

    Returns ``{"checkpoints": [(params, opt_state), ...], "final": (params, opt_state),
    "losses": (num_steps,)}``, a checkpoint before every segment of
    ``budget.checkpoint_every`` steps (what the grader verifies, segment by segment).
    """
    if isinstance(budget, dict):
        budget = Budget(**budget)
    budget = budget or BUDGET
    images = jnp.asarray(images, jnp.float32)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    opt_state = optax.adam(budget.learning_rate).init(params)
    checkpoints, losses = [], []
    for start in range(0, budget.num_steps, budget.checkpoint_every):
        checkpoints.append((params, opt_state))
        size = min(budget.checkpoint_every, budget.num_steps - start)
        params, opt_state, segment = run_steps(
            step_fn, loss_fn, params, opt_state, images, start, size, budget
        )
        losses.append(segment)
    return {
        "checkpoints": checkpoints,
        "final": (params, opt_state),
        "losses": jnp.concatenate(losses),
    }
