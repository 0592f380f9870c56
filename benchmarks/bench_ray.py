"""Ray's cost on a sweep, and the time a lost worker costs (BENCHMARKS.md, "Sweeps on Ray").

1. The same 8-run ``svag compare`` sweep (l = 1, 2, 4, 8 × 2 seeds, MNIST-1D MLP, seeds run one
   per job) three ways: ``--jobs 2`` (two local worker processes), ``--cluster ray --jobs 2`` (an
   embedded 2-CPU Ray instance started by the command itself) and ``--cluster ray --address`` on
   a 2-CPU Ray cluster already running (started here before the timing). Each is a whole ``svag``
   process, wall clock from start to exit; :data:`ROUNDS` interleaved rounds (the order rotates),
   and Ray's overhead is ``(ray − local) / ray`` (its share of the Ray sweep's wall time) from the
   medians.
2. A lost worker: one long run on the running cluster; its worker is SIGKILLed after a quarter of
   its records; the times from the kill until the retried task has resumed from the checkpoint
   (its ``status.json`` rewritten ``running``) and until its next new record.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ray.py [ROUNDS]`` (3 rounds: about 5 minutes on 2
idle cores).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

SWEEP = ["--ls", "1,2,4,8", "--seeds", "2", "--ensemble", "off", "--epochs", "2", "--eval-every", "1",
         "--n-train", "1000", "--no-progress"]  # fmt: skip
ROUNDS = 3
LONG = ["--ls", "4", "--seeds", "1", "--epochs", "12", "--eval-every", "0.25", "--checkpoint-every", "0.5",
        "--n-train", "2000", "--no-progress"]  # fmt: skip
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def svag(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "svag", "--threads", "1", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def timed(*args: str) -> float:
    start = time.perf_counter()
    proc = svag(*args)
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"svag {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return round(time.perf_counter() - start, 1)


def worker_pid(task: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[0].strip() == f"ray::{task}".encode():
                    return int(entry.name)
            except OSError:
                continue
    return None


def lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def kill_and_resume(root: Path, address: str) -> tuple[float, float]:
    """Seconds from the SIGKILL of a run's worker to its resumption, and to its next record."""
    folder = root / "long" / "l4_seed0"
    proc = svag("compare", "--out", str(root / "long"), *LONG, "--cluster", "ray", "--address", address)
    total = 12 * 4 + 1
    while lines(folder / "metrics.jsonl") < total // 4 or not (folder / "checkpoint.pt").is_file():
        if proc.poll() is not None:
            raise SystemExit(f"the long run ended before the kill:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.005)
    pid = worker_pid("svag:l4_seed0")
    seen = lines(folder / "metrics.jsonl")
    os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    status = (folder / "status.json").stat().st_mtime_ns
    resumed = record = None
    while record is None:
        now = time.perf_counter()
        if resumed is None and (folder / "status.json").stat().st_mtime_ns != status:
            resumed = now - killed
        if resumed is not None and lines(folder / "metrics.jsonl") > seen:
            record = now - killed
        time.sleep(0.005)
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the killed run's sweep exited {proc.returncode}:\n{err[-3000:]}")
    return resumed, record


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    ways = {"local": ["--jobs", "2"], "embedded": ["--cluster", "ray", "--jobs", "2"], "joined": []}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        root = Path(tmp)
        os.environ.update({k: ENV[k] for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")})
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(root / "ray"), log_to_driver=False)
        try:
            address = ray.get_runtime_context().gcs_address
            ways["joined"] = ["--cluster", "ray", "--address", address]
            names = list(ways)
            for r in range(rounds):
                for name in names[r % 3 :] + names[: r % 3]:
                    times[name].append(timed("compare", "--out", str(root / f"{name}{r}"), *SWEEP, *ways[name]))
            resumed, record = kill_and_resume(root, address)
        finally:
            ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"8-run compare sweep (l = 1,2,4,8 x 2 seeds, MNIST-1D MLP, n = 1000, 2 epochs), {rounds} rounds:")
    print(f"  --jobs 2 (local processes)               median {med['local']:6.1f} s  rounds {times['local']}")
    for name, label in (("embedded", "--jobs 2 (embedded Ray)"), ("joined", "--address (running 2 CPUs)")):
        share = (med[name] - med["local"]) / med[name]
        print(f"  --cluster ray {label:<27} median {med[name]:6.1f} s  Ray's share {share:+.1%}  rounds {times[name]}")
    print("worker SIGKILLed at a quarter of a 12-epoch l = 4 run (checkpoint every 0.5 epoch):")
    print(f"  kill -> retried task resumed from its checkpoint: {resumed:.2f} s; -> its next record: {record:.2f} s")


if __name__ == "__main__":
    main()
