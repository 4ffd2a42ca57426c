#!/usr/bin/env bash
# Installs the Debian bookworm packages ptrust builds and tests with.
set -euo pipefail
pkgs=(build-essential cmake pkg-config openssl libssl-dev
      libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
      libyaml-cpp-dev libgtest-dev libgmock-dev googletest libbenchmark-dev stunnel4
      curl python3)  # curl, python3: the capath tests run them as unmodified programs
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
