#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer (clang; the same build
# directory and flags as the fuzz targets of scripts/fuzz.sh, so CI compiles the tree once for
# both) and runs the test suite under CTest. Any report fails: ASan always aborts, UBSan with
# -fno-sanitize-recover, LeakSanitizer at each process's exit. No suppressions: every report
# so far was ptrust's own and is fixed.
# Usage: scripts/asan.sh [BUILD_DIR]   (default: build-asan)
#
# Not run here (ctest -E, the list below), each for a reason that is not ptrust's behaviour;
# the normal build's CTest (scripts/test.sh) runs every one of them:
#  - an ASan-built ptrust.so cannot be loaded into a program that is not built with ASan (the
#    runtime is the executable's): ProviderCli.*, hook.revocation_test and
#    package.version_test run the openssl command with it; the stunnel tests of the provider form (ProviderChanges.*,
#    *ProviderForm*, Via/TunnelTest.*/"provider", SyncTest.PinInstalledThenSync...) run
#    stunnel with it. ptrust.so itself runs under ASan in ProviderInProcess.*,
#    ProviderSmallStack.*, the hook tests that load it and fuzz/provider_fuzz.
#  - two tests measure the daemon's resident memory (ServerTest.LongLine..., a peak under
#    4 MiB; Serve.GarbageHuge..., under 8 KiB growth): ASan's shadow memory and quarantine
#    are not the daemon's. Their inputs (long and garbage lines) are fuzz/serve_fuzz's.
#  - Fleet.ThousandCertificatesConverge: three daemons writing 1,000 certificates each under
#    a deadline; its inputs (etcd answers, documents) are fuzz/fleet_fuzz's and exchange_fuzz's.
exclude='^ProviderCli\.|^hook\.revocation_test$|^package\.version_test$|^ProviderChanges\.|ProviderForm|"provider"$'
exclude+='|^SyncTest\.PinInstalledThenSyncSwitchesRunningStunnelToVerifyPeer$'
exclude+='|^ServerTest\.LongLineIsRefusedAndClosedWithoutBufferingIt$|^Serve\.GarbageHugeLinesSilentClientsAndManyClients$'
exclude+='|^Fleet\.ThousandCertificatesConverge$'
#  - CrashSafety.KillEveryWriterAtRandomInstantsAcross500Operations and
#    Concurrency.FourMixedWritersTimes250LoseNothing: 100 s of the ASan run between them (CI
#    time), repeating the writer paths that CrashSafety.KillAtRandomInstants... and the other
#    Concurrency tests already run under ASan; a killed process reports nothing to ASan anyway.
exclude+='|^CrashSafety\.KillEveryWriterAtRandomInstantsAcross500Operations$|^Concurrency\.FourMixedWritersTimes250LoseNothing$'
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
build=${1:-$top/build-asan}
"$top/scripts/build.sh" "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DPTRUST_FUZZ=ON
export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1 strict_string_checks=1 detect_stack_use_after_return=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 ${UBSAN_OPTIONS:-}"
t=$SECONDS
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" -E "$exclude"
echo "  CTest under ASan + UBSan took $(dur $((SECONDS - t)))"
