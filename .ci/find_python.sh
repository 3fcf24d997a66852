#!/usr/bin/env bash
# Print a working interpreter for Python X.Y, or fail saying none is here:
#   bash .ci/find_python.sh 3.12
# `pythonX.Y` on the PATH first (a pyenv shim there may refuse to run when X.Y is not pyenv's selected version:
# then pyenv's own copy of X.Y).
set -euo pipefail
VERSION=$1
for candidate in "python$VERSION" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$VERSION"*/bin/"python$VERSION" 2>/dev/null); do
  if "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$VERSION'.split('.')))" 2>/dev/null; then
    echo "$candidate"
    exit 0
  fi
done
echo "no Python $VERSION interpreter here" >&2
exit 1
