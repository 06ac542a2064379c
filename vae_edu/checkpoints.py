"""Safe, self-describing model checkpoints (msgpack, never pickle).

One file holds one model: its parameters (``flax.serialization`` msgpack of the pure-dict
NNX state, optionally stored as float16), its :class:`~vae_edu.config.VAEConfig`, a
training summary (epochs, seed, test ELBO, log-likelihood estimate...), the library
versions that produced it and a format tag with a version number. Optionally the optimizer
state and training history, so that :func:`vae_edu.train.train` can resume.

Why msgpack: unpickling a file can run arbitrary code, so a checkpoint downloaded from a
classmate could do anything. A msgpack file is data only: maps, strings, numbers and raw
array bytes.

Loading validates everything *before* touching a model: the format tag and version, the
SHA-256 of the parameter bytes (catches truncated or corrupted files), the config, and
every layer's shape and dtype. Errors are :class:`CheckpointError` (a ``ValueError``)
naming what differs, e.g. ``layer encoder.hidden_0.kernel has shape (784, 400) in the file
but (784, 512) in the model``. Nothing is half-loaded: the complete new state is built
first and only then written into the model.

File layout (a msgpack map)::

    format        "vae_edu.checkpoint"
    version       2  (files of version 1 are read too; see below)
    metadata      JSON text: {"config": ..., "summary": ..., "training": ...,
                  "library_versions": ...}
    dtype         "float32" | "float16"  (storage dtype of params)
    params        nested map  layer -> {"kernel": array, "bias": array}
    params_sha256 hex digest of the parameter bytes (see _params_digest)
    opt_state     nested map (``flax.serialization.to_state_dict`` of the optax state,
                  e.g. {"0": {"count": a, "mu": {...}, "nu": {...}}, "1": {}}) or nil

Version 1 differs only in ``opt_state``: an anonymous list of the optax state's leaves in
``jax.tree.leaves`` order. Such files (the shipped pretrained models among them, which hold
no optimizer state) still load; every save writes version 2. The named tree of version 2
is checked against the optimizer's own state before it is restored: a missing or extra
entry, or an array of another shape, is a CheckpointError naming it (e.g.
``0.mu.encoder.output.kernel``), where version 1 could only count leaves.

Writes are atomic (temporary file in the same folder, then ``os.replace``), so an
interrupted save never leaves a truncated checkpoint behind; the temporary a killed save
leaves beside the checkpoint is deleted by the next successful save of that path. The file
gets the permissions of any new file (0o666 minus the process umask, applied by the
operating system); the umask itself is never touched.

Loading checks the schema of the whole file, every field's type included (``dtype`` a
string, ``summary`` and ``training`` maps with numbers where vae_edu reads numbers,
optimizer-state leaves numeric and finite...): any malformed file is a CheckpointError
naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization, traverse_util

from vae_edu.config import TrainConfig, VAEConfig
from vae_edu.models import VAE

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "Checkpoint",
    "save",
    "load",
    "restore",
    "read_metadata",
    "library_versions",
    "as_stored",
]

FORMAT = "vae_edu.checkpoint"
VERSION = 2
#: The versions load() reads (1: the optimizer state as a list of leaves; 2: a named tree).
READABLE_VERSIONS = (1, 2)
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, of another format, or does not fit the model."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint.

    Attributes:
      model: the :class:`~vae_edu.models.VAE` with the stored parameters (float32).
      config: its :class:`~vae_edu.config.VAEConfig`.
      summary: dict of results (e.g. ``test_elbo``, ``nll``, ``quick_test_elbo``).
      training: dict of training state (``epoch``, ``seed``, ``train_config``,
        ``history``) or ``{}``.
      opt_state: the optimizer state (only if saved and a template was given), else None.
      metadata: format, version, storage dtype, library versions.
    """

    model: VAE
    config: VAEConfig
    summary: dict
    training: dict
    opt_state: Any
    metadata: dict


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine a checkpoint's numbers."""
    import importlib.metadata

    import flax
    import optax

    try:
        own = importlib.metadata.version("vae_edu")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        own = "unknown"
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "vae_edu": own,
    }


