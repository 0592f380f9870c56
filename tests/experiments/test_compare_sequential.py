"""``svag compare --until-decided`` (svag.experiments.sequential, issue 26 §2): rounds of seeds that continue
the same seed tree, resume after an interruption, the CPU budget, and its arguments refused in one line
(CLI: exit status 2; API: ValueError/TypeError) before any work. Tiny teacher-student problems, float32 as
the runner trains them; the resumed report is compared with an uninterrupted one exactly."""

import re

import pytest

import svag
from svag import sweepfolder
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.sequential import decidable, run_until_decided
from svag.records import read_json
from svag.runfolder import RunFolder
from svag.runner import loop

TINY = dict(data="teacher-student", n_train=256, n_test=128, batch_size=16, device="cpu", epochs=0.5)
TINY_ARGS = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16",
             "--device", "cpu", "--epochs", "0.5", "--no-progress"]  # fmt: skip
NEVER = {"test_loss": 1e-12}  # a margin no interval fits inside or beyond: the rounds run to the last look


def _rounds(out, **kw):
    kw = {"first": 3, "max_seeds": 6, "decide": ["test_loss"], "margins": NEVER, "progress": False,
          "ensemble": "off", "log": lambda m: None, **kw}  # fmt: skip
    return run_until_decided(RunConfig(**TINY).validate(), [1.0, 2.0, 4.0], out, **kw)


