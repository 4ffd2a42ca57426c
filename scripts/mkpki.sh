#!/usr/bin/env bash
# Generates a small demo PKI with the openssl command into DIR:
#   root-ca.pem/.key      a root CA
#   server.pem/.key       a leaf for licensing.example (and 127.0.0.1) issued by the root
#   appliance.pem/.key    a self-signed leaf for appliance.example (to pin)
#   other-ca.pem/.key     an unrelated CA; wrong-server.pem/.key a leaf it issued
#   revoked.pem/.key      a leaf for licensing.example issued by the root, then revoked
#   root-ca.crl           the root's CRL (revokes revoked.pem; valid 7 days)
set -euo pipefail
dir=${1:?usage: mkpki.sh DIR}
mkdir -p "$dir"; cd "$dir"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name cn
  ec "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 365 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name cn issuer san
  ec "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 90 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca root-ca "Demo Root CA"
ca other-ca "Other CA"
leaf server licensing.example root-ca "DNS:licensing.example,IP:127.0.0.1"
leaf wrong-server licensing.example other-ca "DNS:licensing.example,IP:127.0.0.1"
leaf revoked licensing.example root-ca "DNS:licensing.example,IP:127.0.0.1"
# A CRL from the root revoking revoked.pem (openssl ca keeps its state in a scratch dir).
st=$(mktemp -d); : > "$st/index.txt"; echo 01 > "$st/crlnumber"
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/index.txt\ncrlnumber=%s/crlnumber\ndefault_md=sha256\ndefault_crl_days=7\n' "$st" "$st" > "$st/ca.cnf"
openssl ca -config "$st/ca.cnf" -keyfile root-ca.key -cert root-ca.pem -revoke revoked.pem 2>/dev/null
openssl ca -config "$st/ca.cnf" -keyfile root-ca.key -cert root-ca.pem -gencrl -out root-ca.crl 2>/dev/null
rm -rf "$st"
ec appliance.key
openssl req -x509 -new -key appliance.key -out appliance.pem -days 365 -subj "/CN=appliance.example" \
  -addext basicConstraints=critical,CA:FALSE -addext subjectAltName=DNS:appliance.example 2>/dev/null
rm -f ./*.srl
ls