# ----------------------------------------------------------------------------- helpers
def _flatten(tree: dict, *, keep_empty_nodes: bool = False) -> dict[str, Any]:
    """{"encoder": {"hidden_0": {"kernel": a}}} -> {"encoder.hidden_0.kernel": a}.

    ``flax.traverse_util.flatten_dict``, with the key path joined by dots (a crafted file
    may hold non-string keys, so they are converted rather than trusted).
    """
    flat = traverse_util.flatten_dict(tree, keep_empty_nodes=keep_empty_nodes)
    return {".".join(str(part) for part in key): value for key, value in flat.items()}


def _unflatten(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`_flatten` (``flax.traverse_util.unflatten_dict``), keys sorted."""
    return traverse_util.unflatten_dict(dict(sorted(flat.items())), sep=".")


def _params_digest(flat: dict[str, np.ndarray]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every parameter in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(flat):
        arr = np.ascontiguousarray(flat[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _abstract_model(config: VAEConfig) -> VAE:
    """A model with ``config`` whose parameters are shapes only (nothing is computed)."""
    return nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))


def _storage_arrays(model: VAE, dtype: str) -> dict[str, np.ndarray]:
    """The parameters of ``model`` as stored with ``dtype``: {"encoder.output.kernel": array}.

    The one place where parameters are rounded to the storage dtype (float16 rounds to
    nearest); :func:`save` stores these arrays and :func:`as_stored` gives the model they
    load back as.

    Raises:
      ValueError: unknown dtype, or parameters that are not finite or do not fit float16.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vae_edu.models.VAE, got {type(model).__name__}")
    flat = {
        k: np.asarray(v) for k, v in _flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()
    }
    for name, arr in flat.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {name} contains NaN or inf; refusing to save it")
        if dtype == "float16" and np.max(np.abs(arr), initial=0.0) > np.finfo(np.float16).max:
            raise ValueError(f"parameter {name} exceeds the float16 range; save as float32")
    return {k: v.astype(STORAGE_DTYPES[dtype]) for k, v in flat.items()}


def _float32_state(flat: dict[str, np.ndarray]) -> dict:
    """Stored arrays -> the nested float32 parameter dict of a model (what load builds)."""
    return _unflatten({k: jnp.asarray(v.astype(np.float32)) for k, v in flat.items()})


def as_stored(model: VAE, dtype: str) -> VAE:
    """A copy of ``model`` with the parameters :func:`load` returns after ``save(..., dtype)``.

    With ``dtype="float16"`` every parameter is rounded to the nearest float16 (and widened
    back to float32), so numbers computed from the result are those of the saved file.

    Raises:
      ValueError: as :func:`save` (unknown dtype, NaN/inf, outside the float16 range).
    """
    graphdef = nnx.graphdef(model)
    return nnx.merge(graphdef, _float32_state(_storage_arrays(model, dtype)))


def _shapes(model: VAE) -> dict[str, tuple[int, ...]]:
    return {
        k: tuple(np.shape(v))
        for k, v in _flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()
    }


def _compare_shapes(found: dict[str, tuple], expected: dict[str, tuple], where: str) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    problems = [
        f"layer {n} has shape {found[n]} in the file but {expected[n]} in {where}"
        for n in sorted(set(found) & set(expected))
        if found[n] != expected[n]
    ]
    if missing:
        problems.append(f"the file lacks {', '.join(missing)}")
    if unexpected:
        problems.append(
            f"the file has parameters {', '.join(unexpected)} that {where} does not have"
        )
    if problems:
        raise CheckpointError("architecture mismatch: " + "; ".join(problems))


# ----------------------------------------------------------------------------- save
def save(
    path: str | os.PathLike,
    model: VAE,
    *,
    summary: dict | None = None,
    training: dict | None = None,
    opt_state: Any = None,
    dtype: str = "float32",
) -> Path:
    """Writes ``model`` (and optional summary / training state) to ``path`` atomically.

    Args:
      path: target file (conventionally ``*.msgpack``); parent folders are created.
      model: the VAE to save.
      summary: JSON-serialisable results to keep with the model (e.g. ``test_elbo``).
      training: JSON-serialisable training state (epoch, seed, train config, history).
      opt_state: optional optax state, stored as its named tree of arrays
        (``flax.serialization.to_state_dict``).
      dtype: storage dtype of the parameters, ``"float32"`` or ``"float16"`` (half the
        size; parameters are rounded to the nearest float16).

    Returns:
      The path written.

    Raises:
      ValueError: unknown dtype, non-JSON metadata, or parameters that do not fit float16.
    """
    flat = _storage_arrays(model, dtype)
    metadata = {
        "config": model.config.to_dict(),
        "summary": summary or {},
        "training": training or {},
        "library_versions": library_versions(),
    }
    try:
        metadata_text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"summary/training must be JSON-serialisable with finite numbers: {err}"
        ) from err
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": metadata_text,
        "dtype": dtype,
        "params": _unflatten(flat),
        "params_sha256": _params_digest(flat),
        "opt_state": None
        if opt_state is None
        else jax.tree.map(np.asarray, serialization.to_state_dict(opt_state)),
    }
    data = serialization.msgpack_serialize(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    _remove_stale_temporaries(path)
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes ``data`` to a new ``.<name>.<random>.tmp`` beside ``path``, then renames it.

    The temporary is created with mode 0o666, from which the operating system removes the
    process umask: the permissions of any new file, without reading or changing the umask
    (which is process-wide, so changing it races with other threads). On Windows the mode
    only decides read-only, and 0o666 is writable. If anything fails the temporary is
    deleted and ``path`` is untouched.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # 2**-64 odds: draw another name
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Deletes ``.<name>.*.tmp`` files left beside ``path`` by saves that were killed.

    A save writes ``.<name>.<random>.tmp`` and renames it onto ``path``; a process killed
    in between (power loss, kill -9) leaves the temporary behind. Once a save of ``path``
    has succeeded, any such file is garbage. (Two processes saving the *same* path at the
    same time is unsupported anyway: the last rename wins.)
    """
    prefix, suffix = f".{path.name}.", ".tmp"
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix + suffix):
            try:
                if entry.is_file():
                    entry.unlink()
            except OSError:  # already gone, or not ours to delete: not worth failing a save
                pass


# ----------------------------------------------------------------------------- load
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite JSON number (int or float, not a bool, not NaN or inf)."""
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _kind(value) -> str:
    """How a malformed field is described: its type, and for short scalars its value."""
    if isinstance(value, (int, float, str)) and len(repr(value)) <= 40:
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


# Summary fields vae_edu itself reads or prints: finite numbers (std errors may be null).
_SUMMARY_NUMBERS = (
    "test_elbo",
    "quick_test_elbo",
    "nll",
    "test_log_likelihood",
    "test_elbo_before_rounding",
)
_SUMMARY_OPTIONAL_NUMBERS = ("test_elbo_std_error", "test_log_likelihood_std_error")
_SUMMARY_COUNTS = (
    "epochs",
    "iwae_k",
    "test_images",
    "train_images",
    "active_units",
    "eval_binarizations",
)


def _check_summary(path, summary) -> None:
    if not isinstance(summary, dict):
        raise CheckpointError(
            f"{path} is corrupt: metadata field summary is {_kind(summary)}, expected a map"
        )
    for key in _SUMMARY_NUMBERS + _SUMMARY_OPTIONAL_NUMBERS:
        if key not in summary or (key in _SUMMARY_OPTIONAL_NUMBERS and summary[key] is None):
            continue
        if not _is_number(summary[key]):
            raise CheckpointError(
                f"{path} is corrupt: metadata field summary.{key} is {_kind(summary[key])}, "
                "expected a finite number"
            )
    for key in _SUMMARY_COUNTS:
        if key in summary and not (_is_int(summary[key]) and summary[key] >= 0):
            raise CheckpointError(
                f"{path} is corrupt: metadata field summary.{key} is {_kind(summary[key])}, "
                "expected an integer >= 0"
            )


def _check_training(path, training) -> None:
    if not isinstance(training, dict):
        raise CheckpointError(
            f"{path} is corrupt: metadata field training is {_kind(training)}, expected a map"
        )
    for key in ("epoch", "seed"):
        if key in training and not (_is_int(training[key]) and training[key] >= 0):
            raise CheckpointError(
                f"{path} is corrupt: metadata field training.{key} is "
                f"{_kind(training[key])}, expected an integer >= 0"
            )
    if "train_config" in training:
        train_config = training["train_config"]
        if not isinstance(train_config, dict):
            raise CheckpointError(
                f"{path} is corrupt: metadata field training.train_config is "
                f"{_kind(train_config)}, expected a map"
            )
        try:
            TrainConfig.from_dict(train_config)
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"{path} is corrupt: metadata field training.train_config is invalid: {err}"
            ) from err
    if "history" in training:
        history = training["history"]
        if not isinstance(history, dict):
            raise CheckpointError(
                f"{path} is corrupt: metadata field training.history is {_kind(history)}, "
                "expected a map of lists of numbers"
            )
        for key, values in history.items():
            if not isinstance(values, list) or not all(_is_number(v) for v in values):
                raise CheckpointError(
                    f"{path} is corrupt: metadata field training.history.{key} is not a "
                    "list of finite numbers"
                )
            if "epoch" in training and len(values) != training["epoch"]:
                raise CheckpointError(
                    f"{path} is corrupt: metadata field training.history.{key} has "
                    f"{len(values)} entries but training.epoch is {training['epoch']}"
                )


