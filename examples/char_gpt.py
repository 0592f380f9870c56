"""SVAG in a language-model training loop: a character-level GPT, SGD vs SVAG and AdamW vs SVAG-AdamW.

Everything a GPT script does goes through svag's open step: per-step warm-up + cosine schedule carried to every
l on the optimizer's clock (``svag.schedules.PerStep``), ``(logits, loss)`` model outputs, G/N from each
step's two batches (the cheap pair route), gradient clipping of each batch gradient (``max_norm``), and the
square-root scaling rule over batch sizes. EXPERIMENTS.md ("Language models at CPU scale") reports the
``--size small`` run.

    OMP_NUM_THREADS=1 python examples/char_gpt.py --size small --out char_gpt.json   # ~10 min on one core
    python examples/char_gpt.py --size tiny                                         # seconds (the test)
    python examples/char_gpt.py --text my_corpus.txt                                # your own text

Without ``--text`` the corpus is :func:`svag.data.text.synthetic_text` (the same for every run).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import svag
from svag import records, scaling, seeds
from svag.data.text import CharText, synthetic_text
from svag.models.gpt import CharGPT, GPTConfig
from svag.noise import NoiseAccumulator
from svag.schedules import PerStep


@dataclass(frozen=True)
class Size:
    chars: int  # characters of generated text
    gpt: GPTConfig  # model sizes (vocab_size is set from the text)
    steps: int  # steps of the simulated run
    batch_size: int  # sequences per batch (B)
    seeds: int  # seeds per setting
    val_windows: int  # validation windows per evaluation
    batch_sizes: tuple[int, ...]  # the square-root rule's batch sizes (the first is the base)


SIZES = {
    "tiny": Size(4000, GPTConfig(1, block_size=8, n_layer=1, n_head=1, n_embd=8), 4, 4, 1, 16, (4, 8)),
    "small": Size(60000, GPTConfig(1, block_size=32, n_layer=2, n_head=2, n_embd=32), 300, 16, 3, 512, (16, 32, 64)),
}


def warmup_cosine(steps: int, peak: float, warmup_fraction: float = 0.1, floor: float = 0.1) -> list[float]:
    """A GPT script's per-step schedule: linear warm-up to ``peak`` over the first ``warmup_fraction`` of the
    steps, then cosine down to ``floor·peak`` (never 0: continuous time stops at LR 0)."""
    warm = max(1, round(warmup_fraction * steps))
    lrs = []
    for k in range(steps):
        if k < warm:
            lrs.append(peak * (k + 1) / warm)
        else:
            frac = (k - warm) / max(1, steps - warm - 1)
            lrs.append(peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))))
    return lrs


def make_optimizer(name: str, params, lr: float, l: float, weight_decay: float, betas=(0.9, 0.99), eps=1e-8):
    if name == "sgd":
        return svag.SVAG(params, lr=lr, l=l, weight_decay=weight_decay)
    return svag.SVAGAdamW(params, lr=lr, l=l, weight_decay=weight_decay, betas=betas, eps=eps)


@torch.no_grad()
def val_loss(model: CharGPT, text: CharText, windows: int) -> float:
    model.eval()
    starts = torch.linspace(0, text.n_windows("val") - 1, windows).long()  # fixed, spread over the split
    total = 0.0
    for chunk in starts.split(256):
        total += float(model(*text.windows(chunk, "val"))[1]) * len(chunk)
    model.train()
    return total / windows


def train(
    text: CharText,
    size: Size,
    optimizer: str,
    l: float,
    peak_lr: float,
    seed: int,
    *,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    steps: int | None = None,
    betas=(0.9, 0.99),
    eps: float = 1e-8,
    max_norm: float | None = None,
    clip: str = "per_batch",
) -> dict:
    """One run: the simulated run's per-step schedule on continuous time, ``svag.train_step`` (or the open form
    with clipping), G/N from each step's two batches. ``clip``: ``"per_batch"`` (``max_norm`` on each batch
    gradient: keeps the clipped run's SDE) or ``"amplified"`` (``clip_grad_norm_`` on the amplified gradient)."""
    batch_size = batch_size or size.batch_size
    steps = steps or size.steps
    model = CharGPT(replace(size.gpt, vocab_size=text.vocab_size), generator=seeds.generator(seed, "init"))
    opt = make_optimizer(optimizer, model.parameters(), peak_lr, l, weight_decay, betas, eps)
    schedule = PerStep.for_optimizer(warmup_cosine(steps, peak_lr), opt)
    order, extra = seeds.generator(seed, "data_order"), seeds.generator(seed, "noise_batches")
    noise, noise_pre = NoiseAccumulator(batch_size), NoiseAccumulator(batch_size)  # G/N; AdamW's preconditioned
    n_svag = schedule.svag_steps(l)

    def loss_fn(batch):  # the model returns (logits, loss): accepted as is
        return model(*batch)

    start = time.perf_counter()
    for k in range(n_svag):
        for group in opt.param_groups:
            group["lr"] = schedule(opt.sde_time)
        b1 = text.batch(batch_size, order)
        b2 = text.batch(batch_size, order if l > 1 else extra)  # at l = 1 a second batch only for G/N
        want_pairs = k >= n_svag - max(1, n_svag // 5)  # G/N over the last 20% of the run
        weights = opt.preconditioner_weights() if want_pairs and optimizer != "sgd" else None  # before the step
        if clip == "amplified" and max_norm is not None:
            out = svag.amplified_backward(opt, loss_fn, b1, b2, return_grads=want_pairs)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            opt.step()
        else:
            out = svag.train_step(opt, loss_fn, b1, b2, return_grads=want_pairs, max_norm=max_norm)
        if want_pairs:
            noise.add_pair(*out.grads)
            if weights is not None:
                noise_pre.add_pair(*out.grads, weights=weights)
    seconds = time.perf_counter() - start
    result = noise.result()
    pre = noise_pre.result() if noise_pre.count else None
    return {
        "optimizer": optimizer, "l": l, "seed": seed, "batch_size": batch_size, "peak_lr": peak_lr,
        "weight_decay": weight_decay, "max_norm": max_norm, "clip": clip, "svag_steps": n_svag,
        "sde_time": opt.sde_time, "val_loss": val_loss(model, text, size.val_windows), "G": result.G,
        "N": result.N, "G_over_N": result.ratio, "G_pre": pre.G if pre else None, "N_pre": pre.N if pre else None,
        "seconds": seconds,
    }  # fmt: skip


def init_norms(text: CharText, size: Size, ls=(1, 2, 4), draws: int = 20) -> list[dict]:
    """At initialization: mean norm of the amplified gradient ``a1 g1 + a2 g2`` (what a fixed clipping threshold
    sees) and of the batch gradients ``g_i`` (what ``max_norm`` clips), over ``draws`` batch pairs."""
    rows = []
    for l in ls:
        model = CharGPT(replace(size.gpt, vocab_size=text.vocab_size), generator=seeds.generator(0, "init"))
        opt = svag.SVAG(model.parameters(), lr=0.1, l=l)
        gen = seeds.generator(0, "noise_batches")
        amp, batch = [], []
        for _ in range(draws):
            b1, b2 = text.batch(size.batch_size, gen), text.batch(size.batch_size, gen)
            opt.zero_grad()  # measured, not stepped: the last draw's gradient is discarded on purpose
            out = svag.amplified_backward(opt, lambda b, model=model: model(*b), b1, b2, return_grads=True)
            amp.append(float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])))
            batch.append(float(torch.nn.utils.get_total_norm([g for g in out.grads[0] if g is not None])))
        rows.append({"l": l, "amplified_norm": sum(amp) / draws, "batch_norm": sum(batch) / draws})
    return rows


