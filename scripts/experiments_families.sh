#!/usr/bin/env bash
# EXPERIMENTS.md §8 and its opening table: P1's experiment families at CPU scale, each with its verdict.
# Usage: bash scripts/experiments_families.sh [OUT_ROOT] [ROW ...]   (default runs/exp, every row; resumable)
#
# One `svag compare` (or `svag lsr`) per row, one after the other, on one thread each, every one with
# --resume: an interrupted row continues where it stopped and a finished row (its verdicts.json / lsr.json
# exists) is skipped. Each row's wall and CPU time go to OUT_ROOT/ROW.time (GNU time, one line per stretch
# of a resumed row), which scripts/experiments_families_table.py reads for the table. Give row names
# to run only those. Rows run in the order below: each family's first row early, the costly ones late.
# Measured: the 20 rows before the two Fashion-MNIST ones took 54 min of wall time (43 min of CPU) on the
# 2-core machine shared with other jobs; the Fashion-MNIST rows are estimated at ~35 min of CPU each.
#
# The CPU scale, shared by the rows unless a row says otherwise: MNIST-1D (4000 train / 1000 test),
# B = 64, weight decay 5e-4, 4 seeds, SVAG ladder l = 1, 2, 4 (l = 8 alone would cost 16/13 of the rest
# of the 1, 2, 4, 8 ladder), evaluations every half epoch on the 1000 test and 1000 training samples.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/exp}
shift || true
ONLY=" $* "
SVAG=(.venv/bin/svag --threads 1)
[ -x .venv/bin/svag ] || SVAG=(python3 run.py svag --threads 1)
common=(--ls 1,2,4 --seeds 4 --no-progress --resume --noise off --weight-decay 5e-4 --batch-size 64
  --eval-every 0.5 --eval-train-samples 1000 --data mnist1d)

row() {  # row NAME DONE_FILE COMMAND...: run COMMAND under GNU time unless NAME/DONE_FILE exists
  local name=$1 done=$2
  shift 2
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
  if [ -f "$OUT/$name/$done" ]; then echo "== $name: done ($OUT/$name/$done)"; return; fi
  echo "== $name: $*"
  /usr/bin/time -a -f "wall_s=%e user_s=%U sys_s=%S" -o "$OUT/$name.time" "$@"  # -a: a line per stretch
}

mkdir -p "$OUT"
# (1) an unnormalized network (P1: VGG-16 without normalization, LR 0.01). VGG-16 without normalization
# at width 1/16 does not leave chance level in 3 epochs at any LR of 0.02-0.2 here, so: the CNN with
# conv biases, no normalization, affine everything, eta = 0.1
row fam1-mnist1d-cnn-none verdicts.json "${SVAG[@]}" compare --out "$OUT/fam1-mnist1d-cnn-none" \
  --model cnn --norm none --scale-invariant false --width 1 --lr 0.1 --epochs 4 "${common[@]}"
