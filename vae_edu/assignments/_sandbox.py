"""Where and as whom a submission's kernel runs.

* **A throw-away working directory** per submission (:func:`make_workdir`), deleted after
  grading: relative paths in student code never reach the instructor's files.
* **A scrubbed environment** (:func:`kernel_env`): only what a kernel needs (PATH, a HOME
  inside the working directory, locale, the location of this package); nothing of the
  grader's own environment (tokens, credentials) is passed on.
* **An isolated kernel** when the grader runs as root on Linux (:func:`namespace_prefix`,
  chosen by :func:`isolation`): the kernel starts in new PID, mount, IPC and network
  namespaces (``unshare --pid --mount --ipc --net --fork --kill-child``: no network; the
  grader talks to it over Unix sockets, :func:`ipc_path`), in a file system of its own
  (``chroot`` into a fresh tmpfs holding, read-only, the system folders, the Python
  installation, the virtual environment and the package folder, and, writable, only the
  submission's throw-away directory), as an unprivileged user (``setpriv``, default ``nobody``, no
  capabilities, ``no_new_privs``). Student code then cannot read or write the instructor's
  notebooks, the submissions, the grades or the grader's working folder (they are not in
  its file system), cannot see or signal the grader (it is not in its PID namespace, so
  ``/proc`` of the grader does not exist there), and every process it starts, detached or
  not, dies with the kernel (the end of a PID namespace's first process kills the rest).
* **An unprivileged user** without namespaces when the grader runs as root elsewhere on
  POSIX (:func:`unprivileged_user`), if that user can run this Python.
* **A read-only view** (:func:`readonly_view`, root on Linux, when neither of the above is
  possible): a private mount namespace in which the package, the Python installation, the
  instructor sources and the grader's working folder are bind-mounted read-only. Student
  code runs as root there: a weak protection, said in a note.
* Otherwise (not root, macOS, Windows) student code runs as the grader's user: the grader
  says so in a note, and relies on the SHA-256 check of its sources
  (:func:`source_digests`, which also rejects byte-code that differs from its source)
  before every submission, which stops grading if they changed.
* **Resource limits**, on POSIX only (:func:`limit_resources`): address space (memory),
  file size, no core dumps. Windows has no ``setrlimit``: there the memory limit is not
  enforced, and the grader says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
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
    "ipc_path",
    "isolation",
    "kernel_cwd",
    "kernel_env",
    "limit_resources",
    "make_workdir",
    "namespace_prefix",
    "python_dirs",
    "readonly_view",
    "remove_untrusted_bytecode",
    "remove_workdir",
    "source_digests",
    "unprivileged_user",
    "untrusted_bytecode",
]

PACKAGE_DIR = Path(vae_edu.__file__).resolve().parent
MAX_FILE_BYTES = 512 * 1024 * 1024
# Processes and threads of the unprivileged user, all its isolated kernels together
# (JAX starts a few dozen threads per kernel).
MAX_PROCESSES = 4096


def source_digests(paths) -> dict[str, str]:
    """SHA-256 of every grader source: the package's ``.py`` files and the given files.

    A ``.py`` file whose byte-code in ``__pycache__`` is not the code of the source (a
    submission that wrote a poisoned ``.pyc`` with the header of the untouched source) gets
    the digest of that byte-code instead, marked: Python would run it in place of the
    source, so for the grader the source changed.
    """
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(Path(p).resolve() for p in paths)
    digests = {}
    for path in files:
        if "__pycache__" in path.parts:
            continue
        try:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[str(path)] = "unreadable"
            continue
        if path.suffix == ".py":
            foreign = untrusted_bytecode(path)
            if foreign:
                data = b"".join(p.read_bytes() for p in foreign)
                digests[str(path)] = (
                    f"{hashlib.sha256(data).hexdigest()} (byte-code in __pycache__ that is "
                    "not this source's)"
                )
    return digests


def untrusted_bytecode(source: Path) -> list[Path]:
    """The cached byte-code files of ``source`` that this Python could load in its place
    but whose code is not the source's (compared as code objects, so a ``.pyc`` that
    Python wrote itself always matches).

    Files of other Python versions (another magic number) are ignored: Python ignores them
    too, and recompiles.
    """
    cache = source.parent / "__pycache__"
    tag = sys.implementation.cache_tag
    if tag is None or not cache.is_dir():
        return []
    names = {f"{source.stem}.{tag}.pyc": 0}
    names.update({f"{source.stem}.{tag}.opt-{level}.pyc": level for level in (1, 2)})
    found = []
    for name, level in names.items():
        pyc = cache / name
        try:
            data = pyc.read_bytes()
        except OSError:
            continue
        if data[:4] != importlib.util.MAGIC_NUMBER:
            continue
        try:
            expected = compile(
                source.read_bytes(), str(source), "exec", dont_inherit=True, optimize=level
            )
        except (OSError, SyntaxError, ValueError):
            continue  # no code to compare with: Python could not compile it either
        try:
            cached = marshal.loads(data[16:])
        except (EOFError, ValueError, TypeError):
            found.append(pyc)
            continue
        if cached != expected:
            found.append(pyc)
    return found


def remove_untrusted_bytecode() -> list[Path]:
    """Deletes the package's cached byte-code that is not its source's (see
    :func:`untrusted_bytecode`), so that imports from now on compile the source; returns
    what it could not delete (then :func:`source_digests` reports those sources changed)."""
    kept = []
    for source in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in source.parts:
            continue
        for pyc in untrusted_bytecode(source):
            try:
                pyc.unlink()
            except OSError:
                kept.append(pyc)
    return kept


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


# ----------------------------------------------------------------------- namespaces

# System folders the kernel sees, read-only (the rest of the machine does not exist for it).
# (A Python under /opt, like CI's, is bound by itself, as part of python_dirs.)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_NAMESPACE_TOOLS = ("unshare", "mount", "chroot", "setpriv", "sh")
# Where root's tools live, whatever PATH the grader was started with (chroot is in /usr/sbin).
_SYSTEM_BIN = os.pathsep.join(("/usr/sbin", "/sbin", "/usr/bin", "/bin"))


def _which(name: str) -> str | None:
    """The command ``name`` on PATH, or in the system's own bin folders."""
    return shutil.which(name) or shutil.which(name, path=_SYSTEM_BIN)


