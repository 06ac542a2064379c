"""Tests for vae_edu.data: the IDX reader, checksums, loading, scaling, binarizing, batching.

Expected values never come from the module itself: digests and label counts are parsed
from the provenance README and recomputed with hashlib/np.bincount; IDX files are written
here byte by byte with struct; the pixel mean and standard deviation are the constants
0.1307 / 0.3081 published with the PyTorch MNIST example; binarize is checked against
E[x] = p with a standard-error tolerance.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_edu import data

README = (data.SHIPPED_DIRECTORY / "README.md").read_text()
NUM_EXAMPLES = {"train": 60000, "test": 10000}


# --------------------------------------------------------------------------------------
# helpers: an independent IDX writer
# --------------------------------------------------------------------------------------

IDX_TYPE_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array, *, magic=None, dims=None, payload=None) -> bytes:
    """IDX bytes of ``array``; ``magic``/``dims``/``payload`` override a part to corrupt it."""
    array = np.asarray(array)
    if magic is None:
        magic = (IDX_TYPE_CODES[array.dtype.type] << 8) | array.ndim
    dims = array.shape if dims is None else dims
    if payload is None:
        payload = array.astype(array.dtype.newbyteorder(">")).tobytes()
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path, content: bytes, *, compress=None):
    """Writes ``content``, gzip-compressed when the name ends in .gz (unless told)."""
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    return path


def write_split(directory, split, images, labels, *, compress=True):
    """A directory holding one split in the standard file names."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    image_name, label_name = data.MNIST_FILES[split]
    write(directory / f"{image_name}{suffix}", idx_bytes(images))
    write(directory / f"{label_name}{suffix}", idx_bytes(labels))
    return directory


def copy_shipped(directory, split="test"):
    directory.mkdir(parents=True, exist_ok=True)
    for name in data.MNIST_FILES[split]:
        shutil.copy(data.SHIPPED_DIRECTORY / f"{name}.gz", directory / f"{name}.gz")
    return directory


def tamper_labels(directory, split="test"):
    """Changes one label (0 -> 1 or 1 -> 0) and re-gzips: structurally valid, wrong data."""
    path = directory / f"{data.MNIST_FILES[split][1]}.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[8] ^= 1  # first label, right after magic and one dimension
    write(path, bytes(content))
    return path


