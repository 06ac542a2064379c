"""Assignment 3 checks: the MLP VAE's loss, a re-run of the student's training, and the
latent statistics of the trained model."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_edu import data, mlp_vae
from vae_edu.grading.a2 import negative_elbo_mistakes
from vae_edu.grading.core import (
    RTOL,
    CheckResult,
    KernelFunction,
    Stop,
    as_array,
    bernoulli_by_hand,
    call_student,
    close,
    diagnose,
    f32,
    first_line,
    fmt,
    gradient_tree,
    hidden_key,
    hidden_rng,
    kl_standard_normal_by_hand,
    run_check,
    scalar,
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
    """Small random parameters (784-hidden-2 VAE) with a non-trivial posterior, drawn from
    the run's secret."""

    params = mlp_vae.init_params(hidden_key(seed), hidden=hidden)
    rng = hidden_rng(seed)
    params["enc_b2"] = f32(rng.normal(0.0, 0.7, size=4))
    params["enc_b1"] = f32(rng.normal(0.0, 0.5, size=hidden))
    params["dec_b1"] = f32(rng.normal(0.0, 0.5, size=hidden))
    return params


def _a3_probe_batch(seed: int, batch: int = 8):
    return (hidden_rng(seed).uniform(size=(batch, 784)) < 0.2).astype(np.float32)


def check_a3_loss(student_fn) -> CheckResult:
    r"""Checks A3's ``negative_elbo(params, key, x) -> loss`` for the :mod:`vae_edu.mlp_vae` VAE.

        loss = (1/B) sum_b [ -log p(x_b | z_b) + KL(q(z | x_b) || N(0, I)) ],
        z_b = mean_b + exp(log_var_b / 2) * eps_b,  eps = jax.random.normal(key, mean.shape)

    Checked on a hand value (all-zero parameters: every image costs 784 log 2), against the
    reference on seeded random parameters and batches (the same key, so the same eps), for
    gradients with respect to every parameter (through the proxy's ``jax.grad``), and that
    another key gives another sample. Known mistakes are named.
    """
    return run_check(
        "check_a3_loss",
        (_a3_loss_at_zero, _a3_loss_random, _a3_loss_keys, _a3_loss_gradients),
        student_fn,
        "correct: 784 log 2 at zero parameters, the reference on random parameters (same "
        "key), a new sample for a new key, and the gradient for every parameter.",
    )


_A3_LOSS_CALL = "negative_elbo(params, key, x)"


def _a3_loss_of(fn, params, key, x) -> float:
    """The student's loss, required to be a scalar."""
    out = as_array(call_student(fn, params, key, jnp.asarray(x), call=_A3_LOSS_CALL), "your loss")
    if out.shape != ():
        raise Stop(
            f"your loss has shape {out.shape}; it is a single number, the MEAN over the "
            "batch of the per-image negative ELBOs."
        )
    return float(out)


def _a3_loss_at_zero(fn) -> list[str]:
    """Step 1: all-zero parameters: every image costs 784 log 2, the KL is 0."""
    zeros = {k: jnp.zeros_like(v) for k, v in _a3_probe_params(0).items()}
    x0 = _a3_probe_batch(1)
    value = _a3_loss_of(fn, zeros, jax.random.key(0), x0)
    expected = 784 * math.log(2.0)
    if math.isclose(value, expected, rel_tol=RTOL):
        return []
    hint = (
        f" You summed over the batch of {len(x0)} instead of averaging."
        if math.isclose(value, len(x0) * expected, rel_tol=RTOL)
        else ""
    )
    return [
        f"with all parameters zero (mean = 0, log_var = 0, logits = 0) every image "
        f"costs 784 log 2 = {expected:.4f} nats and the KL is 0, but your loss is "
        f"{value:.4f}.{hint}"
    ]


