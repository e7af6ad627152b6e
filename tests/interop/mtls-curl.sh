#!/usr/bin/env bash
# Mutual TLS checked with a TLS client this project did not write: curl
# (with OpenSSL) calls the user service started with `--tls-dir`, with the
# certificates `demo-services certs` wrote. Run by .ci/run; needs curl.
#
#   tests/interop/mtls-curl.sh
#
# Checks: with the api-gateway's certificate, /health answers 200 and
# GET /users/1 with a token answers the user; without a client
# certificate, with a certificate of another CA of the same name, and with
# TLS 1.1 at most, the handshake fails; plain HTTP gets no HTTP answer.
# Then `all --tls-dir`: POST /orders with the gateway's certificate and
# the banner's token answers 201 with the user fetched over mutual TLS.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -q -p demo-services
BIN=target/debug/demo-services
WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "mtls-curl: FAIL: $*" >&2
  [ -f "$WORK/user.log" ] && { echo "--- the service's log:" >&2; cat "$WORK/user.log" >&2; }
  exit 1
}

export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$BIN" certs --out "$WORK/certs" >/dev/null
"$BIN" certs --out "$WORK/other" >/dev/null # another CA, the same trust domain and name

RUST_LOG=info "$BIN" user --listen 127.0.0.1:0 --data-dir "$WORK/data" --tls-dir "$WORK/certs" \
  >"$WORK/user.log" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(grep -o 'listening.*127\.0\.0\.1:[0-9]*' "$WORK/user.log" 2>/dev/null | grep -o '[0-9]*$' | head -1 || true)
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || fail "the user service exited"
  sleep 0.1
done
[ -n "$PORT" ] || fail "the user service did not say where it listens"
URL="https://localhost:$PORT"
C="$WORK/certs"
TOKEN=$("$BIN" token --service api-gateway --audience user-service)

# curl exit codes: 0 ok; 35 TLS handshake failed; 56 receive failure (a
# TLS 1.3 server's alert for a missing certificate arrives after curl's
# side of the handshake is done).
health=$(curl -sS --cacert "$C/ca.pem" --cert "$C/api-gateway.pem" --key "$C/api-gateway.key.pem" \
  -w ' %{http_code}' "$URL/health") || fail "/health with a client certificate: curl exit $?"
[[ "$health" == *'"status":"ok"'*' 200' ]] || fail "/health answered: $health"
echo "ok   /health with the api-gateway's certificate: $health"

user=$(curl -sS --cacert "$C/ca.pem" --cert "$C/api-gateway.pem" --key "$C/api-gateway.key.pem" \
  -H "authorization: Bearer $TOKEN" -w ' %{http_code}' "$URL/users/1") || fail "/users/1: curl exit $?"
[[ "$user" == *'"name":"Ada Lovelace"'*' 200' ]] || fail "/users/1 answered: $user"
echo "ok   GET /users/1 with a certificate and a token: 200"

refused() {
  local what=$1
  shift
  if out=$(curl -sS -o /dev/null -w '%{http_code}' "$@" 2>&1); then
    fail "$what was answered: $out"
  fi
  echo "ok   $what refused: $(echo "$out" | head -1)"
}
refused "no client certificate" --cacert "$C/ca.pem" "$URL/health"
refused "a certificate of another CA of the same name" --cacert "$C/ca.pem" \
  --cert "$WORK/other/api-gateway.pem" --key "$WORK/other/api-gateway.key.pem" "$URL/health"
refused "TLS 1.1 at most" --cacert "$C/ca.pem" --cert "$C/api-gateway.pem" \
  --key "$C/api-gateway.key.pem" --tlsv1.0 --tls-max 1.1 "$URL/health"

plain=$(curl -s --max-time 5 "http://localhost:$PORT/health" 2>&1 || true)
[[ "$plain" != *'"status"'* ]] || fail "plain HTTP was answered: $plain"
echo "ok   plain HTTP on the TLS port gets no HTTP answer"

# The README's walkthrough: `all --tls-dir`, where the order service calls
# the other two over mutual TLS; curl, as the gateway, creates an order
# with the banner's token.
kill "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
"$BIN" all --listen 127.0.0.1:0 --data-dir "$WORK/all-data" --tls-dir "$WORK/certs" \
  >"$WORK/all.out" 2>"$WORK/user.log" &
PID=$!
ORDERS=""
for _ in $(seq 1 100); do
  ORDERS=$(grep -o 'order-service  *https://localhost:[0-9]*' "$WORK/all.out" 2>/dev/null | grep -o 'https://.*' || true)
  [ -n "$ORDERS" ] && grep -q '^  TOKEN=' "$WORK/all.out" && break
  kill -0 "$PID" 2>/dev/null || fail "all --tls-dir exited"
  sleep 0.1
done
[ -n "$ORDERS" ] || fail "all --tls-dir did not print the order service's https URL"
ORDER_TOKEN=$(sed -n 's/^  TOKEN=//p' "$WORK/all.out")
order=$(curl -sS --cacert "$C/ca.pem" --cert "$C/api-gateway.pem" --key "$C/api-gateway.key.pem" \
  -X POST -H "Authorization: Bearer $ORDER_TOKEN" -H 'Content-Type: application/json' \
  -d '{"userId": 1, "items": [{"productId": "p-1", "quantity": 2, "unitPrice": 9.99}]}' \
  -w ' %{http_code}' "$ORDERS/orders") || fail "POST /orders: curl exit $?"
[[ "$order" == *'"source":"live"'*' 201' ]] || fail "POST /orders answered: $order"
echo "ok   all --tls-dir: POST /orders with the gateway's certificate: 201, the user fetched over mutual TLS"
echo "mtls-curl: all checks passed"