def test_rounds_continue_the_seed_tree_and_resume_after_an_interruption(tmp_path):
    whole = _rounds(tmp_path / "whole")
    assert [look["seeds"] for look in whole["looks"]] == [3, 6]
    assert sorted(whole["statuses"]) == sorted(f"l{l}_seed{s}" for l in (1, 2, 4) for s in range(6))
    assert whole["metrics"]["test_loss"]["outcome"] == "inconclusive" and "last look" in whole["stopped"]
    assert (tmp_path / "whole" / sweepfolder.SEQUENTIAL_MD).read_text().count("\n| ") == 3  # header + 2 looks

    def interrupt(message):
        if message.startswith("round 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _rounds(tmp_path / "cut", log=interrupt)
    first = RunFolder(tmp_path / "cut" / "l1_seed0").load().records
    said = []
    resumed = _rounds(tmp_path / "cut", resume=True, log=said.append)
    assert any("already completed" in m for m in said), said  # round 1's seeds are reused, not retrained
    assert RunFolder(tmp_path / "cut" / "l1_seed0").load().records == first
    for a, b in zip(whole["looks"], resumed["looks"]):  # the same seeds give the same looks, bit for bit
        assert a["metrics"]["test_loss"]["estimate"] == b["metrics"]["test_loss"]["estimate"]
        assert a["metrics"]["test_loss"]["interval"] == b["metrics"]["test_loss"]["interval"]
    assert read_json(tmp_path / "cut" / sweepfolder.SEQUENTIAL_JSON)["looks_planned"] == [3, 6]


def test_a_decided_metric_stops_the_rounds(tmp_path):
    report = _rounds(tmp_path, margins={"test_loss": 1e6})  # any interval lies inside ±1e6
    assert [look["seeds"] for look in report["looks"]] == [3]
    assert report["metrics"]["test_loss"]["outcome"] == "follows"
    assert report["metrics"]["test_loss"]["decided_at"] == 3 and report["stopped"] == "every chosen metric is decided"


def test_the_cpu_budget_stops_before_a_round_it_cannot_pay(tmp_path):
    report = _rounds(tmp_path, max_cpu_minutes=1e-6)
    assert [look["seeds"] for look in report["looks"]] == [3]
    assert report["stopped"].startswith("the CPU budget: the look at 6 seeds")
    assert not (tmp_path / "l1_seed3").exists()


def test_the_command_prints_the_design_and_what_was_decided(tmp_path, capsys):
    argv = ["compare", "--out", str(tmp_path), "--ls", "1,2,4", "--until-decided", "--max-seeds", "3",
            "--decide", "test_loss", "--margin", "test_loss=1e6", "--ensemble", "off", *TINY_ARGS]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Pocock-type repeated confidence intervals (Jennison & Turnbull 1989" in out
    assert "test_loss: follows (decided at 3 seeds per l)" in out and "decided: test_loss" in out


def test_the_api_returns_the_sequential_report(tmp_path):
    res = svag.compare(out=tmp_path, ls=(1, 2, 4), until_decided=True, max_seeds=3, decide="test_loss",
                       margins={"test_loss": 1e6}, ensemble="off", **TINY)  # fmt: skip
    assert res.sequential["metrics"]["test_loss"]["outcome"] == "follows" and res.verdicts == []
    assert len(res.statuses) == 9


def test_decidable_metrics_are_those_with_a_margin():
    assert "test_loss" in decidable() and "gn_ratio" not in decidable()
    assert "gn_ratio" in decidable({"gn_ratio": 0.1})


# ---------------------------------------------------------------------------------------------- refused


@pytest.fixture
def tripwire(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run was built: the bad argument was not refused before the work started")

    monkeypatch.setattr(loop.Group, "__init__", refuse)


CLI_BAD = [
    (["--ls", "1,2"], "needs at least 3 values of l with l = 1 among them (to guard the extrapolation"),
    (["--ls", "2,4,8"], "got --ls=2, 4, 8"),
    (["--seeds", "2"], "--seeds must be an integer >= 3, got 2"),
    (["--max-seeds", "2"], "--max-seeds must be an integer >= 3, got 2"),
    (["--max-cpu-minutes", "0"], "--max-cpu-minutes must be a finite number > 0, got 0.0"),
    (["--decide", "gn_ratio"], "--decide must name metrics with a margin"),
    (["--decide", "test_loss,test_loss"], "values must be distinct"),
    (["--fit", "two_point"], "--until-decided fits the ladder itself"),
    (["--unpaired"], "drop --unpaired"),
]


@pytest.mark.parametrize("extra, message", CLI_BAD, ids=[" ".join(e) for e, _ in CLI_BAD])
def test_the_command_refuses_a_bad_sequential_argument(tmp_path, capsys, tripwire, extra, message):
    argv = ["compare", "--out", str(tmp_path / "out"), "--until-decided", *TINY_ARGS, *extra]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], (code, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_sequential_flags_need_until_decided(tmp_path, capsys, tripwire):
    code = main(["compare", "--out", str(tmp_path), "--decide", "test_loss", *TINY_ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "belong to --until-decided" in err[0], err


API_BAD = [
    (dict(ls=(1, 2)), ValueError, "needs at least 3 values of l"),
    (dict(seeds=2), ValueError, "seeds must be an integer >= 3, got 2"),
    (dict(max_seeds=2), ValueError, "max_seeds must be an integer >= 3, got 2"),
    (dict(max_cpu_minutes=-1), ValueError, "max_cpu_minutes must be a finite number > 0, got -1"),
    (dict(decide=["nope"]), ValueError, "decide must name metrics with a margin"),
    (dict(decide=3), TypeError, "decide must be a list of metric names"),
    (dict(fit_ls=[1, 2]), ValueError, "until_decided fits the ladder itself"),
    (dict(until_decided="yes"), TypeError, "until_decided must be True or False, got 'yes'"),
    (dict(until_decided=False, max_seeds=8), ValueError, "belong to until_decided=True"),
]


@pytest.mark.parametrize("kwargs, error, message", API_BAD, ids=[repr(k) for k, _, _ in API_BAD])
def test_the_api_refuses_a_bad_sequential_argument(tmp_path, tripwire, kwargs, error, message):
    kwargs = {"ls": (1, 2, 4), "until_decided": True, **kwargs}
    with pytest.raises(error, match=re.escape(message)) as info:
        svag.compare(out=tmp_path / "out", **TINY, **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
