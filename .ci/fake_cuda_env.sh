#!/usr/bin/env bash
# A third environment for tests/fake_cuda/ (the fake-CUDA lane): torch 2.14.1, a CUDA 13 build that runs on CPU, whose
# FakeTensorMode traces the CUDA paths of the full-size model without a GPU (the CPU build refuses CUDA devices). The
# project is installed without its dependencies (its pin torch<2.14 is for users), then those it imports.
#
#   bash .ci/fake_cuda_env.sh [DIR]      DIR: $GR00T_FAKE_CUDA_ENV, else ${TMPDIR:-/tmp}/gr00t-fast-fake-cuda
#
# Idempotent; prints the python to run the lane with. Needs python3.11 (or $PYTHON) and the package index (~5.5 GB).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ENV=${1:-${GR00T_FAKE_CUDA_ENV:-${TMPDIR:-/tmp}/gr00t-fast-fake-cuda}}
PYTHON=${PYTHON:-python3.11}
# the recipe: this script and the setup.cfg lines it installs (.ci/stamp.sh); an environment built from another
# recipe is rebuilt
STAMP=$(bash "$REPO/.ci/stamp.sh" "$0")
if [ "$(cat "$ENV/.complete" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$ENV"
  "$PYTHON" -m venv "$ENV"
  PIP="$ENV/bin/pip install -q --disable-pip-version-check"
  $PIP torch==2.14.1
  $PIP "numpy>=1.26,<3" "safetensors>=0.4,<1" "tokenizers>=0.19,<1" "opencv-python-headless>=4.9" \
       "draccus>=0.10,<0.12" "pyyaml>=6" "pyzmq>=25" "msgpack>=1.0" "tqdm>=4.60" "pytest>=8" "pytest-timeout>=2.3" \
       "pytest-xdist>=3.5" "onnx>=1.16" "onnxruntime>=1.18" polygraphy==0.53.6
  # TensorRT 10's real Python bindings (1.3 MB, from PyPI; its libraries come only from pypi.nvidia.com, out of reach
  # here, so `import tensorrt` fails): tests/fake_cuda/test_tensorrt_api.py checks the engine code's names against them
  $PIP --no-deps tensorrt-cu13-bindings==10.16.1.11 || echo "tensorrt-cu13-bindings not installable: its test skips"
  $PIP --no-deps -e "$REPO"
  "$ENV/bin/python" -c "import torch; assert torch.version.cuda, torch.__version__"
  echo "$STAMP" > "$ENV/.complete"
fi
# the editable install points at this checkout, also where the environment was built from another one (CI's clones)
"$ENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
echo "$ENV/bin/python"
