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
    # Columns increase in z_1, rows decrease in z_2, symmetric quantiles of N(0, 1).
    assert z[0, 0] < z[1, 0] and z[0, 1] > z[5, 1]
    np.testing.assert_allclose(z[0], [-1.6448536, 1.6448536], rtol=1e-6)
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
