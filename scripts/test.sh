#!/usr/bin/env bash
# Quick start, command two: builds everything (warnings are errors) and runs every test:
# the multi-threaded tests under ThreadSanitizer (own build dir), then the whole suite
# under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
build=${PTRUST_BUILD_DIR:-build}
./scripts/tsan.sh "${build}-tsan"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTRUST_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