_NAMESPACE_USABLE: dict[str, str] = {}  # user name -> "" (usable) or why not


def python_dirs() -> list[Path]:
    """The folders this Python needs: its installation and its virtual environment."""
    found = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    found.add(Path(sys.executable).resolve().parent)
    return sorted(found, key=len_of_path)


def _inside(path: Path, folders) -> bool:
    return any(path == f or f in path.parents for f in folders)


def namespace_prefix(workdir, owner, hide=(), *, root=None, package=None) -> list[str]:
    """The command prefix that starts a program isolated (see the module's docstring).

    ``workdir`` is a :func:`make_workdir` folder; the new root is mounted on ``root``
    (default ``workdir/root``, an empty folder only the grader can change).

    ``unshare --mount --ipc --net --pid --fork --kill-child`` runs, as root and as the
    namespace's first process, a shell that mounts a tmpfs on ``root`` (0755, read-only once built),
    binds into it, read-only, the system folders (:data:`SYSTEM_DIRS`), this Python's
    folders (:func:`python_dirs`) and the package folder (:data:`PACKAGE_DIR`, not the
    checkout around it), and, writable, ``workdir``, all at their own paths; gives it a
    few devices, a private ``/proc`` (of the new PID namespace), ``/tmp`` and ``/dev/shm``;
    given ``package`` (a folder holding the kernel's copy of ``vae_edu``, see
    :mod:`._kernel_package`), that copy is bound read-only at :data:`PACKAGE_DIR` instead of
    the package itself, which the kernel then never sees;
    mounts an empty read-only tmpfs on every folder of ``hide`` that would still be visible
    (inside a bound folder); then ``chroot``s there and runs the program in ``workdir`` as
    ``owner`` = (uid, gid) through ``setpriv`` (no groups, no capabilities, no new
    privileges). The shell stays the namespace's first process: when the program ends, or
    the whole process group is killed, the namespace ends and every process in it is killed.
    """
    q = shlex.quote
    tool = {name: q(_which(name) or name) for name in _NAMESPACE_TOOLS}
    mount = tool["mount"]
    workdir = Path(workdir).resolve()
    if root is None:  # an empty folder of the grader's, deleted with the working directory
        root = workdir / "root"
        root.mkdir(mode=0o700, exist_ok=True)
    root = Path(root)
    system = [Path(d) for d in SYSTEM_DIRS if Path(d).is_dir() and not Path(d).is_symlink()]
    keep = [p for p in python_dirs() if not _inside(p, system)]
    if package is None and not _inside(PACKAGE_DIR, system):
        keep.append(PACKAGE_DIR)
    keep = [p for p in keep if not _inside(p, [k for k in keep if k != p])]

    def at(path: Path) -> str:  # where ``path`` is in the new root
        return q(str(root) + str(path))

    def bind_ro(path: Path) -> list[str]:
        return [
            f"mkdir -p {at(path)}",
            f"{mount} --rbind {q(str(path))} {at(path)}",
            f"{mount} -o remount,bind,ro,nosuid,nodev {at(path)}",
        ]

    steps = [
        "set -e",
        # the grader is not in this PID namespace (1: ipykernel does not watch its parent)
        "export JPY_PARENT_PID=1",
        "umask 022",
        f"{mount} -t tmpfs -o mode=0755,size=16m vae_edu_root {q(str(root))}",
    ]
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():  # /bin -> usr/bin on merged-/usr systems
            steps.append(f"ln -s {q(os.readlink(path))} {at(path)}")
        elif path.is_dir():
            steps += bind_ro(path)
    steps.append(f"mkdir {at(Path('/dev'))} {at(Path('/dev/shm'))}")
    for name in DEVICES:
        if Path("/dev", name).exists():
            device = Path("/dev", name)
            steps += [f"touch {at(device)}", f"{mount} --bind {device} {at(device)}"]
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        steps.append(f"ln -s /proc/self/fd/{number} {at(Path('/dev', name))}")
    steps += [
        f"ln -s /proc/self/fd {at(Path('/dev/fd'))}",
        f"{mount} -t tmpfs -o mode=1777,size=256m,nosuid,nodev shm {at(Path('/dev/shm'))}",
        f"mkdir {at(Path('/proc'))} {at(Path('/tmp'))}",
        f"{mount} -t proc -o nosuid,nodev,noexec proc {at(Path('/proc'))}",
        f"{mount} -t tmpfs -o mode=1777,size=256m,nosuid,nodev tmp {at(Path('/tmp'))}",
    ]
    if Path("/sys").is_dir():  # only informative (CPU counts): best effort
        steps.append("{ " + " && ".join(bind_ro(Path("/sys"))) + "; } || true")
    for path in keep:
        steps += bind_ro(path)
    if package is not None:  # over the real package, wherever it is (checkout, site-packages)
        steps += [
            f"mkdir -p {at(PACKAGE_DIR)}",
            f"{mount} --rbind {q(str(Path(package) / 'vae_edu'))} {at(PACKAGE_DIR)}",
            f"{mount} -o remount,bind,ro,nosuid,nodev {at(PACKAGE_DIR)}",
        ]
    steps += [
        f"mkdir -p {at(workdir)}",
        f"{mount} --bind {q(str(workdir))} {at(workdir)}",
        f"{mount} -o remount,bind,nosuid,nodev {at(workdir)}",
    ]
    visible = [*system, *keep]
    # never hidden: what the kernel needs (a folder the grader is started from can be one)
    needed = [*system, *python_dirs(), PACKAGE_DIR, workdir]
    needed += [Path(p).resolve() for p in sys.path if p and Path(p).is_dir()]
    cwd = Path.cwd().resolve()
    needed = [p for p in needed if p != cwd]
    for folder in sorted({Path(h).resolve() for h in hide}, key=len_of_path):
        if (
            folder.is_dir()
            and _inside(folder, visible)
            and not any(folder == p or folder in p.parents for p in needed)
        ):
            steps.append(f"{mount} -t tmpfs -o ro,mode=0755,size=4k hidden {at(folder)}")
    steps.append(f"{mount} -o remount,ro {q(str(root))}")
    drop = (
        f"exec {tool['setpriv']} --reuid={int(owner[0])} --regid={int(owner[1])} --clear-groups "
        '--no-new-privs --inh-caps=-all "$@"'
    )
    inner_script = f'cd "$1" && shift && {drop}'
    # not exec'd: this shell stays the namespace's first process (see the docstring)
    steps.append(
        f"{tool['chroot']} {q(str(root))} {tool['sh']} -c {q(inner_script)} "
        f'sh {q(str(kernel_cwd(workdir)))} "$@"'
    )
    return [
        _which("unshare") or "unshare",
        "--mount",
        "--ipc",  # no System V shared memory or message queues shared with other kernels
        "--net",  # no network: the kernel talks to the grader over Unix sockets (ipc_path)
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        _which("sh") or "/bin/sh",
        "-c",
        "\n".join(steps),
        "vae_edu_sandbox",
    ]


