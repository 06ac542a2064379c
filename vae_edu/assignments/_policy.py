"""What each assignment's answers may not use: the package's own implementation of the answer.

A student who imports :func:`vae_edu.kl.kl_diag_gaussians` as their ``kl_standard_normal``
has not answered the question; nor has one who reaches it without its name. Three layers
find this:

* a **static scan** (:func:`scan_source`) of every cell the student wrote (answer cells and
  added cells), with :mod:`ast` after IPython's own translation of magics, following the
  package imports of earlier cells: the forbidden names imported or used as attributes of
  ANY ``vae_edu`` module (re-exports included), aliased or star-imported, or written as text
  (``operator.methodcaller("exact_elbo")``), and every private ``vae_edu`` name; and the
  constructs that could reach them without naming them (``exec``, ``eval``, ``compile``,
  ``__import__``, ``importlib``, ``sys.modules``, ``getattr`` with a computed name,
  ``%run``, ``get_ipython().run_cell``, ``pickle``/``marshal``/``ctypes``/``copyreg``/``gc``/
  ``inspect``, ``__closure__``/``__wrapped__``/``__globals__``/``__code__``/frames,
  ``setattr``/``delattr``/assignments on the package). Using the package for anything else
  (data, plots, the functions an assignment hands out) stays allowed;
* a **reach listing** (:data:`vae_edu.assignments._channel.REACH_CODE`): before a
  question's checks, the kernel lists the fingerprints of every function the student's
  answer can reach; :func:`reference_fingerprints` gives those of the forbidden functions
  and their private helpers, computed in the grader. The original however obtained, a copy
  of the package's file imported under another name and pasted source all match;
* a **tripwire** in the kernel (:func:`vae_edu.assignments._channel.tripwire_code`): the
  forbidden functions (and the package's re-exports of them) are wrapped before any student
  code runs, and each call is recorded in a file only the grader reads.

A static finding costs the question whose test cell follows the cell that contains it (for
a dynamic construct, every autograded question: the grader cannot tell what it reaches);
a reach or tripwire finding costs the question whose check found it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
from pathlib import Path

from vae_edu.assignments._channel import fingerprint

__all__ = ["FORBIDDEN", "Finding", "forbid_message", "reference_fingerprints", "scan_source"]


@dataclasses.dataclass(frozen=True)
class Forbidden:
    """The reference implementations an assignment's answers may not use.

    functions: "module:name" of package functions (wrapped by the kernel tripwire).
    attributes: method names that give an answer away wherever they are called
      (e.g. ``model.exact_elbo``); "module:Class.method" entries are wrapped in the kernel.
    """

    functions: tuple[str, ...]
    methods: tuple[str, ...] = ()


_KL = tuple(
    f"vae_edu.kl:{name}"
    for name in ("kl_diag_gaussians", "kl_mvn", "kl_monte_carlo", "kl_categorical")
) + (
    # the body of the Monte Carlo KL: a mean and its standard error (A1 Question 3)
    "vae_edu.estimate:mean_and_standard_error",
    "vae_edu.estimate:mean_estimate",
)
FORBIDDEN = {
    "A1_kl_divergence": Forbidden(_KL),
    "A2_elbo_reparameterization": Forbidden(
        tuple(
            f"vae_edu.elbo:{name}"
            for name in (
                "reparameterize",
                "bernoulli_log_likelihood",
                "elbo",
                "iwae_bound",
                "log_evidence_importance_sampling",
                "log_evidence_prior_sampling",
            )
        )
        # the lessons' references for the same computations (notebooks 03, 05 and 06)
        + (
            "vae_edu.loss:negative_elbo",
            "vae_edu.lesson_checks:elbo_estimate",
            "vae_edu.lesson_checks:negative_elbo",
        ),
        tuple(
            f"vae_edu.conjugate:LinearGaussianModel.{name}"
            for name in ("exact_elbo", "log_evidence", "expected_log_likelihood", "posterior")
        ),
    ),
    # A3: the loss and the training step (the model's functions and the data are given).
    "A3_train_and_explore": Forbidden(
        (
            "vae_edu.mlp_vae:negative_elbo",
            "vae_edu.mlp_vae:train_step",
            "vae_edu.mlp_vae:_terms",
            "vae_edu.elbo:elbo",
            "vae_edu.elbo:iwae_bound",
            # the pieces A1 and A2 asked for: A3 puts them together, written again
            "vae_edu.elbo:reparameterize",
            "vae_edu.elbo:bernoulli_log_likelihood",
            "vae_edu.kl:kl_diag_gaussians",
            "vae_edu.train:train",
            "vae_edu.train:run_epoch",
            "vae_edu.train:make_chunk_runner",
            "vae_edu.train:optimizer_step",
            # the lessons' references for the same computations (notebooks 05 and 06)
            "vae_edu.loss:negative_elbo",
            "vae_edu.lesson_checks:negative_elbo",
            "vae_edu.lesson_checks:optimizer_step",
        )
    ),
}


_DYNAMIC_CALLS = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "globals",
    "vars",
    "locals",
    "breakpoint",
}
_DYNAMIC_NAMES = {"importlib", "runpy", "builtins", "__builtins__", "_grader_trace", "sys.modules"}
_DYNAMIC_MAGICS = {"run", "load", "loadpy", "load_ext", "reload_ext", "autoreload", "aimport"}
# Magics whose argument (a line magic) or body (a cell magic) is Python that runs: that code
# is scanned like a cell of its own. Any other magic, except the harmless ones, counts as
# generated code (e.g. %%writefile writes a module the scan never sees).
_PYTHON_MAGICS = {"time", "timeit", "capture", "prun"}
_HARMLESS_MAGICS = {"matplotlib"}
# Modules that load, rebuild or look inside code without naming it (an import costs every
# question: what they reach cannot be told from the source).
_DYNAMIC_MODULES = {
    "importlib",
    "runpy",
    "builtins",
    "pickle",
    "_pickle",
    "pickletools",
    "marshal",
    "ctypes",
    "copyreg",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "gc",
    "inspect",
    "code",
    "codeop",
    "pkgutil",
    "zipimport",
    "py_compile",
    "compileall",
    "imp",
    "dis",
}
# Attributes that reach a function's code, closure, globals or frames, patch the
# interpreter, or run code through IPython: the introspection behind every way of getting
# at a wrapped original, and code that is never scanned.
_DYNAMIC_ATTRIBUTES = {
    "__closure__",
    "cell_contents",
    "__wrapped__",
    "__globals__",
    "__code__",
    "func_closure",
    "func_globals",
    "func_code",
    "__dict__",
    "__builtins__",
    "__traceback__",
    "tb_frame",
    "tb_next",
    "f_globals",
    "f_locals",
    "f_back",
    "f_builtins",
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "__subclasses__",
    "__reduce__",
    "__reduce_ex__",
    "__getattribute__",
    "__defaults__",
    "__kwdefaults__",
    "_getframe",
    "setprofile",
    "settrace",
    "monitoring",
    "meta_path",
    "path_hooks",
    "path_importer_cache",
    "addaudithook",
    "FunctionType",
    "CodeType",
    "LambdaType",
    "run_cell",
    "run_cell_async",
    "run_code",
    "run_ast_nodes",
    "safe_execfile",
    "safe_execfile_ipy",
    "safe_run_module",
    "user_ns",
    "user_global_ns",
    "ex",
    "ev",
    "runcode",
    "runsource",
    "_grader_trace",
}
_PACKAGE = "vae_edu"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@functools.cache
def _submodules() -> frozenset[str]:
    """Dotted names of the package's modules (``vae_edu.kl``, ...), from its files."""
    names = {_PACKAGE}
    for path in _PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(_PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join((_PACKAGE, *parts)))
    return frozenset(names)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One forbidden use; ``dynamic`` findings cost every question."""

    message: str
    dynamic: bool = False


def _translate(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to the raw source
        return source


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def forbid_message(what: str) -> str:
    """The message of an answer that uses the package's own implementation."""
    return (
        f"your code uses {what}, the package's own implementation of what this "
        "question asks you to write: that is not an answer, so this question scores 0. "
        "Write it yourself (using the package for data, plots or the functions the "
        "assignment gives you is fine)."
    )


