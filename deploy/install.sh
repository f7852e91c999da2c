#!/bin/sh
# Install kefu from a wheel into its own virtual environment, with the cluster extra
# (asyncpg, redis), so one install serves one node or a cluster node alike.
#
#   deploy/install.sh WHEEL PREFIX         e.g. deploy/install.sh dist/kefu-0.1.0-py3-none-any.whl /opt/kefu
#
# Then PREFIX/bin/kefu is the command (deploy/kefu.service runs /opt/kefu/bin/kefu).
# PYTHON picks the interpreter (default python3; kefu needs 3.11 or newer). The
# Dockerfile runs this same script, so the image and a host install cannot drift.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 WHEEL PREFIX" >&2
    exit 2
fi
wheel=$1
prefix=$2
python=${PYTHON:-python3}

if [ ! -f "$wheel" ]; then
    echo "$0: no wheel at $wheel (build one with: python3 -m pip wheel --no-deps -w dist .)" >&2
    exit 1
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "$0: $python is older than Python 3.11" >&2
    exit 1
}

"$python" -m venv "$prefix"
# pip compiles the modules as it installs them: a unit run with ProtectSystem=strict
# (or a read-only image layer) could not write its .pyc files later.
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[cluster]"
"$prefix/bin/kefu" --version
