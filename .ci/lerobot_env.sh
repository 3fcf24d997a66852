#!/usr/bin/env bash
# A second environment with the real LeRobot 0.4.4 for tests/real_lerobot/ (the SO follower contract suite, the
# LeRobot-checkpoint and plugin tests). LeRobot 0.4.4 pins torch<2.11 and draccus==0.10.0; installed by
# `gr00t-fast install-lerobot` (what a user runs: --no-deps beside torch 2.13.0 (CPU), its base requirements under a
# constraint that keeps that torch). The only torchvision for
# torch 2.13 on the index is the CUDA build: installed without its CUDA libraries, its import needs the test-only
# shim in tests/real_lerobot/conftest.py (LeRobot's robot/camera/motor code never calls torchvision ops).
#
#   bash .ci/lerobot_env.sh [DIR]      DIR: $GR00T_LEROBOT_ENV, else ${TMPDIR:-/tmp}/gr00t-fast-lerobot
#
# Idempotent; prints the python to run the suite with. Needs python3.11 (or $PYTHON) and the package index.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ENV=${1:-${GR00T_LEROBOT_ENV:-${TMPDIR:-/tmp}/gr00t-fast-lerobot}}
PYTHON=${PYTHON:-python3.11}
# the recipe: this script and the setup.cfg lines it installs (.ci/stamp.sh); an environment built from another
# recipe is rebuilt
STAMP=$(bash "$REPO/.ci/stamp.sh" "$0" test lerobot gr00t_fast/robot/lerobot_install.py)
if [ "$(cat "$ENV/.complete-install-lerobot" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.13.0
  $PIP -e "$REPO[test]"
  "$ENV/bin/gr00t-fast" install-lerobot --release 0.4.4 > "$ENV/install-lerobot.log"
  echo "$STAMP" > "$ENV/.complete-install-lerobot"
fi
# gr00t-fast's LeRobot policy plugin (policy type gr00t_fast for lerobot-record / lerobot-eval)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO/plugins/lerobot_policy_gr00t_fast"
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
