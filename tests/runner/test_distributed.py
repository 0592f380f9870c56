"""Multi-process data parallelism (torch.distributed, gloo on CPU) equals the single-process run.

Each test launches real processes with torchrun; the data, model and seed are fixed, so the
comparison is deterministic (tolerances are rounding-level, not statistical)."""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from svag.runner.distributed import Dist

ARGS = ["--data", "teacher-student", "--n-train", "320", "--n-test", "128", "--model", "mlp", "--norm", "gn",
        "--batch-size", "32", "--lr", "0.2", "--weight-decay", "1e-3", "--device", "cpu", "--no-progress"]  # fmt: skip


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def _single(out, extra):
    subprocess.run([sys.executable, "-m", "svag", "train", "--out", str(out), *ARGS, *extra], check=True,
                   capture_output=True)  # fmt: skip


def _torchrun(out, extra, resume=False, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "svag",
           "train", "--out", str(out), *ARGS, *extra, *(["--resume"] if resume else [])]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert not check or proc.returncode == 0, f"torchrun exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(
        abs(x[k] - y[k]) / max(1.0, abs(x[k]))
        for x, y in zip(a, b)
        for k in x
        if k != "wall_time" and isinstance(x[k], float)
    )


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-6), ("float64", 1e-12)])
def test_two_processes_equal_one_over_20_steps(tmp_path, dtype, tol):
    """GroupNorm MLP, SVAG l = 2, one epoch of n = 320 at B = 32: 10 SGD steps, so 20 SVAG steps;
    every recorded metric (losses, accuracies, norms, G, N) within ``tol``."""
    extra = ["--epochs", "1", "--eval-every", "0.25", "--amplification", "2", "--dtype", dtype]
    _single(tmp_path / "one", extra)
    _torchrun(tmp_path / "two", extra)
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert a[-1]["step"] == 20
    assert _max_diff(a, b) <= tol


def test_two_processes_give_the_micro_batch_gn_of_one(tmp_path):
    """--noise-source microbatch under torchrun: 2 processes × M = 2 micro-batches of 8 are the M = 4 micro-batches
    of the single process's B = 32 (each process holds its contiguous half of the batch), so every record's G and
    N equal the single run's to float64 rounding (one all-reduce of Σ‖g_j‖², the step's gradient all-reduced)."""
    extra = ["--epochs", "1", "--eval-every", "0.25", "--dtype", "float64", "--noise-source", "microbatch"]
    _single(tmp_path / "one", [*extra, "--micro-batches", "4"])
    _torchrun(tmp_path / "two", [*extra, "--micro-batches", "2"])
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["noise_count"] for r in a] == [r["noise_count"] for r in b] and a[-1]["noise_count"] > 0
    assert _max_diff(a, b) <= 1e-10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_c10d_rendezvous_equal_one_process(tmp_path):
    """The multi-node launch (README, "On a cluster"): two torchrun "nodes" on localhost, each
    ``--nnodes 2 --nproc-per-node 1`` meeting at one c10d rendezvous endpoint, each with its own
    --out (as two machines' disks). Exactly one node holds global rank 0 and writes; its records
    equal the single-process run's (float64, SVAG l = 2, 20 steps) within 1e-12."""
    extra = ["--epochs", "1", "--eval-every", "0.25", "--amplification", "2", "--dtype", "float64"]
    _single(tmp_path / "one", extra)
    port = _free_port()

    def node(i: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "svag-test",
                "-m", "svag", "train", "--out", str(tmp_path / f"node{i}"), *ARGS, *extra]  # fmt: skip

    nodes = [subprocess.Popen(node(i), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in nodes:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"a node exited {proc.returncode}:\n{err[-4000:]}"
    written = [tmp_path / f"node{i}" for i in range(2) if (tmp_path / f"node{i}" / "metrics.jsonl").is_file()]
    assert len(written) == 1
    assert json.loads((written[0] / "env.json").read_text())["processes"] == 2
    a, b = _rows(tmp_path / "one"), _rows(written[0])
    assert a[-1]["step"] == 20
    assert _max_diff(a, b) <= 1e-12


def test_resume_under_two_processes(tmp_path):
    """A single-process run killed mid-way, resumed with two processes, equals the uninterrupted run."""
    extra = ["--epochs", "4", "--eval-every", "0.25", "--checkpoint-every", "0.5", "--amplification", "2",
             "--dtype", "float64"]  # fmt: skip
    _single(tmp_path / "ref", extra)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "svag", "train", "--out", str(out), *ARGS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() or (out / "metrics.jsonl").read_text().count("\n") < 6:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _torchrun(out, extra, resume=True)
    assert _max_diff(_rows(tmp_path / "ref"), _rows(out)) <= 1e-12


def test_sync_bn_needs_gpu_and_batch_must_divide(tmp_path):
    bn = _torchrun(tmp_path / "bn", ["--epochs", "1", "--norm", "bn", "--sync-bn", "true"], check=False)
    assert bn.returncode != 0 and "--sync-bn needs GPUs" in bn.stderr
    odd = _torchrun(tmp_path / "odd", ["--epochs", "1", "--batch-size", "33"], check=False)
    assert odd.returncode != 0 and "batch_size must be divisible by the number of processes 2, got 33" in odd.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("not a run")
    full = _torchrun(tmp_path / "full", ["--epochs", "1"], check=False)
    # every process checks the folder before any collective and says so in one line (the launcher
    # may stop the slower one first, so at least one line), and none waits for a peer that left
    assert full.returncode != 0 and "is not empty (it holds" in full.stderr and "pass --resume" in full.stderr, (
        full.stderr
    )
    assert "Connection closed" not in full.stderr


@pytest.mark.parametrize("joined", [True, False])
def test_finish_worker_exits_with_the_code_and_flushed_output_only_in_a_worker(joined):
    code = (
        f"import svag.runner.distributed as d; d._joined = {joined}; print('written', end=''); d.finish_worker(3); "
        "print(' returned', end='')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == ((3, "written") if joined else (0, "written returned"))


def test_shard_slices_global_batch():
    import torch

    idx = torch.arange(8)
    parts = [Dist(rank=r, world=2).shard(idx) for r in range(2)]
    assert torch.equal(torch.cat(parts), idx)
    assert Dist().shard(idx) is idx