def small_images(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def small_labels(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


# --------------------------------------------------------------------------------------
# provenance: the shipped files are the canonical MNIST
# --------------------------------------------------------------------------------------


def readme_sha256() -> dict[str, str]:
    return dict(
        (name, digest)
        for digest, name in re.findall(r"^\s+([0-9a-f]{64})\s+(\S+)$", README, flags=re.MULTILINE)
    )


def test_module_sha256_equal_readme():
    assert len(readme_sha256()) == 4
    assert data.MNIST_SHA256 == readme_sha256()


def test_shipped_files_match_readme_md5_and_sha256():
    """Recomputed with hashlib from gzip.open: independent of the module's reader."""
    md5 = dict(
        (name.removesuffix(".gz"), digest)
        for name, digest in re.findall(
            r"^\| (\S+\.gz) \| .* \| ([0-9a-f]{32}) \|$", README, flags=re.MULTILINE
        )
    )
    assert len(md5) == 4
    for name, sha in readme_sha256().items():
        with gzip.open(data.SHIPPED_DIRECTORY / f"{name}.gz", "rb") as f:
            content = f.read()
        assert hashlib.sha256(content).hexdigest() == sha, name
        assert hashlib.md5(content).hexdigest() == md5[name], name


# --------------------------------------------------------------------------------------
# load_mnist on the shipped copy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtypes_and_read_only(split):
    images, labels = data.load_mnist(split)
    n = NUM_EXAMPLES[split]
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)
    assert not images.flags.writeable and not labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        labels[0] = 1


@pytest.mark.parametrize("split", ["train", "test"])
def test_label_counts_match_readme(split):
    line = re.search(rf"{split}: ([\d ]+)[.;]", README.replace("\n", " ")).group(1)
    expected = [int(c) for c in line.split()]
    assert len(expected) == 10 and sum(expected) == NUM_EXAMPLES[split]
    np.testing.assert_array_equal(
        np.bincount(data.load_mnist(split).labels, minlength=10), expected
    )


def test_first_labels_are_the_well_known_digits():
    # The first training image is the famous "5", the first test image a "7".
    np.testing.assert_array_equal(data.load_mnist("train").labels[:5], [5, 0, 4, 1, 9])
    np.testing.assert_array_equal(data.load_mnist("test").labels[:5], [7, 2, 1, 0, 4])


def test_pixel_range_and_published_moments():
    images = data.load_mnist("train").images
    assert images.min() == 0 and images.max() == 255
    # Moments of x = pixel / 255 from the pixel histogram (exact, and fast on 47M pixels).
    counts = np.bincount(images.ravel(), minlength=256)
    x = np.arange(256) / 255.0
    mean = counts @ x / counts.sum()
    std = np.sqrt(counts @ (x - mean) ** 2 / counts.sum())
    # Normalize((0.1307,), (0.3081,)) of the PyTorch MNIST example: 4-decimal roundings.
    assert abs(mean - 0.1307) <= 5e-5
    assert abs(std - 0.3081) <= 5e-5


def test_cache_returns_the_same_object():
    first = data.load_mnist("test")
    assert data.load_mnist("test") is first
    assert data.load_mnist("test", directory=data.SHIPPED_DIRECTORY) is first
    assert data.load_mnist(directory=str(data.SHIPPED_DIRECTORY), split="test") is first
    assert data.load_mnist("train") is not first


def test_unknown_split():
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train'\]"):
        data.load_mnist("validation")


# --------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------


def test_checksum_of_shipped_copy_fires_when_the_digest_differs(monkeypatch):
    name = "t10k-images-idx3-ubyte"
    monkeypatch.setitem(data.MNIST_SHA256, name, "0" * 64)
    with pytest.raises(data.ChecksumError, match=rf"{name}\.gz: checksum mismatch.*expected 0000"):
        data.load_mnist("test")


def test_checksum_of_shipped_copy_fires_on_tampered_files(tmp_path, monkeypatch):
    tampered = tamper_labels(copy_shipped(tmp_path))
    monkeypatch.setattr(data, "SHIPPED_DIRECTORY", tmp_path.resolve())
    with pytest.raises(data.ChecksumError, match=re.escape(str(tampered))):
        data.load_mnist("test")


def test_custom_directory_with_checksums(tmp_path):
    copy = data.load_mnist("test", copy_shipped(tmp_path / "clean"), checksums=data.MNIST_SHA256)
    shipped = data.load_mnist("test")
    assert copy is not shipped
    np.testing.assert_array_equal(copy.images, shipped.images)
    np.testing.assert_array_equal(copy.labels, shipped.labels)
    tampered = tmp_path / "tampered"
    tamper_labels(copy_shipped(tampered))
    with pytest.raises(data.ChecksumError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        data.load_mnist("test", tampered, checksums=data.MNIST_SHA256)
    # Without checksums a custom directory is read unverified (the IDX structure is checked).
    labels = data.load_mnist("test", tampered).labels
    assert labels[0] != shipped.labels[0] and np.array_equal(labels[1:], shipped.labels[1:])


def test_cache_clear_rereads_changed_files(tmp_path):
    write_split(tmp_path, "test", small_images(3), small_labels(3))
    first = data.load_mnist("test", tmp_path)
    write_split(tmp_path, "test", small_images(4, seed=1), small_labels(4, seed=1))
    assert data.load_mnist("test", tmp_path) is first  # read once: the change is not seen
    data.load_mnist.cache_clear()
    np.testing.assert_array_equal(data.load_mnist("test", tmp_path).labels, small_labels(4, seed=1))


def test_checksums_of_compressed_files_and_sha256sums_file(tmp_path):
    copy_shipped(tmp_path)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.gz")}
    assert data.load_mnist("test", tmp_path, checksums=digests).labels.shape == (10000,)
    (tmp_path / "SHA256SUMS").write_text(
        "# made with sha256sum\n" + "".join(f"{d.upper()} *./{n}\n" for n, d in digests.items())
    )
    assert data.load_mnist("test", tmp_path).labels.shape == (10000,)
    (tmp_path / "SHA256SUMS").write_text("".join(f"{'f' * 64}  {n}\n" for n in digests))
    with pytest.raises(data.ChecksumError, match="SHA-256 of the compressed file"):
        data.load_mnist("test", tmp_path)


def test_checksum_mapping_without_an_entry_for_a_file(tmp_path):
    copy_shipped(tmp_path)
    partial = {"t10k-images-idx3-ubyte": data.MNIST_SHA256["t10k-images-idx3-ubyte"]}
    with pytest.raises(
        data.ChecksumError, match="no checksum for t10k-labels-idx1-ubyte.*checksums= argument"
    ):
        data.load_mnist("test", tmp_path, checksums=partial)


def test_malformed_checksums(tmp_path):
    copy_shipped(tmp_path)
    with pytest.raises(ValueError, match="not a SHA-256 digest"):
        data.load_mnist("test", tmp_path, checksums={"t10k-images-idx3-ubyte": "abc"})
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(ValueError, match="SHA256SUMS, line 1"):
        data.load_mnist("test", tmp_path)


def test_read_idx_checksum(tmp_path):
    content = idx_bytes(small_labels())
    path = write(tmp_path / "labels.gz", content)
    np.testing.assert_array_equal(
        data.read_idx(path, sha256=hashlib.sha256(content).hexdigest()), small_labels()
    )
    with pytest.raises(data.ChecksumError, match=rf"{re.escape(str(path))}: checksum mismatch"):
        data.read_idx(path, sha256="1" * 64)


# --------------------------------------------------------------------------------------
# the IDX reader on files written here
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    result = data.read_idx(write(tmp_path / f"array{suffix}", idx_bytes(array)))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert not result.flags.writeable
    np.testing.assert_array_equal(result, array)


def test_read_idx_shipped_labels_header_by_hand():
    path = data.SHIPPED_DIRECTORY / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    assert struct.unpack(">II", raw[:8]) == (0x00000801, 10000)
    np.testing.assert_array_equal(data.read_idx(path), list(raw[8:]))


BAD_IDX = {
    "wrong magic": (idx_bytes(small_labels(), magic=0x00010801), "wrong magic number 0x00010801"),
    "unknown type": (idx_bytes(small_labels(), magic=0x00000701), "wrong magic number 0x00000701"),
    "truncated header": (b"\x00\x00", "truncated header"),
    "missing dims": (struct.pack(">I", 0x00000803) + b"\x00\x00\x00\x05", "truncated header"),
    "truncated payload": (
        idx_bytes(small_images())[:-7],
        r"truncated payload.*need 3920 bytes.*only 3913",
    ),
    "dims > size": (
        idx_bytes(small_images(), dims=(6, 28, 28)),
        r"truncated payload: dims \(6, 28, 28\)",
    ),
    "dims < size": (
        idx_bytes(small_images(), dims=(4, 28, 28)),
        r"dims disagree with the payload size.*784 trailing",
    ),
}


@pytest.mark.parametrize("case", BAD_IDX)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_names_file_and_problem(tmp_path, case, suffix):
    content, problem = BAD_IDX[case]
    path = write(tmp_path / f"bad-file{suffix}", content)
    with pytest.raises(data.IDXFormatError, match=rf"{re.escape(str(path))}: .*{problem}"):
        data.read_idx(path)


def test_gzip_data_without_gz_suffix(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(small_labels()), compress=True)
    with pytest.raises(data.IDXFormatError, match="wrong magic number.*looks like gzip"):
        data.read_idx(path)


def corrupt_gzip(content):
    compressed = bytearray(gzip.compress(content, mtime=0))
    return {
        "cut short": bytes(compressed[: len(compressed) // 2]),
        "flipped byte": bytes(compressed[:20])
        + bytes([compressed[20] ^ 0xFF])
        + bytes(compressed[21:]),
        "not gzip": content,
    }


@pytest.mark.parametrize("case", ["cut short", "flipped byte", "not gzip"])
def test_corrupt_gzip_stream(tmp_path, case):
    content = idx_bytes(small_images(20))
    path = tmp_path / "images.gz"
    path.write_bytes(corrupt_gzip(content)[case])
    with pytest.raises(data.IDXFormatError, match=rf"{re.escape(str(path))}: corrupt gzip stream"):
        data.read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.read_idx(tmp_path / "nothing.gz")


# --------------------------------------------------------------------------------------
# load_mnist on directories written here
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_load_custom_directory(tmp_path, compress):
    write_split(tmp_path, "train", small_images(7), small_labels(7), compress=compress)
    images, labels = data.load_mnist("train", tmp_path)
    np.testing.assert_array_equal(images, small_images(7))
    np.testing.assert_array_equal(labels, small_labels(7))
    assert not images.flags.writeable


def test_missing_files_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"train-images-idx3-ubyte\.gz.*t10k-labels-idx1-ubyte\.gz"
    ):
        data.load_mnist("train", tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(small_images()))
    with pytest.raises(
        FileNotFoundError, match=r"neither t10k-labels-idx1-ubyte\.gz nor t10k-labels-idx1-ubyte"
    ):
        data.load_mnist("test", tmp_path)


def test_images_labels_count_mismatch(tmp_path):
    write_split(tmp_path, "test", small_images(5), small_labels(4))
    with pytest.raises(
        data.IDXFormatError,
        match=r"count mismatch: .*t10k-images-idx3-ubyte\.gz holds 5 images "
        r"but .*t10k-labels-idx1-ubyte\.gz holds 4 labels",
    ):
        data.load_mnist("test", tmp_path)


@pytest.mark.parametrize(
    "images, labels, problem",
    [
        (
            np.zeros((3, 27, 27), np.uint8),
            np.zeros(3, np.uint8),
            r"images-idx3-ubyte\.gz: expected \(N, 28, 28\) uint8",
        ),
        (
            np.zeros((3, 784), np.uint8),
            np.zeros(3, np.uint8),
            r"images-idx3-ubyte\.gz: expected \(N, 28, 28\) uint8",
        ),
        (
            np.zeros((3, 28, 28), np.float32),
            np.zeros(3, np.uint8),
            r"got shape \(3, 28, 28\) of float32",
        ),
        (
            np.zeros((3, 28, 28), np.uint8),
            np.zeros((3, 1), np.uint8),
            r"labels-idx1-ubyte\.gz: expected \(N,\) uint8",
        ),
    ],
)
def test_wrong_array_kinds(tmp_path, images, labels, problem):
    write_split(tmp_path, "train", images, labels)
    with pytest.raises(data.IDXFormatError, match=problem):
        data.load_mnist("train", tmp_path)


# --------------------------------------------------------------------------------------
# to_unit_interval and binarize
# --------------------------------------------------------------------------------------


def test_to_unit_interval_values_range_and_jit():
    pixels = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(data.to_unit_interval(pixels), [[0.0, 0.2, 1.0]], rtol=1e-7)
    images = data.load_mnist("test").images
    scaled = data.to_unit_interval(images)
    assert scaled.shape == images.shape and scaled.dtype == jnp.float32
    assert float(scaled.min()) == 0.0 and float(scaled.max()) == 1.0
    np.testing.assert_array_equal(jax.jit(data.to_unit_interval)(images[:3]), scaled[:3])


def test_to_unit_interval_refuses_float_input():
    with pytest.raises(TypeError, match="got dtype float32.*scaled already"):
        data.to_unit_interval(np.zeros(3, np.float32))


PROBABILITIES = np.array([0.0, 0.001, 0.1, 0.3, 0.5, 0.77, 0.999, 1.0], dtype=np.float32)


def test_binarize_mean_matches_probabilities_within_5_standard_errors():
    n = 20000
    keys = jax.random.split(jax.random.key(0), n)
    draws = np.asarray(jax.vmap(data.binarize, in_axes=(0, None))(keys, PROBABILITIES))
    assert draws.dtype == np.float32 and draws.shape == (n, PROBABILITIES.size)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    p = PROBABILITIES.astype(np.float64)
    std_error = np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - p), 5 * std_error + 1e-12)
    # p = 0 and p = 1 are deterministic.
    assert draws[:, 0].max() == 0.0 and draws[:, -1].min() == 1.0


def test_binarize_same_key_same_draw_new_key_new_draw():
    probabilities = data.to_unit_interval(data.load_mnist("test").images[:4])
    key = jax.random.key(3)
    first = data.binarize(key, probabilities)
    assert first.shape == (4, 28, 28)
    np.testing.assert_array_equal(data.binarize(key, probabilities), first)
    np.testing.assert_array_equal(jax.jit(data.binarize)(key, probabilities), first)
    assert not np.array_equal(data.binarize(jax.random.key(4), probabilities), first)
    # Dynamic, not a fixed threshold: the gray pixels differ between draws.
    gray = (np.asarray(probabilities) > 0.2) & (np.asarray(probabilities) < 0.8)
    assert gray.sum() > 100


def test_binarize_accepts_legacy_keys_and_lists():
    np.testing.assert_array_equal(data.binarize(jax.random.PRNGKey(0), [0.0, 1.0]), [0.0, 1.0])


@pytest.mark.parametrize(
    "bad, error, problem",
    [
        (np.array([0, 255], np.uint8), TypeError, "got dtype uint8.*to_unit_interval"),
        (np.array([0.5, 1.5], np.float32), ValueError, r"\[0, 1\].*max 1\.5"),
        (np.array([-0.1, 0.5], np.float32), ValueError, r"\[0, 1\].*min -0\.1"),
        (np.array([np.nan, 0.5], np.float32), ValueError, r"\[0, 1\]"),
    ],
)
def test_binarize_rejects_bad_probabilities(bad, error, problem):
    with pytest.raises(error, match=problem):
        data.binarize(jax.random.key(0), bad)


# --------------------------------------------------------------------------------------
# batch_iterator
# --------------------------------------------------------------------------------------


def test_every_example_exactly_once_per_epoch():
    batches = list(data.batch_iterator(jax.random.key(0), 103, 10, drop_remainder=False))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert len(batches) == data.num_batches(103, 10, drop_remainder=False)
    everything = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(everything), np.arange(103))
    assert not np.array_equal(everything, np.arange(103))  # shuffled


