#!/usr/bin/env bash
# The environment of the fleet server suite (issue 17, tests/fleet): PyTriton 0.7.0, which ships the Triton Inference
# Server 2.51 binary with its Python backend and runs on CPU-only Linux, beside torch 2.13.0 (CPU) and the simulated
# SO-100 (MuJoCo: `gr00t-fast run` against the fleet). PyTriton pins numpy<2, so this environment also proves that
# gr00t-fast works on numpy 1.26 (opencv-python-headless < 4.12: later wheels need numpy 2).
#
#   bash .ci/fleet_env.sh [DIR]      DIR: $GR00T_FLEET_ENV, else ${TMPDIR:-/tmp}/gr00t-fast-fleet
#
# Idempotent; prints the python to run tests/fleet with. Needs python3.11 (or $PYTHON) and the package index.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ENV=${1:-${GR00T_FLEET_ENV:-${TMPDIR:-/tmp}/gr00t-fast-fleet}}
PYTHON=${PYTHON:-python3.11}
# the recipe: this script and the setup.cfg lines it installs (.ci/stamp.sh); an environment built from another
# recipe is rebuilt
STAMP=$(bash "$REPO/.ci/stamp.sh" "$0" fleet sim)
if [ "$(cat "$ENV/.complete" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.13.0
  $PIP "numpy>=1.26,<2" "opencv-python-headless>=4.9,<4.12" -e "$REPO[fleet,sim]" "pytest>=8" "pytest-timeout>=2.3" \
       "matplotlib>=3.7" "msgpack-numpy==0.4.8"  # NVIDIA's current PolicyClient needs msgpack-numpy
  echo "$STAMP" > "$ENV/.complete"
fi
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
