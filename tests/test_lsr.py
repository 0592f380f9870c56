"""The LSR-failure math on P1's published CIFAR-10 numbers (PAPER.md §4) and on exact cases.

The delta-method SE test is statistical: seed 0, 200000 draws, tolerance 3% relative.
"""

import math

import numpy as np
import pytest

from svag import sweepfolder as sf
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


@pytest.mark.parametrize("unit", ["step", "time"])
def test_equilibrium_window_of_a_multistep_on_either_unit(tmp_path, unit):
    """A trained run's window in SDE time: the last fraction of the time before its first decay, which on
    steps is the start of step ⌈m·n/B⌉ (MultiStepLR's milestone) and on time m·τ. n/B = 4.6875: a warm-up of
    1 epoch runs steps 0–4 at 0.1·(0.1 + 0.9·k/4.6875), then 0.1 per step until milestone 6 → step 29."""
    from svag.clock import Clock
    from svag.config import RunConfig
    from svag.experiments.lsr_sweep import equilibrium_window
    from svag.runfolder import RunFolder
    from svag.runner.timeline import Timeline

    cfg = RunConfig(lr=0.1, batch_size=64, epochs=8.0, schedule="multistep", milestones=(6.0,), warmup=1.0,
                    schedule_unit=unit).validate()  # fmt: skip
    tl = Timeline.of(cfg, 300, Clock(1))
    derived = {**tl.to_dict(), "clock": Clock(1).to_dict(), "optimizer_names": {}, "n_train": 300}
    RunFolder(tmp_path / "r").create(cfg.to_dict(), derived, {})
    warm = sum(0.1 * (0.1 + 0.9 * k / 4.6875) for k in range(5)) if unit == "step" else 4.6875 * 0.1
    end = warm + 24 * 0.1 if unit == "step" else 6 * 4.6875 * 0.1
    assert equilibrium_window(tmp_path / "r", 0.5) == pytest.approx((end / 2, end), rel=1e-12)
    with pytest.raises(ValueError, match=rf"starts inside the warm-up \(until {warm:.4g}\)"):
        equilibrium_window(tmp_path / "r", 0.95)


# -- the figure keeps every marker inside its axes (issue 15) ------------------------------------------


def _result(B_star, envelope, rows):
    return {"tau": 2.0, "B_star": B_star, "B_star_envelope": envelope, "baseline": {"batch_size": 32, "lr": 0.2},
            "verdicts": [{"batch_size": b, "ratio": g, "ratio_se": se, "train_error": tr, "test_error": te,
                          "train_error_sd": sd, "test_error_sd": sd, "n_seeds": 3, "error_rose": te > 0.45}
                         for b, g, se, tr, te, sd in rows]}  # fmt: skip


def _inside(ax, xs, ys):
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return all(x0 <= x <= x1 for x in xs) and all(y0 <= y <= y1 for y in ys)


