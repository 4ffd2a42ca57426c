#!/usr/bin/env bash
# Regenerates the seed corpora of the libFuzzer targets (fuzz/corpus/<target>/, checked in)
# from a small test PKI made here with the openssl command, plus the repository's own sample
# configuration, and an export document and database made by a real `ptrust` on a scratch root.
# Usage: scripts/fuzz-seeds.sh [PTRUST_BINARY]   (default: build/helper/ptrust)
# Seeds are inputs to start from, not expectations: refusals (a key, two certificates, a
# truncated CRL, a duplicate YAML key) are seeds on purpose.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ptrust=$(realpath "${1:-$top/build/helper/ptrust}")
[[ -x $ptrust ]] || { echo "fuzz-seeds: $ptrust: no ptrust binary (build it, or name one)" >&2; exit 1; }
out=$top/fuzz/corpus
tmp=$(mktemp -d /tmp/ptrust-seeds-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# PKI: P-256 root CA -> intermediate -> leaf, a CRL of the intermediate revoking nothing.
ossl() { openssl "$@" 2>/dev/null; }
ossl ecparam -name prime256v1 -genkey -noout -out root.key
ossl req -x509 -new -key root.key -subj "/CN=Seed Root" -days 3650 -out root.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl ecparam -name prime256v1 -genkey -noout -out inter.key
ossl req -new -key inter.key -subj "/CN=Seed Inter" -out inter.csr
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' >ca.ext
ossl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -extfile ca.ext -out inter.pem
ossl ecparam -name prime256v1 -genkey -noout -out leaf.key
ossl req -new -key leaf.key -subj "/CN=seed.example" -out leaf.csr
printf 'subjectAltName=DNS:seed.example\n' >leaf.ext
ossl x509 -req -in leaf.csr -CA inter.pem -CAkey inter.key -CAcreateserial -days 365 -extfile leaf.ext -out leaf.pem
mkdir -p ca/newcerts && : >ca/index.txt && echo 01 >ca/crlnumber
cat >ca.cnf <<CNF
[ca]
default_ca = d
[d]
database = $tmp/ca/index.txt
crlnumber = $tmp/ca/crlnumber
default_md = sha256
default_crl_days = 30
CNF
ossl ca -config ca.cnf -gencrl -keyfile inter.key -cert inter.pem -out inter.crl

rm -rf "$out"
mkdir -p "$out"/{cert,crl,config,exchange,db,provider,serve,fleet}
c=$out/cert
cp root.pem "$c/ca.pem"; cp leaf.pem "$c/leaf.pem"
ossl x509 -in root.pem -outform DER -out "$c/ca.der"
cat root.pem inter.pem >"$c/bundle.pem"          # two certificates: refused by parse, a bundle
cat leaf.pem leaf.key >"$c/with-key.pem"          # PRIVATE_KEY_NOT_ALLOWED
head -c 200 root.pem >"$c/truncated.pem"
c=$out/crl
cp inter.crl "$c/crl.pem"
ossl crl -in inter.crl -outform DER -out "$c/crl.der"
head -c 150 inter.crl >"$c/truncated.pem"

c=$out/config
cp "$top/config/ptrust.yaml" "$c/sample.yaml"
# Every commented section of the sample, uncommented, plus the cluster section.
sed -n '/^purposes:/,$p' "$top/config/ptrust.yaml" | sed -e '/^# [a-z-]*:\( \|$\)/s/^# //' -e '/^#   /s/^# //' -e '/^#/d' >"$c/all-sections.yaml"
printf 'cluster:\n  name: pool1\n  nodes: [host1, host2]\n' >>"$c/all-sections.yaml"
printf 'purposes:\n  licensing: {crl-policy: require, crl-scope: leaf, pin-match: spki, verify-cache-seconds: 0}\n  peer: {report-only: true, enforce-pin-validity: false, allow-expired-crl: true}\nroot: /srv/ptrust\n' >"$c/policies.yaml"
# The duplicate-key case (a repeated `services:` once reached yaml-cpp's exception).
printf 'purposes:\n  licensing: {}\nstunnel:\n  - name: t\n    config: /etc/s.conf\n    pidfile: /run/s.pid\n    services: []\n    services: []\n' >"$c/duplicate-key.yaml"
# The repeated `services:` whose undeclared purpose was looked up in the first list (fixed).
printf 'purposes:\n  licensing: {}\nstunnel:\n  - name: t\n    config: /etc/s.conf\n    pidfile: /run/s.pid\n    services:\n      - {name: a, purpose: licensing, accept: 1, connect: x:1, check-host: x}\n    services:\n      - {name: b, purpose: nope, accept: 2, connect: x:1, check-host: x}\n' >"$c/duplicate-services.yaml"

# A real export document and database, from the ptrust command on a scratch root.
root=$tmp/root
mkdir -p "$root/etc/ptrust"
printf 'purposes:\n  licensing: {}\n  ldaps: {crl-policy: require}\n  peer: {}\n' >"$root/etc/ptrust/ptrust.yaml"
P() { "$ptrust" --root "$root" "$@" >/dev/null 2>err || { cat err >&2; return 1; }; }
P install root.pem --ca --purpose licensing
P install inter.pem --ca
P install leaf.pem --pinned --purpose peer
P crl install inter.crl --name inter.crl --issuer inter.pem --purpose licensing
P legacy install legacy.pem root.pem
"$ptrust" --root "$root" export "$out/exchange/export.json"
echo '{"version": 1}' >"$out/exchange/empty.json"
cp "$root/var/lib/ptrust/ptrust.db" "$out/db/ptrust.db"  # db_fuzz: an SQLite input is loaded as ptrust.db
echo '{"version":1,"certs":[],"crls":[],"legacy":[],"pool":[]}' >"$out/db/empty.json"

# provider_fuzz: byte 0 picks the file that holds the rest (provider_fuzz.cc: kFiles),
# then "URI\n" then the file's bytes.
p=$out/provider
seed() { { printf "\\x$(printf %02x "$1")%s\n" "$2"; cat "${3:-/dev/null}"; } >"$p/$4"; }
seed 255 licensing '' uri-licensing
seed 255 'ptrust://general' '' uri-general
seed 0 licensing "$root/etc/trusted-certs/ca-bundle-licensing.pem" ca-bundle
seed 1 peer "$root/etc/trusted-certs/pinned-bundle-peer.pem" pinned-bundle
seed 2 ldaps "$root/etc/trusted-certs/ca-bundle-general.pem" general-bundle
seed 3 licensing "$root/etc/stunnel/crls/inter.crl" crl
seed 4 licensing "$root/var/lib/ptrust/crl-scope.json" crl-scope
seed 5 licensing "$root/etc/ptrust/ptrust.yaml" config

s=$out/serve
printf '{"id":1,"method":"status"}' >"$s/status"
printf '{"id":"a","method":"resolve","params":{"purpose":"licensing"}}' >"$s/resolve"
printf '{"id":[1,{"x":null}],"method":"status","params":{"purpose":"ldaps","text":true}}' >"$s/nested"
printf '{"method":"alerts","params":null}' >"$s/alerts"
printf '[1,2,3]' >"$s/array"

# fleet_fuzz: the first byte picks the parser (0 range, 1 host listing, 2 txn, 3 put, 4 watch,
# 5 host report, 6 base64, 7 URLs); the answers as etcd 3.4's gateway writes them.
f=$out/fleet
k=$(printf /ptrust/fleets/f1/desired | base64 -w0)
h=$(printf /ptrust/fleets/f1/hosts/01234567-89ab-cdef-0123-456789abcdef | base64 -w0)
report='{"host":"01234567-89ab-cdef-0123-456789abcdef","applied_revision":4,"applied_at":1700000000,"seen_revision":5,"generation":8,"health":"rejected","error":"IMPORT_INVALID: x","updated_at":1700000001}'
printf '\000{"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"},"kvs":[{"key":"%s","create_revision":"2","mod_revision":"7","version":"3","value":"%s"}],"count":"1"}' \
  "$k" "$(base64 -w0 <"$out/exchange/export.json")" >"$f/range"
printf '\001{"header":{"revision":"9"},"kvs":[{"key":"%s","create_revision":"2","mod_revision":"8","version":"1","value":"%s"}],"count":"1"}' \
  "$h" "$(printf '%s' "$report" | base64 -w0)" >"$f/hosts"
printf '\002{"header":{"revision":"4"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"4"}}}]}' >"$f/txn"
printf '\003{"header":{"revision":"5"}}' >"$f/put"
printf '\004{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"%s","create_revision":"2","mod_revision":"9","version":"2","value":"eA=="}},{"type":"DELETE","kv":{"key":"%s","mod_revision":"10"}}]}}' "$k" "$k" >"$f/watch"
printf '\004{"result":{"header":{"revision":"20"},"canceled":true,"compact_revision":"15"}}' >"$f/compacted"
printf '\004{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}' >"$f/watch-error"
printf '\005%s' "$report" >"$f/report"
printf '\006Zm9vYg==' >"$f/base64"
printf '\007http://[::1]:2379' >"$f/url"
printf '\007etcd://127.0.0.1:2379/pool-1' >"$f/follow"
echo "fuzz-seeds: $(find "$out" -type f | wc -l) seeds, $(du -sk "$out" | cut -f1) KiB in ${out#$top/}/"
