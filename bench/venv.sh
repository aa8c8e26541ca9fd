#!/usr/bin/env bash
# The bench's Python venv (bench/run/venv), pinned by bench/requirements.txt: JWT minting for the
# bench's auth rows and the callgrind guard's JWT workloads. Recreated when the pins change.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p run
if [ ! -x run/venv/bin/python ] || ! cmp -s requirements.txt run/venv/requirements.txt; then
  echo "bench: python venv run/venv (pinned bench/requirements.txt)"
  rm -rf run/venv
  python3 -m venv run/venv
  run/venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt run/venv/requirements.txt
fi
