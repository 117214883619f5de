#!/usr/bin/env bash
# Load benchmark of synchronous detection: `nomaly serve` (release build) against the
# Python stack of ADR-022 (FastAPI under uvicorn with 2 workers, a scikit-learn
# IsolationForest loaded once per worker; bench/fastapi_detect/app.py), in one run, on
# the same machine, with the same load: `serve-load`, 2 connections back to back, 100
# rows never sent before in every request, POST /v1/detect with a trained model.
#
# Usage: bash bench/serve_vs_fastapi.sh [seconds per round, default 15] [rounds, default 3]
# Each round opens new connections: uvicorn's workers share one listening socket, and
# whether the 2 connections land on one worker or on both changes its figures 2x.
# Reads tests/data/tabular; installs fastapi and uvicorn into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
rounds=${2:-3}
data=tests/data/tabular/shuttle.csv
[ -f "$data" ] || { echo "missing $data"; exit 1; }

echo "== build (release)" >&2
cargo build --release --quiet -p nomaly -p nomaly-bench --bin nomaly --bin serve-load

echo "== python environment (.venv)" >&2
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c "import fastapi, uvicorn, sklearn, pandas" 2>/dev/null \
  || .venv/bin/pip install --quiet --disable-pip-version-check -r bench/fastapi_detect/requirements.txt

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 300); do curl -sf "$1/healthz" > /dev/null && return 0; sleep 0.2; done; echo "$1 did not start" >&2; exit 1; }

echo "== nomaly serve: train iforest (100 trees) on $(basename "$data")" >&2
nport=$(free_port)
nomaly_url=http://127.0.0.1:$nport
# One tenant at full speed: the limit is raised past reach, so every request still
# passes through the rate counter (the default, 100/s per tenant, would answer 429).
NOMALY_RATE_LIMIT=1000000 target/release/nomaly serve --addr 127.0.0.1:$nport --data-dir "$work/nomaly" 2> "$work/nomaly.log" > /dev/null &
pids+=($!)
wait_up "$nomaly_url"
key=$(target/release/nomaly keys create --tenant bench --data-dir "$work/nomaly" 2>/dev/null)
.venv/bin/python - "$data" > "$work/train.json" <<'PY'
import json, sys
import pandas as pd
frame = pd.read_csv(sys.argv[1]).drop(columns=["label"])
print(json.dumps({"algorithm": "iforest", "columns": list(frame.columns), "rows": frame.to_numpy().tolist()}))
PY
answer=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data-binary @"$work/train.json" "$nomaly_url/v1/models")
task=$(echo "$answer" | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["task"]["id"])')
model=$(echo "$answer" | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["model_id"])')
for _ in $(seq 1 600); do
  status=$(curl -sf -H "Authorization: Bearer $key" "$nomaly_url/v1/tasks/$task" \
    | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  [ "$status" = completed ] && break
  [ "$status" = failed ] && { echo "training failed" >&2; exit 1; }
  sleep 0.2
done

echo
echo "POST /v1/detect, 100 distinct rows x 9 features per request, 2 connections, ${secs}s each after 2s warm-up ($(nproc) cores, $(uname -m))"
printf '%-22s %10s %9s %9s %9s %8s %7s %7s\n' target 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' requests errors cached
for round in $(seq 1 "$rounds"); do
  target/release/serve-load --url "$nomaly_url" --key "$key" --model-id "$model" --data "$data" \
    --rows 100 --connections 2 --seconds "$secs" --warmup 2 --label "nomaly serve #$round" --seed "$round"
done
# Stop nomaly before the other side starts: Ctrl-C lets it finish what it still has
# queued (events to dispatch), so none of its work spills into the other measurement.
stop_started=$(date +%s%N)
kill -INT "${pids[0]}"
wait "${pids[0]}" || true
stopped_ms=$(( ($(date +%s%N) - stop_started) / 1000000 ))

echo "== FastAPI + uvicorn, 2 workers: fit IsolationForest (100 trees) at start-up" >&2
fport=$(free_port)
fastapi_url=http://127.0.0.1:$fport
BENCH_DATA="$data" BENCH_KEY="$key" .venv/bin/uvicorn app:app --app-dir bench/fastapi_detect \
  --host 127.0.0.1 --port "$fport" --workers 2 2> "$work/fastapi.log" > /dev/null &
pids+=($!)
wait_up "$fastapi_url"
# Both workers fit their model at start-up: wait for the second one too.
for _ in $(seq 1 300); do
  [ "$(grep -c 'Application startup complete' "$work/fastapi.log")" -ge 2 ] && break
  sleep 0.2
done

for round in $(seq 1 "$rounds"); do
  target/release/serve-load --url "$fastapi_url" --key "$key" --model-id "$model" --data "$data" \
    --rows 100 --connections 2 --seconds "$secs" --warmup 2 --label "FastAPI 2w #$round" --seed "$round"
done
echo "(nomaly serve took ${stopped_ms} ms to stop after its run: the work it still had queued)"
