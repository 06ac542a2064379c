"""Tests for vae_edu.checkpoints: exact round trips, float16 storage, clear errors.

Corrupt files are made here by hand (truncation, a flipped byte, a rewritten payload, a
pickle, a foreign msgpack map) so each error path is exercised for real.
"""

from __future__ import annotations

import json
import pickle
import re

import jax
import numpy as np
import optax
import pytest
from flax import nnx, serialization

from vae_edu import checkpoints
from vae_edu.checkpoints import CheckpointError
from vae_edu.models import VAE, VAEConfig
from vae_edu.train import init_model

CONFIG = VAEConfig(hidden_sizes=(16,), latent_dim=3)


def make(config=CONFIG, seed=0):
    return init_model(config, seed)  # one compiled call (eager init compiles every op)


def params_of(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@pytest.fixture(scope="module")
def model():
    return make()


@pytest.fixture
def saved(model, tmp_path):
    return checkpoints.save(tmp_path / "model.msgpack", model, summary={"test_elbo": -99.5})


def rewrite(path, **changes):
    """Decodes the msgpack payload, applies ``changes`` and writes it back."""
    payload = serialization.msgpack_restore(path.read_bytes())
    payload.update(changes)
    path.write_bytes(serialization.msgpack_serialize(payload))


def test_round_trip_is_exact(model, saved):
    ckpt = checkpoints.load(saved)
    assert ckpt.config == CONFIG
    assert ckpt.summary == {"test_elbo": -99.5}
    assert ckpt.metadata["dtype"] == "float32"
    assert ckpt.metadata["library_versions"]["jax"] == jax.__version__
    jax.tree.map(np.testing.assert_array_equal, params_of(ckpt.model), params_of(model))
    # The loaded model computes exactly what the original does.
    x = np.random.default_rng(0).random((2, 784)).astype(np.float32)
    np.testing.assert_array_equal(ckpt.model.encode(x)[0], model.encode(x)[0])


def test_no_temporary_files_left_and_overwrite_works(model, saved):
    checkpoints.save(saved, make(seed=1))
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.msgpack"]
    assert not np.array_equal(
        params_of(checkpoints.load(saved).model)["encoder"]["output"]["kernel"],
        params_of(model)["encoder"]["output"]["kernel"],
    )


def test_float16_storage_rounds_to_half_precision(model, tmp_path):
    path16 = checkpoints.save(tmp_path / "half.msgpack", model, dtype="float16")
    path32 = checkpoints.save(tmp_path / "full.msgpack", model)
    assert path16.stat().st_size < 0.6 * path32.stat().st_size
    loaded = params_of(checkpoints.load(path16).model)
    expected = jax.tree.map(lambda a: a.astype(np.float16).astype(np.float32), params_of(model))
    jax.tree.map(np.testing.assert_array_equal, loaded, expected)
    assert checkpoints.read_metadata(path16)["dtype"] == "float16"


def test_optimizer_state_round_trip(model, tmp_path):
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = optax.adam(1e-3)
    state = jax.jit(optimizer.init)(params)
    grads = jax.tree.map(np.ones_like, params)
    _, state = jax.jit(optimizer.update)(grads, state, params)
    path = checkpoints.save(
        tmp_path / "opt.msgpack", model, opt_state=state, training={"epoch": 3, "seed": 7}
    )
    ckpt = checkpoints.load(path, opt_state_template=jax.jit(optimizer.init)(params))
    assert ckpt.training == {"epoch": 3, "seed": 7}
    assert jax.tree.structure(ckpt.opt_state) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, ckpt.opt_state, state)
    # Without a template the optimizer state is not restored.
    assert checkpoints.load(path).opt_state is None


