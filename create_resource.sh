#!/usr/bin/env bash
# Create the images bucket and table, or re-apply their settings; safe to run again.
# Targets AWS_ENDPOINT_URL (LocalStack, moto) when set, real AWS otherwise. The
# definitions live in app/storage/resources.py: this script, `make run` and the tests
# all go through them, so there is one source of truth.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=${PYTHON:-python3}; fi
exec "$python" -m app create-resources
