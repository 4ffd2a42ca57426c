#!/usr/bin/env bash
# Quick start, command two: builds everything (warnings are errors) and runs every test:
# the multi-threaded tests under ThreadSanitizer (own build dir: other compiler flags), then
# the whole suite under CTest. The normal build uses the same flags as scripts/demo.sh
# (scripts/build.sh), so after the demo only what the demo did not need is compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
build=${PTRUST_BUILD_DIR:-build}
start=$SECONDS
phase "test 1/4" "dependencies (scripts/deps.sh)"
./scripts/deps.sh
phase "test 2/4" "ThreadSanitizer build and run of the threaded tests (scripts/tsan.sh, ${build}-tsan/)"
./scripts/tsan.sh "${build}-tsan"
phase "test 3/4" "build everything into $build/: tests, examples, benchmarks"
./scripts/build.sh "$build"
phase "test 4/4" "CTest: every test (a line per test as it finishes)"
t=$SECONDS
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
echo "  CTest took $(dur $((SECONDS - t))); all of scripts/test.sh $(dur $((SECONDS - start)))"