def _check_opt_state(path, opt_state, version: int) -> None:
    """Checks the stored optimizer state: nil, or numeric finite arrays (named in version 2)."""
    if opt_state is None:
        return
    if version == 1:
        if not isinstance(opt_state, list):
            raise CheckpointError(
                f"{path} is corrupt: the field 'opt_state' is {_kind(opt_state)}, expected a "
                "list of arrays or nil"
            )
        arrays = dict(enumerate(opt_state))
    else:
        if not isinstance(opt_state, dict):
            raise CheckpointError(
                f"{path} is corrupt: the field 'opt_state' is {_kind(opt_state)}, expected a "
                "map of arrays or nil"
            )
        arrays = {
            name: leaf
            for name, leaf in _flatten(opt_state, keep_empty_nodes=True).items()
            if leaf is not traverse_util.empty_node  # e.g. the empty state of scale_by_lr
        }
    for name, leaf in arrays.items():
        if not isinstance(leaf, np.ndarray) or not (
            np.issubdtype(leaf.dtype, np.floating) or np.issubdtype(leaf.dtype, np.integer)
        ):
            kind = f"an array of {leaf.dtype}" if isinstance(leaf, np.ndarray) else _kind(leaf)
            raise CheckpointError(
                f"{path} is corrupt: optimizer state array {name} (field 'opt_state') is "
                f"{kind}, expected a numeric array"
            )
        if np.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
            raise CheckpointError(
                f"{path} is corrupt: optimizer state array {name} (field 'opt_state') contains "
                "NaN or inf"
            )


