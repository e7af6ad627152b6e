#!/usr/bin/env bash
# GetUser over gRPC against GET /users/{id} over REST, on loopback, through
# the same user service (one process, one listener, the same server stack:
# JWT verification with its token cache, deadline, metrics, tracing, request
# ids), at 1, 16 and 64 concurrent connections.
#
# One load tool for both sides, so that neither wins by its client:
# h2load (nghttp2), HTTP/2 prior knowledge for gRPC (a unary call is a POST
# of one length-prefixed protobuf message), `--h1` for REST. Each connection
# has one request in flight at a time (-m 1), as a wrk connection does. The
# two alternate ROUNDS times (A B A B ...), so a slow moment of the shared
# machine hits both; the table shows each side's median round, with p50 and
# p99 from h2load's per-request log.
#
# Usage: scripts/grpc-load.sh [--install] [-h|--help]
#        (DURATION=5 ROUNDS=3 CONNS="1 16 64" BASE_PORT=4200)
# Needs h2load (Debian/Ubuntu package nghttp2-client) and curl; --install
# installs them with apt-get (sudo when not root). Prints a Markdown table
# and writes it to target/load/grpc.md.
set -euo pipefail

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

INSTALL=0
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --install) INSTALL=1 ;;
    *) echo "scripts/grpc-load.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"1 16 64"}
BASE_PORT=${BASE_PORT:-4200}
OUT_DIR="$ROOT/target/load"
export RUST_LOG=${RUST_LOG:-error}

missing=()
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$INSTALL" -eq 0 ]; then
    echo "scripts/grpc-load.sh: missing ${missing[*]}; install, or run with --install (apt-get)" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -q -p demo-services
BIN="$ROOT/target/release/demo-services"
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" user --listen "127.0.0.1:$BASE_PORT" --data-dir "$WORK/data" >>"$WORK/service.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$BASE_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
TOKEN=$("$BIN" token --service api-gateway --audience user-service --ttl 1h)

# GetUserRequest { id: 1 } as a gRPC message: uncompressed flag, 4-byte
# big-endian length 2, then field 1 varint 1 (0x08 0x01).
printf '\x00\x00\x00\x00\x02\x08\x01' >"$WORK/get_user_1.bin"

# Both sides must succeed before anything is measured: a REST 200, and a
# gRPC answer whose grpc-status is 0 (h2load counts only HTTP statuses).
curl -sf -o /dev/null -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$BASE_PORT/users/1"
status=$(curl -s --http2-prior-knowledge -o /dev/null -D - -X POST \
  -H "authorization: Bearer $TOKEN" -H "content-type: application/grpc" -H "te: trailers" \
  --data-binary @"$WORK/get_user_1.bin" "http://127.0.0.1:$BASE_PORT/user.UserService/GetUser" \
  | tr -d '\r' | awk -F': ' 'tolower($1) == "grpc-status" { print $2 }')
[ "$status" = "0" ] || { echo "GetUser over gRPC did not answer grpc-status 0 (got '$status')" >&2; exit 1; }

# run SIDE CONNS: prints "rps p50_ms p99_ms failed".
run() {
  local side=$1 c=$2 log="$WORK/h2load.log" out
  rm -f "$log"
  local threads=$(($2 < 2 ? $2 : 2))
  if [ "$side" = grpc ]; then
    out=$(h2load -c "$c" -t "$threads" -m 1 -D "$DURATION" --warm-up-time=1 --log-file="$log" \
      -d "$WORK/get_user_1.bin" -H "authorization: Bearer $TOKEN" \
      -H "content-type: application/grpc" -H "te: trailers" \
      "http://127.0.0.1:$BASE_PORT/user.UserService/GetUser")
  else
    out=$(h2load --h1 -c "$c" -t "$threads" -m 1 -D "$DURATION" --warm-up-time=1 --log-file="$log" \
      -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$BASE_PORT/users/1")
  fi
  local rps
  rps=$(echo "$out" | awk '/^finished in/ { gsub(",", "", $4); print $4 }')
  sort -n -k3,3 "$log" | awk -v rps="$rps" '
    { t[NR] = $3; if ($2 < 200 || $2 >= 300) failed++ }
    END {
      if (NR == 0) { print rps, 0, 0, 0; exit }
      p50 = t[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
      p99 = t[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
      printf "%s %.3f %.3f %d\n", rps, p50 / 1000, p99 / 1000, failed + 0
    }'
}

ROWS=()
for c in $CONNS; do
  grpc_runs=()
  rest_runs=()
  for _ in $(seq 1 "$ROUNDS"); do
    g=$(run grpc "$c")
    r=$(run rest "$c")
    echo "  c=$c: gRPC ${g%% *} req/s, REST ${r%% *} req/s" >&2
    grpc_runs+=("$g")
    rest_runs+=("$r")
  done
  for side in gRPC REST; do
    if [ $side = gRPC ]; then runs=("${grpc_runs[@]}"); what="GetUser (gRPC, HTTP/2)"; else runs=("${rest_runs[@]}"); what="GET /users/1 (REST, HTTP/1.1)"; fi
    median=$(printf '%s\n' "${runs[@]}" | sort -g -k1,1 | awk -v n="${#runs[@]}" 'NR == int((n + 1) / 2)')
    ROWS+=("$(echo "$median" | awk -v w="$what" -v c="$c" '{ printf "| %s | %s | %.0f | %.2f | %.2f | %s |", w, c, $1, $2, $3, $4 }')")
  done
done

{
  echo "| call | connections | requests/s | p50 ms | p99 ms | failed |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_DIR/grpc.md"
