"""Every widget submodule's public functions are reachable as ``vae_edu.widgets.<name>``."""

import importlib
import pkgutil

import pytest

import vae_edu.widgets as widgets

SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(widgets.__path__))


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodule_public_names_are_reexported(name):
    module = importlib.import_module(f"vae_edu.widgets.{name}")
    exported = getattr(module, "__all__", [])
    missing = [n for n in exported if getattr(widgets, n, None) is not getattr(module, n)]
    assert not missing, f"vae_edu.widgets does not re-export {missing} from {name}"
