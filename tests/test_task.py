"""Tasks own the loss and the metrics: per-sample losses average to the loss; engines ask them."""

import pytest
import torch
import torch.nn.functional as F

from svag.task import CrossEntropy, SquaredError, make_task


def _data(n=13, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def test_cross_entropy_matches_torch():
    out, y = _data()
    task = CrossEntropy()
    assert torch.equal(task.loss(out, y), F.cross_entropy(out, y))
    assert torch.allclose(task.per_sample_loss(out, y).mean(), task.loss(out, y), rtol=1e-14)
    acc = task.per_sample_metrics(out, y)["acc"]
    assert acc.sum().item() == (out.argmax(1) == y).sum().item()


def test_squared_error_on_one_hot_labels_equals_mse_loss():
    out, y = _data()
    task = SquaredError(num_classes=4)
    assert torch.allclose(task.loss(out, y), F.mse_loss(out, F.one_hot(y, 4).double()), rtol=1e-14)
    assert task.metrics == ("acc",)


def test_squared_error_on_real_targets_has_no_metric():
    out, _ = _data()
    target = out.flip(0)
    task = SquaredError()
    assert torch.allclose(task.loss(out, target), F.mse_loss(out, target), rtol=1e-14)
    assert task.metrics == () and task.per_sample_metrics(out, target) == {}


def test_make_task():
    assert isinstance(make_task("cross_entropy", 10), CrossEntropy)
    assert make_task("mse", 10).num_classes == 10
    with pytest.raises(ValueError, match="loss must be one of cross_entropy, mse, got 'hinge'"):
        make_task("hinge", 10)
    with pytest.raises(ValueError, match="needs class labels"):
        make_task("cross_entropy", None)
