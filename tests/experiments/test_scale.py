"""`svag scale`: a batch-size sweep under the linear or square-root rule, end to end on tiny runs.

Equivalence checks (configs follow the rule; the x-axis t0(epoch) equals each run's own sde_time
when the rule holds) use near-exact tolerances (rel 1e-9: float sums of per-step times).
Whole file: about 15 s on 2 CPU cores.
"""

import contextlib
import math
import shutil

import numpy as np
import pytest

from helpers import FIXTURES
from svag import sweepfolder as sf
from svag.analysis.plotting import plot_scale
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.scale import (
    base_run,
    base_time_at_epoch,
    scale_curves,
    scale_rows,
    scaled_configs,
    write_scale_summary,
)
from svag.records import read_json, write_json
from svag.runfolder import RunFolder

V1 = FIXTURES / "release_0_1_0"

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--epochs", "1",
        "--device", "cpu", "--no-progress"]  # fmt: skip
ADAM = ["--optimizer", "adam", "--lr", "0.001"]


@pytest.fixture(scope="module")
def adam_sweep(tmp_path_factory):
    """Adam, sqrt rule (auto), B0 = 16 and B = 64 (κ = 4), 2 seeds, evaluated every half epoch."""
    out = tmp_path_factory.mktemp("scale") / "adam"
    code = main(["scale", "--out", str(out), "--batch-sizes", "64", "--seeds", "2", "--eval-every", "0.5",
                 *ADAM, *TINY])  # fmt: skip
    assert code == 0
    return out


