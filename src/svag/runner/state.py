"""The resumable state of a group of replicas: per-seed streams and counters, and the checkpoints.

A :class:`Replica` is one seed of a run: its folder, its sampler and generators (each from the
seed tree, :mod:`svag.seeds`), its G/N accumulators (P1's; the preconditioned ratio's) and its
record count. :class:`Counters` are the loop's shared counters. :func:`save` writes one checkpoint
per replica folder in the single-run format (model, optimizer slice, replica streams, counters,
global RNG); :func:`load` restores them. A checkpoint is taken only between steps, so a run
resumed from it continues exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from svag.checkpoint import rng_state, set_rng_state
from svag.config import RunConfig
from svag.noise import NoiseAccumulator
from svag.runfolder import RunFolder
from svag.seeds import generator, stream_seed

__all__ = ["Counters", "Replica", "load", "save", "start_from"]


class Replica:
    """One seed: folder, sampler, generators from the seed tree, noise accumulators, counters.

    A Gaussian-noise run (``gradient_noise="gaussian"``) draws its noise from ``gauss_gen`` (the
    ``"gaussian"`` stream) and never calls the sampler: the sampler is still built and saved (its
    state stays at its start), so the checkpoint holds the same streams for both kinds of run.
    """

    def __init__(self, cfg: RunConfig, seed: int, folder: RunFolder, n: int) -> None:
        from svag.data import PairSampler

        self.seed, self.folder = seed, folder
        self.sampler = PairSampler(
            n,
            cfg.batch_size,
            pairs=cfg.l > 1 and cfg.gradient_noise == "minibatch",  # Gaussian runs draw no batch
            mode=cfg.sampling,
            seed=stream_seed(seed, "data_order"),
        )
        self.aug_gen = generator(seed, "augment")
        self.noise_gen = generator(seed, "noise_batches")  # SGD's extra batches for G/N
        self.m_gen = generator(seed, "m_batches")  # draws of the m-batch measurement
        self.gauss_gen = generator(seed, "gaussian")  # z of the Gaussian-noise step (svag.gaussian)
        self.acc = NoiseAccumulator(cfg.batch_size)
        self.acc_pre = NoiseAccumulator(cfg.batch_size)  # the preconditioned ratio (adaptive optimizers)
        self.n_records = 0
        self.last_record: dict | None = None  # the last record's summary, for status.json (not checkpointed)
        self.diverged = False

    @property
    def out(self):
        return self.folder.path

    def state(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(),
            "aug_gen": self.aug_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "m_gen": self.m_gen.get_state(),
            "gauss_gen": self.gauss_gen.get_state(),
            "acc": dict(self.acc.__dict__),
            "acc_pre": dict(self.acc_pre.__dict__),
            "n_records": self.n_records,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.aug_gen.set_state(state["aug_gen"])
        self.noise_gen.set_state(state["noise_gen"])
        self.m_gen.set_state(state["m_gen"])
        if "gauss_gen" in state:  # checkpoints written before Gaussian-noise runs lack it (never used there)
            self.gauss_gen.set_state(state["gauss_gen"])
        self.acc.__dict__.update(state["acc"])
        if "acc_pre" in state:  # checkpoints written before the preconditioned ratio lack it: an empty interval
            self.acc_pre.__dict__.update(state["acc_pre"])
        self.n_records = state["n_records"]


@dataclass
class Counters:
    """The loop's position: steps taken, next grid index and next checkpoint/m-batch times."""

    step: int = 0
    next_eval: int = 0
    next_ckpt: float = 0.0
    next_m: float = 0.0
    elapsed: float = 0.0  # wall time spent training, over every resume


