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
#   c2. The same with the user service hung instead (it answers after 10 s)
#      and 200 ms per lookup attempt.
#   d. Fail fast: the user service hung and the breaker open, POST /orders
#      for a user the order service has never seen (no copy to fall back
#      on: a 503 at once), beside GET /users/1 on a healthy user service,
#      at 16 connections only.
#
# Both variants of a scenario run side by side on their own ports, and wrk
# alternates between them ROUNDS times (A B A B ...), so a slow moment of a
# shared machine hits both; the table shows each variant's median round and
# the median of the paired ratios.
#
# Usage: scripts/load.sh [--install] [-h|--help]
#        (DURATION=5s ROUNDS=3 CONNS="1 16 64" DB_SYNC=full BASE_PORT=4100
#         SCENARIOS="a b c c2 d" DEMO_BIN=<a demo-services binary>
#         SERVER_CPUS=0 WRK_CPUS=1 WRK_THREADS=1)
# Needs wrk and curl; when one is missing it says so and stops, unless
# --install is given, which installs them with apt-get (sudo when not root).
# Prints Markdown tables and writes them to target/load/results.md. Services
# log at `error` only, so the figures measure the stack and not the terminal.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/load.sh [--install] [-h|--help]

Drives the demo services with wrk on loopback (ports BASE_PORT and up):
the user service's stack against the bare handler, the order flow with and
without the layers, and orders while the user service is stopped or hung.
Takes several minutes; prints Markdown tables and writes them to
target/load/results.md.

  --install   install missing tools (wrk, curl) with apt-get (sudo when not root)
  -h, --help  this help

Environment: DURATION (5s) ROUNDS (3) CONNS ("1 16 64") DB_SYNC (full)
             SCENARIOS ("a b c c2 d": which to run)
             BASE_PORT (4100)
             SERVER_CPUS, WRK_CPUS (CPU lists for taskset: the services on
                       some cores, wrk on others, e.g. 0 and 1, so the load
                       generator does not take the services' cores)
             WRK_THREADS (wrk's threads; default 2, or 1 at 1 connection)
             DEMO_BIN (a demo-services binary to drive instead of building
                       this checkout's, e.g. an earlier commit's, to compare
                       two builds with the same command)
USAGE
}

INSTALL=0
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --install) INSTALL=1 ;;
    *) echo "scripts/load.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"1 16 64"}
DB_SYNC=${DB_SYNC:-full}
BASE_PORT=${BASE_PORT:-4100}
OUT_DIR="$ROOT/target/load"
export LOAD_DIR="$ROOT/scripts/load"
export RUST_LOG=${RUST_LOG:-error}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$INSTALL" -eq 0 ]; then
    echo "scripts/load.sh: missing ${missing[*]}; install them, or run scripts/load.sh --install to install them with apt-get" >&2
    exit 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${DEMO_BIN:-}" ]; then
  BIN=$(cd "$(dirname "$DEMO_BIN")" && pwd)/$(basename "$DEMO_BIN")
  [ -x "$BIN" ] || { echo "scripts/load.sh: DEMO_BIN=$DEMO_BIN is not an executable" >&2; exit 2; }
else
  cargo build --release -q -p demo-services
  BIN="$ROOT/target/release/demo-services"
fi
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start KEY SERVICE PORT ARGS...: starts a service, remembers its pid under
# KEY, and waits for its /health.
declare -A PID
start() {
  local key=$1 name=$2 port=$3
  shift 3
  ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BIN" "$name" --listen "127.0.0.1:$port" --db-sync "$DB_SYNC" "$@" >>"$WORK/services.log" 2>&1 &
  PIDS+=($!)
  PID[$key]=$!
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start; the services' log:" >&2
  cat "$WORK/services.log" >&2
  exit 1
}

stop() {
  for key in "$@"; do
    kill "${PID[$key]}" 2>/dev/null || true
    wait "${PID[$key]}" 2>/dev/null || true
  done
}

token() { "$BIN" token --service api-gateway --audience "$1" --ttl 1h; }
data() { mkdir -p "$WORK/$1" && echo "$WORK/$1"; }

# trio KEY PORT "ARGS" ["ORDER ARGS"] ["USER ARGS"]: user, notification and
# order services on PORT, PORT+1 (order) and PORT+2, sharing one data
# directory; ARGS go to all three, the others to one service.
trio() {
  local key=$1 port=$2 dir
  local -a common order_args user_args
  read -r -a common <<<"${3:-}"
  read -r -a order_args <<<"${4:-}"
  read -r -a user_args <<<"${5:-}"
  dir=$(data "$key")
  start "$key-user" user "$port" --data-dir "$dir" "${common[@]}" "${user_args[@]}"
  start "$key-note" notification "$((port + 2))" --data-dir "$dir" "${common[@]}"
  start "$key-order" order "$((port + 1))" --data-dir "$dir" "${common[@]}" "${order_args[@]}" \
    --user-url "http://127.0.0.1:$port" --notification-url "http://127.0.0.1:$((port + 2))"
}