def _read(path: str | os.PathLike) -> tuple[dict, dict]:
    """Reads and checks the whole envelope of a checkpoint: (payload, metadata).

    Every field's type is checked before it is used, so a malformed file (crafted or
    damaged) is a CheckpointError naming the field, never a TypeError from deep inside.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = path.read_bytes()
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises ValueError / ExtraData / TypeError on garbage
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt "
            f"msgpack, {len(raw)} bytes): {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        tag = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a {FORMAT} file (format tag {tag!r})")
    version = payload.get("version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise CheckpointError(
            f"{path} has format version {version!r}; this vae_edu reads versions {readable}"
        )
    for key in ("metadata", "dtype", "params", "params_sha256"):
        if key not in payload:
            raise CheckpointError(f"{path} is corrupt: the field {key!r} is missing")
    for key in ("metadata", "dtype", "params_sha256"):
        if not isinstance(payload[key], str):
            raise CheckpointError(
                f"{path} is corrupt: the field {key!r} is {_kind(payload[key])}, expected a string"
            )
    if payload["dtype"] not in STORAGE_DTYPES:
        raise CheckpointError(
            f"{path} stores parameters as {payload['dtype']!r} (field 'dtype'); expected "
            f"one of {sorted(STORAGE_DTYPES)}"
        )
    try:
        metadata = json.loads(payload["metadata"])
    except ValueError as err:
        raise CheckpointError(
            f"{path} is corrupt: the field 'metadata' is not JSON: {err}"
        ) from err
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path} is corrupt: the field 'metadata' holds {_kind(metadata)}, expected a map"
        )
    if not isinstance(metadata.get("config"), dict):
        raise CheckpointError(
            f"{path} has an invalid model config: metadata field config is "
            f"{_kind(metadata.get('config'))}, expected a map"
        )
    try:
        config = VAEConfig.from_dict(metadata["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} has an invalid model config: {err}") from err
    _check_summary(path, metadata.setdefault("summary", {}))
    _check_training(path, metadata.setdefault("training", {}))
    versions = metadata.setdefault("library_versions", {})
    if not isinstance(versions, dict):
        raise CheckpointError(
            f"{path} is corrupt: metadata field library_versions is {_kind(versions)}, "
            "expected a map"
        )
    _check_opt_state(path, payload.get("opt_state"), version)
    if not isinstance(payload["params"], dict):
        raise CheckpointError(f"{path} is corrupt: params is not a map")
    flat = _flatten(payload["params"])
    storage = np.dtype(STORAGE_DTYPES[payload["dtype"]])
    for name, arr in flat.items():
        if not isinstance(arr, np.ndarray) or arr.dtype != storage:
            kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise CheckpointError(f"{path}: parameter {name} is {kind}, expected {storage} arrays")
    if _params_digest(flat) != payload["params_sha256"]:
        raise CheckpointError(
            f"{path} is corrupt: the SHA-256 of its parameters does not "
            f"match the one recorded at save time"
        )
    metadata["config"] = config
    return payload, metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """The config, summary, training dict, versions and dtype of a checkpoint (validated).

    Returns:
      dict with ``config`` (a VAEConfig), ``summary``, ``training``,
      ``library_versions``, ``dtype``, ``format``, ``version``.
    """
    payload, metadata = _read(path)
    return _info(payload, metadata)


def _info(payload: dict, metadata: dict) -> dict:
    """The metadata with the file's format, version and storage dtype."""
    return {**metadata, "dtype": payload["dtype"], "format": FORMAT, "version": payload["version"]}


