"""Training the VAE with optax, one jitted call per chunk of steps.

The lesson in this module is *speed*: a training step of the 784-400-20 model at batch 128
is a few milliseconds of matrix products, so a Python loop that dispatches each step (and
each tiny op) separately spends most of its time in overhead. Here

1. the NNX model is split once into a static graph definition and a pytree of parameters
   (``nnx.split``) *outside* the jitted function, and re-assembled inside it
   (``nnx.merge``), so jit sees only arrays;
2. an epoch's batches are pre-shuffled into an index array (num_batches, batch_size);
3. ``jax.lax.scan`` runs ``steps_per_call`` steps (forward, backward, Adam update) inside
   ONE compiled call; between calls a tqdm bar is updated with the live loss. There is no
   per-step Python dispatch;
4. before a chunk's first step, its batches are gathered, scaled and dynamically binarized
   in one pass (``(S, B, D)``: 20 MB for 50 steps of MNIST), with each step's own
   binarization key, so the binary images are bit for bit those that
   ``data.binarize(binarize_key, batch)`` would give inside the step. The step itself is
   then only the model: loss, gradient and Adam update. (Inside the step, JAX's Threefry
   draw ran as a rolled loop of separate passes before the first matrix product could
   start; with its rounds unrolled, ``vae_edu.threefry``, XLA fused it into each of the
   three operations that read the binary batch and computed it three times.)

Randomness is derived, never stored: with ``root = jax.random.key(seed)`` (a typed key; its
key data equal those of the legacy ``PRNGKey(seed)``, so every draw is the same), the initial
weights use
``fold_in(root, 0)``, epoch e uses ``fold_in(fold_in(root, 1), e)`` (its permutation, its
binarization and its reparameterization noise), and the test-set ELBO after every epoch
uses the fixed ``fold_in(root, 2)``. So a run resumed from a checkpoint after epoch e
replays exactly the same epochs e+1, e+2, ... as an uninterrupted run.

Example::

    result = train(VAEConfig(hidden_sizes=(400,), latent_dim=20),
                   TrainConfig(num_epochs=10, seed=0))
    result.model.encode(x)
    result.history["test_elbo"]      # one value per epoch, nats
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from vae_edu import checkpoints, evaluate
from vae_edu import data as data_lib
from vae_edu.config import SCHEDULES, TARGETS, TrainConfig  # noqa: F401 (moved; re-exported)
from vae_edu.data import prepare_images
from vae_edu.models import VAE, VAEConfig

__all__ = [
    "TrainConfig",
    "TrainState",
    "TrainResult",
    "HISTORY_KEYS",
    "train",
    "make_optimizer",
    "init_model",
    "prepare_images",
    "training_images",
    "mean_image",
    "epoch_key",
    "test_key",
    "epoch_plan",
    "chunk_batches",
    "make_chunk_runner",
    "optimizer_step",
    "chunk_runner",
    "run_epoch",
]

HISTORY_KEYS = (
    "epoch",
    "train_reconstruction",
    "train_kl",
    "train_elbo",
    "test_reconstruction",
    "test_kl",
    "test_elbo",
    "seconds",
)


class TrainState(NamedTuple):
    """Everything needed to continue training (what a checkpoint stores).

    Attributes:
      params: the model parameters as a pure nested dict (``nnx.to_pure_dict``).
      opt_state: the optax state (Adam moments, step count of the schedule).
      epoch: number of completed epochs; the next epoch's key is ``epoch_key(seed, epoch)``.
    """

    params: Any
    opt_state: Any
    epoch: int


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      model: the trained :class:`~vae_edu.models.VAE`.
      history: dict of equal-length lists, keys :data:`HISTORY_KEYS` (nats per example;
        ``train_*`` are averages over the epoch's steps, ``test_*`` are the ELBO terms on
        the test set with a fixed binarization and noise key).
      state: the final :class:`TrainState`.
      wall_seconds: total time of this call (compilation included).
    """

    model: VAE
    history: dict[str, list]
    state: TrainState
    wall_seconds: float


# ----------------------------------------------------------------------------- building blocks
def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key of (0-based) epoch ``epoch``: fold_in(fold_in(key(seed), 1), epoch), typed."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), epoch)


