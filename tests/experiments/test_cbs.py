"""``svag cbs`` (:mod:`svag.experiments.cbs`): a branch from a checkpoint continues the baseline exactly, the CBS
decision on a synthetic table, the command end to end at tiny size, its resume and its refusals."""

import json
import math
from dataclasses import replace

import pytest
import torch

from svag import sweepfolder
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.cbs import cbs_decision, checkpoint_epochs
from svag.runfolder import CHECKPOINT
from svag.runner import run

TINY = ["--data", "teacher-student", "--n-train", "128", "--n-test", "64", "--model", "mlp", "--width", "16",
        "--batch-size", "8", "--lr", "0.05", "--epochs", "1", "--eval-every", "0.25", "--device", "cpu",
        "--points", "2", "--kappas", "1,2,4", "--seeds", "2", "--branch-epochs", "0.5", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_branch_at_kappa_1_equals_the_continuation_bit_for_bit(tmp_path, optimizer):
    """A run started from another run's checkpoint (``init_from``) with the same config is that run's
    continuation: 1 + 1 epochs equal 2 epochs in every metric and every weight (momentum and Adam's state
    included; the G/N extra batches draw from their own stream and do not touch the trajectory)."""
    cfg = RunConfig(data="teacher-student", n_train=128, n_test=64, model="mlp", width=16, batch_size=16, lr=0.05,
                    epochs=2.0, eval_every=0.5, device="cpu", optimizer=optimizer, noise_fraction=0.5,
                    momentum=0.9 if optimizer == "sgd" else 0.0)  # fmt: skip
    whole = run(cfg, tmp_path / "whole", progress=False)
    run(replace(cfg, epochs=1.0), tmp_path / "first", progress=False)
    second = run(replace(cfg, epochs=1.0), tmp_path / "second", progress=False,
                 init_from=tmp_path / "first" / CHECKPOINT)  # fmt: skip
    for key in ("train_loss", "test_loss", "weight_norm_sq"):
        assert [r[key] for r in second.records] == [r[key] for r in whole.records[2:]], key
    assert [r["epoch"] for r in second.records] == [r["epoch"] - 1.0 for r in whole.records[2:]]  # its own clock
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "second" / CHECKPOINT, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_cbs_decision_on_a_synthetic_table():
    """κ = 2 within 1% of κ = 1 (paired, tight) follows; κ = 4 is 20% worse and departs: CBS = 2B."""
    base = {0: 1.00, 1: 1.10, 2: 0.90}
    finals = {1.0: base, 2.0: {s: v * 1.001 for s, v in base.items()}, 4.0: {s: v * 1.2 for s, v in base.items()}}
    d = cbs_decision(finals, 32, epsilon=0.01)
    assert d["cbs"] == 64 and d["departs_at"] == 4.0 and d["undecided_at"] is None
    assert [r["outcome"] for r in d["rows"]] == ["follows", "departs"]
    finals[2.0] = {0: 1.3, 1: 0.8, 2: 1.0}  # noisy and wide: undecided at κ = 2, so the CBS is B itself
    d = cbs_decision(finals, 32, epsilon=0.01)
    assert d["cbs"] == 32 and d["undecided_at"] == 2.0
    finals[2.0] = {0: math.nan, 1: 1.1, 2: 0.9}  # a branch that diverged departs
    assert cbs_decision(finals, 32)["rows"][0]["outcome"] == "departs"
    assert checkpoint_epochs(8.0, 5) == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_cbs_command_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "cbs"
    assert main(["cbs", "--out", str(out), *TINY, "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "| checkpoint | epoch | samples | CBS |" in text and "B_simple" in text
    for name in (sweepfolder.CBS_JSON, sweepfolder.CBS_MD, sweepfolder.CBS_CSV, sweepfolder.CBS_PNG):
        assert (out / name).is_file(), name
    result = json.loads((out / sweepfolder.CBS_JSON).read_text())["result"]
    assert [r["point"] for r in result["rows"]] == [1, 2]
    assert [r["epoch"] for r in result["rows"]] == [0.5, 1.0] and [r["samples"] for r in result["rows"]] == [64, 128]
    for r in result["rows"]:
        assert r["cbs"] in (8, 16, 32) and r["B_simple"] > 0 and r["B_star"] == pytest.approx(2 * r["B_simple"])
    assert (out / sweepfolder.cbs_branch_run(2, 32, 1) / CHECKPOINT).is_file()
    table = (out / sweepfolder.CBS_MD).read_text()
    assert main(["cbs", "--out", str(out), *TINY, "--threads", "1", "--resume"]) == 0  # nothing trains again
    assert "already completed" in capsys.readouterr().out
    assert (out / sweepfolder.CBS_MD).read_text() == table
    assert main(["cbs", "--out", str(out), *TINY, "--threads", "1"]) == 2  # without --resume: refused
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--kappas", "2,4"], "kappas must hold 1"),
        (["--schedule", "cosine"], "constant LR"),
        (["--epsilon", "0"], "--epsilon must be"),
        (["--epsilon", "1.5"], "epsilon must be a relative tolerance"),
        (["--points", "0"], "--points must be"),
        (["--kappas", "1,64"], "batch"),  # κB = 512 > n_train = 128
        (["--noise", "off"], "--noise pairs"),
    ],
)
def test_bad_inputs_are_refused_in_one_line_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "cbs"
    assert main(["cbs", "--out", str(out), *TINY, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_the_python_api_gives_the_commands_table(tmp_path, capsys):
    """``svag.cbs`` with the command's settings trains the same runs and returns the rows of ``cbs.json``."""
    import svag

    assert main(["cbs", "--out", str(tmp_path / "cli"), *TINY, "--threads", "1"]) == 0
    capsys.readouterr()
    res = svag.cbs(
        "mlp", "teacher-student", out=tmp_path / "api", n_train=128, n_test=64, width=16, batch_size=8, lr=0.05,
        epochs=1.0, eval_every=0.25, device="cpu", points=2, kappas=(1, 2, 4), seeds=2, branch_epochs=0.5, threads=1,
    )  # fmt: skip
    cli = json.loads((tmp_path / "cli" / sweepfolder.CBS_JSON).read_text())["result"]["rows"]
    assert (
        res.rule == "linear" and set(res.statuses.values()) == {"completed"} and len(res.statuses) == 2 * 2 + 3 * 2 * 2
    )
    assert [(r["cbs"], r["B_simple"]) for r in res.rows] == [(r["cbs"], r["B_simple"]) for r in cli]
    assert (tmp_path / "api" / sweepfolder.CBS_PNG).is_file()


def test_adam_predictions_use_the_preconditioned_gn(tmp_path, capsys):
    """Adam's baseline records the preconditioned G/N (``*_pre``): the table's B_simple is B over its pooled ratio,
    said in the table's first line; the branches follow the square-root rule."""
    from svag.noise import pool_window
    from svag.records import read_jsonl

    out = tmp_path / "cbs"
    flags = list(TINY)
    flags[flags.index("--kappas") + 1] = "1,2"
    assert main(["cbs", "--out", str(out), *flags, "--optimizer", "adam", "--lr", "0.003", "--threads", "1"]) == 0
    assert "G/N preconditioned by the optimizer's 1/(√v + ε)" in capsys.readouterr().out
    result = json.loads((out / sweepfolder.CBS_JSON).read_text())["result"]
    assert result["gn"] == "preconditioned" and result["rule"] == "sqrt"
    base = [r for s in (0, 1) for r in read_jsonl(out / f"base1_seed{s}" / "metrics.jsonl")]
    pooled = pool_window([r for r in base if 0.5 / 2**0.5 <= r["epoch"] <= 0.5 * 2**0.5], suffix="_pre")
    assert result["rows"][0]["B_simple"] == pytest.approx(8 / pooled.ratio, rel=1e-9)
