"""Tests for vae_edu.bench.median_seconds (call counts only: no timed assertions)."""

import sys
from pathlib import Path

import pytest

from vae_edu.bench import median_seconds


def test_median_seconds_calls_warmup_plus_repeats():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9
    assert isinstance(seconds, float) and seconds >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)


# ------------------------------------------------ lessons: wall time and the kernel's peak


def _toy_lesson(path, source):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, path)
    return path


@pytest.mark.skipif(sys.platform.startswith("win"), reason="Windows has no getrusage")
def test_measure_notebook_reports_the_kernels_peak(tmp_path):
    from vae_edu.bench import NOTEBOOK_BUDGET_MIB, measure_notebook

    # The kernel touches a 320 MB array: its peak is above that, the runner's is not counted.
    lesson = _toy_lesson(tmp_path / "toy.ipynb", "import numpy as np\na = np.ones(40_000_000)")
    row = measure_notebook(lesson)
    assert row["notebook"] == "toy.ipynb"
    assert 300 < row["kernel_peak_mib"] < NOTEBOOK_BUDGET_MIB
    assert row["seconds"] > 0 and row["within_budget"] is True


def test_measure_notebook_names_a_missing_or_broken_lesson(tmp_path, capsys):
    from vae_edu.bench import main, measure_notebook

    with pytest.raises(ValueError, match="nope.ipynb: no such notebook"):
        measure_notebook(tmp_path / "nope.ipynb")
    broken = _toy_lesson(tmp_path / "broken.ipynb", "raise RuntimeError('cell 1 fails')")
    with pytest.raises(ValueError, match="broken.ipynb did not run to the end"):
        measure_notebook(broken)
    with pytest.raises(SystemExit) as exit_info:
        main(["--notebooks", str(tmp_path / "nope.ipynb")])
    assert exit_info.value.code == 2
    assert "no such notebook" in capsys.readouterr().err


def test_the_command_line_names_a_missing_lesson(tmp_path):
    """``python -m vae_edu.bench --notebooks`` as a user runs it (the module's main guard)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "vae_edu.bench", "--notebooks", str(tmp_path / "nope.ipynb")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "nope.ipynb: no such notebook" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------ where a step's time goes: jax.profiler


def test_profile_steps_summarizes_the_trace_of_the_compiled_chunk(tmp_path, capsys):
    from vae_edu.bench import main, profile_steps

    r = profile_steps(tmp_path, num_calls=2, batch_size=16, hidden=8, latent=2, steps_per_call=3)
    assert r["steps"] == 6 and r["step_wall_us"] > 0
    assert tmp_path in Path(r["trace_file"]).parents and Path(r["trace_file"]).is_file()
    ops = r["operations"]
    assert ops and all(op["us_per_step"] > 0 for op in ops)
    assert [op["us_per_step"] for op in ops] == sorted(
        (op["us_per_step"] for op in ops), reverse=True
    )
    # The model's matrix products are found in the trace and told apart from the rest.
    assert any(op["matmul"] for op in ops) and any(not op["matmul"] for op in ops)
    assert r["matmul_us"] == pytest.approx(sum(op["us_per_step"] for op in ops if op["matmul"]))
    assert (
        main(
            [
                "--profile",
                str(tmp_path),
                "--hidden",
                "8",
                "--latent-dim",
                "2",
                "--batch-size",
                "16",
                "--steps-per-call",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "matrix products" in out and "perfetto_trace.json.gz" in out


def test_profile_names_a_file_given_as_its_directory_or_its_parent(tmp_path, capsys):
    from vae_edu.bench import main

    (tmp_path / "file").write_text("not a directory")
    for folder in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--profile", str(folder)])
        assert exit_info.value.code == 2
        assert "is a file, not a folder" in capsys.readouterr().err


def test_the_modes_exclude_each_other(tmp_path, capsys):
    from vae_edu.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", str(tmp_path), "--time-to-elbo", "-100"])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
