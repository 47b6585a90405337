#!/usr/bin/env bash
# Configures and builds deftnn (Release) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${DEFTNN_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$(nproc)"
