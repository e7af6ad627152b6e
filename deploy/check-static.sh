#!/usr/bin/env bash
# Checks that demo-services runs on an empty root filesystem, as in the
# FROM scratch image (deploy/Containerfile): the binary is statically
# linked (no program interpreter, no shared library needed), and the user
# service, started alone in a directory holding only the binary and an
# empty data/, answers /health and GET /users/1 (so SQLite works there)
# and exits 0 on SIGTERM. Run by .ci/run; fails loudly on any error.
#
#   deploy/check-static.sh                 # builds with the dev profile (quick)
#   deploy/check-static.sh --binary PATH   # checks a binary already built
#
# Runs the service under chroot as user 65532 (the image's); needs root for
# chroot, else an unprivileged user namespace (unshare --map-root-user),
# where the service runs as the calling user.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=""
case "${1:-}" in
  --binary) BIN=$2 ;;
  "") BIN=$(deploy/musl-build.sh dev) ;;
  *) echo "usage: deploy/check-static.sh [--binary PATH]" >&2; exit 2 ;;
esac

ROOT=""
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  [ -n "$ROOT" ] && rm -rf "$ROOT" "$ROOT.log"
  return 0
}
trap cleanup EXIT
fail() {
  echo "check-static: FAIL: $*" >&2
  if [ -n "$ROOT" ] && [ -f "$ROOT.log" ]; then
    echo "--- the service's log:" >&2
    cat "$ROOT.log" >&2
  fi
  exit 1
}
ok() { echo "ok   $*"; }

[ -x "$BIN" ] || fail "$BIN is not an executable"

# --- Linked statically: no INTERP header, no NEEDED entry.
headers=$(readelf --program-headers --wide "$BIN") || fail "readelf cannot read $BIN"
if grep -q 'INTERP' <<<"$headers"; then
  fail "$BIN asks for a program interpreter: $(grep -A1 INTERP <<<"$headers" | tail -1)"
fi
needed=$(readelf --dynamic "$BIN" | grep '(NEEDED)' || true)
[ -z "$needed" ] || fail "$BIN needs shared libraries: $needed"
ok "no program interpreter, no shared library: $(file -b "$BIN" 2>/dev/null | cut -d, -f1-2 || echo static)"
# ldd runs the binary with glibc's loader; on a static one it says so.
ldd_says=$(ldd "$BIN" 2>&1 || true)
grep -Eq 'statically linked|not a dynamic executable' <<<"$ldd_says" || fail "ldd lists: $ldd_says"
ok "ldd: $(echo "$ldd_says" | tr -d '\t')"

# --- An empty root: the binary and data/, nothing else (as in the image).
ROOT=$(mktemp -d)
chmod 755 "$ROOT"
cp "$BIN" "$ROOT/demo-services"
mkdir -m 700 "$ROOT/data"
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 "$ROOT/data"
  RUNNER=("$(command -v chroot)" --userspec=65532:65532 "$ROOT")
  how="chroot, as user 65532"
elif unshare --user --map-root-user true 2>/dev/null; then
  RUNNER=("$(command -v unshare)" --user --map-root-user "$(command -v chroot)" "$ROOT")
  how="unshare --map-root-user + chroot, as $(id -un)"
else
  fail "neither root (for chroot) nor unprivileged user namespaces (for unshare): cannot chroot"
fi
[ "$(find "$ROOT" | wc -l)" = 3 ] || fail "the root holds more than the binary and data/: $(find "$ROOT")"

SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# A clean environment: nothing the host sets (PATH, HOME, TMPDIR) helps.
# env, chroot (and unshare) each exec the next, so $! is the service.
env -i SERVICE_JWT_SECRET="$SECRET" RUST_LOG=info \
  "${RUNNER[@]}" /demo-services user --listen 127.0.0.1:0 --data-dir /data >"$ROOT.log" 2>&1 &
PID=$!

PORT=""
deadline=$((SECONDS + 30))
while [ -z "$PORT" ]; do
  PORT=$(grep -o 'listening addr=127\.0\.0\.1:[0-9]*' "$ROOT.log" 2>/dev/null | grep -o '[0-9]*$' | head -1 || true)
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || fail "the user service exited before listening"
  [ "$SECONDS" -lt "$deadline" ] || fail "the user service did not say where it listens within 30 s"
  sleep 0.1
done
ok "the user service runs in an empty root ($how), on 127.0.0.1:$PORT"

get() {
  local path=$1
  shift
  if command -v curl >/dev/null; then
    curl -sS --max-time 10 -w ' %{http_code}' "$@" "http://127.0.0.1:$PORT$path"
  else
    # bash's /dev/tcp, for machines without curl: HTTP/1.0, the body and status.
    local header=""
    [ $# -gt 0 ] && header="${2}"$'\r\n'
    exec 5<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$path" "$header" >&5
    local reply
    reply=$(timeout 10 cat <&5)
    exec 5<&-
    printf '%s %s' "${reply##*$'\r\n\r\n'}" "$(head -1 <<<"$reply" | cut -d' ' -f2)"
  fi
}
health=$(get /health) || fail "GET /health: no answer"
[ "$health" = '{"service":"user-service","status":"ok"} 200' ] || fail "GET /health answered: $health"
ok "GET /health: $health"

TOKEN=$(SERVICE_JWT_SECRET="$SECRET" "$BIN" token --service api-gateway --audience user-service) ||
  fail "demo-services token failed"
user=$(get /users/1 -H "authorization: Bearer $TOKEN") || fail "GET /users/1: no answer"
[[ "$user" == *'"name":"Ada Lovelace"'*' 200' ]] || fail "GET /users/1 answered: $user"
ok "GET /users/1: 200, from SQLite in the empty root's /data"
[ -f "$ROOT/data/users.db" ] || fail "no users.db in the root's data/: $(ls -la "$ROOT/data")"

kill -TERM "$PID"
deadline=$((SECONDS + 20))
while kill -0 "$PID" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "still running 20 s after SIGTERM"
  sleep 0.1
done
status=0
wait "$PID" || status=$?
PID=""
[ "$status" = 0 ] || fail "exited with status $status after SIGTERM"
grep -q 'stopped' "$ROOT.log" || fail "exited 0 but did not log that it stopped"
ok "SIGTERM: exited 0"
echo "check-static: $BIN runs on an empty root filesystem"
