#!/usr/bin/env bash
# Regenerates the JWT test vectors in t/unit/data/jwt/ with the openssl command
# line tool: fresh RSA-2048 and EC P-256 key pairs (only the public halves are
# kept), HS256/RS256/ES256 tokens signed with `openssl dgst`, and a few keys and
# files the key-loading tests reject. The generated files are committed, so the
# unit tests never need openssl at test time. Needs bash, openssl 3, xxd.
#
# Usage: t/unit/data/gen-jwt-vectors.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$here/jwt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
rm -f "$out"/*.jwt "$out"/*.pem "$out"/*.txt "$out"/*.secret

FAR=4102444800      # 2100-01-01T00:00:00Z
PAST=1000000000     # 2001-09-09
SECRET='unit-test-hs256-secret-0123456789abcdef'
printf '%s' "$SECRET" >"$out/hs256.secret"

# --- keys -------------------------------------------------------------------
genkey() {  # genkey NAME genpkey-args...
    local name=$1
    shift
    openssl genpkey "$@" -out "$tmp/$name.pem" 2>/dev/null
    openssl pkey -in "$tmp/$name.pem" -pubout -out "$out/$name-pub.pem"
}
genkey rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
genkey rsa-other -algorithm RSA -pkeyopt rsa_keygen_bits:2048
genkey rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
genkey ec -algorithm EC -pkeyopt ec_paramgen_curve:P-256
genkey ec-other -algorithm EC -pkeyopt ec_paramgen_curve:P-256
genkey ec-p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
genkey ed25519 -algorithm ED25519
# The same RSA key in PKCS#1 form ("BEGIN RSA PUBLIC KEY"), also accepted.
openssl pkey -in "$tmp/rsa.pem" -pubout -outform DER -out "$tmp/rsa-pub.der"
openssl rsa -pubin -inform DER -in "$tmp/rsa-pub.der" -RSAPublicKey_out \
    -out "$out/rsa-pkcs1-pub.pem" 2>/dev/null
printf 'this is not a PEM file\n' >"$out/not-a-pem.txt"
printf -- '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' >"$out/broken-pub.pem"

# --- signing ----------------------------------------------------------------
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
enc() { printf '%s' "$1" | b64url; }

# DER ECDSA-Sig-Value on stdin -> raw R||S (2 x 32 bytes) on stdout.
der_to_raw() {
    openssl asn1parse -inform DER | awk -F: '/INTEGER/ { print $NF }' |
        while read -r hex; do
            hex=$(printf '%s' "$hex" | sed 's/^0*//')
            printf '%064s' "$hex" | tr ' ' '0'
        done | xxd -r -p
}

sign() {  # sign ALG INPUT -> base64url signature
    local alg=$1 input=$2
    case $alg in
        hs256) printf '%s' "$input" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url ;;
        rs256) printf '%s' "$input" | openssl dgst -sha256 -sign "$tmp/rsa.pem" -binary | b64url ;;
        es256)
            printf '%s' "$input" | openssl dgst -sha256 -sign "$tmp/ec.pem" -binary >"$tmp/sig.der"
            der_to_raw <"$tmp/sig.der" >"$tmp/sig.raw"
            test "$(wc -c <"$tmp/sig.raw")" -eq 64
            b64url <"$tmp/sig.raw"
            ;;
        es256-der)
            printf '%s' "$input" | openssl dgst -sha256 -sign "$tmp/ec.pem" -binary | b64url ;;
        hs256-rsa-pem)  # HMAC keyed with the RSA public key file's bytes
            local hexkey
            hexkey=$(xxd -p "$out/rsa-pub.pem" | tr -d '\n')
            printf '%s' "$input" |
                openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | b64url
            ;;
        none) printf '' ;;
        *) echo "unknown alg $alg" >&2; exit 1 ;;
    esac
}

mk() {  # mk NAME SIGNER HEADER PAYLOAD
    local name=$1 signer=$2 header=$3 payload=$4 input
    input="$(enc "$header").$(enc "$payload")"
    printf '%s.%s\n' "$input" "$(sign "$signer" "$input")" >"$out/$name.jwt"
}

HS='{"alg":"HS256","typ":"JWT"}'
RS='{"alg":"RS256","typ":"JWT"}'
ES='{"alg":"ES256","typ":"JWT"}'
FULL='{"sub":"user-42","exp":'$FAR',"info":{"name":"Zoë", "tags":["a","b"]},'
FULL+='"channels":["room-1","team-*"]}'

mk hs256-valid hs256 "$HS" "$FULL"
mk rs256-valid rs256 "$RS" "$FULL"
mk es256-valid es256 "$ES" "$FULL"
mk es256-der-signature es256-der "$ES" "$FULL"
mk hs256-minimal hs256 "$HS" '{"exp":'$FAR'}'
mk hs256-expired hs256 "$HS" '{"sub":"user-42","exp":'$PAST'}'
mk rs256-expired rs256 "$RS" '{"sub":"user-42","exp":'$PAST'}'
mk hs256-no-exp hs256 "$HS" '{"sub":"user-42"}'
mk hs256-exp-string hs256 "$HS" '{"exp":"'$FAR'"}'
mk hs256-exp-fraction hs256 "$HS" '{"exp":'$FAR'.75}'
mk hs256-nbf-future hs256 "$HS" '{"exp":'$FAR',"nbf":4000000000}'
mk hs256-header-not-json hs256 'not json' '{"exp":'$FAR'}'
mk hs256-payload-not-json hs256 "$HS" 'hello'
mk hs256-payload-array hs256 "$HS" '[1,2]'
mk hs256-payload-duplicate-exp hs256 "$HS" '{"exp":1,"exp":'$FAR'}'
mk hs256-channels-empty hs256 "$HS" '{"exp":'$FAR',"channels":[]}'
mk hs256-channels-not-array hs256 "$HS" '{"exp":'$FAR',"channels":"room-1"}'
mk hs256-sub-number hs256 "$HS" '{"exp":'$FAR',"sub":42}'
mk hs256-info-string hs256 "$HS" '{"exp":'$FAR',"sub":"u","info":"line\nbreak \u00e9"}'
mk hs256-crit hs256 '{"alg":"HS256","crit":["b64"],"b64":false}' '{"exp":'$FAR'}'
mk hs256-no-alg hs256 '{"typ":"JWT"}' '{"exp":'$FAR'}'
mk none-alg none '{"alg":"none","typ":"JWT"}' "$FULL"
mk hs256-keyed-with-rsa-pem hs256-rsa-pem "$HS" "$FULL"

echo "wrote $(ls "$out" | wc -l) files to $out"
