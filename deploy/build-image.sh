#!/usr/bin/env bash
# Builds the demo's image: demo-services as one static binary (musl, the
# `image` profile: release, stripped), checked on an empty root filesystem
# (deploy/check-static.sh), then `docker build` with deploy/Containerfile,
# FROM scratch, so nothing is pulled. Without a Docker daemon it still
# builds and checks the binary, and says it skipped the image.
#
#   deploy/build-image.sh [TAG]        # default demo-services:<crate version>
#
# The binary stays where cargo put it (printed at the end); the build
# context is a temporary directory holding it and an empty tree/data/.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' demo-services/Cargo.toml | head -1)
TAG=${1:-demo-services:$version}

BIN=$(deploy/musl-build.sh image)
deploy/check-static.sh --binary "$BIN"

if ! docker info >/dev/null 2>&1; then
  echo "build-image: no Docker daemon answers (docker info failed): skipped docker build."
  echo "build-image: the static binary is $BIN ($(du -h "$BIN" | cut -f1))"
  exit 0
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$BIN" "$context/demo-services"
mkdir -p "$context/tree/data"
chmod 700 "$context/tree/data"
docker build --file deploy/Containerfile --tag "$TAG" "$context"
echo "build-image: built $TAG from $BIN ($(du -h "$BIN" | cut -f1))"
