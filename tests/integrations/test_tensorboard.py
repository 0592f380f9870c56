"""--tensorboard DIR: every record's scalars as TensorBoard events, read back with TensorBoard's own
EventAccumulator and compared with metrics.jsonl (TensorBoard stores float32), also across a resume."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import svag
from svag.cli import main
from svag.integrations.tensorboard import scalars
from svag.runfolder import RunFolder
from svag.runner import recorder as recorder_module

CFG = dict(n_train=256, n_test=128, epochs=2.0, eval_every=0.25, checkpoint_every=1.0, l=2.0, batch_size=32)


def _events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _check_equal(events, records):
    """Each tag holds, at step i, record i's value (float32), for every record that has it, once."""
    expected: dict[str, list] = {}
    for i, row in enumerate(records):
        for key, value in scalars(row).items():
            expected.setdefault(key, []).append((i, value))
    assert set(events) == set(expected)
    assert "test_loss" in events and "G" in events and "gn_ratio" in events
    for tag, points in expected.items():
        got = events[tag]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        for (_, v), (_, want) in zip(got, points):
            want32 = float(torch.tensor(want, dtype=torch.float32))
            assert v == want32 or (math.isnan(v) and math.isnan(want32)), (tag, v, want)


def test_events_equal_the_records(tmp_path):
    cfg = svag.RunConfig(**CFG, tensorboard=str(tmp_path / "tb"))
    result = svag.run(cfg, tmp_path / "run", progress=False)
    assert len(result.records) == 9
    _check_equal(_events(tmp_path / "tb" / "run"), RunFolder(tmp_path / "run").records())


def test_resume_after_a_kill_writes_no_point_twice(tmp_path, monkeypatch):
    """Killed at the 7th record (epoch 1.5; last checkpoint at epoch 1, after record 5): the resumed
    run writes records 6..9 again; purge_step drops the first start's events from step 5 on."""
    original, calls = recorder_module.Recorder.record, []

    class Killed(Exception):
        pass

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 7:
            raise Killed  # as a SIGKILL after the record was written: the checkpoint is older

    monkeypatch.setattr(recorder_module.Recorder, "record", record)
    cfg = svag.RunConfig(**CFG, tensorboard=str(tmp_path / "tb"))
    with pytest.raises(Killed):
        svag.run(cfg, tmp_path / "run", progress=False)
    assert len(RunFolder(tmp_path / "run").records()) == 7
    assert [s for s, _ in _events(tmp_path / "tb" / "run")["test_loss"]] == list(range(7))
    monkeypatch.setattr(recorder_module.Recorder, "record", original)
    svag.run(cfg, tmp_path / "run", resume=True, progress=False)
    svag.run(svag.RunConfig(**CFG), tmp_path / "whole", progress=False)
    records = RunFolder(tmp_path / "run").records()
    whole = RunFolder(tmp_path / "whole").records()
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in records] == [
        {k: v for k, v in r.items() if k != "wall_time"} for r in whole
    ]  # the resume is exact
    assert len(list((tmp_path / "tb" / "run").iterdir())) == 2  # one event file per start
    _check_equal(_events(tmp_path / "tb" / "run"), records)


def test_cli_flag_and_resume_may_change_it(tmp_path):
    argv = ["train", "--out", str(tmp_path / "r"), "--n-train", "256", "--n-test", "128", "--epochs", "1",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 0
    _check_equal(_events(tmp_path / "tb" / "r"), RunFolder(tmp_path / "r").records())
    assert main([*argv, "--resume"]) == 0  # where the events go is not part of the run's config
