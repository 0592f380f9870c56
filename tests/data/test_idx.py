"""The IDX reader on small files written here (raw and gzip, every element type, malformed files)
and the Fashion-MNIST loader; the real files of Debian's dataset-fashion-mnist when installed."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from svag.data import DataError, load_dataset
from svag.data.fashion_mnist import DEBIAN_ROOT
from svag.data.idx import IDX_TYPES, read_idx, read_idx_header

CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}


def idx_bytes(arr):
    """Encode ``arr`` as IDX: 0x0000, type code, ndim, big-endian uint32 dims, big-endian data."""
    code = CODES[arr.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False):
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_every_type(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((5, 3, 2)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (5, 3, 2)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable
    dt, dims = read_idx_header(path)
    assert dt == np.dtype(dtype).newbyteorder(">") and dims == (5, 3, 2)
    np.testing.assert_array_equal(read_idx(path, max_items=2), arr[:2])


def test_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "b", np.array([1, 256], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0])
    assert read_idx(path).tolist() == [1, 256]


def test_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain-name", arr, gz=True)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", arr, gz=False)), arr)


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"truncated IDX magic number: expected 4 bytes, got 0"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", r"not an IDX file \(magic number starts 0100, expected 0000\)"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", r"unknown IDX element type 0x07 \(expected one of 0x08, 0x09"),
        (b"\x00\x00\x08\x00", r"IDX file with 0 dimensions"),
        (GOOD[:9], r"truncated IDX header: expected 12 bytes, got 5"),
        (GOOD[:-1], r"truncated IDX payload of shape \(2, 3, 4\): expected 24 bytes, got 23"),
        (GOOD + b"\x00", r"trailing bytes after the IDX payload of shape \(2, 3, 4\)"),
        (b"\x1f\x8b" + b"garbage" * 5, r"unreadable \((BadGzipFile|OSError|EOFError|error)"),
        (gzip.compress(GOOD)[:20], r"unreadable \((EOFError|BadGzipFile|OSError|error)"),
    ],
)
def test_malformed(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file"):
        read_idx(tmp_path / "nope")


# -- Fashion-MNIST on tiny files -------------------------------------------------------------------

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HOW = "install Debian's dataset-fashion-mnist or pass --data-root DIR holding the four IDX files"


def make_fashion(root, n_train=12, n_test=5, gz=(True, False, False, True), seed=0):
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )
    root.mkdir(parents=True, exist_ok=True)
    for name, arr, z in zip(NAMES, arrays, gz):
        write_idx(root / (name + ".gz" if z else name), arr, gz=z)
    return arrays


def _standardized(train, test):
    tr, te = train / 255.0, test / 255.0
    mean, std = tr.mean(), tr.std()
    return ((tr - mean) / std)[:, None], ((te - mean) / std)[:, None]


def test_fashion_tiny(tmp_path):
    trx, try_, tex, tey = make_fashion(tmp_path)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert ds.name == "fashion-mnist" and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.test_y.dtype == torch.int64 and ds.augment is None
    ex_train, ex_test = _standardized(trx, tex)
    np.testing.assert_allclose(ds.train_x.numpy(), ex_train, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(ds.test_x.numpy(), ex_test, atol=2e-6, rtol=1e-5)
    assert ds.train_y.tolist() == try_.tolist() and ds.test_y.tolist() == tey.tolist()


def test_fashion_subsets(tmp_path):
    make_fashion(tmp_path, n_train=30, n_test=10)
    a = load_dataset("fashion-mnist", root=tmp_path, n_train=8, n_test=4, seed=1)
    b = load_dataset("fashion-mnist", root=tmp_path, n_train=8, n_test=4, seed=1)
    c = load_dataset("fashion-mnist", root=tmp_path, n_train=8, n_test=4, seed=2)
    assert a.train_x.shape == (8, 1, 28, 28) and a.test_x.shape == (4, 1, 28, 28)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert not torch.equal(a.train_x, c.train_x)
    assert abs(a.train_x.double().mean().item()) < 1e-6
    assert abs(a.train_x.double().std(correction=0).item() - 1) < 1e-5
    with pytest.raises(DataError, match=r"fashion-mnist n_train: asked for 31 samples, only 30 available"):
        load_dataset("fashion-mnist", root=tmp_path, n_train=31)


def test_fashion_missing(tmp_path):
    with pytest.raises(DataError, match=rf"^fashion-mnist: folder {tmp_path / 'x'} does not exist; {HOW}$"):
        load_dataset("fashion-mnist", root=tmp_path / "x")
    make_fashion(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    expected = f"fashion-mnist: no train-images-idx3-ubyte(.gz) in {tmp_path}; {HOW}"
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", root=tmp_path)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("name", "arr", "message"),
    [
        (
            "train-images-idx3-ubyte",
            np.zeros((12, 27, 28), np.uint8),
            r"holds uint8 \(12, 27, 28\), expected \(n, 28, 28\)",
        ),
        ("train-images-idx3-ubyte", np.zeros((12, 28, 28), np.int16), r"holds int16 .* expected \(n, 28, 28\) uint8"),
        ("t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8), r"has label 10, expected 0..9"),
        ("t10k-labels-idx1-ubyte", np.zeros((5, 1), np.uint8), r"expected \(n,\) uint8 labels"),
        ("t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), r"test has 5 images but 4 labels"),
    ],
)
def test_fashion_malformed(tmp_path, name, arr, message):
    make_fashion(tmp_path, gz=(False,) * 4)
    write_idx(tmp_path / name, arr)
    with pytest.raises(DataError, match=rf"^fashion-mnist: .*{message}.*; {HOW}$"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_fashion_truncated_file(tmp_path):
    make_fashion(tmp_path, gz=(False,) * 4)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=rf"^fashion-mnist: {path}: truncated IDX payload .*; {HOW}$"):
        load_dataset("fashion-mnist", root=tmp_path)


# -- the real files --------------------------------------------------------------------------------

needs_debian = pytest.mark.skipif(not DEBIAN_ROOT.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
REAL = {
    "train-images": (60000, 28, 28),
    "train-labels": (60000,),
    "t10k-images": (10000, 28, 28),
    "t10k-labels": (10000,),
}


def _real(stem):
    kind = "idx3" if stem.endswith("images") else "idx1"
    base = Path(DEBIAN_ROOT) / f"{stem}-{kind}-ubyte"
    return base if base.is_file() else base.with_name(base.name + ".gz")


@needs_debian
def test_real_fashion_headers_and_prefix():
    for stem, shape in REAL.items():
        dtype, dims = read_idx_header(_real(stem))
        assert dtype == np.dtype(">u1") and dims == shape
    labels = read_idx(_real("train-labels"), max_items=1000)
    images = read_idx(_real("train-images"), max_items=1000)
    assert labels.shape == (1000,) and images.shape == (1000, 28, 28)
    assert set(labels.tolist()) == set(range(10))
    # Fashion-MNIST pixel mean is ≈ 0.286 of full scale; 1000 images give it within ±0.02
    assert abs(images.mean() / 255 - 0.286) < 0.02


@needs_debian
@pytest.mark.slow
def test_real_fashion_full_load():
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10 and torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert abs(ds.train_x.double().mean().item()) < 1e-6
    assert abs(ds.train_x.double().std().item() - 1) < 1e-5
    # the published statistics of the training images: mean 0.2860, std 0.3530 of full scale
    raw = read_idx(_real("train-images")) / 255.0
    assert abs(raw.mean() - 0.2860) < 1e-4 and abs(raw.std() - 0.3530) < 1e-4