def _mean(rows: list[dict], key: str) -> tuple[float, float]:
    xs = [r[key] for r in rows]
    m = sum(xs) / len(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else math.nan
    return m, se


FAMILIES = ("sgd", "adamw", "rules", "clip")


def experiments(
    text: CharText, size: Size, families=FAMILIES, sgd_lr: float = 0.3, log=print, adamw_lr: float = 3e-3
) -> dict:
    """The runs of each family in ``families``: ``sgd`` (SGD vs SVAG l = 2, 4 at peak LR ``sgd_lr``), ``adamw``
    (AdamW vs SVAG-AdamW l = 2), ``rules`` (AdamW over ``size.batch_sizes`` under every transfer rule of
    :data:`svag.scaling.RULES`: square-root, LR-only √κ, AdamW timescale, β half-life, and the linear rule as the
    control), ``clip`` (initialization norms; SGD/SVAG with each batch gradient clipped vs the amplified
    one clipped, at half the initial batch-gradient norm)."""
    out: dict = {"size": {**asdict(size), "gpt": asdict(replace(size.gpt, vocab_size=text.vocab_size))}}
    n_seeds = range(size.seeds)

    def family(name: str, runs: list[dict], by: str = "l") -> None:
        out[name] = runs
        for key in sorted({r[by] for r in runs}):
            sel = [r for r in runs if r[by] == key]
            (v, v_se), (g, _), (n, _) = _mean(sel, "val_loss"), _mean(sel, "G"), _mean(sel, "N")
            log(f"{name:>10} {by}={key:<4g} val_loss {v:.4f} ± {v_se:.4f}  G {g:.3g}  N {n:.3g}  G/N {g / n:.3f}  "
                f"({sum(r['seconds'] for r in sel):.1f} s)")  # fmt: skip

    if "sgd" in families:
        family("sgd", [train(text, size, "sgd", l, sgd_lr, s) for l in (1, 2, 4) for s in n_seeds])
    if "adamw" in families:
        family("adamw", [train(text, size, "adamw", l, adamw_lr, s, weight_decay=0.1) for l in (1, 2) for s in n_seeds])
    base = {"lr": adamw_lr, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "batch_size": size.batch_sizes[0],
            "decoupled_weight_decay": True}  # fmt: skip
    for rule in scaling.RULES if "rules" in families else ():  # linear: η·κ only, the control (wrong for Adam)
        runs = []
        for b in size.batch_sizes:
            kappa = b / size.batch_sizes[0]
            if not scaling.reaches(base, rule, kappa):
                continue
            hp = scaling.RULES[rule](base, kappa)
            steps = max(1, round(size.steps / kappa))  # the same samples (and, under the sqrt rule, the same time)
            kw = {"weight_decay": hp["weight_decay"], "batch_size": b, "steps": steps, "betas": tuple(hp["betas"]),
                  "eps": hp["eps"]}  # fmt: skip
            runs += [train(text, size, "adamw", 1, hp["lr"], s, **kw) for s in n_seeds]
        family(f"{rule}_rule", runs, by="batch_size")
    if "rules" in families:
        out["rules"] = rule_verdicts(out, base)
        log(out["rules"]["answer"])
        b0_runs = [r for r in out["sqrt_rule"] if r["batch_size"] == base["batch_size"]]
        ratio = sum(r["G_pre"] for r in b0_runs) / sum(r["N_pre"] for r in b0_runs)  # pooled over the seeds
        out["rules"]["B_star"] = base["batch_size"] * 2.0 / ratio if ratio > 0 else math.inf  # τ = 2 (svag lsr)
        log(f"preconditioned G/N at B0 = {ratio:.3g} (last 20% of the run): B* = {out['rules']['B_star']:.3g}")
    if "clip" not in families:
        return out
    out["init_norms"] = init_norms(text, size)
    for row in out["init_norms"]:
        log(f"init l={row['l']}: |a1 g1 + a2 g2| {row['amplified_norm']:.3f}  |g1| {row['batch_norm']:.3f}")
    c = 0.5 * out["init_norms"][0]["batch_norm"]  # clips from the start at every l
    for clip in ("per_batch", "amplified"):
        runs = [train(text, size, "sgd", l, sgd_lr, s, max_norm=c, clip=clip) for l in (1, 2, 4) for s in n_seeds]
        family(f"clip_{clip}", runs)
    return out


def rule_verdicts(out: dict, base: dict) -> dict:
    """Each rule's validation loss at every κ against the base run's, by the equivalence verdict of `svag scale
    --rule A,B` (:func:`svag.experiments.scale.rule_cell`: paired seeds, margin 2% of the base loss), as
    ``rules.json`` holds it (:func:`svag.analysis.plotting.plot_rules` draws it)."""
    from svag.experiments.scale import rule_cell, rule_row, rule_summary, rules_answer

    b0 = base["batch_size"]
    result: dict = {"metrics": ["test_loss"], "alpha": 0.05, "rules": {}}
    for rule in scaling.RULES:
        runs = out[f"{rule}_rule"]
        at = {
            b: {r["seed"]: r["val_loss"] for r in runs if r["batch_size"] == b} for b in {r["batch_size"] for r in runs}
        }
        lr = {r["batch_size"]: r["peak_lr"] for r in runs}
        cells = {b: {"test_loss": rule_cell(at[b0], at[b], "test_loss")} for b in at if b != b0}
        rows = [rule_row(b, b / b0, lr[b], cells[b]) for b in sorted(cells)]
        result["rules"][rule] = rule_summary(rows, b0, scaling.rule_limit(base, rule))
    result["answer"] = rules_answer(result)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--text", type=Path, help="a UTF-8 text file (default: generated text)")
    parser.add_argument("--out", type=Path, help="write every run's numbers to this JSON file")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {FAMILIES}")
    parser.add_argument("--sgd-lr", type=float, default=0.3, help="peak LR of the SGD runs (default 0.3)")
    parser.add_argument("--adamw-lr", type=float, default=3e-3, help="peak LR of the AdamW runs (default 3e-3)")
    parser.add_argument("--figure", type=Path, help="with the rules family: draw the rule verdicts to this file")
    args = parser.parse_args(argv)
    families = tuple(args.families.split(","))
    if not families or not set(families) <= set(FAMILIES):
        parser.error(f"--families must be a comma-separated subset of {','.join(FAMILIES)}, got {args.families!r}")
    size = SIZES[args.size]
    text = CharText(args.text if args.text else synthetic_text(size.chars), size.gpt.block_size)
    print(f"text: {len(text.train) + len(text.val)} characters, vocabulary {text.vocab_size}; size {args.size}")
    out = experiments(text, size, families, args.sgd_lr, adamw_lr=args.adamw_lr)
    if args.out:
        records.write_json(args.out, out)
    if args.figure and "rules" in out:
        from svag.analysis.plotting import plot_rules

        plot_rules(out["rules"], args.figure)
    return out


if __name__ == "__main__":
    main()
