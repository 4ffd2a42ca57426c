#!/usr/bin/env bash
# Quick start, command two: builds everything (warnings are errors) and runs every test:
# the multi-threaded tests under ThreadSanitizer (own build dir: other compiler flags), the
# suite under AddressSanitizer + UBSan and a fuzzing smoke run of every fuzz target (one clang
# build dir for both), then the whole suite under CTest. The normal build uses the same flags as scripts/demo.sh
# (scripts/build.sh), so after the demo only what the demo did not need is compiled. Last, the
# Debian package is built from scratch, installed and tested as installed (scripts/package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
build=${PTRUST_BUILD_DIR:-build}
start=$SECONDS
fuzz_seconds=${PTRUST_FUZZ_SECONDS:-30}
phase "test 1/7" "dependencies (scripts/deps.sh)"
./scripts/deps.sh
phase "test 2/7" "ThreadSanitizer build and run of the threaded tests (scripts/tsan.sh, ${build}-tsan/)"
./scripts/tsan.sh "${build}-tsan"
phase "test 3/7" "ASan + UBSan build (clang) and CTest under it (scripts/asan.sh, ${build}-asan/)"
t=$SECONDS
./scripts/asan.sh "${build}-asan"
echo "  ASan + UBSan build and CTest took $(dur $((SECONDS - t)))"
phase "test 4/7" "fuzzing smoke run: each fuzz target ${fuzz_seconds}s (scripts/fuzz.sh, ${build}-asan/)"
./scripts/fuzz.sh "$fuzz_seconds" "${build}-asan"
phase "test 5/7" "build everything into $build/: tests, examples, benchmarks"
./scripts/build.sh "$build"
phase "test 6/7" "CTest: every test (a line per test as it finishes)"
t=$SECONDS
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
echo "  CTest took $(dur $((SECONDS - t)))"
phase "test 7/7" "the Debian package: build (dpkg-buildpackage, from scratch), lintian, dpkg -i, the installed product, remove, purge (scripts/package.sh)"
t=$SECONDS
if [[ $(id -u) -eq 0 ]]; then
  ./scripts/package.sh
else
  sudo ./scripts/package.sh
fi
echo "  package stage took $(dur $((SECONDS - t))); all of scripts/test.sh $(dur $((SECONDS - start)))"
