"""Engines: one model or a stacked ensemble, asking the task for loss and metrics."""

import pytest
import torch

from svag.runner.engine import EnsembleEngine, SingleEngine, evaluate, grad_norm_sq
from svag.runner.ensemble import Ensemble
from svag.task import CrossEntropy, SquaredError

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


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


def test_buffers_restore_and_replica_state():
    """The extra G/N batch must leave BatchNorm statistics untouched: buffers() / restore_buffers()."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3)).double()
    eng = SingleEngine(model, CrossEntropy())
    saved = eng.buffers()
    eng.loss((torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))))
    assert not torch.equal(model[1].running_mean, saved[0])
    eng.restore_buffers(saved)
    assert torch.equal(model[1].running_mean, saved[0])
    assert eng.replica_state(0).keys() == model.state_dict().keys()
