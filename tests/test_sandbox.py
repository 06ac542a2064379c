"""The sandbox of the grader's student kernels (vae_edu/assignments/_sandbox.py).

The isolated kernel (PID and mount namespaces, a chroot of read-only folders, setpriv to
``nobody``) exists for a grader running as root on Linux, which is what CI does; elsewhere
these tests skip, saying why. The byte-code checks run everywhere.
"""

import importlib.util
import marshal
import os
import py_compile
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vae_edu.assignments import DEFAULT_SOURCE_DIR, _kernel_package, _sandbox

ROOT_ON_LINUX = sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0
needs_isolation = pytest.mark.skipif(
    not ROOT_ON_LINUX, reason="the isolated kernel needs a grader running as root on Linux"
)


@pytest.fixture
def isolated(tmp_path):
    """run(code) -> CompletedProcess: ``python -c code`` in an isolated kernel's sandbox."""
    owner, why_not = _sandbox.isolation()
    assert owner is not None, why_not  # root on Linux: isolation must work (CI relies on it)
    workdir = _sandbox.make_workdir(owner)

    def run(code, *, hide=(), timeout=120):
        prefix = _sandbox.namespace_prefix(workdir, owner, hide)
        return subprocess.run(
            [*prefix, sys.executable, "-c", textwrap.dedent(code)],
            env=_sandbox.kernel_env(workdir),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.owner, run.workdir = owner, workdir
    yield run
    _sandbox.remove_workdir(workdir)


@needs_isolation
def test_student_code_runs_as_nobody_in_its_working_directory(isolated):
    result = isolated("import os, vae_edu; print(os.getuid(), os.getgid(), os.getcwd())")
    assert result.returncode == 0, result.stderr
    uid, gid, cwd = result.stdout.split()
    assert (int(uid), int(gid)) == isolated.owner
    assert Path(cwd) == _sandbox.kernel_cwd(isolated.workdir).resolve()


@needs_isolation
def test_a_file_only_root_may_read_cannot_be_read(isolated):
    secret = _sandbox.kernel_cwd(isolated.workdir) / "secret.txt"  # visible, but root's
    secret.write_text("the answers")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    result = isolated(f"open({str(secret)!r}).read()")
    assert result.returncode != 0 and "PermissionError" in result.stderr, result.stderr


@needs_isolation
def test_the_folders_the_grader_uses_cannot_be_replaced(isolated):
    """A ``channel`` made a link to another folder would have the grader (root) write and
    delete files there: the working directory itself is the grader's."""
    workdir = isolated.workdir
    code = f"""
    import os
    try:
        os.rename({str(workdir / "channel")!r}, {str(workdir / "old")!r})
        os.symlink("/etc", {str(workdir / "channel")!r})
        print("replaced")
    except PermissionError:
        print("refused")
    """
    result = isolated(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused"]
    assert (workdir / "channel").is_dir() and not (workdir / "channel").is_symlink()


@needs_isolation
def test_the_instructor_folders_and_the_rest_of_the_machine_are_not_there(isolated, tmp_path):
    outside = tmp_path / "grades"
    outside.mkdir()
    (outside / "alice_A1.json").write_text("{}")
    checks = {
        "package": _sandbox.PACKAGE_DIR,
        "sources": DEFAULT_SOURCE_DIR,
        "checkout": _sandbox.PACKAGE_DIR.parent / "notebooks",
        "grades": outside,
        "cwd": Path.cwd() / "tests",
    }
    code = "import os\n" + "".join(
        f"print({name!r}, os.path.exists({str(path)!r}))\n" for name, path in checks.items()
    )
    result = isolated(code)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split() for line in result.stdout.splitlines())
    assert seen == {
        "package": "True",
        "sources": "False",
        "checkout": "False",
        "grades": "False",
        "cwd": "False",
    }


@needs_isolation
def test_a_hidden_folder_inside_a_visible_one_is_empty(isolated):
    shared = Path("/usr/share")
    assert any(shared.iterdir())  # the host's is not empty
    result = isolated("import os; print(len(os.listdir('/usr/share')))", hide=[shared])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]


@needs_isolation
def test_the_package_and_python_cannot_be_written_nor_the_view_lifted(isolated):
    target = _sandbox.PACKAGE_DIR / "grading" / "__pycache__"
    code = f"""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    lifted = libc.umount2({str(_sandbox.PACKAGE_DIR).encode()!r}, 2) == 0
    for path in ({str(target)!r}, {str(Path(sys.prefix) / "poisoned")!r}):
        try:
            os.makedirs(path, exist_ok=True)
            open(os.path.join(path, "x.pyc"), "w").close()
            print("wrote", path)
        except OSError as err:
            print("refused", type(err).__name__)
    print("lifted", lifted)
    """
    result = isolated(code)
    assert result.returncode == 0, result.stderr
    assert "wrote" not in result.stdout and "lifted False" in result.stdout, result.stdout
    assert not (Path(sys.prefix) / "poisoned").exists()


