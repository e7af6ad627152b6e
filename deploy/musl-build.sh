#!/usr/bin/env bash
# Builds demo-services for x86_64-unknown-linux-musl (statically linked: the
# target's default) and prints the binary's path on stdout; cargo's output
# goes to stderr.
#
#   deploy/musl-build.sh [PROFILE]     # dev (default: quick, for checks) or image
#
# Needs the target's standard library (`rustup target add`, done here when
# missing) and a C compiler for musl: ring and the bundled SQLite compile C,
# and cc-rs looks for x86_64-linux-musl-gcc, which Debian's musl-tools
# provides (installed here with apt-get when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-musl
PROFILE=${1:-dev}

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "musl-build: adding the $TARGET target" >&2
  rustup target add "$TARGET" >&2 ||
    { echo "musl-build: cannot add the $TARGET target (rustup target add $TARGET)" >&2; exit 1; }
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "musl-build: installing musl-tools (x86_64-linux-musl-gcc) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends musl-tools >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends musl-tools >&2; }
  else
    echo "musl-build: x86_64-linux-musl-gcc not found; install musl-tools (Debian, Ubuntu) or musl-gcc" >&2
    exit 1
  fi
fi

# The path comes from cargo's own report of the executable it made, so a
# CARGO_TARGET_DIR or a profile's directory name is never guessed.
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
cargo build --locked -p demo-services --bin demo-services --target "$TARGET" \
  --profile "$PROFILE" --message-format=json-render-diagnostics >"$messages"
bin=$(sed -n 's/.*"executable":"\([^"]*\/demo-services\)".*/\1/p' "$messages" | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "musl-build: cargo reported no demo-services executable" >&2
  exit 1
fi
echo "$bin"
