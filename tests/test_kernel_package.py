"""The package a grading kernel imports (vae_edu/assignments/_kernel_package.py).

For each assignment the copy is built, then imported in a fresh Python (``PYTHONPATH`` set
to the copy, as the grader sets it for its kernel): every route into the package an answer
could take to the assignment's references must fail with a message that says why, the
functions the assignment gives must still work (compared with the grader's own package),
and no line of a removed function's code may be left anywhere in the copy.
"""

import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vae_edu.assignments import _kernel_package, _policy

A1, A2, A3 = "A1_kl_divergence", "A2_elbo_reparameterization", "A3_train_and_explore"
REMOVED = "not in the kernel that grades your notebook"
NOT_AVAILABLE = "is not available while"


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernel_packages")
    return {a: _kernel_package.build(a, root / a) for a in (A1, A2, A3)}


def run_in_copy(copy: Path, code: str) -> dict:
    """Runs ``code`` (which sets ``out``, a JSON-able dict) with the copy on the path."""
    program = textwrap.dedent(code) + "\nimport json; print(json.dumps(out))\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(copy), JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ROUTES = """
import importlib
import jax.numpy as jnp

def attempt(fn):
    try:
        fn()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "ran"

def call(module, name, *args):
    return attempt(lambda: getattr(importlib.import_module(module), name)(*args))

z = jnp.zeros((2, 3))
out = {"file": importlib.import_module("vae_edu").__file__}
"""


def test_the_kernel_imports_the_copy(copies):
    out = run_in_copy(copies[A1], ROUTES)
    assert Path(out["file"]).resolve().is_relative_to(copies[A1].resolve())


def test_a1_kernel_has_no_kl(copies):
    out = run_in_copy(
        copies[A1],
        ROUTES
        + """
out["public"] = call("vae_edu.kl", "kl_diag_gaussians", z, z)
out["private"] = call("vae_edu.kl", "_kl_diag_gaussians", z, z, z, z)
out["mvn"] = call("vae_edu.kl", "kl_mvn", z, jnp.eye(3), z, jnp.eye(3))
out["monte_carlo"] = call("vae_edu.kl", "kl_monte_carlo", z, lambda s: s, lambda s: s)
out["grid"] = call("vae_edu.kl", "kl_on_grid", z[0], z[0], z[0])
out["elbo"] = call("vae_edu.elbo", "elbo", None, z, z, None)
out["estimator"] = call("vae_edu.estimate", "mean_and_standard_error", z[0])
for module in ("models", "loss", "train", "evaluate", "lesson_checks", "mlp_vae",
               "conjugate", "plots", "exercises", "pretrained", "widgets", "assignments"):
    out[module] = attempt(lambda: importlib.import_module("vae_edu." + module))
out["check"] = attempt(lambda: importlib.import_module("vae_edu.grading").check_kl_diag(None))
""",
    )
    for route in ("public", "private", "mvn", "monte_carlo", "grid", "elbo", "estimator"):
        assert out[route].startswith("RuntimeError") and REMOVED in out[route], (route, out)
    for module in ("models", "loss", "train", "evaluate", "lesson_checks", "mlp_vae"):
        assert out[module].startswith("ImportError") and NOT_AVAILABLE in out[module], out
    for module in ("conjugate", "plots", "exercises", "pretrained", "widgets", "assignments"):
        assert NOT_AVAILABLE in out[module], (module, out)
    assert "runs in the grader's own process" in out["check"], out


def test_a2_kernel_has_no_reparameterize_likelihood_or_elbo(copies):
    out = run_in_copy(
        copies[A2],
        ROUTES
        + """
import jax
from vae_edu.conjugate import make_model
model = make_model(jax.random.key(0), 3, 2, 0.5)
x = jnp.ones((1, 3))
for name, args in {
    "reparameterize": (jax.random.key(0), z, z), "_draw": (jax.random.key(0), z, z, None),
    "bernoulli_log_likelihood": (z, z), "_bernoulli_log_prob": (z, z),
    "iwae_bound": (None, z, z, None, 5),
}.items():
    out[name] = call("vae_edu.elbo", name, *args)
