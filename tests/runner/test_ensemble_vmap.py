"""Stacked ensembles of any ``nn.Module`` through ``torch.func`` (:mod:`svag.runner.vmap_ensemble`).

The slow reference twin: K plain models, each trained by its own :class:`svag.SVAG` on the same
batches (the stacked replica k must follow model k). Float64 throughout; tolerance 1e-10 on every
parameter and buffer (observed <= 5e-13: batched kernels round otherwise than plain ones). The
trial step's verdicts are checked on models vmap refuses (dropout, data-dependent control flow,
``.item()``, cumulative BatchNorm) or runs differently (a buffer re-assigned instead of updated).
"""

import copy

import pytest
import torch
from torch import nn

from helpers import max_replica_error, train_ensemble_and_singles
from svag.models import build_model
from svag.runner.engine import EnsembleEngine, SingleEngine, evaluate, grad_norm_sq
from svag.runner.ensemble import Ensemble, NotStackable, stack
from svag.runner.vmap_ensemble import VmapEnsemble, trial
from svag.task import CrossEntropy

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)

SEEDS = [0, 1, 2]
TOL = 1e-10


class UserNet(nn.Module):
    """A user's model the hand-written layers cannot take: its own forward, LayerNorm, BatchNorm, GELU,
    a residual sum and a weight tied between two layers."""

    def __init__(self, d: int = 12, classes: int = 10) -> None:
        super().__init__()
        self.inp, self.mid, self.tied = nn.Linear(d, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.tied.weight = self.mid.weight
        self.ln, self.bn, self.head = nn.LayerNorm(16), nn.BatchNorm1d(16), nn.Linear(16, classes)

    def forward(self, x):
        h = nn.functional.gelu(self.ln(self.inp(x.reshape(x.shape[0], -1))))
        h = h + torch.tanh(self.bn(self.mid(h)))
        return self.head(self.tied(h))


def _build(name, norm, shape, width):
    if name == "user":
        return UserNet(shape[0])
    return build_model(name, norm=norm, input_shape=shape, num_classes=10, width=width)


def _models(name, norm, shape, width=1.0):
    out = []
    for s in SEEDS:
        torch.manual_seed(s)
        out.append(_build(name, norm, shape, width))
    return out


def _train_both(name, norm, shape, steps, width=1.0, l=4.0):
    """``steps`` SVAG steps of the vmapped ensemble and of each plain model on the same batches."""
    models = _models(name, norm, shape, width)
    singles = [copy.deepcopy(m) for m in models]
    ens = VmapEnsemble(models, input_shape=shape)
    train_ensemble_and_singles(ens, singles, shape, steps, l)
    return ens, singles


CASES = [
    ("mlp", "bn", (40,), 25, 1.0),
    ("cnn", "bn", (1, 40), 20, 1.0),
    ("cnn", "gn", (3, 8, 8), 20, 1.0),
    ("preresnet32", "bn", (1, 40), 5, 0.25),
    ("user", "", (12,), 25, 1.0),
]


@pytest.mark.parametrize("name,norm,shape,steps,width", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_stacked_training_equals_the_replicas_alone(name, norm, shape, steps, width):
    """Parameters and buffers (BatchNorm's running statistics and counts) follow each plain model; eval-mode
    outputs on shared inputs use each replica's own statistics."""
    ens, singles = _train_both(name, norm, shape, steps, width)
    assert max_replica_error(ens, singles) < TOL
    x = torch.randn(5, *shape)
    ens.eval()
    for k, m in enumerate(singles):
        torch.testing.assert_close(ens.logits(x)[k], m.eval()(x), rtol=0, atol=TOL)
        torch.testing.assert_close(ens.logits(x.expand(3, *x.shape))[k], m(x), rtol=0, atol=TOL)


def test_evaluation_and_grad_norm_per_replica():
    models = _models("user", "", (12,))
    eng = EnsembleEngine(VmapEnsemble(copy.deepcopy(models), input_shape=(12,)), CrossEntropy())
    eng.train(False)
    x, y = torch.randn(9, 12), torch.randint(0, 10, (9,))
    loss, metrics = evaluate(eng, x, y, chunk=4)
    sq = grad_norm_sq(eng, x, y, chunk=4)
    for k, m in enumerate(models):
        single = SingleEngine(m.eval(), CrossEntropy())
        assert loss[k] == pytest.approx(evaluate(single, x, y, chunk=4)[0][0], rel=1e-12)
        assert metrics["acc"][k] == evaluate(single, x, y, chunk=4)[1]["acc"][0]
        assert sq[k] == pytest.approx(grad_norm_sq(single, x, y, chunk=4)[0], rel=1e-10)


def test_frozen_parameters_and_tied_weights():
    """A frozen head stays out of ``params``; a tied weight is one stacked parameter under both names."""
    models = _models("cnn", "bn", (1, 40))
    for m in models:
        m.head.weight.requires_grad_(False)
    ens = VmapEnsemble(models, input_shape=(1, 40))
    assert sum(p[0].numel() for p in ens.params) == sum(p.numel() for p in models[0].parameters() if p.requires_grad)
    user = VmapEnsemble(_models("user", "", (12,)), input_shape=(12,))
    assert user.net.mid.weight is user.net.tied.weight and user.net.mid.weight.shape == (3, 16, 16)
    assert len(user.params) == len(list(UserNet().parameters()))


def test_replica_state_round_trip():
    models = _models("user", "", (12,))
    ens = VmapEnsemble(models, input_shape=(12,))
    ens(torch.randn(3, 4, 12))  # BatchNorm statistics move away from their start
    states = [ens.replica_state_dict(k) for k in range(3)]
    other = VmapEnsemble(_models("user", "", (12,))[::-1], input_shape=(12,))
    other.load_replica_state_dicts(states)
    for k in range(3):
        for n, v in other.replica_state_dict(k).items():
            assert torch.equal(v, states[k][n]), n
    for k, m in enumerate(models):
        m.load_state_dict(states[k])  # the plain model takes a replica's state as is
    assert states[1]["bn.num_batches_tracked"].dim() == 0 and int(states[1]["bn.num_batches_tracked"]) == 1


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 10)

    def forward(self, x):
        return self.lin(x) if x.sum() > 0 else -self.lin(x)


class _Item(_Branchy):
    def forward(self, x):
        return self.lin(x) * float(x.abs().max())


class _Counter(_Branchy):
    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls = self.calls + 1  # re-assigned: lost by functional_call
        return self.lin(x)


REFUSED = [
    ("dropout", lambda: nn.Sequential(nn.Linear(12, 8), nn.Dropout(0.5), nn.Linear(8, 10)), "random operation"),
    ("control flow", _Branchy, "data-dependent control flow"),
    ("item", _Item, r"\.item\(\)"),
    ("cumulative bn", lambda: nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8, momentum=None), nn.Linear(8, 10)),
     r"\.item\(\)"),
    ("re-assigned buffer", _Counter, r"differs from replica 0's own \(buffers: relative difference 1 > 1\.5e-08\)"),
]  # fmt: skip