def isolation(name: str = "nobody"):
    """((uid, gid), "") if kernels can run isolated (:func:`namespace_prefix`) as user
    ``name``, or (None, why not).

    Linux, root, the commands unshare, mount, chroot, setpriv and sh; checked once per
    process by starting this Python isolated and importing the package and ipykernel.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return None, "isolating the kernel needs Linux and root"
    missing = [tool for tool in _NAMESPACE_TOOLS if not _which(tool)]
    if missing:
        return None, f"isolating the kernel needs the command(s) {', '.join(missing)}"
    import pwd  # POSIX only

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None, f"there is no user {name!r} to run student code as"
    owner = entry.pw_uid, entry.pw_gid
    if owner[0] == 0:
        return None, f"user {name!r} is root"
    if name not in _NAMESPACE_USABLE:
        probe = make_workdir(owner)
        check = (
            "import os, vae_edu, ipykernel; "
            f"assert os.getuid() == {owner[0]} and os.getgid() == {owner[1]}, 'user'; "
            "assert os.getcwd() == os.environ['HOME'][:-4] + 'work', 'cwd'"
        )
        try:
            result = subprocess.run(
                [*namespace_prefix(probe, owner), sys.executable, "-c", check],
                env=kernel_env(probe),
                cwd=probe,
                capture_output=True,
                timeout=120,
            )
            lines = result.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
            _NAMESPACE_USABLE[name] = "" if result.returncode == 0 else lines[-1][:200]
        except (OSError, subprocess.SubprocessError) as err:
            _NAMESPACE_USABLE[name] = f"{type(err).__name__}: {err}"
        finally:
            remove_workdir(probe)
    if _NAMESPACE_USABLE[name]:
        return None, f"the kernel cannot run isolated here ({_NAMESPACE_USABLE[name]})"
    return owner, ""


_VIEW_USABLE: list[str] = []  # [] not probed yet; [""] usable; ["why not"] not usable


def _view_prefix(protect, writable, hide=()) -> list[str]:
    unshare, mount, shell = _which("unshare"), _which("mount"), _which("sh")
    steps = []
    for path in protect:
        q = shlex.quote(str(path))
        steps.append(f"{mount} --rbind {q} {q} && {mount} -o remount,bind,ro {q}")
    for path in writable:  # bound again on itself and made writable inside the read-only view
        q = shlex.quote(str(path))
        steps.append(f"{mount} --bind {q} {q} && {mount} -o remount,bind,rw {q}")
    for path in hide:  # an empty read-only folder over it
        steps.append(f"{mount} -t tmpfs -o ro,mode=0755,size=4k hidden {shlex.quote(str(path))}")
    script = " && ".join([*steps, 'exec "$@"'])
    return [unshare, "--mount", "--propagation", "private", shell, "-c", script, "sh"]


def readonly_view(protect, writable, hide=()):
    """(command prefix, "") that starts a program where ``protect`` is read-only, or (None, why).

    Folders of ``hide`` are covered by an empty read-only folder (the instructor sources, the
    submissions, the package the kernel has a copy of), except one that holds a folder of
    ``writable`` or of this Python (:func:`python_dirs`).

    Linux and root only: the prefix is ``unshare --mount`` (a private mount namespace, so
    nothing is visible outside it) running ``mount --rbind P P; mount -o remount,bind,ro P``
    for every protected folder, then ``mount --bind W W; mount -o remount,bind,rw W`` for
    every writable one (a folder inside a protected one stays writable), then the program.
    Probed once per process.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return None, "a read-only view needs Linux and root"
    if not all(_which(tool) for tool in ("unshare", "mount", "sh")):
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
    writable = [Path(w).resolve() for w in writable]
    needed = [*writable, *python_dirs()]
    hide = sorted({Path(h).resolve() for h in hide if Path(h).is_dir()}, key=len_of_path)
    hide = [h for h in hide if h != Path(h.anchor) and not any(_inside(n, [h]) for n in needed)]
    return _view_prefix(protect, writable, hide), ""


