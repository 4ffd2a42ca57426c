#!/usr/bin/env bash
# stunnel 5.68 tunnels that follow ptrust's trust, end to end, in a temporary root:
#   1. `ptrust stunnel render` for --via files and --via provider;
#   2. `ptrust stunnel sync` managing a running stunnel: revocation, a pin installed,
#      a CA removed -- each reaches stunnel through a rewritten config and SIGHUP.
# Only 127.0.0.1 is used; every process started here is killed on exit.
#
#   examples/stunnel/walkthrough.sh          (builds into ./build if needed)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${PTRUST_BUILD_DIR:-$top/build}
if [[ ! -x $build/helper/ptrust || ! -f $build/provider/ptrust.so ]]; then
  "$top/scripts/build.sh" "$build" ptrust ptrust_provider  # the flags every script uses, with progress
fi
ptrust="$build/helper/ptrust"; module="$build/provider/ptrust.so"
command -v stunnel >/dev/null || { echo "stunnel (Debian: stunnel4) is needed" >&2; exit 1; }

work=$(mktemp -d /tmp/ptrust-stunnel-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
root="$work/root"; pki="$work/pki"; mkdir -p "$root/etc/ptrust"
# Bold headings only on a terminal, and never with NO_COLOR set.
if [[ -t 1 && -z ${NO_COLOR:-} && ${TERM:-dumb} != dumb ]]; then b=$'\033[1m' o=$'\033[0m'; else b='' o=''; fi
say() { printf '\n%s== %s%s\n' "$b" "$*" "$o"; }
show() { printf '$ %s\n' "$*" | sed "s|$work|\$W|g; s|^\$ pt |\$ ptrust |; s|$module|ptrust.so|g"; "$@" 2>&1 | sed "s|$work|\$W|g; s|$module|ptrust.so|g"; }
pt() { "$ptrust" --root "$root" "$@"; }

# A free TCP port on 127.0.0.1 (nothing answers a connect to it).
port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
# One request through a tunnel: "established" (s_server's page came back) or "refused".
probe() {
  local got; got=$(timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; printf 'GET / HTTP/1.0\r\n\r\n' >&3; head -c 15 <&3" 2>/dev/null || true)
  [[ $got == "HTTP/1.0 200 ok" ]] && echo "  $2: established" || echo "  $2: refused"
}
server() { # VAR NAME: starts `openssl s_server -www` serving pki/NAME; its port goes to VAR
  local p; p=$(port)
  openssl s_server -accept "127.0.0.1:$p" -cert "$pki/$2.pem" -key "$pki/$2.key" -www >"$work/$2.log" 2>&1 &
  pids+=($!)  # not in a subshell: the EXIT trap kills it
  for _ in $(seq 100); do grep -q ACCEPT "$work/$2.log" && break; sleep 0.05; done
  printf -v "$1" %s "$p"
}
# Waits for configuration number $2 (1 = start) of the stunnel logging to $1.
wait_conf() {
  local n
  for _ in $(seq 200); do
    n=$(grep -c "Configuration successful" "$1" 2>/dev/null) || n=0
    (( n >= $2 )) && { sleep 0.3; return; }  # then stunnel binds its sockets
    sleep 0.05
  done
  echo "stunnel did not load its configuration" >&2; exit 1
}

say "A demo PKI (scripts/mkpki.sh) and three TLS servers"
"$top/scripts/mkpki.sh" "$pki" >/dev/null
server good server; server wrong wrong-server; server revoked revoked; server app appliance
echo "  server.pem (root-ca, licensing.example) on $good, wrong-server.pem (other-ca) on $wrong,"
echo "  revoked.pem (root-ca, revoked) on $revoked, appliance.pem (self-signed) on $app"

say "Trust root-ca for 'licensing'; 'appliance' has no trust yet (mode none)"
printf 'purposes:\n  licensing: {}\n  appliance: {}\n' >"$root/etc/ptrust/ptrust.yaml"
ca_uuid=$(pt install "$pki/root-ca.pem" --ca --purpose licensing)
echo "\$ ptrust install \$W/pki/root-ca.pem --ca --purpose licensing"; echo "$ca_uuid"
show pt crl install "$pki/root-ca.crl"

say "render --via files: CAfile = the chosen bundle, CRLfile = the CRLs of licensing's CAs"
show pt stunnel render --purpose licensing --name licensing --accept 127.0.0.1:8443 \
  --connect "127.0.0.1:$good" --check-host licensing.example
say "render --via provider: VerifyCAStore:ptrust://licensing (CRLs are NOT enforced by 5.68 this way)"
show pt stunnel render --purpose licensing --name licensing --accept 127.0.0.1:8443 \
  --connect "127.0.0.1:$good" --check-host licensing.example --via provider \
  --openssl-conf "$work/openssl.cnf" --module "$module"
say "Mode none is refused: an unverified tunnel is never rendered"
show pt stunnel render --purpose appliance --name app --accept 127.0.0.1:8444 --connect "127.0.0.1:$app" \
  --check-host appliance.example || true

say "The provider form: a running stunnel; an unknown purpose makes stunnel refuse to start"
pa=$(port)
{ printf 'foreground = yes\noutput = %s\npid = %s\n' "$work/prov.log" "$work/prov.pid"
  pt stunnel render --purpose licensing --name lic --accept "127.0.0.1:$pa" --connect "127.0.0.1:$good" \
    --check-host licensing.example --via provider 2>/dev/null; } >"$work/prov.conf"
OPENSSL_CONF="$work/openssl.cnf" stunnel "$work/prov.conf" 2>/dev/null & pids+=($!)
wait_conf "$work/prov.log" 1
probe "$pa" "provider tunnel to server.pem"
sed 's|ptrust://licensing|ptrust://nosuch|; s|prov\.|bad.|g' "$work/prov.conf" >"$work/bad.conf"
if OPENSSL_CONF="$work/openssl.cnf" timeout 10 stunnel "$work/bad.conf" 2>/dev/null; then echo "  unexpected: stunnel started"; else
  echo "  stunnel with ptrust://nosuch exited with status $? (refused to start)"; fi

say "ptrust stunnel sync: stunnel declared in ptrust.yaml"
lic=$(port); lw=$(port); lr=$(port); ap=$(port)
cat >>"$root/etc/ptrust/ptrust.yaml" <<EOF
stunnel:
  - name: tunnels
    config: $work/stunnel.conf
    pidfile: $work/stunnel.pid
    via: files
    global: [ "foreground = yes", "output = $work/stunnel.log" ]
    services:
      - { name: licensing, purpose: licensing, accept: "127.0.0.1:$lic", connect: "127.0.0.1:$good", check-host: licensing.example }
      - { name: licensing-wrong, purpose: licensing, accept: "127.0.0.1:$lw", connect: "127.0.0.1:$wrong", check-host: licensing.example }
      - { name: licensing-revoked, purpose: licensing, accept: "127.0.0.1:$lr", connect: "127.0.0.1:$revoked", check-host: licensing.example }
      - { name: appliance, purpose: appliance, accept: "127.0.0.1:$ap", connect: "127.0.0.1:$app", check-host: appliance.example }
EOF
show pt stunnel sync || true
stunnel "$work/stunnel.conf" 2>/dev/null & pids+=($!)
wait_conf "$work/stunnel.log" 1
probe "$lic" licensing; probe "$lw" "licensing-wrong (other CA)"; probe "$lr" "licensing-revoked"
probe "$ap" "appliance (fail-closed stanza)"

say "Pin appliance.pem, sync: the appliance stanza switches to verifyPeer, stunnel gets SIGHUP"
show pt install "$pki/appliance.pem" --pinned --purpose appliance
show pt stunnel sync
wait_conf "$work/stunnel.log" 2
probe "$ap" appliance

say "Remove root-ca, sync: licensing fails closed (the old CAfile is not kept)"
show pt uninstall "$ca_uuid"
show pt stunnel sync
wait_conf "$work/stunnel.log" 3
probe "$lic" licensing