def test_restore_into_a_model_of_another_architecture_names_the_layer(saved):
    other = make(VAEConfig(hidden_sizes=(32,), latent_dim=3))
    before = params_of(other)
    with pytest.raises(
        CheckpointError,
        match=r"layer encoder\.hidden_0\.kernel has shape \(784, 16\) in the "
        r"file but \(784, 32\) in the model",
    ):
        checkpoints.restore(saved, other)
    # Nothing half-loaded: the model is untouched.
    jax.tree.map(np.testing.assert_array_equal, params_of(other), before)


def abstract(config):
    """A model with shapes only (restore validates shapes before touching any value)."""
    return nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))


def test_restore_names_missing_layers_and_config_differences(saved):
    deeper = abstract(VAEConfig(hidden_sizes=(16, 8), latent_dim=3))
    with pytest.raises(CheckpointError, match=r"lacks .*encoder\.hidden_1\.kernel"):
        checkpoints.restore(saved, deeper)
    same_shapes = abstract(VAEConfig(hidden_sizes=(16,), latent_dim=3, activation="tanh"))
    with pytest.raises(CheckpointError, match="activation='relu' in the file but 'tanh'"):
        checkpoints.restore(saved, same_shapes)


def test_restore_into_a_matching_model(model, saved):
    fresh = make(seed=5)
    metadata = checkpoints.restore(saved, fresh)
    assert metadata["summary"]["test_elbo"] == -99.5
    jax.tree.map(np.testing.assert_array_equal, params_of(fresh), params_of(model))


@pytest.mark.parametrize("keep", [0, 20, 0.5, -1])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep % len(data))
    saved.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoints.load(saved)


def test_corrupted_parameter_bytes_are_detected(saved):
    payload = serialization.msgpack_restore(saved.read_bytes())
    kernel = payload["params"]["decoder"]["output"]["kernel"].copy()
    kernel[0, 0] += 1.0
    payload["params"]["decoder"]["output"]["kernel"] = kernel
    saved.write_bytes(serialization.msgpack_serialize(payload))
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoints.load(saved)


def test_flipped_byte_anywhere_is_an_error(saved):
    data = bytearray(saved.read_bytes())
    for position in (len(data) // 3, len(data) // 2, len(data) - 10):
        corrupt = data.copy()
        corrupt[position] ^= 0xFF
        saved.write_bytes(bytes(corrupt))
        with pytest.raises(CheckpointError):
            checkpoints.load(saved)


def test_wrong_format_and_version(saved, tmp_path):
    foreign = tmp_path / "foreign.msgpack"
    foreign.write_bytes(serialization.msgpack_serialize({"params": {"w": np.zeros(3)}}))
    with pytest.raises(CheckpointError, match="not a vae_edu.checkpoint file"):
        checkpoints.load(foreign)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"format": "vae_edu.checkpoint"}))
    with pytest.raises(CheckpointError):
        checkpoints.load(pickled)
    rewrite(saved, version=99)
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoints.load(saved)


def test_params_inconsistent_with_stored_config(saved):
    # A file whose config says latent_dim=4 but whose arrays are for latent_dim=3.
    payload = serialization.msgpack_restore(saved.read_bytes())
    rewrite(saved, metadata=payload["metadata"].replace('"latent_dim": 3', '"latent_dim": 4'))
    with pytest.raises(
        CheckpointError,
        match=r"decoder\.hidden_0\.kernel has shape \(3, 16\) "
        r"in the file but \(4, 16\)",
    ):
        checkpoints.load(saved)


def test_invalid_config_in_file(saved):
    payload = serialization.msgpack_restore(saved.read_bytes())
    rewrite(saved, metadata=payload["metadata"].replace('"relu"', '"swishy"'))
    with pytest.raises(CheckpointError, match="activation"):
        checkpoints.load(saved)


