"""The gradient noise scale inside a Hugging Face ``Trainer``: G/N, ``B_simple`` and P1's ``B*`` of a GPT-2.

A small GPT-2 (built from a ``GPT2Config``: no weights are downloaded) learns a text at the character level
under ``transformers.Trainer``; :class:`svag.integrations.transformers.NoiseCallback` reads G and N from the
``--accumulation`` micro-batches every optimizer step already computes (no extra forward or backward; with
``--accumulation 1`` it draws an extra batch on 2% of the steps instead) and logs ``svag/G``, ``svag/N``,
``svag/gn_ratio``, ``svag/B_simple`` and ``svag/B_star`` through ``Trainer.log``, so every ``report_to``
reporter receives them. The text is generated prose (``svag.data.text.synthetic_text``) or a UTF-8 file.

    pip install 'svag[transformers]'
    python examples/hf_trainer_noise.py                      # 200 steps of B = 32: 130 s of CPU (4.5 min shared)
    python examples/hf_trainer_noise.py --text my_corpus.txt --report-to tensorboard
    python examples/hf_trainer_noise.py --steps 8 --logging-steps 4   # seconds (the test)

It prints the Trainer's loss lines, one line per logging interval with G/N and B_simple, and the
callback's prediction at the end; ``--out`` keeps the Trainer's output folder (``trainer_state.json``
holds every logged value).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, Trainer, TrainingArguments

from svag.data.text import synthetic_text
from svag.integrations.transformers import NoiseCallback


def blocks(text: str, block: int) -> tuple[list[dict], int]:
    """The text as character ids, cut into ``block``-long training sequences (``labels`` = ``input_ids``: the
    model shifts them), and the vocabulary's size."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text])
    n = len(ids) // block
    return [{"input_ids": s, "labels": s} for s in ids[: n * block].view(n, block)], len(vocab)


def main(argv: list[str] | None = None) -> NoiseCallback:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", type=Path, help="a UTF-8 text file (default: 60 000 characters of generated prose)")
    ap.add_argument("--block", type=int, default=32, help="characters per training sequence")
    ap.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (per_device_train_batch_size)")
    ap.add_argument("--accumulation", type=int, default=4, help="micro-batches per optimizer step (M)")
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps")
    ap.add_argument("--logging-steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--window", type=float, nargs=2, metavar=("START", "END"), help="epochs pooled for B*")
    ap.add_argument("--report-to", default="none", help="the Trainer's reporters (tensorboard, wandb, ...)")
    ap.add_argument("--out", default="runs/hf-trainer", help="the Trainer's output folder")
    args = ap.parse_args(argv)
    text = args.text.read_text(encoding="utf-8") if args.text else synthetic_text(60_000)
    train_set, vocab = blocks(text, args.block)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=args.block, n_embd=64, n_layer=2, n_head=2, bos_token_id=0,
                        eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(config)
    training = TrainingArguments(
        args.out, per_device_train_batch_size=args.batch, gradient_accumulation_steps=args.accumulation,
        max_steps=args.steps, logging_steps=args.logging_steps, learning_rate=args.lr, save_strategy="no",
        report_to=args.report_to, disable_tqdm=True, use_cpu=True, seed=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=training, train_dataset=train_set)
    trainer.remove_callback(PrinterCallback)  # the lines below say what the Trainer logged
    noise = NoiseCallback(trainer, window=tuple(args.window) if args.window else None)
    trainer.train()
    for row in trainer.state.log_history:
        if "svag/G" in row:
            loss = next((r["loss"] for r in trainer.state.log_history if r.get("step") == row["step"] and "loss" in r),
                        float("nan"))  # fmt: skip
            print(f"step {row['step']:4d}: loss {loss:.3f}, G/N {row['svag/gn_ratio']:.3g} ± "
                  f"{row['svag/gn_ratio_se']:.2g}, B_simple {row['svag/B_simple']:.3g} sequences")  # fmt: skip
    return noise


if __name__ == "__main__":
    main()