def _new_state(path, payload: dict, expected: dict[str, tuple], where: str) -> dict:
    flat = _flatten(payload["params"])
    _compare_shapes({k: tuple(v.shape) for k, v in flat.items()}, expected, where)
    for name, arr in flat.items():
        if not np.all(np.isfinite(arr)):
            raise CheckpointError(f"{path}: parameter {name} contains NaN or inf")
    return _float32_state(flat)


def _opt_state(path, payload: dict, template: Any) -> Any:
    """The stored optimizer state in the structure and dtypes of ``template``."""
    stored = payload.get("opt_state")
    if stored is None or template is None:
        return None
    if payload["version"] == 1:
        return _opt_state_from_leaves(path, stored, template)
    empty = traverse_util.empty_node  # an empty sub-state, e.g. that of scale_by_learning_rate
    expected = traverse_util.flatten_dict(
        serialization.to_state_dict(template), keep_empty_nodes=True
    )
    found = traverse_util.flatten_dict(stored, keep_empty_nodes=True)

    def name(key: tuple) -> str:
        return ".".join(str(part) for part in key)

    def shape(value) -> str:
        return "an empty state" if value is empty else f"shape {np.shape(value)}"

    missing = sorted(name(k) for k in set(expected) - set(found))
    unexpected = sorted(name(k) for k in set(found) - set(expected))
    problems = [
        f"array {name(k)} has {shape(found[k])} in the file but {shape(expected[k])} in "
        "the optimizer"
        for k in sorted(set(found) & set(expected), key=name)
        if shape(found[k]) != shape(expected[k])
    ]
    if missing:
        problems.append(f"the file lacks {', '.join(missing)}")
    if unexpected:
        problems.append(f"the file has {', '.join(unexpected)} that the optimizer does not have")
    if problems:
        raise CheckpointError(
            f"{path}: the optimizer state does not fit the optimizer: " + "; ".join(problems)
        )
    restored = {
        k: v if v is empty else jnp.asarray(v, dtype=jnp.asarray(expected[k]).dtype)
        for k, v in found.items()
    }
    try:
        return serialization.from_state_dict(template, traverse_util.unflatten_dict(restored))
    except (ValueError, TypeError, KeyError) as err:  # a structure the flat keys cannot show
        raise CheckpointError(
            f"{path}: the optimizer state does not fit the optimizer: {err}"
        ) from err