def len_of_path(path: Path) -> int:
    """Sort key: parents before their children."""
    return len(path.parts)


def make_workdir(owner=None) -> Path:
    """A fresh, private working directory for one submission's kernel.

    It holds ``home``, ``tmp``, ``channel`` (see :mod:`._channel`), ``work`` (the kernel's
    current folder, :func:`kernel_cwd`) and the connection file. Given ``owner`` = (uid,
    gid), the sub-folders are that user's, while the folder itself stays the grader's
    (0755): student code can write in them but cannot replace one of them (a ``channel``
    made a link to another folder would have the grader write and delete files there).
    """
    path = Path(tempfile.mkdtemp(prefix="vae_edu_grade_"))
    subs = [path / sub for sub in ("home", "tmp", "channel", "work", "ipc")]
    for sub in subs:
        sub.mkdir()
    if owner is not None:
        path.chmod(0o755)
        for sub in subs:
            os.chown(sub, *owner)  # POSIX only (owner is None elsewhere)
            sub.chmod(0o700)
    return path


def ipc_path(workdir: Path) -> Path:
    """The prefix of the kernel's Unix sockets (jupyter_client's ``ip`` for the ``ipc``
    transport): an isolated kernel has no network, not even the grader's loopback."""
    return Path(workdir) / "ipc" / "kernel"


