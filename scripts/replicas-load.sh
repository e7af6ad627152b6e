#!/usr/bin/env bash
# POST /orders on loopback with wrk (https://github.com/wg/wrk), side by
# side in one run:
#
#   sqlite-1   one order replica on SQLite (the default)
#   pg-1       one order replica on PostgreSQL
#   pg-2       two order replicas on one PostgreSQL database, wrk's
#              connections spread over both (scripts/load/round_robin.lua)
#   pg-1-nats, pg-2-nats
#              the same with notifications through NATS JetStream
#              (--notify-via nats), when NATS=1
#
# Each variant has its own user and notification services, its own
# database (a SQLite directory, or a PostgreSQL schema made for the run),
# and runs ROUNDS times, the variants alternating (A B C A B C ...), so a
# slow moment of a shared machine hits all; the table shows each variant's
# median round by orders/s.
#
# Then the outbox's drain rate: with the notification service not yet
# started, orders pile up BACKLOG (10,000) pending notifications; the
# notification service starts and the time until /health shows none
# pending gives records per second, for sqlite-1, pg-1 and pg-2 (both
# replicas draining the one table).
#
# Usage: scripts/replicas-load.sh [--install] [-h|--help]
#        (DURATION=10s ROUNDS=3 CONNS=16 BACKLOG=10000 NATS=0 BASE_PORT=4300
#         DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
#         NATS_URL=nats://127.0.0.1:4222)
# Needs wrk, curl and psql, PostgreSQL at DATABASE_URL (and NATS at
# NATS_URL with NATS=1); --install installs wrk and curl with apt-get.
# Prints Markdown tables and writes them to target/load/replicas.md.
set -euo pipefail

usage() {
  sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'
}

INSTALL=0
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --install) INSTALL=1 ;;
    *) echo "scripts/replicas-load.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
BACKLOG=${BACKLOG:-10000}
NATS=${NATS:-0}
BASE_PORT=${BASE_PORT:-4300}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
OUT_DIR="$ROOT/target/load"
export LOAD_DIR="$ROOT/scripts/load"
export RUST_LOG=${RUST_LOG:-error}
export PGOPTIONS="--client-min-messages=warning"

missing=()
for tool in wrk curl; do command -v $tool >/dev/null 2>&1 || missing+=($tool); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$INSTALL" -eq 0 ]; then
    echo "scripts/replicas-load.sh: missing ${missing[*]}; install them, or run with --install" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v psql >/dev/null 2>&1 || { echo "scripts/replicas-load.sh: psql is needed to make the run's schemas" >&2; exit 1; }
psql -q "$DATABASE_URL" -c 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $DATABASE_URL" >&2; exit 1; }

cargo build --release -q -p demo-services
BIN="$ROOT/target/release/demo-services"
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The run's schemas (made in subshells, so found by name).
  for s in $(psql -qAt "$DATABASE_URL" -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'demo\_load\_%\_$$'" 2>/dev/null); do
    psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME PORT ARGS...: starts a service and waits for its /health.
start() {
  local name=$1 port=$2
  shift 2
  "$BIN" "$name" --listen "127.0.0.1:$port" "$@" >>"$WORK/services.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  [ -z "${CURRENT:-}" ] || VPIDS[$CURRENT]="${VPIDS[$CURRENT]:-} $LAST_PID"
  for _ in $(seq 1 150); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start on $port; the services' log:" >&2
  tail -50 "$WORK/services.log" >&2
  exit 1
}

# database VARIANT: the storage flags of a variant (a fresh schema for pg-*).
database() {
  case "$1" in
    *sqlite-*) mkdir -p "$WORK/$1" && echo "--data-dir $WORK/$1" ;;
    *)
      local schema="demo_load_${1//-/_}_$$"
      psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
      echo "--database-url $DATABASE_URL?options[search_path]=$schema"
      ;;
  esac
}

# delivery VARIANT: the notification flags of a variant.
delivery() {
  case "$1" in
    *-nats)
      # Fixed names: a later run reuses the stream (bounded by its own
      # limits, 7 days and 256 MiB) rather than leave one more behind.
      local name="LOAD_${1//-/_}"
      echo "--notify-via nats --nats-url $NATS_URL --nats-stream ${name^^} --nats-subject load.${1//-/_} --nats-consumer ${name,,}"
      ;;
    *) echo "" ;;
  esac
}

# variant NAME PORT [notification? yes|no]: user at PORT, notification at
# PORT+2, order replicas at PORT+1 and (for *-2*) PORT+11; sets TARGETS_<NAME>.
declare -A TARGETS DBFLAGS DLFLAGS VPIDS
variant() {
  local name=$1 port=$2 with_note=${3:-yes} db dl replicas=1
  # The database is made once per variant and kept for its later rounds.
  [ -n "${DBFLAGS[$name]:-}" ] || DBFLAGS[$name]=$(database "$name")
  [ -n "${DLFLAGS[$name]+set}" ] || DLFLAGS[$name]=$(delivery "$name")
  db=${DBFLAGS[$name]}
  dl=${DLFLAGS[$name]}
  case "$name" in *-2*) replicas=2 ;; esac
  VPIDS[$name]=""
  # shellcheck disable=SC2086
  start user "$port" $db
  if [ "$with_note" = yes ]; then
    # shellcheck disable=SC2086
    start notification "$((port + 2))" $db $dl
  fi
  local targets=""
  for i in $(seq 1 $replicas); do
    local p=$((port + 1 + 10 * (i - 1)))
    # shellcheck disable=SC2086
    start order "$p" $db $dl --user-url "http://127.0.0.1:$port" \
      --notification-url "http://127.0.0.1:$((port + 2))" \
      --breaker-open-duration 1s --outbox-backoff-cap 500ms
    targets="$targets 127.0.0.1:$p"
  done
  TARGETS[$name]=${targets# }
}

