"""Where figures go: never into an installed package (plots.figures_dir)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vae_edu import plots  # noqa: E402


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_EDU_FIGURES", str(tmp_path / "mine"))
    assert plots.figures_dir() == tmp_path / "mine"


def test_checkout_uses_the_repository_figures(monkeypatch):
    monkeypatch.delenv("VAE_EDU_FIGURES", raising=False)
    root = Path(plots.__file__).resolve().parents[1]
    assert (root / "pyproject.toml").is_file()  # the tests run from a checkout
    assert plots.figures_dir() == root / "figures"


def test_installed_package_uses_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("VAE_EDU_FIGURES", raising=False)
    monkeypatch.setattr(plots, "_checkout_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert plots.figures_dir() == tmp_path / "figures"
    path = plots.save_figure(Figure(), "empty")
    assert path == tmp_path / "figures" / "empty.png" and path.stat().st_size > 0


def test_checkout_root_needs_pyproject_and_notebooks(monkeypatch, tmp_path):
    package = tmp_path / "site-packages" / "vae_edu"
    package.mkdir(parents=True)
    monkeypatch.setattr(plots, "__file__", str(package / "plots.py"))
    assert plots._checkout_root() is None
    (tmp_path / "site-packages" / "pyproject.toml").write_text("")
    assert plots._checkout_root() is None  # no notebooks/: not a checkout
    (tmp_path / "site-packages" / "notebooks").mkdir()
    assert plots._checkout_root() == tmp_path / "site-packages"


def test_unwritable_folder_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="VAE_EDU_FIGURES"):
        plots.save_figure(Figure(), "x", blocker / "figures")