# (2) non-step schedules, shaped over the simulated run's steps as P1 does (--schedule-unit step): P1's
# two-cycle triangle (1% of eta up to eta = 0.4 at a quarter of the run, down to 1% at half, again) and a
# cosine to 1e-3 eta, 3 epochs each; every l takes exactly l times the SGD run's 188 steps. Then the same
# one-cycle triangle shaped on continuous time: there the steps to cover a stretch dt are dt/eta(t), ~5x
# the steps (a cosine to 1e-3 eta shaped on time takes 32x: its last sixth of time takes 93% of them).
sched() {  # sched NAME EPOCHS LS SEEDS FLAGS...
  local name=$1 epochs=$2 ls=$3 seeds=$4
  shift 4
  row "fam2-mnist1d-cnn-bn-$name" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam2-mnist1d-cnn-bn-$name" \
    --model cnn --norm bn --scale-invariant true --width 1 --lr 0.4 --epochs "$epochs" "${common[@]}" \
    --ls "$ls" --seeds "$seeds" "$@"
}
sched triangle2-steps 3 1,2,4 4 --schedule triangle --cycles 2 --schedule-unit step
sched cosine-steps 3 1,2,4 4 --schedule cosine --schedule-unit step
sched triangle 2 1,2,4 4 --schedule triangle --schedule-unit time
# (5) VGG-16, scale-invariant, BN (then GN below), width 1/16 (4 ... 32 channels), eta = 0.4
vgg() {
  row "fam5-mnist1d-vgg16-$1" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam5-mnist1d-vgg16-$1" \
    --model vgg16 --norm "$1" --scale-invariant true --width 0.0625 --lr 0.4 --epochs 2 "${common[@]}" --ensemble on
}
vgg bn
# (4) a wider net: the scale-invariant CNN at width 2 (64/128 channels) and 4x narrower, width 0.5
# (16/32 channels, as PreResNet-32's 16-64 against its 4x wide 64-256), BN (then GN below), eta = 0.4
wide() {
  row "fam4-mnist1d-cnn-$1-w$2" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam4-mnist1d-cnn-$1-w$2" \
    --model cnn --norm "$1" --scale-invariant true --width "$2" --lr 0.4 --epochs 2 "${common[@]}"
}
wide bn 2
# (4) PreResNet-32 itself, scale-invariant, BN and GN, 3 epochs: at its CIFAR width (w1: 16/32/64
# channels, 157k parameters) and 4x wide as P1 (w4: 64/128/256 channels, 2.5M parameters; one step costs
# 5.3x w1's, 255 against 48 ms of CPU at B = 64). At w0.25 (4/8/16 channels) GN stays near chance for 5 epochs.
preres() {  # preres NORM WIDTH
  row "fam4-mnist1d-preresnet32-$1-w$2" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam4-mnist1d-preresnet32-$1-w$2" \
    --model preresnet32 --norm "$1" --scale-invariant true --width "$2" --lr 0.4 --epochs 3 "${common[@]}"
}
# (3) the LSR test on a net that is not scale-invariant: ResNet-32 with BN and affine parameters,
# width 1/4 (4/8/16 channels), one seed per batch size; every flag explicit
row fam3-lsr-mnist1d-resnet32 lsr.json "${SVAG[@]}" lsr --out "$OUT/fam3-lsr-mnist1d-resnet32" --resume --no-progress \
  --data mnist1d --model resnet32 --norm bn --scale-invariant false --width 0.25 --lr 0.1 --batch-size 32 \
  --weight-decay 5e-3 --epochs 12 --schedule multistep --milestones 10 --gamma 0.1 --eval-every 0.5 \
  --eval-train-samples 1000 --noise pairs --noise-fraction 1 --window 0.1666667 --tau 2 --seeds 1 \
  --verify 64,128,256,512,1024
# (6) P1's main setting, EXPERIMENTS §1: scale-invariant CNN width 2, eta = 0.4, B = 32 (2 epochs here, 10 in §1)
main1() {
  row "fam6-mnist1d-cnn-$1" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam6-mnist1d-cnn-$1" \
    --model cnn --norm "$1" --scale-invariant true --width 2 --lr 0.4 --epochs 2 "${common[@]}" --batch-size 32
}
main1 bn
# (1) again with batches drawn with replacement: is a departure of ||x||^2 the sampling (as in the demo,
# EXPERIMENTS §6) or the step size?
row fam1-mnist1d-cnn-none-replacement verdicts.json "${SVAG[@]}" compare \
  --out "$OUT/fam1-mnist1d-cnn-none-replacement" --model cnn --norm none --scale-invariant false --width 1 \
  --lr 0.1 --epochs 4 "${common[@]}" --sampling replacement
wide bn 0.5
vgg gn
# (5) VGG-16 BN at a 4x smaller LR, eta = 0.1: is a departure at eta = 0.4 the step size?
row fam5-mnist1d-vgg16-bn-lr0.1 verdicts.json "${SVAG[@]}" compare --out "$OUT/fam5-mnist1d-vgg16-bn-lr0.1" \
  --model vgg16 --norm bn --scale-invariant true --width 0.0625 --lr 0.1 --epochs 2 "${common[@]}" --ensemble on