def test_missing_file_and_bad_save_arguments(model, tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoints.load(tmp_path / "nope.msgpack")
    with pytest.raises(ValueError, match="dtype"):
        checkpoints.save(tmp_path / "x.msgpack", model, dtype="bfloat16")
    with pytest.raises(ValueError, match="JSON"):
        checkpoints.save(tmp_path / "x.msgpack", model, summary={"bad": object()})
    broken = make(seed=2)
    broken.decoder.output.bias[...] = broken.decoder.output.bias[...] * np.nan
    with pytest.raises(ValueError, match="NaN"):
        checkpoints.save(tmp_path / "x.msgpack", broken)
    assert not list(tmp_path.iterdir())


# --------------------------------------------- issue 16: the whole envelope is validated
def rewrite_metadata(path, **changes):
    """Rewrites fields of the JSON metadata (summary, training, ...) inside the file."""
    payload = serialization.msgpack_restore(path.read_bytes())
    metadata = json.loads(payload["metadata"])
    metadata.update(changes)
    rewrite(path, metadata=json.dumps(metadata))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dtype": ["float32"]}, "field 'dtype' is list"),
        ({"dtype": 16}, "field 'dtype' is int 16"),
        ({"metadata": {"config": {}}}, "field 'metadata' is dict"),
        ({"metadata": "[1, 2]"}, "field 'metadata' holds list"),
        ({"metadata": "{not json"}, "field 'metadata' is not JSON"),
        ({"params_sha256": 5}, "field 'params_sha256' is int 5"),
        ({"version": 1.0}, "format version 1.0"),
        ({"opt_state": "adam"}, "field 'opt_state' is str 'adam'"),
        ({"opt_state": ["a"]}, "field 'opt_state' is list, expected a map of arrays or nil"),
        (
            {"opt_state": {"0": {"mu": "a"}}},
            "optimizer state array 0.mu (field 'opt_state') is str 'a'",
        ),
        (
            {"opt_state": {"0": {"count": np.full(3, np.nan, np.float32)}}},
            "array 0.count (field 'opt_state') contains NaN",
        ),
        # Version 1 files (the optimizer state as a list of leaves) are checked as before.
        ({"version": 1, "opt_state": {"0": 1}}, "field 'opt_state' is dict, expected a list"),
        (
            {"version": 1, "opt_state": ["a", "b"]},
            "optimizer state array 0 (field 'opt_state') is str 'a'",
        ),
        (
            {"version": 1, "opt_state": [{"mu": 1}]},
            "optimizer state array 0 (field 'opt_state') is dict",
        ),
        (
            {"version": 1, "opt_state": [np.full(3, np.nan, np.float32)]},
            "array 0 (field 'opt_state') contains NaN",
        ),
    ],
)
def test_malformed_envelope_fields_are_named(saved, changes, message):
    rewrite(saved, **changes)
    with pytest.raises(CheckpointError) as info:
        checkpoints.load(saved)
    assert message in str(info.value)
    assert str(saved) in str(info.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"training": [1, 2]}, "metadata field training is list"),
        ({"summary": "fine"}, "metadata field summary is str 'fine'"),
        ({"summary": {"test_elbo": "high"}}, "summary.test_elbo is str 'high'"),
        ({"summary": {"nll": None}}, "summary.nll is NoneType"),
        ({"summary": {"iwae_k": 2.5}}, "summary.iwae_k is float 2.5"),
        ({"training": {"epoch": -1}}, "training.epoch is int -1"),
        ({"training": {"train_config": "adam"}}, "training.train_config is str 'adam'"),
        ({"training": {"train_config": {"batch_size": 0}}}, "training.train_config is invalid"),
        ({"training": {"history": {"test_elbo": ["x"]}}}, "training.history.test_elbo is not"),
        (
            {"training": {"epoch": 2, "history": {"test_elbo": [1.0]}}},
            "history.test_elbo has 1 entries but training.epoch is 2",
        ),
        ({"library_versions": "new"}, "metadata field library_versions is str"),
    ],
)
def test_malformed_metadata_fields_are_named(saved, changes, message):
    rewrite_metadata(saved, **changes)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoints.load(saved)


