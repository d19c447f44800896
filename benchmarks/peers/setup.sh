#!/bin/sh
# Make benchmarks/peers/.venv and install the pinned peers into it.
#   sh benchmarks/peers/setup.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --upgrade pip
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import pgqueuer, absurd_sdk, dbos, procrastinate, celery, redis; print('peers installed in $here/.venv')"
