"""Where and as whom a submission's kernel runs.

* **A throw-away working directory** per submission (:func:`make_workdir`), deleted after
  grading: relative paths in student code never reach the instructor's files.
* **A scrubbed environment** (:func:`kernel_env`): only what a kernel needs (PATH, a HOME
  inside the working directory, locale, the location of this package); nothing of the
  grader's own environment (tokens, credentials) is passed on.
* **An unprivileged user** when the grader runs as root, on POSIX only
  (:func:`unprivileged_user`, default ``nobody``): student code can then write neither the
  instructor sources, the installed package, nor other submissions' grades.
* **A read-only view** where that user cannot run this Python (a virtual environment under
  ``/root`` or a private temporary folder), on Linux as root only (:func:`readonly_view`):
  the kernel starts in a private mount namespace in which the package, the Python
  installation, the instructor sources and the grader's working folder are bind-mounted
  read-only, and only the submission's throw-away directory stays writable.
* Otherwise (not root, macOS, Windows) student code runs as the grader's user: the grader
  says so in a note, and relies on the SHA-256 check of its sources
  (:func:`source_digests`) before every submission, which stops grading if they changed.
* **Resource limits**, on POSIX only (:func:`limit_resources`): address space (memory),
  file size, no core dumps. Windows has no ``setrlimit``: there the memory limit is not
  enforced, and the grader says so.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

import vae_edu

__all__ = [
    "PACKAGE_DIR",
    "SandboxKernelManager",
    "kernel_env",
    "limit_resources",
    "make_workdir",
    "readonly_view",
    "remove_workdir",
    "source_digests",
    "unprivileged_user",
]

PACKAGE_DIR = Path(vae_edu.__file__).resolve().parent
MAX_FILE_BYTES = 512 * 1024 * 1024


def source_digests(paths) -> dict[str, str]:
    """SHA-256 of every grader source: the package's ``.py`` files and the given files."""
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(Path(p).resolve() for p in paths)
    digests = {}
    for path in files:
        if "__pycache__" in path.parts:
            continue
        try:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[str(path)] = "unreadable"
    return digests


_USABLE: dict[str, str] = {}


