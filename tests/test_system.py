"""vae_edu.system, and the promise behind it: the package and the notebooks run on Windows.

Windows has no ``resource`` module. The package, its CLI, the benchmark and the first cell
of every notebook must import anyway, and peak memory is then reported as "not available
on this platform". The test makes ``resource`` unimportable the way Windows does
(``sys.modules["resource"] = None`` makes ``import resource`` raise ImportError) in a fresh
interpreter, so the running test process is not affected.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import nbformat
import pytest

import vae_edu
from vae_edu import system

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
ASSIGNMENTS = sorted((ROOT / "notebooks" / "assignments").glob("*.ipynb"))


def _all_modules() -> list[str]:
    names = ["vae_edu"]
    for info in pkgutil.walk_packages(vae_edu.__path__, prefix="vae_edu."):
        names.append(info.name)
    return names


def _run_without_resource(code: str) -> subprocess.CompletedProcess:
    prelude = (
        "import sys\nsys.modules['resource'] = None\nimport matplotlib\nmatplotlib.use('Agg')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_module_imports_without_resource():
    modules = _all_modules()
    assert "vae_edu.__main__" in modules and "vae_edu.bench" in modules
    code = textwrap.dedent(
        f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        from vae_edu.system import describe_peak_memory, peak_memory_mib
        assert peak_memory_mib() is None
        print(describe_peak_memory())
        """
    )
    result = _run_without_resource(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not available on this platform" in result.stdout


@pytest.mark.parametrize("path", LESSONS + ASSIGNMENTS, ids=lambda p: p.name)
def test_notebook_setup_cells_run_without_resource(path):
    """The first code cell, and the cell that reports resources, run with no ``resource``."""
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    to_run = [code_cells[0]]
    to_run += [src for src in code_cells if "peak resident memory" in src or "system" in src]
    # IPython magics (``%matplotlib inline``) mean nothing to plain Python: drop those lines.
    sources = json.dumps(
        [
            "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            for src in to_run
        ]
    )
    code = textwrap.dedent(
        f"""
        import json
        namespace = {{}}
        for source in json.loads({sources!r}):
            exec(compile(source, "<cell>", "exec"), namespace)
        """
    )
    result = _run_without_resource(code)
    assert result.returncode == 0, result.stderr[-3000:]
    if any("peak resident memory" in src for src in to_run[1:]):
        assert "not available on this platform" in result.stdout


def test_no_notebook_imports_resource_or_uses_shell_commands():
    for path in LESSONS + ASSIGNMENTS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                stripped = line.strip()
                assert not stripped.startswith("!"), f"{path.name}: shell command {line!r}"
                assert stripped not in ("import resource",), f"{path.name}: {line!r}"
                assert "getloadavg" not in stripped, f"{path.name}: {line!r}"


def _fake_resource(maxrss: int) -> types.SimpleNamespace:
    usage = types.SimpleNamespace(ru_maxrss=maxrss)
    return types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: usage)


@pytest.mark.parametrize(
    ("platform", "maxrss", "expected_mib"),
    [
        ("linux", 512 * 1024, 512.0),  # Linux: kilobytes
        ("darwin", 512 * 2**20, 512.0),  # macOS: bytes, not kilobytes
        ("freebsd14", 3 * 1024, 3.0),  # the BSDs: kilobytes
    ],
)
def test_peak_memory_units_per_platform(monkeypatch, platform, maxrss, expected_mib):
    monkeypatch.setitem(sys.modules, "resource", _fake_resource(maxrss))
    monkeypatch.setattr(system.sys, "platform", platform)
    assert system.peak_memory_mib() == pytest.approx(expected_mib)
    assert system.describe_peak_memory() == (
        f"peak resident memory of this process: {expected_mib:.0f} MiB"
    )


def test_peak_memory_not_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)
    assert system.peak_memory_mib() is None
    assert system.describe_peak_memory().endswith("not available on this platform")


def test_load_average(monkeypatch):
    monkeypatch.setattr(system.os, "getloadavg", lambda: (1.5, 1.0, 0.5), raising=False)
    assert system.load_average() == 1.5
    monkeypatch.delattr(system.os, "getloadavg", raising=False)
    assert system.load_average() is None


def test_real_reading_is_positive_where_available():
    peak = system.peak_memory_mib()
    if sys.platform.startswith("win"):
        assert peak is None
    else:
        # This process has imported jax and numpy: far more than 10 MiB, far less than 1 TiB.
        assert 10 < peak < 2**20


@pytest.mark.skipif(sys.platform.startswith("win"), reason="Windows has no getrusage")
def test_peak_memory_of_children_sees_a_child_that_used_memory():
    import subprocess

    code = "import numpy as np; a = np.ones(40_000_000); print(a.sum())"  # 320 MB, touched
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert system.peak_memory_mib("children") > 300
    with pytest.raises(ValueError, match="of must be 'self' or 'children'"):
        system.peak_memory_mib("parent")
