"""A data plug-in's Datasets that stay on disk (svag.data.streamed): a run with ``--loader-workers``
reads one file per sample as it trains, never stacks the training set, and writes the records of the
same data loaded in memory, G/N included; killed with SIGKILL, it resumes to them."""

import random
from dataclasses import replace

import pytest
import torch

from helpers import start_until, strip_wall_time, train_cmd
from svag import runner
from svag.cli import main
from svag.config import RunConfig
from svag.data import DatasetSplits, load_dataset
from svag.data import plugin as data_plugin
from svag.records import read_json, read_jsonl
from svag.runner.budget import check_budget

N_TRAIN, N_TEST, N_FILES = 256, 64, 300  # the files hold 300 training samples: the run takes a seeded 256

DATA = '''
import torch
from torch.utils.data import Dataset, get_worker_info

FOLDER = {folder!r}
MAIN_LIMIT = {limit}  # reads in the run's own process; stacking the training set takes {n} of them


class OnDisk(Dataset):
    """One file per sample; refuses to be read whole in the run's process when guarded."""

    def __init__(self, split, n, guard):
        self.split, self.n, self.guard, self.main_reads = split, n, guard, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.guard and get_worker_info() is None:
            self.main_reads += 1
            if self.main_reads > MAIN_LIMIT:
                raise RuntimeError(f"{{self.split}} read {{self.main_reads}} times in the run's process: stacked")
        sample = torch.load(f"{{FOLDER}}/{{self.split}}/{{i:05d}}.pt", weights_only=True)
        return sample["x"].numpy(), int(sample["y"])


def load(n_train, n_test):
    return OnDisk("train", {files}, True), OnDisk("test", {n_test}, True), 10


def load_all():  # the same data, read into memory by a run without loader workers
    return OnDisk("train", {files}, False), OnDisk("test", {n_test}, False), 10


def load_without_classes():
    return OnDisk("train", {files}, False), OnDisk("test", {n_test}, False)
'''


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """``data.py`` (its callables ``load``, ``load_all``, ...) beside 300 + 64 sample files (seed 0)."""
    root = tmp_path_factory.mktemp("ondisk")
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", N_FILES), ("test", N_TEST)):
        (root / split).mkdir()
        x, y = torch.randn(n, 1, 40, generator=gen, dtype=torch.float64), torch.randint(0, 10, (n,), generator=gen)
        for i in range(n):  # float64 on disk: the runs see them as float32, whichever path reads them
            torch.save({"x": x[i].clone(), "y": y[i].clone()}, root / split / f"{i:05d}.pt")
    text = DATA.format(folder=str(root), limit=N_TRAIN - 1, n=N_TRAIN, files=N_FILES, n_test=N_TEST)
    (root / "data.py").write_text(text)
    return str(root / "data.py")


RUN = RunConfig(
    n_train=N_TRAIN, n_test=N_TEST, model="mlp", lr=0.1, batch_size=16, epochs=1.0, eval_every=0.25,
    checkpoint_every=0.5, eval_train_samples=64, noise_fraction=0.25, noise_every=0.5, noise_batches=2,
    device="cpu", data_seed=3,
)  # fmt: skip


