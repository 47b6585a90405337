#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run the main job
# (train LeNet on Fashion-MNIST, evaluate it, print a per-layer time table).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
./build/deftnn demo "$@"
