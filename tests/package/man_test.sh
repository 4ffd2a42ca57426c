#!/usr/bin/env bash
# The manual pages render without a warning, carry the project version, and ptrust(1)
# describes every command `ptrust --help` lists.
#   man_test.sh PTRUST MAN_DIR VERSION
set -euo pipefail
ptrust=$1 dir=$2 version=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
for page in ptrust.1 ptrust.yaml.5 ptrust-provider.7 libptrust.3; do
  [[ -s $dir/$page ]] || fail "no $dir/$page"
  warn=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$dir/$page" 2>&1 >/dev/null) || fail "$page: man failed: $warn"
  [[ -z $warn ]] || fail "$page: $warn"
  MANWIDTH=80 man -E UTF-8 -l "$dir/$page" 2>/dev/null | grep -q "ptrust $version" || fail "$page lacks 'ptrust $version'"
done
text=$(MANWIDTH=200 man -E UTF-8 -l "$dir/ptrust.1" 2>/dev/null | sed 's/‐/-/g')
n=0
while read -r a b; do
  name=$a
  if [[ -n $b ]] && "$ptrust" "$a" --help 2>/dev/null | grep -q '^actions:'; then name="$a $b"; fi
  # "crl install" may be written "crl install" or within "host-cert generate|install|...".
  if ! grep -qE -- "(^|[ ,|])${name// /( |.*[|])}([ ,|]|$)" <<<"$text"; then fail "ptrust(1) does not describe '$name'"; fi
  n=$((n + 1))
done < <("$ptrust" --help | sed -n '/^commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\)\( [a-z][a-z-]*\)\?\b.*/\1\2/p')
((n > 20)) || fail "only $n commands read from --help"
echo "4 pages render without warnings; ptrust(1) describes all $n commands of --help"
