"""Rough edges of the Python API (issue 27): a result's repr is its headline, not its tables; the verdict
lines print from a result; every call that trains takes ``threads=``; data given as NumPy arrays is taken
(``torch.from_numpy``, then the tensors' dtype rules); every message about a plug-in's data names it."""

import inspect

import numpy as np
import pytest
import torch
from torch import nn

import svag
from svag import api
from svag import sweepfolder as sf
from svag.commands.compare import print_verdict
from svag.data import DataError
from svag.data.plugin import as_data_spec, load_data

TINY = dict(n_train=256, n_test=128)


def make_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.Tanh(), nn.Linear(16, num_classes))


def _rows(n: int, **extra) -> list[dict]:
    return [{"step": i, "test_acc": 0.5, "test_loss": 1.0, **extra} for i in range(n)]


def _verdict_rows() -> list[dict]:
    rows = []
    for metric, outcome in (("test_loss", "follows"), ("test_acc", "inconclusive"), ("gn_ratio", None)):
        for where, other in (("mid", "departs"), ("end", outcome)):
            rows.append({"metric": metric, "where": where, "gap": 0.1, "outcome": other})
    return rows


def test_reprs_show_the_headline_not_the_tables(tmp_path):
    """A comparison of 8 runs with 10 000 records each printed 87 000 characters; its repr is now the folder,
    the runs' statuses, the end verdict of each metric with one, and the size of each table."""
    statuses = {f"l{l}_seed{s}": "completed" for l in (1, 2) for s in range(4)}
    statuses["l2_seed3"] = "diverged"
    report = {"metrics": {"test_loss": {"rows": [{"means": list(range(1000))}] * 50}}}
    cmp = api.CompareResult(tmp_path, statuses, _rows(10_000), _rows(4), _verdict_rows(), report=report)
    text = repr(cmp)
    assert len(text) < 400, text
    assert text.startswith("CompareResult(") and repr(tmp_path) in text
    assert "'test_loss': 'follows'" in text and "'test_acc': 'inconclusive'" in text and "gn_ratio" not in text
    assert "7 completed" in text and "1 diverged" in text and "10000 rows" in text
    noted = api.CompareResult(tmp_path, {"l1_seed0": "completed"}, [], [], note="needs at least 2 seeds, got 1")
    assert "note='needs at least 2 seeds, got 1'" in repr(noted)

    lsr = api.LSRResult(tmp_path, 512.0, 40.0, 300.0, {"big": list(range(10_000))},
                        [{"batch_size": 32, "verdict": "holds"}] * 3, [{"run": "B32"}] * 3, _rows(10_000))  # fmt: skip
    others = [
        api.TrainResult(tmp_path, "completed", _rows(10_000)),
        lsr,
        api.ScaleResult(tmp_path, "linear", statuses, _rows(5), _rows(10_000)),
        api.RulesResult(tmp_path, "linear held", _rows(9), {"big": list(range(10_000))}, statuses, _rows(10_000)),
        api.CBSResult(tmp_path, "linear", statuses, _rows(10_000)),
    ]
    for result in others:
        text = repr(result)
        assert len(text) < 300 and text.startswith(type(result).__name__ + "(") and repr(tmp_path) in text, text
    assert "B_star=512.0" in repr(lsr) and "B_star_se=40.0" in repr(lsr)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A tiny comparison through the API (l = 1, 2; two seeds; one epoch of 256 samples; one thread)."""
    out = tmp_path_factory.mktemp("compare")
    return svag.compare(make_model, "mnist1d", out=out, ls=(1, 2), seeds=2, epochs=1, eval_every=0.5, threads=1,
                        **TINY)  # fmt: skip


def test_compare_draws_the_sgd_vs_svag_figure(compared):
    """``plots=True`` draws compare.png (each metric against effective steps per l) beside verdicts.png."""
    assert (compared.out_dir / sf.COMPARE_PNG).is_file() and (compared.out_dir / sf.VERDICTS_PNG).is_file()


def test_print_verdicts_prints_what_svag_compare_prints(compared, capsys):
    """``result.print_verdicts()``: the header and the verdict lines that `svag compare` prints for the same
    folder (one owner for the text: svag.analysis.report_text); ``verdict_lines()`` returns those lines."""
    assert compared.report is not None
    compared.print_verdicts()
    printed = capsys.readouterr().out.splitlines()
    print_verdict(compared.out_dir, list(compared.statuses), {})
    command = capsys.readouterr().out.splitlines()
    assert printed == command[:-1] and command[-1].startswith("verdicts: ")  # the command adds where its files are
    assert [f"  {line}" for line in compared.verdict_lines()] == printed[1:]
    assert compared.verdict_lines() and all(":" in line for line in compared.verdict_lines())
    mid = compared.verdict_lines("mid")
    assert mid and mid != compared.verdict_lines()


def test_print_verdicts_without_a_verdict_says_why(tmp_path, capsys):
    res = api.CompareResult(tmp_path, {"l1_seed0": "completed"}, [], [], note="the verdict needs at least 2 seeds")
    res.print_verdicts()
    assert capsys.readouterr().out == "no verdict: the verdict needs at least 2 seeds\n"
    assert res.verdict_lines() == []
    with pytest.raises(ValueError, match="where must be one of mid, end, got 'start'"):
        api.CompareResult(tmp_path, {}, [], [], report={"points": {"mid": 0, "end": 1}}).verdict_lines("start")


def test_every_call_that_trains_takes_threads():
    """Each function of svag.api that trains (all of its public functions) takes ``threads=``, keyword-only or
    as its last parameter (``run``, ``run_replicas``)."""
    functions = [getattr(api, n) for n in api.__all__ if inspect.isfunction(getattr(api, n))]
    assert {f.__name__ for f in functions} >= {"train", "compare", "lsr_test", "scale", "cbs", "run", "run_replicas"}
    for fn in functions:
        params = inspect.signature(fn).parameters
        assert "threads" in params and params["threads"].default is None, fn.__name__


def _numpy_splits(rng, n=(64, 32), x_dtype=np.float64, y_dtype=np.int64):
    splits = []
    for m in n:
        splits.append((rng.standard_normal((m, 1, 40)).astype(x_dtype), rng.integers(0, 3, m).astype(y_dtype)))
    return tuple(splits)


def test_numpy_arrays_are_taken_as_torch_from_numpy_gives_them():
    """NumPy pairs (float64 inputs, int32 labels) give the data set of the same values as tensors: inputs as
    float32, labels int64 (the tensors' rules); float labels and arrays of objects are refused in one line."""
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = _numpy_splits(rng, y_dtype=np.int32)
    ds = load_data(as_data_spec(((tx, ty), (vx, vy))), n_train=None, n_test=None, seed=0, root=None)
    as_tensors = ((torch.from_numpy(tx), torch.from_numpy(ty)), (torch.from_numpy(vx), torch.from_numpy(vy)))
    ref = load_data(as_data_spec(as_tensors), n_train=None, n_test=None, seed=0, root=None)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64 and ds.num_classes == ref.num_classes
    for a, b in ((ds.train_x, ref.train_x), (ds.train_y, ref.train_y), (ds.test_x, ref.test_x)):
        assert torch.equal(a, b)
    assert torch.equal(ds.train_x, torch.from_numpy(tx).float())
    flipped = (tx[::-1], ty[::-1])  # negative strides, read-only: torch.from_numpy alone refuses or warns
    flipped[0].flags.writeable = False
    ds = load_data(as_data_spec((flipped, (vx, vy))), n_train=None, n_test=None, seed=0, root=None)
    assert torch.equal(ds.train_x, torch.from_numpy(tx[::-1].copy()).float())
    with pytest.raises(DataError, match=r"data 'python:data': train labels are torch.float64 of shape \(64,\)"):
        as_data_spec(((tx, ty.astype(np.float64)), (vx, vy)))
    words = np.array([["a"] * 40] * 64, dtype=object)
    with pytest.raises(DataError, match=r"data 'python:data': the train inputs are a NumPy array of dtype object"):
        as_data_spec(((words, ty), (vx, vy)))


def test_train_takes_numpy_arrays(tmp_path):
    rng = np.random.default_rng(1)
    data = _numpy_splits(rng, n=(96, 32))
    res = svag.train(make_model, data, out=tmp_path / "run", epochs=1, batch_size=16, threads=1)
    assert res.status == "completed"
    tensors = tuple((torch.from_numpy(x), torch.from_numpy(y)) for x, y in data)
    same = svag.train(make_model, tensors, out=tmp_path / "same", epochs=1, batch_size=16, threads=1)
    strip = [{k: v for k, v in r.items() if k != "wall_time"} for r in res.records]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time"} for r in same.records]


@pytest.mark.parametrize(
    "train, test, message",
    [
        ((torch.randn(64, 1, 40), torch.randint(0, 3, (60,))), None,
         r"^data 'python:data': the train split has 64 inputs and 60 labels; expected one label per input$"),
        ((torch.randn(64), torch.randint(0, 3, (64,))), None,
         r"^data 'python:data': the train inputs have shape \(64,\); expected \(n, \*input_shape\)"),
        (None, (torch.randn(32, 1, 30), torch.randint(0, 3, (32,))),
         r"^data 'python:data': train and test samples differ in shape: \(1, 40\) vs \(1, 30\)$"),
    ],
)  # fmt: skip
def test_shape_messages_name_the_data(train, test, message):
    """Every message about a plug-in's data starts ``data '…':`` (the mismatched shapes did not)."""
    ok = (torch.randn(64, 1, 40), torch.randint(0, 3, (64,)))
    with pytest.raises(DataError, match=message):
        text = as_data_spec((train or ok, test or (ok[0][:32], ok[1][:32])))
        load_data(text, n_train=None, n_test=None, seed=0, root=None)