def test_malformed_checkpoint_through_evaluate_and_resume(saved, tmp_path, capsys):
    from vae_edu.__main__ import main

    rewrite(saved, dtype=["float32"])
    assert main(["evaluate", str(saved), "--no-progress"]) == 2
    assert "field 'dtype' is list" in capsys.readouterr().err
    # --resume reads <output>.resume.msgpack: the same validation, the same message.
    resume = tmp_path / "run.resume.msgpack"
    resume.write_bytes(saved.read_bytes())
    argv = ["train", "--output", str(tmp_path / "run.msgpack"), "--resume", "--no-figures"]
    assert main(argv + ["--train-subset", "128", "--test-subset", "2", "--no-progress"]) == 2
    assert "field 'dtype' is list" in capsys.readouterr().err


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(model, saved):
    stale = saved.parent / f".{saved.name}.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = saved.parent / ".other.msgpack.abc.tmp"  # another checkpoint's: not ours
    other.write_bytes(b"")
    checkpoints.save(saved, model)
    assert sorted(p.name for p in saved.parent.iterdir()) == [other.name, saved.name]


# --------------------------------------------- issue 12: format version 2 (named optimizer
# state via flax.serialization), one rounding function, no umask change
def adam_state(model, optimizer=None, steps=1):
    """An optax state after ``steps`` updates (non-trivial moments and counts)."""
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = optimizer or optax.adam(1e-3)
    state = jax.jit(optimizer.init)(params)
    update = jax.jit(optimizer.update)
    for step in range(steps):
        grads = jax.tree.map(lambda a, s=step: np.full_like(a, s + 1.0), params)
        _, state = update(grads, state, params)
    return params, optimizer, state


def test_optimizer_state_is_stored_as_a_named_tree_and_round_trips(model, tmp_path):
    from vae_edu.train import TrainConfig, make_optimizer

    # The training optimizer with a schedule: a chain whose state holds two step counts.
    optimizer = make_optimizer(
        TrainConfig(num_epochs=3, schedule="warmup_cosine", warmup_epochs=1), 1000
    )
    params, _, state = adam_state(model, optimizer, steps=3)
    path = checkpoints.save(tmp_path / "opt.msgpack", model, opt_state=state)
    stored = serialization.msgpack_restore(path.read_bytes())
    assert stored["version"] == checkpoints.VERSION == 2
    # Named by the state's own fields and the parameter paths, not by position.
    np.testing.assert_array_equal(
        stored["opt_state"]["0"]["mu"]["encoder"]["output"]["kernel"],
        state[0].mu["encoder"]["output"]["kernel"],
    )
    assert int(stored["opt_state"]["0"]["count"]) == 3
    ckpt = checkpoints.load(path, opt_state_template=jax.jit(optimizer.init)(params))
    assert jax.tree.structure(ckpt.opt_state) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(ckpt.opt_state), jax.tree.leaves(state), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_optimizer_state_of_another_structure_is_refused_with_the_mismatch_named(model, tmp_path):
    params, _, state = adam_state(model)
    path = checkpoints.save(tmp_path / "opt.msgpack", model, opt_state=state)
    # SGD with momentum keeps a trace, not Adam's count / mu / nu.
    sgd = optax.sgd(0.1, momentum=0.9)
    with pytest.raises(CheckpointError) as info:
        checkpoints.load(path, opt_state_template=sgd.init(params))
    message = str(info.value)
    assert "the optimizer state does not fit the optimizer" in message
    assert "the file lacks 0.trace.decoder.hidden_0.bias" in message
    assert "the file has 0.count, 0.mu.decoder.hidden_0.bias" in message
    # Adam for a wider model: every array is named with both shapes.
    wider = nnx.to_pure_dict(nnx.state(make(VAEConfig(hidden_sizes=(32,), latent_dim=3))))
    with pytest.raises(
        CheckpointError,
        match=r"array 0\.mu\.encoder\.hidden_0\.kernel has shape \(784, 16\) in the file but "
        r"shape \(784, 32\) in the optimizer",
    ):
        checkpoints.load(path, opt_state_template=optax.adam(1e-3).init(wider))


