#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU and nvcc (no Debian registry needed):
# builds deftnn without ONNX (the GPU machine has no libonnx-dev), runs the CUDA tests and the
# CUDA benchmark. Output (logs, bench_cuda.json) goes to $1 (default: out/cuda).
#   scripts/cuda_check.sh [OUTDIR] [bench_cuda options...]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/cuda}"
shift || true
mkdir -p "$out"
bdir="${DEFTNN_CUDA_BUILD:-build-cuda}"
args=(-DCMAKE_BUILD_TYPE=Release -DDEFTNN_CUDA=ON -DDEFTNN_ONNX=OFF -DDEFTNN_WERROR=OFF)
# GoogleTest from its sources when the machine has them but no built library.
if ! cmake -S . -B "$bdir" "${args[@]}" >"$out/cmake.log" 2>&1; then
  if [ -d /usr/src/googletest ]; then
    echo "building GoogleTest from /usr/src/googletest" | tee -a "$out/cmake.log"
    cmake -S /usr/src/googletest -B "$bdir-gtest" -DCMAKE_INSTALL_PREFIX="$PWD/$bdir-gtest/install" \
      >>"$out/cmake.log" 2>&1 && cmake --build "$bdir-gtest" -j"$(nproc)" --target install >>"$out/cmake.log" 2>&1
    cmake -S . -B "$bdir" "${args[@]}" -DGTest_ROOT="$PWD/$bdir-gtest/install" >>"$out/cmake.log" 2>&1 ||
      { tail -40 "$out/cmake.log"; exit 1; }
  else
    tail -40 "$out/cmake.log"; exit 1
  fi
fi
grep -E "deftnn:" "$out/cmake.log"
cmake --build "$bdir" -j"$(nproc)" --target deftnn_cli deftnn_tests bench_cuda bench_cuda_net >"$out/build.log" 2>&1 ||
  { grep -E "error|Error" -A3 "$out/build.log" | head -60; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader | tee "$out/gpu.txt"
"$bdir/tests/deftnn_tests" --gtest_filter='Cuda*' 2>&1 | tee "$out/test.log" | grep -E "^\[ *(OK|FAILED|PASSED|SKIPPED) |Failure|error|vs|reference" | head -80
case "${DEFTNN_CUDA_STEPS:-all}" in
  *layers*|all) "$bdir/bench/bench_cuda" --json "$out/bench_cuda.json" "$@" 2>&1 | tee "$out/bench.log" ;;
esac
case "${DEFTNN_CUDA_STEPS:-all}" in
  *nets*|all)
    "$bdir/bench/bench_cuda_net" --json "$out/bench_cuda_net.json" 2>&1 | tee "$out/bench_net.log"
    python3 bench/peers/torch_cuda_nets.py --json "$out/torch_cuda_nets.json" 2>&1 | tee "$out/torch_net.log" ;;
esac