def _opt_state_from_leaves(path, leaves: list, template: Any) -> Any:
    """Version 1: the optimizer state as a positional list of ``jax.tree.leaves``."""
    template_leaves, treedef = jax.tree.flatten(template)
    if len(leaves) != len(template_leaves):
        raise CheckpointError(
            f"{path}: the optimizer state has {len(leaves)} arrays, the "
            f"optimizer expects {len(template_leaves)}"
        )
    restored = []
    for i, (arr, ref) in enumerate(zip(leaves, template_leaves, strict=True)):
        arr = np.asarray(arr)
        if arr.shape != np.shape(ref):
            raise CheckpointError(
                f"{path}: optimizer state array {i} has shape {arr.shape} "
                f"in the file but {np.shape(ref)} in the optimizer"
            )
        restored.append(jnp.asarray(arr, dtype=jnp.asarray(ref).dtype))
    return jax.tree.unflatten(treedef, restored)


def load(path: str | os.PathLike, *, opt_state_template: Any = None) -> Checkpoint:
    """Loads a checkpoint into a new model built from the config stored in the file.

    Args:
      path: the checkpoint.
      opt_state_template: an optax state of the right structure (``optimizer.init(params)``)
        to restore the stored optimizer state into; without it ``opt_state`` is None.

    Returns:
      :class:`Checkpoint` ``(model, config, summary, training, opt_state, metadata)``.

    Raises:
      FileNotFoundError: no such file.
      CheckpointError: unreadable, corrupt, another format or version, or parameters that
        do not fit the stored config (the message names the layer and both shapes).
    """
    payload, metadata = _read(path)
    config = metadata["config"]
    abstract = _abstract_model(config)
    state = _new_state(path, payload, _shapes(abstract), f"a {config.describe()} model")
    opt_state = _opt_state(path, payload, opt_state_template)
    model = nnx.merge(nnx.graphdef(abstract), state)
    info = {
        "format": FORMAT,
        "version": payload["version"],
        "dtype": payload["dtype"],
        "library_versions": metadata.get("library_versions", {}),
    }
    return Checkpoint(
        model, config, metadata.get("summary", {}), metadata.get("training", {}), opt_state, info
    )


def restore(path: str | os.PathLike, model: VAE) -> dict:
    """Writes the parameters stored in ``path`` into an existing ``model`` (all or nothing).

    Args:
      path: the checkpoint.
      model: a VAE whose architecture must match the file's.

    Returns:
      The file's metadata (as :func:`read_metadata`).

    Raises:
      CheckpointError: the file is unreadable/corrupt, a layer's shape differs (named, with
        both shapes), or the config differs in a way shapes do not show (e.g. activation);
        ``model`` is left unchanged.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vae_edu.models.VAE, got {type(model).__name__}")
    payload, metadata = _read(path)
    state = _new_state(path, payload, _shapes(model), "the model")
    file_config = metadata["config"]
    if file_config != model.config:
        a, b = file_config.to_dict(), model.config.to_dict()
        diffs = ", ".join(
            f"{k}={a[k]!r} in the file but {b[k]!r} in the model" for k in sorted(a) if a[k] != b[k]
        )
        raise CheckpointError(f"config mismatch: {diffs}")
    nnx.update(model, state)
    return _info(payload, metadata)
