#!/usr/bin/env bash
# EXPERIMENTS.md, "When does the linear scaling rule fail?": the runs behind its tables and figures.
# Usage: bash scripts/experiments_lsr.sh [OUT_ROOT]   (default runs/exp; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/exp}
# MNIST-1D, scale-invariant CNN (width 2) with BN or GN, weight decay 5e-4, baseline B0 = 32,
# eta0 = 0.1; 30 epochs, x0.1 at epoch 24 (G/N window: epochs 20-24); an extra batch at every
# step for the G/N estimate (--noise-fraction 1); LSR sweep B = 16 ... 1024 (eta = kappa * eta0).
for norm in bn gn; do
  python3 run.py svag lsr --out "$OUT/lsr-mnist1d-cnn-$norm" --data mnist1d --model cnn --norm "$norm" \
    --scale-invariant true --width 2 --lr 0.1 --batch-size 32 --weight-decay 5e-4 --epochs 30 \
    --schedule multistep --milestones 24 --eval-every 0.5 --noise-fraction 1 \
    --verify 16,64,128,256,512,1024 --resume --no-progress
done
