"""The Python API for whole experiments (svag.api): train, compare, lsr_test and scale on Python
objects write what the CLI writes, return tables, and resume only with the same objects."""

import json
import sys
import types

import pytest
import torch
from torch import nn

import svag
from svag import sweepfolder as sf
from svag.cli import main
from svag.data import plugin as data_plugin
from svag.runfolder import RunFolder

TINY = dict(n_train=256, n_test=128)
TINY_ARGS = ["--n-train", "256", "--n-test", "128", "--no-progress"]


def make_model(input_shape, num_classes):
    """A user's model defined in a module: recorded as ``test_api:make_model``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 24), nn.Tanh(), nn.Linear(24, num_classes))


def mean_loss(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets, label_smoothing=0.1)


def _rows(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "run")} for r in records]


def test_train_on_objects_equals_the_cli_on_their_import_path(tmp_path):
    res = svag.train(make_model, "mnist1d", loss=mean_loss, out=tmp_path / "api", epochs=1, eval_every=0.5, **TINY)
    assert res.status == "completed" and len(res.records) == 3
    saved = RunFolder(tmp_path / "api").config()
    assert (saved["model"], saved["loss"]) == (f"{__name__}:make_model", f"{__name__}:mean_loss")
    model, loss = f"{__name__}:make_model", f"{__name__}:mean_loss"
    argv = ["train", "--out", str(tmp_path / "cli"), "--model", model, "--loss", loss]
    assert main([*argv, "--epochs", "1", "--eval-every", "0.5", *TINY_ARGS]) == 0
    assert _rows(res.records) == _rows(RunFolder(tmp_path / "cli").records())
    assert res.table() == res.records
    with pytest.raises(ValueError, match="unknown config field"):
        svag.train(make_model, "mnist1d", out=tmp_path / "x", epoch=1)


def test_python_objects_resume_only_with_the_same_objects(tmp_path, capsys):
    width = 8

    def local_model(input_shape, num_classes):  # defined in a function: not importable, registered
        return nn.Sequential(nn.Flatten(), nn.Linear(40, width), nn.ReLU(), nn.Linear(width, num_classes))

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 40, generator=gen), torch.randint(0, 3, (96,), generator=gen)
    data = ((x[:64], y[:64]), (x[64:], y[64:]))
    out = tmp_path / "run"
    res = svag.train(local_model, data, out=out, epochs=1, batch_size=16)
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["model"].startswith("python:") and saved["config"]["data"] == "python:data"
    assert svag.train(local_model, data, out=out, epochs=1, batch_size=16, resume=True).records == res.records

    first = local_model

    def local_model(input_shape, num_classes):  # same name, other source: refused
        return nn.Sequential(nn.Flatten(), nn.Linear(40, num_classes))

    with pytest.raises(ValueError, match=r"cannot resume .*the model plug-in python:.*local_model changed"):
        svag.train(local_model, data, out=out, epochs=1, batch_size=16, resume=True)
    other = ((x[:64] + 1, y[:64]), (x[64:], y[64:]))
    with pytest.raises(ValueError, match="the data plug-in python:data changed"):
        svag.train(first, other, out=out, epochs=1, batch_size=16, resume=True)
    with pytest.raises(ValueError, match="exist only in this process"):
        svag.compare(local_model, data, out=tmp_path / "c", jobs=2)
    svag.plugins._REGISTRY.clear()  # as a new process: the CLI cannot resume it
    data_plugin._DATA_CACHE.clear()
    code = main(["train", "--out", str(out), "--resume", "--model", saved["config"]["model"], "--data", "python:data",
                 "--epochs", "1", "--batch-size", "16", "--no-progress"])  # fmt: skip
    assert code == 2 and "was a Python object given to the Python API" in capsys.readouterr().err


def test_compare_returns_runs_summary_and_verdicts(tmp_path):
    res = svag.compare(make_model, "mnist1d", out=tmp_path, ls=(1, 2), seeds=2, epochs=1, eval_every=0.5, **TINY)
    assert set(res.statuses.values()) == {"completed"} and set(res.statuses) == {
        "l1_seed0", "l1_seed1", "l2_seed0", "l2_seed1"
    }  # fmt: skip
    assert len(res.records) == 4 * 3 and {r["run"] for r in res.records} == set(res.statuses)
    assert res.note is None and res.verdicts
    outcomes = {v["outcome"] for v in res.verdicts}
    assert outcomes <= {"follows", "departs", "inconclusive", None} and len(outcomes) > 1  # gn_ratio has no margin
    assert len({tuple(v) for v in res.verdicts}) == 1  # every row has the same columns (a DataFrame)
    assert {r["l"] for r in res.summary} == {1.0, 2.0}
    for name in (sf.SUMMARY_MD, sf.SUMMARY_CSV, sf.VERDICTS_MD, sf.VERDICTS_CSV, sf.VERDICTS_JSON, sf.VERDICTS_PNG):
        assert (tmp_path / name).is_file(), name
    assert res.table("verdicts") == res.verdicts
    with pytest.raises(ValueError, match="table must be one of records, summary, verdicts"):
        res.table("nope")


def test_lsr_test_equals_svag_lsr(tmp_path, monkeypatch):
    """Bit for bit, on PyTorch's two threads: `svag lsr` and svag.lsr_test both train on their default
    one thread (svag.experiments.defaults.LSR_THREADS; with 2 the sums of a step round otherwise), and
    the API puts the caller's thread count back."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # set, both would keep PyTorch's count instead
    torch.set_num_threads(2)  # the conftest's one thread would hide a missing default
    fields = dict(epochs=3, milestones=(2.0,), **TINY)
    res = svag.lsr_test(make_model, "mnist1d", out=tmp_path / "api", **fields)
    assert torch.get_num_threads() == 2
    argv = ["lsr", "--out", str(tmp_path / "cli"), "--model", f"{__name__}:make_model"]
    assert main([*argv, "--epochs", "3", "--milestones", "2", *TINY_ARGS]) == 0
    assert [RunFolder(tmp_path / d / "B32").env()["threads"] for d in ("api", "cli")] == [1, 1]
    cli = json.loads((tmp_path / "cli" / sf.LSR_JSON).read_text())
    assert res.B_star == cli["B_star"] and res.B_star_se == cli["B_star_se"] and res.B_simple == cli["B_simple"]
    assert [r["batch_size"] for r in res.table("verdicts")] == [32] and res.B_star > 0
    assert {r["run"] for r in res.records} == {"B32"}
    assert _rows(res.records) == _rows(RunFolder(tmp_path / "cli" / "B32").records())


