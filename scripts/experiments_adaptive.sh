#!/usr/bin/env bash
# EXPERIMENTS.md, "Beyond plain SGD": Adam SVAG vs Adam, SGDM vs SVAG of SGD at eta/(1-beta).
# Usage: bash scripts/experiments_adaptive.sh [OUT_ROOT]   (default runs/exp; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/exp}
SVAG=(python3 run.py svag)
common=(--seeds 3 --no-progress --resume --noise off)

# Adam (eta = 1e-3, betas 0.9/0.999, eps 1e-8) vs SVAG-Adam at l = 2, 4: MNIST-1D MLP, B = 32, 10 epochs
"${SVAG[@]}" compare --out "$OUT/adam-mnist1d-mlp" --optimizer adam --lr 1e-3 --ls 1,2,4 --data mnist1d \
  --model mlp --batch-size 32 --epochs 10 --eval-every 0.5 "${common[@]}"
# the same on Fashion-MNIST (5000 train / 2000 test images), MLP, B = 64, 5 epochs
"${SVAG[@]}" compare --out "$OUT/adam-fashion-mlp" --optimizer adam --lr 1e-3 --ls 1,2,4 --data fashion-mnist \
  --n-train 5000 --n-test 2000 --model mlp --batch-size 64 --epochs 5 --eval-every 0.25 "${common[@]}"
# SGD with momentum 0.9 at eta = 0.01 vs SVAG of plain SGD at eta/(1-beta) = 0.1: MNIST-1D MLP, B = 32, 10 epochs
"${SVAG[@]}" compare --out "$OUT/sgdm-mnist1d-mlp" --momentum 0.9 --lr 0.01 --ls 1,2,4,8 --data mnist1d \
  --model mlp --batch-size 32 --epochs 10 --eval-every 0.5 "${common[@]}"
# scaling rules for Adam over a 16x batch range (B = 32 ... 512 from B0 = 32; beta1 = 0.95 so that the
# square-root rule's 1 - beta1 -> kappa(1 - beta1) stays < 1): the square-root rule vs the linear rule
for rule in sqrt linear; do
  "${SVAG[@]}" scale --out "$OUT/scale-adam-$rule" --rule "$rule" --optimizer adam --lr 1e-3 --betas 0.95,0.999 \
    --data mnist1d --model mlp --batch-size 32 --batch-sizes 32,64,128,256,512 --epochs 20 --eval-every 1 \
    --seeds 3 --no-progress --resume --noise off
done
for d in "$OUT"/adam-* "$OUT"/sgdm-*; do
  "${SVAG[@]}" plot "$d" --metrics train_loss,test_loss,test_acc,weight_norm_sq > /dev/null
done
