"""The resumable state: replica streams from the seed tree, counters, one checkpoint per replica."""

from dataclasses import replace

import torch

from svag.config import RunConfig
from svag.optim import SVAG
from svag.runfolder import RunFolder
from svag.runner import state as runstate
from svag.runner.engine import EnsembleEngine, SingleEngine
from svag.runner.ensemble import Ensemble
from svag.seeds import generator, stream_seed
from svag.task import CrossEntropy

CFG = RunConfig(batch_size=4, l=2.0)


def test_replica_streams_come_from_the_seed_tree(tmp_path):
    r = runstate.Replica(CFG, 5, RunFolder(tmp_path), n=32)
    assert r.sampler.seed == stream_seed(5, "data_order")
    for gen, stream in ((r.aug_gen, "augment"), (r.noise_gen, "noise_batches"), (r.m_gen, "m_batches")):
        assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=generator(5, stream)))


def _models(K):
    out = []
    for k in range(K):
        torch.manual_seed(k)
        out.append(
            torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
            ).double()
        )
    return out


def test_save_load_round_trip_per_replica(tmp_path):
    """An ensemble's checkpoints are single-run checkpoints: loading them into a fresh ensemble (or
    one replica's into a single engine) restores model, optimizer slice, streams and counters."""
    folders = [RunFolder(tmp_path / f"s{k}") for k in range(2)]
    for f in folders:
        f.path.mkdir()
    eng = EnsembleEngine(Ensemble(_models(2), input_shape=(3,)), CrossEntropy())
    opt = SVAG(eng.params, lr=0.1, l=2.0)
    reps = [runstate.Replica(replace(CFG, seed=k), k, f, 32) for k, f in enumerate(folders)]
    for r in reps:
        r.sampler.next()
        r.acc.add(1.0, 2.0)
        r.acc_pre.add(3.0, 4.0)
        r.acc_pre.add(5.0, 6.0)
        r.n_records = 3
    loss = eng.loss((torch.randn(2, 4, 3, dtype=torch.float64), torch.randint(0, 2, (2, 4))))
    loss.backward()
    opt.mark_amplified()  # a gradient built by hand: only the optimizer's state matters here
    opt.step()
    runstate.save(reps, eng, opt, runstate.Counters(step=1, next_eval=2, next_ckpt=0.5, next_m=1.0, elapsed=3.0))

    eng2 = EnsembleEngine(Ensemble(_models(2)[::-1], input_shape=(3,)), CrossEntropy())
    opt2 = SVAG(eng2.params, lr=0.1, l=2.0)
    reps2 = [runstate.Replica(replace(CFG, seed=k), k, f, 32) for k, f in enumerate(folders)]
    counters = runstate.load([f.load_checkpoint() for f in folders], reps2, eng2, opt2)
    assert counters == runstate.Counters(step=1, next_eval=2, next_ckpt=0.5, next_m=1.0, elapsed=3.0)
    assert opt2.sde_time == opt.sde_time
    for p, q in zip(eng.params, eng2.params):
        assert torch.equal(p, q)
    for r, r2 in zip(reps, reps2):
        assert torch.equal(r.sampler.next()[0], r2.sampler.next()[0])
        assert r2.n_records == 3 and r2.acc.count == 1
        assert r2.acc_pre.__dict__ == r.acc_pre.__dict__ and r2.acc_pre.count == 2
    old = {k: v for k, v in folders[0].load_checkpoint().items() if k != "acc_pre"}  # written before it existed
    reps2[0].acc_pre.reset()
    reps2[0].load(old)
    assert reps2[0].acc.count == 1 and reps2[0].acc_pre.count == 0
    single = SingleEngine(_models(1)[0], CrossEntropy())
    runstate.load([folders[1].load_checkpoint()], reps2[1:], single, SVAG(single.params, lr=0.1, l=2.0))
    for p, q in zip(single.params, eng.params):
        assert torch.equal(p, q[1])


def test_release_0_1_0_own_time_becomes_the_optimizers_clock(tmp_path):
    """Release 0.1.0 kept heavy-ball SGD's time in the counters ("own_time"), not in the optimizer."""
    folder = RunFolder(tmp_path)
    model = _models(1)[0]
    eng = SingleEngine(model, CrossEntropy())
    rep = runstate.Replica(CFG, 0, folder, 32)
    torch_sgd = torch.optim.SGD(eng.params, lr=0.1, momentum=0.9)
    state = {"rng": {"cpu": torch.get_rng_state()}, "step": 4, "own_time": 4.0, "next_eval": 1, "next_ckpt": 1.0,
             "next_m": float("inf"), "elapsed": 0.0, **rep.state(), "model": model.state_dict(),
             "optimizer": torch_sgd.state_dict()}  # fmt: skip
    from svag.optim import HeavyBallSGD

    opt = HeavyBallSGD(eng.params, lr=0.1, momentum=0.9)
    counters = runstate.load([state], [rep], eng, opt)
    assert counters.step == 4 and opt.sde_time == 4.0