for name, args in {"kl_categorical": (z, z), "kl_monte_carlo": (z, z, z),
                   "kl_mvn": (z, z, z, z)}.items():
    out[name] = call("vae_edu.kl", name, *args)
q = (jnp.zeros((1, 2)), jnp.eye(2))
for name, args in {"exact_elbo": (x, *q), "expected_log_likelihood": (x, *q),
                   "log_evidence": (x,), "posterior": (x,)}.items():
    out[name] = attempt(lambda: getattr(model, name)(*args))
out["models"] = attempt(lambda: importlib.import_module("vae_edu.models"))
# what the assignment gives: the KL, the model's densities, its samples
out["kl"] = float(importlib.import_module("vae_edu.kl").kl_diag_gaussians(
    jnp.ones(2), jnp.zeros(2)))
out["log_likelihood"] = float(model.log_likelihood(x, jnp.ones((1, 2)))[0])
out["log_prior"] = float(model.log_prior(jnp.ones((1, 2)))[0])
out["sample_shape"] = list(model.sample(jax.random.key(1), 4).x.shape)
""",
    )
    for name in (
        "reparameterize",
        "_draw",
        "bernoulli_log_likelihood",
        "_bernoulli_log_prob",
        "iwae_bound",
        "kl_categorical",
        "kl_monte_carlo",
        "kl_mvn",
        "exact_elbo",
        "log_evidence",
        "posterior",
        "expected_log_likelihood",
    ):
        assert REMOVED in out[name], (name, out)
    assert NOT_AVAILABLE in out["models"], out
    import jax
    import jax.numpy as jnp

    from vae_edu.conjugate import make_model
    from vae_edu.kl import kl_diag_gaussians

    model = make_model(jax.random.key(0), 3, 2, 0.5)
    assert out["kl"] == pytest.approx(float(kl_diag_gaussians(jnp.ones(2), jnp.zeros(2))))
    x = jnp.ones((1, 3))
    assert out["log_likelihood"] == pytest.approx(
        float(model.log_likelihood(x, jnp.ones((1, 2)))[0]), rel=1e-6
    )
    assert out["log_prior"] == pytest.approx(float(model.log_prior(jnp.ones((1, 2)))[0]), rel=1e-6)
    assert out["sample_shape"] == [4, 3]


def test_a3_kernel_has_no_loss_or_step_but_trains(copies):
    out = run_in_copy(
        copies[A3],
        ROUTES
        + """
import jax
from vae_edu import mlp_vae
from vae_edu.latent import quantile_grid
params = mlp_vae.init_params(jax.random.key(0))
x = jnp.zeros((2, 784))
out["negative_elbo"] = attempt(lambda: mlp_vae.negative_elbo(params, jax.random.key(0), x))
out["train_step"] = attempt(lambda: mlp_vae.train_step(None, params, None, None, x))
out["_terms"] = call("vae_edu.mlp_vae", "_terms", params, jax.random.key(0), x)
for module in ("models", "loss", "train", "evaluate", "lesson_checks", "pretrained"):
    out[module] = attempt(lambda: importlib.import_module("vae_edu." + module))