def _a3_loss_random(fn) -> list[str]:
    """Step 2: the reference on two random parameter sets and batches (the same key)."""
    for seed in (11, 12):
        params = _a3_probe_params(seed)
        x = _a3_probe_batch(seed)
        key = hidden_key(seed)
        got = _a3_loss_of(fn, params, key, x)
        reference = float(_A3_JIT["loss"](params, key, x))
        if math.isclose(got, reference, rel_tol=RTOL, abs_tol=1e-3):
            continue
        hint = diagnose(np.asarray(got), _a3_loss_mistakes(params, key, x))
        return [
            f"on random parameters and a batch of {x.shape[0]} images (the same key for "
            f"both) your loss is {got:.4f}, expected {reference:.4f}. "
            + (
                hint
                or "Encode, sample z with the given key, decode, then average "
                "-log p(x | z) + KL over the batch."
            )
        ]
    return []


def _a3_loss_mistakes(params, key, x):
    """(value, message) of the known mistakes of A3's loss: those of any negative ELBO, a
    fixed PRNG key, and decoding the posterior mean instead of a sample."""
    mean, log_var = mlp_vae.encode(params, x)
    eps = jax.random.normal(key, mean.shape)
    logits = mlp_vae.decode(params, mean + jnp.exp(0.5 * log_var) * eps)
    at_mean = np.asarray(mlp_vae.decode(params, mean), np.float64)
    kl = kl_standard_normal_by_hand(mean, log_var)
    recon_at_mean = bernoulli_by_hand(x, at_mean)
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
    return negative_elbo_mistakes(x, logits, mean, log_var, extra)


def _a3_loss_keys(fn) -> list[str]:
    """Step 3: another key gives another sample, so another loss."""
    params = _a3_probe_params(13)
    x = jnp.asarray(_a3_probe_batch(13))
    if not math.isclose(
        _a3_loss_of(fn, params, hidden_key(13), x),
        _a3_loss_of(fn, params, hidden_key(14), x),
        rel_tol=1e-7,
        abs_tol=0.0,
    ):
        return []
    return [
        "your loss is the same for two different keys: draw eps with the key "
        "argument, jax.random.normal(key, mean.shape)."
    ]


def _a3_loss_gradients(fn) -> list[str]:
    """Step 4: the gradient with respect to every parameter (jax.grad in the kernel)."""
    params = _a3_probe_params(13)
    x = jnp.asarray(_a3_probe_batch(13))
    key = hidden_key(13)
    grads = gradient_tree(
        fn, (params, key, x), 0, "your loss", advice="Use jax.numpy and jax.random only."
    )
    expected_grads = _A3_JIT["grad"](params, key, x)
    if not isinstance(grads, dict) or set(grads) != set(expected_grads):
        return ["the gradient of your loss is not a dict like params."]
    for name in mlp_vae.PARAM_NAMES:
        if not close(grads[name], expected_grads[name], rtol=1e-3, atol=1e-4):
            return [
                f"your loss has the right value but its gradient with respect to "
                f"params[{name!r}] is wrong (e.g. {fmt(np.ravel(grads[name])[:3])}, "
                f"expected {fmt(np.ravel(expected_grads[name])[:3])}): is a "
                "jax.lax.stop_gradient, a NumPy call or a Python float in the way?"
            ]
    return []


def _a3_distance(a: dict, b: dict) -> float:
    return math.sqrt(
        sum(
            float(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2))
            for k in a
        )
    )


def _a3_unpack(pair, reference_state, what: str):
    """(params, opt_state) from the kernel's numbers, checked against the reference layout."""

    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], dict):
        raise Stop(
            f"{what}: your train_step must return (params, opt_state, loss), params the "
            "same dict of arrays it was given."
        )
    params, state = pair
    if set(params) != set(mlp_vae.PARAM_NAMES):
        raise Stop(
            f"{what}: the params your train_step returns have the keys {sorted(params)}; "
            f"expected {sorted(mlp_vae.PARAM_NAMES)}."
        )
    leaves = jax.tree_util.tree_leaves(state)
    ref_leaves, treedef = jax.tree_util.tree_flatten(reference_state)
    if len(leaves) != len(ref_leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(leaves, ref_leaves, strict=True)
    ):
        raise Stop(
            f"{what}: the optimizer state your train_step returns is not Adam's state for "
            "these parameters: return the new state from optimizer.update(...)."
        )
    state = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(v, r.dtype) for v, r in zip(leaves, ref_leaves, strict=True)]
    )
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    return params, state


