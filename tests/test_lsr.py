"""The LSR-failure math on P1's published CIFAR-10 numbers (PAPER.md §4) and on exact cases.

The delta-method SE test is statistical: seed 0, 200000 draws, tolerance 3% relative.
"""

import math

import numpy as np
import pytest

from svag.lsr import (
    MaxBatchPrediction,
    envelope_batch,
    error_rise_batch,
    predict_max_batch,
    predict_max_batch_with_se,
    verdicts,
)

# P1's PreResNet-32 BN and GN rows: G/N at each run's own B, and the test errors
BN_B, BN_RATIO = [128, 512, 1024, 2048], [0.078, 0.36, 1.53, 4.5]
BN_ERR_B, BN_ERR = [128, 256, 512, 1024, 2048], [0.08, 0.08, 0.08, 0.126, 0.167]
GN_ERR_B, GN_ERR = [64, 128, 256, 512, 1024], [0.10, 0.10, 0.115, 0.138, 0.192]


def test_predict_max_batch_on_paper_numbers():
    assert predict_max_batch(128, 0.078, 1.0) == pytest.approx(3280, abs=5)
    assert predict_max_batch(1024, 1.53, 1.0) == pytest.approx(1340, abs=5)
    assert predict_max_batch(128, 0.078, 1.0, tau=2.0) == pytest.approx(128 * 2 / 0.078, rel=1e-14)
    # only the ratio matters, and B* is linear in τ
    assert predict_max_batch(128, 0.39, 5.0) == pytest.approx(predict_max_batch(128, 0.078, 1.0), rel=1e-14)
    assert predict_max_batch(128, 0.078, 1.0, tau=4.0) == pytest.approx(2 * predict_max_batch(128, 0.078, 1.0))
    assert isinstance(predict_max_batch(128, 0.078, 1.0), float)
    assert predict_max_batch(128, 0.0, 1.0) == math.inf  # no signal: the slope-1 line never reaches τ


def test_negative_G_estimate_gives_no_prediction():
    """Ĝ < 0 (below the estimator's noise floor) says G is small, not how small: nan, not inf."""
    assert math.isnan(predict_max_batch(128, -0.01, 1.0))
    pred = predict_max_batch_with_se(128, -0.01, 1.0, ratio_se=0.02)
    assert math.isnan(pred.B_star) and math.isnan(pred.B_star_se)


def test_envelope_on_paper_bn_row():
    assert envelope_batch(BN_B, BN_RATIO, tau=2.0) == pytest.approx(1340, abs=5)
    # every run, the 2048 run (past τ) included: the line through 4.5/2048
    assert envelope_batch(BN_B, BN_RATIO, among="all") == pytest.approx(2 * 2048 / 4.5, rel=1e-14)
    # a single run is predict_max_batch; order of runs does not matter
    assert envelope_batch([128], [0.078]) == pytest.approx(predict_max_batch(128, 0.078, 1.0))
    assert envelope_batch(BN_B[::-1], BN_RATIO[::-1]) == envelope_batch(BN_B, BN_RATIO)
    # no run satisfies the condition: falls back to all runs
    assert envelope_batch([512, 1024], [3.0, 9.0]) == pytest.approx(2 * 1024 / 9.0)


def test_error_rise_batch_on_paper_rows():
    assert error_rise_batch(BN_ERR_B, BN_ERR) == 1024
    assert error_rise_batch(GN_ERR_B, GN_ERR) == 512
    assert error_rise_batch(GN_ERR_B, GN_ERR, rise=0.1) == 256
    assert error_rise_batch(BN_ERR_B, BN_ERR, baseline_batch=1024) == 2048  # 0.167 / 0.126 = 1.33
    assert error_rise_batch(BN_ERR_B, BN_ERR, baseline_batch=2048) is None


def test_verdicts_rows():
    lrs = [0.8 * b / 128 for b in BN_B]
    errs = [0.08, 0.08, 0.126, 0.167]
    rows = verdicts(BN_B[::-1], lrs[::-1], BN_RATIO[::-1], errs[::-1])
    assert [r["batch_size"] for r in rows] == BN_B
    assert [r["condition_holds"] for r in rows] == [True, True, True, False]
    assert [r["error_rose"] for r in rows] == [False, False, True, True]
    assert rows[2]["relative_error_rise"] == pytest.approx(0.126 / 0.08 - 1)
    assert rows[3]["lr"] == pytest.approx(12.8) and rows[3]["ratio"] == 4.5 and rows[3]["test_error"] == 0.167
    assert set(rows[0]) == {
        "batch_size", "lr", "ratio", "test_error", "condition_holds", "relative_error_rise", "error_rose",
    }  # fmt: skip


