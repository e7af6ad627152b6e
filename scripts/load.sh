#!/usr/bin/env bash
# End-to-end load on loopback with wrk (https://github.com/wg/wrk), three
# scenarios, each compared within one run at 1, 16 and 64 connections:
#
#   a. GET /users/1 on the user service: its whole server stack (JWT
#      verification with the token cache, deadline, metrics, tracing, request
#      ids) against the same handler with --without-layers.
#   b. POST /orders through the full flow (user lookup, order + outbox in
#      SQLite, notification delivery) against the same flow with
#      --without-layers (no auth, tracing, metrics, deadline, retry, breaker,
#      timeout on either side).
#   c. The user service stopped: POST /orders (served from the kept copy of
#      the user) with the breaker open against no breaker and no retry
#      (per-attempt timeout only).
#
# Usage: scripts/load.sh            (DURATION=10s CONNS="1 16 64" by default)
# Installs wrk with apt-get when it is missing. Prints a Markdown table and
# writes it to target/load/results.md. Services log at `error` only, so the
# figures measure the stack and not the terminal.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
CONNS=${CONNS:-"1 16 64"}
BASE_PORT=${BASE_PORT:-4100}
OUT_DIR="$ROOT/target/load"
export LOAD_DIR="$ROOT/scripts/load"
export RUST_LOG=${RUST_LOG:-error}

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found; installing it with apt-get" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

cargo build --release -q -p demo-services
BIN="$ROOT/target/release/demo-services"
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

USER_PORT=$BASE_PORT
ORDER_PORT=$((BASE_PORT + 1))
NOTE_PORT=$((BASE_PORT + 2))
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME PORT ARGS...: starts a service and waits for its /health.
start() {
  local name=$1 port=$2
  shift 2
  "$BIN" "$name" --listen "127.0.0.1:$port" "$@" >>"$WORK/services.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start; its log:" >&2
  cat "$WORK/services.log" >&2
  exit 1
}

stop() {
  local pid_var="PID_$1"
  kill "${!pid_var}" 2>/dev/null || true
  wait "${!pid_var}" 2>/dev/null || true
}

stop_all() { for s in user order notification; do stop "$s"; done; }

token() { "$BIN" token --service api-gateway --audience "$1" --ttl 1h; }

ROWS=()
declare -A RPS

# measure SCENARIO VARIANT URL SCRIPT
measure() {
  local scenario=$1 variant=$2 url=$3 script=$4
  for c in $CONNS; do
    local t=$((c < 2 ? c : 2))
    local line
    line=$(wrk -t"$t" -c"$c" -d"$DURATION" -s "$LOAD_DIR/$script" "$url" | grep '^RESULT' || true)
    if [ -z "$line" ]; then echo "wrk printed no result for $scenario/$variant/$c" >&2; exit 1; fi
    read -r _ rps p50 p95 p99 non2xx errors <<<"$line"
    RPS["$scenario/$variant/$c"]=$rps
    ROWS+=("$(awk -v s="$scenario" -v v="$variant" -v c="$c" -v r="$rps" -v a="$p50" -v b="$p95" \
      -v d="$p99" -v n="$non2xx" -v e="$errors" \
      'BEGIN { printf "| %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s |", s, v, c, r, a/1000, b/1000, d/1000, n, e }')")
    echo "  $scenario $variant c=$c: $rps req/s, p99 ${p99} µs, non-2xx $non2xx, errors $errors" >&2
  done
}

data() { mkdir -p "$WORK/$1" && echo "$WORK/$1"; }

echo "a. GET /users/1: whole server stack vs the same handler without layers" >&2
start user "$USER_PORT" --data-dir "$(data a1)"
TOKEN=$(token user-service) measure a "full stack" "http://127.0.0.1:$USER_PORT/users/1" get_user.lua
stop user
start user "$USER_PORT" --data-dir "$(data a2)" --without-layers
TOKEN="" measure a "without layers" "http://127.0.0.1:$USER_PORT/users/1" get_user.lua
stop user

