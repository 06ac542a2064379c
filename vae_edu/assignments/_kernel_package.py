"""The package a student's kernel imports while an assignment is graded: no reference inside.

The grader's own process holds the whole package (the checks need its references). The
student's kernel gets a *copy* of it, made by :func:`build` before any student code runs,
in which the course's implementations of what the assignment asks are not there at all:

* **modules the assignment does not need are gone**: importing one raises an ``ImportError``
  that names the assignment and what the kernel has (``vae_edu.models``, ``vae_edu.loss``,
  ``vae_edu.train``, ``vae_edu.lesson_checks``, ... all compute an ELBO or a KL somewhere);
* **in the modules it keeps, the functions that compute the answers have no body**: their
  code is replaced, in the copied source, by a ``raise`` that says so (:func:`stub_functions`;
  the private helpers too, e.g. ``vae_edu.kl._kl_diag_gaussians``), and the grader-only
  region of :mod:`vae_edu.mlp_vae` is cut as in the student kit;
* ``vae_edu.grading`` is a stand-in (:data:`GRADING_STAND_IN`): the checks and the correct
  code they send run in the grader, so a visible test's ``grading.diagnosis(...)`` only
  points to the grader's verdict there.

A reference then cannot be reached by any route, however it is spelled (an alias, a
private helper taken with a computed name, a closure, a dict, a module written as text and
imported, a copy of the package's source read from disk): the code is not in the kernel's
file system or memory. The copy is built in the submission's throw-away folder; an isolated
kernel sees it at the package's own path, read-only, instead of the package
(:func:`vae_edu.assignments._sandbox.namespace_prefix`). Which functions of a kept module are
references is listed here per assignment (:data:`KERNEL_PACKAGES`); ``tests/test_kernel_package.py``
calls every route into the package an answer could take.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
from pathlib import Path

from vae_edu.assignments._sandbox import PACKAGE_DIR
from vae_edu.assignments.kit import strip_grader_only

__all__ = ["KERNEL_PACKAGES", "KernelPackage", "build", "kept_target", "stub_functions"]


@dataclasses.dataclass(frozen=True)
class AllBut:
    """Every function and method of a module except ``keep`` (names, or "Class.method")."""

    keep: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class KernelPackage:
    """What an assignment's kernel has of the package.

    modules: the modules (file stems, or sub-package folders) the kernel keeps; every other
      module of the package raises ImportError on import.
    stubs: module -> the functions (``name`` or ``Class.method``) whose code is removed, or
      :class:`AllBut`.
    """

    modules: tuple[str, ...]
    stubs: dict = dataclasses.field(default_factory=dict)


# What every kernel keeps: plumbing, data loading, drawing helpers, the grading stand-in.
_COMMON = (
    "__init__",
    "_checks",
    "config",
    "data",
    "datasets",
    "diagrams",
    "estimate",
    "optimize",
    "system",
    "threefry",
    "grading",
)
# The ELBO machinery of vae_edu.elbo (every one a reference of some assignment).
_ELBO = (
    "elbo",
    "_log_importance_weights",
    "_log_mean_exp",
    "_log_mean_exp_with_error",
    "iwae_bound",
    "log_evidence_prior_sampling",
    "log_evidence_importance_sampling",
)
_REPARAMETERIZE = ("reparameterize", "_draw", "_log_q_from_noise")
_BERNOULLI = ("bernoulli_log_likelihood", "_bernoulli_log_prob")

# vae_edu.kl with only the diagonal-Gaussian KL an assignment may be given (A2, A3: the
# categorical KL of one-hot pixels is the Bernoulli log-likelihood, the Monte Carlo KL an
# ELBO estimate); the estimators of vae_edu.estimate are A1's Question 3 (a mean and its
# standard error of log q - log p).
_KL_GIVEN = AllBut(("kl_diag_gaussians", "_kl_diag_gaussians", "squared_over_variance"))
_ESTIMATORS = ("mean_and_standard_error", "mean_estimate", "paired_difference")

KERNEL_PACKAGES = {
    # A1 asks for KL divergences: kl.py is all KL but for the (x - m)^2 / var helper the
    # log-densities use; elbo.py keeps its log-densities only.
    "A1_kl_divergence": KernelPackage(
        (*_COMMON, "kl", "elbo"),
        {
            "kl": AllBut(("squared_over_variance",)),
            "elbo": (*_ELBO, *_REPARAMETERIZE, *_BERNOULLI),
            "estimate": _ESTIMATORS,
        },
    ),
    # A2 asks for reparameterize, the Bernoulli log-likelihood, the loss and an ELBO
    # estimate; the KL is given (kl_diag_gaussians), the linear-Gaussian model is the data.
    "A2_elbo_reparameterization": KernelPackage(
        (*_COMMON, "kl", "elbo", "conjugate"),
        {
            "kl": _KL_GIVEN,
            "elbo": (*_ELBO, *_REPARAMETERIZE, *_BERNOULLI),
            "conjugate": AllBut(
                (
                    "make_model",
                    "make_scalar_model",
                    "_random_parameters",
                    "_check_positive",
                    "_check_batch_axes",
                    "_solve",
                    *(
                        f"LinearGaussianModel.{name}"
                        for name in (
                            "_params",
                            "_check_last_axis",
                            "_data",
                            "_latent",
                            "data_dim",
                            "latent_dim",
                            "log_prior",
                            "log_likelihood",
                            "sample",
                        )
                    ),
                )
            ),
        },
    ),
    # A3 asks for the loss and the training step of the small MLP VAE (mlp_vae's
    # grader-only region is cut), built from the pieces A1 and A2 wrote: the student writes
    # them again (or reuses their own), so the package's KL, reparameterization and
    # Bernoulli log-likelihood are not in the kernel either.
    "A3_train_and_explore": KernelPackage(
        (*_COMMON, "kl", "elbo", "mlp_vae", "latent"),
        {
            "kl": AllBut(("squared_over_variance",)),
            "elbo": (*_ELBO, *_REPARAMETERIZE, *_BERNOULLI),
            "latent": ("traverse", "interpolate"),
        },
    ),
}

#: The kernel's vae_edu.grading: the checks run only in the grader's own process.
GRADING_STAND_IN = '''"""vae_edu.grading as a student's kernel has it while an assignment is graded.

