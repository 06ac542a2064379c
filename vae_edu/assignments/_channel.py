"""The narrow channel between the grader and a student's kernel.

The grader never runs a check, or computes an expected value, inside the student's kernel.
Instead, the grader's checks (in the grader's own process) call *proxies* of the student's
functions. Each call is one request:

1. the grader writes the inputs it chose to ``req-<nonce>.json`` (structure, scalars) and
   ``req-<nonce>.npz`` (arrays) in a channel folder of the submission's throw-away working
   directory;
2. it asks the kernel to run :data:`KERNEL_HELPER`, a fixed piece of code that looks the
   student's function up, calls it on those inputs (or takes its gradient), and writes the
   outputs to ``res-<nonce>.npz`` / ``res-<nonce>.json``;
3. the grader reads those two files and **validates** them: regular files below a size
   limit, ``numpy.load(allow_pickle=False)``, numeric dtypes only, a bounded JSON
   structure of lists, dicts and numbers. Nothing the kernel writes is ever executed or
   unpickled by the grader.

Whatever the student's code does in its kernel (patch ``numpy.allclose``, the checks,
IPython's exception handler or input transformers, the helper itself), the worst it can
achieve is to return other numbers, i.e. another answer, which the grader's checks then
judge. The only things that cross from the kernel to the grader are numbers.
"""

from __future__ import annotations

import json
import keyword
import re
import secrets
from pathlib import Path

import numpy as np

__all__ = [
    "ChannelError",
    "KERNEL_HELPER",
    "Opaque",
    "decode_result",
    "encode_request",
    "remote_exception",
]

MAX_JSON_BYTES = 1_000_000
MAX_NPZ_BYTES = 256 * 1024 * 1024
MAX_ITEMS = 10_000
MAX_DEPTH = 8
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats

# NamedTuples the grader may pass as inputs (rebuilt in the kernel from their fields).
ALLOWED_CLASSES = {"vae_edu.conjugate.LinearGaussianModel"}


class ChannelError(Exception):
    """The kernel's answer was missing or malformed (never the student's exception)."""


class RemoteError(Exception):
    """Base of the exceptions re-raised from a student's function (name kept)."""


_EXCEPTION_TYPES: dict[str, type] = {}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,60}$")


def remote_exception(ename: str, evalue: str) -> Exception:
    """An exception carrying the student's exception's name and message (but not its type)."""
    evalue = str(evalue)[:1000]
    if ename == "NotImplementedError":
        return NotImplementedError(evalue)
    if not isinstance(ename, str) or not _IDENTIFIER.match(ename) or keyword.iskeyword(ename):
        ename = "Exception"
    cls = _EXCEPTION_TYPES.get(ename)
    if cls is None:
        cls = _EXCEPTION_TYPES[ename] = type(ename, (RemoteError,), {})
    return cls(evalue)


class Opaque:
    """Stands for a value the kernel could not send as numbers (e.g. a string, a model)."""

    def __init__(self, type_name: str):
        self.type_name = str(type_name)[:60]

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


# ----------------------------------------------------------------------- grader side


def _encode(value, arrays: dict, depth: int = 0):
    import jax

    from vae_edu.grading import KernelFunction  # lazy: checks load after the SHA-256 check

    if depth > MAX_DEPTH:
        raise ValueError("input nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "scalar", "value": value}
    if isinstance(value, KernelFunction):
        return {
            "kind": "function",
            "code": value.code,
            "env": {k: _encode(v, arrays, depth + 1) for k, v in value.env.items()},
        }
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(jax.random.key_data(value))
        return {"kind": "key", "array": name, "impl": str(jax.random.key_impl(value))}
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"kind": "jax" if isinstance(value, jax.Array) else "numpy", "array": name}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        cls = f"{type(value).__module__}.{type(value).__qualname__}"
        if cls not in ALLOWED_CLASSES:
            raise ValueError(f"cannot send a {cls} to the kernel")
        return {
            "kind": "namedtuple",
            "class": cls,
            "items": [_encode(v, arrays, depth + 1) for v in value],
        }
    if isinstance(value, (tuple, list)):
        return {
            "kind": type(value).__name__,
            "items": [_encode(v, arrays, depth + 1) for v in value],
        }
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {
            "kind": "dict",
            "items": {k: _encode(v, arrays, depth + 1) for k, v in value.items()},
        }
    raise ValueError(f"cannot send a {type(value).__name__} to the kernel")


def encode_request(channel: Path, request: dict, args=()) -> str:
    """Writes a request to the channel folder; returns its nonce."""
    nonce = secrets.token_hex(8)
    arrays: dict = {}
    payload = dict(request, args=[_encode(a, arrays) for a in args])
    if "arg_lists" in request:
        payload["arg_lists"] = [[_encode(a, arrays) for a in lst] for lst in request["arg_lists"]]
    np.savez(channel / f"req-{nonce}.npz", **arrays)
    (channel / f"req-{nonce}.json").write_text(json.dumps(payload), encoding="utf-8")
    return nonce