def _a3_train(fn, params, images, budget):

    loss = _A3_REFERENCE_LOSS
    runner = getattr(fn, "run_training", None)
    try:
        if runner is not None:  # the grader's proxy: the run happens in the student's kernel
            return runner(params, images, loss, dataclasses.asdict(budget))
        return mlp_vae.run_training(fn, params, images, loss, budget)
    except NotImplementedError:
        raise Stop("not implemented yet: your function raises NotImplementedError.") from None
    except Stop:
        raise
    except Exception as err:  # noqa: BLE001
        raise Stop(
            f"training with your train_step failed: {type(err).__name__}: {first_line(err)} "
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

    budget = budget or mlp_vae.BUDGET
    return run_check(
        "check_a3_training",
        (functools.partial(_a3_training_steps, budget=budget),),
        student_fn,
        f"correct: the grader re-ran {budget.num_steps} steps of your train_step, every "
        f"segment reproduces, and the test ELBO reaches the target {budget.target_elbo:.1f}.",
        fresh_inputs=False,  # one training run, from the run's secret
    )


class _A3Run(NamedTuple):
    """What the grader fixes for a training run: the budget, the binarized training and
    test images, the initial parameters and Adam state."""

    budget: object
    images: np.ndarray
    tests: np.ndarray
    params0: dict
    state0: object


def _a3_run_setup(budget) -> _A3Run:
    images = mlp_vae.training_images(budget)
    params0 = mlp_vae.init_params(
        jax.random.key(budget.seed), budget.hidden, budget.latent_dim, images.mean(axis=0)
    )
    state0 = optax.adam(budget.learning_rate).init(params0)
    return _A3Run(budget, images, mlp_vae.test_images(budget), params0, state0)


def _replay(run: _A3Run, params, state, start, size, step=mlp_vae.train_step):
    """``size`` steps of ``step`` (the reference by default) on the reference loss from
    (params, state) at step ``start``: (params, state, losses)."""
    return mlp_vae.run_steps(
        step, _A3_REFERENCE_LOSS, params, state, run.images, start, size, run.budget
    )


def _a3_training_steps(fn, *, budget) -> list[str]:
    """1. a probe of two steps that names common mistakes; 2. the whole run, verified
    segment by segment; 3. the target test ELBO."""
    run = _a3_run_setup(budget)
    _a3_probe(fn, run)
    final = _a3_verified_run(fn, run)
    elbo = mlp_vae.test_elbo(final, run.tests)
    if not math.isfinite(elbo):
        raise Stop("the test ELBO of the trained parameters is not finite: training diverged.")
    if elbo < budget.target_elbo:
        return [
            f"training with your train_step reaches a test ELBO of {elbo:.1f} nats per "
            f"image, below the target {budget.target_elbo:.1f}."
        ]
    return []


def _a3_probe(fn, run: _A3Run) -> None:
    """Two steps, a checkpoint after each; a Stop naming the mistake if either is wrong."""
    budget, params0, state0 = run.budget, run.params0, run.state0
    probe_budget = dataclasses.replace(budget, num_steps=2, checkpoint_every=1)
    probe = _a3_train(fn, params0, run.images, probe_budget)
    if not isinstance(probe, dict) or "checkpoints" not in probe or "final" not in probe:
        raise Stop("the grader got no training checkpoints back from your notebook.")
    got1, _ = _a3_unpack(probe["checkpoints"][1], state0, "after one step")
    want1, want_state1, _ = _replay(run, params0, state0, 0, 1)
    moved = _a3_distance(want1, params0)
    if _a3_distance(got1, want1) > 1e-3 * moved:
        for params, message in _a3_first_step_mutants(run, want1):
            if _a3_distance(got1, params) <= 1e-3 * moved:
                raise Stop(message)
        raise Stop(
            "after one step from the grader's parameters, your train_step's parameters "
            f"differ from one Adam step on loss_fn (distance {_a3_distance(got1, want1):.3g},"
            f" the step itself moves them by {moved:.3g}). Take the gradient of loss_fn "
            "with jax.value_and_grad, then optimizer.update and optax.apply_updates."
        )
    got2, _ = _a3_unpack(probe["final"], state0, "after two steps")
    want2, _, _ = _replay(run, got1, want_state1, 1, 1)
    if _a3_distance(got2, want2) > 1e-3 * _a3_distance(want2, got1):
        state_reused = _replay(run, got1, state0, 1, 1)[0]
        if _a3_distance(got2, state_reused) <= 1e-3 * _a3_distance(want2, got1):
            raise Stop(
                "your train_step returns the OLD optimizer state: return the new one "
                "from optimizer.update, or Adam restarts at every step."
            )
        raise Stop(
            "your first step is right but the second is not: return the new params "
            "and the new opt_state, and use the key and batch you are given."
        )


def _a3_first_step_mutants(run: _A3Run, want1):
    """(parameters after one wrong step, message) for the known mistakes of a train_step."""
    budget, params0, state0 = run.budget, run.params0, run.state0
    grads = _A3_JIT["grad"](
        params0,
        mlp_vae.step_key(budget.seed, 0),
        mlp_vae.step_batch(run.images, 0, budget.batch_size),
    )
    return [
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
            jax.tree_util.tree_map(lambda p, g: p - budget.learning_rate * g, params0, grads),
            "your step is plain gradient descent: use the given Adam optimizer, "
            "updates, opt_state = optimizer.update(grads, opt_state, params).",
        ),
        (
            _replay(run, params0, state0, 0, 1, _fixed_key_step)[0],
            "your train_step ignores the key it is given (a fixed PRNG key): pass "
            "the key argument to loss_fn, or every step reuses the same noise.",
        ),
    ]