def test_key(seed: int) -> jax.Array:
    """The fixed key of the test-set ELBO after every epoch: fold_in(key(seed), 2), typed.

    The same key every epoch (its binarization and its reparameterization noise), so the
    per-epoch test ELBOs differ only because the model changed.
    """
    return jax.random.fold_in(jax.random.key(seed), 2)


test_key.__test__ = False  # a key maker, not a test: keeps pytest from collecting an import


def init_model(model_config: VAEConfig, seed: int, pixel_mean=None) -> VAE:
    """A freshly initialised VAE for ``seed`` (weights from fold_in(key(seed), 0)).

    Args:
      model_config: the architecture.
      seed: the training seed.
      pixel_mean: optional (input_dim,) mean training image; the decoder's output bias
        then starts at its logit.
    """
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: VAE(model_config, rngs=nnx.Rngs(0))))
    model = nnx.merge(graphdef, _init_params(model_config, jax.random.key(seed)))
    if pixel_mean is not None:
        model.set_output_bias(pixel_mean)
    return model


def training_images(images, input_dim: int = 784) -> jax.Array:
    """The training set as :func:`train` keeps it on the device: (N, input_dim).

    uint8 pixels stay uint8 (a quarter of the memory of float32: 47 MB instead of 188 MB
    for MNIST's 60,000 images) and each training step scales its own batch to [0, 1] with
    the same float32 table as :func:`vae_edu.data.prepare_images`, so the numbers are
    identical; anything else goes through :func:`~vae_edu.data.prepare_images` (float32).

    Args:
      images: uint8 (N, 28, 28) / (N, input_dim) pixels 0..255, or floats in [0, 1].
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        return prepare_images(arr, input_dim)
    if arr.ndim < 2 or math.prod(arr.shape[1:]) != input_dim:
        raise ValueError(  # the words of data.prepare_images
            f"images have shape {arr.shape}; expected (N, {input_dim}) or (N, 28, 28) for "
            f"input_dim={input_dim}"
        )
    return jnp.asarray(arr.reshape(arr.shape[0], input_dim))


def mean_image(images, chunk: int = 4096) -> np.ndarray:
    """The mean training image (input_dim,) float32, as :func:`train` computes it.

    Equal, bit for bit, to ``np.asarray(prepare_images(images)).mean(axis=0)`` (float32
    rows added one after the other, then divided by N), without the float32 copy of the
    whole set: uint8 images are scaled ``chunk`` rows at a time and the running sum is
    carried from chunk to chunk.

    Args:
      images: (N, D) or (N, 28, 28) uint8 pixels, or (N, D) floats in [0, 1] (host or
        device array).
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        return np.asarray(prepare_images(arr, math.prod(arr.shape[1:]))).mean(axis=0)
    arr = arr.reshape(arr.shape[0], -1)
    total = None
    for start in range(0, arr.shape[0], chunk):
        block = np.asarray(prepare_images(arr[start : start + chunk], arr.shape[1]))
        if total is not None:  # numpy adds the rows of an axis-0 sum in order: carry it on
            block = np.concatenate([total[None], block])
        total = np.add.reduce(block, axis=0)
    return total / np.float32(arr.shape[0])


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model_config: VAEConfig, root_key: jax.Array):
    # One compiled call instead of one compilation per initializer op and layer shape.
    model = VAE(model_config, rngs=nnx.Rngs(params=jax.random.fold_in(root_key, 0)))
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_plan(key: jax.Array, num_examples: int, batch_size: int):
    """An epoch's shuffled batches and step keys, decided before the epoch runs.

    Args:
      key: the epoch's key (:func:`epoch_key`; typed or legacy raw), split into a
        permutation key and a key for the steps.
      num_examples: N; the last ``N mod batch_size`` shuffled examples are dropped.
      batch_size: B.

    Returns:
      ``(batch_index, step_keys)``: (S, B) int32 rows of the training images, S = N // B,
      and (S, 2) uint32 key *data*, one key per step (``jax.random.key_data``: plain
      integers, so the caller can keep them in numpy and slice them without a device
      call; :func:`make_chunk_runner`'s function wraps them back with
      ``jax.random.wrap_key_data``).
    """
    num_steps = num_examples // batch_size
    perm_key, steps_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, num_examples)[: num_steps * batch_size]
    return (
        order.reshape(num_steps, batch_size).astype(jnp.int32),
        jax.random.key_data(jax.random.split(steps_key, num_steps)),
    )


