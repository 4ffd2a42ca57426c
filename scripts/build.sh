#!/usr/bin/env bash
# The one build configuration every script uses (demo, tests, TSan, the stunnel walkthrough):
# RelWithDebInfo, warnings are errors. Because the flags are the same, a build made by one
# command is reused by the next, which compiles only what it adds (targets) or what changed.
#   scripts/build.sh BUILD_DIR [-DOPTION=VALUE ...] [TARGET ...]   (no target: everything)
# Prints one line per file compiled or linked, and a line every 10 s a step runs on.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
dir=${1:?usage: build.sh BUILD_DIR [-DOPTION=VALUE ...] [TARGET ...]}; shift
opts=() targets=()
for a in "$@"; do [[ $a == -D* ]] && opts+=("$a") || targets+=(--target "$a"); done

# cmake's own chatter ("-- Found OpenSSL ...") is dropped; warnings and errors are shown.
if ! out=$(cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTRUST_WERROR=ON "${opts[@]}" 2>&1); then
  printf '%s\n' "$out" >&2; exit 1
fi
grep -v -e '^-- ' -e '^$' <<<"$out" || true
cmake --build "$dir" -j "$(nproc)" "${targets[@]}" 2>&1 | progress "${dir##*/}/" build
