#!/usr/bin/env bash
# GET /users/{id} on the user service over mutual TLS against plaintext, on
# loopback, at 1 and 16 keep-alive connections.
#
# Two user services run side by side from the release binary: one
# plaintext, one with --tls-dir (a directory `demo-services certs` wrote).
# Each gets a user created with POST /users, and the load goes to that
# user. The load tool is oha (a Rust HTTP load generator we did not write),
# the same for both sides; over TLS it verifies the service's certificate
# against ca.pem and presents the api-gateway's certificate, as curl does
# in tests/interop/mtls-curl.sh. Every connection is kept alive, so each
# side pays its handshakes once per connection, at the start; what is
# measured is the steady state: record encryption, decryption and framing.
#
# The two sides alternate ROUNDS times (plain, mTLS, plain, mTLS...), so a
# slow moment of the shared machine hits both; the table shows each side's
# median round and every round's requests/s. Besides oha's requests/s and
# p50/p99, each round reads the service's CPU time (utime + stime in
# /proc/PID/stat) before and after, and reports it per request.
#
# Then, as a cross-check of the handshake bench with a TLS client we did not
# write, openssl s_time opens new connections to the mTLS service for
# S_TIME_SECONDS, each with a full handshake (-new) or resuming the
# previous session (-reuse), at TLS 1.3 and 1.2 (S_TIME_SECONDS=0 skips it).
#
# Usage: scripts/tls-load.sh [--install] [-h|--help]
#        (DURATION=10s ROUNDS=3 CONNS="1 16" BASE_PORT=4300 S_TIME_SECONDS=5)
# Needs oha (cargo install oha --locked), jq, curl and openssl; --install
# installs what is missing (oha with cargo, the others with apt-get, sudo
# when not root). Prints a Markdown table and writes it to target/load/tls.md.
set -euo pipefail
# A failing command inside $(...) stops the script too.
shopt -s inherit_errexit

usage() {
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
}

INSTALL=0
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --install) INSTALL=1 ;;
    *) echo "scripts/tls-load.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"1 16"}
BASE_PORT=${BASE_PORT:-4300}
S_TIME_SECONDS=${S_TIME_SECONDS:-5}
# The version the figures in BENCHMARKS.md were made with.
OHA_VERSION=1.16.0
OUT_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/load"
export RUST_LOG=${RUST_LOG:-error}