def test_drop_remainder_keeps_full_batches_of_distinct_examples():
    batches = list(data.batch_iterator(jax.random.key(0), 103, 10))
    assert [len(b) for b in batches] == [10] * 10 == [10] * data.num_batches(103, 10)
    everything = np.concatenate(batches)
    assert len(np.unique(everything)) == 100 and everything.min() >= 0 and everything.max() < 103


def test_deterministic_per_key_and_different_across_keys():
    def epoch(seed):
        return np.concatenate(
            list(data.batch_iterator(jax.random.key(seed), 50, 7, drop_remainder=False))
        )

    np.testing.assert_array_equal(epoch(1), epoch(1))
    assert not np.array_equal(epoch(1), epoch(2))


def test_batches_of_arrays_keep_images_and_labels_together():
    split = data.load_mnist("test")
    key = jax.random.key(5)
    batches = list(data.batch_iterator(key, split, 3000, drop_remainder=False))
    indices = list(data.batch_iterator(key, len(split.labels), 3000, drop_remainder=False))
    assert [b.images.shape for b in batches] == [(3000, 28, 28)] * 3 + [(1000, 28, 28)]
    assert [b.labels.shape for b in batches] == [(3000,)] * 3 + [(1000,)]
    for batch, index in zip(batches, indices, strict=True):
        assert isinstance(batch, data.MNISTSplit)
        np.testing.assert_array_equal(batch.images, split.images[index])
        np.testing.assert_array_equal(batch.labels, split.labels[index])


