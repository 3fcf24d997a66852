#!/usr/bin/env bash
# A second environment with the real LeRobot 0.4.4 for tests/real_lerobot/ (the SO follower contract suite, the
# LeRobot-checkpoint and plugin tests). LeRobot 0.4.4 pins torch<2.11 and draccus==0.10.0; installed with
# --no-deps beside torch 2.13.0 (CPU) plus its base requirements it imports and runs. The only torchvision for
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
if [ ! -f "$ENV/.complete" ]; then
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.13.0
  $PIP --no-deps torchvision==0.28.0 lerobot==0.4.4
  $PIP "datasets>=4.0.0,<5.0.0" "diffusers>=0.27.2,<0.36.0" "huggingface-hub[cli]>=0.34.2,<0.36.0" \
       "accelerate>=1.10.0,<2.0.0" "setuptools>=71.0.0,<81.0.0" "einops>=0.8.0,<0.9.0" \
       "opencv-python-headless>=4.9.0,<4.13.0" "av>=15.0.0,<16.0.0" "jsonlines>=4.0.0,<5.0.0" "packaging>=24.2,<26.0" \
       "pynput>=1.7.7,<1.9.0" "pyserial>=3.5,<4.0" "draccus==0.10.0" "gymnasium>=1.1.1,<2.0.0" \
       "deepdiff>=7.0.1,<9.0.0" "imageio[ffmpeg]>=2.34.0,<3.0.0" "termcolor>=2.4.0,<4.0.0" \
       "feetech-servo-sdk>=1.0.0,<2.0.0" "transformers>=4.57.1,<5.0.0" "num2words>=0.5.14,<0.6.0" \
       "safetensors>=0.4.3,<1.0.0" "wandb>=0.24.0,<0.25.0" "rerun-sdk>=0.24.0,<0.27.0" \
       "peft>=0.13.0,<1.0.0" "dm-tree>=0.1.8,<1.0.0"
  $PIP -e "$REPO[test]"
  touch "$ENV/.complete"
fi
# gr00t-fast's LeRobot policy plugin (policy type gr00t_fast for lerobot-record / lerobot-eval)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO/plugins/lerobot_policy_gr00t_fast"
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
