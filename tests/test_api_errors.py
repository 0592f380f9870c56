"""Bad arguments to the Python API (svag.api) are refused before any work: one line naming the keyword,
the value and what is valid, no run started, no folder made.

Each row is one bad call and a piece of its message. The run engine is replaced by a tripwire
(:class:`svag.runner.loop.Group`, which every run builds after its checks and its folder), so a call that
slipped past the checks fails the test at once instead of training.
"""

import math
import re

import pytest
from torch import nn

import svag
from svag.runner import loop

TINY = dict(n_train=256, n_test=128, epochs=1)
LSR = dict(n_train=256, n_test=128, epochs=3, milestones=(2.0,))


class Trained(Exception):
    """Raised by the tripwire: the call got as far as building a run."""


@pytest.fixture
def tripwire(monkeypatch):
    def refuse(*args, **kwargs):
        raise Trained("a run was built: the bad argument was not refused before the work started")

    monkeypatch.setattr(loop.Group, "__init__", refuse)


def _train(**kw):
    return svag.train(**{**TINY, **kw})


def _compare(**kw):
    return svag.compare(**{"ls": (1, 2), "seeds": 2, **TINY, **kw})


def _scale(**kw):
    return svag.scale(**{"batch_sizes": (64,), **TINY, **kw})


def _lsr(**kw):
    return svag.lsr_test(**{**LSR, **kw})


def _run(**kw):
    return svag.run(kw.pop("cfg", svag.RunConfig(**TINY)), kw.pop("out"), **kw)


def _replicas(**kw):
    out = kw.pop("out")
    cfg, seeds = kw.pop("cfg", svag.RunConfig(**TINY)), kw.pop("seeds", [0, 1])
    return svag.run_replicas(cfg, seeds, kw.pop("out_dirs", [out / "a", out / "b"]), **kw)


