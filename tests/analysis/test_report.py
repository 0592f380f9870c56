"""The verdict of a folder of runs (svag.analysis.report): folders → values[t, l, seed], each
outcome, the NGD decomposition, the files, margins on the command line, and a real tiny compare.

Folders are fabricated through :class:`svag.runfolder.RunFolder` (the runner's own writer) with
values set by hand, so each outcome is known: no randomness except the seeded ``numpy`` draws
named in each test (``np.random.default_rng(0)``), whose tolerances are exact or wide.
"""

import argparse
import math
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from svag import sweepfolder as sf
from svag.analysis.plotting import plot_verdicts
from svag.analysis.report import (
    compute_verdicts,
    ladder_values,
    markdown,
    missing_requirement,
    read_verdicts,
    run_verdicts,
    verdict_lines,
    write_verdicts,
)
from svag.analysis.summary import markdown_table, summary_rows
from svag.cli import main
from svag.commands.compare import margin
from svag.config import RunConfig
from svag.records import encode
from svag.runfolder import RepeatedRecordsError, RunFolder, load_runs

BASE = RunConfig(data="teacher-student", n_train=256, n_test=128, batch_size=16, lr=0.1, epochs=2.0, eval_every=1.0)
TIMES = [0.0, 16.0, 32.0]  # the grid the fabricated runs declare (derived["eval_times"]), one epoch = 16


def fabricate(root, name, l, seed, values, *, noise="minibatch", status="completed", times=TIMES, cfg=BASE):
    """A run folder of ``cfg`` at ``l``, ``seed`` whose record ``j`` holds ``values[metric][j]``."""
    folder = RunFolder(root / name)
    config = replace(cfg, l=float(l), seed=seed, gradient_noise=noise).to_dict()
    derived = {
        "time_per_epoch": times[1] if len(times) > 1 else 1.0,
        "end_time": times[-1],
        "eval_times": list(times),
        "schedule": {"kind": "constant", "lr": cfg.lr},
        "clock": {"power": 1, "l": float(l), "lr_factor": 1.0},
        "optimizer_names": {"simulated": "SGD", "svag": "SVAG"},
    }
    folder.create(config, derived, {})
    n = len(next(iter(values.values())))
    for j in range(n):
        folder.append_record(
            {
                "sde_time": times[j] * (1 + 1e-13),
                "epoch": float(j),
                "effective_step": 10.0 * j,
                **{k: v[j] for k, v in values.items()},
            }
        )
    folder.write_status(status, records=n, message="loss is nan" if status == "diverged" else None)
    return folder


def ladder(root, table, ls=(1, 2, 4), seeds=(0, 1, 2), ngd=None, **kw):
    """Fabricate a comparison: ``table(l, seed) -> {metric: [v_0, v_1, v_2]}``; NGD runs from ``ngd(seed)``."""
    for l in ls:
        for s in seeds:
            fabricate(root, f"l{l:g}_seed{s}", l, s, table(l, s), **kw)
    if ngd is not None:
        for s in seeds:
            fabricate(root, f"ngd_seed{s}", 1, s, ngd(s), noise="gaussian", **kw)
    return load_runs(root)


def constant(value):
    return [value] * len(TIMES)


# ---------------------------------------------------------------------------------------------- reading


