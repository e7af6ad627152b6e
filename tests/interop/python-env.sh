#!/usr/bin/env bash
# Makes the Python environment of the gRPC interoperability test
# (tests/grpc_interop.rs): a venv with grpcio from PyPI. Prints the path of
# its python. Usage: tests/interop/python-env.sh [DIR] (default
# target/grpc-interop-venv). Reuses DIR when it already has the pinned set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../../target/grpc-interop-venv}"
stamp="$dir/.requirements"
if [ ! -x "$dir/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$stamp"
fi
echo "$dir/bin/python"
