"""What each assignment's answers may not use: the package's own implementation of the answer.

A student who imports :func:`vae_edu.kl.kl_diag_gaussians` as their ``kl_standard_normal``
has not answered the question. Two layers find this:

* a **static scan** (:func:`scan_source`) of every cell the student wrote (answer cells and
  added cells), with :mod:`ast` after IPython's own translation of magics: imports and
  attribute uses of the forbidden names (direct, aliased, ``import vae_edu.kl as k`` then
  ``k.kl_diag_gaussians``, star imports), and the dynamic constructs that could reach them
  without naming them (``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``,
  ``sys.modules``, ``runpy``, ``builtins``, ``globals()``/``vars()``, ``getattr`` with a
  computed name, ``%run``/``%load`` magics). Using the package for anything else (data,
  plots, the functions an assignment hands out) stays allowed;
* a **tripwire** in the kernel (:func:`vae_edu.assignments._channel.tripwire_code`): the
  forbidden functions are wrapped before any student code runs, and the channel reports
  when a graded call reached one of them.

A finding costs the question whose test cell follows the cell that contains it (for a
dynamic construct, every autograded question: the grader cannot tell what it reaches).
"""

from __future__ import annotations

import ast
import dataclasses

__all__ = ["FORBIDDEN", "Finding", "scan_source"]


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
            "vae_edu.train:train",
            "vae_edu.train:run_epoch",
            "vae_edu.train:make_chunk_runner",
        )
    ),
}


_DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__", "globals", "vars", "breakpoint"}
_DYNAMIC_NAMES = {"importlib", "runpy", "builtins", "__builtins__", "_grader_trace", "sys.modules"}
_DYNAMIC_MAGICS = {"run", "load", "loadpy", "load_ext", "reload_ext", "autoreload", "aimport"}


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


def scan_source(source: str, assignment: str) -> list[Finding]:
    """Forbidden uses in one cell's source (empty if none; a syntax error is not a finding)."""
    rules = FORBIDDEN.get(assignment)
    try:
        tree = ast.parse(_translate(source))
    except SyntaxError:
        return []
    findings: list[Finding] = []
    functions = {}
    if rules is not None:
        for target in rules.functions:
            module, _, name = target.partition(":")
            functions.setdefault(module, set()).add(name)
    method_names = {t.rpartition(".")[2] for t in (rules.methods if rules else ())}
    module_aliases: dict[str, str] = {}  # local name -> module it stands for

    def forbid(what: str) -> None:
        message = (
            f"your code uses {what}, the package's own implementation of what this "
            "question asks you to write: that is not an answer, so this question scores 0. "
            "Write it yourself (using the package for data, plots or the functions the "
            "assignment gives you is fine)."
        )
        if all(f.message != message for f in findings):
            findings.append(Finding(message))

    def dynamic(what: str) -> None:
        message = (
            f"your code uses {what}: dynamic imports and generated code are not allowed in "
            "a submission (the grader cannot tell what they reach), so every autograded "
            "question scores 0. Use plain `import` statements and ordinary code."
        )
        if all(f.message != message for f in findings):
            findings.append(Finding(message, dynamic=True))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("importlib", "runpy", "builtins"):
                    dynamic(f"`import {alias.name}`")
                if alias.name in functions:
                    module_aliases[alias.asname or alias.name] = alias.name
                elif alias.asname is None:
                    for module in functions:
                        if module.startswith(alias.name + ".") or module == alias.name:
                            module_aliases[alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            if module.split(".")[0] in ("importlib", "runpy", "builtins"):
                dynamic(f"`from {module} import ...`")
            names = {a.name for a in node.names}
            if module in functions:
                used = functions[module] & names
                if "*" in names:
                    used = functions[module]
                for name in sorted(used):
                    forbid(f"{module}.{name}")
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if full in functions:
                    module_aliases[alias.asname or alias.name] = full
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _DYNAMIC_CALLS:
                dynamic(f"`{name}()`")
            if name == "getattr" and len(node.args) >= 2:
                if not isinstance(node.args[1], ast.Constant):
                    dynamic("`getattr` with a computed name")
                elif node.args[1].value in method_names:
                    forbid(f"`.{node.args[1].value}`")
                else:
                    owner = _dotted(node.args[0])
                    if owner is not None:
                        module = module_aliases.get(owner, owner)
                        if node.args[1].value in functions.get(module, ()):
                            forbid(f"{module}.{node.args[1].value}")
            if name and name.endswith(("run_line_magic", "run_cell_magic")) and node.args:
                magic = node.args[0]
                if not isinstance(magic, ast.Constant) or magic.value in _DYNAMIC_MAGICS:
                    dynamic("an IPython magic that runs or loads code")
        elif isinstance(node, ast.Name):
            if node.id in _DYNAMIC_NAMES:
                dynamic(f"`{node.id}`")
        elif isinstance(node, ast.Attribute):
            full = _dotted(node)
            if node.attr in ("_grader_trace",) or full == "sys.modules":
                dynamic(f"`{full or node.attr}`")
            if node.attr in ("__dict__", "__globals__", "__builtins__", "__code__"):
                dynamic(f"`.{node.attr}`")
            if node.attr in method_names:
                forbid(f"`.{node.attr}`")
            owner = _dotted(node.value)
            if owner is not None:
                module = module_aliases.get(owner, owner)
                if node.attr in functions.get(module, ()):
                    forbid(f"{module}.{node.attr}")
    return findings