def test_ladder_values_put_each_run_at_its_l_and_seed(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": [10 * l + s + j / 10 for j in range(3)]})
    lad = ladder_values(runs, "test_loss")
    assert lad.ls == (1.0, 2.0, 4.0) and lad.seeds == (0, 1, 2) and lad.paired and lad.ngd is None
    assert lad.values.shape == (3, 3, 3)
    np.testing.assert_allclose(lad.values[2], [[10.2, 11.2, 12.2], [20.2, 21.2, 22.2], [40.2, 41.2, 42.2]])
    np.testing.assert_allclose(lad.times, TIMES) and np.testing.assert_allclose(lad.epochs, [0, 1, 2])


def test_a_missing_seed_unpairs_and_a_diverged_seed_is_missing_after_it_stopped(tmp_path):
    ladder(tmp_path, lambda l, s: {"test_loss": constant(1.0 + s)}, seeds=(0, 1))
    fabricate(tmp_path, "l1_seed2", 1, 2, {"test_loss": constant(3.0)})  # seed 2 at l = 1 only
    fabricate(tmp_path, "l4_seed0", 4, 0, {"test_loss": [1.0, math.nan]}, status="diverged")  # replaces l4_seed0
    lad = ladder_values(load_runs(tmp_path), "test_loss")
    assert not lad.paired and lad.seeds == (0, 1, 2)
    assert np.isnan(lad.values[:, 1:, 2]).all() and lad.values[0, 0, 2] == 3.0  # seed 2 only at l = 1
    assert lad.values[0, 2, 0] == 1.0 and np.isnan(lad.values[1:, 2, 0]).all()  # NaN record and no record
    notes = " ".join(lad.notes)
    assert "different seeds" in notes and "l4_seed0 (l = 4, seed 0): diverged (loss is nan), 2 of 3" in notes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"times": [0.0, 16.0, 48.0]}, "must share the evaluation grid: l1_seed0 has 3 times up to t=32"),
        ({"cfg": replace(BASE, lr=0.2)}, "differs from l1_seed0 in ['lr'] (lr: 0.2 vs 0.1)"),
    ],
)
def test_runs_of_another_grid_or_config_are_refused(tmp_path, change, message):
    ladder(tmp_path, lambda l, s: {"test_loss": constant(1.0)}, ls=(1,), seeds=(0, 1))
    fabricate(tmp_path, "l2_seed0", 2, 0, {"test_loss": constant(1.0)}, **change)
    with pytest.raises(ValueError, match=re.escape(message)):
        ladder_values(load_runs(tmp_path), "test_loss")


def test_two_runs_of_one_l_and_seed_are_refused(tmp_path):
    fabricate(tmp_path, "a", 2, 0, {"test_loss": constant(1.0)})
    fabricate(tmp_path, "b", 2, 0, {"test_loss": constant(1.0)})
    with pytest.raises(ValueError, match=r"two runs of l = 2, seed 0: .*a and .*b; keep one"):
        ladder_values(load_runs(tmp_path), "test_loss")


def test_a_record_off_the_grid_is_refused(tmp_path):
    """A record repeating a time is refused as the folder is read (svag.runfolder), before any verdict."""
    folder = fabricate(tmp_path, "l1_seed0", 1, 0, {"test_loss": constant(1.0)})
    folder.append_record({"sde_time": 32.0, "test_loss": 1.0})
    with pytest.raises(RepeatedRecordsError, match=r"l1_seed0/metrics.jsonl: record 4 \(sde_time=32\) repeats the time "
                       r"of record 3, as two processes writing one run folder at once leave it"):  # fmt: skip
        ladder_values(load_runs(tmp_path), "test_loss")


@pytest.mark.parametrize(("ls", "seeds"), [((1,), 3), ((1, 2), 1), ((2, 4), 3)])
def test_the_verdict_needs_two_l_with_sgd_and_two_seeds(tmp_path, ls, seeds):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": constant(1.0)}, ls=ls, seeds=tuple(range(seeds)))
    reason = missing_requirement(ls, seeds)
    assert reason.startswith("the verdict needs at least 2 values of l with l = 1 (SGD) among them and at least 2 ")
    assert f"got l = {', '.join(str(l) for l in ls)} and {seeds} seed" in reason
    with pytest.raises(ValueError, match=re.escape(reason)):
        compute_verdicts(runs)
    assert missing_requirement((1, 2), 2) is None


# ---------------------------------------------------------------------------------------------- outcomes


