#!/usr/bin/env bash
# Isolation Forest speed: scikit-learn vs nomaly in one run on this machine.
# Usage: bash bench/iforest_vs_sklearn.sh [--repeat N] [--rows N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import sklearn, pandas" 2>/dev/null; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
cargo build --release -p nomaly-bench --quiet
exec .venv/bin/python bench/iforest_vs_sklearn.py \
  --binary target/release/iforest-bench --data tests/data/tabular "$@"
