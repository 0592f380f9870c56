"""Transfer rules side by side (`svag scale --rule A,B,...`): one κ ladder per rule, the base runs shared, each
run's final metrics judged against the base run by the equivalence verdict, and the one-line answer."""

import math

import numpy as np
import pytest

from svag import sweepfolder as sf
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.scale import reachable, rule_cell, rules_answer
from svag.records import read_json
from svag.runfolder import RunFolder


def test_rule_cell_is_the_paired_equivalence_verdict():
    """Seed 0, 8 paired seeds: a run equal to its base up to tiny noise follows; one shifted by 10δ departs; one
    whose seeds disagree by ±5δ is inconclusive; a diverged seed departs."""
    rng = np.random.default_rng(0)
    base = {s: 1.0 + 0.1 * rng.standard_normal() for s in range(8)}  # test_loss ≈ 1: δ = 2% of it ≈ 0.02
    same = {s: v + 1e-4 * rng.standard_normal() for s, v in base.items()}
    assert rule_cell(base, same, "test_loss")["outcome"] == "follows"
    shifted = {s: v + 0.2 for s, v in base.items()}
    cell = rule_cell(base, shifted, "test_loss")
    assert cell["outcome"] == "departs" and cell["estimate"] == pytest.approx(0.2)
    assert cell["delta"] == pytest.approx(0.02 * abs(np.mean(list(base.values()))))
    noisy = {s: v + (0.1 if s % 2 else -0.1) for s, v in base.items()}
    assert rule_cell(base, noisy, "test_loss")["outcome"] == "inconclusive"
    assert rule_cell(base, {**same, 3: math.nan}, "test_loss")["outcome"] == "departs"
    assert rule_cell(base, {0: 1.0}, "test_loss")["outcome"] == "inconclusive"


def test_rules_answer_says_where_each_rule_held_and_broke():
    def rows(*outcomes):
        return [{"kappa": 2.0**i, "batch_size": 16 * 2**i, "outcome": o} for i, o in enumerate(outcomes, 1)]

    def gone(kappa):
        cell = {"outcome": "departs", "estimate": 0.2, "interval": [0.1, 0.3], "delta": 0.02}
        return {"kappa": kappa, "batch_size": round(16 * kappa), "outcome": "departs",
                "cells": {"test_loss": cell, "test_acc": {"outcome": "inconclusive", "estimate": 0.0}}}  # fmt: skip

    result = {"rules": {
        "sqrt": {"base_batch_size": 16, "rows": rows("follows", "follows"), "held_to": 4.0, "departs_at": None,
                 "undecided_at": None, "limit": 10.0},
        "sqrt_lr": {"base_batch_size": 16, "rows": [*rows("follows", "inconclusive"), gone(8.0)], "held_to": 2.0,
                    "departs_at": 8.0, "undecided_at": 4.0, "limit": math.inf},
    }}  # fmt: skip
    assert rules_answer(result) == (
        "from B0 = 16: sqrt holds to B = 64, the largest B tried, its own limit is B < 160; "
        "sqrt_lr holds to B = 32, undecided at B = 64, departs at B = 128 (test_loss Δ +0.2 [+0.1, +0.3], δ 0.02)"
    )


def test_reachable_skips_batch_sizes_past_the_square_root_rules_limit():
    base = RunConfig(optimizer="adam", batch_size=16, lr=1e-3, betas=(0.9, 0.999))
    assert reachable(base, "sqrt", [32, 64, 160, 256]) == ([32, 64], [160, 256])
    assert reachable(base, "beta_halflife", [32, 256]) == ([32, 256], [])


def test_scale_compares_rules_from_one_shared_base(tmp_path, capsys):
    out = tmp_path / "rules"
    args = ["scale", "--out", str(out), "--optimizer", "adamw", "--weight-decay", "0.01", "--lr", "0.01",
            "--rule", "sqrt,sqrt_lr,beta_halflife", "--batch-sizes", "32,256", "--data", "teacher-student",
            "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--model", "mlp", "--epochs", "1",
            "--seeds", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "sqrt: skips B = 256, past its own limit" in text
    result = read_json(out / sf.RULES_JSON)
    assert list(result["rules"]) == ["sqrt", "sqrt_lr", "beta_halflife"] and result["answer"] in text
    assert [r["batch_size"] for r in result["rules"]["sqrt"]["rows"]] == [32]
    assert [r["batch_size"] for r in result["rules"]["sqrt_lr"]["rows"]] == [32, 256]
    for name in ("rules.md", "rules.csv", "rules.png"):
        assert (out / name).is_file()
    # the base runs train once, in the first rule's folder; the others name them
    assert (out / "sqrt" / "B16_seed0").is_dir() and not (out / "sqrt_lr" / "B16_seed0").exists()
    spec = read_json(out / "sqrt_lr" / sf.SCALE_JSON)
    assert spec["runs"][0]["dirs"] == ["../sqrt/B16_seed0", "../sqrt/B16_seed1"]
    lr = RunFolder(out / "sqrt_lr" / "B256_seed0").config()
    assert lr["lr"] == pytest.approx(0.04) and lr["betas"] == [0.9, 0.999]  # η·√16, β kept
    hl = RunFolder(out / "beta_halflife" / "B256_seed0").config()
    assert hl["betas"] == pytest.approx([0.9**16, 0.999**16]) and hl["eps"] == pytest.approx(1e-8 / 4)
    # a bad rule name is refused in one line
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal
        main([*args[:10], "sqrt,cubic", *args[11:]])
    assert exc.value.code == 2
    assert "rule must be one of auto, linear, sqrt" in capsys.readouterr().err


def test_scale_from_python_compares_rules(tmp_path):
    import svag

    res = svag.scale("mlp", "teacher-student", out=tmp_path, batch_sizes=(32,), rules=["sqrt", "sqrt_lr"], seeds=2,
                     optimizer="adam", lr=0.01, n_train=256, n_test=128, batch_size=16, epochs=1)  # fmt: skip
    assert isinstance(res, svag.api.RulesResult) and res.answer.startswith("from B0 = 16: sqrt ")
    assert [(r["rule"], r["batch_size"]) for r in res.table("verdicts")] == [("sqrt", 32), ("sqrt_lr", 32)]
    assert {r["run"] for r in res.records} >= {"sqrt/B32_seed0", "sqrt_lr/B32_seed1"}
    assert (tmp_path / sf.RULES_PNG).is_file()
    with pytest.raises(ValueError, match=r"rules entries must be one of linear, sqrt, .*got 'cubic'"):
        svag.scale("mlp", "teacher-student", out=tmp_path / "bad", batch_sizes=(32,), rules=["sqrt", "cubic"])
    assert not (tmp_path / "bad").exists()