def _jitter(l, s, scale):
    """A fixed per-(l, seed) number in [-scale, scale] (seeded: no test depends on its draw)."""
    return float(np.random.default_rng([int(l), s]).uniform(-scale, scale))


def test_each_outcome_on_fabricated_folders(tmp_path):
    """test_loss: SVAG = SGD to 1e-4 (δ = 2% of 1): follows. weight_norm_sq: SGD 10% above a flat ladder
    (δ = 2%): departs. test_acc: seed noise ±0.05 against δ = 0.01: inconclusive, more seeds needed."""

    def table(l, s):
        return {
            "test_loss": constant(1.0 + _jitter(l, s, 1e-4)),
            "weight_norm_sq": constant((110.0 if l == 1 else 100.0) + _jitter(l, s + 10, 0.1)),
            "test_acc": constant(0.5 + _jitter(l, s + 20, 0.05)),
        }

    report = compute_verdicts(ladder(tmp_path, table, ls=(1, 2, 4, 8)))
    end = report["points"]["end"]
    assert report["paired"] and report["fit"] == "wls" and report["fit_ls"] == [1.0, 2.0, 4.0, 8.0]
    row = {m: e["rows"][end] for m, e in report["metrics"].items()}
    assert set(row) == {"test_loss", "weight_norm_sq", "test_acc"}  # only the metrics the records have
    assert row["test_loss"]["outcome"] == "follows" and row["test_loss"]["delta"] == pytest.approx(0.02, rel=1e-3)
    assert row["weight_norm_sq"]["outcome"] == "departs" and row["weight_norm_sq"]["gap"] > 2.2
    assert row["test_acc"]["outcome"] == "inconclusive" and row["test_acc"]["seeds_needed"] > 3
    assert row["test_acc"]["delta"] == 0.01 and row["test_acc"]["seeds"] == 3
    lines = verdict_lines(report)  # in the order of METRICS
    assert lines[0].startswith("test_loss: follows its SDE — gap ") and lines[0].endswith("(δ = 0.020, 3 seeds)")
    assert lines[1].startswith("test_acc: inconclusive — gap ") and "seeds per l would decide)" in lines[1]
    assert lines[2].startswith("weight_norm_sq: departs from its SDE — gap +")
    # the same runs, unpaired: same estimate, another interval; the paired report shows both widths
    assert "gap_interval_unpaired" in row["test_acc"]