apt_missing=()
command -v jq >/dev/null 2>&1 || apt_missing+=(jq)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
need_oha=0
command -v oha >/dev/null 2>&1 || need_oha=1
if [ ${#apt_missing[@]} -gt 0 ] || [ "$need_oha" -eq 1 ]; then
  if [ "$INSTALL" -eq 0 ]; then
    what="${apt_missing[*]}"
    [ "$need_oha" -eq 1 ] && what="$what oha"
    echo "scripts/tls-load.sh: missing${what:+ }${what# }; install them, or run with --install" >&2
    echo "  (oha: cargo install oha --locked --version $OHA_VERSION; the others: apt-get install)" >&2
    exit 1
  fi
  if [ ${#apt_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  fi
  if [ "$need_oha" -eq 1 ]; then
    cargo install oha --locked --version "$OHA_VERSION"
  fi
fi

cargo build --release -q -p demo-services
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/demo-services"
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
export SERVICE_JWT_SECRET
SERVICE_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" certs --out "$WORK/certs" >/dev/null
C="$WORK/certs"
CURL_TLS=(--cacert "$C/ca.pem" --cert "$C/api-gateway.pem" --key "$C/api-gateway.key.pem")
OHA_TLS=(--cacert "$C/ca.pem" --cert "$C/api-gateway.pem" --key "$C/api-gateway.key.pem")

PLAIN_PORT=$BASE_PORT
TLS_PORT=$((BASE_PORT + 1))
"$BIN" user --listen "127.0.0.1:$PLAIN_PORT" --data-dir "$WORK/plain" >"$WORK/plain.log" 2>&1 &
PLAIN_PID=$!
PIDS+=("$PLAIN_PID")
"$BIN" user --listen "127.0.0.1:$TLS_PORT" --data-dir "$WORK/tls" --tls-dir "$C" \
  >"$WORK/tls.log" 2>&1 &
TLS_PID=$!
PIDS+=("$TLS_PID")
PLAIN_URL="http://127.0.0.1:$PLAIN_PORT"
# The leaves name 127.0.0.1 as well as localhost; an address keeps every
# client off ::1, where nothing listens.
TLS_URL="https://127.0.0.1:$TLS_PORT"

# Waits (at most 10 s) for /health to answer.
wait_healthy() {
  local url=$1 pid=$2 log=$3
  shift 3
  for _ in $(seq 1 100); do
    curl -sf "$@" "$url/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "the service exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$url/health did not answer within 10 s" >&2
  cat "$log" >&2
  exit 1
}
wait_healthy "$PLAIN_URL" "$PLAIN_PID" "$WORK/plain.log"
wait_healthy "$TLS_URL" "$TLS_PID" "$WORK/tls.log" "${CURL_TLS[@]}"

TOKEN=$("$BIN" token --service api-gateway --audience user-service --ttl 1h)

# Creates a user and prints its id; then checks GET /users/{id} answers 200.
create_user() {
  local url=$1 id
  shift
  id=$(curl -sf "$@" -X POST -H "authorization: Bearer $TOKEN" \
    -H "content-type: application/json" \
    -d '{"name":"Load Test","email":"tls-load@example.com"}' "$url/users" | jq -er '.id')
  curl -sf -o /dev/null "$@" -H "authorization: Bearer $TOKEN" "$url/users/$id"
  echo "$id"
}
PLAIN_ID=$(create_user "$PLAIN_URL")
TLS_ID=$(create_user "$TLS_URL" "${CURL_TLS[@]}")

# The service's CPU time so far, in clock ticks (utime + stime).
cpu_ticks() {
  # Fields after the command name, which is in parentheses and may hold
  # spaces: utime and stime are the 12th and 13th of them.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
TICK_HZ=$(getconf CLK_TCK)

# run SIDE CONNS: prints "rps p50_ms p99_ms non2xx errors cpu_us_per_request".
run() {
  local side=$1 c=$2 out="$WORK/oha.json" pid url args=()
  if [ "$side" = tls ]; then
    pid=$TLS_PID url="$TLS_URL/users/$TLS_ID" args=("${OHA_TLS[@]}")
  else
    pid=$PLAIN_PID url="$PLAIN_URL/users/$PLAIN_ID"
  fi
  local before after
  before=$(cpu_ticks "$pid")
  oha --no-tui --output-format json -o "$out" -c "$c" -z "$DURATION" \
    -H "authorization: Bearer $TOKEN" "${args[@]}" "$url"
  after=$(cpu_ticks "$pid")
  jq -r --argjson ticks "$((after - before))" --argjson hz "$TICK_HZ" '
    ([.statusCodeDistribution | to_entries[] | .value] | add // 0) as $answered
    | ([.statusCodeDistribution | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0) as $bad
    | ([.errorDistribution | to_entries[] | select(.key | test("deadline") | not) | .value] | add // 0) as $errors
    | [ .summary.requestsPerSec,
        .latencyPercentiles.p50 * 1000,
        .latencyPercentiles.p99 * 1000,
        $bad, $errors,
        (if $answered > 0 then $ticks / $hz * 1e6 / $answered else 0 end) ]
    | @tsv' "$out" | tr '\t' ' '
}

ROWS=()
ROUND_LINES=()
for c in $CONNS; do
  plain_runs=()
  tls_runs=()
  for _ in $(seq 1 "$ROUNDS"); do
    p=$(run plain "$c")
    t=$(run tls "$c")
    echo "  c=$c: plaintext ${p%% *} req/s, mTLS ${t%% *} req/s" >&2
    plain_runs+=("$p")
    tls_runs+=("$t")
  done
  ROUND_LINES+=("$(printf '%s connection(s), requests/s plaintext / mTLS:' "$c")$(
    for i in $(seq 0 $((ROUNDS - 1))); do
      printf ' %.0f / %.0f;' "${plain_runs[$i]%% *}" "${tls_runs[$i]%% *}"
    done | sed 's/;$//')")
  for side in plain tls; do
    if [ $side = plain ]; then runs=("${plain_runs[@]}"); what="plaintext"; else runs=("${tls_runs[@]}"); what="mutual TLS"; fi
    median=$(printf '%s\n' "${runs[@]}" | sort -g -k1,1 | awk -v n="${#runs[@]}" 'NR == int((n + 1) / 2)')
    ROWS+=("$(echo "$median" | awk -v w="$what" -v c="$c" \
      '{ printf "| %s | %s | %.0f | %.2f | %.2f | %.1f | %d | %d |", w, c, $1, $2, $3, $6, $4, $5 }')")
  done
done

# s_time MODE VERSION: openssl s_time against the mTLS service for
# S_TIME_SECONDS, each connection fetching /health (so a TLS 1.3 client
# has read the server's session tickets before the next connection);
# prints "connections_per_second resumed_share".
s_time() {
  local mode=$1 version=$2 start end out
  start=$(date +%s.%N)
  out=$(openssl s_time -connect "127.0.0.1:$TLS_PORT" "-$mode" "-$version" -time "$S_TIME_SECONDS" \
    -www /health -verify 2 -CAfile "$C/ca.pem" -cert "$C/api-gateway.pem" -key "$C/api-gateway.key.pem" \
    2>&1 </dev/null)
  end=$(date +%s.%N)
  # One character per connection: `r` when the session was resumed.
  echo "$out" | awk -v start="$start" -v end="$end" '
    /^[*rt3]+$/ { n += length($0); r += gsub(/r/, "r") }
    / connections in [0-9.]+s;/ { conns = $1 }
    END { printf "%.0f %.2f\n", conns / (end - start), n ? r / n : 0 }'
}

S_TIME_LINES=()
if [ "$S_TIME_SECONDS" -gt 0 ]; then
  for version in tls1_3 tls1_2; do
    for mode in new reuse; do
      runs=""
      for _ in $(seq 1 "$ROUNDS"); do
        r=$(s_time "$mode" "$version")
        runs="$runs ${r%% *}"
        share=${r##* }
      done
      S_TIME_LINES+=("| $version | -$mode | $(echo "$runs" | sed 's/^ //; s/ / \/ /g') | $share |")
      echo "  s_time -$mode -$version:$runs connections/s" >&2
    done
  done
fi

{
  echo "| GET /users/{id} | connections | requests/s | p50 ms | p99 ms | service CPU µs/request | non-2xx | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${ROWS[@]}"
  echo
  printf '%s\n' "${ROUND_LINES[@]}"
  if [ ${#S_TIME_LINES[@]} -gt 0 ]; then
    echo
    echo "| openssl s_time | mode | connections/s, each round | resumed (last round) |"
    echo "| --- | --- | ---: | ---: |"
    printf '%s\n' "${S_TIME_LINES[@]}"
  fi
} | tee "$OUT_DIR/tls.md"
