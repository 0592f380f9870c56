"""Summaries over seeds from run folders, on the folders of release 0.1.0 (schema version 1).

The expected numbers are the fixture's own records (tests/fixtures/release_0_1_0/, one seed per l).
"""

import math
import shutil

import numpy as np
import pytest

from helpers import FIXTURES
from svag.analysis.summary import Run, aggregate, load_runs, markdown_table, summary_rows
from svag.experiments.compare import write_summary
from svag.runfolder import RunFolder

V1 = FIXTURES / "release_0_1_0"


def test_summary_rows_of_a_release_0_1_0_comparison():
    runs = load_runs(V1 / "compare")
    assert all(isinstance(r, Run) for r in runs) and [r.config["l"] for r in runs] == [1.0, 2.0]
    rows = summary_rows(runs, ("test_acc", "train_loss"))
    assert [(r["l"], r["seeds"]) for r in rows] == [(1.0, 1), (2.0, 1)]
    l1, l2 = rows
    assert l1["test_acc_final"] == 0.0625 and l2["test_acc_final"] == 0.0390625
    assert l1["test_acc_mid"] == 0.0625 and l1["test_acc_final_std"] == 0.0  # mid = record 2 of 5
    assert l1["test_acc_final_dist"] == pytest.approx(0.0625 - 0.0390625) and l2["test_acc_final_dist"] == 0.0
    assert l2["train_loss_final"] == 2.242812395095825 and l2["sde_time_final"] == pytest.approx(3.2)
    table = markdown_table(rows, ("test_acc",))
    assert table.splitlines()[2] == "| 1 | 1 | 0.0625 ± 0.0000 | 0.0625 ± 0.0000 | 0.0234 |"


def test_aggregate_truncates_to_the_shortest_run_and_averages_seeds():
    """The killed l = 2 run (3 records) and the completed one (5) share the grid: their mean over
    the first 3 grid points."""
    runs = [r for r in load_runs(V1) if r.config["l"] == 2.0]
    (curve,) = aggregate(runs, "test_acc")
    assert curve.n_seeds == 2 and len(curve.mean) == 3
    np.testing.assert_allclose(curve.sde_time, [0.0, 0.8, 1.6], rtol=1e-12)
    np.testing.assert_allclose(curve.effective_step, [0.0, 8.0, 16.0])
    assert curve.mean[2] == 0.046875 and curve.std[2] == 0.0  # both runs recorded the same numbers


def test_write_summary_on_a_release_0_1_0_folder(tmp_path):
    shutil.copytree(V1 / "compare", tmp_path / "c")
    md, csv = write_summary(tmp_path / "c")
    assert md.read_text().count("\n") == 4  # header, rule, one row per l
    head, *rows = csv.read_text().splitlines()
    assert head.startswith("l,seeds,test_acc_mid") and [r.split(",")[0] for r in rows] == ["1.0", "2.0"]


def test_non_finite_metrics_stay_floats_in_summaries(tmp_path):
    """A diverged run's NaN loss reads back as a float NaN (not the string on disk)."""
    shutil.copytree(V1 / "compare" / "l2_seed0", tmp_path / "r")
    folder = RunFolder(tmp_path / "r")
    rows = folder.records()
    rows[-1]["train_loss"] = math.nan
    folder.keep_records(0)
    for row in rows:
        folder.append_record(row)
    (curve,) = aggregate(load_runs(tmp_path), "train_loss")
    assert math.isnan(curve.mean[-1]) and curve.mean[0] == rows[0]["train_loss"]
