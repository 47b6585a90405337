#!/usr/bin/env bash
# Synapse vector elimination end to end on the real Fashion-MNIST set, from scratch: train LeNet
# and CifarNet (5,000 training images held out for validation), search every layer over the
# thresholds, compose the Pareto frontier, jointly fine-tune the chosen points with the dense
# model as teacher, and select the fastest within 0.2 / 1 / 2 points of validation loss (the test
# set is scored, never used to select), timed side by side with the dense base. Logs and JSON
# under OUT; 40-50 minutes on 2 cores, alone.
#   scripts/sve_fashion.sh [OUT]   (default OUT: build/sve-results)
#   NETS=lenet POINTS=3,4 scripts/sve_fashion.sh OUT   (refine only these frontier points, indices
#   as NET-frontier.txt lists them; default: every point losing at most MAX_LOSS=2 before
#   refining (joint fine-tuning recovers most: CifarNet at 1.58x went from 80.4% to 90.5%, so
#   POINTS that lose more are worth naming); FT_EPOCHS: epochs per point, 20 LeNet, 6 CifarNet)
# Needs a built tree (scripts/build.sh) and the Debian package dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/sve-results}
NETS=${NETS:-lenet cifarnet}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; }

for net in $NETS; do
  case $net in
    lenet) epochs=15; ft=${FT_EPOCHS:-20} ;;
    cifarnet) epochs=12; ft=${FT_EPOCHS:-6} ;;
    *) echo "sve_fashion.sh: unknown net '$net' (lenet, cifarnet)" >&2; exit 2 ;;
  esac
  step "$net: train $epochs epochs, 5000 training images held out"
  build/deftnn train --net "$net" --epochs "$epochs" --val-from-train 5000 -o "$OUT/$net.deft"
  step "$net: per-layer search and fine-tune, frontier"
  build/deftnn optimize "$OUT/$net.deft" --out "$OUT/$net-opt" --finetune-epochs 1
  build/deftnn frontier "$OUT/$net-opt" > "$OUT/$net-frontier.txt"
  step "$net: joint fine-tune of frontier points ${POINTS:-within ${MAX_LOSS:-2} points} ($ft epochs, distilled), selection"
  build/deftnn refine "$OUT/$net-opt" ${POINTS:+--points "$POINTS"} --max-loss "${MAX_LOSS:-2}" \
    --finetune-epochs "$ft" --distill 0.9 --json "$OUT/$net-refine.json"
  build/deftnn frontier "$OUT/$net-opt" --plot "$OUT/$net-frontier.svg"
done