def test_threads_are_set_for_the_call_and_put_back(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    svag.train(make_model, out=tmp_path / "two", epochs=0.5, eval_every=0.5, threads=2, **TINY)
    assert RunFolder(tmp_path / "two").env()["threads"] == 2 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    svag.train(make_model, out=tmp_path / "own", epochs=0.5, eval_every=0.5, **TINY)  # svag train's: PyTorch's
    assert RunFolder(tmp_path / "own").env()["threads"] == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads must be an integer >= 0, got -1"):
        svag.train(make_model, out=tmp_path / "bad", threads=-1, **TINY)
    assert torch.get_num_threads() == 2 and not (tmp_path / "bad").exists()


def test_lsr_test_runs_seeds_per_batch_size(tmp_path):
    res = svag.lsr_test(make_model, "mnist1d", out=tmp_path, verify=(64,), seeds=2, epochs=2, milestones=(1.0,), **TINY)
    assert {r["run"] for r in res.records} == {"B32", "B32_seed1", "B64", "B64_seed1"}
    with pytest.raises(ValueError, match="seeds must be an integer >= 1, got 0"):
        svag.lsr_test(make_model, "mnist1d", out=tmp_path / "bad", verify=(64,), seeds=0, **TINY)


def test_scale_sweep(tmp_path):
    res = svag.scale(make_model, "mnist1d", out=tmp_path, batch_sizes=(64,), epochs=1, **TINY)
    assert res.rule == "linear" and [r["batch_size"] for r in res.rows] == [32, 64]
    assert [r["lr"] for r in res.rows] == [0.1, 0.2]
    assert (tmp_path / sf.SCALE_SUMMARY_MD).is_file() and (tmp_path / sf.SCALE_PNG).is_file()


def test_to_pandas_imports_pandas_lazily(monkeypatch):
    res = svag.api.TrainResult(None, "completed", [{"a": 1.0, "b": 2}, {"a": 3.0, "b": 4}])
    monkeypatch.setitem(sys.modules, "pandas", None)  # not installed
    with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas, which svag does not install"):
        res.to_pandas()
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda rows: ("frame", rows)
    monkeypatch.setitem(sys.modules, "pandas", fake)
    assert res.to_pandas() == ("frame", res.records)
    assert "pandas" not in sys.modules or sys.modules["pandas"] is fake
