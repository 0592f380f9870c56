"""The run folder: its one writer and one reader, the NaN/inf encoding, and folders of release 0.1.0.

tests/fixtures/release_0_1_0/ was written by release 0.1.0 (schema version 1): compare/l1_seed0 and
compare/l2_seed0 completed; killed/l2_seed0 stopped right after its first checkpoint (status
"running", step 0, records up to sde_time 1.6 of end_time 3.2). Whole file: a few seconds.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from helpers import FIXTURES, interrupt_at_step
from svag import records
from svag.config import RunConfig
from svag.experiments.lsr_sweep import _final_errors, equilibrium_window, lsr_table, window_ratio
from svag.runfolder import SCHEMA_VERSION, STATUSES, RunFolder, Status, _upgrade_v1, find_runs, load_runs

V1 = FIXTURES / "release_0_1_0"
DERIVED = {
    "time_per_epoch": 1.0,
    "end_time": 4.0,
    "eval_times": [0.0, 2.0, 4.0],
    "schedule": {"kind": "constant", "lr": 0.1},
    "clock": {"power": 1, "l": 2.0, "lr_factor": 1.0},
    "optimizer_names": {"simulated": "SGD", "svag": "SVAG"},
}


def _new(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.create(RunConfig(l=2.0).to_dict(), DERIVED, {"seed": 0})
    return folder


# -- NaN/inf on disk ------------------------------------------------------------------------------


def test_non_finite_floats_and_none_round_trip(tmp_path):
    folder = _new(tmp_path)
    row = {"a": math.nan, "b": math.inf, "c": -math.inf, "d": None, "e": [math.nan, {"f": -math.inf}], "s": "ok"}
    folder.append_record(row)
    text = folder.metrics_path.read_text()
    assert '"nan"' in text and '"-inf"' in text and "NaN" not in text and "Infinity" not in text  # valid JSON
    assert json.loads(text)["b"] == "inf"  # what jq or pandas see
    (got,) = folder.records()
    assert math.isnan(got["a"]) and got["b"] == math.inf and got["c"] == -math.inf and got["d"] is None
    assert math.isnan(got["e"][0]) and got["e"][1] == {"f": -math.inf} and got["s"] == "ok"
    records.write_json(tmp_path / "x.json", {"deep": [[math.inf]], "ok": "nano"})
    assert records.read_json(tmp_path / "x.json") == {"deep": [[math.inf]], "ok": "nano"}


# -- the writer -----------------------------------------------------------------------------------


def test_create_writes_the_current_schema_and_reads_back(tmp_path):
    folder = _new(tmp_path)
    saved = json.loads(folder.config_path.read_text())
    assert list(saved) == ["schema_version", "config", "derived"] and saved["schema_version"] == SCHEMA_VERSION == 3
    assert folder.exists() and folder.schema_version() == 3
    assert folder.run_config() == RunConfig(l=2.0) and folder.derived() == DERIVED and folder.env() == {"seed": 0}
    assert folder.status() == Status("not started") and folder.records() == [] and folder.progress() == 0.0
    assert not folder.has_checkpoint()
    run = folder.load()
    assert (run.path, run.schema_version, run.status.status, run.records) == (folder.path, 3, "not started", [])


def test_create_starts_afresh_and_needs_the_optimizer_facts(tmp_path):
    folder = _new(tmp_path)
    folder.append_record({"sde_time": 1.0})
    folder.write_status("interrupted", step=3)
    folder.save_checkpoint({"step": 3})
    folder.create(RunConfig(l=4.0).to_dict(), DERIVED, {})
    assert folder.records() == [] and not folder.has_checkpoint() and folder.status().status == "not started"
    assert folder.config()["l"] == 4.0
    bad = {k: v for k, v in DERIVED.items() if k != "optimizer_names"}
    with pytest.raises(ValueError, match=r"missing \['optimizer_names'\]"):
        folder.create({}, bad, {})
    with pytest.raises(ValueError, match=r"missing \['clock.lr_factor'\]"):
        folder.create({}, {**DERIVED, "clock": {"power": 1, "l": 1.0}}, {})


def test_status_is_typed_and_validated(tmp_path):
    folder = _new(tmp_path)
    last = {"sde_time": 2.0, "epoch": 2.0, "train_loss": 0.5}
    folder.write_status("running", step=7, sde_time=2.5, records=2, last_record=last, wall_time=1.5, host="a")
    status = folder.status()
    assert (status.status, status.step, status.sde_time, status.records) == ("running", 7, 2.5, 2)
    assert status.last_record == last and status.wall_time == 1.5 and status.message is None
    assert status.extra == {"host": "a"}
    assert Status.from_dict(status.to_dict()) == status
    with pytest.raises(ValueError, match=r"status must be one of not started, running, .*failed, got 'done'"):
        folder.write_status("done")
    folder.status_path.write_text('{"status": "unknown"}')
    with pytest.raises(ValueError, match=r"status.json: status must be one of .* got 'unknown'"):
        folder.status()
    assert STATUSES[0] == "not started"


def test_keep_records_for_resume(tmp_path):
    folder = _new(tmp_path)
    for i in range(3):
        folder.append_record({"sde_time": 2.0 * i})  # at DERIVED's evaluation times
    with open(folder.metrics_path, "a") as fh:
        fh.write('{"sde_time": 6')  # killed mid-append
    assert [r["sde_time"] for r in folder.records()] == [0.0, 2.0, 4.0]
    assert folder.keep_records(2) == [{"sde_time": 0.0}, {"sde_time": 2.0}]
    assert folder.metrics_path.read_text().count("\n") == 2
    with pytest.raises(ValueError, match=r"cannot resume .*run: metrics.jsonl has 2 records, the checkpoint expects 5"):
        folder.keep_records(5)


def test_progress(tmp_path):
    folder = _new(tmp_path)  # end_time 4
    folder.append_record({"sde_time": 1.0})
    assert folder.progress() == 0.25
    folder.write_status("running", step=3, last_record={"sde_time": 2.0})
    assert folder.progress() == 0.5
    folder.write_status("running", step=3, sde_time=3.0)
    assert folder.progress() == 0.75
    folder.write_status("completed", sde_time=3.9999999)
    assert folder.progress() == 1.0
    assert RunFolder(tmp_path / "nothing").progress() == 0.0


def test_checkpoint_round_trip(tmp_path):
    folder = _new(tmp_path)
    folder.save_checkpoint({"step": 3, "w": torch.arange(3.0)})
    state = folder.load_checkpoint()
    assert folder.has_checkpoint() and state["step"] == 3 and torch.equal(state["w"], torch.arange(3.0))


def test_unreadable_configs_are_named(tmp_path):
    folder = _new(tmp_path)
    records.write_json(folder.config_path, {"schema_version": 4, "config": {}, "derived": {}})
    with pytest.raises(ValueError, match="schema_version 4; this svag reads versions 1 to 3"):
        folder.load()
    records.write_json(folder.config_path, {"config": {}})
    with pytest.raises(ValueError, match=r"config.json is not the config of a run: it needs 'config' and 'derived'"):
        folder.config()


def test_find_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such folder: .*nope"):
        find_runs(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no runs \(config.json \+ metrics.jsonl\) under"):
        find_runs(tmp_path)
    _new(tmp_path / "b").append_record({"sde_time": 0.0})
    _new(tmp_path / "a").append_record({"sde_time": 0.0})
    _new(tmp_path / "c")  # no records file yet: not listed
    assert [f.path.parent.name for f in find_runs(tmp_path)] == ["a", "b"]


# -- release 0.1.0 (schema version 1) -------------------------------------------------------------


def test_release_0_1_0_folders_load():
    runs = load_runs(V1)
    assert [str(r.path.relative_to(V1)) for r in runs] == ["compare/l1_seed0", "compare/l2_seed0", "killed/l2_seed0"]
    assert [r.schema_version for r in runs] == [1, 1, 1]
    assert [r.status.status for r in runs] == ["completed", "completed", "running"]
    assert runs[2].status.step == 0 and runs[2].status.sde_time is None
    assert [len(r.records) for r in runs] == [5, 5, 3]
    assert math.isnan(runs[0].records[1]["G_se"]) and runs[0].records[0]["G"] is None  # decoded
    for r in runs:
        assert set(r.config) == set(RunConfig().to_dict())  # fields added since 0.1.0 get their defaults
        assert r.derived["end_time"] == 3.2 and r.env["svag"] == "0.1.0"
        assert r.derived["clock"] == {"power": 1, "l": r.config["l"], "lr_factor": 1.0}
        assert r.derived["optimizer_names"] == {"simulated": "SGD", "svag": "SVAG"}
    assert RunFolder(runs[1].path).run_config().l == 2.0


def test_release_0_2_0_folders_load():
    """Folders of release 0.2.0 (schema version 2; constant LR): read as written, nothing upgraded."""
    root = FIXTURES / "release_0_2_0"
    runs = load_runs(root)
    assert [str(r.path.relative_to(root)) for r in runs] == ["compare/l1_seed0", "compare/l2_seed0", "killed/l2_seed0"]
    assert [r.schema_version for r in runs] == [2, 2, 2] and [r.env["svag"] for r in runs] == ["0.2.0"] * 3
    assert [r.status.status for r in runs] == ["completed", "completed", "running"]
    assert runs[2].status.step == 32 and runs[2].status.sde_time == pytest.approx(1.6)
    assert [len(r.records) for r in runs] == [5, 5, 3]
    for r in runs:
        assert set(r.config) == set(RunConfig().to_dict())
        assert r.derived["end_time"] == pytest.approx(3.2) and r.derived["clock"]["l"] == r.config["l"]
    assert RunFolder(root / "killed" / "l2_seed0").progress() == pytest.approx(0.5, rel=1e-12)


def test_release_0_1_0_progress_and_checkpoints():
    killed = RunFolder(V1 / "killed" / "l2_seed0")
    assert killed.progress() == pytest.approx(0.5, rel=1e-12)  # records up to 1.6 of end_time 3.2
    assert killed.has_checkpoint()
    assert RunFolder(V1 / "compare" / "l2_seed0").progress() == 1.0


SGDM = {"simulated": "SGDM", "svag": "SVAG of SGD at η/(1-β)"}


@pytest.mark.parametrize(
    ("kw", "clock", "names"),
    [({}, (1, 1.0, 1.0), {"simulated": "SGD", "svag": "SVAG"}),
     ({"l": 2.0}, (1, 2.0, 1.0), {"simulated": "SGD", "svag": "SVAG"}),
     ({"momentum": 0.5}, (1, 1.0, 2.0), SGDM),
     ({"momentum": 0.5, "l": 4.0}, (1, 4.0, 2.0), SGDM),
     ({"optimizer": "adam", "l": 2.0}, (2, 2.0, 1.0), {"simulated": "Adam", "svag": "SVAG-Adam"}),
     ({"optimizer": "rmsprop", "betas": (0.99,)}, (2, 1.0, 1.0), {"simulated": "RMSprop", "svag": "SVAG-RMSprop"})],
)  # fmt: skip
def test_v1_upgrade_fills_the_clock_and_names(kw, clock, names):
    """Release 0.1.0's clocks (P1: η per step, η/(1−β) with heavy-ball momentum; P2: η²) and names."""
    cfg = RunConfig(**kw).validate()
    got = _upgrade_v1(cfg.to_dict(), {"end_time": 1.0})
    assert got["clock"] == dict(zip(("power", "l", "lr_factor"), clock))
    assert got["optimizer_names"] == names
    assert got["end_time"] == 1.0


