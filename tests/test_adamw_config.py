"""``optimizer="adamw"`` in RunConfig / the CLI: SVAGAdamW with the run's decoupled λ_W, scaled by the sqrt rule."""

import pytest
import torch

from svag import scaling
from svag.adaptive import SVAGAdam, SVAGAdamW
from svag.config import RunConfig
from svag.runner import build_optimizer


@pytest.mark.parametrize(("name", "cls"), [("adam", SVAGAdam), ("adamw", SVAGAdamW)])
def test_build_optimizer_adam_and_adamw(name, cls):
    cfg = RunConfig(optimizer=name, lr=1e-3, weight_decay=0.1, l=2, betas=(0.8, 0.99))
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(3))])
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["l"], group["betas"]) == (1e-3, 0.1, 2.0, (0.8, 0.99))


def test_sqrt_rule_scales_the_decay_of_an_adamw_config_only():
    adamw = scaling.sqrt_rule(RunConfig(optimizer="adamw", lr=1e-3, weight_decay=0.1, batch_size=32), 4)
    adam = scaling.sqrt_rule(RunConfig(optimizer="adam", lr=1e-3, weight_decay=0.1, batch_size=32), 4)
    assert adamw.weight_decay == pytest.approx(0.2) and adam.weight_decay == 0.1
    assert adamw.lr == pytest.approx(2e-3) and adamw.batch_size == 128


def test_adamw_needs_two_betas():
    with pytest.raises(ValueError, match="betas must be 2 number"):
        RunConfig(optimizer="adamw", betas=(0.9,)).validate()


def test_an_adamw_run_through_the_runner_keeps_adams_clock(tmp_path):
    """``svag.run`` with ``optimizer="adamw"`` at l = 2: SVAGAdamW steps, l² = 4 per AdamW step, time (η/l)² each."""
    import svag

    cfg = RunConfig(data="teacher-student", n_train=128, n_test=64, model="mlp", optimizer="adamw", lr=1e-2,
                    weight_decay=0.1, batch_size=16, l=2, epochs=1.0, eval_every=0.5, device="cpu")  # fmt: skip
    result = svag.run(cfg, tmp_path / "run", progress=False)
    assert result.status == "completed"
    last = result.records[-1]
    assert last["step"] == 4 * 128 // 16  # l² SVAG steps per AdamW step, one epoch = 8 AdamW steps
    assert last["sde_time"] == pytest.approx(8 * 1e-2**2, rel=1e-9)