def test_cli_writes_runs_figure_and_table(adam_sweep):
    out = adam_sweep
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["B16_seed0", "B16_seed1", "B64_seed0", "B64_seed1"]
    for name in ("B16_seed0", "B64_seed1"):
        assert read_json(out / name / "status.json")["status"] == "completed"
    assert (out / sf.SCALE_PNG).stat().st_size > 10_000
    md = (out / sf.SCALE_SUMMARY_MD).read_text().splitlines()
    rows = [line for line in md if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 16", "| 64"]
    csv = (out / sf.SCALE_SUMMARY_CSV).read_text().splitlines()
    head = csv[0].split(",")
    for col in ("batch_size", "kappa", "lr", "beta1", "beta2", "eps", "test_acc_final", "test_acc_final_std",
                "test_loss_diff", "test_acc_diff", "weight_norm_sq_final"):  # fmt: skip
        assert col in head
    assert len(csv) == 3
    table = {r["batch_size"]: r for r in scale_rows(out)}
    assert table[16]["test_acc_diff"] == 0.0 and table[16]["seeds"] == table[64]["completed"] == 2
    assert table[64]["test_loss_diff"] == pytest.approx(table[64]["test_loss_final"] - table[16]["test_loss_final"])


def test_sqrt_rule_configs(adam_sweep):
    spec = read_json(adam_sweep / sf.SCALE_JSON)
    assert spec["rule"] == "sqrt" and spec["base"]["batch_size"] == 16 and spec["base"]["lr"] == 0.001
    runs = {r["batch_size"]: r for r in spec["runs"]}
    big = runs[64]
    assert big["kappa"] == 4.0
    assert big["lr"] == pytest.approx(0.001 * 2, rel=1e-12)  # η·√κ
    assert big["betas"] == pytest.approx([1 - 4 * 0.1, 1 - 4 * 0.001], rel=1e-12)  # 1 − β → κ(1 − β)
    assert big["eps"] == pytest.approx(1e-8 / 2, rel=1e-12)  # ε/√κ
    saved = read_json(adam_sweep / "B64_seed1" / "config.json")["config"]
    assert saved["batch_size"] == 64 and saved["lr"] == big["lr"] and saved["betas"] == big["betas"]
    assert saved["seed"] == 1 and saved["l"] == 1.0
    # the rule's invariants are the same at every B
    assert big["invariants"]["time_per_sample"] == pytest.approx(runs[16]["invariants"]["time_per_sample"])


def test_adam_sqrt_x_axis_is_each_runs_sde_time(adam_sweep):
    curves = scale_curves(adam_sweep, ("test_loss",))["test_loss"]
    assert [c.batch_size for c in curves] == [16, 64]
    for c in curves:
        assert len(c.x) == 3 and c.n_seeds == 2  # epochs 0, 0.5, 1
        np.testing.assert_allclose(c.x, c.sde_time, rtol=1e-9, atol=0)
    tau0 = 256 / 16 * 0.001**2  # Adam clock: η0²·n/B0 per epoch
    np.testing.assert_allclose(curves[1].x, curves[1].epoch * tau0, rtol=1e-9)


def test_resume_keeps_completed_runs(adam_sweep, capsys):
    files = sorted(adam_sweep.glob("B*_seed*/metrics.jsonl"))
    before = [p.stat().st_mtime_ns for p in files]
    code = main(["scale", "--out", str(adam_sweep), "--batch-sizes", "64", "--seeds", "2", "--eval-every", "0.5",
                 "--resume", *ADAM, *TINY])  # fmt: skip
    assert code == 0
    assert [p.stat().st_mtime_ns for p in files] == before
    assert sf.SCALE_SUMMARY_MD in capsys.readouterr().out


def test_existing_runs_need_resume_with_the_same_flags(adam_sweep, capsys):
    code = main(["scale", "--out", str(adam_sweep), "--batch-sizes", "64", "--seeds", "2", *ADAM, *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not empty; pass --resume" in err[0]
    before = (adam_sweep / sf.SCALE_JSON).read_text()
    code = main(["scale", "--out", str(adam_sweep), "--batch-sizes", "64", "--seeds", "2", "--eval-every", "0.5",
                 "--resume", "--optimizer", "adam", "--lr", "0.002", *TINY])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "a base config differing in ['lr']" in err[0]
    assert (adam_sweep / sf.SCALE_JSON).read_text() == before


def test_sgd_linear_rule_with_a_schedule(tmp_path, capsys):
    """SGD clock: the linear rule keeps the time per epoch, also across a multistep LR decay. The decay is
    shaped over each run's steps (the default), so both phases are evaluated every quarter epoch.
    (η = 0.125 and γ = 0.5 keep every time exact in binary: a sum of 0.1s reaching the milestone
    0.8 as 0.7999… would take one more step at the old LR on time.)"""
    out = tmp_path / "sgd"
    schedule = ["--lr", "0.125", "--schedule", "multistep", "--milestones", "0.5", "--gamma", "0.5"]
    code = main(["scale", "--out", str(out), "--batch-sizes", "32", "--seeds", "1", *schedule, "--eval-every", "0.25",
                 *TINY])  # fmt: skip
    assert code == 0
    assert "rule: linear (auto: sgd" in capsys.readouterr().out
    runs = {r["batch_size"]: r for r in read_json(out / sf.SCALE_JSON)["runs"]}
    assert runs[32]["lr"] == pytest.approx(0.25, rel=1e-12) and runs[32]["kappa"] == 2.0
    curves = scale_curves(out, ("train_loss",))["train_loss"]
    for c in curves:
        np.testing.assert_allclose(c.epoch, [0, 0.25, 0.5, 0.75, 1.0], rtol=1e-12)
        np.testing.assert_allclose(c.x, c.sde_time, rtol=1e-9, atol=1e-15)
    assert curves[1].sde_time[-1] == pytest.approx(0.5 * 16 * 0.125 + 0.5 * 16 * 0.0625, rel=1e-9)
    assert (out / sf.SCALE_PNG).is_file()


def test_wrong_rule_shows_on_the_x_axis(tmp_path, capsys):
    """Adam under the linear rule: time per epoch ×κ (η² per step), so sde_time = κ·t0."""
    out = tmp_path / "adam-linear"
    assert main(["scale", "--out", str(out), "--rule", "linear", "--batch-sizes", "32", "--seeds", "1",
                 *ADAM, *TINY]) == 0  # fmt: skip
    assert "as given; note: adam follows P2's square-root rule" in capsys.readouterr().out
    big = scale_curves(out, ("test_acc",))["test_acc"][1]
    np.testing.assert_allclose(big.sde_time[1:], 2 * big.x[1:], rtol=1e-9)
    assert scale_rows(out)[1]["sde_time_final"] == pytest.approx(2 * scale_rows(out)[1]["base_time_final"])


def test_rule_out_of_range_exits_2_before_training(tmp_path, capsys):
    """Adam's default β1 = 0.9 binds first: κ(1 − 0.9) < 1 ⇒ κ < 10 ⇒ B < 160 from B0 = 16."""
    out = tmp_path / "bad"
    code = main(["scale", "--out", str(out), "--batch-sizes", "32,32768", "--seeds", "1", *ADAM, *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "batch size 32768" in err[0] and "κ = 32768/16 = 2048" in err[0] and "B < B0/(1 − β) = 160 " in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ("32,8000", "batch_size=8000 is larger than the training set (n_train=256); use batch_size <= 256"),
        ("32,32", "values must be distinct, got '32,32'"),
    ],
)
def test_impossible_or_repeated_batch_sizes_exit_2_before_training(tmp_path, capsys, sizes, message):
    """Used to train B = 32, then fail B = 8000 with status 1 (or train B = 32 once for 32,32)."""
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) if "distinct" in message else contextlib.nullcontext() as exit_:
        code = main(["scale", "--out", str(out), "--batch-sizes", sizes, "--seeds", "1", *TINY])
    code = exit_.value.code if exit_ is not None else code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "scale" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["scale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--rule RULE" in text and all(name in text for name in ("sqrt_lr", "adamw_timescale", "beta_halflife"))


def test_unknown_rule_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scale", "--out", "x", "--rule", "cubic", "--batch-sizes", "32"])
    assert exc.value.code == 2 and "rule must be one of auto, linear, sqrt, sqrt_lr" in capsys.readouterr().err


def test_scaled_configs_rmsprop_uses_its_one_beta():
    """RMSprop reads betas[-1] only: an unused β1 = 0.9 sets no limit at κ = 16."""
    base = RunConfig(optimizer="rmsprop", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, batch_size=16)
    plan = scaled_configs(base, "sqrt", [256, 64])
    assert [b for b, _, _ in plan] == [16, 64, 256]
    cfg = plan[-1][2]
    assert cfg.betas == pytest.approx((1 - 16 * 0.001,)) and cfg.lr == pytest.approx(4e-3) and plan[-1][1] == 16.0
    with pytest.raises(ValueError, match=r"batch size 16000 .* B < B0/\(1 − β\) = 16000"):
        scaled_configs(base, "sqrt", [16000])


def test_base_time_at_epoch_interpolates_then_continues_at_the_tail_rate():
    e, t = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.5])  # the LR halved after epoch 1
    got = base_time_at_epoch(np.array([0.5, 1.5, 3.0]), e, t, tail_time_per_epoch=0.5)
    np.testing.assert_allclose(got, [0.5, 1.25, 2.0])
    assert math.isclose(base_time_at_epoch(np.array([2.0]), e, t, 0.5)[0], 1.5)


def test_readers_on_release_0_1_0_folders(tmp_path):
    """A sweep whose run folders were written by release 0.1.0 (schema version 1): B = 16 has a
    completed seed and one killed after 3 records; B = 32 never started. Curves, table and figure."""
    out = tmp_path / "v1"
    shutil.copytree(V1 / "compare" / "l1_seed0", out / "B16_seed0")
    shutil.copytree(V1 / "killed" / "l2_seed0", out / "B16_seed1")
    base = RunFolder(out / "B16_seed0").run_config()
    entry = {"kappa": 1.0, "lr": 0.1, "batch_size": 16, "betas": list(base.betas), "eps": base.eps}
    write_json(out / sf.SCALE_JSON, {
        "rule": "linear", "base_batch_size": 16, "seeds": [0, 1], "base": base.to_dict(),
        "runs": [{**entry, "dirs": ["B16_seed0", "B16_seed1"]},
                 {**entry, "kappa": 2.0, "lr": 0.2, "batch_size": 32, "dirs": ["B32_seed0", "B32_seed1"]}],
    })  # fmt: skip
    (curve,) = scale_curves(out, ("test_acc",))["test_acc"]
    assert curve.batch_size == 16 and curve.n_seeds == 2 and len(curve.x) == 3  # truncated to the killed seed
    np.testing.assert_allclose(curve.x, curve.sde_time, rtol=1e-12)  # the base run's own time
    rows = {r["batch_size"]: r for r in scale_rows(out, ("test_acc",))}
    assert (rows[16]["seeds"], rows[16]["completed"]) == (2, 1) and rows[32]["completed"] == 0
    assert math.isnan(rows[32]["test_acc_final"])
    md, _ = write_scale_summary(out, ("test_acc", "test_loss"))
    assert "2 (1 completed)" in md.read_text() and "no records" in md.read_text()
    assert base_run(out).derived["clock"] == {"power": 1, "l": 1.0, "lr_factor": 1.0}
    fig = plot_scale(scale_curves(out, ("test_acc",)), out / sf.SCALE_PNG, base=base_run(out), rule="linear")
    assert fig.stat().st_size > 10_000