def test_margins_override_the_defaults_absolute_or_relative(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": constant(2.0 + _jitter(l, s, 0.05)), "gn_ratio": constant(0.5)})
    default = compute_verdicts(runs)
    assert "outcome" not in default["metrics"]["gn_ratio"]["rows"][-1]  # no default margin for G/N
    assert "no margin (--margin gn_ratio=VALUE)" in markdown(default)
    report = compute_verdicts(runs, margins={"test_loss": "50%", "gn_ratio": "0.1"})
    assert report["metrics"]["test_loss"]["rows"][-1]["delta"] == pytest.approx(1.0, rel=0.05)  # 50% of SGD's 2.0
    assert report["metrics"]["test_loss"]["margin"] == {"given": "50%", "relative": True, "source": "--margin"}
    assert report["metrics"]["gn_ratio"]["rows"][-1]["delta"] == 0.1
    with pytest.raises(ValueError, match="no verdict for metric 'bogus'; valid: test_loss"):
        compute_verdicts(runs, margins={"bogus": "1"})


def test_a_time_with_too_few_seeds_has_no_interval_and_the_others_do(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": [None, 1.0 + s / 10, 1.0 + s / 10]}, seeds=(0, 1))
    rows = compute_verdicts(runs)["metrics"]["test_loss"]["rows"]
    assert rows[0]["error"] == "fewer than 2 seeds have a value at every l = 1, 2, 4"
    assert rows[1]["outcome"] == "follows" and rows[1]["gap"] == pytest.approx(0.0, abs=1e-12)


def test_the_gap_splits_with_ngd_runs_paired(tmp_path):
    """SGD at 1.3, NGD at 1.1, SVAG flat at 1.0 (each ± 0.01 by seed): SGD − NGD ≈ 0.2, and the two
    parts add up to the gap exactly."""

    def table(l, s):
        return {"test_loss": constant((1.3 if l == 1 else 1.0) + _jitter(l, s, 0.01))}

    runs = ladder(tmp_path, table, ngd=lambda s: {"test_loss": constant(1.1 + _jitter(9, s, 0.01))})
    lad = ladder_values(runs, "test_loss")
    assert lad.ngd.shape == (3, 3) and lad.ngd_paired
    report = compute_verdicts(runs)
    assert report["ngd_seeds"] == [0, 1, 2]
    row = report["metrics"]["test_loss"]["rows"][-1]
    assert row["non_gaussian"]["estimate"] == pytest.approx(0.2, abs=0.03)
    total = row["non_gaussian"]["estimate"] + row["discretization"]["estimate"]
    assert total == pytest.approx(row["gap"], abs=1e-12) and row["total"]["estimate"] == pytest.approx(row["gap"])
    lines = verdict_lines(report)
    assert (
        lines[1].startswith("  = non-Gaussian noise (SGD − NGD) +0.19") and "+ discretization (NGD − SDE)" in lines[1]
    )
    md = markdown(report)
    assert "## The gap in two parts (NGD runs)" in md and "| test_loss | end | 1.1" in md
    rows = summary_rows(runs, ("test_loss",))  # the summary keeps NGD apart from SGD
    assert [(r["l"], r["gradient_noise"]) for r in rows][-1] == (1.0, "gaussian")
    assert "| 1 (NGD) | 3 |" in markdown_table(rows, ("test_loss",))


def test_ngd_with_other_seeds_is_unpaired_and_em_runs_are_set_aside(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": constant(1.0 + _jitter(l, s, 0.01))}, seeds=(0, 1, 2))
    for s in (0, 1):
        fabricate(tmp_path, f"ngd_seed{s}", 1, s, {"test_loss": constant(1.0 + s / 100)}, noise="gaussian")
    fabricate(tmp_path, "em_l2", 2, 0, {"test_loss": constant(1.0)}, noise="gaussian")
    report = compute_verdicts(load_runs(tmp_path))
    assert report["paired"] and report["ngd_seeds"] == [0, 1]
    assert any("the decomposition is unpaired" in n for n in report["notes"])
    assert any("em_l2: Gaussian noise at l = 2 (Euler–Maruyama) is not used" in n for n in report["notes"])
    assert "non_gaussian" in report["metrics"]["test_loss"]["rows"][-1]
    assert not compute_verdicts(runs)["ngd_seeds"]  # the ladder alone: no decomposition


# ---------------------------------------------------------------------------------------------- files


def test_outputs_are_written_and_read_back(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"test_loss": constant(1.0 + _jitter(l, s, 0.01)),
                                          "gn_ratio": [None, 0.1, 0.2]})  # fmt: skip
    report, (md, csv, js) = run_verdicts(tmp_path)
    assert [p.name for p in (md, csv, js)] == [sf.VERDICTS_MD, sf.VERDICTS_CSV, sf.VERDICTS_JSON]
    back = read_verdicts(tmp_path)
    assert encode(back) == encode(report)
    assert math.isnan(back["metrics"]["gn_ratio"]["rows"][0]["means"][0])  # NaN survives the round trip
    head, *rows = csv.read_text().splitlines()
    assert head.startswith("metric,where,sde_time,epoch,sgd,sde,") and len(rows) == 2 * len(TIMES)
    assert [r.split(",")[1] for r in rows[:3]] == ["", "mid", "end"]
    text = md.read_text()
    assert text.startswith("# Does SGD follow its SDE? The verdict") and "| test_loss | end (epoch 2) |" in text
    assert "## Pairing" in text and "paired: seed s starts from the same initialization" in text
    assert write_verdicts(tmp_path, back)[0].read_text() == text  # the report alone rewrites the same files
    figure = plot_verdicts(back, tmp_path / sf.VERDICTS_PNG)
    assert figure.stat().st_size > 10_000
    assert len(runs) == 9


def test_read_verdicts_refuses_another_file(tmp_path):
    (tmp_path / sf.VERDICTS_JSON).write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="is not a verdicts file of schema 1"):
        read_verdicts(tmp_path)


# ---------------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test_acc=0.02", ("test_acc", "0.02")),
        ("test_loss=5%", ("test_loss", "5%")),
        (" gn_ratio = 1e-3", ("gn_ratio", "1e-3")),
    ],
)
def test_margin_flag_parses(text, expected):
    assert margin(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test_acc", "expected METRIC=VALUE with METRIC one of test_loss, test_acc"),
        ("accuracy=0.1", "expected METRIC=VALUE with METRIC one of"),
        ("test_acc=-0.1", "the margin of 'test_acc' must be a finite number > 0, got -0.1"),
        ("test_loss=five%", "margin must be a number or a percentage like '2%', got 'five%'"),
        ("test_loss=nan", "must be a finite number > 0, got nan"),
    ],
)
def test_bad_margins_are_refused(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        margin(text)


def test_a_bad_margin_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "svag", "compare", "--out", str(tmp_path / "x"), "--margin",
                           "test_acc=0"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "argument --margin: the margin of 'test_acc' must be a finite number > 0" in lines[0]
    assert not (tmp_path / "x").exists()


TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--device", "cpu",
        "--no-progress", "--epochs", "1", "--eval-every", "0.5"]  # fmt: skip


