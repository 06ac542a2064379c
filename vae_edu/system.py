"""What the operating system can tell about this process, on every platform.

Students run the course on Linux, macOS and Windows laptops. Two readings the notebooks,
the CLI and the benchmark print come from POSIX-only calls:

* peak resident memory, from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the module
  ``resource`` does not exist on Windows, and the unit differs: kilobytes on Linux,
  **bytes** on macOS (dividing by 1024 there would print 1024x too much);
* the 1-minute load average, from ``os.getloadavg`` (missing on Windows).

Both functions return ``None`` where the platform does not have the reading, and
:func:`describe_peak_memory` turns that into the sentence "not available on this platform".
Nothing here is imported at the top level, so ``import vae_edu`` works without ``resource``.

:func:`ensure_writable_folder` answers "can this process write into that folder?" by
trying (create and delete a small file), which works for every platform and user:
permission bits say nothing on Windows, nor for root, nor on a read-only mount.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["peak_memory_mib", "describe_peak_memory", "load_average", "ensure_writable_folder"]

# ru_maxrss units by platform (getrusage(2) on Linux, getrusage(2) on macOS/Darwin).
_MAXRSS_BYTES_PER_UNIT = {"darwin": 1}
_DEFAULT_MAXRSS_BYTES_PER_UNIT = 1024  # Linux and the BSDs report kilobytes


def peak_memory_mib(of: str = "self") -> float | None:
    """The peak resident memory in MiB, or ``None`` if not available.

    ``of="self"``: this process; ``of="children"``: the largest of its terminated and
    waited-for child processes (e.g. the kernel a notebook ran in, once it has exited).
    MiB = ru_maxrss * (bytes per unit) / 2**20, with bytes per unit 1 on macOS and 1024 on
    Linux. Returns ``None`` on platforms without the ``resource`` module (Windows).
    """
    if of not in ("self", "children"):
        raise ValueError(f"of must be 'self' or 'children', got {of!r}")
    try:
        import resource
    except ImportError:
        return None
    if resource is None:  # sys.modules["resource"] = None also means "not available"
        return None
    who = resource.RUSAGE_SELF if of == "self" else resource.RUSAGE_CHILDREN
    maxrss = resource.getrusage(who).ru_maxrss
    bytes_per_unit = _MAXRSS_BYTES_PER_UNIT.get(sys.platform, _DEFAULT_MAXRSS_BYTES_PER_UNIT)
    return maxrss * bytes_per_unit / 2**20


def describe_peak_memory() -> str:
    """``"peak resident memory of this process: 812 MiB"``, or that it is not available."""
    peak = peak_memory_mib()
    if peak is None:
        return "peak resident memory of this process: not available on this platform"
    return f"peak resident memory of this process: {peak:.0f} MiB"


def load_average() -> float | None:
    """The 1-minute load average, or ``None`` where the platform has none (Windows)."""
    getloadavg = getattr(os, "getloadavg", None)
    if getloadavg is None:
        return None
    try:
        return float(getloadavg()[0])
    except OSError:
        return None


def ensure_writable_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """Creates ``folder`` (and its parents) if missing, then proves it is writable.

    The proof is a real write: a temporary file is created in the folder and deleted
    again. Permission bits cannot answer the question portably (root ignores them, Windows
    has ACLs, a mount may be read-only), a probe can.

    Args:
      folder: the folder that will receive files.
      what: what the folder is for, used in the error message (e.g. "checkpoint folder").

    Returns:
      ``folder`` as a Path.

    Raises:
      OSError: the folder cannot be created (e.g. a parent is a regular file) or is not
        writable; the message names the folder, ``what`` and the reason.
    """
    path = Path(folder)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OSError(f"cannot write to the {what} {path}: {existing} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".vae_edu-write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise OSError(f"cannot write to the {what} {path}: {reason}") from err
    return path