def kernel_cwd(workdir: Path) -> Path:
    """The kernel's current folder in ``workdir``: relative paths of student code land here."""
    return Path(workdir) / "work"


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def kernel_env(workdir: Path, package_root=None) -> dict[str, str]:
    """The whole environment of a student kernel (nothing else is inherited).

    ``package_root``: the folder holding the ``vae_edu`` the kernel imports (default: this
    package's; the grader passes the kernel's copy, see :mod:`._kernel_package`).
    """
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
        # the kernel's vae_edu: its copy for the assignment, or the grader's own
        "PYTHONPATH": str(package_root or PACKAGE_DIR.parent),
    }
    for key in ("SYSTEMROOT", "COMSPEC", "PATHEXT", "WINDIR"):  # Windows needs these
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def limit_resources(memory_mb: int | None, *, die_with_grader: bool = False):
    """A ``preexec_fn`` setting the kernel's limits (POSIX only; None elsewhere).

    ``die_with_grader`` (Linux), for an isolated kernel: the started process is killed when
    the grader ends (``PR_SET_PDEATHSIG``; the kernel cannot watch the grader, which is
    outside its PID namespace, and ``unshare --kill-child`` ends the namespace with it), and
    the unprivileged user it switches to may run at most :data:`MAX_PROCESSES` processes
    and threads (a fork bomb; not enforced for root, so the switch itself is unaffected).
    """
    if os.name != "posix":
        return None
    prctl, grader = None, os.getpid()
    if die_with_grader and sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def apply():  # runs in the child, before the program starts
        import resource  # POSIX only

        if prctl is not None:
            prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
            if os.getppid() != grader:  # the grader ended before that
                os._exit(1)
        if memory_mb:
            limit = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if prctl is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))

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
