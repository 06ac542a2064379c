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

Besides calls, a request can ask for the fingerprints of what a student's function reaches
(``reach``, see :data:`REACH_CODE`), and can bind, for the duration of a call, some of the
student's other names to the grader's code (``inject``: the correct ``reparameterize`` while
``elbo_estimate`` is checked, so that one mistake costs one question).
"""

from __future__ import annotations

import json
import keyword
import os
import re
import secrets
import stat
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
    if "inject" in request:
        payload["inject"] = {k: _encode(v, arrays) for k, v in request["inject"].items()}
    with _create(channel / f"req-{nonce}.npz") as handle:
        np.savez(handle, **arrays)
    with _create(channel / f"req-{nonce}.json") as handle:
        handle.write(json.dumps(payload).encode("utf-8"))
    return nonce


# The channel folder is the kernel's (student code can write in it): the grader never
# follows a link there, when it writes a request (a new file, or an error) or reads an answer.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none (and no other user to fear)


def _create(path: Path):
    """A new file opened for writing: an existing file or link of that name is an error."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")


def open_regular(path: Path):
    """``(binary file, os.stat_result)`` of a regular file of the channel, checked on the
    opened file itself: a link (never followed), a FIFO (never waited on) or anything else
    swapped in after a check raises OSError; FileNotFoundError if there is none."""
    flags = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    handle = os.fdopen(os.open(path, flags), "rb")
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise OSError(f"{path.name} is not a regular file")
    return handle, info


def _read_limited(path: Path, limit: int) -> bytes:
    """The file's bytes (:func:`open_regular`), at most ``limit`` of them."""
    try:
        handle, info = open_regular(path)
    except FileNotFoundError:
        raise ChannelError("no answer from the kernel") from None
    except OSError:  # ELOOP (a symbolic link), or not a regular file
        raise ChannelError("the kernel's answer is not a regular file") from None
    with handle:
        if info.st_size > limit:
            raise ChannelError(f"the kernel's answer is too large ({info.st_size} bytes)")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ChannelError("the kernel's answer is too large")
    return data


def _check_stored(data: bytes) -> None:
    """The kernel writes ``numpy.savez`` archives: members stored, not compressed. A
    compressed member (which could inflate far beyond the file's size) or members larger in
    all than MAX_NPZ_BYTES are refused before anything is inflated."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ChannelError("unreadable arrays from the kernel (not a zip archive)") from None
    if len(members) > MAX_ITEMS:
        raise ChannelError("the kernel returned too many arrays")
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise ChannelError("the kernel's arrays are compressed (numpy.savez stores them)")
    if sum(m.file_size for m in members) > MAX_NPZ_BYTES:
        raise ChannelError("the kernel's arrays are too large")


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
    error.

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
    status = head.get("status")
    if status == "error":
        return {
            "status": "error",
            "ename": str(head.get("ename", "Exception"))[:100],
            "evalue": str(head.get("evalue", ""))[:1000],
        }
    if status != "ok":
        raise ChannelError("malformed answer from the kernel")
    arrays = {}
    npz_path = channel / f"res-{nonce}.npz"
    if head.get("has_arrays"):
        data = _read_limited(npz_path, MAX_NPZ_BYTES)
        _check_stored(data)
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
    return {"status": "ok", "value": value}


# ----------------------------------------------------------------------- kernel side

_SERVE = r"""
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

    answer = {"nonce": _nonce, "status": "ok"}
    MISSING = object()
    saved = {}
    try:
        op, name = request["op"], request["name"]
        if name not in _user_ns:
            raise NameError("name %r is not defined" % name)
        target = _user_ns[name]
        args = [decode(a) for a in request["args"]]
        # the grader's correct versions of the student's other answers, for this call only
        for other, node in request.get("inject", {}).items():
            saved[other] = _user_ns.get(other, MISSING)
            _user_ns[other] = decode(node)
        if op == "reach":
            value = _vae_edu_reach(target, name, request.get("skip", []), _user_ns)
        elif op == "get":
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
    finally:
        for other, old in saved.items():
            if old is MISSING:
                _user_ns.pop(other, None)
            else:
                _user_ns[other] = old
    answer["has_arrays"] = bool(out_arrays)
    if out_arrays:
        np.savez(os.path.join(channel, "res-" + _nonce + ".npz"), **out_arrays)
    with open(os.path.join(channel, "res-" + _nonce + ".json"), "w", encoding="utf-8") as f:
        json.dump(answer, f)
