#!/usr/bin/env bash
# Quick start, command one: installs dependencies, builds what the demo runs, and runs the
# end-to-end demo in a temporary root (nothing outside it is touched). The build uses the
# flags of scripts/test.sh (scripts/build.sh), so the test run afterwards reuses it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
build=${PTRUST_BUILD_DIR:-$top/build}
start=$SECONDS
phase "demo 1/3" "dependencies (scripts/deps.sh)"
"$top/scripts/deps.sh"
phase "demo 2/3" "build the ptrust command, ptrust.so and the example clients into ${build#"$top"/}/ (a few minutes the first time)"
"$top/scripts/build.sh" "$build" ptrust ptrust_provider custom-client licensing-agent
phase "demo 3/3" "the demo"
ptrust="$build/helper/ptrust"

work=$(mktemp -d /tmp/ptrust-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"; pki="$work/pki"; mkdir -p "$root" "$pki"
say() { printf '\n%s== %s%s\n' "$_b" "$*" "$_o"; }
show() { printf '$ %s\n' "$*" | sed "s|$work|\$DEMO|g; s|$ptrust|ptrust|g"; "$@" 2>&1 | sed "s|$work|\$DEMO|g"; }

demo_start=$SECONDS
say "A small PKI made with OpenSSL (in $work)"
"$top/scripts/mkpki.sh" "$pki" >/dev/null
ls "$pki" | sed 's/^/  /'

say "Trust a CA for purpose 'licensing' and pin a self-signed peer for 'ldaps'"
show "$ptrust" --root "$root" install "$pki/root-ca.pem" --ca --purpose licensing
show "$ptrust" --root "$root" install "$pki/appliance.pem" --pinned --purpose ldaps

say "Refusals are one line with a stable code, and change nothing"
show "$ptrust" --root "$root" install "$pki/server.key" --ca --purpose licensing || true
show "$ptrust" --root "$root" install "$pki/server.pem" --ca --purpose licensing || true
show "$ptrust" --root "$root" install "$pki/appliance.pem" --pinned || true

say "A CRL from the root (it revokes revoked.pem); OpenSSL hash entries are kept beside it"
show "$ptrust" --root "$root" crl install "$pki/root-ca.crl"

say "What is trusted"
show "$ptrust" --root "$root" list

say "Which store serves each purpose (pinned > ca-<purpose> > ca-general > none)"
for p in licensing ldaps general; do show "$ptrust" --root "$root" resolve "$p"; done

say "The stores on disk"
(cd "$root" && find etc var -printf '%M %p\n' | sort -k2)

say "Reconcile: a deleted bundle is drift; sync repairs it"
rm "$root/etc/trusted-certs/ca-bundle-licensing.pem"
show "$ptrust" --root "$root" sync --check || true
show "$ptrust" --root "$root" sync
show "$ptrust" --root "$root" sync --check

say "Health for the management stack: status (exit 3: a warning), xapi-style alerts, and the alerts 8 days from now"
show "$ptrust" --root "$root" status || true
show "$ptrust" --root "$root" alerts
show "$ptrust" --root "$root" alerts --at "@$(($(date +%s) + 8 * 86400))"

say "The daemon: the same report on its Unix socket, Prometheus metrics on loopback, SIGTERM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ptrust" --root "$root" serve --metrics "127.0.0.1:$port" 2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 50); do grep -q "serving " "$work/serve.log" && break; sleep 0.1; done
sed "s|$work|\$DEMO|g" "$work/serve.log"
show "$ptrust" --root "$root" alerts --socket "$root/run/ptrust/ptrust.sock"
printf '$ curl -s http://127.0.0.1:%s/metrics | grep -E "^(x509_crl_next_update|ptrust_purpose_mode.* 1$)"\n' "$port"
curl -s "http://127.0.0.1:$port/metrics" | grep -E "^(x509_crl_next_update|ptrust_purpose_mode.* 1$)" | sed "s|$work|\$DEMO|g"
kill -TERM "$serve_pid" && wait "$serve_pid" && echo "serve exited 0 on SIGTERM"

say "Unmodified openssl verifies by purpose through the provider (ptrust://PURPOSE)"
prov=(-provider-path "$build/provider" -provider ptrust -provider default)
export PTRUST_ROOT="$root"
show openssl storeutl "${prov[@]}" -noout ptrust://licensing
show openssl verify "${prov[@]}" -CAstore ptrust://licensing -no-CAfile -no-CApath "$pki/server.pem"
show openssl verify "${prov[@]}" -CAstore ptrust://licensing -no-CAfile -no-CApath "$pki/wrong-server.pem" || true
show openssl verify "${prov[@]}" -CAstore ptrust://licensing -no-CAfile -no-CApath -crl_check "$pki/revoked.pem" || true
show openssl verify "${prov[@]}" -CAstore ptrust://ldaps -no-CAfile -no-CApath "$pki/appliance.pem"
show openssl verify "${prov[@]}" -CAstore ptrust://wlb -no-CAfile -no-CApath "$pki/server.pem" || true
unset PTRUST_ROOT

say "The verify hook (libptrust) in real TLS clients, in a fresh root"
mkdir -p "$work/tls-root"
"$top/examples/demo-tls.sh" "$work/tls-root" "$ptrust" "$build"
say "stunnel 5.68 tunnels rendered by ptrust and kept in step with trust changes"
PTRUST_BUILD_DIR="$build" "$top/examples/stunnel/walkthrough.sh"

say "Done in $(dur $((SECONDS - start))) (the demo alone: $(dur $((SECONDS - demo_start))))"
