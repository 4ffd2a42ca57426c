#!/usr/bin/env bash
# Quick-start demo of the verify hook against `openssl s_server` on 127.0.0.1:
# ptrust probe, the custom client, and the licensing agent following a trust change live.
#   examples/demo-tls.sh ROOT PTRUST_BIN BUILD_DIR
set -euo pipefail
if (($# != 3)); then echo "usage: $0 ROOT PTRUST_BIN BUILD_DIR" >&2; exit 2; fi
root=$1 ptrust=$2 build=$3
work=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# Bold headings only on a terminal, and never with NO_COLOR set.
if [[ -t 1 && -z ${NO_COLOR:-} && ${TERM:-dumb} != dumb ]]; then b=$'\033[1m' o=$'\033[0m'; else b='' o=''; fi
step() { printf '\n%s== %s%s\n' "$b" "$*" "$o"; }

step "a demo CA and a license server certificate for localhost"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Demo License CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 7 \
  -extfile "$work/ext.cnf" -out "$work/server.pem" 2>/dev/null

step "license server: openssl s_server -www on 127.0.0.1"
openssl s_server -accept 127.0.0.1:0 -www -cert "$work/server.pem" -key "$work/server.key" \
  </dev/null >"$work/s_server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$work/s_server.log" | head -1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "s_server did not start" >&2; exit 1; }
echo "listening on 127.0.0.1:$port"

step "no trust for 'licensing' yet: probe fails closed"
"$ptrust" --root "$root" probe "127.0.0.1:$port" --purpose licensing --servername localhost || true

step "trust the demo CA for 'licensing'"
uuid=$("$ptrust" --root "$root" install "$work/ca.pem" --ca --purpose licensing)
echo "installed $uuid"
"$ptrust" --root "$root" probe "127.0.0.1:$port" --purpose licensing --servername localhost

step "custom client (examples/custom-client)"
"$build/examples/custom-client" localhost "$port" licensing "$root"

step "licensing agent: 3 check-ins on one SSL_CTX; the CA is removed after the 1st and back before the 3rd"
"$build/examples/licensing-agent" localhost "$port" 1500 3 "$root" &
agent=$!
sleep 0.7
echo "  (trust change: ptrust uninstall: $("$ptrust" --root "$root" uninstall "$uuid" 2>&1))"
sleep 1.5
"$ptrust" --root "$root" install "$work/ca.pem" --ca --purpose licensing >/dev/null
echo "  (trust change: ptrust install: the demo CA is back)"
wait "$agent"

step "offline: ptrust verify on the server's chain (now, and as of 30 days from now)"
"$ptrust" --root "$root" verify --purpose licensing "$work/server.pem" --host localhost
"$ptrust" --root "$root" verify --purpose licensing "$work/server.pem" --host localhost --at "@$(( $(date +%s) + 30*86400 ))" || true