def unprivileged_user(name: str = "nobody"):
    """((uid, gid), "") to run student code as, or (None, why not).

    Only a grader running as root on POSIX can switch users, and only to a user that can
    run this Python and import this package (checked once per process by starting one).
    """
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return None, "switching users is available on POSIX only"
    if os.geteuid() != 0:
        return None, "only a grader running as root can switch to an unprivileged user"
    import pwd  # POSIX only

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None, f"there is no user {name!r} to run student code as"
    owner = entry.pw_uid, entry.pw_gid
    if name not in _USABLE:
        probe = make_workdir(owner)
        try:
            with warnings.catch_warnings():  # JAX warns about fork; exec follows at once
                warnings.simplefilter("ignore", RuntimeWarning)
                result = subprocess.run(
                    [sys.executable, "-c", "import vae_edu, ipykernel"],
                    user=owner[0],
                    group=owner[1],
                    extra_groups=[],
                    env=kernel_env(probe),
                    cwd=probe,
                    capture_output=True,
                    timeout=120,
                )
            _USABLE[name] = (
                ""
                if result.returncode == 0
                else (result.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
            )
        except (OSError, subprocess.SubprocessError) as err:
            _USABLE[name] = f"{type(err).__name__}: {err}"
        finally:
            remove_workdir(probe)
    if _USABLE[name]:
        return None, (
            f"user {name!r} cannot run this Python ({sys.executable}) and its packages "
            f"({_USABLE[name][:200]}); install them where every user can read them"
        )
    return owner, ""


_VIEW_USABLE: list[str] = []  # [] not probed yet; [""] usable; ["why not"] not usable


def _view_prefix(protect, writable) -> list[str]:
    unshare, mount, shell = shutil.which("unshare"), shutil.which("mount"), shutil.which("sh")
    steps = []
    for path in protect:
        q = shlex.quote(str(path))
        steps.append(f"{mount} --rbind {q} {q} && {mount} -o remount,bind,ro {q}")
    for path in writable:  # bound again on itself and made writable inside the read-only view
        q = shlex.quote(str(path))
        steps.append(f"{mount} --bind {q} {q} && {mount} -o remount,bind,rw {q}")
    script = " && ".join([*steps, 'exec "$@"'])
    return [unshare, "--mount", "--propagation", "private", shell, "-c", script, "sh"]


def readonly_view(protect, writable):
    """(command prefix, "") that starts a program where ``protect`` is read-only, or (None, why).

    Linux and root only: the prefix is ``unshare --mount`` (a private mount namespace, so
    nothing is visible outside it) running ``mount --rbind P P; mount -o remount,bind,ro P``
    for every protected folder, then ``mount --bind W W; mount -o remount,bind,rw W`` for
    every writable one (a folder inside a protected one stays writable), then the program.
    Probed once per process.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return None, "a read-only view needs Linux and root"
    if not all(shutil.which(tool) for tool in ("unshare", "mount", "sh")):
        return None, "a read-only view needs the unshare and mount commands"
    if not _VIEW_USABLE:
        probe = Path(tempfile.mkdtemp(prefix="vae_edu_view_"))
        try:
            (probe / "inner").mkdir()
            check = 'touch "$1/inner/ok" && ! touch "$1/denied" 2>/dev/null'
            result = subprocess.run(
                _view_prefix([probe], [probe / "inner"]) + ["sh", "-c", check, "sh", str(probe)],
                capture_output=True,
                timeout=60,
            )
            works = result.returncode == 0 and not (probe / "denied").exists()
            why = result.stderr.decode(errors="replace").strip().splitlines() or ["probe failed"]
            _VIEW_USABLE.append("" if works else why[-1][:200])
        except (OSError, subprocess.SubprocessError) as err:
            _VIEW_USABLE.append(f"{type(err).__name__}: {err}")
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    if _VIEW_USABLE[0]:
        return None, f"a read-only view is not available here ({_VIEW_USABLE[0]})"
    protect = sorted({Path(p).resolve() for p in protect if Path(p).is_dir()}, key=len_of_path)
    protect = [p for p in protect if p != Path(p.anchor)]  # never the whole file system
    return _view_prefix(protect, [Path(w).resolve() for w in writable]), ""


def len_of_path(path: Path) -> int:
    """Sort key: parents before their children."""
    return len(path.parts)


def make_workdir(owner=None) -> Path:
    """A fresh, private working directory (owned by ``owner`` = (uid, gid) if given)."""
    path = Path(tempfile.mkdtemp(prefix="vae_edu_grade_"))
    for sub in ("home", "tmp", "channel"):
        (path / sub).mkdir()
    if owner is not None:
        for p in (path, path / "home", path / "tmp", path / "channel"):
            os.chown(p, *owner)  # POSIX only (owner is None elsewhere)
    return path


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def kernel_env(workdir: Path) -> dict[str, str]:
    """The whole environment of a student kernel (nothing else is inherited)."""
    bin_dir = str(Path(sys.executable).parent)
    system_path = os.pathsep.join(
        p for p in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(p)
    )
    env = {
        "PATH": os.pathsep.join(filter(None, (bin_dir, system_path))),
        "HOME": str(workdir / "home"),
        "USERPROFILE": str(workdir / "home"),
        "TMPDIR": str(workdir / "tmp"),
        "TEMP": str(workdir / "tmp"),
        "TMP": str(workdir / "tmp"),
        "IPYTHONDIR": str(workdir / "home" / ".ipython"),
        "MPLCONFIGDIR": str(workdir / "home" / ".matplotlib"),
        "JUPYTER_CONFIG_DIR": str(workdir / "home" / ".jupyter"),
        "JUPYTER_DATA_DIR": str(workdir / "home" / ".jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "home" / ".jupyter-runtime"),
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JAX_PLATFORMS": "cpu",
        # the kernel imports the same vae_edu as the grader (a checkout or a worktree)
        "PYTHONPATH": str(PACKAGE_DIR.parent),
    }
    for key in ("SYSTEMROOT", "COMSPEC", "PATHEXT", "WINDIR"):  # Windows needs these
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def limit_resources(memory_mb: int | None):
    """A ``preexec_fn`` setting the kernel's limits (POSIX only; None elsewhere)."""
    if os.name != "posix":
        return None

    def apply():  # runs in the child, after the switch of user
        import resource  # POSIX only

        if memory_mb:
            limit = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose connection file the unprivileged kernel can read.

    The connection file lives in the submission's working directory and, when the kernel
    runs as another user, is handed to that user (POSIX only).
    """

    sandbox_owner = None  # (uid, gid) or None
    sandbox_prefix: list[str] = []  # a readonly_view prefix, or none

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.sandbox_prefix, *super().format_kernel_cmd(extra_arguments)]

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if self.sandbox_owner is not None:
            os.chown(self.connection_file, *self.sandbox_owner)
