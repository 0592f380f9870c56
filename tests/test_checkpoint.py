"""Checkpoints: atomic, weights-only loadable, every RNG state restored, clear errors."""

import pytest
import torch

from svag.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


def test_round_trip_and_rng_state(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.manual_seed(3)
    state = {"model": {"w": torch.arange(4.0)}, "step": 7, "rng": rng_state(), "gen": torch.Generator().get_state()}
    want = torch.rand(3)  # what the global RNG draws next
    save_checkpoint(path, state)
    got = load_checkpoint(path)
    assert got["step"] == 7 and torch.equal(got["model"]["w"], state["model"]["w"])
    set_rng_state(got["rng"])
    assert torch.equal(torch.rand(3), want)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_corrupt_or_missing_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.pt is corrupt or unreadable"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")


class Evil:
    """Not a tensor nor plain data."""


def test_loads_weights_only(tmp_path):
    """A pickled arbitrary object is refused (weights_only=True): checkpoints hold tensors and plain data."""
    path = tmp_path / "c.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_checkpoint(path)
