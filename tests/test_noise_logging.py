"""G/N logging inside the runner: it never changes the trajectory, counts what it says, and
measures only inside ``noise_window`` when one is given."""

from dataclasses import replace

import pytest

from svag import runner
from svag import sweepfolder as sf
from svag.config import RunConfig
from svag.records import read_jsonl

# 256 samples at B = 16: 16 SGD steps per epoch, a record every 0.25 epoch = every 4 SGD steps
BASE = RunConfig(
    data="teacher-student", n_train=256, n_test=64, model="mlp", norm="bn", lr=0.2, batch_size=16,
    epochs=2.0, eval_every=0.25, checkpoint_every=0, device="cpu", dtype="float64",
)  # fmt: skip
TRAJECTORY = ("sde_time", "step", "train_loss", "test_loss", "train_acc", "weight_norm_sq", "grad_norm_sq")


def _run(tmp_path, name, **change):
    return runner.run(replace(BASE, **change).validate(), tmp_path / name, progress=False).records


def test_sgd_extra_batches_leave_the_trajectory_bit_identical(tmp_path):
    """The extra batch has its own generator and BatchNorm buffers are restored after it."""
    off = _run(tmp_path, "off", noise="off")
    every = _run(tmp_path, "every", noise="pairs", noise_fraction=1.0, noise_every=0.5, noise_batches=8)
    assert [[r[k] for k in TRAJECTORY] for r in off] == [[r[k] for k in TRAJECTORY] for r in every]
    assert all(r["noise_count"] is None for r in off)
    # f = 1: one pair per SGD step since the previous record (4 steps), none before the first step
    assert [r["noise_count"] for r in every] == [None] + [4] * (len(every) - 1)
    assert [("G_m" in r) for r in every] == [i % 2 == 0 for i in range(len(every))]


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_noise_window_limits_pairs_and_m_batch_measurements(tmp_path, l):
    """Window [0.5, 1.5) epochs: pairs only from steps starting inside it, i.e. in the records at
    0.75 … 1.5 epochs; the m-batch measurement (every 0.5 epoch) at 0.5, 1.0 and 1.5 only."""
    rows = _run(tmp_path, "w", l=l, noise_fraction=1.0, noise_window=(0.5, 1.5), noise_every=0.5, noise_batches=8)
    epochs = [round(r["epoch"], 6) for r in rows]
    assert epochs == [0.25 * j for j in range(9)]
    counted = [e for e, r in zip(epochs, rows) if r["noise_count"]]
    assert counted == [0.75, 1.0, 1.25, 1.5]
    per_record = 4 * l  # SVAG draws its pair at each of its l-times-as-many steps
    assert all(r["noise_count"] == per_record for r in rows if r["noise_count"])
    assert [e for e, r in zip(epochs, rows) if "G_m" in r] == [0.5, 1.0, 1.5]


def test_noise_window_keeps_the_sgd_trajectory(tmp_path):
    whole = _run(tmp_path, "whole", noise_fraction=0.5)
    window = _run(tmp_path, "window", noise_fraction=0.5, noise_window=(1.0, 2.0))
    assert [[r[k] for k in TRAJECTORY] for r in whole] == [[r[k] for k in TRAJECTORY] for r in window]
    assert all(r["noise_count"] is None for r in window if r["epoch"] <= 1.0 + 1e-9)


@pytest.mark.parametrize("window", [(1.0,), (1.0, 1.0), (2.0, 1.0), (-0.5, 1.0), (0.0, float("inf"))])
def test_bad_noise_window_names_the_value(window):
    with pytest.raises(ValueError, match=r"noise_window must be START,END epochs with 0 <= START < END, got"):
        replace(BASE, noise_window=window).validate()


def test_noise_window_round_trips_through_the_saved_config():
    cfg = replace(BASE, noise_window=(0.5, 1.5))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


LSR_ARGS = ["--epochs", "3", "--milestones", "2", "--eval-every", "0.25", "--model", "mlp", "--data", "teacher-student",
            "--n-train", "256", "--n-test", "64", "--batch-size", "16", "--device", "cpu", "--no-progress",
            "--window", "0.25"]  # fmt: skip


def test_lsr_measures_in_the_equilibrium_window_by_default(tmp_path):
    from svag.cli import main
    from svag.records import read_json

    out = tmp_path / "lsr"
    assert main(["lsr", "--out", str(out), *LSR_ARGS]) == 0
    cfg = read_json(out / "B16" / "config.json")["config"]
    assert cfg["noise_window"] == [1.5, 2.0] and cfg["noise_fraction"] == 1.0
    rows = read_jsonl(out / "B16" / "metrics.jsonl")
    assert [round(r["epoch"], 6) for r in rows if r["noise_count"]] == [1.75, 2.0]
    assert read_json(out / sf.LSR_JSON)["baseline"]["records"] == 2


def test_ensemble_replicas_get_the_m_batch_measurement_of_their_seed_run(tmp_path):
    """Seeds trained together (stacked parameters) record the same P1 m-batch G/N as each seed
    run alone: each replica is measured on a plain copy with its own generator (float64)."""
    cfg = replace(BASE, noise_every=1.0, noise_batches=8, noise_fraction=0.5)
    together = runner.run_replicas(cfg, [0, 1], [tmp_path / "e0", tmp_path / "e1"], progress=False)
    for seed, res in zip((0, 1), together):
        alone = _run(tmp_path, f"s{seed}", seed=seed, noise_every=1.0, noise_batches=8, noise_fraction=0.5)
        measured = [r for r in res.records if "G_m" in r]
        assert len(measured) == 3  # epochs 0, 1, 2
        for a, b in zip(measured, [r for r in alone if "G_m" in r]):
            for key in ("G_m", "N_m", "G_m_se", "gn_ratio_m", "G", "N"):
                want = None if b[key] is None else pytest.approx(b[key], rel=1e-9, abs=1e-15)
                assert a[key] == want, key


def test_lsr_with_a_noise_window_missing_the_equilibrium_window_says_so(tmp_path, capsys):
    from svag.cli import main

    assert main(["lsr", "--out", str(tmp_path / "lsr"), *LSR_ARGS, "--noise-window", "0,1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no G/N records in the window" in err[0] and "--noise-window covering it" in err[0]
