#!/usr/bin/env bash
# Builds everything (warnings are errors) and runs every test under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
build=${PTRUST_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTRUST_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
