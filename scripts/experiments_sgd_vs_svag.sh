#!/usr/bin/env bash
# EXPERIMENTS.md, "SGD vs SVAG at CPU scale": every run behind its tables and figures.
# Usage: bash scripts/experiments_sgd_vs_svag.sh [OUT_ROOT]   (default runs/exp; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/exp}
SVAG=(python3 run.py svag)
common=(--ls 1,2,4,8 --seeds 3 --no-progress --resume --noise off --weight-decay 5e-4)

# MNIST-1D, small scale-invariant CNN (width 2), BN and GN, eta = 0.4, B = 32, 10 epochs
for norm in bn gn; do
  "${SVAG[@]}" compare --out "$OUT/mnist1d-cnn-$norm" --data mnist1d --model cnn --norm "$norm" \
    --scale-invariant true --width 2 --lr 0.4 --batch-size 32 --epochs 10 --eval-every 0.5 "${common[@]}"
done
# large learning rate: eta = 3.2 (8x), everything else as above (BN)
"${SVAG[@]}" compare --out "$OUT/mnist1d-cnn-bn-lr3.2" --data mnist1d --model cnn --norm bn \
  --scale-invariant true --width 2 --lr 3.2 --batch-size 32 --epochs 10 --eval-every 0.5 "${common[@]}"
# large batch and large LR: the linear-scaling image of the first setting's baseline (B0 = 32,
# eta0 = 0.1) at kappa = 16: B = 512, eta = 1.6, 30 epochs (about 230 SGD steps), BN; l <= 4 (l = 8
# would take 45 min here)
"${SVAG[@]}" compare --out "$OUT/mnist1d-cnn-bn-B512-lr1.6" --data mnist1d --model cnn --norm bn \
  --scale-invariant true --width 2 --lr 1.6 --batch-size 512 --epochs 30 --eval-every 1 "${common[@]}" --ls 1,2,4
# Fashion-MNIST (5000 train / 2000 test images), same CNN at width 1, eta = 0.4, B = 64, 2 epochs
for norm in bn gn; do
  "${SVAG[@]}" compare --out "$OUT/fashion2-cnn-$norm" --data fashion-mnist --n-train 5000 --n-test 2000 \
    --model cnn --norm "$norm" --scale-invariant true --width 1 --lr 0.4 --batch-size 64 --epochs 2 \
    --eval-every 0.5 --eval-train-samples 2000 "${common[@]}"
done
for d in "$OUT"/mnist1d-cnn-* "$OUT"/fashion-cnn-*; do
  "${SVAG[@]}" plot "$d" --metrics train_loss,test_loss,test_acc,weight_norm_sq > /dev/null
done
