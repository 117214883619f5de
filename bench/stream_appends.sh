#!/usr/bin/env bash
# Times appends to streams on a release `nomaly serve`, one client, requests one after
# another: a NAB series in CSV requests of ROWS points, to a seasonal stream, to
# Half-Space Trees (shingle 4) with its state in the stream's row and with its state in
# the blob store, and to the rolling z-score. Prints each request's median and worst
# latency as curl saw it, and points per second over the whole series (with ROWS=1 that
# is bound by starting curl, not by the server).
#
#   cargo build --release -p nomaly
#   bash bench/stream_appends.sh [ROWS (default 1000)] [CSV (default NAB nyc_taxi)]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/nomaly}
ROWS=${1:-1000}
DATA=${2:-tests/data/nab/nyc_taxi.csv}
PORT=${PORT:-8123}
POINTS=$(awk 'END { print NR - 1 }' "$DATA")
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2> /dev/null; rm -rf "$dir"' EXIT

SUMMARY='
import statistics, sys
label, points, t0, t1, stored = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lines = [l.split() for l in sys.stdin if l.strip()]
bad = [c for c, _ in lines if c != "200"]
if bad:
    sys.exit(f"{label}: {len(bad)} requests failed ({bad[:3]})")
ms = sorted(float(t) * 1000 for _, t in lines)
print(f"{label:34} {len(ms):6} requests  median {statistics.median(ms):6.1f} ms  max {ms[-1]:6.1f} ms  "
      f"{points / (t1 - t0):8.0f} points/s  ({stored})")
'

run() {
  local inline=$1 body=$2 label=$3
  rm -rf "$dir/d" "$dir"/chunk.*
  mkdir -p "$dir/d"
  NOMALY_RATE_LIMIT=0 NOMALY_STREAM_INLINE_STATE_BYTES=$inline \
    "$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$dir/d" 2> "$dir/log" &
  pid=$!
  until curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null; do sleep 0.1; done
  local key id
  key=$("$BIN" keys create --tenant bench --data-dir "$dir/d" 2>/dev/null)
  id=$(curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    "http://127.0.0.1:$PORT/v1/streams" -d "$body" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["stream_id"])')
  tail -n +2 "$DATA" | split -a 6 -l "$ROWS" - "$dir/chunk."
  : > "$dir/times"
  local t0 t1
  t0=$(date +%s.%N)
  for f in "$dir"/chunk.*; do
    { echo timestamp,value; cat "$f"; } > "$dir/body.csv"
    curl -s -o "$dir/answer" -w '%{http_code} %{time_total}\n' \
      -H "Authorization: Bearer $key" -H 'content-type: text/csv' \
      --data-binary @"$dir/body.csv" "http://127.0.0.1:$PORT/v1/streams/$id/points" >> "$dir/times"
  done
  t1=$(date +%s.%N)
  local stored
  stored=$(curl -s -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT/v1/streams/$id" |
    python3 -c 'import json, sys; v = json.load(sys.stdin); print(v["points"], "points, state", v["state_stored"])')
  python3 -c "$SUMMARY" "$label" "$POINTS" "$t0" "$t1" "$stored" < "$dir/times"
  kill -INT "$pid"
  wait "$pid" 2> /dev/null || true
  pid=
}

echo "$DATA: $POINTS points, $ROWS per request, one client"
run 300000 '{"name":"s","detector":"seasonal"}' "seasonal"
run 300000 '{"name":"h","detector":"half_space_trees","shingle":4}' "half-space trees, state inline"
run 1024 '{"name":"h","detector":"half_space_trees","shingle":4}' "half-space trees, state in blobs"
run 300000 '{"name":"r","detector":"rolling_mean"}' "rolling z-score"
