#!/usr/bin/env bash
# The LeRobot 0.6 lane: Python 3.12 with the real LeRobot 0.6.1 for tests/real_lerobot/ (and the main suite on
# 3.12). LeRobot 0.6.1 needs Python >= 3.12 and pins torch<2.12, draccus<0.12, huggingface-hub>=1.6; installed by
# `gr00t-fast install-lerobot` (--no-deps beside torch 2.14.1, its base, [feetech] and [dataset] requirements under a
# constraint that keeps that torch), as .ci/lerobot_env.sh does for 0.4.4. torch 2.14.1 for cp312 is PyPI's CUDA build (it runs on CPU); its nvidia-*
# wheels come from the local mirror.
#
#   bash .ci/lerobot06_env.sh [DIR]    DIR: $GR00T_LEROBOT06_ENV, else ${TMPDIR:-/tmp}/gr00t-fast-lerobot06
#
# Idempotent; prints the python to run the suites with (last line). Needs Python 3.12 and the package index.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ENV=${1:-${GR00T_LEROBOT06_ENV:-${TMPDIR:-/tmp}/gr00t-fast-lerobot06}}
PYTHON=${PYTHON:-$(bash "$REPO/.ci/find_python.sh" 3.12)}
# the recipe: this script and the setup.cfg lines it installs (.ci/stamp.sh); an environment built from another
# recipe is rebuilt
STAMP=$(bash "$REPO/.ci/stamp.sh" "$0" test lerobot gr00t_fast/robot/lerobot_install.py)
if [ "$(cat "$ENV/.complete-install-lerobot" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.14.1 torchvision==0.29.1
  $PIP -e "$REPO[test]"
  "$ENV/bin/gr00t-fast" install-lerobot --release 0.6.1 > "$ENV/install-lerobot.log"
  echo "$STAMP" > "$ENV/.complete-install-lerobot"
fi
# gr00t-fast's LeRobot policy plugin (policy type gr00t_fast for lerobot-rollout / lerobot-eval)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO/plugins/lerobot_policy_gr00t_fast"
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
