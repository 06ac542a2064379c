"""Real servers and a real browser for the browser tests, started and stopped by handle.

The browser tests open a notebook as a student would: in JupyterLab (``jupyter lab``) and as
a Voila app, both in Debian's headless Chromium driven by Playwright. This module holds the
pieces that do not depend on pytest fixtures:

* :func:`require_browser`: detect chromium and Playwright (:func:`browser_unavailable_reason`);
  skip with instructions on a student's machine, fail where ``VAE_EDU_REQUIRE_BROWSER=1``.
* :func:`isolated_jupyter_env`: every directory Jupyter, JupyterLab and IPython write to,
  inside one temporary folder, so a run leaves nothing behind in ``~``.
* :func:`start_jupyterlab` / :func:`start_voila`: a server on 127.0.0.1, a free port and a
  random token, in its own process group, its output in a log file.
* :meth:`Server.stop`: SIGTERM to the server's own process (so it shuts its kernels down),
  then SIGKILL to its process group and to any kernel still holding a connection file in
  this server's private temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium. Playwright never downloads a browser for these tests."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

REQUIRE_BROWSER_ENV = "VAE_EDU_REQUIRE_BROWSER"

ENABLE_HINT = (
    "enable the browser tests with `apt-get install -y chromium` (Debian's chromium at "
    f"{CHROMIUM}) and `pip install -r requirements.txt` (Playwright for Python); "
    "never `playwright install`"
)

SERVER_START_TIMEOUT_S = 120.0
"""Generous: two CPU cores shared with other jobs can make a cold server start slow."""


def playwright_installed() -> bool:
    """True if the ``playwright`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("playwright") is not None


def browser_unavailable_reason(chromium: str = CHROMIUM) -> str | None:
    """Says why the browser tests cannot run here, or returns None if they can.

    Args:
      chromium: path of the chromium executable to drive.

    Returns:
      None when the ``playwright`` package is importable and ``chromium`` is an executable
      file; otherwise a sentence naming what is missing.
    """
    missing = []
    if not playwright_installed():
        missing.append("the playwright package is not installed")
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        missing.append(f"chromium is not installed at {chromium}")
    return "; ".join(missing) if missing else None


def skip_or_fail(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skips a browser test with instructions, or fails it where a browser is required.

    Args:
      reason: what is missing, from :func:`browser_unavailable_reason`.
      environ: the environment; ``VAE_EDU_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns
        the skip into a failure with the same message, so CI cannot pass by skipping.

    Raises:
      pytest.fail.Exception or pytest.skip.Exception, always.
    """
    message = f"browser test not run: {reason}; {ENABLE_HINT}."
    if environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_browser(environ: Mapping[str, str] = os.environ) -> None:
    """Returns if chromium and Playwright are here; otherwise skips, or fails where required.

    Args:
      environ: the environment (see :func:`skip_or_fail`).

    Raises:
      pytest.skip.Exception or pytest.fail.Exception when :func:`browser_unavailable_reason`
      reports something missing.
    """
    reason = browser_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason, environ)


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_jupyter_env(base: Path) -> dict[str, str]:
    """The environment for a server whose every writable Jupyter directory lives in ``base``.

    JUPYTER_DATA_DIR is private too: the kernelspec and the ipywidgets labextension are
    still found through ``sys.prefix/share/jupyter`` (the tests check the extension loads).
    ``VAE_EDU_FIGURES`` sends figures a notebook saves to ``base/figures``. The announcements
    ("news") toast is disabled in the private config dir, exactly as
    ``jupyter labextension disable --level=user`` would write it (without its 5 s start-up).
    ``MPLBACKEND`` is removed: the test process sets Agg, but a student's kernel uses the
    inline backend, the one that draws ``plt.show()`` into an Output widget.

    Args:
      base: an empty temporary folder.

    Returns:
      A full environment mapping for :class:`subprocess.Popen`.
    """
    folders = {
        "JUPYTER_CONFIG_DIR": "jupyter-config",
        "JUPYTER_DATA_DIR": "jupyter-data",
        "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
        "TMPDIR": "tmp",
        "VAE_EDU_FIGURES": "figures",
    }
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    for name, folder in folders.items():
        path = base / folder
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    page_config = base / folders["JUPYTER_CONFIG_DIR"] / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    return env


@dataclass
class Server:
    """A server process started by this module.

    Attributes:
      name: "jupyterlab" or "voila", for messages.
      process: the handle of the server's own process (leader of its process group).
      url: base URL with a trailing slash, e.g. ``http://127.0.0.1:41234/``.
      token: the random token the server requires.
      log_path: file receiving the server's stdout and stderr.
      private_dir: the temporary folder holding this server's Jupyter directories; its
        kernels' connection files live there (JupyterLab: the runtime dir, Voila: TMPDIR).
    """

    name: str
    process: subprocess.Popen
    url: str
    token: str
    log_path: Path
    private_dir: Path

    def log_tail(self, n_lines: int = 40) -> str:
        """The last lines of the server log, for error messages."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no server log>"
        return "\n".join(lines[-n_lines:])

    def stop(self, timeout_s: float = 20.0) -> list[int]:
        """Stops the server and everything it started; safe to call twice.

        SIGTERM goes to the server's own process: JupyterLab and Voila both shut their
        kernels down on it. Then SIGKILL goes to the process group (anything the server
        forked) and to any kernel whose command line still names a connection file in
        this server's private folder (kernels run in sessions of their own).

        Args:
          timeout_s: how long to wait for a clean exit before killing.

        Returns:
          Process ids of kernels that survived the clean shutdown and had to be killed.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        leftovers = pids_mentioning(str(self.private_dir))
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leftovers


def pids_mentioning(text: str) -> list[int]:
    """Process ids (not this process) whose command line contains ``text``.

    Used with a private temporary path, so it only ever matches processes of this run.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _http_answers(url: str, headers: Mapping[str, str]) -> int | None:
    """The HTTP status of GET ``url``, or None if nothing answered."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _start(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    base: Path,
    env: dict[str, str],
    port: int,
    token: str,
    probe_path: str,
    probe_ok: tuple[int, ...] | None,
) -> Server:
    """Starts ``command`` in a new process group and waits until ``probe_path`` answers.

    Args:
      probe_ok: HTTP statuses meaning "up"; None means any HTTP answer at all.
    """
    log_path = base / f"{name}-server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it; closed below
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    server = Server(
        name=name,
        process=process,
        url=f"http://127.0.0.1:{port}/",
        token=token,
        log_path=log_path,
        private_dir=base,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    headers = {"Authorization": f"token {token}"}
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {process.returncode} before answering; "
                f"log {log_path}:\n{server.log_tail()}"
            )
        status = _http_answers(server.url + probe_path, headers)
        if status is not None and (probe_ok is None or status in probe_ok):
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"{name} did not answer on {server.url}{probe_path} within "
                f"{SERVER_START_TIMEOUT_S:.0f} s; log {log_path}:\n{server.log_tail()}"
            )
        time.sleep(0.25)


def start_jupyterlab(root_dir: Path, base: Path) -> Server:
    """Starts ``jupyter lab`` serving ``root_dir`` on 127.0.0.1 with a random token.

    Args:
      root_dir: the folder the server shows (holds the copied notebook).
      base: a temporary folder for the private Jupyter directories and the log.

    Returns:
      A running :class:`Server`; ``/api/status`` answered 200 with the token.
    """
    port, token = free_port(), secrets.token_hex(24)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return _start(
        "jupyterlab",
        command,
        cwd=root_dir,
        base=base,
        env=isolated_jupyter_env(base),
        port=port,
        token=token,
        probe_path="api/status",
        probe_ok=(200,),
    )


def start_voila(notebook: Path, base: Path) -> Server:
    """Starts ``voila notebook`` (a standalone app page) on 127.0.0.1 with a random token.

    Voila has no ``/api/status`` and rendering ``/`` would start a kernel, so "up" means
    any HTTP answer from a static path.

    Args:
      notebook: the notebook to serve, inside a temporary root folder.
      base: a temporary folder for the private Jupyter directories and the log.

    Returns:
      A running :class:`Server`.
    """
    port, token = free_port(), secrets.token_hex(24)
    command = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--Voila.token={token}",
        # A cell that raises shows its traceback on the page (quoted in failure messages).
        "--VoilaConfiguration.show_tracebacks=True",
        # Debug level with timestamps: the log is a test artifact, read when a test fails.
        "--Voila.log_level=DEBUG",
        "--Voila.log_format=[%(name)s %(asctime)s.%(msecs)03d]%(highlevel)s %(message)s",
        "--Voila.log_datefmt=%H:%M:%S",
    ]
    return _start(
        "voila",
        command,
        cwd=notebook.parent,
        base=base,
        env=isolated_jupyter_env(base),
        port=port,
        token=token,
        probe_path="voila/static/",
        probe_ok=None,
    )