# wrk_once URL SCRIPT TOKEN CONNS: prints "rps p50 p95 p99 non2xx errors".
wrk_once() {
  local c=$4 t
  t=${WRK_THREADS:-$(($4 < 2 ? $4 : 2))}
  TOKEN=$3 ${WRK_CPUS:+taskset -c "$WRK_CPUS"} wrk -t"$t" -c"$c" -d"$DURATION" -s "$LOAD_DIR/$2" "$1" \
    | awk '/^RESULT/ { print $2, $3, $4, $5, $6, $7 }'
}

ROWS=()
RATIOS=()

# compare SCENARIO NAME_A URL_A TOKEN_A NAME_B URL_B TOKEN_B SCRIPT [SCRIPT_B]
# (SCRIPT_B, when the two variants send different requests)
compare() {
  local scenario=$1 name_a=$2 url_a=$3 tok_a=$4 name_b=$5 url_b=$6 tok_b=$7 script=$8
  local script_b=${9:-$8}
  for c in ${SCENARIO_CONNS:-$CONNS}; do
    local a_runs=() b_runs=() ratios=()
    for _ in $(seq 1 "$ROUNDS"); do
      local ra rb
      ra=$(wrk_once "$url_a" "$script" "$tok_a" "$c")
      rb=$(wrk_once "$url_b" "$script_b" "$tok_b" "$c")
      [ -n "$ra" ] && [ -n "$rb" ] || { echo "wrk printed no result ($scenario, c=$c)" >&2; exit 1; }
      a_runs+=("$ra")
      b_runs+=("$rb")
      ratios+=("$(awk -v x="${ra%% *}" -v y="${rb%% *}" 'BEGIN { print x / y }')")
      echo "  $scenario c=$c: $name_a ${ra%% *} req/s, $name_b ${rb%% *} req/s" >&2
    done
    for variant in a b; do
      local name runs
      if [ $variant = a ]; then name=$name_a; runs=("${a_runs[@]}"); else name=$name_b; runs=("${b_runs[@]}"); fi
      # The median round by requests/s.
      local median
      median=$(printf '%s\n' "${runs[@]}" | sort -n -k1,1 | awk -v n="${#runs[@]}" 'NR == int((n + 1) / 2)')
      ROWS+=("$(echo "$median" | awk -v s="$scenario" -v v="$name" -v c="$c" \
        '{ printf "| %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s |", s, v, c, $1, $2/1000, $3/1000, $4/1000, $5, $6 }')")
    done
    RATIOS+=("$(printf '%s\n' "${ratios[@]}" | sort -g | awk -v s="$scenario" -v a="$name_a" -v b="$name_b" -v c="$c" \
      -v n="${#ratios[@]}" '{ r[NR] = $1 } END { printf "| %s: %s / %s | %s | %.2f | %.2f – %.2f |", s, a, b, c, r[int((n + 1) / 2)], r[1], r[n] }')")
  done
}

# wanted SCENARIO: whether SCENARIOS (default: all) lists it.
wanted() { [[ " ${SCENARIOS:-a b c c2 d} " == *" $1 "* ]]; }

if wanted a; then
echo "a. GET /users/1: whole server stack vs the same handler without layers" >&2
start a-full user "$BASE_PORT" --data-dir "$(data a-full)"
start a-bare user "$((BASE_PORT + 3))" --data-dir "$(data a-bare)" --without-layers
compare a "full stack" "http://127.0.0.1:$BASE_PORT/users/1" "$(token user-service)" \
  "without layers" "http://127.0.0.1:$((BASE_PORT + 3))/users/1" "" get_user.lua
stop a-full a-bare
fi

if wanted b; then
echo "b. POST /orders: full flow vs without layers" >&2
trio b-full "$BASE_PORT"
trio b-bare "$((BASE_PORT + 3))" --without-layers
compare b "full flow" "http://127.0.0.1:$((BASE_PORT + 1))/orders" "$(token order-service)" \
  "without layers" "http://127.0.0.1:$((BASE_PORT + 4))/orders" "" post_order.lua
stop b-full-user b-full-note b-full-order b-bare-user b-bare-note b-bare-order
fi

ORDER_TOKEN=$(token order-service)
body='{"userId": 1, "items": [{"productId": "p-1", "quantity": 1, "unitPrice": 5}]}'

if wanted c; then
echo "c. user service stopped: POST /orders with the breaker open vs no breaker, no retry" >&2
trio c-open "$BASE_PORT"
trio c-none "$((BASE_PORT + 3))" "" "--no-breaker --retry-max 0"
for port in $((BASE_PORT + 1)) $((BASE_PORT + 4)); do
  # One order while the user service is up, so the order service keeps a copy.
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $ORDER_TOKEN" \
    -H 'Content-Type: application/json' -d "$body"
done
stop c-open-user c-none-user
# Open the breaker: ten calls at 100 % failures.
for _ in $(seq 1 12); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$((BASE_PORT + 1))/orders" \
    -H "Authorization: Bearer $ORDER_TOKEN" -H 'Content-Type: application/json' -d "$body"
done
curl -s "http://127.0.0.1:$((BASE_PORT + 1))/health" | grep -q '"user-service":{[^}]*"circuit":"open"' \
  || { echo "the breaker did not open" >&2; exit 1; }
compare c "breaker open" "http://127.0.0.1:$((BASE_PORT + 1))/orders" "$ORDER_TOKEN" \
  "no breaker, no retry" "http://127.0.0.1:$((BASE_PORT + 4))/orders" "$ORDER_TOKEN" post_order.lua
stop c-open-order c-open-note c-none-order c-none-note
fi

if wanted c2; then
echo "c2. user service hung (answers after 10 s), 200 ms per attempt: breaker open vs no breaker, no retry" >&2
trio c2-open "$BASE_PORT" "" "--timeout-get 200ms"
trio c2-none "$((BASE_PORT + 3))" "" "--timeout-get 200ms --no-breaker --retry-max 0"
for port in $((BASE_PORT + 1)) $((BASE_PORT + 4)); do
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $ORDER_TOKEN" \
    -H 'Content-Type: application/json' -d "$body"
done
stop c2-open-user c2-none-user
start c2-open-user user "$BASE_PORT" --data-dir "$WORK/c2-open" --fault-latency 10s
start c2-none-user user "$((BASE_PORT + 3))" --data-dir "$WORK/c2-none" --fault-latency 10s
# Open the breaker: ten orders at once, each lookup timing out.
for _ in $(seq 1 12); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$((BASE_PORT + 1))/orders" \
    -H "Authorization: Bearer $ORDER_TOKEN" -H 'Content-Type: application/json' -d "$body" &
done
wait_curls=$(jobs -p | wc -l)
sleep 3
curl -s "http://127.0.0.1:$((BASE_PORT + 1))/health" | grep -q '"user-service":{[^}]*"circuit":"open"' \
  || { echo "the breaker did not open ($wait_curls orders sent)" >&2; exit 1; }
compare c2 "breaker open" "http://127.0.0.1:$((BASE_PORT + 1))/orders" "$ORDER_TOKEN" \
  "no breaker, no retry" "http://127.0.0.1:$((BASE_PORT + 4))/orders" "$ORDER_TOKEN" post_order.lua
stop c2-open-user c2-open-order c2-open-note c2-none-user c2-none-order c2-none-note
fi

if wanted d; then
echo "d. fail fast: user service hung, breaker open, POST /orders for an unseen user (503) beside a healthy GET /users/1, 16 connections" >&2
trio d "$BASE_PORT" "" "--timeout-get 200ms"
stop d-user
start d-user user "$BASE_PORT" --data-dir "$WORK/d" --fault-latency 10s
start d-healthy user "$((BASE_PORT + 3))" --data-dir "$(data d-healthy)"
# Open the breaker: twelve orders at once, each lookup timing out.
for _ in $(seq 1 12); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$((BASE_PORT + 1))/orders" \
    -H "Authorization: Bearer $ORDER_TOKEN" -H 'Content-Type: application/json' -d "$body" &
done
sleep 3
curl -s "http://127.0.0.1:$((BASE_PORT + 1))/health" | grep -q '"user-service":{[^}]*"circuit":"open"' \
  || { echo "the breaker did not open" >&2; exit 1; }
# Past the open duration (30 s) one probe times out against the hung
# service and the breaker opens again; the other orders are refused as
# before.
SCENARIO_CONNS=16 compare d "orders, unseen user, breaker open (503)" \
  "http://127.0.0.1:$((BASE_PORT + 1))/orders" "$ORDER_TOKEN" \
  "GET /users/1, healthy user service" "http://127.0.0.1:$((BASE_PORT + 3))/users/1" "$(token user-service)" \
  post_order_unseen.lua get_user.lua
stop d-user d-order d-note d-healthy
fi

{
  echo "| scenario | variant | connections | requests/s | p50 ms | p95 ms | p99 ms | non-2xx | socket errors |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| requests/s ratio | connections | median | range |"
  echo "| --- | ---: | ---: | ---: |"
  printf '%s\n' "${RATIOS[@]}"
} | tee "$OUT_DIR/results.md"
echo "wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, $ROUNDS rounds of $DURATION per variant and connection count, db-sync $DB_SYNC; written to target/load/results.md" >&2
