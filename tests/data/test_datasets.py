"""The data registry, ArrayDataset and the synthetic teacher-student set.

Per-data-set tests: test_mnist1d.py, test_idx.py (IDX reader, Fashion-MNIST),
test_cifar.py (CIFAR, augmentation), test_sampling.py (PairSampler)."""

import numpy as np
import pytest
import torch

from svag.data import DATASETS, ArrayDataset, DataError, load_dataset
from svag.data.base import standardize_uint8
from svag.data.teacher_student import teacher_logits


def test_registry():
    assert DATASETS == ("mnist1d", "fashion-mnist", "cifar10", "cifar100", "teacher-student")
    assert issubclass(DataError, ValueError)
    with pytest.raises(DataError, match=r"^unknown data set 'mnist'; expected one of mnist1d, fashion-mnist, cifar10"):
        load_dataset("mnist")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_train": 0}, r"n_train must be an integer >= 1 or None, got 0"),
        ({"n_test": 2.5}, r"n_test must be an integer >= 1 or None, got 2.5"),
        ({"n_train": True}, r"n_train must be an integer >= 1 or None, got True"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ({"seed": "0"}, r"seed must be an integer >= 0, got '0'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(DataError, match=message):
        load_dataset("teacher-student", **kwargs)


def test_cifar_default_root_is_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SVAG_CACHE", str(tmp_path))
    with pytest.raises(DataError, match=rf"cifar100: no cifar-100-python/ or cifar-100-python.tar.gz in {tmp_path};"):
        load_dataset("cifar100")


def _ds(**kw):
    args = {
        "name": "toy",
        "train_x": torch.zeros(4, 3, dtype=torch.float32),
        "train_y": torch.zeros(4, dtype=torch.int64),
        "test_x": torch.zeros(2, 3, dtype=torch.float32),
        "test_y": torch.zeros(2, dtype=torch.int64),
        "num_classes": 2,
    }
    return ArrayDataset(**{**args, **kw})


def test_array_dataset():
    ds = _ds()
    assert ds.input_shape == (3,) and ds.n_train == 4 and ds.n_test == 2 and ds.augment is None
    with pytest.raises(
        DataError, match=r"toy: train inputs must be \(n, \*input_shape\) and labels \(n,\) or \(n, ...\), got"
    ):
        _ds(train_y=torch.zeros(3, dtype=torch.int64))
    assert _ds(
        train_y=torch.zeros(4, 5, dtype=torch.int64), test_y=torch.zeros(2, 5, dtype=torch.int64)
    ).label_shape == (5,)
    with pytest.raises(DataError, match=r"toy: test labels must be int64 and inputs float, got torch.int32"):
        _ds(test_y=torch.zeros(2, dtype=torch.int32))
    with pytest.raises(DataError, match=r"toy: train and test samples differ in shape: \(3,\) vs \(5,\)"):
        _ds(test_x=torch.zeros(2, 5))


def test_standardize_uint8_exact_and_read_only_input():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    train[:, 1] = 7  # a constant channel: centred, not divided by zero
    test = rng.integers(0, 256, (2, 2, 3, 3), dtype=np.uint8)
    train.flags.writeable = False  # e.g. a memory-mapped file; torch.from_numpy would warn
    tr, te, mean, std = standardize_uint8(train, test, channels=2)
    ref = train / 255.0
    m, s = ref.mean(axis=(0, 2, 3)), ref.std(axis=(0, 2, 3))
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-15)
    np.testing.assert_allclose(std.numpy(), [s[0], 1.0], rtol=1e-12)
    np.testing.assert_allclose(tr.numpy(), (ref - m[:, None, None]) / np.array([s[0], 1.0])[:, None, None], atol=1e-6)
    assert float(tr[:, 1].abs().max()) < 1e-7 and tr.dtype == te.dtype == torch.float32


# -- teacher-student ------------------------------------------------------------------------------


def test_teacher_student_shapes_and_determinism():
    ds = load_dataset("teacher-student")
    assert ds.name == "teacher-student" and ds.num_classes == 4 and ds.input_shape == (20,)
    assert ds.train_x.shape == (2000, 20) and ds.test_x.shape == (1000, 20)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64 and ds.augment is None
    again = load_dataset("teacher-student")
    other = load_dataset("teacher-student", seed=1)
    assert torch.equal(ds.train_x, again.train_x) and torch.equal(ds.test_y, again.test_y)
    assert not torch.equal(ds.train_x, other.train_x)


def test_teacher_student_sizes_do_not_move_the_rest():
    small = load_dataset("teacher-student", n_train=50, n_test=30)
    big = load_dataset("teacher-student", n_train=100, n_test=30)
    assert torch.equal(small.train_x, big.train_x[:50]) and torch.equal(small.train_y, big.train_y[:50])
    assert torch.equal(small.test_x, big.test_x) and torch.equal(small.test_y, big.test_y)


def test_teacher_student_follows_the_documented_teacher():
    """Replay: SeedSequence([seed, 0x7EAC]) spawns (teacher, train, test); W ~ N(0, 1/fan_in)."""
    seed = 3
    ds = load_dataset("teacher-student", n_train=200, n_test=10, seed=seed)
    teacher, train, _ = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x7EAC]).spawn(3))
    w1 = teacher.standard_normal((20, 32)) / np.sqrt(20)
    w2 = teacher.standard_normal((32, 4)) / np.sqrt(32)
    x = train.standard_normal((200, 20))
    np.testing.assert_allclose(ds.train_x.numpy(), x, rtol=1e-6, atol=1e-6)
    assert ds.train_y.tolist() == teacher_logits(x, w1, w2).argmax(axis=1).tolist()


# Class balance: seeds 0..4, 2000 training samples each; every class must hold >= 10% of them
# (the tanh teacher gives 18-32% per class on these seeds; a ReLU teacher drops to ~1%).
def test_teacher_student_classes_balanced():
    for seed in range(5):
        frac = torch.bincount(load_dataset("teacher-student", seed=seed).train_y, minlength=4).double() / 2000
        assert float(frac.min()) >= 0.10, (seed, frac)