def test_version_1_files_with_a_list_of_leaves_still_load(model, tmp_path):
    params, optimizer, state = adam_state(model, steps=2)
    path = checkpoints.save(tmp_path / "v1.msgpack", model, opt_state=state)
    # What version 1 wrote: the leaves in jax.tree.leaves order.
    rewrite(path, version=1, opt_state=[np.asarray(leaf) for leaf in jax.tree.leaves(state)])
    template = jax.jit(optimizer.init)(params)
    ckpt = checkpoints.load(path, opt_state_template=template)
    assert ckpt.metadata["version"] == 1
    assert jax.tree.structure(ckpt.opt_state) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, ckpt.opt_state, state)
    jax.tree.map(np.testing.assert_array_equal, params_of(ckpt.model), params_of(model))
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
    rewrite(path, opt_state=leaves[:-1])
    expected = f"has {len(leaves) - 1} arrays, the optimizer expects {len(leaves)}"
    with pytest.raises(CheckpointError, match=expected):
        checkpoints.load(path, opt_state_template=template)


@pytest.mark.parametrize("name", ["main", "latent2", "beta_1"])
def test_shipped_version_1_files_load_bit_for_bit_and_resave_identically(name, tmp_path):
    from vae_edu import pretrained

    file = pretrained.path(name)
    raw = serialization.msgpack_restore(file.read_bytes())
    assert raw["version"] == 1 and raw["opt_state"] is None
    ckpt = checkpoints.load(file)
    # Independent route: the file's own float16 arrays, widened by NumPy.
    expected = jax.tree.map(lambda a: a.astype(np.float32), raw["params"])
    jax.tree.map(np.testing.assert_array_equal, params_of(ckpt.model), expected)
    # Saved again (now version 2) at the storage dtype: the same bytes, digest and summary.
    again = checkpoints.save(
        tmp_path / "again.msgpack",
        ckpt.model,
        summary=ckpt.summary,
        training=ckpt.training,
        dtype=ckpt.metadata["dtype"],
    )
    resaved = serialization.msgpack_restore(again.read_bytes())
    assert resaved["version"] == 2 and resaved["params_sha256"] == raw["params_sha256"]
    jax.tree.map(np.testing.assert_array_equal, resaved["params"], raw["params"])
    assert checkpoints.read_metadata(again)["summary"] == ckpt.summary


def test_as_stored_is_what_load_returns(tmp_path):
    model = make(seed=3)
    for dtype in ("float16", "float32"):
        path = checkpoints.save(tmp_path / f"{dtype}.msgpack", model, dtype=dtype)
        jax.tree.map(
            np.testing.assert_array_equal,
            params_of(checkpoints.as_stored(model, dtype)),
            params_of(checkpoints.load(path).model),
        )
    # The model itself is untouched, and float16 really rounds.
    kernel = params_of(model)["encoder"]["output"]["kernel"]
    rounded = params_of(checkpoints.as_stored(model, "float16"))["encoder"]["output"]["kernel"]
    np.testing.assert_array_equal(rounded, kernel.astype(np.float16).astype(np.float32))
    assert not np.array_equal(rounded, kernel)
    with pytest.raises(ValueError, match="dtype must be one of"):
        checkpoints.as_stored(model, "bfloat16")


def test_save_never_changes_the_umask_and_gives_the_usual_permissions(model, tmp_path, monkeypatch):
    import os

    current = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("save changed the umask"))
        path = checkpoints.save(tmp_path / "m.msgpack", model)
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027  # unchanged (and set back to the same value)
    finally:
        os.umask(current)
    if os.name == "posix":  # elsewhere the mode bits only say read-only or not
        assert path.stat().st_mode & 0o777 == 0o640
    assert checkpoints.load(path).config == CONFIG


def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary(model, saved, monkeypatch):
    import os

    before = saved.read_bytes()

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(saved, make(seed=4))
    monkeypatch.undo()
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]
    assert saved.read_bytes() == before
