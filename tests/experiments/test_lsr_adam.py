"""`svag lsr --optimizer adam|adamw`: the preconditioned G/N predicts where P2's square-root rule breaks
(svag.experiments.lsr_sweep.Measure), the sweep follows svag.scaling.sqrt_rule, and the rule's own limit
κ(1 − β1) < 1 is stated and enforced before any work."""

import math

import pytest

from svag import sweepfolder as sf
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.lsr_sweep import Measure
from svag.records import read_json
from svag.runfolder import RunFolder
from svag.scaling import sqrt_rule

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--epochs", "3", "--milestones", "2", "--eval-every", "0.25",
        "--model", "mlp", "--noise-fraction", "1", "--lr", "0.01"]  # fmt: skip


def test_adamw_lsr_predicts_from_the_preconditioned_ratio_and_sweeps_the_square_root_rule(tmp_path, capsys):
    out = tmp_path / "lsr"
    code = main(["lsr", "--out", str(out), "--optimizer", "adamw", "--weight-decay", "0.01",
                 "--betas", "0.8,0.999", *TINY])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    result = read_json(out / sf.LSR_JSON)
    assert result["rule"] == "sqrt" and result["ratio_name"] == "preconditioned G/N" and result["optimizer"] == "adamw"
    base = RunFolder(out / "B16").records()
    window = result["window"]
    inside = [r for r in base if window[0] < r["sde_time"] <= window[1] * (1 + 1e-9) and r.get("noise_count_pre")]
    assert inside and all(r["gn_ratio_pre"] is not None for r in inside)
    # B* = B0·τ/R0 from the pooled preconditioned ratio, not from P1's G/N
    assert result["B_star"] == pytest.approx(16 * 2.0 / result["baseline"]["ratio"])
    assert result["baseline"]["ratio"] != pytest.approx(inside[-1]["gn_ratio"])
    # the rule's own limit: κ(1 − β1) < 1 with β1 = 0.8 → κ < 5 → B < 80; which binds first is said
    assert result["B_rule_limit"] == pytest.approx(80.0)
    assert result["binding_limit"] == ("noise" if result["B_star"] < 80 else "momentum")
    assert "The square-root rule itself needs κ(1 − β1) < 1: B < 80" in text
    assert all(b < 80 for b in result["suggested_verify"])
    assert "preconditioned G/N = " in text and "| B | η | preconditioned G/N |" in text


def test_the_sweep_runs_p2s_rule_and_refuses_kappa_past_its_limit(tmp_path, capsys):
    out = tmp_path / "lsr"
    assert main(["lsr", "--out", str(out), "--optimizer", "adam", "--verify", "32", "--seeds", "1", *TINY]) == 0
    base = RunConfig.from_dict(RunFolder(out / "B16").config())
    run = RunConfig.from_dict(RunFolder(out / "B32").config())
    want = sqrt_rule(base, 2)
    assert (run.lr, run.betas, run.eps, run.batch_size) == (want.lr, want.betas, want.eps, 32)
    assert run.lr == pytest.approx(0.01 * math.sqrt(2))
    rows = read_json(out / sf.LSR_JSON)["verdicts"]
    assert [r["batch_size"] for r in rows] == [16, 32] and all(math.isfinite(r["ratio"]) for r in rows)
    capsys.readouterr()
    # β1 = 0.9: κ(1 − β1) < 1 allows κ < 10, i.e. B < 160 from B0 = 16; B = 160 is refused before any work
    far = tmp_path / "far"
    assert main(["lsr", "--out", str(far), "--optimizer", "adam", "--verify", "160", "--seeds", "1", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--verify 160: κ = 10 is past the square-root rule's own limit κ(1 − β1) < 1" in err[0]
    assert not (far / "B16").exists()


def test_measure_follows_the_optimizer():
    assert (Measure("sgd").rule, Measure("sgd").suffix) == ("linear", "")
    for opt in ("adam", "adamw", "rmsprop"):
        m = Measure(opt)
        assert (m.rule, m.suffix, m.ratio_name) == ("sqrt", "_pre", "preconditioned G/N")


def test_lsr_test_from_python_takes_the_optimizer(tmp_path):
    import svag

    res = svag.lsr_test(
        "mlp", "teacher-student", out=tmp_path, optimizer="adamw", lr=0.01, weight_decay=0.01, n_train=256,
        n_test=128, batch_size=16, epochs=3, milestones=(2.0,), eval_every=0.25, noise_fraction=1.0,
    )  # fmt: skip
    assert res.result["rule"] == "sqrt" and res.result["B_rule_limit"] == pytest.approx(160.0)
    assert res.B_star == pytest.approx(16 * 2.0 / res.result["baseline"]["ratio"])
    assert (tmp_path / sf.LSR_JSON).is_file()