def scan_source(source: str, assignment: str, aliases: dict | None = None) -> list[Finding]:
    """Forbidden uses in one cell's source (empty if none; a syntax error is not a finding).

    ``aliases`` (local name -> the ``vae_edu`` module or name it stands for) carries the
    imports of earlier cells to later ones; it is updated with this cell's imports.
    """
    rules = FORBIDDEN.get(assignment)
    try:
        tree = ast.parse(_translate(source))
    except SyntaxError:
        return []
    findings: list[Finding] = []
    targets = [*(rules.functions if rules else ()), *(rules.methods if rules else ())]
    forbidden_names = {t.rpartition(":")[2].rpartition(".")[2] for t in targets}
    method_names = {t.rpartition(".")[2] for t in (rules.methods if rules else ())}
    modules = _submodules()
    package_aliases = aliases if aliases is not None else {}

    def forbid(what: str) -> None:
        message = forbid_message(what)
        if all(f.message != message for f in findings):
            findings.append(Finding(message))

    def dynamic(what: str) -> None:
        message = (
            f"your code uses {what}: dynamic imports and generated code (and the "
            "introspection, pickling or patching that reach code without naming it) are not "
            "allowed in a submission (the grader cannot tell what they reach), so every "
            "autograded question scores 0. Use plain `import` statements and ordinary code."
        )
        if all(f.message != message for f in findings):
            findings.append(Finding(message, dynamic=True))

    def resolve(node) -> str | None:
        """The package name an expression stands for (``vae_edu.kl.x``), or None."""
        name = _dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        base = package_aliases.get(head)
        if base is None:
            return None
        return f"{base}.{rest}" if rest else base

    def patches(owner: str | None) -> bool:
        """Whether changing an attribute of ``owner`` changes the package (the grading
        checks excepted: they run in the grader, so patching them in the kernel does
        nothing)."""
        return owner is not None and not owner.startswith(f"{_PACKAGE}.grading")

    def check_package_name(full: str) -> None:
        """``full`` is a dotted name inside the package: forbidden or private?"""
        if full in modules:
            return
        owner, _, last = full.rpartition(".")
        label = f"{owner}:{last}" if owner in modules else full  # as the tripwire names it
        if _private(last):
            forbid(f"{label} (a private helper of the package)")
        elif last in forbidden_names and owner.startswith(_PACKAGE):
            forbid(label)

    def check_import(module: str) -> None:
        if module.split(".")[0] in _DYNAMIC_MODULES:
            dynamic(f"`import {module}`")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_import(alias.name)
                if alias.name.split(".")[0] == _PACKAGE:
                    check_package_name(alias.name)
                    if alias.asname is not None:
                        package_aliases[alias.asname] = alias.name
                    else:
                        package_aliases[_PACKAGE] = _PACKAGE
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            check_import(module)
            if module.split(".")[0] == "sys" and any(
                a.name in _DYNAMIC_ATTRIBUTES or a.name == "modules" for a in node.names
            ):
                dynamic(f"`from {module} import ...`")
            if module == "types" and any(a.name in _DYNAMIC_ATTRIBUTES for a in node.names):
                dynamic("`from types import ...`")
            if module.split(".")[0] != _PACKAGE:
                continue
            check_package_name(module)
            names = {a.name for a in node.names}
            if "*" in names:
                for target in targets:
                    target_module, _, name = target.partition(":")
                    if target_module == module and "." not in name:
                        forbid(target)
            for alias in node.names:
                if alias.name == "*":
                    continue
                full = f"{module}.{alias.name}"
                check_package_name(full)
                package_aliases[alias.asname or alias.name] = full
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _DYNAMIC_CALLS:
                dynamic(f"`{name}()`")
            if name in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
                owner = resolve(node.args[0])
                attr = node.args[1]
                if not isinstance(attr, ast.Constant) or not isinstance(attr.value, str):
                    if name in ("getattr", "hasattr") or patches(owner):
                        dynamic(f"`{name}` with a computed name")
                elif name in ("setattr", "delattr") and (
                    patches(owner) or attr.value.startswith("_grader")
                ):
                    dynamic(f"`{name}` on the package")
                elif owner is not None:
                    check_package_name(f"{owner}.{attr.value}")
            if name is not None and name.rpartition(".")[2] in ("methodcaller", "attrgetter"):
                if not all(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args[:1]
                ):
                    dynamic(f"`{name}` with a computed name")
            called = node.func.attr if isinstance(node.func, ast.Attribute) else name
            # get_ipython().run_cell_magic(...): the callee's base is a call, not a name
            if called in ("run_line_magic", "run_cell_magic") and node.args:
                magic = node.args[0]
                code = node.args[-1] if len(node.args) >= 2 else None
                if not isinstance(magic, ast.Constant) or magic.value in _DYNAMIC_MAGICS:
                    dynamic("an IPython magic that runs or loads code")
                elif magic.value in _PYTHON_MAGICS and isinstance(code, ast.Constant):
                    # the magic's argument (line) or body (cell) is Python: scanned as a cell
                    for finding in scan_source(str(code.value), assignment, package_aliases):
                        if all(f.message != finding.message for f in findings):
                            findings.append(finding)
                elif magic.value not in _HARMLESS_MAGICS:
                    dynamic(
                        f"the IPython magic %{magic.value} (allowed: %matplotlib, and %time, "
                        "%timeit, %prun and %%capture, whose code is checked like a cell)"
                    )
        elif isinstance(node, ast.Name):
            if node.id in _DYNAMIC_NAMES:
                dynamic(f"`{node.id}`")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a forbidden name as text (operator.methodcaller("exact_elbo"), ...); short
            # plain words ("train", "elbo") are too common to tell
            if node.value in forbidden_names and ("_" in node.value or len(node.value) >= 10):
                forbid(f"the name {node.value!r}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            for target in getattr(node, "targets", None) or [node.target]:
                for part in ast.walk(target):
                    if isinstance(part, ast.Attribute) and patches(resolve(part.value)):
                        dynamic("an assignment to an attribute of the package")
        if isinstance(node, ast.Attribute):
            full = _dotted(node)
            if full == "sys.modules":
                dynamic("`sys.modules`")
            if node.attr in _DYNAMIC_ATTRIBUTES:
                dynamic(f"`.{node.attr}`")
            if node.attr in method_names:
                forbid(f"`.{node.attr}`")
            owner = resolve(node.value)
            if owner is not None:
                check_package_name(f"{owner}.{node.attr}")
    return findings


@functools.cache
def reference_fingerprints(assignment: str) -> dict[int, str]:
    """Fingerprints (:func:`vae_edu.assignments._channel.fingerprint`) of the forbidden
    functions of an assignment and of the private helpers of their modules: fingerprint ->
    "module:name". Computed in the grader's process, from the package it loaded before any
    student code ran."""
    rules = FORBIDDEN.get(assignment)
    if rules is None:
        return {}
    found: dict[int, str] = {}
    owners = set()
    for target in (*rules.functions, *rules.methods):
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        owners.add(module)
        print_ = fingerprint(obj)
        if print_ is not None:
            found[print_] = target
    for module in sorted(owners):
        for name, value in sorted(vars(importlib.import_module(module)).items()):
            if _private(name) and getattr(value, "__module__", None) == module:
                print_ = fingerprint(value)
                if print_ is not None:
                    found.setdefault(print_, f"{module}:{name}")
    return found
