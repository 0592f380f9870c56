"""Helpers shared by many test files: the repository's paths, a repository file as a module, a tiny
classifier and its loss. Tests import them (``from helpers import tiny_mlp``): ``tests/`` is on
pytest's ``pythonpath``."""

import dataclasses
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
FIXTURES = ROOT / "tests" / "fixtures"
"""Run folders written by earlier releases (``release_0_1_0``, ``release_0_2_0``)."""
RELEASES = ("release_0_1_0", "release_0_2_0")


def repo_module(relpath: str, name: str) -> ModuleType:
    """A file of the repository (``run.py``, a script, an example) as a module named ``name``, kept in
    ``sys.modules`` (dataclasses and pickle look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tiny_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A 5-7-3 tanh MLP initialised from ``torch.manual_seed(seed)``, in ``dtype``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def tiny_batch(seed: int, dtype: torch.dtype = torch.float64, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs (5 features) and labels (3 classes) drawn from ``seed``: :func:`tiny_mlp`'s data."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def tiny_loss(model: nn.Module, seed: int) -> torch.Tensor:
    """The mean cross-entropy of ``model`` on :func:`tiny_batch` ``(seed)``."""
    x, y = tiny_batch(seed, next(model.parameters()).dtype)
    return nn.functional.cross_entropy(model(x), y)


def train_side_by_side(pairs, steps: int, start: int = 0) -> None:
    """Feed every ``(model, optimizer)`` pair the same :func:`tiny_loss` of batches ``start, ..., start +
    steps − 1``, one optimizer step each: two optimizers compared step for step."""
    for k in range(start, start + steps):
        for model, opt in pairs:
            opt.zero_grad()
            tiny_loss(model, k).backward()
            opt.step()


def assert_same_parameters(a, b) -> None:
    """Every parameter of module ``a`` equals its twin in ``b``, bit for bit."""
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def strip_wall_time(rows: list[dict]) -> list[dict]:
    """Records without ``wall_time``, the one field that differs between two equal runs."""
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def count_lines(path: Path) -> int:
    """How many lines (records) a JSONL file holds so far; 0 while it does not exist."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def train_cmd(out: Path, cfg, *extra: str) -> list[str]:
    """``python -m svag train --out OUT --device cpu --no-progress`` with ``--field value`` for each
    field of the ``RunConfig`` ``cfg`` that differs from its default, then ``extra``: ``cfg`` as a
    real run in its own process."""
    from svag.config import RunConfig

    cmd = [sys.executable, "-m", "svag", "train", "--out", str(out), "--device", "cpu", "--no-progress"]
    default = RunConfig()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value != getattr(default, f.name) and f.name != "device":
            assert isinstance(value, (str, int, float)), f"{f.name}={value!r}: give it as an extra argument"
            cmd += [f"--{f.name.replace('_', '-')}", str(value)]
    return [*cmd, *extra]


def start_until(cmd: list[str], run_dir: Path, target: int, rng) -> subprocess.Popen:
    """Start ``cmd`` in its own session and return it, still running, once ``run_dir`` holds ``target``
    records (plus up to 50 ms drawn from ``rng``, a ``random.Random``)."""
    # no pipes: a killed run's orphaned workers would hold them open until they notice (up to 5 s)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and count_lines(run_dir / "metrics.jsonl") < target:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.05))
    assert proc.poll() is None, "the run ended before the signal"
    return proc


NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def same_print(got: str, shown: str) -> str | None:
    """None if ``got`` reads as ``shown``: the same words and punctuation, each number equal to the one
    shown at the precision shown (half a unit of its last digit, plus 1% for another CPU's rounding).
    Otherwise the first difference, for the failure message."""
    got_lines, shown_lines = got.strip().splitlines(), shown.strip().splitlines()
    if len(got_lines) != len(shown_lines):
        return f"{len(got_lines)} lines printed, {len(shown_lines)} shown"
    for g, w in zip(got_lines, shown_lines):
        if NUMBER.split(g) != NUMBER.split(w):
            return f"printed {g!r}, shown {w!r}"
        for a, b in zip(NUMBER.findall(g), NUMBER.findall(w)):
            digits = len(b.split("e")[0].split(".")[1]) if "." in b.split("e")[0] else 0
            scale = 10 ** int(b.split("e")[1]) if "e" in b.lower() else 1
            if abs(float(a) - float(b)) > (0.5 * 10**-digits) * scale + 0.01 * abs(float(b)):
                return f"printed {a} where the README shows {b}: {g!r}"
    return None


def interrupt_at_step(monkeypatch, cfg, out, step: int, **run_kwargs) -> None:
    """Run ``cfg`` into ``out`` and stop it by SIGINT right after its optimizer step ``step`` (honoured at the loop's
    next consistent point: it checkpoints and raises ``RunInterrupted``); the loop is left as it was."""
    import os
    import signal

    import pytest

    from svag import runner
    from svag.runner.loop import Group

    original = Group.step

    def step_then_sigint(self):
        out_ = original(self)
        if self.counters.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out_

    monkeypatch.setattr(Group, "step", step_then_sigint)
    try:
        with pytest.raises(runner.RunInterrupted):
            runner.run(cfg, out, progress=False, **run_kwargs)
    finally:
        monkeypatch.setattr(Group, "step", original)


def max_replica_error(ens, singles) -> float:
    """The largest absolute difference between replica ``k`` of a stacked ensemble and ``singles[k]``, over every
    entry of their state dicts (the same keys asserted)."""
    err = 0.0
    for k, single in enumerate(singles):
        got, ref = ens.replica_state_dict(k), single.state_dict()
        assert got.keys() == ref.keys()
        err = max(err, max(float((got[n].double() - ref[n].double()).abs().max()) for n in ref))
    return err


def train_ensemble_and_singles(ens, singles, shape, steps: int, l: float, dtype=None) -> None:
    """``steps`` SVAG steps (lr 0.1, weight decay 5e-4, amplification ``l``) of a stacked ensemble ``ens`` and of
    each plain model of ``singles`` on the same batches: replica ``k`` sees what ``singles[k]`` sees."""
    from svag import SVAG, train_step
    from svag.runner.engine import EnsembleEngine, SingleEngine
    from svag.task import CrossEntropy

    eng = EnsembleEngine(ens, CrossEntropy())
    opt = SVAG(eng.params, lr=0.1, l=l, weight_decay=5e-4)
    ref = [SingleEngine(m, CrossEntropy()) for m in singles]
    ref_opts = [SVAG(e.params, lr=0.1, l=l, weight_decay=5e-4) for e in ref]
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        batches = [[(torch.randn(8, *shape, generator=g, dtype=dtype), torch.randint(0, 10, (8,), generator=g))
                    for _ in range(2)] for _ in singles]  # fmt: skip
        train_step(opt, eng.loss, eng.stack([b[0] for b in batches]), eng.stack([b[1] for b in batches]))
        for k, (e, o) in enumerate(zip(ref, ref_opts)):
            train_step(o, e.loss, *batches[k])
