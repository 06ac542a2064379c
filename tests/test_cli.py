"""Tests for ``python -m vae_edu`` (train / evaluate), the benchmark's FLOP count and the
figure helpers the CLI draws with."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from vae_edu import checkpoints, plots
from vae_edu.__main__ import build_parser, main
from vae_edu.bench import dense_flops_per_step

# The same model and optimizer settings as tests/test_train.py, so the compiled epoch is
# shared when both files run in one session.
TRAIN_ARGS = [
    "train",
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--lr",
    "3e-3",
    "--steps-per-call",
    "4",
    "--train-subset",
    "512",
    "--test-subset",
    "200",
    "--no-progress",
]


def test_help_explains_every_option(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, (
                f"{name}: option {action.option_strings or action.dest} has no help text"
            )
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "vae_edu", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "train" in out and "evaluate" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0"], "positive integer"),
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--activation", "sigmoidish"], "invalid choice"),
        (["train", "--beta", "nan"], "--beta"),
        (["evaluate"], "checkpoint"),
        (["evaluate", "x.msgpack", "--k", "zero"], "--k"),
        (["fit"], "invalid choice"),
        (["train", "--output", ""], "expected a checkpoint file name"),
        (["train", "--seed", "99999999999999999999"], "expected a seed below 2**32"),
        (["evaluate", "x.msgpack", "--seed", str(2**32)], "expected a seed below 2**32"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_evaluate_reports_unreadable_checkpoints(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.msgpack")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00" * 100)
    assert main(["evaluate", str(bad)]) == 2
    assert "not a" in capsys.readouterr().err


def test_train_then_evaluate(tmp_path, capsys):
    output = tmp_path / "tiny.msgpack"
    figures = tmp_path / "figs"
    argv = TRAIN_ARGS + [
        "--output",
        str(output),
        "--figures",
        str(figures),
        "--eval-k",
        "5",
        "--dtype",
        "float16",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "IWAE, k=5" in printed
    assert sorted(p.name for p in figures.iterdir()) == [
        "tiny_loss_curves.png",
        "tiny_prior_samples.png",
        "tiny_reconstructions.png",
    ]
    assert not output.with_name("tiny.resume.msgpack").exists()
    meta = checkpoints.read_metadata(output)
    summary = meta["summary"]
    assert meta["dtype"] == "float16" and summary["epochs"] == 1
    assert summary["command"].startswith("python -m vae_edu train --hidden 32")
    # The IWAE bound (k = 5) is tighter than the ELBO: NLL below -ELBO.
    assert summary["nll"] < -summary["test_elbo"]
    assert len(summary["kl_per_dimension"]) == 4

    # Same k and images as the run's own evaluation (one compilation), other seed.
    assert (
        main(
            [
                "evaluate",
                str(output),
                "--k",
                "5",
                "--num-images",
                "200",
                "--seed",
                "1",
                "--json",
                "--no-progress",
                "--report-memory",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["test_images"] == 200 and result["k"] == 5
    assert result["nll"] == pytest.approx(-result["test_log_likelihood"])
    assert result["iwae_xla_temp_mb"] > 0 and result["peak_rss_mb"] > 0

    # A leftover resume file (an interrupted run) is never silently overwritten.
    output.with_name("tiny.resume.msgpack").write_bytes(b"")
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_bench_flop_count_by_hand():
    # 784-400-20 at batch 128: encoder 784x400 and 400x40, decoder 20x400 and 400x784.
    flops = dense_flops_per_step([(784, 400), (400, 40), (20, 400), (400, 784)], 128)
    forward = 2 * 128 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    assert flops["forward"] == forward == 166_707_200
    assert flops["nominal_step"] == 3 * forward
    assert flops["executed_step"] == 3 * forward - 2 * 128 * 784 * 400


def test_figure_helpers_draw_what_they_are_given():
    rng = np.random.default_rng(0)
    images = rng.random((6, 784))
    fig = plots.plot_reconstructions(images, images[::-1])
    assert len([ax for ax in fig.axes if ax.images]) == 12
    seen = []

    def decode(z):
        seen.append(z)
        return np.tile(np.linspace(0, 1, 784), (len(z), 1))

    fig = plots.plot_manifold(decode, grid_size=5)
    z = seen[0]
    assert z.shape == (25, 2)
    # Columns increase in z_1, rows decrease in z_2, symmetric quantiles of N(0, 1): the
    # first of 5 equal-mass cells has its midpoint at probability 1/10, Phi^-1(0.1) = -1.28155.
    assert z[0, 0] < z[1, 0] and z[0, 1] > z[5, 1]
    np.testing.assert_allclose(z[0], [-1.2815516, 1.2815516], rtol=1e-6)
    history = {
        k: [1, 2]
        for k in (
            "epoch",
            "train_elbo",
            "test_elbo",
            "train_kl",
            "test_kl",
            "train_reconstruction",
            "test_reconstruction",
        )
    }
    assert len(plots.plot_loss_curves(history).axes) == 3
    with pytest.raises(ValueError, match=r"\(6, 28, 28\) but reconstructions \(5, 28, 28\)"):
        plots.plot_reconstructions(images, images[:5])


# --------------------------------------------- issue 16: no raw tracebacks, no lost work
def _tiny_run(tmp_path, *extra):
    """TRAIN_ARGS (shared compilation) writing into tmp_path, without figures."""
    return TRAIN_ARGS + ["--no-figures", "--output", str(tmp_path / "b.msgpack"), *extra]


def _valid_json(text):
    """json.loads that refuses the non-standard NaN / Infinity literals."""

    def refuse(name):
        raise AssertionError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def test_one_test_image_reports_no_standard_error_and_keeps_the_checkpoint(tmp_path, capsys):
    output = tmp_path / "b.msgpack"
    assert main(_tiny_run(tmp_path, "--test-subset", "1")) == 0
    captured = capsys.readouterr()
    assert "+/- n/a nats (a standard error needs at least 2 test images)" in captured.out
    assert not output.with_name("b.resume.msgpack").exists()
    summary = checkpoints.read_metadata(output)["summary"]
    assert summary["test_images"] == 1 and summary["test_elbo_std_error"] is None
    assert np.isfinite(summary["test_elbo"])

    argv = ["evaluate", str(output), "--k", "3", "--num-images", "1", "--no-progress"]
    assert main(argv + ["--json"]) == 0
    result = _valid_json(capsys.readouterr().out)
    assert result["test_elbo_std_error"] is None
    assert result["test_log_likelihood_std_error"] is None
    assert "at least 2 test images" in result["std_error_note"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "+/- n/a" in out


def test_checkpoint_is_written_before_the_evaluation(tmp_path, monkeypatch, capsys):
    from vae_edu import evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(evaluate, "test_elbo", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        main(_tiny_run(tmp_path))
    # The finished training is on disk, and no leftover resume file blocks a rerun.
    ckpt = checkpoints.load(tmp_path / "b.msgpack")
    assert ckpt.training["epoch"] == 1 and ckpt.summary["train_images"] == 512
    assert not (tmp_path / "b.resume.msgpack").exists()


def test_a_failed_checkpoint_write_keeps_the_resume_state(tmp_path, monkeypatch, capsys):
    real_save = checkpoints.save

    def save(path, *args, **kwargs):
        if path.name == "b.msgpack":
            raise OSError("No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", save)
    assert main(_tiny_run(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not write the checkpoint") and "--resume" in err
    assert "No space left on device" in err
    assert (tmp_path / "b.resume.msgpack").exists()
    # The advice works: --resume writes the checkpoint without training again.
    monkeypatch.setattr(checkpoints, "save", real_save)
    assert main(_tiny_run(tmp_path, "--resume")) == 0
    assert checkpoints.read_metadata(tmp_path / "b.msgpack")["summary"]["epochs"] == 1
    assert not (tmp_path / "b.resume.msgpack").exists()


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if training starts: these errors must come before any work."""
    from vae_edu import train as train_module

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train_module, "train", refuse)