def test_batches_of_a_dict_and_of_one_jax_array():
    x = jnp.arange(12.0).reshape(6, 2)
    (only,) = data.batch_iterator(jax.random.key(0), {"x": x, "y": np.arange(6)}, 6)
    np.testing.assert_array_equal(only["x"], x[only["y"]])
    (single,) = data.batch_iterator(jax.random.key(0), x, 6)
    assert single.shape == (6, 2)


@pytest.mark.parametrize(
    "arrays, batch_size, kwargs, error, problem",
    [
        (
            (np.zeros(5), np.zeros(4)),
            2,
            {},
            ValueError,
            r"disagree on the number of examples: shapes \[\(5,\), \(4,\)\]",
        ),
        (10, 0, {}, ValueError, "batch_size must be an integer >= 1, got 0"),
        (10, 2.5, {}, TypeError, "batch_size must be an integer >= 1, got float 2.5"),
        (0, 1, {}, ValueError, "at least one example"),
        (10, 11, {}, ValueError, "epoch would be empty"),
        (np.float32(3.0), 1, {}, ValueError, "leading example axis"),
    ],
)
def test_batch_iterator_errors_are_raised_at_the_call(arrays, batch_size, kwargs, error, problem):
    with pytest.raises(error, match=problem):
        data.batch_iterator(jax.random.key(0), arrays, batch_size, **kwargs)