def _a3_verified_run(fn, run: _A3Run) -> dict:
    """The whole run of the student's train_step; every segment between two checkpoints
    is replayed with the reference step. Returns the final parameters."""
    budget, params0, state0 = run.budget, run.params0, run.state0
    result = _a3_train(fn, params0, run.images, budget)
    checkpoints = list(result.get("checkpoints", [])) if isinstance(result, dict) else []
    expected_count = math.ceil(budget.num_steps / budget.checkpoint_every)
    if len(checkpoints) != expected_count or "final" not in result:
        raise Stop("the grader did not get the checkpoints of the training run back.")
    states = [_a3_unpack(c, state0, "during training") for c in checkpoints]
    states.append(_a3_unpack(result["final"], state0, "at the end of training"))
    if _a3_distance(states[0][0], params0) > 0:
        raise Stop("your training run did not start from the grader's initial parameters.")
    subset = run.tests[:500]
    for i in range(expected_count):
        start = i * budget.checkpoint_every
        size = min(budget.checkpoint_every, budget.num_steps - start)
        (p, st), (q, _) = states[i], states[i + 1]
        want, _, _ = _replay(run, p, st, start, size)
        gap, move = _a3_distance(q, want), _a3_distance(want, p)
        agree = gap <= 1e-3 * move or (
            gap <= 0.5 * move
            and abs(mlp_vae.test_elbo(q, subset) - mlp_vae.test_elbo(want, subset)) <= 1.0
        )
        if not agree:
            raise Stop(
                f"the training run does not reproduce: from the checkpoint at step {start}, "
                f"{size} Adam steps on the reference loss do not lead to your checkpoint "
                f"at step {start + size} (distance {gap:.3g}; the steps move the "
                f"parameters by {move:.3g}). Only a run of your train_step counts: a "
                "model trained or loaded elsewhere does not."
            )
    return states[-1][0]


