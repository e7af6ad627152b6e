#!/usr/bin/env bash
# Checks deploy/'s Kubernetes manifests and Compose file without a cluster
# or a Docker daemon (deploy/check_manifests.py says what is checked):
# kubectl's own kustomize renders deploy/k8s/base and deploy/k8s/dev,
# kubernetes-validate checks every object against the API's schemas,
# check-jsonschema checks compose.yaml against the Compose Specification,
# and haproxy -c the proxy's configuration when haproxy is installed. Run by
# .ci/run; needs PyPI (deploy/python-env.sh) on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(deploy/python-env.sh)
# Flags are checked against the binary's own --help: the host build, which
# the tests have already made in CI.
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
cargo build -q -p demo-services --bin demo-services --message-format=json-render-diagnostics >"$messages"
bin=$(sed -n 's/.*"executable":"\([^"]*\/demo-services\)".*/\1/p' "$messages" | tail -1)
[ -x "$bin" ] || { echo "check-manifests: cargo reported no demo-services executable" >&2; exit 1; }

haproxy=()
if command -v haproxy >/dev/null; then haproxy=(--haproxy "$(command -v haproxy)"); fi
"$venv/bin/python" deploy/check_manifests.py --kubectl "$venv/bin/kubectl" --binary "$bin" "${haproxy[@]}"