V = ValueError
T = TypeError
# (call, its keywords, the exception, a piece of its message)
BAD = [
    # train: its own keywords
    (_train, dict(resume="yes"), T, "resume must be True or False, got 'yes'"),
    (_train, dict(resume=1), T, "resume must be True or False, got 1"),
    (_train, dict(progress="no"), T, "progress must be True or False, got 'no'"),
    (_train, dict(out=None), T, "out must be a folder path (str or os.PathLike), got None"),
    (_train, dict(out=123), T, "out must be a folder path (str or os.PathLike), got 123"),
    (_train, dict(out=__file__), V, "exists and is not a folder"),
    (_train, dict(threads=-1), V, "threads must be an integer >= 0, got -1"),
    (_train, dict(threads=1.5), V, "threads must be an integer >= 0, got 1.5"),
    (_train, dict(threads=True), V, "threads must be an integer >= 0, got True"),
    (_train, dict(config=42), T, "expected a RunConfig or a dict of its fields, got int"),
    (_train, dict(config={"bogus": 1}), V, "unknown config field(s) ['bogus']"),
    (_train, dict(epoch=1), V, "unknown config field(s) ['epoch']"),
    # train: the plug-ins
    (_train, dict(model=nn.Linear(40, 10)), V, "is a Linear instance, a model already built; give its factory"),
    (_train, dict(model=123), V, "model 'python:int' is a int, not a callable"),
    (_train, dict(model="nonexistent"), V, "model must be one of"),
    (_train, dict(model="/nonexistent/nofile.py:f"), V, "no file /nonexistent/nofile.py"),
    (_train, dict(data="bogus"), V, "unknown data set 'bogus'"),
    (_train, dict(data=42), V, "data 'python:data' returned a int"),
    (_train, dict(loss="bogus"), V, "loss must be one of cross_entropy, mse or a plug-in"),
    (_train, dict(loss=3), V, "loss 'python:int' is a int"),
    # train: the config's fields (RunConfig.validate, as the command line)
    (_train, dict(lr="abc"), V, "lr must be a finite number > 0, got 'abc'"),
    (_train, dict(lr=-1), V, "lr must be a finite number > 0, got -1"),
    (_train, dict(lr=math.nan), V, "lr must be a finite number > 0, got nan"),
    (_train, dict(lr=math.inf), V, "lr must be a finite number > 0, got inf"),
    (_train, dict(lr=True), V, "lr must be a finite number > 0, got True"),
    (_train, dict(l=0.5), V, "l must be a finite real number >= 1, got 0.5"),
    (_train, dict(batch_size=0), V, "batch_size must be an integer > 0, got 0"),
    (_train, dict(batch_size=2.5), V, "batch_size must be an integer > 0, got 2.5"),
    (_train, dict(batch_size="32"), V, "batch_size must be an integer > 0, got '32'"),
    (_train, dict(epochs=0), V, "epochs must be a finite number > 0, got 0"),
    (_train, dict(betas=0.9, optimizer="adam"), V, "betas must be a sequence of numbers, e.g. (0.9, 0.999), got 0.9"),
    (_train, dict(betas="0.9", optimizer="adam"), V, "betas must be a sequence of numbers"),
    (_train, dict(betas=(0.9, "a"), optimizer="adam"), V, "betas must be a sequence of numbers"),
    (_train, dict(betas=(math.nan, math.nan), optimizer="adam"), V, "betas must be 2 number(s) in [0, 1) for adam"),
    (_train, dict(schedule="multistep", milestones=5), V, "milestones must be a sequence of numbers, e.g. (80, 120)"),
    (_train, dict(schedule="multistep", milestones=("a",)), V, "milestones must be a sequence of numbers"),
    (_train, dict(noise_window="0,1"), V, "noise_window must be a sequence of numbers, e.g. (8, 10), got '0,1'"),
    (_train, dict(noise_window=(1,)), V, "noise_window must be START,END epochs"),
    (_train, dict(momentum="0.9"), V, "momentum must be a number in [0, 1), got '0.9'"),
    (_train, dict(momentum=math.nan), V, "momentum must be in [0, 1), got nan"),
    (_train, dict(noise_fraction="x"), V, "noise_fraction must be a number in [0, 1], got 'x'"),
    (_train, dict(gamma=2), V, "gamma must be a decay factor in (0, 1], got 2"),
    (_train, dict(eps="x"), V, "eps must be a finite number >= 0, got 'x'"),
    (_train, dict(seed=-1), V, "seed must be an integer >= 0, got -1"),
    (_train, dict(seed="1"), V, "seed must be an integer >= 0, got '1'"),
    (_train, dict(data_seed=-1), V, "data_seed must be an integer >= 0, got -1"),
    (_train, dict(data_seed=1.5), V, "data_seed must be an integer >= 0, got 1.5"),
    (_train, dict(n_train=0), V, "n_train must be an integer > 0, got 0"),
    (_train, dict(norm="bogus"), V, "norm must be one of ('bn', 'gn', 'none'), got 'bogus'"),
    (_train, dict(scale_invariant="yes"), V, "scale_invariant must be True or False, got 'yes'"),
    (_train, dict(sync_bn="no"), V, "sync_bn must be True or False, got 'no'"),
    (_train, dict(optimizer="bogus"), V, "optimizer must be one of sgd, adam, adamw, rmsprop, got 'bogus'"),
    (_train, dict(schedule="bogus"), V, "schedule must be one of constant, multistep, cosine, triangle"),
    (_train, dict(cycles=0, schedule="triangle"), V, "cycles must be an integer > 0, got 0"),
    (_train, dict(noise_batches=1), V, "noise_batches must be 0 (P1's max(200, 12800 // B)) or an integer in [2"),
    (_train, dict(device="bogus"), V, "device must be auto, cpu, cuda[:N] or mps, got 'bogus'"),
    (_train, dict(dtype="float16"), V, "dtype must be float32 or float64, got 'float16'"),
    (_train, dict(tensorboard=1), V, "tensorboard must be a folder path (text; empty: off), got 1"),
    (_train, dict(data_root=1), V, "data_root must be a folder path (text) or None, got 1"),
    # compare
    (_compare, dict(ls="1,2"), T, "ls must be a list of numbers, e.g. (1, 2, 4, 8), got '1,2'"),
    (_compare, dict(ls=2), T, "ls must be a list of numbers"),
    (_compare, dict(ls=None), T, "ls must be a list of numbers"),
    (_compare, dict(ls=()), V, "ls must list at least one l >= 1, got none"),
    (_compare, dict(ls=(0.5, 1)), V, "ls must hold values of l, finite numbers >= 1, got (0.5, 1)"),
    (_compare, dict(ls=(1, "a")), V, "ls must hold values of l"),
    (_compare, dict(ls=(1, math.nan)), V, "ls must hold values of l"),
    (_compare, dict(ls=(1, True)), V, "ls must hold values of l"),
    (_compare, dict(ls=(1, 1)), V, "values must be distinct, got ls=(1, 1) (1 more than once)"),
    (_compare, dict(seeds=0), V, "seeds must be an integer >= 1, got 0"),
    (_compare, dict(seeds=2.0), V, "seeds must be an integer >= 1, got 2.0"),
    (_compare, dict(seeds=True), V, "seeds must be an integer >= 1, got True"),
    (_compare, dict(margins={"test_acc": "abc"}), V, "margins['test_acc']: margin must be a number or a percentage"),
    (_compare, dict(margins={"bogus": 0.1}), V, "margins: expected a metric, one of test_loss, test_acc"),
    (_compare, dict(margins={"test_acc": -1}), V, "margins['test_acc']: the margin of 'test_acc' must be a finite"),
    (_compare, dict(margins={"test_acc": math.nan}), V, "must be a finite number > 0, got nan"),
    (_compare, dict(margins="test_acc=0.1"), T, "margins must be a dict {metric: margin}"),
    (_compare, dict(fit="bogus"), V, "fit must be one of wls, two_point, got 'bogus'"),
    (_compare, dict(fit_ls=(1, 3)), V, "fit_ls must list at least 2 values of ls (1, 2), got 1, 3"),
    (_compare, dict(fit_ls=(1,)), V, "fit_ls must list at least 2 values of ls (1, 2), got 1"),
    (_compare, dict(fit_ls="1,2"), T, "fit_ls must be a list of numbers"),
    (_compare, dict(paired="yes"), T, "paired must be True, False or None, got 'yes'"),
    (_compare, dict(ngd="yes"), T, "ngd must be True or False, got 'yes'"),
    (_compare, dict(ngd=True, gradient_noise="gaussian"), V, "but gradient_noise is already gaussian"),
    (_compare, dict(ensemble="bogus"), V, "ensemble must be one of auto, on, off, got 'bogus'"),
    (_compare, dict(jobs=0), V, "jobs must be an integer >= 1, got 0"),
    (_compare, dict(jobs=True), V, "jobs must be an integer >= 1, got True"),
    (_compare, dict(jobs="2"), V, "jobs must be an integer >= 1, got '2'"),
    (_compare, dict(resume="yes"), T, "resume must be True or False, got 'yes'"),
    (_compare, dict(plots="no"), T, "plots must be True or False, got 'no'"),
    (_compare, dict(l=2), V, "compare sets l and seed itself (every l of ls, seeds 0..seeds-1): drop l=2"),
    (_compare, dict(seed=3), V, "drop seed=3"),
    (_compare, dict(model=nn.Linear(40, 10)), V, "is a Linear instance, a model already built"),
    (_compare, dict(threads="1"), V, "threads must be an integer >= 0, got '1'"),
    # scale
    (_scale, dict(batch_sizes=()), V, "batch_sizes needs at least one batch size, e.g. (32, 128, 512); got none"),
    (_scale, dict(batch_sizes=64), T, "batch_sizes must be a list of numbers"),
    (_scale, dict(batch_sizes="64,128"), T, "batch_sizes must be a list of numbers"),
    (_scale, dict(batch_sizes=(0,)), V, "batch sizes must be integers >= 1, got batch_sizes=(0,)"),
    (_scale, dict(batch_sizes=(64.5,)), V, "batch sizes must be integers >= 1"),
    (_scale, dict(batch_sizes=(True,)), V, "batch sizes must be integers >= 1"),
    (_scale, dict(batch_sizes=(64, 64)), V, "values must be distinct, got batch_sizes=(64, 64) (64 more than once)"),
    (
        _scale,
        dict(rule="bogus"),
        V,
        "rule must be one of auto, linear, sqrt, sqrt_lr, adamw_timescale, beta_halflife, got 'bogus'",
    ),
    (_scale, dict(rule="sqrt", optimizer="adam", batch_sizes=(100000,)), V, "is out of range for the sqrt rule"),
    (_scale, dict(seeds=0), V, "seeds must be an integer >= 1, got 0"),
    (_scale, dict(rule="sqrt", rules=("linear", "sqrt")), V, "give rule or rules, not both: got rule='sqrt'"),
    (_scale, dict(ensemble="x"), V, "ensemble must be one of auto, on, off, got 'x'"),
    (_scale, dict(jobs=0), V, "jobs must be an integer >= 1, got 0"),
    (_scale, dict(resume="yes"), T, "resume must be True or False"),
    (_scale, dict(l=2), V, "scale sets l and seed itself (l = 1, seeds 0..seeds-1): drop l=2"),
    (_scale, dict(threads=-1), V, "threads must be an integer >= 0, got -1"),
    # lsr_test
    (_lsr, dict(verify=64), T, "verify must be a list of numbers"),
    (_lsr, dict(verify="64"), T, "verify must be a list of numbers"),
    (_lsr, dict(verify=(0,)), V, "batch sizes must be integers >= 1, got verify=(0,)"),
    (_lsr, dict(verify=(64.5,)), V, "batch sizes must be integers >= 1"),
    (_lsr, dict(verify=(True,)), V, "batch sizes must be integers >= 1"),
    (_lsr, dict(verify=(64, 64)), V, "values must be distinct, got verify=(64, 64)"),
    (_lsr, dict(tau=0), V, "tau must be a finite number > 0, got 0"),
    (_lsr, dict(tau=math.nan), V, "tau must be a finite number > 0, got nan"),
    (_lsr, dict(tau="2"), V, "tau must be a finite number > 0, got '2'"),
    (_lsr, dict(tau=True), V, "tau must be a finite number > 0, got True"),
    (_lsr, dict(window=0), V, "window must be a fraction in (0, 1] of the first constant-LR phase, got 0"),
    (_lsr, dict(window=2), V, "window must be a fraction in (0, 1]"),
    (_lsr, dict(window="x"), V, "window must be a fraction in (0, 1]"),
    (_lsr, dict(seeds=0, verify=(64,)), V, "seeds must be an integer >= 1, got 0"),
    (_lsr, dict(seeds="2"), V, "seeds must be an integer >= 1, got '2'"),
    (_lsr, dict(ensemble="x"), V, "ensemble must be one of auto, on, off, got 'x'"),
    (_lsr, dict(jobs=0), V, "jobs must be an integer >= 1, got 0"),
    (_lsr, dict(resume="yes"), T, "resume must be True or False, got 'yes'"),
    (_lsr, dict(plots="no"), T, "plots must be True or False, got 'no'"),
    (_lsr, dict(noise="off"), V, "the LSR test needs noise='pairs' to measure G/N, got 'off'"),
    (_lsr, dict(schedule="cosine", milestones=()), V, "which has no constant-LR phase"),
    (_lsr, dict(model=nn.Linear(40, 10)), V, "is a Linear instance, a model already built"),
    (_lsr, dict(threads=True), V, "threads must be an integer >= 0, got True"),
    # run and run_replicas (the runner's, with the front's checks)
    (_run, dict(cfg=42), T, "expected a RunConfig or a dict of its fields, got int"),
    (_run, dict(cfg={"lr": -1}), V, "lr must be a finite number > 0, got -1"),
    (_run, dict(out=None), T, "out_dir must be a folder path (str or os.PathLike), got None"),
    (_run, dict(resume="yes"), T, "resume must be True or False, got 'yes'"),
    (_run, dict(threads=-1), V, "threads must be an integer >= 0, got -1"),
    (_replicas, dict(seeds=3), T, "seeds must be a list of seeds (integers >= 0), got 3"),
    (_replicas, dict(seeds=[0, "a"]), V, "seed must be an integer >= 0, got 'a'"),
    (_replicas, dict(seeds=[0, 1.5]), V, "seed must be an integer >= 0, got 1.5"),
    (_replicas, dict(seeds=[0, 0]), V, "values must be distinct, got seeds=[0, 0]"),
    (_replicas, dict(seeds=[]), V, "need one out_dir per seed, got 0 seeds and 2 folders"),
    (_replicas, dict(out_dirs="x"), T, "out_dirs must be a list of folders, one per seed, got 'x'"),
    (_replicas, dict(out_dirs=[None, None]), T, "out_dirs must be a folder path (str or os.PathLike), got None"),
    (_replicas, dict(progress="no"), T, "progress must be True or False, got 'no'"),
]


def _id(row) -> str:
    fn, kw = row[0], row[1]
    return f"{fn.__name__[1:]}-{','.join(f'{k}={v!r}' for k, v in kw.items())}"[:80]


@pytest.mark.parametrize("call, kwargs, error, message", BAD, ids=[_id(r) for r in BAD])
def test_a_bad_argument_is_refused_before_any_work(tmp_path, tripwire, call, kwargs, error, message):
    out = tmp_path / "out"
    kwargs = {"out": out, **kwargs}
    with pytest.raises(error, match=re.escape(message)) as info:
        call(**kwargs)
    assert "\n" not in str(info.value), "one line"
    # nothing is written: no run folder, no file (a sweep's driver may hold its folder, svag.sweepfolder.hold)
    assert [p for p in tmp_path.rglob("*") if p != out] == [], "nothing is written"
