"""The two configs of the course, and the command-line options derived from them.

:class:`VAEConfig` says *what* model is built (the architecture of
:class:`~vae_edu.models.VAE`), :class:`TrainConfig` says *how* it is trained
(:func:`vae_edu.train.train`). Both are frozen, hashable and JSON-serialisable, and both
validate their fields on construction (a ValueError naming the field).

Each field is declared once, with its default and its help text::

    latent_dim: int = field(default=20, metadata={"help": "dimension d of the latent code z",
                                                  "parse": positive_int})

and everything else is derived from that declaration: the ``Attributes`` section of the
class docstring, and the command-line options of ``python -m vae_edu train``
(:func:`add_dataclass_arguments` adds one option per field, :func:`from_namespace` builds
the config back from the parsed arguments). The metadata keys are

* ``help``: the text (required);
* ``parse``: the argparse ``type`` that reads one value from the command line (default:
  ``str``, with ``choices`` when given);
* ``choices``: the allowed values of a string field;
* ``flag``: the option name when it is not ``--`` + the field name with dashes (e.g.
  ``--lr`` for ``learning_rate``); a boolean field gets ``--flag`` / ``--no-flag``;
* ``metavar``: the placeholder shown by ``--help``;
* ``cli``: ``False`` for a field the command line does not offer (``input_dim``: the CLI
  trains on MNIST, whose images have 784 pixels).

Example::

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig)
    train_config = from_namespace(TrainConfig, parser.parse_args(["--epochs", "3"]))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from collections.abc import Iterable
from dataclasses import field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu import _checks

__all__ = [
    "ACTIVATIONS",
    "LIKELIHOODS",
    "SCHEDULES",
    "TARGETS",
    "VAEConfig",
    "TrainConfig",
    "add_dataclass_arguments",
    "from_namespace",
    "flag",
    "cli_fields",
    "positive_int",
    "non_negative_int",
    "prng_seed",
    "finite_float",
    "non_negative_float",
    "positive_float",
]

#: Hidden-layer nonlinearities by name (the values are what :class:`~vae_edu.models.VAE` calls).
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}
#: Decoder distributions.
LIKELIHOODS = ("bernoulli", "gaussian")
#: Learning-rate schedules of :func:`vae_edu.train.make_optimizer`.
SCHEDULES = ("constant", "cosine", "warmup_cosine")
#: What the model is trained to reconstruct.
TARGETS = ("binarized", "grayscale")


# ----------------------------------------------------------------------------- argument types
# argparse ``type`` functions: each reads one command-line value or raises an
# ArgumentTypeError that argparse prints as "argument --x: expected ..." (exit status 2).
def _integer_at_least(text: str, minimum: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _integer_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer_at_least(text, 0, "an integer >= 0")


def prng_seed(text: str) -> int:
    """A PRNG seed: an integer in [0, 2**32) (jax.random.key takes 32 or 64 bits)."""
    value = non_negative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**32, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def _document(cls):
    """Appends an ``Attributes`` section built from the fields' help metadata to the docstring."""
    if cls.__doc__ is None:  # python -OO strips docstrings
        return cls
    lines = [
        f"  {f.name}: {f.metadata['help']}; default {f.default!r}." for f in dataclasses.fields(cls)
    ]
    cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Attributes:\n" + "\n".join(
        "    " + line for line in lines
    )
    return cls


