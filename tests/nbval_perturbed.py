"""Re-run nbval on the lesson notebooks as if on another CPU: the portability check.

A notebook's committed outputs must not depend on floating-point rounding (issue 10). The
first nbval run (``python -m pytest``) only proves that they reproduce on *this* machine.
This script runs nbval a second time with the floating-point reduction order changed in
every library the notebooks use, the way a student's laptop would change it:

* XLA (JAX) compiles for an older instruction set, ``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``:
  4-wide instead of 8/16-wide vector lanes, so every vectorized sum adds in another order;
* NumPy's own SIMD loops drop to the x86-64-v2 baseline
  (``NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL"``);
* OpenBLAS (NumPy's and SciPy's matrix products) uses its Nehalem kernels
  (``OPENBLAS_CORETYPE=Nehalem``);
* the process is pinned to one core (``os.sched_setaffinity``, Linux), so XLA's and
  OpenBLAS's thread pools split the work differently.

Before the notebooks were made portable this changed the printed digits of 04 (float32
residuals), 07 (the L-BFGS fit) and more: see the README's "Portability" section. The
vector-ISA settings are x86-64 only; on other machines (or other OSes) the script applies
what exists there and says what it skipped.

Usage: ``python tests/nbval_perturbed.py [NOTEBOOK ...] [extra pytest arguments]`` (default:
every lesson notebook); exit code = pytest's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
X86 = platform.machine().lower() in {"x86_64", "amd64"}


def perturbed_environment() -> tuple[dict[str, str], list[str]]:
    """The environment for the second run, and a list of the settings it could not apply."""
    env = dict(os.environ)
    skipped = []
    if X86:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa=SSE4_2".strip()
        env["NPY_DISABLE_CPU_FEATURES"] = "X86_V3 X86_V4 AVX512_ICL"
        env["OPENBLAS_CORETYPE"] = "Nehalem"
    else:
        skipped.append(f"vector-ISA limits (x86-64 only, this is {platform.machine()})")
    return env, skipped


def main(argv: list[str]) -> int:
    env, skipped = perturbed_environment()
    if hasattr(os, "sched_setaffinity"):
        first_core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {first_core})  # inherited by pytest and the kernels
    else:
        skipped.append("one-core pinning (os.sched_setaffinity is Linux-only)")
    for item in skipped:
        print(f"nbval_perturbed: not applied here: {item}", flush=True)
    shown = {k: env[k] for k in ("XLA_FLAGS", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    print(f"nbval_perturbed: {shown}", flush=True)
    # Notebook paths among the arguments replace the default (every lesson notebook).
    paths = [a for a in argv if a.endswith(".ipynb") or Path(a).is_dir()]
    command = [sys.executable, "-m", "pytest", *([] if paths else ["notebooks"])]
    command += ["-p", "no:cacheprovider", *argv]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
