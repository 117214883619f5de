#!/usr/bin/env bash
# Runs every test of nomaly: formatting, lints, unit tests, and the end-to-end tests in
# tests/ (which measure detection quality against scikit-learn and PyOD on the data in
# ../shared/data). Installs what the tests need when it is missing: a Python virtual
# environment in .venv with the reference libraries of tests/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp)
trap 'rm -f "$results"' EXIT

echo "== reference environment (.venv)"
if ! .venv/bin/python -c "import sklearn, pandas" 2>/dev/null; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
.venv/bin/python -c "import sklearn, numpy; print('scikit-learn', sklearn.__version__, 'numpy', numpy.__version__)"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --bins

echo "== unit tests"
cargo test --workspace --exclude nomaly-tests 2>&1 | tee -a "$results"

echo "== end-to-end tests"
cargo test -p nomaly-tests -- --nocapture --test-threads 1 2>&1 | tee -a "$results"

# One closing line over every cargo test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