# stop_variant NAME: stops the services of a variant (SIGTERM, waited for),
# so only the variant measured holds database connections.
stop_variant() {
  local pid
  for pid in ${VPIDS[$1]}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${VPIDS[$1]}; do wait "$pid" 2>/dev/null || true; done
  VPIDS[$1]=""
}

ORDER_TOKEN=$("$BIN" token --service api-gateway --audience order-service --ttl 1h)

# wrk_once VARIANT: prints "rps p50 p95 p99 non2xx errors".
wrk_once() {
  local targets=${TARGETS[$1]} first t
  first=${targets%% *}
  t=$((CONNS < 2 ? CONNS : 2))
  TOKEN=$ORDER_TOKEN TARGETS=$targets wrk -t"$t" -c"$CONNS" -d"$DURATION" \
    -s "$LOAD_DIR/post_order_rr.lua" "http://$first/orders" \
    | awk '/^RESULT/ { print $2, $3, $4, $5, $6, $7 }'
}

VARIANTS=(sqlite-1 pg-1 pg-2)
[ "$NATS" = 1 ] && VARIANTS+=(pg-1-nats pg-2-nats)

echo "POST /orders at $CONNS connections, $ROUNDS rounds of $DURATION: ${VARIANTS[*]}" >&2
# Each variant's services run only while it is measured: started, loaded,
# stopped (a database's connection limit is shared by all of them).
port=$BASE_PORT
declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    CURRENT=$v variant "$v" "$port"
    r=$(wrk_once "$v")
    stop_variant "$v"
    [ -n "$r" ] || { echo "wrk printed no result ($v)" >&2; exit 1; }
    RUNS[$v]="${RUNS[$v]:-}$r"$'\n'
    echo "  round $round $v: ${r%% *} orders/s" >&2
  done
done

table="| variant | orders/s | p50 ms | p95 ms | p99 ms | non-2xx | socket errors |
| --- | --- | --- | --- | --- | --- | --- |"
for v in "${VARIANTS[@]}"; do
  row=$(printf '%s' "${RUNS[$v]}" | sed '/^$/d' | sort -n -k1,1 | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
  table="$table
$(echo "$row" | awk -v v="$v" '{ printf "| %s | %.0f | %.2f | %.2f | %.2f | %s | %s |", v, $1, $2/1000, $3/1000, $4/1000, $5, $6 }')"
done

# pending PORT: the order service's outbox.pending.
pending() {
  local n
  n=$(curl -sf "http://127.0.0.1:$1/health" | sed -n 's/.*"outbox":{"pending":\([0-9]*\)}.*/\1/p')
  echo "${n:-0}"
}

drain="| variant | backlog | drained in s | records/s |
| --- | --- | --- | --- |"
DRAIN_VARIANTS=(sqlite-1 pg-1 pg-2)
echo "outbox drain after a backlog of $BACKLOG: ${DRAIN_VARIANTS[*]}" >&2
for v in "${DRAIN_VARIANTS[@]}"; do
  name="drain-$v"
  CURRENT=$name variant "$name" "$port" no
  first=${TARGETS[$name]%% *}
  first_port=${first##*:}
  while [ "$(pending "$first_port")" -lt "$BACKLOG" ]; do
    TOKEN=$ORDER_TOKEN TARGETS=${TARGETS[$name]} wrk -t2 -c16 -d2s \
      -s "$LOAD_DIR/post_order_rr.lua" "http://$first/orders" >/dev/null
  done
  backlog=$(pending "$first_port")
  began=$(date +%s.%N)
  # shellcheck disable=SC2086
  CURRENT=$name start notification "$((port + 2))" ${DBFLAGS[$name]} ${DLFLAGS[$name]}
  while [ "$(pending "$first_port")" -gt 0 ]; do sleep 0.05; done
  ended=$(date +%s.%N)
  row=$(awk -v v="$v" -v b="$backlog" -v s="$began" -v e="$ended" \
    'BEGIN { printf "| %s | %d | %.2f | %.0f |", v, b, e - s, b / (e - s) }')
  echo "  $row" >&2
  drain="$drain
$row"
  stop_variant "$name"
done

{
  echo "### POST /orders, $CONNS connections, median of $ROUNDS rounds of $DURATION"
  echo
  echo "$table"
  echo
  echo "### Outbox drain after a backlog (the notification service started last)"
  echo
  echo "$drain"
} | tee "$OUT_DIR/replicas.md"
