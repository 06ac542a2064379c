"""Tests for vae_edu.train: a one-epoch smoke run, learning, determinism, resumption.

Everything runs on a small MNIST subset with a small model so the file stays fast; the
compiled epoch is cached per architecture, so most runs below reuse one compilation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vae_edu import checkpoints, data, evaluate
from vae_edu.models import VAE, VAEConfig
from vae_edu.train import (
    HISTORY_KEYS,
    TrainConfig,
    chunk_batches,
    chunk_runner,
    epoch_key,
    epoch_plan,
    init_model,
    make_optimizer,
    mean_image,
    prepare_images,
    test_key,
    train,
    training_images,
)

SMALL = VAEConfig(hidden_sizes=(32,), latent_dim=4)
TRAIN = data.load_mnist("train").images[:512]
TEST = data.load_mnist("test").images[:200]


def config(**overrides):
    base = dict(
        num_epochs=2,
        batch_size=64,
        learning_rate=3e-3,
        steps_per_call=4,
        seed=0,
        eval_batch_size=200,
    )
    return TrainConfig(**{**base, **overrides})


def run(train_config, **kwargs):
    return train(
        SMALL, train_config, train_images=TRAIN, test_images=TEST, progress=False, **kwargs
    )


def params_of(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def assert_same_params(a, b):
    jax.tree.map(np.testing.assert_array_equal, params_of(a), params_of(b))


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def two_epochs():
    """The reference run: 2 epochs, seed 0 (shared by several tests)."""
    return run(config())


def test_one_epoch_smoke_run(capsys):
    result = train(SMALL, config(num_epochs=1), train_images=TRAIN, test_images=TEST, progress=True)
    assert set(result.history) == set(HISTORY_KEYS)
    assert all(len(v) == 1 for v in result.history.values())
    assert all(np.isfinite(v[0]) for v in result.history.values())
    assert result.state.epoch == 1
    h = result.history
    np.testing.assert_allclose(
        h["test_elbo"][0], h["test_reconstruction"][0] - h["test_kl"][0], rtol=1e-6
    )
    assert h["train_kl"][0] > 0 and h["test_kl"][0] > 0
    # The progress bar went to stderr and counted the 512 // 64 = 8 steps.
    assert "8/8" in capsys.readouterr().err


def test_loss_decreases(two_epochs):
    h = two_epochs.history
    assert h["train_elbo"][1] > h["train_elbo"][0]
    assert h["test_elbo"][1] > h["test_elbo"][0]
    # The trained model beats its initialisation's test ELBO by a wide margin.
    initial = init_model(SMALL, 0, np.asarray(prepare_images(TRAIN)).mean(axis=0))
    untrained = evaluate.elbo_terms_mean(initial, TEST, jax.random.PRNGKey(0)).elbo
    assert h["test_elbo"][1] > untrained + 10.0


def test_deterministic_for_a_seed_and_independent_of_chunking(two_epochs):
    again = run(config(steps_per_call=8))  # the 8 steps in one call instead of 2 x 4
    assert_same_params(two_epochs.model, again.model)
    other_seed = run(config(seed=1))
    assert not np.array_equal(
        params_of(two_epochs.model)["decoder"]["output"]["kernel"],
        params_of(other_seed.model)["decoder"]["output"]["kernel"],
    )


def test_resumed_run_equals_uninterrupted_run(two_epochs, tmp_path):
    path = tmp_path / "run.msgpack"

    def stop_after_first_epoch(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(config(), checkpoint_path=path, callback=stop_after_first_epoch)
    assert checkpoints.read_metadata(path)["training"]["epoch"] == 1
    resumed = run(config(), checkpoint_path=path, resume=True)
    assert resumed.state.epoch == 2
    assert_same_params(two_epochs.model, resumed.model)
    for key in HISTORY_KEYS:
        if key != "seconds":
            np.testing.assert_array_equal(resumed.history[key], two_epochs.history[key])
    # The optimizer state matches too (same Adam moments, same step count).
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.tree.map(np.asarray, resumed.state.opt_state),
        jax.tree.map(np.asarray, two_epochs.state.opt_state),
    )
    # Resuming a finished run trains nothing more.
    assert run(config(), checkpoint_path=path, resume=True).state.epoch == 2


def test_resume_refuses_a_different_configuration(tmp_path):
    path = tmp_path / "run.msgpack"
    run(config(num_epochs=1), checkpoint_path=path)
    with pytest.raises(checkpoints.CheckpointError, match="learning_rate"):
        run(config(num_epochs=1, learning_rate=1e-3), checkpoint_path=path, resume=True)
    with pytest.raises(checkpoints.CheckpointError, match="cannot resume"):
        train(
            VAEConfig(hidden_sizes=(32,), latent_dim=5),
            config(num_epochs=1),
            train_images=TRAIN,
            test_images=TEST,
            progress=False,
            checkpoint_path=path,
            resume=True,
        )


def test_beta_zero_on_grayscale_targets(two_epochs):
    # beta = 0 (the plain autoencoder) on grayscale targets: the KL is not penalised, so
    # after the same 16 steps it is well above the beta = 1 run's (2.6 vs 1.3 nats).
    result = run(config(beta=0.0, targets="grayscale"))
    assert np.all(np.isfinite(result.history["test_elbo"]))
    assert result.history["test_kl"][-1] > 1.5 * two_epochs.history["test_kl"][-1] > 0


def test_epoch_keys_are_distinct_and_reproducible():
    data_of = jax.random.key_data
    assert np.array_equal(data_of(epoch_key(3, 7)), data_of(epoch_key(3, 7)))
    assert not np.array_equal(data_of(epoch_key(3, 7)), data_of(epoch_key(3, 8)))
    assert not np.array_equal(data_of(epoch_key(3, 7)), data_of(epoch_key(4, 7)))


def test_cosine_schedule_decays_to_the_final_fraction():
    tc = config(num_epochs=2, schedule="cosine", final_lr_fraction=0.1)
    opt = make_optimizer(tc, 512)  # 8 steps per epoch, 16 in all
    params = {"w": np.zeros(3, np.float32)}
    state = opt.init(params)
    grads = {"w": np.ones(3, np.float32)}
    sizes = []
    for _ in range(16):
        updates, state = opt.update(grads, state, params)
        sizes.append(-float(updates["w"][0]))  # Adam's first step with g = 1 is -lr
    np.testing.assert_allclose(sizes[0], 3e-3, rtol=1e-4)
    assert sizes[-1] < sizes[0] / 2 and sizes[-1] > 0.1 * 3e-3 * 0.99


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_epochs": 0}, "num_epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"schedule": "linear"}, "schedule"),
        ({"targets": "threshold"}, "targets"),
        ({"beta": -1.0}, "beta"),
        ({"learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="batch_size 1024 exceeds"):
        run(config(batch_size=1024))
    with pytest.raises(ValueError, match=r"\(10, 5\)"):
        train(
            SMALL,
            config(),
            train_images=np.zeros((10, 5), np.uint8),
            test_images=TEST,
            progress=False,
        )
    with pytest.raises(ValueError, match="resume"):
        run(config(), resume=True)


def test_resume_names_missing_training_state(tmp_path):
    # A checkpoint with the right configs but no history: a CheckpointError, not a KeyError.
    train_config = config(num_epochs=1)
    model = init_model(SMALL, train_config.seed)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    opt_state = jax.jit(make_optimizer(train_config, len(TRAIN)).init)(params)
    path = checkpoints.save(
        tmp_path / "run.msgpack",
        model,
        opt_state=opt_state,
        training={"epoch": 0, "seed": 0, "train_config": train_config.to_dict()},
    )
    with pytest.raises(checkpoints.CheckpointError, match=r"lacks training\.history\.epoch, "):
        run(train_config, checkpoint_path=path, resume=True)


def test_test_key_is_the_documented_fold_in():
    for seed in (0, 7):
        np.testing.assert_array_equal(
            jax.random.key_data(test_key(seed)),
            jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(seed), 2)),
        )
    assert not np.array_equal(
        jax.random.key_data(test_key(0)), jax.random.key_data(epoch_key(0, 0))
    )


def test_history_test_terms_are_elbo_terms_mean_with_the_test_key(two_epochs):
    model = two_epochs.model
    terms = evaluate.elbo_terms_mean(model, TEST, test_key(0))
    h = two_epochs.history
    for name in ("elbo", "reconstruction", "kl"):
        np.testing.assert_allclose(h[f"test_{name}"][-1], getattr(terms, name), rtol=1e-5)


# ----------------------------------------------- typed keys: the same draws as PRNGKey(seed)


def test_typed_keys_hold_the_legacy_key_data():
    # jax.random.key(s) and the legacy PRNGKey(s) hold the same key data, so switching the
    # package to typed keys changed no draw: every key it derives equals the legacy one.
    legacy = jax.random.PRNGKey(5)
    assert jnp.issubdtype(epoch_key(5, 3).dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(epoch_key(5, 3)),
        jax.random.fold_in(jax.random.fold_in(legacy, 1), 3),
    )
    batch_index, step_keys = epoch_plan(epoch_key(5, 3), 512, 64)
    legacy_epoch = jax.random.fold_in(jax.random.fold_in(legacy, 1), 3)
    perm_key, steps_key = jax.random.split(legacy_epoch)
    np.testing.assert_array_equal(step_keys, jax.random.split(steps_key, 8))  # (8, 2) uint32
    np.testing.assert_array_equal(
        batch_index, np.asarray(jax.random.permutation(perm_key, 512)).reshape(8, 64)
    )


def test_initial_weights_equal_those_of_the_legacy_key():
    model = init_model(SMALL, 4)
    legacy = VAE(SMALL, rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.PRNGKey(4), 0)))
    assert_same_params(model, legacy)


def test_the_chunk_runner_takes_key_data_or_typed_keys():
    model = init_model(SMALL, 0)
    graphdef, state = nnx.split(model, nnx.Param)
    train_config = config()
    images = prepare_images(TRAIN)
    batch_index, step_keys = (np.asarray(a) for a in epoch_plan(epoch_key(0, 0), 512, 64))
    run_chunk = chunk_runner(graphdef, train_config, 512)
    optimizer = make_optimizer(train_config, 512)
    outputs = []
    for keys in (step_keys[:3], jax.random.wrap_key_data(step_keys[:3])):
        params = nnx.to_pure_dict(state)
        params = jax.tree.map(jnp.copy, params)  # donated by the call
        _, _, losses, _ = run_chunk(
            params,
            optimizer.init(params),
            images,
            batch_index[:3],
            keys,
            np.float32(1.0),
            np.float32(1.0),
        )
        outputs.append(np.asarray(losses))
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float16])
def test_chunk_batches_are_data_binarize_of_each_batch_bit_for_bit(dtype):
    images = training_images(TRAIN) if dtype == np.uint8 else prepare_images(TRAIN).astype(dtype)
    batch_index, step_keys = epoch_plan(epoch_key(0, 0), 512, 64)
    binarize_keys = jax.vmap(jax.random.split)(jax.random.wrap_key_data(step_keys))[:, 0]
    chunk = chunk_batches(images, batch_index, binarize_keys)
    grey = chunk_batches(images, batch_index)
    assert chunk.shape == grey.shape == (8, 64, 784)
    for s in range(8):
        batch = images[batch_index[s]]
        if dtype == np.uint8:
            batch = data.to_unit_interval(batch)
        np.testing.assert_array_equal(grey[s], batch)
        np.testing.assert_array_equal(chunk[s], data.binarize(binarize_keys[s], batch))


def test_the_chunk_runner_is_the_plain_step_with_data_binarize():
    """The chunk draws its binarization noise before the scan: the same bits as a loop that
    binarizes every batch with data.binarize(binarize_key, batch) inside its step."""
    model = init_model(SMALL, 0)
    graphdef, state = nnx.split(model, nnx.Param)
    train_config = config()
    images = prepare_images(TRAIN)
    batch_index, step_keys = (np.asarray(a) for a in epoch_plan(epoch_key(0, 0), 512, 64))
    optimizer = make_optimizer(train_config, 512)
    params = jax.tree.map(jnp.copy, nnx.to_pure_dict(state))
    opt_state = optimizer.init(params)
    plain_losses = []
    for index, key in zip(batch_index[:4], jax.random.wrap_key_data(step_keys[:4]), strict=True):
        binarize_key, noise_key = jax.random.split(key)
        x = data.binarize(binarize_key, images[index])

        def loss_fn(p, noise_key=noise_key, x=x):
            return nnx.merge(graphdef, p).loss(noise_key, x)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        plain_losses.append(float(loss))
    chunk_params, _, losses, _ = chunk_runner(graphdef, train_config, 512)(
        jax.tree.map(jnp.copy, nnx.to_pure_dict(state)),
        optimizer.init(nnx.to_pure_dict(state)),
        images,
        batch_index[:4],
        step_keys[:4],
        np.float32(1.0),
        np.float32(1.0),
    )
    np.testing.assert_allclose(np.asarray(losses), plain_losses, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), chunk_params, params
    )


# ------------------------------------- memory: the training set stays uint8 on the device


def test_mean_image_equals_the_mean_of_the_float_images_bit_for_bit():
    images = data.load_mnist("train").images[:3000]
    expected = np.asarray(prepare_images(images)).mean(axis=0)
    got = mean_image(images, chunk=700)  # chunks that do not divide 3000
    assert got.dtype == np.float32 and got.shape == (784,)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(mean_image(prepare_images(images)), expected)


def test_training_images_keep_uint8_and_check_shapes():
    kept = training_images(TRAIN)
    assert kept.dtype == jnp.uint8 and kept.shape == (512, 784)
    assert training_images(prepare_images(TRAIN)).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"\(512, 27, 28\); expected \(N, 784\)"):
        training_images(TRAIN[:, :27])  # (512, 27, 28)


def test_uint8_and_float_training_sets_train_the_same_model(two_epochs):
    # The compact uint8 set is scaled per batch with the same table: the same numbers.
    floats = train(
        SMALL,
        config(),
        train_images=prepare_images(TRAIN),
        test_images=TEST,
        progress=False,
    )
    assert_same_params(floats.model, two_epochs.model)
    assert floats.history["train_elbo"] == two_epochs.history["train_elbo"]