def test_run_from_files_equals_the_in_memory_run(tmp_path, spec, monkeypatch):
    """SGD with its extra G/N batches and P1's m-batch measurement, on 256 of 300 training files
    (seed 3) with 2 loader workers, writes the records of the same data stacked in memory. The
    training set is never stacked: stacking refuses past 1000 bytes here (it holds 40960), and the
    data set refuses more than 255 reads in the run's process (the run makes 64 + 4·16 + 3·2·16)."""
    ref = runner.run(replace(RUN, data=f"{spec}:load_all"), tmp_path / "memory", progress=False).records
    monkeypatch.setattr(data_plugin, "memory_limit", lambda: 1000)
    cfg = replace(RUN, data=f"{spec}:load", loader_workers=2)
    ds = load_dataset(cfg.data, n_train=N_TRAIN, n_test=N_TEST, seed=3, datasets=True)
    assert isinstance(ds, DatasetSplits) and (ds.n_train, ds.n_test, ds.input_shape) == (N_TRAIN, N_TEST, (1, 40))
    got = runner.run(cfg, tmp_path / "files", progress=False).records
    assert len(ref) == 5 and strip_wall_time(got) == strip_wall_time(ref)
    assert sum(r["noise_count"] or 0 for r in ref) == 4 and sum("G_m" in r for r in ref) == 3
    derived = read_json(tmp_path / "files" / "config.json")["derived"]
    assert (derived["n_train"], derived["n_test"]) == (N_TRAIN, N_TEST)
    with pytest.raises(ValueError, match=r"the train Dataset holds 300 samples .*use a DataLoader-backed run"):
        load_dataset(f"{spec}:load_all", n_train=N_TRAIN, n_test=N_TEST, seed=3)


def test_stacked_seeds_from_files_equal_the_in_memory_ones(tmp_path, spec):
    """Two seeds of SVAG (l = 2) trained stacked, each replica with its own loader (1 worker) over
    the files, write the records of the in-memory ensemble."""
    cfg = replace(RUN, l=2.0, noise_every=0.0)
    dirs = {side: [tmp_path / side / f"s{s}" for s in (0, 1)] for side in ("memory", "files")}
    a = runner.run_replicas(replace(cfg, data=f"{spec}:load_all"), [0, 1], dirs["memory"], progress=False)
    b = runner.run_replicas(replace(cfg, data=f"{spec}:load", loader_workers=1), [0, 1], dirs["files"], progress=False)
    assert [strip_wall_time(r.records) for r in a] == [strip_wall_time(r.records) for r in b]
    assert strip_wall_time(a[0].records) != strip_wall_time(a[1].records)


def test_budget_counts_only_what_stays_in_memory(spec):
    """The budget counts the evaluation subset (64) and one test chunk (64), not the 256 training
    samples, when the Datasets stay on disk."""
    cfg = replace(RUN, data=f"{spec}:load_all")
    assert check_budget(cfg).data_bytes == (N_TRAIN + N_TEST) * 40 * 4
    assert check_budget(replace(cfg, loader_workers=2)).data_bytes == (64 + N_TEST) * 40 * 4


def test_datasets_without_num_classes_are_refused_in_one_line(tmp_path, spec, capsys):
    out = tmp_path / "r"
    args = ["train", "--out", str(out), "--data", f"{spec}:load_without_classes", "--loader-workers", "2"]
    assert main([*args, "--n-train", "64", "--batch-size", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot count the classes first: return (train, test, num_classes)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_sigkill_and_resume_from_files(tmp_path, spec):
    """A real ``svag train --loader-workers 2`` on the files (SVAG l = 4) killed with SIGKILL after a
    random number of records (seed 0, plus up to 50 ms) resumes to exactly the in-memory run."""
    cfg = replace(RUN, l=4.0, eval_every=0.125, checkpoint_every=0.25, noise_every=0.0, loader_workers=2)
    ref = runner.run(replace(cfg, data=f"{spec}:load_all", loader_workers=0), tmp_path / "ref", progress=False)
    cfg = replace(cfg, data=f"{spec}:load")
    run_dir = tmp_path / "killed"
    rng = random.Random(0)
    target = rng.randrange(2, len(ref.records) - 2)
    cmd = [*train_cmd(run_dir, cfg, "--threads", "1"), "--data-seed", "3", "--noise-every", "0", "--noise-batches", "2"]
    proc = start_until(cmd, run_dir, target, rng)
    proc.kill()
    assert proc.wait(timeout=120) == -9 and read_json(run_dir / "status.json")["status"] == "running"
    assert runner.run(cfg, run_dir, resume=True, progress=False).status == "completed"
    assert strip_wall_time(read_jsonl(run_dir / "metrics.jsonl")) == strip_wall_time(ref.records)