@pytest.mark.parametrize(
    "B_star, envelope",
    [(1364.0, 535.0), (5000.0, 40.0), (float("nan"), float("nan")), (float("inf"), 700.0)],
)
def test_lsr_figure_holds_every_marker(B_star, envelope):
    """Predicted B* beyond the last tested batch (the old default's figure), an envelope below the
    first, no prediction; a run with G/N ≤ 0 still has its error markers; bars larger than the value."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PathCollection

    from svag.analysis.plotting import lsr_figure

    rows = [(32, 0.05, 0.003, 0.2, 0.40, 0.01), (64, -0.01, 0.02, 0.21, 0.41, 0.02),
            (256, 1.0, 1.5, 0.25, 0.43, 0.05), (2048, 9.0, 0.8, 0.45, 0.60, 0.15)]  # fmt: skip
    fig = lsr_figure(_result(B_star, envelope, rows))
    try:
        top, bottom = fig.axes[:2]
        pos = [r for r in rows if r[1] > 0]
        lines = [v for v in (B_star, envelope) if math.isfinite(v)]
        assert _inside(top, [r[0] for r in pos] + lines, [r[1] + r[2] for r in pos] + [r[1] for r in pos] + [2.0])
        assert _inside(top, [], [max(r[1] - r[2], 0.1 * r[1]) for r in pos])  # lower bars, clipped at 10%
        assert _inside(bottom, [r[0] for r in rows] + lines,
                       [r[k] + s * r[5] for r in rows for k in (3, 4) for s in (-1, 1)])  # fmt: skip
        # every marker drawn (the data lines) and every error bar's ends, read back from the axes
        for ax in (top, bottom):
            for line in ax.get_lines():
                if line.get_marker() not in (None, "None", "", " "):
                    assert _inside(ax, list(line.get_xdata()), list(line.get_ydata())), line.get_label()
            for coll in ax.collections:
                if isinstance(coll, PathCollection):
                    pts = np.asarray(coll.get_offsets())
                elif isinstance(coll, LineCollection):
                    pts = np.concatenate([np.asarray(seg) for seg in coll.get_segments()])
                else:
                    continue
                assert pts.size and _inside(ax, pts[:, 0].tolist(), pts[:, 1].tolist())
    finally:
        plt.close(fig)


# -- a real sweep: seeds, spread, equilibrium warnings (issue 15) ---------------------------------------


SHORT_BN_MLP = ["--threads", "1", "lsr", "--model", "mlp", "--norm", "bn", "--lr", "0.2", "--weight-decay", "5e-2",
                "--batch-size", "32", "--eval-every", "0.125", "--n-train", "512", "--n-test", "256", "--no-progress",
                "--device", "cpu"]  # fmt: skip


def test_lsr_sweep_with_seeds_warns_on_a_baseline_cut_short(tmp_path, capsys):
    """A real short sweep (MNIST-1D, 512 samples, BN MLP, ηλ = 0.01, window = epochs 1–2: ‖x‖² still
    falling from its initial value) with 2 seeds per batch size: the baseline is flagged in the
    printed result and in lsr.json, each batch size reports its seeds' spread and the rise's
    interval, and the slope is printed beside the prediction."""
    from svag.cli import main
    from svag.records import read_json

    out = tmp_path / "lsr"
    args = ["--out", str(out), "--verify", "64,128", "--seeds", "2", "--epochs", "3", "--milestones", "2",
            "--window", "0.5"]  # fmt: skip
    assert main([*SHORT_BN_MLP, *args]) == 0
    printed = capsys.readouterr().out
    result = read_json(out / sf.LSR_JSON)
    base_check = result["baseline"]["equilibrium"]
    assert not base_check["at_equilibrium"] and base_check["trends"]["‖x‖²"]["status"] == "trending"
    assert base_check["trends"]["‖x‖²"]["change"] < -0.1  # the norm decays towards its equilibrium
    first = result["warnings"][0]
    assert first.startswith("baseline: ‖x‖² fell") and "the baseline is not at equilibrium" in first
    assert "WARNING baseline: ‖x‖² fell" in printed and "Baseline equilibrium, change across the window" in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "B128", "B128_seed1", "B32", "B32_seed1", "B64", "B64_seed1"]  # fmt: skip
    rows = {r["batch_size"]: r for r in result["verdicts"]}
    assert all(r["n_seeds"] == 2 and r["test_error_sd"] >= 0 for r in rows.values())
    runs = [r for r in result["runs"] if r["B"] == 64]
    assert rows[64]["test_error"] == pytest.approx(np.mean([r["test_error"] for r in runs]), rel=1e-12)
    low, high = rows[128]["rise_interval"]
    assert low <= rows[128]["relative_error_rise"] <= high
    assert {(r["B"], r["seed"]) for r in result["runs"]} == {(b, s) for b in (32, 64, 128) for s in (0, 1)}
    assert all(isinstance(r["at_equilibrium"], bool) for r in result["runs"])
    assert "slope of log G/N vs log B below τ:" in printed and "beside the baseline's B* =" in printed
    assert "test error rise [95% Welch]" in printed and (out / sf.LSR_PNG).is_file()


def test_lsr_baseline_at_equilibrium_passes_and_suggests_the_sweep(tmp_path, capsys):
    """The same baseline run for 12 epochs of constant LR (≈ 9 relaxation times 1/(4ηλ) steps):
    no warning, and the sizes to verify with are printed."""
    from svag.cli import main
    from svag.records import read_json

    out = tmp_path / "lsr"
    assert main([*SHORT_BN_MLP, "--out", str(out), "--epochs", "14", "--milestones", "12"]) == 0
    printed = capsys.readouterr().out
    result = read_json(out / sf.LSR_JSON)
    assert result["baseline"]["equilibrium"]["at_equilibrium"] and result["warnings"] == []
    assert "WARNING" not in printed and ": at equilibrium" in printed
    sizes = result["suggested_verify"]
    assert sizes[0] == 64 and sizes[-1] >= 1.5 * result["B_star"] > sizes[-2]
    assert f"--verify {','.join(map(str, sizes))}" in printed


def test_suggested_batch_sizes_reach_past_the_prediction():
    from svag.lsr import suggest_batch_sizes

    assert suggest_batch_sizes(32, 522.5) == [64, 128, 256, 512, 1024]  # 1024 is the first >= 1.5 × 522.5
    assert suggest_batch_sizes(32, 700.0) == [64, 128, 256, 512, 1024, 2048]  # 1.5 × 700 = 1050 > 1024
    assert suggest_batch_sizes(128, 1340.0, beyond=1.0) == [256, 512, 1024, 2048]  # P1's BN row
    assert suggest_batch_sizes(32, 1e9, most=3) == [64, 128, 256]
    assert suggest_batch_sizes(32, math.nan) == [] and suggest_batch_sizes(32, math.inf) == []
    assert suggest_batch_sizes(32, 20.0) == []  # B* below the baseline: the rule already fails there


def test_slope_statement_says_what_the_slope_does_to_the_prediction():
    from svag.experiments.lsr_sweep import _fit_slope, slope_statement

    # P1's PreResNet-32 BN row below τ: 128 → 0.078, 512 → 0.36, 1024 → 1.53 (slope 1.42 [0.49, 2.36])
    fit = _fit_slope(list(zip([128, 512, 1024], [0.078, 0.36, 1.53])), 2.0)
    assert fit["low"] < 1 < fit["high"] and fit["n"] == 3
    line = slope_statement(fit, 3282.0, 1338.6)
    assert "consistent with 1, the baseline's slope-1 prediction stands" in line and "\n" not in line
    # an exact slope-1.5 line through G/N = 0.1 at B = 32 (intervals are points): steeper than 1
    bs = [32, 64, 128, 256]
    steep = _fit_slope([(b, 0.1 * (b / 32) ** 1.5) for b in bs], 2.0)
    assert steep["slope"] == pytest.approx(1.5, rel=1e-12) and steep["low"] == pytest.approx(1.5, rel=1e-12)
    assert steep["B_cross"] == pytest.approx(32 * 20 ** (1 / 1.5), rel=1e-12)  # 0.1·(B/32)^1.5 = 2
    envelope = envelope_batch(bs, [0.1 * (b / 32) ** 1.5 for b in bs])
    line = slope_statement(steep, 640.0, envelope)
    assert f"the sweep's slope-1 envelope puts B* at {envelope:.4g}, {envelope / 640:.2g}× the baseline's" in line
    assert "steeper than 1, so G/N reaches τ sooner" in line and f"crosses τ at B ≈ {steep['B_cross']:.4g}" in line
    shallow = _fit_slope([(b, 0.1 * (b / 32) ** 0.7) for b in bs], 2.0)
    assert "shallower than 1, so G/N reaches τ later" in slope_statement(shallow, 640.0, 640.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
     (["--ensemble", "bogus"], "ensemble must be one of auto, on, off, got 'bogus'")],
)  # fmt: skip
def test_bad_seed_flags_are_one_line_errors_before_any_work(tmp_path, capsys, flags, message):
    from svag.cli import main

    out = tmp_path / "out"
    code = main([*SHORT_BN_MLP, "--out", str(out), "--epochs", "3", "--milestones", "2", "--verify", "64", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_lsr_figure_without_any_positive_ratio():
    """A sweep where no run measured G/N > 0 (tiny runs) still draws its error panel."""
    import matplotlib.pyplot as plt

    from svag.analysis.plotting import lsr_figure

    rows = [(32, -0.01, 0.02, 0.2, 0.40, 0.01), (64, 0.0, 0.0, 0.21, 0.41, 0.02)]
    fig = lsr_figure(_result(float("nan"), float("nan"), rows))
    try:
        assert len(fig.axes[1].get_lines()) >= 2  # train and test error drawn
    finally:
        plt.close(fig)


def test_window_prediction_states_a_positive_interval_or_says_why_not():
    """The integrations' end-of-training line (Lightning, the Hugging Face Trainer): a noisy G whose delta-method
    interval B* ± 1.96·se reaches below 0 gets Fieller's [low, ∞) and says G is not distinguishable from 0; one
    pooled estimate gets no interval, in words."""
    from svag.lsr import prediction_line, window_prediction

    rows = [{"G": g, "N": 1.0, "noise_count": 1, "G_se": None, "N_se": None} for g in (0.3, -0.25, 0.2, -0.15)]
    rows = [{**r, "GN_cov": None, "gn_ratio": r["G"], "gn_ratio_se": None} for r in rows]
    p = window_prediction(32, rows, 2.0, window=(3, 4))
    assert p["B_star"] - 1.96 * p["B_star_se"] < 0  # what the delta method would print
    assert 0 < p["low"] < p["B_star"] and p["high"] == float("inf")
    line = prediction_line(p)
    assert "G is not distinguishable from 0, only a lower bound" in line and "epochs [3, 4)" in line
    one = window_prediction(32, rows[:1], 2.0)
    assert "no interval from 1 estimate(s) pooled: at least 2 are needed" in prediction_line(one)
    assert prediction_line(None).startswith("svag: no G/N estimates")