def test_batch_size_larger_than_dataset_without_drop_remainder():
    (only,) = data.batch_iterator(jax.random.key(0), 4, 10, drop_remainder=False)
    np.testing.assert_array_equal(np.sort(only), np.arange(4))


# ------------------------------------------------------- issue 16: checksums, gzip bombs
def test_sha256sums_that_is_a_directory_is_refused(tmp_path):
    write_split(tmp_path, "test", small_images(3), small_labels(3))
    (tmp_path / "SHA256SUMS").mkdir()
    with pytest.raises(ValueError, match=r"SHA256SUMS exists but is not a regular file"):
        data.load_mnist("test", tmp_path)


def test_sha256sums_that_is_not_utf8_is_refused(tmp_path):
    write_split(tmp_path, "test", small_images(3), small_labels(3))
    (tmp_path / "SHA256SUMS").write_bytes(b"\xff\xfe" + b"0" * 64 + b"  name\n")
    with pytest.raises(ValueError, match=r"SHA256SUMS is not UTF-8 text"):
        data.load_mnist("test", tmp_path)


def test_checksums_argument_cannot_override_the_shipped_digests():
    fake = {name: "0" * 64 for name in data.MNIST_SHA256}
    with pytest.raises(ValueError, match=r"checksums= does not apply to the shipped copy"):
        data.load_mnist("test", checksums=fake)
    with pytest.raises(ValueError, match=r"always verified against vae_edu.data.MNIST_SHA256"):
        data.load_mnist("test", data.SHIPPED_DIRECTORY, checksums={})
    # The shipped digests themselves are accepted (they are what is used anyway).
    assert data.load_mnist("test", checksums=dict(data.MNIST_SHA256)).labels.shape == (10000,)