def make_optimizer(train_config: TrainConfig, num_examples: int) -> optax.GradientTransformation:
    """Adam with the configured learning-rate schedule (steps counted over all epochs)."""
    return _optimizer(*_optimizer_spec(train_config, num_examples))


def _optimizer_spec(train_config: TrainConfig, num_examples: int) -> tuple:
    """The hashable numbers that define the optimizer (a cache key for compiled code)."""
    if train_config.schedule == "constant":  # the step counts do not matter then
        return (train_config.learning_rate, "constant", 0, 0, 0.0)
    steps_per_epoch = num_examples // train_config.batch_size
    return (
        train_config.learning_rate,
        train_config.schedule,
        max(steps_per_epoch * train_config.num_epochs, 1),
        steps_per_epoch * train_config.warmup_epochs,
        train_config.final_lr_fraction,
    )


def _optimizer(
    lr: float, schedule_name: str, total_steps: int, warmup_steps: int, final_fraction: float
) -> optax.GradientTransformation:
    if schedule_name == "constant":
        schedule = lr
    elif schedule_name == "cosine":
        schedule = optax.cosine_decay_schedule(lr, total_steps, alpha=final_fraction)
    else:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0,
            lr,
            warmup_steps=max(warmup_steps, 1),
            decay_steps=total_steps,
            end_value=lr * final_fraction,
        )
    return optax.adam(schedule)


def optimizer_step(loss_fn: Callable, optimizer, params, opt_state, *args, has_aux=False):
    r"""One step of gradient *descent* with optax on ``loss_fn(params, *args)``.

        (L, g) = (L(theta), grad L(theta)),   (u, s') = optimizer.update(g, s, theta),
        theta' = theta + u

    optax's updates already point downhill (Adam's are -lr * m_hat / (sqrt(v_hat) + eps)),
    so they are added. Every training step of :func:`train` is this function (inside the
    scan of :func:`make_chunk_runner`); notebook 06's Exercise 6.2 falls back on it.

    Args:
      loss_fn: ``loss_fn(params, *args)``, a scalar, or ``(scalar, aux)`` with ``has_aux``.
      optimizer: an ``optax.GradientTransformation`` (e.g. ``optax.adam(1e-3)``).
      params: a pytree of parameter arrays (e.g. a dict).
      opt_state: the optimizer's state for ``params``.
      *args: passed to ``loss_fn`` as they are (e.g. the batch and the step's key).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      ``(new_params, new_opt_state, value)``: ``value`` is ``loss_fn(params, *args)`` at
      the parameters the gradient was taken at (the old ones).
    """
    value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def chunk_batches(images: jax.Array, batch_index, binarize_keys=None) -> jax.Array:
    """A chunk's training batches, all at once: (S, B, D) float32.

    Batch s is ``images[batch_index[s]]``, scaled to [0, 1] if ``images`` is uint8
    (:func:`training_images`) and, given ``binarize_keys``, binarized with its own key:
    bit for bit ``data.binarize(binarize_keys[s], batch)``. The uniforms of all S
    binarizations are drawn in one pass (``data.binarization_noise``, vmapped over the keys)
    and compared with the pixels (``data.binarize_from_noise``).

    Args:
      images: (N, D) uint8 pixels or floats in [0, 1] (a device array).
      batch_index: (S, B) integer rows of ``images``.
      binarize_keys: (S,) keys, one per batch, or None for grey-level targets.
    """
    batches = images[batch_index]
    if batches.dtype == jnp.uint8:  # the compact training set: pixels / 255
        batches = data_lib.to_unit_interval(batches)
    if binarize_keys is None:
        return batches
    noise = jax.vmap(
        lambda key: data_lib.binarization_noise(key, batches.shape[1:], batches.dtype)
    )(binarize_keys)
    return data_lib.binarize_from_noise(noise, batches)