@needs_isolation
def test_the_grader_is_neither_visible_nor_reachable(isolated, monkeypatch):
    grader = os.getpid()
    code = f"""
    import os, signal
    print("parent", os.getppid())
    print("grader", os.path.exists("/proc/{grader}"))
    print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    try:
        os.kill(1, signal.SIGKILL)
        print("kill signalled")
    except PermissionError:
        print("kill refused")
    try:
        open("/proc/1/environ").read()
        print("environ read")
    except PermissionError:
        print("environ refused")
    print("token", os.environ.get("INSTRUCTOR_LMS_TOKEN"))
    """
    monkeypatch.setenv("INSTRUCTOR_LMS_TOKEN", "secret-token")
    result = isolated(code)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["parent"] == "1"  # the namespace's first process, not the grader
    assert lines["grader"] == "False"
    assert len(eval(lines["pids"])) <= 3  # the shell, this process (and the listing)
    assert lines["kill"] == "refused"
    assert lines["environ"] == "refused"
    assert lines["token"] == "None"


@needs_isolation
def test_there_is_no_network_not_even_the_graders_loopback(isolated):
    with socket.create_server(("127.0.0.1", 0)) as server:  # the grader listens
        port = server.getsockname()[1]
        code = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=30).close()
            print("connected")
        except OSError as err:
            print("refused", type(err).__name__)
        """
        result = isolated(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "refused", result.stdout


@needs_isolation
def test_detached_processes_end_with_the_first_one(isolated):
    """A detached grandchild keeps the pipe open while it lives: reading to the end of the
    pipe returns only once it is gone (it would otherwise sleep for 10 minutes)."""
    code = """
    import os, subprocess, sys
    subprocess.Popen(["sleep", "600"], start_new_session=True, stdout=sys.stdout)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "600"])
        os._exit(0)
    print("started", flush=True)
    """
    result = isolated(code, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started"]


@needs_isolation
def test_an_isolated_process_ends_when_the_grader_is_killed(isolated):
    """Nothing in the namespace watches the grader: its death must end the namespace."""
    grader = f"""
    import subprocess, time
    from pathlib import Path
    from vae_edu.assignments import _sandbox
    workdir = Path({str(isolated.workdir)!r})
    subprocess.Popen(
        [*_sandbox.namespace_prefix(workdir, {isolated.owner!r}), "sh", "-c",
         "echo ready; exec sleep 600"],
        env=_sandbox.kernel_env(workdir),
        preexec_fn=_sandbox.limit_resources(None, die_with_grader=True),
        start_new_session=True,
    )
    print("started", flush=True)
    time.sleep(600)
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(grader)], stdout=subprocess.PIPE, text=True
    )
    # killed once the isolated process runs (not while unshare is still starting it)
    assert {process.stdout.readline().strip() for _ in range(2)} == {"started", "ready"}
    process.kill()
    # the isolated sleep holds the pipe: its end comes only once that process is gone
    assert process.communicate(timeout=120)[0] == ""


@needs_isolation
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's; exec follows at once
def test_the_limits_reach_the_isolated_process(isolated):
    workdir = isolated.workdir
    code = (
        "import resource as r; print(*(r.getrlimit(k)[0] for k in (r.RLIMIT_AS, r.RLIMIT_NPROC)))"
    )
    result = subprocess.run(
        [*_sandbox.namespace_prefix(workdir, isolated.owner), sys.executable, "-c", code],
        env=_sandbox.kernel_env(workdir),
        preexec_fn=_sandbox.limit_resources(2048, die_with_grader=True),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(2048 * 1024 * 1024), str(_sandbox.MAX_PROCESSES)]


@needs_isolation
def test_the_kernel_manager_starts_interrupts_and_stops_an_isolated_kernel(isolated):
    from jupyter_core.utils import run_sync

    workdir = isolated.workdir
    km = _sandbox.SandboxKernelManager(
        kernel_name="python3", connection_file=str(workdir / "kernel.json")
    )
    km.sandbox_owner = isolated.owner
    km.sandbox_prefix = _sandbox.namespace_prefix(workdir, isolated.owner)
    km.transport, km.ip = "ipc", str(_sandbox.ipc_path(workdir))  # no network inside
    run_sync(km.start_kernel)(
        cwd=str(workdir),
        env=_sandbox.kernel_env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)

        def run(code, timeout=120):
            outputs = []
            reply = kc.execute_interactive(
                code, timeout=timeout, output_hook=lambda msg: outputs.append(msg)
            )
            return reply["content"], outputs

        content, outputs = run("import os; print(os.getuid())")
        assert content["status"] == "ok"
        assert any(m["content"].get("text", "").strip() == str(isolated.owner[0]) for m in outputs)
        kc.execute("import time; print('sleeping', flush=True); time.sleep(600)")
        # once the cell sleeps, the interrupt ends it with KeyboardInterrupt
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
                break
        run_sync(km.interrupt_kernel)()
        reply = kc.get_shell_msg(timeout=120)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        for _ in range(5):  # ipykernel aborts requests that arrive just after an error
            content, _ = run("print('still here')")
            if content["status"] != "aborted":
                break
        assert content["status"] == "ok"
    finally:
        kc.stop_channels()
        run_sync(km.shutdown_kernel)(now=True)
    assert not run_sync(km.is_alive)()