def test_bad_outputs_are_refused_before_training(tmp_path, capsys, no_training):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    cases = [
        (["--train-subset", "10"], "--batch-size 64 exceeds the 10 training images"),
        (["--output", str(folder)], f"--output {folder} exists and is not a regular file"),
        (["--output", str(a_file / "b.msgpack")], f"(--output) {a_file}: {a_file} is a file"),
        (["--figures", str(a_file / "figs")], f"(--figures) {a_file / 'figs'}: {a_file} is a"),
    ]
    for extra, message in cases:
        argv = TRAIN_ARGS + ["--output", str(tmp_path / "c.msgpack"), *extra]
        if "--figures" not in extra:
            argv.append("--no-figures")
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (extra, err)
        assert "Traceback" not in err


def test_unwritable_output_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    # Root ignores permission bits, so simulate a read-only folder where the probe writes.
    import tempfile

    from vae_edu import train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("training started"))
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(tmp_path / "readonly")):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    output = tmp_path / "readonly" / "b.msgpack"
    assert main(TRAIN_ARGS + ["--no-figures", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the checkpoint folder (--output)" in err
    assert "Permission denied" in err


def test_bench_refuses_a_batch_larger_than_the_training_set(capsys, monkeypatch):
    from vae_edu import bench

    monkeypatch.setattr(bench, "matmul_gflops", lambda *a, **k: pytest.fail("benchmark ran"))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--batch-size", "70000"])
    assert exit_info.value.code == 2
    assert "--batch-size 70000 exceeds the 60000 MNIST training images" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size 70000 exceeds the 60000"):
        bench.run_benchmark(batch_size=70000)


# --------------------------------------------- issue 12: options derived from the configs
def _train_parser():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, subparsers.choices["train"]


@pytest.mark.parametrize("cls_name", ["VAEConfig", "TrainConfig"])
def test_every_config_field_is_a_train_option_with_its_default_and_help(cls_name):
    import dataclasses

    from vae_edu import config

    cls = getattr(config, cls_name)
    _, train_parser = _train_parser()
    actions = {a.dest: a for a in train_parser._actions}
    offered = {f.name for f in config.cli_fields(cls)}
    # The one field the command line leaves out: the CLI trains on 784-pixel MNIST.
    assert {f.name for f in dataclasses.fields(cls)} - offered == (
        {"input_dim"} if cls is config.VAEConfig else set()
    )
    for field in dataclasses.fields(cls):
        if field.name not in offered:
            continue
        action = actions[field.name]
        assert config.flag(field) in action.option_strings
        assert field.metadata["help"] in action.help
        default = action.default
        assert (tuple(default) if isinstance(default, list) else default) == field.default
    # Nothing on the command line: exactly the default configs.
    args = build_parser().parse_args(["train"])
    assert config.from_namespace(cls, args) == cls()


def test_train_options_become_the_configs():
    from vae_edu.config import TrainConfig, VAEConfig, from_namespace

    argv = ["train", "--hidden", "512", "256", "--decoder-hidden", "64", "--latent-dim", "2"]
    argv += ["--activation", "tanh", "--likelihood", "gaussian", "--gaussian-log-var", "-1.5"]
    argv += ["--epochs", "4", "--batch-size", "32", "--lr", "0.01", "--schedule", "cosine"]
    argv += ["--warmup-epochs", "1", "--final-lr-fraction", "0.1", "--beta", "0.5"]
    argv += ["--alpha", "2", "--seed", "7", "--targets", "grayscale", "--no-output-bias-init"]
    argv += ["--steps-per-call", "3", "--eval-batch-size", "100"]
    args = build_parser().parse_args(argv)
    assert from_namespace(VAEConfig, args) == VAEConfig(
        hidden_sizes=(512, 256),
        decoder_hidden_sizes=(64,),
        latent_dim=2,
        activation="tanh",
        likelihood="gaussian",
        gaussian_log_var=-1.5,
    )
    assert from_namespace(TrainConfig, args) == TrainConfig(
        num_epochs=4,
        batch_size=32,
        learning_rate=0.01,
        schedule="cosine",
        warmup_epochs=1,
        final_lr_fraction=0.1,
        beta=0.5,
        alpha=2.0,
        seed=7,
        targets="grayscale",
        init_output_bias=False,
        steps_per_call=3,
        eval_batch_size=100,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--gaussian-log-var", "nan"], "argument --gaussian-log-var: expected a finite"),
        (["train", "--decoder-hidden", "0"], "argument --decoder-hidden: expected a positive"),
        (["train", "--eval-batch-size", "1.5"], "argument --eval-batch-size: expected a positive"),
        (["train", "--hidden"], "argument --hidden: expected at least one argument"),
    ],
)
def test_bad_values_of_the_derived_options_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_validation_across_options_is_a_clear_error(capsys, no_training):
    # Each value parses; the combination is what TrainConfig refuses.
    assert main(["train", "--epochs", "2", "--warmup-epochs", "2", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: warmup_epochs must be an integer in [0, num_epochs)")
    assert main(["train", "--final-lr-fraction", "1.5", "--no-figures"]) == 2
    assert "final_lr_fraction must be in [0, 1]" in capsys.readouterr().err


def test_add_dataclass_arguments_offers_chosen_fields_with_other_defaults():
    # What a second command line (e.g. the benchmark's) does with the same configs.
    from vae_edu.config import TrainConfig, VAEConfig, add_dataclass_arguments, from_namespace

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, VAEConfig, fields=("hidden_sizes", "latent_dim"))
    add_dataclass_arguments(parser, TrainConfig, fields=["batch_size"], defaults={"batch_size": 7})
    args = parser.parse_args(["--latent-dim", "3"])
    assert from_namespace(VAEConfig, args) == VAEConfig(latent_dim=3)
    assert from_namespace(TrainConfig, args) == TrainConfig(batch_size=7)
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "3"])  # not offered
    with pytest.raises(ValueError, match=r"TrainConfig has no fields \['epoch'\]"):
        add_dataclass_arguments(parser, TrainConfig, fields=["epoch"])


def test_bench_options_come_from_the_dataclasses(monkeypatch, capsys):
    """bench's model and optimiser options are VAEConfig/TrainConfig fields: same checks,
    same help, several hidden layers; the benchmark's own default model is 784-400-20."""
    from vae_edu import bench
    from vae_edu.config import TrainConfig

    seen = []
    monkeypatch.setattr(bench, "run_benchmark", lambda *a: seen.append(a) or {})
    monkeypatch.setattr(bench, "_report", lambda r: "")
    assert bench.main([]) == 0
    epochs, batch_size, hidden, latent_dim, steps_per_call = seen[-1]
    assert (epochs, batch_size, tuple(hidden), latent_dim) == (
        5,
        TrainConfig().batch_size,
        (400,),
        20,
    )
    assert steps_per_call == TrainConfig().steps_per_call
    assert bench.main(["--hidden", "512", "256", "--latent-dim", "32", "--epochs", "2"]) == 0
    assert tuple(seen[-1][2]) == (512, 256) and seen[-1][0] == 2 and seen[-1][3] == 32
    with pytest.raises(SystemExit):
        bench.main(["--steps-per-call", "0"])
    assert "--steps-per-call: expected a positive integer, got 0" in capsys.readouterr().err
