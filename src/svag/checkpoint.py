"""Checkpoints that resume exactly: atomic writes, every RNG state, loaded with ``weights_only``.

A checkpoint holds the model and optimizer ``state_dict``\\ s, the sampler's state (its
generator and position in the current pass), the global torch RNG states (CPU and CUDA), the
augmentation generator, the loop counters and how many metric records were written. Resuming
from it continues the run as if it had never stopped: the metrics are bit-identical to an
uninterrupted run (all fields but ``wall_time``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from svag.records import _atomic_write

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialize ``state`` with ``torch.save`` and replace ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write(Path(path), buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a corrupt file raises ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt files
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__})") from None