def make_chunk_runner(
    graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, binarized: bool
) -> Callable:
    """The jitted function that runs a chunk of training steps with ``lax.scan``.

    Returns ``run(params, opt_state, images, batch_index, step_keys, beta, alpha) ->
    (params, opt_state, losses (S,), terms)`` where ``batch_index`` is (S, B) int32 rows of
    the device array ``images`` (N, D), ``step_keys`` is (S,) typed keys or their (S, 2)
    uint32 key data (as :func:`epoch_plan` returns them), and ``terms`` holds the
    per-step ``LossTerms`` (S,). ``beta`` and ``alpha`` are traced, so changing them does
    not recompile. ``params`` and ``opt_state`` are donated (updated in place).

    Each step key is split into a binarization key and a noise key. Before the scan,
    :func:`chunk_batches` gathers, scales and binarizes the chunk's batches in one pass, so
    step s trains on exactly ``data.binarize(binarize_key_s, images[batch_index[s]])``;
    (S, B, D) float32, 20 MB for 50 steps of MNIST. One step is then the loss with the
    step's noise key, its gradient and the Adam update.
    ``nnx.merge(graphdef, params)`` rebuilds the model from the parameter arrays inside the
    traced step: it runs once, while ``jit`` traces, and costs nothing per step.
    """

    def step(carry, inputs, beta, alpha):
        params, opt_state = carry
        x, noise_key = inputs

        def loss_fn(p):
            return nnx.merge(graphdef, p).loss(noise_key, x, beta=beta, alpha=alpha)

        params, opt_state, (loss, terms) = optimizer_step(
            loss_fn, optimizer, params, opt_state, has_aux=True
        )
        return (params, opt_state), (loss, terms)

    def run(params, opt_state, images, batch_index, step_keys, beta, alpha):
        if not jnp.issubdtype(step_keys.dtype, jax.dtypes.prng_key):
            step_keys = jax.random.wrap_key_data(step_keys)  # (S, 2) uint32 -> (S,) keys
        keys = jax.vmap(jax.random.split)(step_keys)  # each step's (binarize_key, noise_key)
        batches = chunk_batches(images, batch_index, keys[:, 0] if binarized else None)
        body = lambda carry, inputs: step(carry, inputs, beta, alpha)  # noqa: E731
        (params, opt_state), (losses, terms) = jax.lax.scan(
            body, (params, opt_state), (batches, keys[:, 1])
        )
        return params, opt_state, losses, terms

    return jax.jit(run, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=32)
def _cached_chunk_runner(
    graphdef: nnx.GraphDef, optimizer_spec: tuple, binarized: bool
) -> Callable:
    return make_chunk_runner(graphdef, _optimizer(*optimizer_spec), binarized)


def chunk_runner(graphdef: nnx.GraphDef, train_config: TrainConfig, num_examples: int) -> Callable:
    """:func:`make_chunk_runner` for this configuration, cached: one compiled runner per
    (architecture, optimizer, targets), so re-running :func:`train` in a notebook or a test
    does not compile again.

    Args:
      graphdef: the model's graph definition (``nnx.split(model, nnx.Param)[0]``).
      train_config: its optimizer settings and ``targets`` select the runner.
      num_examples: training-set size (the schedules count steps over all epochs).
    """
    return _cached_chunk_runner(
        graphdef,
        _optimizer_spec(train_config, num_examples),
        train_config.targets == "binarized",
    )


