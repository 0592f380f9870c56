"""Tasks own the loss and the metrics: per-sample losses average to the loss; engines ask them."""

import pytest
import torch
import torch.nn.functional as F

from svag.engine import EnsembleEngine, SingleEngine, evaluate, grad_norm_sq
from svag.ensemble import Ensemble
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


def _mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)
    ).double()


@pytest.mark.parametrize("task", [CrossEntropy(), SquaredError(num_classes=3)], ids=repr)
def test_engines_evaluate_with_the_task(task):
    """Evaluation and ‖∇L‖² of a single engine and of a 2-replica ensemble use the task's loss:
    equal (float64) to a direct computation per model."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (9,), generator=g)
    models = [_mlp(0), _mlp(1)]
    ens = EnsembleEngine(Ensemble([_mlp(0), _mlp(1)], input_shape=(5,)), task)
    ens_loss, ens_metrics = evaluate(ens, x, y, chunk=4)
    ens_grad = grad_norm_sq(ens, x, y, chunk=4)
    for k, m in enumerate(models):
        single = SingleEngine(m, task)
        loss, metrics = evaluate(single, x, y, chunk=4)
        want = task.loss(m(x), y)
        assert loss[0] == pytest.approx(want.item(), rel=1e-12)
        assert ens_loss[k] == pytest.approx(want.item(), rel=1e-12)
        assert metrics["acc"][0] == ens_metrics["acc"][k] == (m(x).argmax(1) == y).double().mean().item()
        grads = torch.autograd.grad(want, list(m.parameters()))
        want_sq = sum((gr**2).sum() for gr in grads).item()
        assert grad_norm_sq(single, x, y, chunk=4)[0] == pytest.approx(want_sq, rel=1e-10)
        assert ens_grad[k] == pytest.approx(want_sq, rel=1e-10)