def test_max_batch_se_delta_method():
    pred = predict_max_batch_with_se(128, 0.5, 4.0, G_se=0.01, N_se=0.05, cov_GN=0.0002)
    assert isinstance(pred, MaxBatchPrediction)
    B_star = 128 * 2 * 4.0 / 0.5
    rel = math.sqrt((0.01 / 0.5) ** 2 + (0.05 / 4.0) ** 2 - 2 * 0.0002 / (0.5 * 4.0))
    assert (pred.B_star, pred.B_star_se) == pytest.approx((B_star, B_star * rel), rel=1e-12)
    via_ratio = predict_max_batch_with_se(128, 0.5, 4.0, ratio_se=0.125 * 0.02)
    assert via_ratio.B_star_se == pytest.approx(B_star * 0.02, rel=1e-12)
    # Monte Carlo (seed 0, 200000 draws, correlated normal G and N): SD of B* within 3%
    rng = np.random.default_rng(0)
    cov = [[0.01**2, 0.0002], [0.0002, 0.05**2]]
    G, N = rng.multivariate_normal([0.5, 4.0], cov, size=200_000).T
    assert np.std(128 * 2 * N / G) == pytest.approx(pred.B_star_se, rel=0.03)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        predict_max_batch(0, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got 12\.5"):
        predict_max_batch(12.5, 0.1, 1.0)
    for tau in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau must be a finite number > 0"):
            predict_max_batch(128, 0.1, 1.0, tau=tau)
    with pytest.raises(ValueError, match="N must be > 0, got 0"):
        predict_max_batch(128, 0.1, 0.0)
    with pytest.raises(ValueError, match="G must be a finite number, got inf"):
        predict_max_batch(128, float("inf"), 1.0)
    with pytest.raises(ValueError, match="needs ratio_se, or both G_se and N_se"):
        predict_max_batch_with_se(128, 0.1, 1.0, G_se=0.01)
    with pytest.raises(ValueError, match="either ratio_se or G_se and N_se, not both"):
        predict_max_batch_with_se(128, 0.1, 1.0, G_se=0.01, N_se=0.1, ratio_se=0.01)
    with pytest.raises(ValueError, match=r"ratios must have one entry per batch size \(4\), got 3"):
        envelope_batch(BN_B, BN_RATIO[:3])
    with pytest.raises(ValueError, match="tau must be a finite number > 0, got 0"):
        envelope_batch(BN_B, BN_RATIO, tau=0)
    with pytest.raises(ValueError, match="among must be 'holding' or 'all'"):
        envelope_batch(BN_B, BN_RATIO, among="max")
    with pytest.raises(ValueError, match="batch_sizes must be distinct"):
        envelope_batch([128, 128], [0.1, 0.2])
    with pytest.raises(ValueError, match="batch_sizes must not be empty"):
        envelope_batch([], [])
    with pytest.raises(ValueError, match=r"baseline_batch must be one of the batch sizes \[64, 128\], got 32"):
        error_rise_batch([64, 128], [0.1, 0.2], baseline_batch=32)
    with pytest.raises(ValueError, match=r"test_errors must have one entry per batch size \(2\), got 1"):
        verdicts([64, 128], [0.1, 0.2], [0.1, 0.2], [0.1])


# -- the equilibrium window needs a constant-LR phase (issue 11) -------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "triangle"])
def test_equilibrium_window_refuses_a_schedule_without_a_constant_phase(schedule, tmp_path):
    from svag.config import RunConfig
    from svag.experiments.lsr_sweep import equilibrium_window, equilibrium_window_epochs
    from svag.runfolder import RunFolder
    from svag.schedules import Cosine, Triangle, Warmup, schedule_to_dict

    with pytest.raises(ValueError, match=rf"the run has schedule '{schedule}', which has no constant-LR phase"):
        equilibrium_window_epochs(RunConfig(schedule=schedule))
    sched = Warmup(Cosine(0.1, 8.0) if schedule == "cosine" else Triangle(0.1, 4.0, 8.0), 1.0)
    derived = {"time_per_epoch": 0.8, "end_time": 8.0, "eval_times": [0.0, 8.0], "schedule": schedule_to_dict(sched),
               "clock": {"power": 1, "l": 1.0, "lr_factor": 1.0}, "optimizer_names": {}}  # fmt: skip
    RunFolder(tmp_path / "r").create(RunConfig(schedule=schedule).to_dict(), derived, {})
    with pytest.raises(ValueError, match=rf"has schedule '{schedule}', which has no constant-LR phase"):
        equilibrium_window(tmp_path / "r")


def test_equilibrium_window_refuses_a_window_inside_the_warmup():
    from svag.config import RunConfig
    from svag.experiments.lsr_sweep import equilibrium_window_epochs

    cfg = RunConfig(schedule="multistep", milestones=(6.0,), warmup=5.5)
    with pytest.raises(ValueError, match=r"window \(5, 6\] epochs starts inside the warm-up \(until 5.5\)"):
        equilibrium_window_epochs(cfg)
    assert equilibrium_window_epochs(cfg, 1 / 12) == pytest.approx((5.5, 6.0))
