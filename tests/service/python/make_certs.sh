#!/bin/bash
# Test certificates (openssl, EC P-256, valid 2 days) in DIR: a CA (ca.pem/ca.key) that signs the
# public server's certificate (server.pem/.key: localhost, 127.0.0.1) and a client's
# (client.pem/.key); a second CA (ica.pem) for internal traffic that signs one certificate for
# the coordinator and the workers (internal.pem/.key: 127.0.0.1 and emserve-internal, both
# server and client use);
# and a rogue CA with its own client certificate (rogue.pem/.key), which nobody trusts.
#   make_certs.sh DIR
set -eu
D=$1
mkdir -p "$D"
cd "$D"
ca() { # ca NAME CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$1.key" -out "$1.pem" -subj "/CN=$2" 2>/dev/null
}
leaf() { # leaf NAME CN CA EXT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
        -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
ca ca emserve-test-ca
ca ica emserve-test-internal-ca
ca rogueca emserve-test-rogue-ca
SAN="subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf server localhost ca "$SAN
extendedKeyUsage=serverAuth"
leaf client emserve-test-client ca "extendedKeyUsage=clientAuth"
leaf internal emserve-internal ica "$SAN,DNS:emserve-internal
extendedKeyUsage=serverAuth,clientAuth"
leaf rogue emserve-rogue rogueca "$SAN
extendedKeyUsage=serverAuth,clientAuth"
chmod 600 ./*.key
