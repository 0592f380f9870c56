"""CIFAR-10/100 loaders on tiny files written here in the python "batches" format, and the
random crop + flip augmentation (against a per-sample loop that replays the documented draws)."""

import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from svag.data import DataError, load_dataset
from svag.data.augment import random_crop_flip
from svag.data.cifar import unpickle_restricted

PER_BATCH, N_TEST = 4, 3


def _batch(rng, n, classes, label_key, str_keys=False):
    d = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), label_key: rng.integers(0, classes, n).tolist()}
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [v // 5 for v in d[label_key]]
    d[b"batch_label"] = b"tiny"
    return {k.decode(): v for k, v in d.items()} if str_keys else d


def _write(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(root, seed=0, protocol=2, str_keys=False):
    """root/cifar-10-batches-py with five training batches of 4 images and a test batch of 3."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [_batch(rng, PER_BATCH, 10, b"labels", str_keys) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        _write(folder / f"data_batch_{i}", b, protocol)
    test = _batch(rng, N_TEST, 10, b"labels", str_keys)
    _write(folder / "test_batch", test, protocol)
    _write(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]}, protocol)
    key = "data" if str_keys else b"data"
    lkey = "labels" if str_keys else b"labels"
    train_raw = np.concatenate([b[key] for b in batches])
    train_y = np.concatenate([b[lkey] for b in batches])
    return folder, (train_raw, train_y, test[key], np.array(test[lkey]))


def _expected(train_raw, test_raw):
    """Per-channel standardization with the training statistics, in float64 numpy."""
    tr = train_raw.reshape(-1, 3, 32, 32) / 255.0
    te = test_raw.reshape(-1, 3, 32, 32) / 255.0
    mean, std = tr.mean(axis=(0, 2, 3)), tr.std(axis=(0, 2, 3))
    return (tr - mean[:, None, None]) / std[:, None, None], (te - mean[:, None, None]) / std[:, None, None], mean, std


@pytest.mark.parametrize(("protocol", "str_keys"), [(2, False), (4, False), (5, True)])
def test_cifar10_round_trip(tmp_path, protocol, str_keys):
    _, (train_raw, train_y, test_raw, test_y) = make_cifar10(tmp_path, protocol=protocol, str_keys=str_keys)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    assert ds.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and ds.test_x.shape == (N_TEST, 3, 32, 32)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    ex_train, ex_test, _, _ = _expected(train_raw, test_raw)
    np.testing.assert_allclose(ds.train_x.numpy(), ex_train, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(ds.test_x.numpy(), ex_test, atol=2e-6, rtol=1e-5)
    assert ds.train_y.tolist() == train_y.tolist() and ds.test_y.tolist() == test_y.tolist()
    assert ds.augment is not None


def py2_cifar_pickle(data, labels):
    """The opcodes Python 2's cPickle (protocol 2) writes for {'data': uint8 array, 'labels': [...]},
    as in the published CIFAR files: py2 ``str`` (BINSTRING) keys and payload, numpy.core globals."""

    def sbs(s):
        return (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<I", len(s))) + s

    def bint(v):
        return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)

    arr = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + bint(0) + b"\x85" + sbs(b"b") + b"\x87R"
        b"(" + bint(1) + bint(data.shape[0]) + bint(data.shape[1]) + b"\x86"
        b"cnumpy\ndtype\n" + sbs(b"u1") + bint(0) + bint(1) + b"\x87R"
        b"(" + bint(3) + sbs(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + bint(0) + b"tb"
        b"\x89" + sbs(data.tobytes()) + b"tb"
    )
    labs = b"](" + b"".join(bint(v) for v in labels) + b"e"
    return b"\x80\x02}(" + sbs(b"data") + arr + sbs(b"labels") + labs + b"u."


def test_python2_pickles(tmp_path):
    folder, (train_raw, train_y, test_raw, test_y) = make_cifar10(tmp_path)
    for i in range(5):
        sl = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        (folder / f"data_batch_{i + 1}").write_bytes(py2_cifar_pickle(train_raw[sl], train_y[sl].tolist()))
    (folder / "test_batch").write_bytes(py2_cifar_pickle(test_raw, test_y.tolist()))
    assert pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")[b"labels"] == test_y.tolist()
    ds = load_dataset("cifar10", root=tmp_path)
    np.testing.assert_allclose(ds.train_x.numpy(), _expected(train_raw, test_raw)[0], atol=2e-6, rtol=1e-5)
    assert ds.test_y.tolist() == test_y.tolist()


def test_cifar10_root_forms_agree(tmp_path):
    folder, _ = make_cifar10(tmp_path / "a")
    archive = tmp_path / "b" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    loads = [load_dataset("cifar10", root=r) for r in (tmp_path / "a", folder, archive.parent, archive)]
    for ds in loads[1:]:
        for key in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(ds, key), getattr(loads[0], key))


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar100(tmp_path, protocol):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, test = _batch(rng, 10, 100, b"fine_labels"), _batch(rng, 5, 100, b"fine_labels")
    _write(folder / "train", train, protocol)
    _write(folder / "test", test, protocol)
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (5, 3, 32, 32)
    assert ds.train_y.tolist() == train[b"fine_labels"] and ds.test_y.tolist() == test[b"fine_labels"]
    np.testing.assert_allclose(ds.train_x.numpy(), _expected(train[b"data"], test[b"data"])[0], atol=2e-6, rtol=1e-5)


def test_subsets_deterministic_and_standardized_on_the_subset(tmp_path):
    _, (train_raw, train_y, test_raw, test_y) = make_cifar10(tmp_path)
    a = load_dataset("cifar10", root=tmp_path, n_train=7, n_test=2, seed=3)
    b = load_dataset("cifar10", root=tmp_path, n_train=7, n_test=2, seed=3)
    c = load_dataset("cifar10", root=tmp_path, n_train=7, n_test=2, seed=4)
    assert a.train_x.shape == (7, 3, 32, 32) and a.test_x.shape == (2, 3, 32, 32)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    # the documented draw: sorted randperm(total)[:size], seed for train, seed + 1 for test
    tr = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:7].sort().values.numpy()
    te = torch.randperm(N_TEST, generator=torch.Generator().manual_seed(4))[:2].sort().values.numpy()
    ex_train, ex_test, _, _ = _expected(train_raw[tr], test_raw[te])
    np.testing.assert_allclose(a.train_x.numpy(), ex_train, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(a.test_x.numpy(), ex_test, atol=2e-6, rtol=1e-5)
    assert a.train_y.tolist() == train_y[tr].tolist() and a.test_y.tolist() == test_y[te].tolist()
    mean = a.train_x.double().mean(dim=(0, 2, 3))
    std = a.train_x.double().std(dim=(0, 2, 3), correction=0)
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), 1.0, atol=1e-5)


def test_errors(tmp_path):
    with pytest.raises(
        DataError, match=r"^cifar10: no cifar-10-batches-py/ or cifar-10-python.tar.gz in .*--data-root"
    ):
        load_dataset("cifar10", root=tmp_path)
    folder, _ = make_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"asked for 21 samples, only 20"):
        load_dataset("cifar10", root=tmp_path, n_train=21)
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match=r"lacks data_batch_3; pass --data-root"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a pickle at all", r"data_batch_2 is not a CIFAR batch \(UnpicklingError"),
        (pickle.dumps([1, 2, 3], protocol=2), r"a list, expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"expected uint8 \(N, 3072\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), r"b'data' is float32"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), r"must be 2 integers"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), r"labels outside 0..9"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), r"b'labels' must be 2 integers"),
    ],
)
def test_malformed_batch(tmp_path, content, message):
    folder, _ = make_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_dataset("cifar10", root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_restricted_unpickler_refuses_code(tmp_path):
    evil = _Evil()
    evil.target = str(tmp_path / "pwned")
    data = pickle.dumps({b"data": evil, b"labels": []}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load posix.mkdir|refusing to load os.mkdir"):
        unpickle_restricted(data)
    folder, _ = make_cifar10(tmp_path / "root")
    (folder / "test_batch").write_bytes(data)
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR batch \(UnpicklingError: refusing to load"):
        load_dataset("cifar10", root=tmp_path / "root")
    assert not (tmp_path / "pwned").exists()


def test_truncated_archive(tmp_path):
    folder, _ = make_cifar10(tmp_path / "a")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot read the archive .*cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)


# -- augmentation ---------------------------------------------------------------------------------


def _reference(x, gen, padding, fill):
    """Per-sample loop: replay the documented draws, pad, slice the window, flip."""
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen)
    flips = torch.randint(0, 2, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        pad = fill.to(x.dtype).view(c, 1, 1).repeat(1, h + 2 * padding, w + 2 * padding)
        pad[:, padding : padding + h, padding : padding + w] = x[i]
        r, col = offsets[i].tolist()
        crop = pad[:, r : r + h, col : col + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding", [0, 1, 4])
def test_crop_flip_matches_loop(dtype, padding):
    x = torch.randn(16, 3, 8, 10, dtype=dtype)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    got = random_crop_flip(x, g1, padding=padding, fill=fill)
    want = _reference(x, g2, padding, fill)
    assert got.shape == x.shape and got.dtype == dtype
    assert torch.equal(got, want)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same number of draws


def test_crop_flip_determinism_and_flips():
    x = torch.randn(400, 3, 6, 6)
    a = random_crop_flip(x, torch.Generator().manual_seed(1))
    b = random_crop_flip(x, torch.Generator().manual_seed(1))
    c = random_crop_flip(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    only = random_crop_flip(x, torch.Generator().manual_seed(3), padding=0)
    same = (only == x).flatten(1).all(1)
    flipped = (only == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # each sample is itself or its mirror, never both (random x)
    # fraction flipped: Binomial(400, 1/2), sd 0.025; tolerance 0.1 = 4 sd (seed 3)
    assert abs(flipped.double().mean().item() - 0.5) < 0.1


def test_crop_flip_bad_input():
    with pytest.raises(ValueError, match=r"x must be a batch of images \(n, C, H, W\), got shape \(3, 4, 4\)"):
        random_crop_flip(torch.zeros(3, 4, 4), torch.Generator())
    with pytest.raises(ValueError, match=r"padding must be an integer >= 0, got -1"):
        random_crop_flip(torch.zeros(1, 3, 4, 4), torch.Generator(), padding=-1)


def test_cifar_augment_pads_with_black(tmp_path):
    _, (train_raw, *_rest) = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    _, _, mean, std = _expected(train_raw, train_raw)
    black = torch.from_numpy(-mean / std)
    gen = torch.Generator().manual_seed(0)
    replay = torch.Generator().manual_seed(0)
    x = ds.train_x.repeat(5, 1, 1, 1)  # 100 samples: some have row offset 0
    out = ds.augment(x, gen)
    assert out.shape == x.shape and out.dtype == torch.float32
    offsets = torch.randint(0, 9, (len(x), 2), generator=replay)
    top = offsets[:, 0] == 0
    assert int(top.sum()) > 0
    border = out[top][:, :, :4, :].double()  # rows 0..3 come from the padding
    torch.testing.assert_close(border, black.view(1, 3, 1, 1).expand_as(border), atol=1e-5, rtol=1e-5)
    assert torch.equal(ds.augment(x, torch.Generator().manual_seed(0)), out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crop_flip_same_on_cuda():
    x = torch.randn(64, 3, 32, 32, dtype=torch.float32)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    cpu = random_crop_flip(x, torch.Generator().manual_seed(9), fill=fill)
    gpu = random_crop_flip(x.cuda(), torch.Generator().manual_seed(9), fill=fill)
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
