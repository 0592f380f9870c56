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
        ({"milestones": (5.0, 2.0)}, r"milestones must increase"),
        ({"milestones": (50.0,)}, r"milestones must increase within \(0, epochs=10.0\)"),
        ({"dtype": "half"}, r"dtype must be float32 or float64, got 'half'"),
    ],
)
def test_bad_values_name_the_value(change, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**change).validate()


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
