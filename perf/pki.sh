#!/usr/bin/env bash
# perf/pki.sh DIR — writes a small ECDSA P-256 PKI for the benchmarks into DIR (created if
# missing), with openssl only:
#
#   root-ca.pem / root-ca.key           Perf Root CA (self-signed)
#   intermediate.pem / intermediate.key Perf Intermediate (signed by the root)
#   server.pem, server.key              localhost + 127.0.0.1, signed by the intermediate
#   server-chain.pem                    server leaf + intermediate (what the servers present)
#   server-chain+key.pem                the same followed by the key (HAProxy's `crt`)
#   server-ca.pem                       the root (what clients trust)
#   client-ca-bundle.pem                root + intermediate (what the servers trust for clients)
#   client.pem, client.key              CN=perf.client, signed by the intermediate, followed by
#                                       the intermediate (as a client sends it)
#
# The client chain is leaf <- intermediate <- root, so a verify depth of 2 is required and
# sufficient. Certificates are valid for 10 years. Nothing here protects anything.
set -euo pipefail

dir=${1:?usage: perf/pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

days=3650
keygen() { openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$1"; }

cat > ext.cnf <<'CNF'
[ inter ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:perf.client.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

keygen root-ca.key
openssl req -new -x509 -key root-ca.key -sha256 -days "$days" -subj "/C=FI/O=Perf/CN=Perf Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out root-ca.pem

sign() { # sign NAME SUBJECT EXT ISSUER
  local name=$1 subj=$2 ext=$3 issuer=$4
  keygen "$name.key"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "0x$(openssl rand -hex 12)" \
    -sha256 -days "$days" -extfile ext.cnf -extensions "$ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

sign intermediate "/C=FI/O=Perf/CN=Perf Intermediate" inter root-ca
sign server "/C=FI/O=Perf/CN=localhost" server intermediate
sign client "/C=FI/O=Perf/CN=perf.client" client intermediate

cat server.pem intermediate.pem > server-chain.pem
cat server-chain.pem server.key > server-chain+key.pem
cp root-ca.pem server-ca.pem
cat root-ca.pem intermediate.pem > client-ca-bundle.pem
cat client.pem intermediate.pem > client.tmp && mv client.tmp client.pem
rm -f ext.cnf
chmod 644 ./*.pem
chmod 600 ./*.key server-chain+key.pem

openssl verify -CAfile root-ca.pem -untrusted intermediate.pem server.pem >/dev/null
openssl verify -CAfile client-ca-bundle.pem -untrusted intermediate.pem client.pem >/dev/null
echo "perf/pki.sh: PKI in $dir"