def test_compare_prints_and_writes_the_verdict_and_plot_redraws_it(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "2", "--margin", "test_acc=0.05", *TINY]) == 0
    printed = capsys.readouterr().out
    assert (
        "does SGD follow its SDE? at the end (epoch 1), the gap SGD − SDE (SDE: wls Richardson over l = 1, 2)"
        in printed
    )
    lines = [line.strip() for line in printed.splitlines() if line.startswith("  ") and ": " in line]
    assert [line.split(":")[0] for line in lines] == ["test_loss", "test_acc", "train_loss", "train_acc",
                                                      "weight_norm_sq", "grad_norm_sq"]  # fmt: skip
    assert "(δ = 0.050, 2 seeds" in lines[1]
    for name in (sf.VERDICTS_MD, sf.VERDICTS_CSV, sf.VERDICTS_JSON, sf.VERDICTS_PNG):
        assert (out / name).stat().st_size > 0
    report = read_verdicts(out)
    assert report["metrics"]["test_acc"]["margin"]["given"] == "0.05"
    saved = (out / sf.VERDICTS_JSON).read_bytes()
    (out / sf.VERDICTS_PNG).unlink()
    assert main(["plot", str(out)]) == 0
    assert f"verdict figure: {out / 'verdicts.png'} (from {out / 'verdicts.json'})" in capsys.readouterr().out
    assert (out / sf.VERDICTS_PNG).stat().st_size > 10_000 and (out / sf.VERDICTS_JSON).read_bytes() == saved
    assert main(["plot", str(out), "--fit-ls", "1,4"]) == 2  # a fit the ladder cannot give
    assert "--fit-ls must list at least 2 values of --ls (1, 2), got 1, 4" in capsys.readouterr().err