@pytest.mark.parametrize("make,why", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_trial_names_why_a_model_cannot_be_stacked(make, why):
    models = []
    for s in SEEDS:
        torch.manual_seed(s)
        models.append(make())
    x, y = torch.randn(3, 6, 12), torch.randint(0, 10, (3, 6))
    with pytest.raises(NotStackable, match=why) as err:
        stack(models, input_shape=(12,), task=CrossEntropy(), x=x, y=y)
    assert "\n" not in str(err.value) and "issues" not in str(err.value)


def test_trial_changes_nothing():
    """The trial step leaves buffers, ``p.grad``, the train/eval mode and the global RNG as they were."""
    models = _models("user", "", (12,))
    ens = VmapEnsemble(models, input_shape=(12,))
    ens.eval()
    before = [ens.replica_state_dict(k) for k in range(3)]
    plain = [copy.deepcopy(m.state_dict()) for m in models]
    x, y = torch.randn(3, 6, 12), torch.randint(0, 10, (3, 6))
    rng = torch.get_rng_state()
    assert trial(ens, models, CrossEntropy(), x, y) is None
    assert torch.equal(torch.get_rng_state(), rng) and not ens.training
    assert all(p.grad is None for p in ens.params)
    for k in range(3):
        assert all(torch.equal(v, before[k][n]) for n, v in ens.replica_state_dict(k).items())
        assert all(torch.equal(v, plain[k][n]) for n, v in models[k].state_dict().items())


def test_stack_picks_the_hand_written_layers_for_the_zoo():
    x, y = torch.randn(3, 4, 40), torch.randint(0, 10, (3, 4))
    zoo = stack(_models("mlp", "bn", (40,)), input_shape=(40,), task=CrossEntropy(), x=x, y=y)
    user = stack(_models("user", "", (12,)), input_shape=(12,), task=CrossEntropy(), x=x[..., :12], y=y)
    assert type(zoo) is Ensemble and type(user) is VmapEnsemble


def test_bad_input():
    models = _models("user", "", (12,))
    with pytest.raises(ValueError, match=r"needs >= 2 replicas, got 1"):
        VmapEnsemble(models[:1], input_shape=(12,))
    with pytest.raises(ValueError, match="same architecture"):
        VmapEnsemble([models[0], UserNet(11)], input_shape=(12,))
    with pytest.raises(ValueError, match=r"expected 3 replica states, got 1"):
        VmapEnsemble(models, input_shape=(12,)).load_replica_state_dicts([{}])