def _bomb(tmp_path, *, trailer=None):
    """A valid IDX header for 5 labels followed by 50 MB of zeros, gzipped (~50 kB)."""
    content = idx_bytes(small_labels(5)) + bytes(50_000_000)
    compressed = bytearray(gzip.compress(content, compresslevel=9, mtime=0))
    if trailer is not None:  # a lying ISIZE field (the last 4 bytes of the gzip trailer)
        compressed[-4:] = trailer.to_bytes(4, "little")
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(compressed))
    assert path.stat().st_size < 100_000
    return path


@pytest.mark.parametrize("trailer", [None, 13])
def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, trailer):
    import tracemalloc

    path = _bomb(tmp_path, trailer=trailer)
    tracemalloc.start()
    try:
        with pytest.raises(data.IDXFormatError, match="dims disagree with the payload size"):
            data.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the 50 MB were never inflated


def test_multi_member_gzip_is_still_read(tmp_path):
    content = idx_bytes(small_images(4))
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(content[:100], mtime=0) + gzip.compress(content[100:], mtime=0))
    np.testing.assert_array_equal(data.read_idx(path), small_images(4))


# ---------------------------------------------------------------- issue 16 review follow-ups
def test_a_label_that_is_not_a_digit_is_refused_naming_the_file(tmp_path):
    labels = small_labels(5)
    labels[3] = 200
    write_split(tmp_path, "test", small_images(5), labels)
    label_file = data.MNIST_FILES["test"][1]
    with pytest.raises(
        data.IDXFormatError, match=rf"{label_file}\.gz: label 200 at index 3 is not a digit 0\.\.9"
    ):
        data.load_mnist("test", tmp_path)