def test_v1_folder_of_an_old_adam_run_reads_with_its_clock(tmp_path):
    src = V1 / "compare" / "l2_seed0"
    shutil.copytree(src, tmp_path / "r")
    saved = records.read_json(tmp_path / "r" / "config.json")
    saved["config"].update(optimizer="adam", lr=0.001)
    records.write_json(tmp_path / "r" / "config.json", saved)
    run = RunFolder(tmp_path / "r").load()
    assert run.schema_version == 1 and run.derived["clock"] == {"power": 2, "l": 2.0, "lr_factor": 1.0}
    assert run.derived["optimizer_names"]["svag"] == "SVAG-Adam"


def test_lsr_readers_on_release_0_1_0():
    """The LSR test's readers on version-1 folders: the window from the derived schedule, G/N
    pooled from the records, the final errors and the status of each run."""
    l2, killed = V1 / "compare" / "l2_seed0", V1 / "killed" / "l2_seed0"
    assert equilibrium_window(l2, 0.5) == pytest.approx((1.6, 3.2))
    gn = window_ratio(l2, (0.0, 3.2))
    G = [0.003471938349897917, -0.0017451872941299778, 0.010870148150425559, 0.016087843067726107]  # each over 16 steps
    assert gn["records"] == 4 and gn["G"] == pytest.approx(sum(G) / 4, rel=1e-12)
    train_err, test_err, status = _final_errors(RunFolder(killed).load())
    assert (train_err, test_err, status) == (1 - 0.13671875, 1 - 0.046875, "running")
    result = lsr_table([l2, killed], tau=2.0, fraction=0.5)
    assert [r["status"] for r in result["runs"]] == ["completed", "running"]
    assert result["verdicts"][0]["batch_size"] == 16 and len(result["verdicts"]) == 1  # the killed run has no verdict


