import argparse

import pytest

from svag.config import RunConfig, add_config_arguments, config_from_args


def test_defaults_validate_and_round_trip():
    cfg = RunConfig().validate()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"l": 0.5}, r"l must be .*got 0.5"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0.0"),
        ({"batch_size": 0}, r"batch_size must be an integer > 0, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an integer"),
        ({"weight_decay": -1.0}, r"weight_decay must be a finite number >= 0, got -1.0"),
        ({"schedule": "exp"}, r"schedule must be one of constant, multistep, cosine, triangle, got 'exp'"),
        ({"schedule": "multistep"}, r"multistep needs --milestones"),
        ({"schedule_unit": "epoch"}, r"schedule_unit must be one of time, step, got 'epoch'"),
        ({"cycles": 0}, r"cycles must be an integer > 0, got 0"),
        ({"cycles": 2, "schedule": "cosine"}, r"cycles applies to --schedule triangle only, got cycles=2 with cosine"),
        ({"milestones": (5.0, 2.0)}, r"milestones must increase"),
        ({"milestones": (50.0,)}, r"milestones must increase within \(0, epochs=10.0\)"),
        ({"dtype": "half"}, r"dtype must be float32 or float64, got 'half'"),
        # issue 11: values that imply a run that never ends, or that fails only after it started
        ({"gamma": 1e9}, r"gamma must be a decay factor in \(0, 1\], got 1000000000.0 \(a factor > 1"),
        ({"gamma": 0.0}, r"gamma must be a decay factor in \(0, 1\], got 0.0"),
        ({"gamma": float("nan")}, r"gamma must be a decay factor in \(0, 1\], got nan"),
        ({"warmup": 10.0}, r"warmup must be shorter than the run \(epochs=10\), got 10"),
        ({"eval_every": 1e-7}, r"eval_every=1e-07 gives 1e\+08 evaluation records .* at most 100000 .* >= 0.0001"),
        ({"checkpoint_every": 1e-7}, r"checkpoint_every=1e-07 gives 1e\+08 checkpoints .* at most 10000"),
        ({"noise_every": 1e-7}, r"noise_every=1e-07 gives 1e\+08 m-batch G/N measurements"),
        ({"noise_batches": 1}, r"noise_batches must be 0 .* or an integer in \[2, 100000\], got 1"),
        ({"noise_batches": 10**9}, r"noise_batches must be .*, got 1000000000"),
        ({"sampling": "bogus"}, r"sampling must be one of disjoint, replacement, got 'bogus'"),
    ],
)
def test_bad_values_name_the_value(change, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**change).validate()


def test_limits_on_counts_are_inclusive():
    RunConfig(epochs=10.0, eval_every=1e-4, checkpoint_every=1e-3, noise_every=1e-4, gamma=1.0).validate()


def test_of_accepts_a_config_or_a_dict_and_names_anything_else():
    cfg = RunConfig(l=2.0)
    assert RunConfig.of(cfg) is cfg
    assert RunConfig.of(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="expected a RunConfig or a dict of its fields, got list"):
        RunConfig.of([1, 2])


def test_runner_run_accepts_a_dict(tmp_path):
    from svag import runner

    cfg = {"data": "teacher-student", "n_train": 64, "n_test": 32, "batch_size": 16, "epochs": 0.5, "device": "cpu"}
    result = runner.run(cfg, tmp_path / "r", progress=False)
    assert result.status == "completed" and result.records
    with pytest.raises(TypeError, match="expected a RunConfig or a dict of its fields, got str"):
        runner.run("lr=0.1", tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_unknown_field_in_dict():
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['bogus'\]"):
        RunConfig.from_dict({"bogus": 1})


def test_cli_flags_have_defaults_and_help_and_parse():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    optional = {"data_root", "n_train", "n_test", "preset"}
    for action in parser._actions[1:]:
        assert (action.help and action.default is not None) or action.dest in optional
    args = parser.parse_args(
        ["--l", "4", "--milestones", "2,5", "--schedule", "multistep", "--scale-invariant", "true"]
    )
    cfg = config_from_args(args)
    assert cfg.l == 4.0 and cfg.milestones == (2.0, 5.0) and cfg.scale_invariant is True
