#!/usr/bin/env bash
# Install the project into a virtual environment: torch (CPU build, pinned) first, then the
# project with its bundled model and embedded defaults. One script for every install:
#   infra/install.sh .venv --dev     editable, with test tools (infra/local/setup.sh, CI)
#   infra/install.sh /opt/venv       non-editable, as the image installs it (infra/image/Dockerfile)
# TORCH_INDEX_URL picks where torch comes from (the image: PyTorch's CPU index); any other
# torch spec pulls the CUDA build, gigabytes of it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:?usage: infra/install.sh VENV [--dev]}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
if [ "${2:-}" = "--dev" ]; then
  "${pip[@]}" -e ".[dev]"
else
  "${pip[@]}" .
fi