wide gn 0.5
wide gn 2
# (6) P1's NGD comparison, EXPERIMENTS §5 (its own scale: MLP, 1000 samples, B = 32, 30 epochs, 12 seeds)
row fam6-ngd-mnist1d-mlp verdicts.json "${SVAG[@]}" compare --ngd --out "$OUT/fam6-ngd-mnist1d-mlp" \
  --data mnist1d --model mlp --norm none --n-train 1000 --lr 0.1 --batch-size 32 --weight-decay 5e-4 \
  --epochs 30 --eval-every 2 --sampling replacement --ls 1,2,4,8 --seeds 12 --no-progress --resume
main1 gn
# (5) VGG-16 BN at eta = 0.4 for 6 epochs with l up to 8: does SVAG's lead at 2 epochs last, and has
# the ladder converged?
row fam5-mnist1d-vgg16-bn-6ep verdicts.json "${SVAG[@]}" compare --out "$OUT/fam5-mnist1d-vgg16-bn-6ep" \
  --model vgg16 --norm bn --scale-invariant true --width 0.0625 --lr 0.4 --epochs 6 "${common[@]}" --ensemble on \
  --ls 1,2,4,8
# (6) EXPERIMENTS §1 at its own length, 10 epochs (the rows above stop at 2), then §1's large LR
for norm in bn gn; do
  row "fam6-mnist1d-cnn-$norm-10ep" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam6-mnist1d-cnn-$norm-10ep" \
    --model cnn --norm "$norm" --scale-invariant true --width 2 --lr 0.4 --epochs 10 "${common[@]}" --batch-size 32
done
row fam6-mnist1d-cnn-bn-lr3.2 verdicts.json "${SVAG[@]}" compare --out "$OUT/fam6-mnist1d-cnn-bn-lr3.2" \
  --model cnn --norm bn --scale-invariant true --width 2 --lr 3.2 --epochs 10 "${common[@]}" --batch-size 32
# (6) §1's large batch at large LR: the linear-scaling image (kappa = 16) of B0 = 32, eta0 = 0.1, 30 epochs
row fam6-mnist1d-cnn-bn-B512-lr1.6 verdicts.json "${SVAG[@]}" compare --out "$OUT/fam6-mnist1d-cnn-bn-B512-lr1.6" \
  --data mnist1d --model cnn --norm bn --scale-invariant true --width 2 --lr 1.6 --batch-size 512 --epochs 30 \
  --eval-every 1 --ls 1,2,4 --seeds 4 --weight-decay 5e-4 --noise off --resume --no-progress
# (6) EXPERIMENTS §1 on Fashion-MNIST (5000 train / 2000 test): scale-invariant CNN width 1, eta = 0.4,
# B = 64, 2 epochs, as in §1
fashion() {
  row "fam6-fashion-cnn-$1" verdicts.json "${SVAG[@]}" compare --out "$OUT/fam6-fashion-cnn-$1" \
    --model cnn --norm "$1" --scale-invariant true --width 1 --lr 0.4 --epochs 2 "${common[@]}" \
    --data fashion-mnist --n-train 5000 --n-test 2000 --eval-train-samples 2000
}
fashion bn
# (6) P1's NGD comparison on a wider net at a smaller batch: MLP width 4 (4x the hidden units), B = 8
row fam6-ngd-mnist1d-mlp-w4-B8 verdicts.json "${SVAG[@]}" compare --ngd --out "$OUT/fam6-ngd-mnist1d-mlp-w4-B8" \
  --data mnist1d --model mlp --norm none --width 4 --n-train 1000 --lr 0.1 --batch-size 8 --weight-decay 5e-4 \
  --epochs 10 --eval-every 1 --sampling replacement --ls 1,2,4 --seeds 8 --no-progress --resume
fashion gn
preres bn 1
preres gn 1
preres bn 4
preres gn 4