"""


#: Defines ``_vae_edu_fingerprint(code) -> int``: a hash of a code object that does not
#: depend on where the code was compiled or what its local variables are called (its
#: bytecode, the global and attribute names it uses, its non-text constants, nested code
#: recursively). A copy of a package function (a copied module file, pasted source) has
#: the fingerprint of the original. Run in the grader (for the references) and in the
#: kernel (for what a student's function reaches).
FINGERPRINT_CODE = r"""
def _vae_edu_fingerprint(code, _depth=0):
    import dis, hashlib, types

    def const(c):
        if isinstance(c, types.CodeType):
            return "code:%d" % _vae_edu_fingerprint(c, _depth + 1)
        if isinstance(c, (str, bytes)):
            return "text"
        if isinstance(c, tuple):
            return "(" + ",".join(const(x) for x in c) + ")"
        if isinstance(c, frozenset):
            return "{" + ",".join(sorted(const(x) for x in c)) + "}"
        return type(c).__name__ + ":" + repr(c)

    if _depth > 20:
        return 0
    # instructions, normalised for what the compiler decides from the surrounding file
    # (a method call on a name imported in the same file is LOAD_ATTR, elsewhere
    # LOAD_METHOD) and for the names of local variables
    parts = [str(code.co_argcount), str(code.co_kwonlyargcount)]
    ops = list(dis.get_instructions(code))
    index = {op.offset: i for i, op in enumerate(ops)}  # jumps by instruction, not byte
    for op in ops:
        name = "LOAD_ATTR" if op.opname == "LOAD_METHOD" else op.opname
        if op.opcode in dis.hasconst:
            arg = const(op.argval)
        elif op.opcode in dis.hasname:
            arg = str(op.argval)
        elif op.opcode in dis.haslocal or op.opcode in dis.hasfree:
            arg = str(op.arg)
        elif op.opcode in dis.hasjrel or op.opcode in dis.hasjabs:
            arg = str(index.get(op.argval, -1))
        else:
            arg = "" if op.arg is None else str(op.arg)
        parts.append(name + " " + arg)
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return int(digest[:15], 16)
"""

#: Defines ``_vae_edu_reach(target, name, skip, user_ns) -> {label: fingerprint}``: every
#: function the student's ``target`` can reach through the global names, module attributes,
#: closures and defaults its code uses (but for the notebook's names in ``skip``, which the
#: grader replaces by its own code while it checks ``target``). Student code (anything
#: compiled outside the Python installation and the package: notebook cells, a module file
#: the student wrote or copied) is followed; a package function is only fingerprinted (so
#: the package's own allowed helpers are never held against the student); the installation
#: (jax, numpy, ...) is ignored.
REACH_CODE = r"""
def _vae_edu_reach(target, name, skip=(), user_ns=None):
    import collections, collections.abc, functools, os, sys, sysconfig, types

    class Incomplete(Exception):  # the listing cannot cover the answer: it is refused
        pass

    package = os.path.dirname(os.path.abspath(sys.modules["vae_edu"].__file__)) + os.sep
    installed = {os.path.abspath(p) + os.sep for p in (sys.prefix, sys.base_prefix)}
    installed |= {os.path.abspath(p) + os.sep for p in sysconfig.get_paths().values()}
    found, seen = {}, set()

    def unwrap(obj):
        for _ in range(10):
            inner = obj.__dict__.get("__wrapped__") if hasattr(obj, "__dict__") else None
            if inner is None:
                try:  # jax.jit's wrapper keeps the function in __wrapped__ (a C type)
                    inner = object.__getattribute__(obj, "__wrapped__")
                except Exception:
                    inner = None
            if inner is None or inner is obj:
                return obj
            obj = inner
        return obj

    def names_of(code, out):
        out.update(code.co_names)
        out.update(code.co_freevars)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                names_of(c, out)
        return out

    def visit(obj, label, depth):
        try:
            inspect_one(obj, label, depth)
        except Incomplete:
            raise  # the listing would be incomplete: the grader refuses the answer
        except Exception:
            if depth == 0:
                raise  # the answer itself cannot be inspected: the grader refuses it

    def contents(obj):  # what a container, a partial, a method, a class or an instance holds
        if isinstance(obj, (dict, types.MappingProxyType)):
            return list(obj.values())
        if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            return list(obj)
        if isinstance(obj, functools.partial):
            return [obj.func, *obj.args, *obj.keywords.values()]
        if isinstance(obj, (types.MethodType, types.BuiltinMethodType)):
            owner = getattr(obj, "__self__", None)
            inner = getattr(obj, "__func__", None)
            return [v for v in (inner, owner) if not isinstance(v, types.ModuleType)]
        if isinstance(obj, (types.GeneratorType, collections.abc.Iterator)):
            raise Incomplete("an iterator (its items cannot be read without using them up)")
        if isinstance(obj, type):
            return list(vars(obj).values())
        held = []
        attributes = object.__getattribute__(obj, "__dict__") if hasattr(obj, "__dict__") else None
        if isinstance(attributes, dict):
            held += list(attributes.values())
        for cls in type(obj).__mro__:
            slots = vars(cls).get("__slots__", ())
            for slot in [slots] if isinstance(slots, str) else slots:
                try:
                    held.append(object.__getattribute__(obj, slot))
                except (AttributeError, TypeError):
                    pass
        if held or attributes is not None:
            held += list(vars(type(obj)).values())
        return held

    def too_much(what):  # fail closed: an answer the listing cannot cover is refused
        raise Incomplete("too much to inspect (%s)" % what)

    def nested_codes(code, label):  # functions defined inside: each one fingerprinted
        for i, c in enumerate(code.co_consts):
            if isinstance(c, types.CodeType):
                found["%s.<nested %d>" % (label, i)] = _vae_edu_fingerprint(c)
                nested_codes(c, "%s.<nested %d>" % (label, i))

    def inspect_one(obj, label, depth):
        obj = unwrap(obj)
        if id(obj) in seen:
            return
        if isinstance(obj, (str, bytes, int, float, complex, bool, type(None), types.ModuleType)):
            return
        if depth > 12 or len(found) > 5000:
            too_much("more than 12 levels or 5000 functions behind %s" % name)
        if not isinstance(obj, types.FunctionType):  # a dict, a list, a class, an instance
            seen.add(id(obj))
            held = contents(obj)
            plain = (str, bytes, int, float, complex, bool, type(None))
            held = [v for v in held if not isinstance(v, plain)]
            if len(held) > 2000:
                too_much("%d objects in %s" % (len(held), label))
            for i, value in enumerate(held):
                visit(value, "%s[%d]" % (label, i), depth + 1)
            return
        code = obj.__code__
        seen.add(id(obj))
        found[label[:90]] = _vae_edu_fingerprint(code)
        where = os.path.abspath(code.co_filename)
        if where.startswith(package) or any(where.startswith(p) for p in installed):
            return
        nested_codes(code, label[:90])
        for attribute, value in sorted(getattr(obj, "__dict__", {}).items()):
            visit(value, "%s.%s" % (label, attribute), depth + 1)
        space = obj.__globals__
        names = names_of(code, set())
        for n in sorted(names):
            if space is user_ns and n in skip:
                continue  # the grader binds its own code to this name for the check
            value = space.get(n)
            if isinstance(value, types.ModuleType):
                members = getattr(value, "__dict__", {})
                for m in sorted(names):
                    if m in members:
                        visit(members[m], "%s.%s" % (value.__name__, m), depth + 1)
            elif value is not None:
                visit(value, n, depth + 1)
        for i, cell in enumerate(obj.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            visit(value, "%s.<closure %d>" % (label, i), depth + 1)
        if isinstance(obj.__defaults__, tuple):
            for i, value in enumerate(obj.__defaults__):
                visit(value, "%s.<default %d>" % (label, i), depth + 1)

    visit(target, name, 0)
    return found
"""

#: Run in the student's kernel for every request, with ``_channel``, ``_nonce`` and
#: ``_user_ns`` (the notebook's namespace) defined. Its output is only ever numbers.
KERNEL_HELPER = FINGERPRINT_CODE + REACH_CODE + _SERVE
KERNEL_NAMES = ("_vae_edu_serve", "_vae_edu_reach", "_vae_edu_fingerprint")


def fingerprint(fn) -> int | None:
    """The fingerprint (see :data:`FINGERPRINT_CODE`) of a function, grader-side."""
    namespace: dict = {}
    exec(FINGERPRINT_CODE, namespace)  # noqa: S102 - the grader's own code
    while True:
        inner = getattr(fn, "__wrapped__", None)
        if inner is None or inner is fn:
            break
        fn = inner
    code = getattr(fn, "__code__", None)
    return None if code is None else namespace["_vae_edu_fingerprint"](code)


#: Run in the student's kernel before any student code: every forbidden function (and every
#: other name a ``vae_edu`` module binds to it, e.g. a re-export) is replaced by a wrapper
#: that appends its label to ``trace_path``, a file of the channel folder that only the
#: grader reads. No state of it is reachable from the package's attributes (switching it
#: off means getting at the wrapper's closure, which the static scan refuses); a wrapper
#: that cannot write its record raises, so the student's function fails rather than pass
#: unrecorded. The grader reads what each request appended, and treats a record that
#: shrank, vanished or holds anything but labels as tampering.
def tripwire_code(targets: list[str], trace_path) -> str:
    return f"""
def _vae_edu_install_tripwires(targets={targets!r}, trace_path={str(trace_path)!r}):
    import importlib, os, sys
    import vae_edu

    # bound now: patching os later does not reach the wrappers
    _open, _write, _close = os.open, os.write, os.close
    _flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    _close(_open(trace_path, _flags, 0o600))  # exists from now on: its removal shows

    def wrap(label, fn):
        record = (label + "\\n").encode()

        def wrapper(*args, **kwargs):
            fd = _open(trace_path, _flags, 0o600)
            try:
                if _write(fd, record) != len(record):
                    raise OSError("short write")
            finally:
                _close(fd)
            return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper

    originals = {{}}
    for target in targets:
        module_name, _, attr = target.rpartition(":")
        owner = importlib.import_module(module_name)
        path = attr.split(".")
        for part in path[:-1]:
            owner = getattr(owner, part)
        original = owner.__dict__[path[-1]]
        wrapped = wrap(target, original)
        originals[id(original)] = wrapped
        setattr(owner, path[-1], wrapped)
    for name, module in list(sys.modules.items()):  # re-exports of the same functions
        if name.split(".")[0] != "vae_edu" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in originals:
                setattr(module, attr, originals[id(value)])


_vae_edu_install_tripwires()
del _vae_edu_install_tripwires
"""