def _fixed_key_step(loss_fn, params, opt_state, key, x):

    return mlp_vae.train_step(loss_fn, params, opt_state, jax.random.key(0), x)


#: A3's latent statistics need an encoder whose posterior means vary across the test images:
#: a standard deviation above this in some latent dimension. A constant encoder (all-zero
#: weights, whatever the biases) has 0 and makes every statistic trivial; the initial
#: parameters have about 0.16, a trained model about 1. Not a test ELBO: a model trained
#: with a wrong loss (Question 1) still gets its statistics graded on their own.
MIN_SPREAD = 0.05


class _NotAsked:
    """The default of check_latent_statistics' answers: that statistic is not checked.

    Not None: a student's ``class_means = None`` is an answer, and a wrong one."""

    def __repr__(self) -> str:
        return "NOT_ASKED"


NOT_ASKED = _NotAsked()


def check_latent_statistics(
    params,
    *,
    class_means=NOT_ASKED,
    farthest_digit=NOT_ASKED,
    centroid_accuracy=NOT_ASKED,
) -> CheckResult:
    r"""Checks three statistics of an A3 model's latent space on the test images.

    With mu(x) the posterior mean of image x (:func:`vae_edu.mlp_vae.encode` of ``params``
    on :func:`vae_edu.mlp_vae.test_images`, labels of the same first test images):

    * ``class_means``: (10, d) array, row k = the average of mu(x) over test images of digit k;
    * ``farthest_digit``: the digit whose class mean is farthest (Euclidean) from the origin;
    * ``centroid_accuracy``: the fraction (in [0, 1]) of test images whose nearest class mean
      is the class mean of their own digit.

    All three are recomputed from ``params``, which must be a model of the A3 architecture
    (the shapes of :func:`vae_edu.mlp_vae.init_params`) whose posterior means vary across
    the test images (:data:`MIN_SPREAD`: a constant encoder makes every statistic trivial).
    Any such parameters, the student's own after Question 2 whatever the score of
    Questions 1 and 2, get their own correct answers. A statistic left at its default
    (:data:`NOT_ASKED`) is not checked; any value given, None included, is an answer.
    """

    return run_check(
        "check_latent_statistics",
        (
            functools.partial(
                _latent_statistics_problems,
                class_means=class_means,
                farthest_digit=farthest_digit,
                centroid_accuracy=centroid_accuracy,
            ),
        ),
        params,
        needs_function=False,
        success="correct: class means, the farthest class mean and the nearest-class-mean "
        "accuracy all match.",
    )


def _latent_statistics_problems(
    params, *, class_means, farthest_digit, centroid_accuracy
) -> list[str]:
    """Recomputes the statistics from ``params``; one problem per wrong answer."""
    if not isinstance(params, dict) or set(params) != set(mlp_vae.PARAM_NAMES):
        raise Stop("`params` is not the parameter dict of the A3 model.")
    shapes = {k: np.shape(v) for k, v in mlp_vae.init_params(jax.random.key(0)).items()}
    wrong = sorted(k for k in shapes if np.shape(params[k]) != shapes[k])
    if wrong:
        raise Stop(
            f"`params[{wrong[0]!r}]` has shape {np.shape(params[wrong[0]])}; the A3 model's "
            f"is {shapes[wrong[0]]} (mlp_vae.init_params)."
        )
    p = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in params.items()}
    images = mlp_vae.test_images()
    labels = np.asarray(data.load_mnist("test").labels[: images.shape[0]])
    mean, log_var = (np.asarray(a, np.float64) for a in mlp_vae.encode(p, images))
    if not np.all(np.isfinite(mean)):
        raise Stop(
            "the posterior means of the model in `params` are not finite (NaN or inf): "
            "its training diverged, so there are no statistics to compute."
        )
    spread = float(np.max(np.std(mean, axis=0)))
    if not spread > MIN_SPREAD:
        raise Stop(
            "the posterior means of the model in `params` hardly vary across the test images "
            f"(largest standard deviation {spread:.3g}; a trained model has about 1): every "
            "statistic is then trivial. Compute them for the model you trained in Question 2."
        )
    expected = np.stack([mean[labels == k].mean(axis=0) for k in range(10)])
    problems = [
        _class_means_problem(class_means, expected, log_var, labels),
        _farthest_digit_problem(farthest_digit, expected),
        _centroid_accuracy_problem(centroid_accuracy, mean, expected, labels),
    ]
    return [problem for problem in problems if problem]


