#!/usr/bin/env bash
# Builds the multi-threaded tests with ThreadSanitizer in their own build dir and runs them:
# the verify hook's shared SSL_CTX under store changes, the provider's concurrent opens, and
# the store writer's helper threads (a narrow write: core_tests NarrowTest.*).
# Usage: scripts/tsan.sh [BUILD_DIR]   (default: build-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
build=${1:-build-tsan}
./scripts/build.sh "$build" -DPTRUST_TSAN=ON threads_test provider_tests ptrust_provider ptrust core_tests
# Fail on the first report; OpenSSL itself is not instrumented, its own locks are seen.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
echo "  running threads_test and provider_tests (ProviderInProcess.*) under TSan"
"$build/tests/hook/threads_test" 2>&1 | progress "threads_test"
"$build/tests/provider/provider_tests" --gtest_filter='ProviderInProcess.*' 2>&1 | progress "provider_tests"
# The store writer's helper threads (a narrow write's digests, CA directory listing and step).
echo "  running core_tests (NarrowTest.*) under TSan"
"$build/tests/core_tests" --gtest_filter='NarrowTest.*' 2>&1 | progress "core_tests"
