#!/usr/bin/env bash
# Runs every benchmark of the closing figures, one after the other, on an otherwise idle machine:
# tables on stdout (tee'd to OUT/log.txt) and machine-readable JSON per benchmark under OUT.
#   scripts/bench_all.sh [OUT]     (default OUT: build/bench-results; THREADS=2 by default)
# Needs a built tree (scripts/build.sh); the peer scripts need /usr/bin/python3 with Debian's
# python3-torch / python3-onnx and, for ONNX Runtime, `npm install --ignore-scripts` in bench/peers.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/bench-results}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PY=/usr/bin/python3
export OMP_NUM_THREADS=$THREADS
step() { echo; echo "=== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; }

step "GEMM: ours vs OpenBLAS vs oneDNN, CaffeNet shapes, K halved"
build/bench/bench_gemm --samples 11 --json "$OUT/gemm.json"

step "Winograd F(2x2,3x3) vs the direct kernels, 3x3 convs of ResNet-18, VGG-11, CaffeNet, SqueezeNet"
build/bench/bench_winograd --json "$OUT/winograd.json"
step "Winograd's bf16 variant vs the bf16 direct kernels (avx512_bf16 only), the same layers"
build/bench/bench_winograd --format bf16 --json "$OUT/winograd_bf16.json"

step "CaffeNet end to end, deftnn vs PyTorch"
$PY bench/peers/e2e_caffenet.py --threads "$THREADS" --batch 1 32 --json "$OUT/e2e_caffenet.json"

step "CaffeNet weight formats (data fission), batch 1 and 32, against the fastest dense fp32 (Winograd conv3)"
build/deftnn bench caffenet --batch 1 32 --iters 15 \
  --formats f32,half,deft16,deft16q,bf16,deft8_e4,conv:bf16+fc:deft8_e4 --json "$OUT/formats.json"
step "CaffeNet weight formats, kernel for kernel (--winograd off: fp32 on the same direct kernels, the paper's comparison)"
build/deftnn --winograd off bench caffenet --batch 1 32 --iters 15 \
  --formats f32,bf16,conv:bf16+fc:deft8_e4 --json "$OUT/formats_direct.json"
step "CaffeNet Deft-8 on the bf16 unit (bf16_dot: Deft-8H with bf16 activations), batch 1 and 32"
build/deftnn bench caffenet --batch 1 32 --iters 15 --formats bf16,conv:bf16+fc:deft8_e4 \
  --fission-mode bf16_dot --json "$OUT/formats_bf16_dot.json"
step "CaffeNet software widening on the forced AVX2 path"
DEFTNN_ISA=avx2 build/deftnn bench caffenet --batch 1 32 --iters 15 \
  --formats f32,half,deft16,deft16q --json "$OUT/formats_avx2.json"
step "CaffeNet off-chip packing baseline"
build/deftnn bench caffenet --batch 1 --iters 15 --formats f32,deft16,bf16,deft8_e4 \
  --fission-mode offchip --json "$OUT/formats_offchip.json"

step "Reduced precision against the peer: our native bf16 vs PyTorch bf16 (oneDNN), CaffeNet per layer"
$PY bench/peers/fission_peers.py --deftnn build/deftnn --threads "$THREADS" --batch 1 32 \
  --json "$OUT/fission_peers.json" || echo "fission_peers.py failed"

step "Synapse vector elimination per layer (50% retained)"
build/bench/bench_sve_layers --json "$OUT/sve_layers.json"

step "Magnitude-pruning baseline: dense vs CSR kernels by density, pruned CaffeNet end to end"
build/bench/bench_prune --quick --json "$OUT/prune.json"

# End-to-end elimination needs trained, optimised and refined models (hours of training: not
# made here). Give them as "DENSE REFINED..." pairs: SVE_LENET="lenet.deft lenet-ref/refined_0.2.deft"
# (likewise SVE_CIFARNET); one thread, batch 64, thread CPU time and wall time.
for net in LENET CIFARNET; do
  var="SVE_$net"
  if [ -n "${!var:-}" ]; then
    lower=$(echo "$net" | tr 'A-Z' 'a-z')
    step "Synapse vector elimination end to end, $lower, one thread, batch 64"
    # shellcheck disable=SC2086
    build/deftnn --threads 1 compare ${!var} --batch 64 --rounds 7 --iters 10 --cputime \
      --json "$OUT/${lower}_compare_cpu.json"
    # shellcheck disable=SC2086
    build/deftnn --threads 1 compare ${!var} --batch 64 --rounds 7 --iters 10 \
      --json "$OUT/${lower}_compare_wall.json"
  fi
done

step "ONNX models: deftnn vs ONNX Runtime vs PyTorch"
$PY bench/peers/onnx_models.py --threads "$THREADS" --batch 1 16 --json "$OUT/onnx_models.json" || echo "onnx_models.py failed (ONNX Runtime installed? see bench/peers)"

step "LeNet training epoch, deftnn vs PyTorch"
$PY bench/peers/train_lenet.py --threads "$THREADS" --epochs 1 --json "$OUT/train_lenet.json" || echo "train_lenet.py failed"
echo; echo "results in $OUT"