def _read_limited(path: Path, limit: int) -> bytes:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ChannelError("no answer from the kernel") from None
    import stat

    if not stat.S_ISREG(info.st_mode):
        raise ChannelError("the kernel's answer is not a regular file")
    if info.st_size > limit:
        raise ChannelError(f"the kernel's answer is too large ({info.st_size} bytes)")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ChannelError("the kernel's answer is too large")
    return data


class _Budget:
    def __init__(self):
        self.items = 0

    def tick(self):
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ChannelError("the kernel's answer has too many parts")


def _decode(node, arrays, budget: _Budget, depth: int = 0):
    budget.tick()
    if depth > MAX_DEPTH or not isinstance(node, dict):
        raise ChannelError("malformed answer from the kernel")
    kind = node.get("kind")
    if kind == "scalar":
        value = node.get("value")
        if value is None or isinstance(value, (bool, int, float)):
            return value
        raise ChannelError("malformed scalar in the kernel's answer")
    if kind == "array":
        name = node.get("array")
        if not isinstance(name, str) or name not in arrays:
            raise ChannelError("malformed array in the kernel's answer")
        return arrays[name]
    if kind in ("tuple", "list"):
        items = node.get("items")
        if not isinstance(items, list):
            raise ChannelError("malformed sequence in the kernel's answer")
        out = [_decode(item, arrays, budget, depth + 1) for item in items]
        return tuple(out) if kind == "tuple" else out
    if kind == "dict":
        items = node.get("items")
        if not isinstance(items, dict):
            raise ChannelError("malformed dict in the kernel's answer")
        return {str(k)[:100]: _decode(v, arrays, budget, depth + 1) for k, v in items.items()}
    if kind == "opaque":
        return Opaque(node.get("type", "object"))
    raise ChannelError("malformed answer from the kernel")


def decode_result(channel: Path, nonce: str) -> dict:
    """Reads and validates the kernel's answer to request ``nonce``.

    Returns a dict with ``status`` ("ok" or "error"), ``value`` (numbers, numpy arrays of
    numeric dtype, tuples, lists, dicts, :class:`Opaque`), ``ename``/``evalue`` for an
    error, and ``reference`` (names of the package's reference functions the call reached).

    Raises:
      ChannelError: no answer, or an answer that is not what the helper writes.
    """
    raw = _read_limited(channel / f"res-{nonce}.json", MAX_JSON_BYTES)
    try:
        head = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError("the kernel's answer is not JSON") from None
    if not isinstance(head, dict) or head.get("nonce") != nonce:
        raise ChannelError("malformed answer from the kernel")
    reference = head.get("reference", [])
    if not isinstance(reference, list):
        reference = ["?"]
    reference = [str(r)[:100] for r in reference[:20]]
    status = head.get("status")
    if status == "error":
        return {
            "status": "error",
            "ename": str(head.get("ename", "Exception"))[:100],
            "evalue": str(head.get("evalue", ""))[:1000],
            "reference": reference,
        }
    if status != "ok":
        raise ChannelError("malformed answer from the kernel")
    arrays = {}
    npz_path = channel / f"res-{nonce}.npz"
    if head.get("has_arrays"):
        data = _read_limited(npz_path, MAX_NPZ_BYTES)
        import io

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                for name in npz.files[:MAX_ITEMS]:
                    array = npz[name]
                    if array.dtype.kind not in _NUMERIC_KINDS:
                        raise ChannelError(f"the kernel returned an array of dtype {array.dtype}")
                    arrays[name] = array
        except ChannelError:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable npz is the kernel's fault
            raise ChannelError(
                f"unreadable arrays from the kernel ({type(err).__name__})"
            ) from None
    value = _decode(head.get("value"), arrays, _Budget())
    return {"status": "ok", "value": value, "reference": reference}


# ----------------------------------------------------------------------- kernel side