def run_epoch(
    run_chunk: Callable,
    params,
    opt_state,
    images: jax.Array,
    key: jax.Array,
    train_config: TrainConfig,
    bar=None,
):
    """One epoch: shuffle, then ``ceil(num_batches / steps_per_call)`` jitted chunk calls.

    Each chunk is dispatched before the previous chunk's losses are read back, so the
    host never waits between chunks (JAX runs calls asynchronously).

    Args:
      run_chunk: from :func:`make_chunk_runner` or :func:`chunk_runner`.
      params, opt_state: current state (donated).
      images: (N, D) device array, float32 in [0, 1] or uint8 (:func:`training_images`).
      key: the epoch's key (:func:`epoch_key`).
      train_config: batch size, steps per call, alpha, beta.
      bar: optional tqdm bar, advanced by the number of steps of each chunk.

    Returns:
      ``(params, opt_state, means)`` with means a dict of the epoch-averaged
      ``reconstruction``, ``kl``, ``elbo`` and ``loss`` (Python floats).
    """
    num_examples = images.shape[0]
    batch_size = train_config.batch_size
    num_steps = num_examples // batch_size
    if num_steps < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} training images")
    # Host copies: slicing numpy arrays costs no compilation (slicing device arrays does).
    batch_index, step_keys = (np.asarray(a) for a in epoch_plan(key, num_examples, batch_size))
    beta = np.float32(train_config.beta)
    alpha = np.float32(train_config.alpha)
    totals = np.zeros(4)
    pending = None  # (number of steps, losses, terms) of the chunk dispatched last

    def read(chunk):
        steps, losses, terms = chunk
        sums = np.array(
            [
                np.asarray(a, np.float64).sum()
                for a in (terms.reconstruction, terms.kl, terms.elbo, losses)
            ]
        )
        if bar is not None:
            bar.update(steps)
            bar.set_postfix(loss=f"{sums[3] / steps:.2f}", refresh=False)
        return sums

    for start in range(0, num_steps, train_config.steps_per_call):
        stop = min(start + train_config.steps_per_call, num_steps)
        params, opt_state, losses, terms = run_chunk(
            params, opt_state, images, batch_index[start:stop], step_keys[start:stop], beta, alpha
        )
        if pending is not None:
            totals += read(pending)
        pending = (stop - start, losses, terms)
    totals += read(pending)
    means = dict(zip(("reconstruction", "kl", "elbo", "loss"), totals / num_steps, strict=True))
    return params, opt_state, {k: float(v) for k, v in means.items()}


# ----------------------------------------------------------------------------- the loop
def _empty_history() -> dict[str, list]:
    return {k: [] for k in HISTORY_KEYS}