The checks, and the correct code they compare with, run only in the grader's own process:
the grader's verdict is printed below each test cell.
"""


def diagnosis(check, student_fn, *args, **kwargs):
    return " (the grader names the mistake in its verdict below this cell)"


def _grader_only(name):
    def check(*args, **kwargs):
        raise RuntimeError(
            f"vae_edu.grading.{name} runs in the grader's own process, not in the kernel "
            "that grades your notebook: its verdict is printed below the test cell"
        )

    check.__name__ = name
    return check


def __getattr__(name):
    if name.startswith("check_"):
        return _grader_only(name)
    raise AttributeError(f"vae_edu.grading.{name} is not available while grading")
'''

GRADING_CORE_STAND_IN = '''"""vae_edu.grading.core as a grading kernel has it."""

# The correct code the visible tests bind is the grader's: here a visible test runs the
# student's own functions (it decides nothing; the grader's checks do).
REPARAMETERIZE_CODE = BERNOULLI_CODE = None


def with_reference_names(student_fn, **codes):
    return student_fn
'''

_REMOVED = """raise ImportError(
    "{module} is not available while {assignment} is graded: the kernel that grades a "
    "notebook has only the modules of the package that assignment needs ({kept})"
)
"""

_HELPER = """

def _reference_removed(name):
    return RuntimeError(
        f"vae_edu.{module}.{{name}} computes what {assignment} asks you to write: its code "
        "is not in the kernel that grades your notebook (write your own)"
    )