# ----------------------------------------------------------------------- byte-code


def _pyc(source: Path, code, *, magic=importlib.util.MAGIC_NUMBER) -> Path:
    """Byte-code for ``source`` holding ``code``, with the header of the untouched source
    (Python would load it instead of the source)."""
    st = source.stat()
    header = struct.pack("<III", 0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    path = Path(importlib.util.cache_from_source(str(source)))
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(magic + header + marshal.dumps(code))
    return path


def test_byte_code_python_wrote_is_trusted_and_a_poisoned_one_is_not(tmp_path):
    source = tmp_path / "check.py"
    source.write_text("def passed(x):\n    return x == 1\n")
    py_compile.compile(str(source), doraise=True)
    assert _sandbox.untrusted_bytecode(source) == []
    poisoned = _pyc(source, compile("def passed(x):\n    return True\n", str(source), "exec"))
    assert _sandbox.untrusted_bytecode(source) == [poisoned]
    _pyc(source, b"", magic=b"\x00\x00\r\n")  # another Python's: ignored, as Python does
    assert _sandbox.untrusted_bytecode(source) == []


def test_poisoned_byte_code_changes_the_digest_and_is_removed(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "check.py"
    source.write_text("def passed(x):\n    return x == 1\n")
    monkeypatch.setattr(_sandbox, "PACKAGE_DIR", package)
    clean = _sandbox.source_digests([])
    poisoned = _pyc(source, compile("def passed(x):\n    return True\n", str(source), "exec"))
    dirty = _sandbox.source_digests([])
    assert dirty[str(source)] != clean[str(source)] and "byte-code" in dirty[str(source)]
    assert _sandbox.remove_untrusted_bytecode() == []
    assert not poisoned.exists()
    assert _sandbox.source_digests([]) == clean


def test_isolation_says_why_not_where_it_is_not_available():
    owner, why_not = _sandbox.isolation()
    if ROOT_ON_LINUX:
        assert owner is not None and why_not == "", why_not
    else:
        assert owner is None and why_not


def test_isolation_refuses_an_unknown_user():
    if not ROOT_ON_LINUX:
        pytest.skip("user names are looked up only where isolation is possible (root, Linux)")
    owner, why_not = _sandbox.isolation("no-such-user-vae-edu")
    assert owner is None and "no-such-user-vae-edu" in why_not


@needs_isolation
def test_an_isolated_kernel_imports_its_copy_of_the_package_at_the_packages_path(isolated):
    """The kernel's copy (no reference inside, see _kernel_package) is bound read-only over
    the package's own path: the kernel never sees the package's real kl.py."""
    package = _kernel_package.build("A1_kl_divergence", isolated.workdir / "package")
    code = textwrap.dedent(
        f"""
        import pathlib, vae_edu.kl
        print(pathlib.Path(vae_edu.__file__).parent == pathlib.Path({str(_sandbox.PACKAGE_DIR)!r}))
        text = (pathlib.Path({str(_sandbox.PACKAGE_DIR)!r}) / "kl.py").read_text()
        print("_reference_removed(" in text, "return _kl_diag_gaussians(" in text)
        try:
            vae_edu.kl.kl_diag_gaussians(0.0, 0.0)
        except RuntimeError as err:
            print("computes what A1_kl_divergence asks" in str(err))
        try:
            (pathlib.Path(vae_edu.__file__).parent / "kl.py").write_text("x = 1")
        except OSError as err:
            print(type(err).__name__)
        """
    )
    prefix = _sandbox.namespace_prefix(isolated.workdir, isolated.owner, package=package)
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code],
        env=_sandbox.kernel_env(isolated.workdir),
        cwd=isolated.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *seen, write_error = result.stdout.split()
    assert seen == ["True", "True", "False", "True"], result.stdout
    assert write_error in ("PermissionError", "OSError"), result.stdout  # read-only, not ours


def test_a_readonly_view_hides_the_folders_it_is_given(tmp_path):
    if not ROOT_ON_LINUX:
        pytest.skip("a read-only view needs root on Linux")
    protected, writable, hidden = (tmp_path / n for n in ("protected", "work", "hidden"))
    for folder in (protected, writable, hidden):
        folder.mkdir()
    (hidden / "kl.py").write_text("the reference\n")
    (protected / "notes.txt").write_text("readable\n")
    prefix, why_not = _sandbox.readonly_view([protected, hidden], [writable], [hidden])
    if prefix is None:
        pytest.skip(why_not)
    script = (
        f"ls -A {hidden}; cat {protected}/notes.txt; touch {writable}/ok; "
        f"touch {protected}/no 2>/dev/null || echo refused"
    )
    result = subprocess.run(
        [*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["readable", "refused"], (result.stdout, result.stderr)
    assert (writable / "ok").exists() and (hidden / "kl.py").exists()
