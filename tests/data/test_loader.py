"""Training batches through DataLoader workers (svag.data.loader): the in-memory path's batches,
index for index and bit for bit, resumable after SIGKILL, on a data set of one file per sample."""

import os
import random
import signal
from dataclasses import replace

import pytest
import torch
from torch.utils.data import Dataset

import svag
from helpers import start_until, strip_wall_time, train_cmd
from svag import runner
from svag.cli import main
from svag.config import RunConfig
from svag.data.loader import StepBatches, TensorPairs, TrainLoader
from svag.data.sampling import PairSampler
from svag.records import read_json, read_jsonl

N, B = 96, 8
MODES = [(mode, pairs) for mode in ("disjoint", "replacement") for pairs in (True, False)]


class OneFilePerSample(Dataset):
    """A data set that reads every sample from its own file (written by :func:`write_files`)."""

    def __init__(self, folder, n: int) -> None:
        self.paths = [folder / f"{i:05d}.pt" for i in range(n)]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        sample = torch.load(self.paths[i], weights_only=True)
        return sample["x"], sample["y"]


def write_files(folder, x, y) -> OneFilePerSample:
    folder.mkdir()
    for i in range(len(x)):
        torch.save({"x": x[i].clone(), "y": y[i].clone()}, folder / f"{i:05d}.pt")
    return OneFilePerSample(folder, len(x))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 1, 40, generator=gen), torch.randint(0, 10, (N,), generator=gen)
    return x, y, write_files(tmp_path_factory.mktemp("files") / "samples", x, y)


@pytest.mark.parametrize(("mode", "pairs"), MODES)
def test_step_batches_yield_the_samplers_indices(mode, pairs):
    ref = PairSampler(N, B, pairs=pairs, mode=mode, seed=3)
    got = list(StepBatches(PairSampler(N, B, pairs=pairs, mode=mode, seed=3), steps=30))
    want = [t.tolist() for _ in range(30) for t in ref.next() if t is not None]
    assert got == want and len(got) == len(StepBatches(ref, steps=30))
    joined = list(StepBatches(PairSampler(N, B, pairs=pairs, mode=mode, seed=3), steps=30, joined=True))
    per = 2 if pairs else 1
    assert joined == [[i for part in want[k : k + per] for i in part] for k in range(0, len(want), per)]


@pytest.mark.parametrize(("mode", "pairs"), MODES)
def test_file_loader_gives_the_in_memory_batches_and_resumes(data, mode, pairs):
    """Two workers reading one file per sample (3 steps per load) hand out exactly ``x[idx]`` for the
    indices of the in-memory sampler (25 steps, seed 7), never touch the global RNG, and a loader
    rebuilt from :meth:`state_dict` after 10 steps (inside a load) continues with the same batches."""
    x, y, files = data
    ref = PairSampler(N, B, pairs=pairs, mode=mode, seed=7)
    loader = TrainLoader(files, PairSampler(N, B, pairs=pairs, mode=mode, seed=7), workers=2, seed=1, steps_per_load=3)
    rng = torch.get_rng_state()
    resumed = None
    for k in range(25):
        if k == 10:  # the workers have prefetched ahead; the state is the position of step 10
            state = loader.state_dict()
            twin = PairSampler(N, B, pairs=pairs, mode=mode, seed=0)
            twin.load_state_dict(state)
            assert twin.state_dict()["samples_seen"] == 10 * B * (2 if pairs else 1)
            resumed = TrainLoader(files, twin, workers=2, seed=1, steps_per_load=3)
        i1, i2 = ref.next()
        for got in (loader.next(), None if resumed is None else resumed.next()):
            if got is None:
                continue
            assert torch.equal(got[0][0], x[i1]) and torch.equal(got[0][1], y[i1])
            assert got[1] is None if i2 is None else torch.equal(got[1][0], x[i2]) and torch.equal(got[1][1], y[i2])
    assert torch.equal(torch.get_rng_state(), rng)
    loader.close()
    resumed.close()


