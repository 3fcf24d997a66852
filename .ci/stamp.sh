#!/usr/bin/env bash
# An environment's stamp: the sha256 of the script that builds it, of the setup.cfg lines it installs
# (install_requires and the named extras) and of the repository files that choose what it installs (a PATH with a
# slash, e.g. gr00t_fast/robot/lerobot_install.py), so that an environment is rebuilt when its own recipe changes,
# not when any other line of setup.cfg does.
#
#   bash .ci/stamp.sh SCRIPT [EXTRA | PATH ...]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT=$1
shift
EXTRAS=()
FILES=()
for ARG in "$@"; do
  if [[ $ARG == */* ]]; then FILES+=("$REPO/$ARG"); else EXTRAS+=("$ARG"); fi
done
{
  cat "$SCRIPT" ${FILES[@]+"${FILES[@]}"}
  python3 - "$REPO/setup.cfg" ${EXTRAS[@]+"${EXTRAS[@]}"} <<'PY'
import configparser
import sys

config = configparser.ConfigParser()
config.read(sys.argv[1])
print(config["options"]["install_requires"])
for extra in sys.argv[2:]:
    print(f"[{extra}]", config["options.extras_require"][extra])
PY
} | sha256sum | cut -d " " -f 1