out["elbo"] = call("vae_edu.elbo", "elbo", None, z, z, None)
out["kl"] = call("vae_edu.kl", "kl_diag_gaussians", z, z)
out["reparameterize"] = call("vae_edu.elbo", "reparameterize", jax.random.key(0), z, z)
out["bernoulli"] = call("vae_edu.elbo", "bernoulli_log_likelihood", z, z)
out["encode_shape"] = list(mlp_vae.encode(params, x)[0].shape)
out["grid"] = [float(v) for v in quantile_grid(3)]
out["run_training"] = callable(mlp_vae.run_training)
""",
    )
    for name in ("negative_elbo", "train_step", "_terms"):
        assert out[name].startswith("RuntimeError") and "reference" in out[name], (name, out)
    for module in ("models", "loss", "train", "evaluate", "lesson_checks", "pretrained"):
        assert NOT_AVAILABLE in out[module], (module, out)
    for name in ("elbo", "kl", "reparameterize", "bernoulli"):  # A3 writes the pieces again
        assert REMOVED in out[name], (name, out)
    import jax
    import jax.numpy as jnp

    from vae_edu import mlp_vae
    from vae_edu.latent import quantile_grid

    params = mlp_vae.init_params(jax.random.key(0))
    assert out["encode_shape"] == list(mlp_vae.encode(params, jnp.zeros((2, 784)))[0].shape)
    assert out["grid"] == pytest.approx([float(v) for v in quantile_grid(3)])
    assert out["run_training"] is True


def _body_lines(fn) -> list[str]:
    """A function's code as stripped lines: its body, without the docstring."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    lines = []
    for statement in body:
        segment = ast.get_source_segment(source, statement) or ""
        lines += [line.strip() for line in segment.splitlines() if line.strip()]
    return lines


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _stubbed(assignment) -> list:
    """The grader's own functions whose code the kernel's copy of ``assignment`` lacks."""
    import importlib

    spec = _kernel_package.KERNEL_PACKAGES[assignment]
    found = []
    for module, names in spec.stubs.items():
        mod = importlib.import_module(f"vae_edu.{module}")
        tree = ast.parse(Path(mod.__file__).read_text("utf-8"))
        every = _kernel_package._targets(tree)
        chosen = (
            [n for n in every if n not in names.keep]
            if isinstance(names, _kernel_package.AllBut)
            else list(names)
        )
        for name in chosen:
            owner = mod
            for part in name.split("."):
                owner = getattr(owner, part, None)
            owner = inspect.unwrap(getattr(owner, "fget", owner) or mod)
            if inspect.isfunction(owner):
                found.append((f"vae_edu.{module}.{name}", owner))
    return found


@pytest.mark.parametrize("assignment", [A1, A2, A3])
def test_no_removed_function_body_is_left_in_the_copy(copies, assignment):
    files = {
        path: [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
        for path in (copies[assignment] / "vae_edu").rglob("*.py")
    }
    stubbed = _stubbed(assignment)
    assert len(stubbed) >= 5, stubbed
    for label, fn in stubbed:
        body = _body_lines(fn)
        left = [path.name for path, lines in files.items() if _contains(lines, body)]
        assert not left, (label, left)


@pytest.mark.parametrize("assignment", sorted(_policy.FORBIDDEN))
def test_every_forbidden_function_is_removed_or_its_module_gone(copies, assignment):
    """The references the policy names (and wraps with the tripwire) are not in the copy."""
    spec = _kernel_package.KERNEL_PACKAGES[assignment]
    rules = _policy.FORBIDDEN[assignment]
    for target in (*rules.functions, *rules.methods):
        module, _, name = target.partition(":")
        stem = module.split(".")[1]
        if stem not in spec.modules:
            continue  # the whole module raises ImportError in the kernel
        text = (copies[assignment] / "vae_edu" / f"{stem}.py").read_text("utf-8")
        tree = ast.parse(text)
        node = _kernel_package._targets(tree)[name]
        assert len(node.body) == 1 and isinstance(node.body[0], ast.Raise), target


def test_an_unknown_name_means_the_list_is_out_of_date():
    with pytest.raises(ValueError, match="no function"):
        _kernel_package.stub_functions("def f(x):\n    return x\n", ("g",), "m", A1)


def test_a_stub_keeps_the_signature_and_raises():
    source = (
        "import functools\n\n\n@functools.cache\n"
        "def f(x, *, y=2):\n    '''Doc.'''\n    return x + y\n"
    )
    space = {}
    exec(_kernel_package.stub_functions(source, ("f",), "m", A1), space)  # noqa: S102
    assert str(inspect.signature(space["f"].__wrapped__)) == "(x, *, y=2)"
    with pytest.raises(RuntimeError, match="vae_edu.m.f computes what A1_kl_divergence asks"):
        space["f"](1)
