#!/bin/sh
# Everything the test suite needs on a fresh Debian/Ubuntu machine with python3, then the suite itself.
# Usage: sh tests/run.sh [pytest args...]
set -eu
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real (command:package).
NEEDS="redis-server:redis-server chromium:chromium prometheus:prometheus promtool:prometheus"
missing=""
for pair in $NEEDS; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
# PostgreSQL's server binaries are not on PATH in Debian: they live in /usr/lib/postgresql/<version>/bin.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "tests/run.sh: please install these Debian packages:$missing" >&2; exit 1
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