def test_training_from_files_equals_training_in_memory(data):
    """SVAG (l = 4) trained 30 steps on batches read from files by 2 workers ends with exactly the
    weights of the same run indexing in-memory tensors (float64)."""
    x, y, files = data
    weights = []
    for source in ("memory", "files"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(40, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
        )
        model.double()
        opt = svag.SVAG(model.parameters(), lr=0.2, l=4)
        sampler = PairSampler(N, B, pairs=True, seed=5)
        loader = None
        if source == "files":
            loader = TrainLoader(files, sampler, workers=2, dtype=torch.float64, steps_per_load=4)

        def loss_fn(batch, model=model):
            return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

        for _ in range(30):
            if loader is None:
                i1, i2 = sampler.next()
                b1, b2 = (x[i1].double(), y[i1]), (x[i2].double(), y[i2])
            else:
                b1, b2 = loader.next()
            svag.train_step(opt, loss_fn, b1, b2)
        if loader is not None:
            loader.close()
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_loader_refuses_bad_input(data):
    x, y, files = data
    with pytest.raises(ValueError, match="dataset has 96 samples but the sampler draws from n = 50"):
        TrainLoader(files, PairSampler(50, B, pairs=True), workers=1)
    with pytest.raises(ValueError, match="loader workers must be an integer >= 0, got -1"):
        TrainLoader(files, PairSampler(N, B, pairs=True), workers=-1)
    with pytest.raises(ValueError, match="map-style Dataset"):
        TrainLoader(object(), PairSampler(N, B, pairs=True), workers=1)
    with pytest.raises(ValueError, match="loader_workers must be an integer >= 0"):
        RunConfig(loader_workers=-1).validate()
    with pytest.raises(ValueError, match="loader_workers applies to minibatch runs"):
        RunConfig(loader_workers=2, gradient_noise="gaussian").validate()
    with pytest.raises(ValueError, match="inputs and targets differ in length"):
        TensorPairs(x, y[:3])


def test_cli_refuses_negative_workers(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--loader-workers", "-1"]) == 2
    err = capsys.readouterr().err
    assert "loader_workers must be an integer >= 0, got -1" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


RUN = RunConfig(
    data="mnist1d", n_train=256, n_test=64, model="mlp", lr=0.1, batch_size=16, epochs=2.0, eval_every=0.5,
    checkpoint_every=0.5, eval_train_samples=128, noise_fraction=0.25, device="cpu",
)  # fmt: skip


@pytest.mark.parametrize(
    "cfg",
    [replace(RUN, l=2.0), replace(RUN, model="cnn", norm="bn", width=0.25, epochs=1.0, sampling="replacement")],
    ids=["mlp-svag-l2", "cnn-bn-sgd-replacement"],
)
def test_run_through_the_loader_equals_the_in_memory_run(tmp_path, cfg):
    """The runner with ``loader_workers=2`` writes exactly the records of the in-memory run (SVAG's
    pairs; SGD with its extra G/N batches and BatchNorm), wall time aside."""
    a = runner.run(cfg, tmp_path / "memory", progress=False).records
    b = runner.run(replace(cfg, loader_workers=2), tmp_path / "loader", progress=False).records
    assert len(a) > 2 and strip_wall_time(a) == strip_wall_time(b)
    assert any(r["noise_count"] for r in a)


def test_stacked_seeds_through_the_loader_equal_the_in_memory_ones(tmp_path):
    """Two seeds trained as one stacked ensemble, each replica with its own loader (1 worker), write
    the records of the in-memory ensemble (SVAG l = 2, MLP)."""
    cfg = replace(RUN, l=2.0, epochs=1.0)
    dirs = {side: [tmp_path / side / f"s{s}" for s in (0, 1)] for side in ("memory", "loader")}
    a = runner.run_replicas(cfg, [0, 1], dirs["memory"], progress=False)
    b = runner.run_replicas(replace(cfg, loader_workers=1), [0, 1], dirs["loader"], progress=False)
    assert [strip_wall_time(r.records) for r in a] == [strip_wall_time(r.records) for r in b]
    assert strip_wall_time(a[0].records) != strip_wall_time(a[1].records)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_stop_and_resume_through_the_loader(tmp_path, sig):
    """A real ``svag train --loader-workers 2`` stopped after a random number of records (drawn with
    seed 0, plus up to 50 ms) resumes to exactly the uninterrupted in-memory run. SIGKILL hits the
    run's process (its checkpoint holds the sampler at the last step trained, not at the batches the
    workers had prefetched); Ctrl-C reaches the whole process group, workers included: the run
    finishes its step, checkpoints, says ``interrupted`` and exits with 130."""
    cfg = replace(RUN, l=4.0, epochs=2.0, eval_every=0.25, checkpoint_every=0.5, loader_workers=2)
    ref = runner.run(replace(cfg, loader_workers=0), tmp_path / "ref", progress=False).records
    run_dir = tmp_path / "stopped"
    rng = random.Random(0)
    target = rng.randrange(3, len(ref) - 3)
    proc = start_until(train_cmd(run_dir, cfg, "--threads", "1"), run_dir, target, rng)
    if sig == signal.SIGKILL:
        proc.send_signal(sig)
    else:
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
    proc.wait(timeout=120)
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
    assert read_json(run_dir / "status.json")["status"] == ("running" if sig == signal.SIGKILL else "interrupted")
    assert runner.run(cfg, run_dir, resume=True, progress=False).status == "completed"
    assert strip_wall_time(read_jsonl(run_dir / "metrics.jsonl")) == strip_wall_time(ref)
