"""MNIST from the IDX files shipped with the package: read, verify, scale, binarize, batch.

The MNIST database of handwritten digits (Yann LeCun, Corinna Cortes, Christopher J.C.
Burges; CC BY-SA 3.0) ships in ``vae_edu/datasets/mnist/`` as the four canonical IDX
files, gzip-compressed, so nothing here touches the network. See that directory's
README for provenance, checksums and label counts.

The pipeline a VAE notebook uses::

    train = load_mnist("train")                      # uint8 (60000, 28, 28), read-only
    probabilities = to_unit_interval(train.images)   # float32 in [0, 1]
    shuffle_key, binarize_key = jax.random.split(jax.random.fold_in(key, epoch))
    for step, index in enumerate(batch_iterator(shuffle_key, len(train.labels), 128)):
        x = binarize(jax.random.fold_in(binarize_key, step), probabilities[index])
        ...                                          # x: a fresh {0, 1} draw every epoch

IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian int32 *magic number*
``0x0000TTNN`` (two zero bytes, a type code ``TT`` such as 0x08 for uint8, the number of
dimensions ``NN``), then ``NN`` big-endian int32 sizes, then the data in C order.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu import _checks, threefry

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "SHIPPED_DIRECTORY",
    "ChecksumError",
    "IDXFormatError",
    "MNISTSplit",
    "batch_iterator",
    "binarization_noise",
    "binarize",
    "binarize_from_noise",
    "load_mnist",
    "num_batches",
    "prepare_images",
    "read_idx",
    "to_unit_interval",
]

#: The directory holding the copy of MNIST that ships with the package.
SHIPPED_DIRECTORY = Path(__file__).resolve().parent / "datasets" / "mnist"

#: The standard file names (without ``.gz``) of each split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: SHA-256 of the *uncompressed* bytes of the shipped files (as in the shipped README).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: The name of an optional checksum file in a user-supplied directory (``sha256sum`` output).
SHA256SUMS_NAME = "SHA256SUMS"

# IDX type code -> element type. Multi-byte types are stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class IDXFormatError(ValueError):
    """An IDX file (or a pair of them) is malformed: the message names the file and the problem."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected value.

    The message names the file and both digests.
    """


class MNISTSplit(NamedTuple):
    """One split of MNIST (or of a dataset in the same format).

    Attributes:
      images: (N, 28, 28) uint8 pixel intensities 0..255 (0 = background), read-only.
      labels: (N,) uint8 class labels (the digit 0..9 for MNIST), read-only.
    """

    images: np.ndarray
    labels: np.ndarray


# --------------------------------------------------------------------------------------
# IDX reading
# --------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    """(raw file bytes, IDX bytes): the IDX bytes are gunzipped when ``path`` ends in ``.gz``."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, raw
    try:
        return raw, _gunzip_idx(path, raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise IDXFormatError(f"{path}: corrupt gzip stream ({err})") from err


def _gunzip_idx(path: Path, raw: bytes) -> bytes:
    """Decompresses a gzipped IDX file, never inflating more than its IDX header announces.

    A few kilobytes of gzip can inflate to gigabytes, so the stream is inflated
    incrementally: first the IDX header (4-byte magic, 4 bytes per dimension), which fixes
    the exact size N of the file; then the gzip trailer's declared size (ISIZE, the last 4
    bytes: the uncompressed size mod 2^32) is compared with N *before* the payload is
    inflated; and the payload is inflated with a cap of N + 1 bytes, so a lying trailer
    cannot make it inflate more either. Several gzip members in a row are read as one
    stream (as ``gzip.decompress`` does).
    """
    declared = int.from_bytes(raw[-4:], "little") if len(raw) >= 18 else None
    out = bytearray()
    limit = None  # the file size the IDX header announces, once it is known
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing, CRC checked
    pending = raw
    while True:
        if limit is not None:
            want = limit + 1 - len(out)
        elif len(out) < 4:
            want = 4 - len(out)
        else:
            want = 4 + 4 * out[3] - len(out)
        chunk = inflater.decompress(pending, want)
        pending = inflater.unconsumed_tail
        out += chunk
        if limit is None and len(out) >= 4:
            if out[:2] != b"\x00\x00" or out[2] not in _IDX_DTYPES:
                _parse_idx(path, bytes(out))  # raises: wrong magic number
            header_size = 4 + 4 * out[3]
            if len(out) >= header_size:
                dims = tuple(int(d) for d in np.frombuffer(bytes(out[4:header_size]), ">u4"))
                dtype = _IDX_DTYPES[out[2]]
                needed = math.prod(dims) * dtype.itemsize
                limit = header_size + needed
                if declared is not None and limit < 2**32 and declared > limit:
                    raise IDXFormatError(
                        f"{path}: corrupt gzip stream, or dims disagree with the payload "
                        f"size: dims {dims} of {dtype.name} need {needed} bytes after the "
                        f"header but the gzip trailer declares {declared - header_size} "
                        f"({declared - limit} trailing bytes); refused before decompressing"
                    )
        if limit is not None and len(out) > limit:
            raise IDXFormatError(
                f"{path}: dims disagree with the payload size: the IDX header announces "
                f"{limit} bytes in all but the gzip stream holds more (trailing bytes); "
                "decompression stopped there"
            )
        if inflater.eof:
            rest = inflater.unused_data
            if rest[:2] == _GZIP_MAGIC:  # another gzip member follows
                inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                pending = rest
                continue
            if rest.strip(b"\x00"):
                raise IDXFormatError(
                    f"{path}: corrupt gzip stream ({len(rest)} bytes of garbage after its end)"
                )
            return bytes(out)
        if not chunk and not pending:
            raise IDXFormatError(
                f"{path}: corrupt gzip stream (it ends before its end-of-stream marker: truncated)"
            )


def _verify_sha256(path: Path, data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{path}: checksum mismatch: SHA-256 of the {what} is {actual}, expected "
            f"{expected}; the file is corrupt or not the one the checksum describes"
        )


def _parse_idx(path: Path, data: bytes) -> np.ndarray:
    """Parses IDX bytes into a read-only array in native byte order (no Python loops)."""
    if len(data) < 4:
        raise IDXFormatError(
            f"{path}: truncated header: {len(data)} bytes, "
            "an IDX file starts with a 4-byte magic number"
        )
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES:
        hint = (
            " (this looks like gzip data: give the file a .gz suffix)"
            if data[:2] == _GZIP_MAGIC
            else ""
        )
        known = ", ".join(f"0x{c:02X} {d.name}" for c, d in _IDX_DTYPES.items())
        raise IDXFormatError(
            f"{path}: wrong magic number 0x{magic:08X}{hint}; an IDX magic number is two zero "
            f"bytes, a type code ({known}) and the number of dimensions"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(
            f"{path}: truncated header: magic 0x{magic:08X} announces {ndim} dimensions "
            f"({header_size} header bytes) but the file has only {len(data)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    needed = math.prod(dims) * dtype.itemsize
    present = len(data) - header_size
    if present < needed:
        raise IDXFormatError(
            f"{path}: truncated payload: dims {dims} of {dtype.name} need {needed} bytes "
            f"after the header, only {present} are present"
        )
    if present > needed:
        raise IDXFormatError(
            f"{path}: dims disagree with the payload size: dims {dims} of {dtype.name} need "
            f"{needed} bytes after the header but {present} are present "
            f"({present - needed} trailing bytes)"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header_size).reshape(
        dims
    )
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def read_idx(path: str | os.PathLike, *, sha256: str | None = None) -> np.ndarray:
    """Reads one IDX file (gzip-compressed if its name ends in ``.gz``) into a numpy array.

    Layout: big-endian int32 magic ``0x0000TTNN`` (type code ``TT``: 0x08 uint8, 0x09 int8,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64; ``NN`` dimensions), then ``NN``
    big-endian int32 sizes d_1..d_NN, then exactly d_1 * ... * d_NN elements in C order.

    Args:
      path: the file.
      sha256: optional expected SHA-256 (hex) of the *uncompressed* IDX bytes.

    Returns:
      a read-only array of shape (d_1, ..., d_NN) in native byte order.

    Raises:
      FileNotFoundError: the file does not exist.
      IDXFormatError: corrupt gzip stream, wrong magic number, truncated header or payload,
        dims that disagree with the payload size (the message names the file).
      ChecksumError: ``sha256`` is given and differs from the file's.
      ValueError: ``sha256`` is not 64 hexadecimal digits.
    """
    path = Path(path)
    _, data = _read_bytes(path)
    if sha256 is not None:
        _verify_sha256(path, data, _normalize_digest(sha256, "sha256"), "uncompressed bytes")
    return _parse_idx(path, data)


# --------------------------------------------------------------------------------------
# Checksums for a directory
# --------------------------------------------------------------------------------------


def _normalize_digest(digest: Any, name: str) -> str:
    text = str(digest).strip().lower()
    if not _HEX64.fullmatch(text):
        raise ValueError(f"{name}: {digest!r} is not a SHA-256 digest (64 hexadecimal digits)")
    return text


def _read_sha256sums(path: Path) -> dict[str, str]:
    """Parses ``sha256sum`` output: lines ``<64 hex digits> <space or *><file name>``."""
    if not path.is_file():
        raise ValueError(
            f"{path} exists but is not a regular file (a directory?); a {SHA256SUMS_NAME} "
            "file holds sha256sum output: '<sha256 hex>  <file name>' lines"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text ({err}); a {SHA256SUMS_NAME} file holds sha256sum "
            "output: '<sha256 hex>  <file name>' lines"
        ) from None
    checksums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not _HEX64.fullmatch(parts[0].lower()):
            raise ValueError(
                f"{path}, line {number}: expected '<sha256 hex>  <file name>', got {line!r}"
            )
        checksums[Path(parts[1].strip().lstrip("*")).name] = parts[0].lower()
    return checksums


def _checksum_policy(
    directory: Path, checksums: Mapping[str, str] | None
) -> tuple[tuple[tuple[str, str], ...] | None, str]:
    """(hashable checksums or None, where they come from) for a directory; see load_mnist."""
    if directory == SHIPPED_DIRECTORY:
        # The shipped copy is always verified against the shipped digests: checksums= may
        # not replace them (it is for other directories).
        if checksums is not None and dict(checksums) != MNIST_SHA256:
            raise ValueError(
                f"checksums= does not apply to the shipped copy of MNIST ({directory}): it is "
                "always verified against vae_edu.data.MNIST_SHA256; pass checksums= only "
                "with another directory"
            )
        checksums, source = MNIST_SHA256, "vae_edu.data.MNIST_SHA256 (the shipped copy)"
    elif checksums is not None:
        source = "the checksums= argument"
    elif os.path.lexists(directory / SHA256SUMS_NAME):  # a directory there is refused, by name
        checksums, source = (
            _read_sha256sums(directory / SHA256SUMS_NAME),
            str(directory / SHA256SUMS_NAME),
        )
    else:
        return None, "none (unverified directory)"
    if not isinstance(checksums, Mapping):
        raise TypeError(
            f"checksums must map file names to SHA-256 hex digests, got {type(checksums).__name__}"
        )
    normalized = {str(n): _normalize_digest(d, f"checksum of {n}") for n, d in checksums.items()}
    return tuple(sorted(normalized.items())), source


# --------------------------------------------------------------------------------------
# Loading a split
# --------------------------------------------------------------------------------------


def _locate(directory: Path, stem: str, split: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    expected = ", ".join(f"{images}.gz, {labels}.gz" for images, labels in MNIST_FILES.values())
    raise FileNotFoundError(
        f"missing file for the {split!r} split: neither {stem}.gz nor {stem} is in {directory}; "
        f"an MNIST-format directory holds the four standard files {expected} "
        f"(gzip-compressed, or uncompressed without the .gz suffix)"
    )


def _read_checked(
    path: Path, stem: str, checksums: dict[str, str] | None, source: str
) -> np.ndarray:
    raw, data = _read_bytes(path)
    if checksums is not None:
        entries = [(stem, data, "uncompressed bytes")]
        if path.suffix == ".gz":
            entries.append((path.name, raw, "compressed file"))
        applicable = [
            (checksums[name], payload, what) for name, payload, what in entries if name in checksums
        ]
        if not applicable:
            raise ChecksumError(f"{path}: no checksum for {stem} (or {stem}.gz) in {source}")
        for expected, payload, what in applicable:
            _verify_sha256(path, payload, expected, what)
    return _parse_idx(path, data)


@functools.cache
def _load_split(
    directory: Path, split: str, checksums: tuple[tuple[str, str], ...] | None, source: str
) -> MNISTSplit:
    """Reads and checks one split; cached so each (directory, split, checksums) is read once."""
    lookup = dict(checksums) if checksums is not None else None
    image_stem, label_stem = MNIST_FILES[split]
    image_path, label_path = (
        _locate(directory, image_stem, split),
        _locate(directory, label_stem, split),
    )
    images = _read_checked(image_path, image_stem, lookup, source)
    labels = _read_checked(label_path, label_stem, lookup, source)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXFormatError(
            f"{image_path}: expected (N, 28, 28) uint8 images (magic 0x00000803), "
            f"got shape {images.shape} of {images.dtype}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(
            f"{label_path}: expected (N,) uint8 labels (magic 0x00000801), "
            f"got shape {labels.shape} of {labels.dtype}"
        )
    if images.shape[0] == 0:
        raise IDXFormatError(f"{image_path}: holds 0 images; an MNIST split needs at least one")
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            f"images/labels count mismatch: {image_path} holds {images.shape[0]} images "
            f"but {label_path} holds {labels.shape[0]} labels"
        )
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise IDXFormatError(
            f"{label_path}: label {int(labels[bad])} at index {bad} is not a digit 0..9"
        )
    return MNISTSplit(images, labels)


def load_mnist(
    split: str = "train",
    directory: str | os.PathLike | None = None,
    *,
    checksums: Mapping[str, str] | None = None,
) -> MNISTSplit:
    """Loads one split of MNIST, or of any dataset stored in the same four IDX files.

    The files are read once per process and cached in memory: repeated calls with the same
    (resolved) directory, split and checksums return the *same* ``MNISTSplit`` object, whose
    arrays are read-only so no caller can corrupt the cache. Make a copy to modify them.
    Files changed on disk after the first read are not seen until ``load_mnist.cache_clear()``.

    Checksums (always SHA-256):

    * ``directory=None`` (or the shipped directory itself): each file is verified against
      :data:`MNIST_SHA256`, the SHA-256 of its uncompressed bytes, always: ``checksums=``
      other than :data:`MNIST_SHA256` is refused for the shipped directory.
    * another directory, e.g. Fashion-MNIST under the same file names: the shipped digests
      do not apply. The files are verified against ``checksums`` if given, otherwise
      against a ``SHA256SUMS`` file (``sha256sum`` output) in that directory if there is
      one, otherwise they are read unverified (the IDX structure is still checked).
    * In a mapping or ``SHA256SUMS``, a key without ``.gz`` (``train-images-idx3-ubyte``)
      is the digest of the uncompressed bytes; a key with ``.gz`` is the digest of the
      compressed file as downloaded. Every file loaded must have at least one of the two.

    A directory may hold the files gzip-compressed (``<name>.gz``, preferred when both
    exist) or uncompressed (``<name>``). A gzipped file is never inflated beyond the size
    its IDX header announces: the gzip trailer's declared size is checked against it
    first (a small "gzip bomb" is refused before it is decompressed).

    Args:
      split: ``"train"`` (60000 examples for MNIST) or ``"test"`` (10000).
      directory: the folder holding the files; ``None`` means the copy shipped with vae_edu.
      checksums: optional mapping file name -> SHA-256 hex digest (see above).

    Returns:
      ``MNISTSplit(images, labels)``: images (N, 28, 28) uint8 in 0..255, labels (N,) uint8.

    Raises:
      ValueError: unknown split name, a malformed checksum mapping / SHA256SUMS file (one
        that is not UTF-8 text, or not a regular file), or ``checksums=`` for the shipped
        directory.
      FileNotFoundError: a file is missing (the message lists the expected file names).
      IDXFormatError: a malformed file (names the file and the problem: corrupt gzip
        stream, wrong magic number, truncated payload, dims that disagree with the size,
        images that are not (N, 28, 28) uint8, an images/labels count mismatch).
      ChecksumError: a checksum mismatch, or no checksum for a file when checksums apply.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(MNIST_FILES)}")
    folder = SHIPPED_DIRECTORY if directory is None else Path(directory).expanduser().resolve()
    frozen, source = _checksum_policy(folder, checksums)
    return _load_split(folder, split, frozen, source)


load_mnist.cache_clear = _load_split.cache_clear  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# From pixels to model inputs
# --------------------------------------------------------------------------------------


def _dtype_of(x) -> np.dtype:
    """The dtype of an array (numpy, JAX, tracer) or of what np.asarray makes of a list."""
    dtype = getattr(x, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(x).dtype


def to_unit_interval(images) -> jax.Array:
    """Scales integer pixel intensities to [0, 1]: x = pixels / 255.

    Args:
      images: (...) uint8 (or other unsigned integer) intensities 0..255, e.g. (N, 28, 28).

    Returns:
      (...) float32 in [0, 1], same shape, as a JAX array (works under ``jax.jit``).

    Raises:
      TypeError: ``images`` is not of an unsigned integer dtype. Scaling twice is a classic
        silent bug (everything ends up in [0, 1/255]), so float input is refused.
    """
    dtype = _dtype_of(images)
    if not np.issubdtype(dtype, np.unsignedinteger):
        raise TypeError(
            f"to_unit_interval expects unsigned integer pixels 0..255, got dtype {dtype}; "
            f"floating images are presumably scaled already"
        )
    if isinstance(images, jax.core.Tracer):  # under jit: the same table, gathered by XLA
        return jnp.asarray(_UNIT_INTERVAL)[images.astype(jnp.int32)]
    return jnp.asarray(_unit_interval(np.asarray(images)))


#: k / 255 for k = 0..255, each correctly rounded to float32 (computed once by NumPy). A
#: table lookup gives the same bits eagerly and under ``jit`` (XLA on the CPU may divide by
#: multiplying with the reciprocal, one ulp off for about half the values), and makes the
#: float32 images in one pass: 188 MB for the 60,000 training images, no temporary.
_UNIT_INTERVAL = np.arange(256, dtype=np.float32) / np.float32(255.0)


def _unit_interval(pixels: np.ndarray) -> np.ndarray:
    """pixels / 255 as float32 through :data:`_UNIT_INTERVAL` (pixels: unsigned 0..255)."""
    if pixels.dtype != np.uint8 and pixels.size and int(pixels.max()) > 255:
        raise ValueError(f"pixel intensities must lie in 0..255, got {int(pixels.max())}")
    return _UNIT_INTERVAL[pixels]


def binarize(key: jax.Array, probabilities) -> jax.Array:
    """Dynamic binarization: one fresh Bernoulli draw per pixel, x_i ~ Bernoulli(p_i).

    Sampled as x_i = 1[u_i < p_i] with u_i ~ Uniform(0, 1), so E[x_i] = p_i and
    Var[x_i] = p_i (1 - p_i): the uniforms are :func:`binarization_noise`, the comparison
    :func:`binarize_from_noise`, and the result is bit for bit
    ``jax.random.bernoulli(key, probabilities)``. Drawing a new binary image every time an
    example is used (with a new key each epoch) rather than thresholding once at 0.5 is the
    standard binarized-MNIST protocol for VAEs (Salakhutdinov & Murray 2008; Burda et al. 2016):
    it matches a Bernoulli decoder likelihood and acts as a regularizer.

    Args:
      key: a JAX PRNG key; the same key gives the same draw.
      probabilities: (...) floating values in [0, 1], e.g. ``to_unit_interval(images)``.

    Returns:
      (...) float32 array of 0.0 and 1.0, same shape. Works under ``jax.jit`` and
      ``jax.vmap``; it is not differentiable in ``probabilities`` (a discrete draw).

    Raises:
      TypeError: ``probabilities`` has an integer dtype (raw pixels: use to_unit_interval).
      ValueError: a concrete (non-traced) value lies outside [0, 1] or is NaN.
    """
    dtype = _dtype_of(probabilities)
    if not jnp.issubdtype(dtype, jnp.floating):  # bfloat16 included
        raise TypeError(
            f"binarize expects floating probabilities in [0, 1], got dtype {dtype}; "
            f"for raw pixels call to_unit_interval first"
        )
    if not isinstance(probabilities, jax.core.Tracer):  # values are unknown under jit
        values = np.asarray(probabilities)
        if values.size and not (np.min(values) >= 0.0 and np.max(values) <= 1.0):  # NaN fails too
            raise ValueError(
                f"binarize: probabilities must lie in [0, 1], "
                f"got min {np.min(values)} and max {np.max(values)}"
            )
    probabilities = jnp.asarray(probabilities)
    noise = binarization_noise(key, probabilities.shape, probabilities.dtype)
    return binarize_from_noise(noise, probabilities)


def binarization_noise(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """The uniforms u ~ Uniform[0, 1) that :func:`binarize` compares the probabilities with.

    Bit for bit ``jax.random.uniform(key, shape, dtype)``, which ``jax.random.bernoulli``
    draws. For float32 (and JAX's default Threefry keys) they are computed by
    :func:`vae_edu.threefry.uniform`, in one pass instead of JAX's rolled loop on the CPU;
    the training step draws a whole chunk's noise at once this way (``vae_edu.train``).

    Args:
      key: a JAX PRNG key.
      shape: the shape of the probabilities to binarize.
      dtype: their floating dtype (the uniforms have the same one, as in jax.random).

    Returns:
      (*shape) uniforms of ``dtype`` in [0, 1).
    """
    if np.dtype(dtype) == np.float32:
        return threefry.uniform(key, shape)
    return jax.random.uniform(key, shape, dtype)


def binarize_from_noise(noise: jax.Array, probabilities: jax.Array) -> jax.Array:
    """x_i = 1[u_i < p_i]: the binarization with given uniforms u (:func:`binarization_noise`).

    Args:
      noise: (...) uniforms in [0, 1).
      probabilities: (...) values in [0, 1], same shape (or broadcastable).

    Returns:
      (...) float32 array of 0.0 and 1.0.
    """
    return (noise < probabilities).astype(jnp.float32)


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


def num_batches(num_examples: int, batch_size: int, *, drop_remainder: bool = True) -> int:
    """The number of batches ``batch_iterator`` yields per epoch: floor or ceil of N / B."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def batch_iterator(
    key: jax.Array,
    num_examples_or_arrays,
    batch_size: int,
    *,
    drop_remainder: bool = True,
) -> Iterator[Any]:
    """One epoch of shuffled mini-batches.

    A permutation pi of {0, ..., N-1} is drawn uniformly from ``key``; batch b holds the
    examples pi[b B], ..., pi[(b+1) B - 1]. So one epoch visits every example at most once
    (exactly once with ``drop_remainder=False``, where the last batch may be smaller), the
    order is a deterministic function of the key, and a new key gives a new order.

    Args:
      key: a JAX PRNG key (use a new one each epoch, e.g. ``jax.random.fold_in(key, epoch)``).
      num_examples_or_arrays: either N, the number of examples, in which case the batches
        are integer index arrays; or an array, or a pytree of arrays (tuple, dict,
        ``MNISTSplit``...) sharing the leading axis N, in which case each batch is the
        same pytree indexed along that axis.
      batch_size: B, a positive integer.
      drop_remainder: drop the last N mod B examples so that every batch has exactly B
        (the default: fixed shapes avoid recompiling a jitted step); with ``False`` the
        last, smaller batch is kept.

    Returns:
      an iterator over ``num_batches(N, B, drop_remainder=...)`` batches: index arrays of
      shape (B,) (int64 numpy), or pytrees whose leaves have shape (B, ...).

    Raises:
      TypeError: B is not an integer.
      ValueError: N < 1, B < 1, leaves with different leading sizes (named with their
        shapes), or ``drop_remainder=True`` with B > N (the epoch would be empty).
    """
    if isinstance(num_examples_or_arrays, (int, np.integer)) and not isinstance(
        num_examples_or_arrays, bool
    ):
        num_examples, arrays = int(num_examples_or_arrays), None
    else:
        arrays = num_examples_or_arrays
        leaves = jax.tree.leaves(arrays)
        shapes = [np.shape(leaf) for leaf in leaves]
        if not leaves or any(len(s) == 0 for s in shapes):
            raise ValueError(
                f"batch_iterator needs arrays with a leading example axis, got shapes {shapes}"
            )
        if len({s[0] for s in shapes}) != 1:
            raise ValueError(
                f"batch_iterator: arrays disagree on the number of examples: shapes {shapes}"
            )
        num_examples = shapes[0][0]
    batch_size = _checks.count(batch_size, "batch_size")
    if num_examples < 1:
        raise ValueError(f"batch_iterator needs at least one example, got {num_examples}")
    if drop_remainder and batch_size > num_examples:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {num_examples} examples: "
            "with drop_remainder=True the epoch would be empty"
        )
    order = np.asarray(jax.random.permutation(key, num_examples)).astype(np.int64)
    count = num_batches(num_examples, batch_size, drop_remainder=drop_remainder)

    def batches():
        for b in range(count):
            index = order[b * batch_size : (b + 1) * batch_size]
            yield index if arrays is None else jax.tree.map(lambda leaf, i=index: leaf[i], arrays)

    return batches()


def prepare_images(images, input_dim: int = 784) -> jax.Array:
    """Images as a (N, input_dim) float32 device array in [0, 1].

    Args:
      images: uint8 (N, 28, 28) / (N, 784) pixels 0..255, or floats in [0, 1].

    Raises:
      ValueError: wrong number of pixels, or floats outside [0, 1].
    """
    arr = np.asarray(images)
    if arr.ndim < 2 or math.prod(arr.shape[1:]) != input_dim:
        raise ValueError(
            f"images have shape {arr.shape}; expected (N, {input_dim}) or "
            f"(N, 28, 28) for input_dim={input_dim}"
        )
    arr = arr.reshape(arr.shape[0], input_dim)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        # The same scaling as to_unit_interval; by NumPy, so that no XLA kernel has to be
        # compiled for every new array shape.
        return jnp.asarray(_unit_interval(arr))
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"images must be unsigned integers 0..255 or floats in [0, 1], got dtype {arr.dtype}"
        )
    if arr.size and not (arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(
            f"floating images must lie in [0, 1], got min {arr.min()} and max {arr.max()}"
        )
    return jnp.asarray(arr, jnp.float32)
