"""Command line: ``python -m vae_edu train ...`` and ``python -m vae_edu evaluate CKPT``.

``train`` trains a VAE on dynamically binarized MNIST, writes one checkpoint file (model,
config, training summary with test ELBO and, optionally, an IWAE estimate of the test
log-likelihood) and the standard figures. While it runs, the state after every epoch is
kept in ``<output>.resume.msgpack``, so an interrupted run continues with ``--resume`` and
ends with exactly the same model. The checkpoint is written as soon as training ends
(then the resume file is removed) and rewritten with the test results once they are
computed, so nothing after training can lose it. Everything that can be checked before
training is: a batch larger than the training subset, an ``--output`` that is a folder,
``--output`` / ``--figures`` folders that cannot be written (a real probe write) are
refused with exit status 2 and an ``error: ...`` line.

``evaluate`` re-evaluates a checkpoint: test ELBO and the importance-weighted bound
L_k (k = ``--k``) with standard errors.

Run ``python -m vae_edu train --help`` for every option.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import jax
import numpy as np

from vae_edu import checkpoints, data, evaluate, plots, system
from vae_edu import train as train_lib
from vae_edu.config import (
    TrainConfig,
    VAEConfig,
    add_dataclass_arguments,
    from_namespace,
    non_negative_int,
    positive_int,
    prng_seed,
)

__all__ = ["main", "build_parser"]


def _checkpoint_path(text: str) -> Path:
    path = Path(text)
    if not text.strip() or not path.name:
        raise argparse.ArgumentTypeError(f"expected a checkpoint file name, got {text!r}")
    return path


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m vae_edu`` (subcommands train and evaluate).

    The options of ``train``'s groups "architecture" and "optimisation" are the fields of
    :class:`~vae_edu.config.VAEConfig` and :class:`~vae_edu.config.TrainConfig`, with their
    defaults and help texts (see :func:`vae_edu.config.add_dataclass_arguments`); the
    parsed arguments become the configs through :func:`vae_edu.config.from_namespace`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m vae_edu",
        description="Train and evaluate the vae_edu variational autoencoder on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    t = sub.add_parser(
        "train",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="train a VAE, write its checkpoint and figures",
        description="Train a VAE on dynamically binarized MNIST (a fresh Bernoulli draw of "
        "every training image each epoch), write one checkpoint file and the "
        "standard figures (reconstructions, prior samples, loss curves, and the "
        "latent manifold when --latent-dim is 2).",
    )
    add_dataclass_arguments(t.add_argument_group("architecture (VAEConfig)"), VAEConfig)
    g = t.add_argument_group("optimisation (TrainConfig)")
    add_dataclass_arguments(g, TrainConfig)
    g.add_argument(
        "--train-subset",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (for quick trials)",
    )
    g.add_argument(
        "--test-subset",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate on the first N test images only",
    )
    g = t.add_argument_group("output")
    g.add_argument(
        "--output",
        type=_checkpoint_path,
        default=Path("checkpoints/vae.msgpack"),
        help="checkpoint file to write",
    )
    g.add_argument(
        "--name", default=None, help="figure file prefix (default: the checkpoint's file stem)"
    )
    g.add_argument("--figures", type=Path, default=Path("figures"), help="folder for the figures")
    g.add_argument("--no-figures", action="store_true", help="skip the figures")
    g.add_argument(
        "--dtype",
        choices=tuple(checkpoints.STORAGE_DTYPES),
        default="float32",
        help="storage dtype of the parameters; every number in the summary is "
        "computed from the stored (rounded) parameters",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from <output>.resume.msgpack",
    )
    g.add_argument(
        "--eval-k",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="after training, estimate the test log-likelihood with the IWAE "
        "bound using K importance samples (0: skip; papers use 5000)",
    )
    g.add_argument(
        "--eval-binarizations",
        type=positive_int,
        default=1,
        help="binarization draws of the test set averaged in the final test "
        "ELBO and IWAE estimates",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser(
        "evaluate",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="evaluate a checkpoint (test ELBO and IWAE log-likelihood)",
        description="Load a checkpoint, then estimate the test ELBO and the importance-"
        "weighted bound L_k on log p(x) on dynamically binarized test images, "
        "in nats per image, with standard errors over images.",
    )
    e.add_argument("checkpoint", type=Path, help="a .msgpack file written by vae_edu")
    e.add_argument(
        "--k",
        type=positive_int,
        default=1000,
        help="importance samples per image for the IWAE bound",
    )
    e.add_argument(
        "--binarizations",
        type=positive_int,
        default=1,
        help="binarization draws of the test set to average",
    )
    e.add_argument("--seed", type=prng_seed, default=0, help="evaluation PRNG seed")
    e.add_argument(
        "--num-images",
        type=positive_int,
        default=None,
        help="use the first N test images (default: all 10,000)",
    )
    e.add_argument(
        "--sample-chunk",
        type=positive_int,
        default=500,
        help="importance samples per vectorised chunk (memory only)",
    )
    e.add_argument(
        "--image-chunk",
        type=positive_int,
        default=8,
        help="images per vectorised chunk (memory only)",
    )
    e.add_argument(
        "--report-memory",
        action="store_true",
        help="print XLA's temporary-buffer size for the IWAE call and the "
        "process's peak resident memory",
    )
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _figures(model, history, name: str, directory: Path, test_images, test_labels, seed):
    written = []
    x = np.asarray(data.prepare_images(test_images[:10]))
    binary = np.asarray(data.binarize(jax.random.key(seed), x))
    mean, _ = model.encode(binary)
    recon = np.asarray(model.mean_image(mean))
    written.append(
        plots.save_figure(
            plots.plot_reconstructions(binary, recon), f"{name}_reconstructions", directory
        )
    )
    z = jax.random.normal(jax.random.key(seed + 1), (40, model.config.latent_dim))
    written.append(
        plots.save_figure(
            plots.image_grid(
                np.asarray(model.mean_image(z)), 10, title="decoder means of 40 draws z ~ N(0, I)"
            ),
            f"{name}_prior_samples",
            directory,
        )
    )
    written.append(
        plots.save_figure(plots.plot_loss_curves(history), f"{name}_loss_curves", directory)
    )
    if model.config.latent_dim == 2:
        written.append(
            plots.save_figure(
                plots.plot_manifold(lambda zz: np.asarray(model.mean_image(zz))),
                f"{name}_manifold",
                directory,
            )
        )
        means, _ = evaluate.encode_dataset(model, test_images, key=jax.random.key(seed + 2))
        written.append(
            plots.save_figure(
                plots.plot_latent_scatter(means, test_labels), f"{name}_latent_scatter", directory
            )
        )
    return written


_NO_STD_ERROR = "a standard error needs at least 2 test images"


def _std_error_or_none(value: float) -> float | None:
    """A standard error, or None (JSON null) where there is none (one image gives NaN)."""
    return value if math.isfinite(value) else None


def _plus_minus(std_error: float | None) -> str:
    """The text "+/- 0.12 nats", or "+/- n/a nats (why)" without a standard error."""
    if std_error is None:
        return f"+/- n/a nats ({_NO_STD_ERROR})"
    return f"+/- {std_error:.2f} nats"


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _check_outputs(args) -> str | None:
    """Why the run could not write its results, found *before* training; None if it can.

    The folders are created if missing and proven writable with a probe file (this works
    for every user and platform, unlike permission bits).
    """
    output = args.output
    if output.exists() and not output.is_file():
        return (
            f"--output {output} exists and is not a regular file (a directory?); give the "
            f"checkpoint's file name, e.g. {output / 'vae.msgpack'}"
        )
    try:
        system.ensure_writable_folder(output.parent, "checkpoint folder (--output)")
        if not args.no_figures:
            system.ensure_writable_folder(args.figures, "figures folder (--figures)")
    except OSError as err:
        return str(err)
    return None


def _train(args, argv: list[str]) -> int:
    try:
        model_config = from_namespace(VAEConfig, args)
        train_config = from_namespace(TrainConfig, args)
    except ValueError as err:
        return _error(str(err))
    resume_path = args.output.with_name(args.output.stem + ".resume.msgpack")
    if resume_path.exists() and not args.resume:
        return _error(
            f"{resume_path} exists (an interrupted run); pass --resume to continue "
            f"it or delete it to start over"
        )
    problem = _check_outputs(args)
    if problem is not None:
        return _error(problem)
    train_split, test_split = data.load_mnist("train"), data.load_mnist("test")
    train_images = train_split.images[: args.train_subset]
    test_images = test_split.images[: args.test_subset]
    test_labels = test_split.labels[: args.test_subset]
    if len(train_images) < train_config.batch_size:
        return _error(
            f"--batch-size {train_config.batch_size} exceeds the {len(train_images)} training "
            f"images (--train-subset {args.train_subset}): an epoch would have no step; use a "
            f"smaller --batch-size or more images"
        )
    load_start = system.load_average()
    load_text = "n/a on this platform" if load_start is None else f"{load_start:.1f}"
    print(
        f"training {model_config.describe()} for {train_config.num_epochs} epochs "
        f"(load average {load_text})",
        flush=True,
    )
    try:
        result = train_lib.train(
            model_config,
            train_config,
            train_images=train_images,
            test_images=test_images,
            checkpoint_path=resume_path,
            resume=args.resume,
            progress=not args.no_progress,
        )
    except (checkpoints.CheckpointError, ValueError, OSError) as err:
        return _error(str(err))
    train_seconds = result.wall_seconds
    training = {
        "epoch": result.state.epoch,
        "seed": train_config.seed,
        "train_config": train_config.to_dict(),
        "history": result.history,
    }
    summary = {
        "epochs": result.state.epoch,
        "seed": train_config.seed,
        "test_images": int(len(test_images)),
        "train_images": int(len(train_images)),
        "eval_binarizations": args.eval_binarizations,
        "train_wall_seconds": train_seconds,
        "load_average_start": load_start,
        "command": "python -m vae_edu " + shlex.join(argv),
        "storage_dtype": args.dtype,
    }
    # The finished training is saved first, before any evaluation that could fail; the
    # checkpoint is rewritten below with the test results added to its summary.
    try:
        # Every number below is computed from the parameters exactly as stored.
        model = checkpoints.as_stored(result.model, args.dtype)
        path = checkpoints.save(
            args.output, model, summary=summary, training=training, dtype=args.dtype
        )
    except (OSError, ValueError) as err:
        return _error(
            f"could not write the checkpoint {args.output}: {err}. The trained state "
            f"(epoch {result.state.epoch}) is kept in {resume_path}: fix the problem and "
            f"rerun the same command with --resume to write the checkpoint without training"
        )
    resume_path.unlink(missing_ok=True)

    eval_start = time.perf_counter()
    key = jax.random.key(train_config.seed)
    binarize = train_config.targets == "binarized"
    elbo = evaluate.test_elbo(
        model, test_images, key, binarize=binarize, num_binarizations=args.eval_binarizations
    )
    elbo_se = _std_error_or_none(elbo.std_error)
    summary.update(
        test_elbo=elbo.mean,
        test_elbo_std_error=elbo_se,
        quick_test_elbo=evaluate.quick_test_elbo(model, binarize=binarize),
        active_units=evaluate.active_units(model, test_images, key=key).count,
        kl_per_dimension=[float(v) for v in evaluate.kl_per_dimension(model, test_images, key=key)],
    )
    if args.eval_k:
        nll = evaluate.iwae_log_likelihood(
            model,
            test_images,
            key,
            num_samples=args.eval_k,
            num_binarizations=args.eval_binarizations,
            binarize=binarize,
            progress=not args.no_progress,
        )
        nll_se = _std_error_or_none(nll.std_error)
        summary.update(
            iwae_k=args.eval_k,
            test_log_likelihood=nll.mean,
            test_log_likelihood_std_error=nll_se,
            nll=-nll.mean,
        )
    if args.dtype != "float32":  # what the rounding to the storage dtype costs
        summary["test_elbo_before_rounding"] = evaluate.test_elbo(
            result.model,
            test_images,
            key,
            binarize=binarize,
            num_binarizations=args.eval_binarizations,
        ).mean
    summary["eval_wall_seconds"] = time.perf_counter() - eval_start
    summary["load_average_end"] = system.load_average()
    try:
        path = checkpoints.save(
            args.output, model, summary=summary, training=training, dtype=args.dtype
        )
    except (OSError, ValueError) as err:
        return _error(
            f"could not add the test results to {args.output} ({err}); the trained model "
            f"is saved there without them: run python -m vae_edu evaluate {args.output}"
        )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(
        f"training wall time {train_seconds:.0f} s; test ELBO {elbo.mean:.2f} "
        f"{_plus_minus(elbo_se)}"
    )
    if args.eval_k:
        print(f"test log-likelihood (IWAE, k={args.eval_k}) {nll.mean:.2f} {_plus_minus(nll_se)}")
    if not args.no_figures:
        name = args.name or args.output.stem
        try:
            for fig_path in _figures(
                model,
                result.history,
                name,
                args.figures,
                test_images,
                test_labels,
                train_config.seed,
            ):
                print(f"wrote {fig_path}")
        except OSError as err:
            return _error(f"could not write the figures ({err}); the checkpoint {path} is saved")
    return 0


def _evaluate(args) -> int:
    try:
        ckpt = checkpoints.load(args.checkpoint)
    except (checkpoints.CheckpointError, OSError) as err:
        return _error(str(err))
    images = data.load_mnist("test").images[: args.num_images]
    key = jax.random.key(args.seed)
    binarize = ckpt.training.get("train_config", {}).get("targets", "binarized") == "binarized"
    start = time.perf_counter()
    elbo = evaluate.test_elbo(
        ckpt.model, images, key, num_binarizations=args.binarizations, binarize=binarize
    )
    elbo_seconds = time.perf_counter() - start
    start = time.perf_counter()
    nll = evaluate.iwae_log_likelihood(
        ckpt.model,
        images,
        key,
        num_samples=args.k,
        num_binarizations=args.binarizations,
        binarize=binarize,
        sample_chunk=args.sample_chunk,
        image_chunk=args.image_chunk,
        progress=not args.no_progress,
    )
    iwae_seconds = time.perf_counter() - start
    elbo_se, nll_se = _std_error_or_none(elbo.std_error), _std_error_or_none(nll.std_error)
    result = {
        "checkpoint": str(args.checkpoint),
        "model": ckpt.config.describe(),
        "test_images": int(len(images)),
        "binarizations": args.binarizations,
        "test_elbo": elbo.mean,
        "test_elbo_std_error": elbo_se,
        "k": args.k,
        "test_log_likelihood": nll.mean,
        "test_log_likelihood_std_error": nll_se,
        "nll": -nll.mean,
        "elbo_seconds": elbo_seconds,
        "iwae_seconds": iwae_seconds,
    }
    if elbo_se is None or nll_se is None:
        result["std_error_note"] = (
            "null: a standard error over images needs at least 2 test images "
            f"(--num-images {len(images)})"
        )
    if args.report_memory:
        result["iwae_xla_temp_mb"] = (
            evaluate.iwae_memory_bytes(
                ckpt.model,
                len(images),
                num_samples=args.k,
                sample_chunk=args.sample_chunk,
                image_chunk=args.image_chunk,
            )
            / 1e6
        )
        result["peak_rss_mb"] = system.peak_memory_mib()
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return 0
    print(f"{result['model']}  ({args.checkpoint})")
    print(f"test ELBO                      {elbo.mean:9.2f} {_plus_minus(elbo_se)}")
    print(
        f"test log p(x), IWAE k={args.k:<6d}  {nll.mean:9.2f} {_plus_minus(nll_se)}"
        f"   (NLL {-nll.mean:.2f})"
    )
    print(
        f"on {len(images)} test images x {args.binarizations} binarization draw(s); "
        f"{elbo_seconds:.1f} s + {iwae_seconds:.1f} s"
    )
    stored = ckpt.summary.get("test_elbo")
    if stored is not None:
        print(
            f"stored in the checkpoint: test ELBO {stored:.2f}"
            + (
                f", NLL {ckpt.summary['nll']:.2f} (k={ckpt.summary.get('iwae_k', '?')})"
                if "nll" in ckpt.summary
                else ""
            )
        )
    if args.report_memory:
        print(
            f"memory: XLA temporaries of the IWAE call {result['iwae_xla_temp_mb']:.1f} MB, "
            + (
                "peak resident memory not available on this platform"
                if result["peak_rss_mb"] is None
                else f"peak resident set of this process {result['peak_rss_mb']:.0f} MiB"
            )
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad arguments or unreadable files)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args, argv)
    return _evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