def test_contents_ignore_temporaries_and_a_lost_checkpoint_is_told_by_the_status(tmp_path):
    folder = _new(tmp_path)
    (folder.path / ".checkpoint.pt.x1.tmp").write_bytes(b"")
    assert folder.contents() == ["config.json", "env.json"]
    assert not folder.lost_checkpoint()  # no status: not started
    folder.write_status("running", step=0, sde_time=0.0)
    assert not folder.lost_checkpoint()  # the first checkpoint was never written
    for status, step, lost in (("running", 5, True), ("interrupted", 5, True), ("completed", 9, True),
                               ("diverged", 5, False), ("failed", 5, False)):  # fmt: skip
        folder.write_status(status, step=step)
        assert folder.lost_checkpoint() is lost, status
    folder.save_checkpoint({"step": 9})
    assert not folder.lost_checkpoint()
    folder.create(RunConfig(l=2.0).to_dict(), DERIVED, {"seed": 0})  # afresh: leftovers go too
    assert sorted(p.name for p in folder.path.iterdir()) == ["config.json", "env.json"]
    assert RunFolder(tmp_path / "absent").contents() == []


def test_a_folder_older_than_schedule_unit_keeps_its_time_shaped_schedule(tmp_path):
    """Cosine and triangle were shaped on continuous time before ``schedule_unit`` existed (its default is
    now ``step``): a folder without the field reads as ``time`` for them and resumes only as such; for
    other schedules the field changes nothing and reads as the default."""
    from svag import runner

    cfg = RunConfig(data="teacher-student", n_train=64, n_test=32, batch_size=16, lr=0.1, epochs=1.0,
                    schedule="cosine", schedule_unit="time", device="cpu")  # fmt: skip
    runner.run(cfg, tmp_path / "old", progress=False)
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["schedule_unit"]
    path.write_text(json.dumps(saved))
    assert RunFolder(tmp_path / "old").config()["schedule_unit"] == "time"
    runner.run(cfg, tmp_path / "old", progress=False, resume=True)  # the same run: accepted, nothing to do
    with pytest.raises(ValueError, match=r"config differs in \['schedule_unit'\]"):
        runner.run(RunConfig(**{**cfg.to_dict(), "schedule_unit": "step"}), tmp_path / "old", progress=False,
                   resume=True)  # fmt: skip
    folder = _new(tmp_path)  # constant LR
    saved = json.loads(folder.config_path.read_text())
    del saved["config"]["schedule_unit"]
    folder.config_path.write_text(json.dumps(saved))
    assert folder.config()["schedule_unit"] == RunConfig().schedule_unit == "step"