def _class_means_problem(class_means, expected, log_var, labels) -> str | None:
    """(10, d) class means: the shape, then the first wrong row, and the mistake named."""
    if class_means is NOT_ASKED:
        return None
    if class_means is None:
        return "class_means is None: compute the (10, d) class means of your model."
    got = as_array(class_means, "class_means")
    if got.shape != expected.shape:
        return (
            f"class_means has shape {got.shape}; it should be {expected.shape}, "
            "one row (the average posterior mean) per digit 0-9."
        )
    if close(got, expected, rtol=1e-3, atol=1e-3):
        return None
    wrong_input = np.stack([log_var[labels == k].mean(axis=0) for k in range(10)])
    hint = diagnose(
        got,
        [
            (wrong_input, "You averaged the log-variances: use the posterior MEANS mu(x)."),
            (expected[::-1], "Your rows are in reverse order: row k belongs to digit k."),
        ],
    )
    bad = [k for k in range(10) if not close(got[k], expected[k], 1e-3, 1e-3)]
    row = bad[0]
    permuted = next((j for j in range(10) if close(got[row], expected[j], 1e-3, 1e-3)), None)
    where = f" (it holds the class mean of digit {permuted})" if permuted is not None else ""
    return (
        f"class_means differs from the average posterior mean of each digit in "
        f"{len(bad)} of 10 rows (row {row}: yours {fmt(got[row])}{where}, expected "
        f"{fmt(expected[row])}). "
        + (hint or "Row k is the average of mu(x) over the test images with label k.")
    )


def _farthest_digit_problem(farthest_digit, expected) -> str | None:
    """The digit whose class mean is farthest from the origin."""
    norms = np.linalg.norm(expected, axis=1)
    if farthest_digit is NOT_ASKED:
        return None
    value = np.asarray(farthest_digit) if farthest_digit is not None else None
    if (
        value is None
        or value.shape != ()
        or not np.issubdtype(value.dtype, np.number)
        or not np.isfinite(value)
        or value != np.round(value)
    ):
        return f"farthest_digit is {farthest_digit!r}: it should be one digit, an integer 0-9."
    if int(value) == int(np.argmax(norms)):
        return None
    hint = " You picked the NEAREST one." if int(value) == int(np.argmin(norms)) else ""
    return (
        f"farthest_digit is {farthest_digit}, but the class mean farthest from "
        f"the origin is that of digit {int(np.argmax(norms))} (distance "
        f"{norms.max():.3f}).{hint}"
    )


def _centroid_accuracy_problem(centroid_accuracy, mean, expected, labels) -> str | None:
    """The fraction of test images nearest to their own class mean."""
    distances = np.linalg.norm(mean[:, None, :] - expected[None, :, :], axis=-1)
    accuracy = float(np.mean(np.argmin(distances, axis=1) == labels))
    if centroid_accuracy is NOT_ASKED:
        return None
    if centroid_accuracy is None:
        return "centroid_accuracy is None: compute the fraction for your model."
    value = scalar(as_array(centroid_accuracy, "centroid_accuracy"), "centroid_accuracy")
    if math.isclose(value, accuracy, abs_tol=1e-3):
        return None
    hint = (
        " Give a fraction between 0 and 1, not a percentage."
        if math.isclose(value, 100 * accuracy, abs_tol=0.1)
        else ""
    )
    return (
        f"centroid_accuracy is {value:.4f}, but {accuracy:.4f} of the "
        f"{len(labels)} test images are nearest to their own class mean.{hint}"
    )