def test_the_verdicts_epochs_are_the_records_epochs(tmp_path, capsys):
    """A multistep over the steps at n/B = 6.25 (issue 23): the verdict's epochs (printed line, verdicts.md and
    .csv, the figure's x-axis: all from ``report["epochs"]``) are the ones every run's records carry, k·B/n, the
    end at ⌈2·6.25⌉ = 13 steps = epoch 2.08, not time over the base LR's epoch length (1.6 here)."""
    out = tmp_path / "cmp"
    args = ["--data", "teacher-student", "--n-train", "100", "--n-test", "64", "--batch-size", "16", "--lr", "0.2",
            "--device", "cpu", "--no-progress", "--epochs", "2", "--eval-every", "0.5", "--schedule", "multistep",
            "--milestones", "1", "--gamma", "0.5"]  # fmt: skip
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "2", *args]) == 0
    printed = capsys.readouterr().out
    report = read_verdicts(out)
    for run in load_runs(out):
        assert [r["epoch"] for r in run.records] == report["epochs"] == run.derived["eval_epochs"], run.path.name
    assert report["epochs"][-1] == 13 * 16 / 100 == 2.08
    assert "does SGD follow its SDE? at the end (epoch 2.08)" in printed
    assert "(epoch 2.08)" in (out / sf.VERDICTS_MD).read_text()
    assert (out / sf.VERDICTS_CSV).read_text().count(",2.08,") >= 1


def test_compare_with_one_seed_runs_and_skips_the_verdict(tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "no verdict: the verdict needs at least 2 values of l with l = 1 (SGD) among them and at least 2 seeds " \
           "per l; got l = 1, 2 and 1 seed" in printed  # fmt: skip
    assert not (out / sf.VERDICTS_MD).exists() and (out / sf.SUMMARY_MD).exists()
    assert main(["plot", str(out), "--margin", "test_acc=0.02"]) == 2  # asked for a verdict it cannot give
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the verdict needs at least 2 values of l" in err[0]


def test_pairing_can_be_turned_off_and_is_refused_where_the_seeds_differ(tmp_path):
    runs = ladder(tmp_path, lambda l, s: {"weight_norm_sq": constant(100.0 + 5 * s + _jitter(l, s, 0.1))})
    paired, unpaired = compute_verdicts(runs), compute_verdicts(runs, paired=False)
    assert paired["paired"] and not unpaired["paired"] and unpaired["pairing"].startswith("unpaired as asked")
    p, u = paired["metrics"]["weight_norm_sq"]["rows"][-1], unpaired["metrics"]["weight_norm_sq"]["rows"][-1]
    assert p["gap"] == pytest.approx(u["gap"]) and p["gap_interval_unpaired"] == u["gap_interval"]
    assert p["gap_interval"][1] - p["gap_interval"][0] < (u["gap_interval"][1] - u["gap_interval"][0]) / 10  # shared 5s
    fabricate(tmp_path, "l8_seed0", 8, 0, {"weight_norm_sq": constant(100.0)})
    with pytest.raises(ValueError, match=r"paired intervals need the same seeds at every l, but the values of l have"):
        compute_verdicts(load_runs(tmp_path), paired=True)


def test_compare_ngd_adds_gaussian_runs_and_splits_the_gap(tmp_path, capsys):
    out = tmp_path / "ngd"
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "2", "--ngd", *TINY]) == 0
    assert RunFolder(out / "ngd_seed1").config()["gradient_noise"] == "gaussian"
    assert RunFolder(out / "ngd_seed1").config()["l"] == 1.0 and RunFolder(out / "l1_seed1").config()["seed"] == 1
    printed = capsys.readouterr().out
    assert "    = non-Gaussian noise (SGD − NGD) " in printed and "+ discretization (NGD − SDE) " in printed
    assert read_verdicts(out)["ngd_seeds"] == [0, 1]
    assert "| 1 (NGD) | 2 |" in (out / sf.SUMMARY_MD).read_text()
    assert main(["compare", "--out", str(tmp_path / "x"), "--ngd", "--norm", "bn", *TINY]) == 2  # BN: no NGD
    assert "gradient_noise gaussian needs per-sample gradients" in capsys.readouterr().err