def test_a_split_without_images_is_refused_naming_the_file(tmp_path):
    write_split(tmp_path, "test", small_images(0), small_labels(0))
    image_file = data.MNIST_FILES["test"][0]
    with pytest.raises(data.IDXFormatError, match=rf"{image_file}\.gz: holds 0 images"):
        data.load_mnist("test", tmp_path)


def test_one_scaling_to_the_unit_interval_eager_jit_and_prepare_images():
    """k / 255 correctly rounded to float32 for every k, the same bits by every route."""
    pixels = np.arange(256, dtype=np.uint8).reshape(2, 128)
    exact = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32).reshape(2, 128)
    np.testing.assert_array_equal(np.asarray(data.to_unit_interval(pixels)), exact)
    np.testing.assert_array_equal(np.asarray(jax.jit(data.to_unit_interval)(pixels)), exact)
    np.testing.assert_array_equal(np.asarray(data.prepare_images(pixels, 128)), exact)


def test_unsigned_pixels_above_255_are_refused():
    with pytest.raises(ValueError, match=r"0\.\.255, got 256"):
        data.to_unit_interval(np.array([[0, 256]], dtype=np.uint16))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, jnp.bfloat16])
def test_binarize_is_jax_bernoulli_bit_for_bit(dtype):
    probabilities = np.asarray(data.to_unit_interval(data.load_mnist("test").images[:8]), dtype)
    for key in (jax.random.key(9), jax.random.PRNGKey(9)):
        expected = jax.random.bernoulli(key, probabilities).astype(np.float32)
        np.testing.assert_array_equal(data.binarize(key, probabilities), expected)


def test_binarize_is_the_comparison_with_its_noise():
    probabilities = data.to_unit_interval(data.load_mnist("test").images[:3])
    key = jax.random.key(2)
    noise = data.binarization_noise(key, probabilities.shape)
    np.testing.assert_array_equal(noise, jax.random.uniform(key, probabilities.shape))
    np.testing.assert_array_equal(
        data.binarize_from_noise(noise, probabilities), data.binarize(key, probabilities)
    )
    np.testing.assert_array_equal(
        data.binarize_from_noise(np.float32([0.2, 0.5, 0.7]), np.float32([0.5, 0.5, 0.5])),
        [1.0, 0.0, 0.0],
    )
