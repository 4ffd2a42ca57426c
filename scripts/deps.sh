#!/usr/bin/env bash
# Installs the Debian bookworm packages ptrust builds and tests with, saying which ones and
# how far apt has got (download and install in 10% steps); apt's own log goes to a file
# that is shown if apt fails.
set -euo pipefail
. "$(dirname "$0")/common.sh"
pkgs=(build-essential cmake pkg-config openssl libssl-dev
      libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
      libyaml-cpp-dev libsqlite3-dev libgtest-dev libgmock-dev googletest libbenchmark-dev stunnel4
      libsystemd-dev prometheus-cpp-dev python3-prometheus-client  # ptrust serve
      etcd-server etcd-client  # tests/fleet: a real etcd for `fleet publish` and `serve --follow`
      clang libclang-rt-14-dev  # scripts/asan.sh, scripts/fuzz.sh: ASan + UBSan, libFuzzer's runtime
      debhelper lintian man-db  # scripts/package.sh: dpkg-buildpackage (dh + cmake), lintian, `man ptrust`
      curl python3 ca-certificates)  # curl, python3: the capath tests run them as unmodified programs;
      # ca-certificates: the system bundle whose leak into default paths they measure
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "  dependencies: all ${#pkgs[@]} packages are installed"
  exit 0
fi
SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
log=$(mktemp /tmp/ptrust-deps-XXXXXX.log)
failed() { echo "deps: apt-get failed; the end of its log ($log):" >&2; tail -n 30 "$log" >&2; exit 1; }
start=$SECONDS

echo "  dependencies to install: ${missing[*]}"
echo "  apt-get update"
$SUDO apt-get update -q 2>&1 | tee -a "$log" | sed -u 's/^/    /' | progress "apt-get update" || failed
n=$(apt-get install -s --no-install-recommends "${missing[@]}" 2>>"$log" | grep -c '^Inst ') || failed
echo "  apt-get install: ${#missing[@]} packages, $n with what they need"

# apt's machine-readable progress (APT::Status-Fd): dlstatus:N:PERCENT:TEXT while
# downloading, pmstatus:PACKAGE:PERCENT:TEXT while dpkg unpacks and configures.
apt_progress() {
  local kind pct text shown=-1 phase='' last=$SECONDS
  while IFS=: read -r kind _ pct text; do
    case $kind in dlstatus) kind=download ;; pmstatus) kind=install ;; *) continue ;; esac
    pct=${pct%%.*}
    [[ $kind != "$phase" ]] && { phase=$kind shown=-1; }
    if ((pct / 10 > shown || SECONDS - last >= 10)); then
      printf '    %-8s %3d%%  %s\n' "$phase" "$pct" "$text"
      shown=$((pct / 10)) last=$SECONDS
    fi
  done
}
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -o APT::Status-Fd=3 \
  "${missing[@]}" 3>&1 >>"$log" 2>&1 | apt_progress | progress "apt-get install" || failed
echo "  dependencies installed in $(dur $((SECONDS - start))) (apt's log: $log)"
