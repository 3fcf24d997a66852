#!/usr/bin/env bash
# An environment for the per-Python smoke run (tests/test_install_smoke.py): gr00t-fast installed from this
# checkout with its base requirements only, on Python X.Y, beside torch 2.14.1 (PyPI's CUDA build, which runs on
# CPU; its nvidia-* wheels come from the local mirror), plus pytest.
#
#   bash .ci/smoke_env.sh X.Y [DIR]     DIR: ${TMPDIR:-/tmp}/gr00t-fast-smoke-X.Y
#
# Idempotent; prints the python to run the smoke test with (last line). Fails, saying so, without Python X.Y.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=$1
ENV=${2:-${TMPDIR:-/tmp}/gr00t-fast-smoke-$VERSION}
PYTHON=$(bash "$REPO/.ci/find_python.sh" "$VERSION")
# the recipe: this script and the setup.cfg lines it installs (.ci/stamp.sh); an environment built from another
# recipe is rebuilt
STAMP=$(bash "$REPO/.ci/stamp.sh" "$0")
if [ "$(cat "$ENV/.complete" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.14.1
  $PIP -e "$REPO" "pytest>=8" "pytest-timeout>=2.3"
  echo "$STAMP" > "$ENV/.complete"
fi
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
