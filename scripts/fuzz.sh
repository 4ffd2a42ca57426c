#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan, in BUILD_DIR) and runs each for
# SECONDS, as many at once as there are CPUs, starting from its seeds (fuzz/corpus/<target>/,
# copied to BUILD_DIR/fuzz/corpus/<target>/ where what is found accumulates between runs).
# Fails on any crash, leak, sanitizer report, timeout (-timeout=25 s per input) or exception
# other than ptrust::Error; the input is saved as BUILD_DIR/fuzz/artifacts/<target>/crash-*.
# Prints each target's executions and coverage (libFuzzer's final `cov:` and `ft:`).
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR] [TARGET ...]   (default: 30 build-asan, all)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
secs=${1:-30}
build=${2:-$top/build-asan}
shift $(($# > 2 ? 2 : $#))
targets=("$@")
((${#targets[@]})) || targets=(cert crl config exchange db provider serve fleet)
"$top/scripts/build.sh" "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DPTRUST_FUZZ=ON \
  "${targets[@]/%/_fuzz}"

# Any sanitizer report is fatal; leaks are checked after each input (libFuzzer -detect_leaks).
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 ${UBSAN_OPTIONS:-}"
run() {  # TARGET: one fuzzing run, its log in BUILD_DIR/fuzz/logs/TARGET.log
  local t=$1 corpus=$build/fuzz/corpus/$1 art=$build/fuzz/artifacts/$1/ log=$build/fuzz/logs/$1.log
  mkdir -p "$corpus" "$art" "${log%/*}"
  cp -n "$top/fuzz/corpus/$t/"* "$corpus/"
  "$build/fuzz/${t}_fuzz" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$art" "$corpus" >"$log" 2>&1
}
echo "  fuzzing ${#targets[@]} targets for ${secs}s each, $(nproc) at a time (logs: ${build#$top/}/fuzz/logs/)"
start=$SECONDS failed=() pids=() names=()
i=0
for t in "${targets[@]}"; do
  run "$t" & pids+=($!) names+=("$t")
  i=$((i + 1))
  if ((i % $(nproc) == 0 || i == ${#targets[@]})); then
    for k in "${!pids[@]}"; do
      t=${names[$k]} log=$build/fuzz/logs/${names[$k]}.log
      if wait "${pids[$k]}"; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
        printf '  %-9s ok  %9s execs  %s  corpus %s\n' "$t" "$execs" "$cov" "$(ls "$build/fuzz/corpus/$t" | wc -l)"
      else
        failed+=("$t")
        printf '  %-9s FAILED: %s\n' "$t" "$(grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY)|runtime error' "$log" || tail -n 1 "$log")"
        grep -E -A30 '^==[0-9]+==ERROR|runtime error|deadly signal' "$log" | head -n 40 | sed 's/^/    /'
        ls "$build/fuzz/artifacts/$t/" | sed "s|^|    input: ${build#$top/}/fuzz/artifacts/$t/|"
      fi
    done
    pids=() names=()
  fi
done
echo "  fuzzing took $(dur $((SECONDS - start)))"
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (reproduce: ${build#$top/}/fuzz/TARGET_fuzz INPUT)" >&2
  exit 1
fi