def test_a_multistep_folder_of_schema_2_resumes_and_reads_on_time(tmp_path, monkeypatch):
    """Schema versions 1 and 2 shaped a multistep on continuous time whatever ``schedule_unit`` said (release
    0.2.0 saved ``"step"``, its default, which then shaped cosine and triangle only). Such a folder, stopped
    mid-run, reads as ``time``, refuses ``step`` and resumes on time: it ends with the records of the
    uninterrupted time-shaped run (12 SGD steps here; on steps 13). Its ``eval_epochs``, saved as time over
    τ (1.5 at the end), read as the simulated run's epochs (2.0)."""
    from dataclasses import replace

    from helpers import strip_wall_time
    from svag import runner

    cfg = RunConfig(data="teacher-student", n_train=100, n_test=50, batch_size=16, lr=0.1, epochs=2.0,
                    schedule="multistep", milestones=(1.0,), gamma=0.5, eval_every=0.5, checkpoint_every=0.5,
                    schedule_unit="time", device="cpu")  # fmt: skip
    straight = runner.run(cfg, tmp_path / "straight", progress=False).records
    assert straight[-1]["step"] == 12
    assert runner.run(replace(cfg, schedule_unit="step"), tmp_path / "new", progress=False).records[-1]["step"] == 13
    interrupt_at_step(monkeypatch, cfg, tmp_path / "old", 5)
    folder = RunFolder(tmp_path / "old")
    saved = json.loads(folder.config_path.read_text())
    saved["schema_version"], saved["config"]["schedule_unit"] = 2, "step"  # as release 0.2.0 wrote it,
    tau = saved["derived"]["time_per_epoch"]
    saved["derived"]["eval_epochs"] = [t / tau for t in saved["derived"]["eval_times"]]  # its epochs too
    folder.config_path.write_text(json.dumps(saved))
    assert folder.config()["schedule_unit"] == "time" and folder.run_config().schedule_unit == "time"
    with pytest.raises(ValueError, match=r"config differs in \['schedule_unit'\]"):
        runner.run(replace(cfg, schedule_unit="step"), folder.path, progress=False, resume=True)
    resumed = runner.run(folder.run_config(), folder.path, progress=False, resume=True).records
    assert strip_wall_time(resumed) == strip_wall_time(straight)
    assert saved["derived"]["eval_epochs"][-1] == pytest.approx(1.5)
    assert folder.derived()["eval_epochs"] == pytest.approx([0.0, 0.5, 1.0, 2.0], rel=1e-12)
    assert folder.load().derived["eval_epochs"][-1] == pytest.approx(2.0, rel=1e-12)
    saved["schema_version"] = 3  # written by this svag: the config says step, and it ran on steps
    folder.config_path.write_text(json.dumps(saved))
    assert folder.config()["schedule_unit"] == "step" and folder.derived()["eval_epochs"][-1] == pytest.approx(1.5)