"""


def _targets(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Every function and method of a module: name or "Class.method" -> node."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    return found


def stub_functions(source: str, names, module: str, assignment: str) -> str:
    """``source`` with the body of every function in ``names`` (or of every function but
    ``names.keep`` for :class:`AllBut`) replaced by ``raise _reference_removed(...)``.

    The ``def`` line (decorators, signature) stays, so the module imports as before and
    every use of the function fails with a message; a name that is not a function of the
    module raises ValueError (the list is out of date).
    """
    tree = ast.parse(source)
    found = _targets(tree)
    if isinstance(names, AllBut):
        unknown = set(names.keep) - set(found)
        chosen = [n for n in found if n not in names.keep]
    else:
        unknown = set(names) - set(found)
        chosen = list(names)
    if unknown:
        raise ValueError(f"vae_edu.{module} has no function {sorted(unknown)}")
    lines = source.splitlines(keepends=True)
    for name in sorted(chosen, key=lambda n: -found[n].lineno):
        node = found[name]
        first = node.body[0]
        if first.lineno == node.lineno:
            raise ValueError(f"vae_edu.{module}.{name}: a one-line function cannot be stubbed")
        indent = " " * first.col_offset
        lines[first.lineno - 1 : node.end_lineno] = [
            f'{indent}raise _reference_removed("{name}")\n'
        ]
    return "".join(lines) + _HELPER.format(module=module, assignment=assignment)


def kept_target(assignment: str, target: str) -> bool:
    """Whether the kernel of ``assignment`` has the module of ``target`` ("vae_edu.x:name")."""
    spec = KERNEL_PACKAGES.get(assignment)
    if spec is None:
        return True
    module = target.partition(":")[0].split(".")
    return len(module) < 2 or module[1] in spec.modules


def build(assignment: str, dest, package_dir=PACKAGE_DIR) -> Path:
    """Writes the kernel's package for ``assignment`` to ``dest/vae_edu``; returns ``dest``
    (the folder to put on the kernel's import path). An assignment without an entry in
    :data:`KERNEL_PACKAGES` gets the package with its grader-only regions cut."""
    spec = KERNEL_PACKAGES.get(assignment)
    dest = Path(dest)
    target = dest / "vae_edu"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    if spec is None:
        shutil.copytree(package_dir, target, ignore=ignore)
    else:
        target.mkdir(parents=True)
        for entry in sorted(Path(package_dir).iterdir()):
            if entry.name.startswith((".", "__pycache__")):
                continue
            stem = entry.stem if entry.is_file() else entry.name
            if entry.is_file() and entry.suffix != ".py":
                continue
            if stem in spec.modules and stem != "grading":
                if entry.is_dir():
                    shutil.copytree(entry, target / entry.name, ignore=ignore)
                else:
                    shutil.copy2(entry, target / entry.name)
                continue
            if stem == "grading":
                (target / "grading").mkdir()
                (target / "grading" / "__init__.py").write_text(GRADING_STAND_IN, "utf-8")
                (target / "grading" / "core.py").write_text(GRADING_CORE_STAND_IN, "utf-8")
                continue
            text = _REMOVED.format(
                module=f"vae_edu.{stem}",
                assignment=assignment,
                kept=", ".join(f"vae_edu.{m}" for m in spec.modules if not m.startswith("_")),
            )
            if entry.is_dir():
                if (entry / "__init__.py").is_file():
                    (target / entry.name).mkdir()
                    (target / entry.name / "__init__.py").write_text(text, "utf-8")
            else:
                (target / entry.name).write_text(text, "utf-8")
        for module, names in spec.stubs.items():
            path = target / f"{module}.py"
            text = path.read_text("utf-8")
            path.write_text(stub_functions(text, names, module, assignment), "utf-8")
    for path in target.rglob("*.py"):
        text = path.read_text("utf-8")
        stripped = strip_grader_only(text, path.name)
        if stripped != text:
            path.write_text(stripped, "utf-8")
    if os.name == "posix":  # readable by the kernel's user, writable by the grader only
        for path in [dest, *dest.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return dest