echo "b. POST /orders: full flow vs without layers" >&2
dir=$(data b1)
start user "$USER_PORT" --data-dir "$dir"
start notification "$NOTE_PORT" --data-dir "$dir"
start order "$ORDER_PORT" --data-dir "$dir" \
  --user-url "http://127.0.0.1:$USER_PORT" --notification-url "http://127.0.0.1:$NOTE_PORT"
TOKEN=$(token order-service) measure b "full stack" "http://127.0.0.1:$ORDER_PORT/orders" post_order.lua
stop_all
dir=$(data b2)
start user "$USER_PORT" --data-dir "$dir" --without-layers
start notification "$NOTE_PORT" --data-dir "$dir" --without-layers
start order "$ORDER_PORT" --data-dir "$dir" --without-layers \
  --user-url "http://127.0.0.1:$USER_PORT" --notification-url "http://127.0.0.1:$NOTE_PORT"
TOKEN="" measure b "without layers" "http://127.0.0.1:$ORDER_PORT/orders" post_order.lua
stop_all

echo "c. user service stopped: POST /orders with the breaker open vs no breaker" >&2
dir=$(data c)
start user "$USER_PORT" --data-dir "$dir"
start notification "$NOTE_PORT" --data-dir "$dir"
start order "$ORDER_PORT" --data-dir "$dir" \
  --user-url "http://127.0.0.1:$USER_PORT" --notification-url "http://127.0.0.1:$NOTE_PORT"
ORDER_TOKEN=$(token order-service)
# One order while the user service is up, so the order service keeps a copy.
curl -sf -X POST "http://127.0.0.1:$ORDER_PORT/orders" -H "Authorization: Bearer $ORDER_TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"userId": 1, "items": [{"productId": "p-1", "quantity": 1, "unitPrice": 5}]}' >/dev/null
stop user
# Open the breaker (10 calls at 100 % failures), then measure.
for _ in $(seq 1 12); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$ORDER_PORT/orders" -H "Authorization: Bearer $ORDER_TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"userId": 1, "items": [{"productId": "p-1", "quantity": 1, "unitPrice": 5}]}'
done
curl -s "http://127.0.0.1:$ORDER_PORT/health" | grep -q '"user-service":{[^}]*"circuit":"open"' \
  || { echo "the breaker did not open" >&2; exit 1; }
TOKEN=$ORDER_TOKEN measure c "breaker open" "http://127.0.0.1:$ORDER_PORT/orders" post_order.lua
stop order
start order "$ORDER_PORT" --data-dir "$dir" --no-breaker --retry-max 0 \
  --user-url "http://127.0.0.1:$USER_PORT" --notification-url "http://127.0.0.1:$NOTE_PORT"
TOKEN=$ORDER_TOKEN measure c "no breaker, no retry" "http://127.0.0.1:$ORDER_PORT/orders" post_order.lua
stop_all

{
  echo "| scenario | variant | connections | requests/s | p50 ms | p95 ms | p99 ms | non-2xx | socket errors |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| ratio | connections | value |"
  echo "| --- | ---: | ---: |"
  for c in $CONNS; do
    awk -v c="$c" -v x="${RPS[a/full stack/$c]}" -v y="${RPS[a/without layers/$c]}" \
      'BEGIN { printf "| a: full stack / without layers | %s | %.2f |\n", c, x/y }'
  done
  for c in $CONNS; do
    awk -v c="$c" -v x="${RPS[b/full stack/$c]}" -v y="${RPS[b/without layers/$c]}" \
      'BEGIN { printf "| b: full flow / without layers | %s | %.2f |\n", c, x/y }'
  done
} | tee "$OUT_DIR/results.md"
echo "wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, duration $DURATION per row; written to target/load/results.md" >&2