# ----------------------------------------------------------------------------- VAEConfig
@_document
@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The architecture of a :class:`~vae_edu.models.VAE` (frozen, hashable, JSON-serialisable)."""

    input_dim: int = field(
        default=784,
        metadata={"help": "number of pixels D of an image (784 for MNIST)", "cli": False},
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(400,),
        metadata={
            "help": "widths of the encoder's hidden layers from x towards z, e.g. 512 256 for "
            "784-512-256-d; the decoder mirrors them unless decoder_hidden_sizes is given",
            "parse": positive_int,
            "flag": "--hidden",
            "metavar": "WIDTH",
        },
    )
    latent_dim: int = field(
        default=20, metadata={"help": "dimension d of the latent code z", "parse": positive_int}
    )
    decoder_hidden_sizes: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "widths of the decoder's hidden layers from z towards x; None (not given) "
            "mirrors hidden_sizes",
            "parse": positive_int,
            "flag": "--decoder-hidden",
            "metavar": "WIDTH",
        },
    )
    activation: str = field(
        default="relu",
        metadata={"help": "hidden-layer nonlinearity", "choices": tuple(sorted(ACTIVATIONS))},
    )
    likelihood: str = field(
        default="bernoulli",
        metadata={
            "help": "decoder distribution: Bernoulli logits, or a Gaussian with mean "
            "sigmoid(logits) and the fixed variance exp(gaussian_log_var)",
            "choices": LIKELIHOODS,
        },
    )
    gaussian_log_var: float = field(
        default=0.0,
        metadata={
            "help": "log sigma^2 of the Gaussian decoder (ignored for bernoulli)",
            "parse": finite_float,
        },
    )

    def __post_init__(self):
        # Normalise lists (e.g. from JSON) to tuples so the config stays hashable.
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.decoder_hidden_sizes is not None:
            object.__setattr__(
                self, "decoder_hidden_sizes", tuple(int(h) for h in self.decoder_hidden_sizes)
            )
        for name in ("input_dim", "latent_dim"):
            _checks.count(getattr(self, name), name)
        for name, sizes in (
            ("hidden_sizes", self.hidden_sizes),
            ("decoder_hidden_sizes", self.decoder_hidden_sizes or ()),
        ):
            if any(h < 1 for h in sizes):
                raise ValueError(f"{name} must be positive integers, got {sizes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not math.isfinite(self.gaussian_log_var):
            raise ValueError(f"gaussian_log_var must be finite, got {self.gaussian_log_var}")

    @property
    def decoder_sizes(self) -> tuple[int, ...]:
        """The decoder's hidden widths, from z towards x."""
        if self.decoder_hidden_sizes is not None:
            return self.decoder_hidden_sizes
        return tuple(reversed(self.hidden_sizes))

    def describe(self) -> str:
        """A short name such as ``"784-512-256-32 (relu, bernoulli)"``."""
        sizes = "-".join(str(s) for s in (self.input_dim, *self.hidden_sizes, self.latent_dim))
        return f"{sizes} ({self.activation}, {self.likelihood})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        if self.decoder_hidden_sizes is not None:
            out["decoder_hidden_sizes"] = list(self.decoder_hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        return cls.from_dict(json.loads(text))


# ----------------------------------------------------------------------------- TrainConfig
@_document
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (frozen, JSON-serialisable)."""

    num_epochs: int = field(
        default=10,
        metadata={
            "help": "total number of passes over the training set",
            "parse": positive_int,
            "flag": "--epochs",
        },
    )
    batch_size: int = field(
        default=128,
        metadata={
            "help": "images per Adam step (the last N mod batch_size images of each shuffled "
            "epoch are dropped so every step has the same shape)",
            "parse": positive_int,
        },
    )
    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "Adam's (peak) step size", "parse": positive_float, "flag": "--lr"},
    )
    schedule: str = field(
        default="constant",
        metadata={
            "help": "learning-rate schedule over all steps: constant; cosine (decays to "
            "final_lr_fraction times the peak); warmup_cosine (linear warm-up over "
            "warmup_epochs, then cosine decay)",
            "choices": SCHEDULES,
        },
    )
    warmup_epochs: int = field(
        default=0,
        metadata={
            "help": "length of the linear warm-up of the warmup_cosine schedule, in epochs",
            "parse": non_negative_int,
        },
    )
    final_lr_fraction: float = field(
        default=0.0,
        metadata={
            "help": "end value of the cosine schedules, as a fraction of the peak learning rate",
            "parse": non_negative_float,
        },
    )
    beta: float = field(
        default=1.0,
        metadata={
            "help": "weight of the KL term in the loss (1 = VAE, 0 = autoencoder)",
            "parse": non_negative_float,
        },
    )
    alpha: float = field(
        default=1.0,
        metadata={"help": "weight of the reconstruction term", "parse": non_negative_float},
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "the only source of randomness (initial weights, shuffling, binarization, "
            "noise)",
            "parse": prng_seed,
        },
    )
    targets: str = field(
        default="binarized",
        metadata={
            "help": "binarized: a fresh Bernoulli draw of every training image each epoch "
            "(dynamic binarization); grayscale: the pixel intensities in [0, 1] themselves",
            "choices": TARGETS,
        },
    )
    init_output_bias: bool = field(
        default=True,
        metadata={
            "help": "start the decoder's output bias at logit(mean training image)",
            "flag": "--output-bias-init",
        },
    )
    steps_per_call: int = field(
        default=50,
        metadata={
            "help": "training steps per jitted call (the progress bar updates between calls; "
            "does not change the result)",
            "parse": positive_int,
        },
    )
    eval_batch_size: int = field(
        default=1000,
        metadata={
            "help": "batch size of the test-set evaluation after each epoch (memory only)",
            "parse": positive_int,
        },
    )

    def __post_init__(self):
        for name in ("num_epochs", "batch_size", "steps_per_call", "eval_batch_size"):
            _checks.count(getattr(self, name), name)
        _checks.count(self.seed, "seed", minimum=0)
        if not (
            isinstance(self.warmup_epochs, (int, np.integer))
            and 0 <= self.warmup_epochs < max(self.num_epochs, 1)
        ):
            raise ValueError(
                f"warmup_epochs must be an integer in [0, num_epochs), got {self.warmup_epochs!r}"
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
        for name in ("beta", "alpha"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)


# ----------------------------------------------------------------------------- command line
def flag(f: dataclasses.Field) -> str:
    """The command-line option of field ``f``: its ``flag`` metadata or ``--field-name``."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def cli_fields(cls) -> tuple[dataclasses.Field, ...]:
    """The fields of ``cls`` that the command line offers (all but those with ``cli: False``)."""
    return tuple(f for f in dataclasses.fields(cls) if f.metadata.get("cli", True))


def _is_tuple(hint) -> bool:
    """True for ``tuple[...]`` and ``tuple[...] | None``."""
    if typing.get_origin(hint) is tuple:
        return True
    return any(typing.get_origin(arg) is tuple for arg in typing.get_args(hint))


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls,
    *,
    fields: Iterable[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Adds one command-line option per field of the dataclass ``cls`` to ``parser``.

    The option's name, default, help text, argparse type, choices and metavar all come
    from the field (see the module docstring); the parsed value lands in ``args.<field>``.
    A tuple field takes one or more values (``--hidden 512 256``); a boolean field is a
    pair ``--flag`` / ``--no-flag``.

    Args:
      parser: an ``argparse.ArgumentParser`` or argument group.
      cls: :class:`VAEConfig`, :class:`TrainConfig` or another dataclass whose fields carry
        ``help`` metadata.
      fields: the names of the fields to offer, in this order (default: every field the
        command line offers, in declaration order).
      defaults: other defaults for some fields (e.g. a benchmark's shorter run).

    Raises:
      ValueError: ``fields`` or ``defaults`` name a field ``cls`` does not have.
    """
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = [f.name for f in cli_fields(cls)] if fields is None else list(fields)
    defaults = dict(defaults or {})
    unknown = [n for n in names if n not in by_name] + sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in names]
    hints = typing.get_type_hints(cls)
    for f in chosen:
        meta = f.metadata
        default = defaults.get(f.name, f.default)
        text = meta["help"]
        if flag(f) != "--" + f.name.replace("_", "-"):  # name the field the help refers to
            text += f" (field {f.name})"
        kwargs: dict[str, Any] = {"dest": f.name, "help": text}
        if hints[f.name] is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            kwargs["type"] = meta.get("parse", str)
            if _is_tuple(hints[f.name]):  # tuple[int, ...] (or None): one or more values
                kwargs["nargs"] = "+"
                default = None if default is None else list(default)
            kwargs["default"] = default
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
            else:  # named after the option, not the field: --epochs EPOCHS
                kwargs["metavar"] = meta.get(
                    "metavar", flag(f).lstrip("-").replace("-", "_").upper()
                )
        parser.add_argument(flag(f), **kwargs)


def from_namespace(cls, args: argparse.Namespace):
    """The ``cls`` instance of the parsed ``args`` (fields not on the command line keep
    their defaults).

    Raises:
      ValueError: a value the dataclass's validation refuses (the message names the field).
    """
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
    }
    return cls(**values)