def _opt_slice(opt: torch.optim.Optimizer, k: int, K: int) -> dict[str, Any]:
    """Replica ``k``'s optimizer state (the plain optimizer's ``state_dict``)."""
    sd = opt.state_dict()
    if K == 1:
        return sd
    state = {
        i: {key: (v[k] if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in s.items()}
        for i, s in sd["state"].items()
    }
    return {**sd, "state": state}


def _opt_merge(opt: torch.optim.Optimizer, states: list[dict[str, Any]]) -> None:
    if len(states) == 1:
        opt.load_state_dict(states[0])
        return
    merged = dict(states[0])
    merged["state"] = {
        i: {
            key: (torch.stack([st["state"][i][key] for st in states]) if torch.is_tensor(v) and v.dim() > 0 else v)
            for key, v in s.items()
        }
        for i, s in states[0]["state"].items()
    }
    opt.load_state_dict(merged)


def save(replicas: list[Replica], engine, opt, counters: Counters) -> None:
    """One checkpoint per replica folder, in the single-run format."""
    common = {"rng": rng_state(), **asdict(counters)}
    for k, r in enumerate(replicas):
        state = {**common, **r.state(), "model": engine.replica_state(k), "optimizer": _opt_slice(opt, k, engine.K)}
        r.folder.save_checkpoint(state)


def load(states: list[dict[str, Any]], replicas: list[Replica], engine, opt) -> Counters:
    """Restore :func:`save`'s checkpoints (one per replica, in order); return the counters."""
    engine.load_replica_states([s["model"] for s in states])
    opt_states = [s["optimizer"] for s in states]
    if "sde_time" not in opt_states[0] and "own_time" in states[0]:
        # release 0.1.0: heavy-ball SGD (torch's SGD) had no clock; the loop kept its time as "own_time"
        opt_states = [{**o, "sde_time": s["own_time"]} for o, s in zip(opt_states, states)]
    _opt_merge(opt, opt_states)
    for r, s in zip(replicas, states):
        r.load(s)
    first = states[0]
    set_rng_state(first["rng"])
    return Counters(**{key: first[key] for key in ("step", "next_eval", "next_ckpt", "next_m", "elapsed")})


def _sampler_at(state: dict[str, Any], sampler) -> dict[str, Any]:
    """A checkpoint's sampler state as ``sampler`` (same ``n``, pairs and mode, maybe another ``B``) takes it:
    the same generator, permutation and position; when the next step of the new ``B`` does not fit in the
    pass, the pass ends there and the next permutation is drawn from the same generator, as the sampler
    does at the end of each pass (``B`` unchanged: the state as saved)."""
    state = {**state, "batch_size": sampler.batch_size}
    if state.get("mode") == "disjoint" and int(state["pos"]) + sampler.per_step > sampler.n:
        gen = torch.Generator()
        gen.set_state(state["generator"])
        perm = torch.randperm(sampler.n, generator=gen)
        state.update(generator=gen.get_state(), perm=perm, pos=0, passes=int(state["passes"]) + 1)
    return state


def start_from(states: list[dict[str, Any]], replicas: list[Replica], engine, opt) -> None:
    """Start a new run from other runs' checkpoints (one per replica, :func:`save`'s format), e.g. a branch of
    ``svag cbs`` from a baseline's checkpoint: the model, the optimizer's state (momentum, Adam's moments and
    step count; its hyperparameters stay this run's), every stream of the seed tree where the checkpoint left
    it (data order, augmentation, extra G/N batches, m-batches, Gaussian noise) and the global RNG. The new
    run's own clock starts at ``sde_time = 0``, with fresh counters, G/N accumulators and records: its
    timeline (schedule, grid, end) is its config's, counted from the checkpoint. With the same config
    (batch, LR) the trajectory is the one the checkpointed run would have continued, bit for bit; at
    another batch size the sampler goes on from the same permutation (:func:`_sampler_at`)."""
    engine.load_replica_states([s["model"] for s in states])
    groups = opt.state_dict()["param_groups"]  # this run's hyperparameters (lr, betas, ...)
    merged = []
    for s in states:
        o = dict(s["optimizer"])
        if len(o.get("param_groups", [])) != len(groups):
            raise ValueError(f"the checkpoint's optimizer has {len(o.get('param_groups', []))} parameter "
                             f"group(s), this run's has {len(groups)}: start from a checkpoint of the same "
                             "optimizer")  # fmt: skip
        o["param_groups"] = [{**g, "params": saved["params"]} for g, saved in zip(groups, o["param_groups"])]
        o["sde_time"] = 0.0
        merged.append(o)
    _opt_merge(opt, merged)
    for r, s in zip(replicas, states):
        if s["sampler"].get("pairs") != r.sampler.pairs or s["sampler"].get("mode") != r.sampler.mode:
            raise ValueError("the checkpoint's sampler draws "
                             f"{'pairs' if s['sampler'].get('pairs') else 'one batch'} ({s['sampler'].get('mode')}), "
                             f"this run's {'pairs' if r.sampler.pairs else 'one batch'} ({r.sampler.mode}): start "
                             "from a checkpoint of the same l and sampling")  # fmt: skip
        r.sampler.load_state_dict(_sampler_at(s["sampler"], r.sampler))
        r.aug_gen.set_state(s["aug_gen"])
        r.noise_gen.set_state(s["noise_gen"])
        r.m_gen.set_state(s["m_gen"])
        if "gauss_gen" in s:
            r.gauss_gen.set_state(s["gauss_gen"])
    set_rng_state(states[0]["rng"])