#: Run in the student's kernel for every request, with ``_channel``, ``_nonce`` and
#: ``_user_ns`` (the notebook's namespace) defined. Its output is only ever numbers.
KERNEL_HELPER = r"""
def _vae_edu_serve(_channel, _nonce, _user_ns):
    import importlib, json, os, sys
    import numpy as np
    import jax, jax.numpy as jnp

    channel = os.path.abspath(_channel)
    with open(os.path.join(channel, "req-" + _nonce + ".json"), encoding="utf-8") as f:
        request = json.load(f)
    with np.load(os.path.join(channel, "req-" + _nonce + ".npz"), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}

    def decode(node):
        kind = node["kind"]
        if kind == "scalar":
            return node["value"]
        if kind == "jax":
            return jnp.asarray(arrays[node["array"]])
        if kind == "numpy":
            return np.asarray(arrays[node["array"]])
        if kind == "key":
            return jax.random.wrap_key_data(jnp.asarray(arrays[node["array"]]), impl=node["impl"])
        if kind == "tuple":
            return tuple(decode(i) for i in node["items"])
        if kind == "list":
            return [decode(i) for i in node["items"]]
        if kind == "dict":
            return {str(k): decode(v) for k, v in node["items"].items()}
        if kind == "namedtuple":
            module, _, name = node["class"].rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            return cls(*[decode(i) for i in node["items"]])
        if kind == "function":
            env = {"jax": jax, "jnp": jnp, "np": np}
            env.update({k: decode(v) for k, v in node["env"].items()})
            exec(node["code"], env)
            return env["f"]
        raise ValueError(kind)

    out_arrays = {}
    CALLABLE = object()

    def encode(value, depth=0):
        if value is CALLABLE:
            return {"kind": "opaque", "type": "<callable>"}
        if depth > 8:
            return {"kind": "opaque", "type": "deeply nested value"}
        if value is None or isinstance(value, (bool, int, float)):
            return {"kind": "scalar", "value": value}
        if isinstance(value, (jax.Array, np.ndarray, np.generic)):
            is_key = isinstance(value, jax.Array) and jax.dtypes.issubdtype(
                value.dtype, jax.dtypes.prng_key
            )
            if is_key:
                return {"kind": "opaque", "type": "PRNG key"}
            try:
                array = np.asarray(value)
            except Exception:
                return {"kind": "opaque", "type": type(value).__name__}
            if array.dtype.kind not in "biuf":
                return {"kind": "opaque", "type": "array of " + str(array.dtype)}
            name = "r%d" % len(out_arrays)
            out_arrays[name] = array
            return {"kind": "array", "array": name}
        if isinstance(value, tuple):
            return {"kind": "tuple", "items": [encode(v, depth + 1) for v in value]}
        if isinstance(value, list):
            return {"kind": "list", "items": [encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            items = {str(k): encode(v, depth + 1) for k, v in value.items()}
            return {"kind": "dict", "items": items}
        return {"kind": "opaque", "type": type(value).__name__}

    trace = getattr(sys.modules.get("vae_edu"), "_grader_trace", None)
    if isinstance(trace, list):
        del trace[:]
    answer = {"nonce": _nonce, "status": "ok"}
    try:
        op, name = request["op"], request["name"]
        if name not in _user_ns:
            raise NameError("name %r is not defined" % name)
        target = _user_ns[name]
        args = [decode(a) for a in request["args"]]
        if op == "get":
            value = CALLABLE if callable(target) else target
        elif op == "call":
            value = target(*args)
        elif op == "grad":
            def total(*a):
                return jnp.sum(jnp.asarray(target(*a)))
            value = jax.grad(total, argnums=request["argnum"])(*args)
        elif op == "many":
            lists = [[decode(a) for a in lst] for lst in request["arg_lists"]]
            fn = target
            try:
                fn = jax.jit(target, static_argnums=tuple(request.get("static", ())))
                first = fn(*lists[0])
            except Exception:
                fn = target
                first = fn(*lists[0])
            value = [first] + [fn(*a) for a in lists[1:]]
        elif op == "train":  # A3: the training run, with the student's step function
            from vae_edu import mlp_vae
            value = mlp_vae.run_training(target, *args)
        else:
            raise ValueError(op)
        answer["value"] = encode(value)
    except BaseException as err:
        answer = {"nonce": _nonce, "status": "error", "ename": type(err).__name__,
                  "evalue": str(err)[:2000]}
    if isinstance(trace, list):
        answer["reference"] = sorted(set(map(str, trace)))[:20]
    answer["has_arrays"] = bool(out_arrays)
    if out_arrays:
        np.savez(os.path.join(channel, "res-" + _nonce + ".npz"), **out_arrays)
    with open(os.path.join(channel, "res-" + _nonce + ".json"), "w", encoding="utf-8") as f:
        json.dump(answer, f)
"""


#: Run in the student's kernel before any student code: reports calls of the package's
#: reference functions made while the grader calls a student's function. Student code can
#: undo it only with dynamic imports or ``exec``, which the static scan refuses.
def tripwire_code(targets: list[str]) -> str:
    return f"""
def _vae_edu_install_tripwires(targets={targets!r}):
    import importlib, sys
    import vae_edu
    trace = vae_edu._grader_trace = []

    def wrap(label, fn):
        def wrapper(*args, **kwargs):
            trace.append(label)
            return fn(*args, **kwargs)
        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper

    for target in targets:
        module_name, _, attr = target.rpartition(":")
        owner = importlib.import_module(module_name)
        path = attr.split(".")
        for part in path[:-1]:
            owner = getattr(owner, part)
        setattr(owner, path[-1], wrap(target, getattr(owner, path[-1])))


_vae_edu_install_tripwires()
del _vae_edu_install_tripwires
"""