def train(
    model_config: VAEConfig,
    train_config: TrainConfig,
    *,
    train_images=None,
    test_images=None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    checkpoint_dtype: str = "float32",
    callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Trains a VAE on (dynamically binarized) MNIST; resumable from its checkpoint.

    Minimises the negative weighted ELBO of :meth:`vae_edu.models.VAE.loss` with Adam.

    Args:
      model_config: the architecture.
      train_config: epochs, batch size, learning rate and schedule, alpha, beta, seed...
      train_images: (N, 28, 28) uint8 or (N, 784) floats in [0, 1]; default: the shipped
        MNIST training set.
      test_images: the same for the per-epoch test ELBO; default: the shipped test set.
      checkpoint_path: if given, a checkpoint (model, optimizer state, epoch, history) is
        written there atomically after every epoch.
      resume: continue from ``checkpoint_path`` if it exists (its model and training
        configs must equal the given ones; raises ``CheckpointError`` otherwise). The
        result equals that of an uninterrupted run with the same seed.
      progress: show a tqdm bar (a widget in notebooks) with the live loss.
      checkpoint_dtype: ``"float32"`` or ``"float16"`` storage for the parameters of the
        per-epoch checkpoint (the optimizer state is always float32).
      callback: optional ``callback(epoch, metrics)`` after each epoch (1-based epoch).

    Returns:
      :class:`TrainResult` ``(model, history, state, wall_seconds)``.
    """
    start_time = time.perf_counter()
    if not isinstance(model_config, VAEConfig):
        raise TypeError(f"model_config must be a VAEConfig, got {type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    if train_images is None:
        train_images = data_lib.load_mnist("train").images
    if test_images is None:
        test_images = data_lib.load_mnist("test").images
    images = training_images(train_images, model_config.input_dim)
    test = prepare_images(test_images, model_config.input_dim)
    num_examples = images.shape[0]
    if num_examples < train_config.batch_size:
        raise ValueError(
            f"batch_size {train_config.batch_size} exceeds the {num_examples} training images"
        )

    resuming = resume and Path(checkpoint_path).exists()
    if resuming:  # refuse a mismatched checkpoint before any work
        saved = checkpoints.read_metadata(checkpoint_path)
        if saved["config"] != model_config:
            raise checkpoints.CheckpointError(
                f"cannot resume from {checkpoint_path}: it holds a {saved['config']} model, "
                f"the run asks for {model_config}"
            )
        saved_train = saved["training"].get("train_config")
        if saved_train is None or TrainConfig.from_dict(saved_train) != train_config:
            raise checkpoints.CheckpointError(
                f"cannot resume from {checkpoint_path}: it was trained with {saved_train}, "
                f"the run asks for {train_config.to_dict()}"
            )
    pixel_mean = mean_image(images) if train_config.init_output_bias else None
    model = init_model(model_config, train_config.seed, pixel_mean)
    graphdef, param_state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(param_state)
    optimizer_spec = _optimizer_spec(train_config, num_examples)
    opt_state = jax.jit(_optimizer(*optimizer_spec).init)(params)
    history, epoch = _empty_history(), 0

    if resuming:
        ckpt = checkpoints.load(checkpoint_path, opt_state_template=opt_state)
        if ckpt.opt_state is None:
            raise checkpoints.CheckpointError(
                f"cannot resume from {checkpoint_path}: it holds no optimizer state"
            )
        params = nnx.to_pure_dict(nnx.state(ckpt.model, nnx.Param))
        opt_state = ckpt.opt_state
        saved_history = ckpt.training.get("history", {})
        missing = [k for k in HISTORY_KEYS if k not in saved_history]
        lacking = ["training.epoch"] * ("epoch" not in ckpt.training)
        lacking += [f"training.history.{k}" for k in missing]
        if lacking:
            raise checkpoints.CheckpointError(
                f"cannot resume from {checkpoint_path}: its training state lacks "
                + ", ".join(lacking)
            )
        epoch = int(ckpt.training["epoch"])
        history = {k: list(saved_history[k]) for k in HISTORY_KEYS}

    run_chunk = chunk_runner(graphdef, train_config, num_examples)
    steps_per_epoch = num_examples // train_config.batch_size
    evaluation_key = test_key(train_config.seed)
    binarize_test = train_config.targets == "binarized"
    bar = tqdm(
        total=steps_per_epoch * train_config.num_epochs,
        initial=steps_per_epoch * epoch,
        disable=not progress,
        unit="step",
        desc=f"VAE {model_config.describe()}",
        dynamic_ncols=True,
    )
    try:
        while epoch < train_config.num_epochs:
            epoch_start = time.perf_counter()
            params, opt_state, means = run_epoch(
                run_chunk,
                params,
                opt_state,
                images,
                epoch_key(train_config.seed, epoch),
                train_config,
                bar,
            )
            model = nnx.merge(graphdef, params)
            test_terms = evaluate.elbo_terms_mean(
                model,
                test,
                evaluation_key,
                binarize=binarize_test,
                batch_size=min(train_config.eval_batch_size, test.shape[0]),
            )
            epoch += 1
            row = {
                "epoch": epoch,
                "train_reconstruction": means["reconstruction"],
                "train_kl": means["kl"],
                "train_elbo": means["elbo"],
                "test_reconstruction": test_terms.reconstruction,
                "test_kl": test_terms.kl,
                "test_elbo": test_terms.elbo,
                "seconds": time.perf_counter() - epoch_start,
            }
            for k in HISTORY_KEYS:
                history[k].append(row[k])
            bar.set_postfix(loss=f"{means['loss']:.2f}", test_elbo=f"{test_terms.elbo:.2f}")
            if checkpoint_path is not None:
                checkpoints.save(
                    checkpoint_path,
                    model,
                    dtype=checkpoint_dtype,
                    opt_state=opt_state,
                    training={
                        "epoch": epoch,
                        "seed": train_config.seed,
                        "train_config": train_config.to_dict(),
                        "history": history,
                    },
                )
            if callback is not None:
                callback(epoch, row)
    finally:
        bar.close()
    model = nnx.merge(graphdef, params)
    return TrainResult(
        model, history, TrainState(params, opt_state, epoch), time.perf_counter() - start_time
    )


def history_to_json(history: dict[str, list]) -> str:
    """The history as JSON (plain floats)."""
    return json.dumps({k: [float(v) for v in history[k]] for k in history})
