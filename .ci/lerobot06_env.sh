#!/usr/bin/env bash
# The LeRobot 0.6 lane: Python 3.12 with the real LeRobot 0.6.1 for tests/real_lerobot/ (and the main suite on
# 3.12). LeRobot 0.6.1 needs Python >= 3.12 and pins torch<2.12, draccus<0.12, huggingface-hub>=1.6; installed with
# --no-deps beside torch 2.14.1 plus its base, [feetech] and [dataset] requirements it imports and runs, as
# .ci/lerobot_env.sh does for 0.4.4. torch 2.14.1 for cp312 is PyPI's CUDA build (it runs on CPU); its nvidia-*
# wheels come from the local mirror.
#
#   bash .ci/lerobot06_env.sh [DIR]    DIR: $GR00T_LEROBOT06_ENV, else ${TMPDIR:-/tmp}/gr00t-fast-lerobot06
#
# Idempotent; prints the python to run the suites with (last line). Needs Python 3.12 and the package index.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ENV=${1:-${GR00T_LEROBOT06_ENV:-${TMPDIR:-/tmp}/gr00t-fast-lerobot06}}
PYTHON=${PYTHON:-$(bash "$REPO/.ci/find_python.sh" 3.12)}
if [ ! -f "$ENV/.complete" ]; then
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.14.1 torchvision==0.29.1
  $PIP --no-deps lerobot==0.6.1
  $PIP "numpy>=2.0.0,<2.3.0" "opencv-python-headless>=4.9.0,<4.14.0" "Pillow>=10.0.0,<13.0.0" \
       "einops>=0.8.0,<0.9.0" "draccus>=0.11.6,<0.12.0" "huggingface-hub>=1.6.0,<2.0.0" "requests>=2.32.0,<3.0.0" \
       "gymnasium>=1.1.1,<2.0.0" "safetensors>=0.4.3,<1.0.0" "packaging>=24.2,<26.0" "termcolor>=2.4.0,<4.0.0" \
       "tqdm>=4.66.0,<5.0.0" "setuptools>=71.0.0,<82.0.0" \
       "feetech-servo-sdk>=1.0.0,<2.0.0" "pyserial>=3.5,<4.0" "deepdiff>=7.0.1,<9.0.0" \
       "datasets>=4.8.0,<5.0.0" "pandas>=2.0.0,<3.0.0" "pyarrow>=21.0.0,<30.0.0" "av>=15.0.0,<16.0.0" \
       "jsonlines>=4.0.0,<5.0.0"
  $PIP -e "$REPO[test]"
  touch "$ENV/.complete"
fi
# gr00t-fast's LeRobot policy plugin (policy type gr00t_fast for lerobot-rollout / lerobot-eval)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO/plugins/lerobot_policy_gr00t_fast"
# NVIDIA's current PolicyClient needs msgpack-numpy (also in an environment built before it was added)
"$ENV/bin/pip" install -q --disable-pip-version-check "msgpack-numpy==0.4.8"
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
