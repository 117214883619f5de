#!/usr/bin/env bash
# Scores a generated CSV (10 numeric columns, 5 GB by default) with `POST /v1/batch` on a
# release `nomaly serve`, reading it from the data folder's imports/, once with one chunk
# worker and once with two. For each run it prints the rows, the chunks, the wall time
# from the 202 to the task's completion, rows per second end to end, and the server
# process's peak resident memory (VmHWM: the whole process, HTTP server and all, holding
# N chunk workers; one worker is what one chunks Lambda holds), and the CPU time the
# process spent (user + system) per row: the per-row cost bench/README.md's Lambda cost model
# starts from. Scoring a chunk uses every core (rayon), so one worker's wall time is not
# one core's.
#
# The model is an isolation forest (100 trees, 256 samples, scikit-learn's defaults)
# trained through the API on the file's first 5000 rows.
#
#   cargo build --release -p nomaly -p nomaly-bench
#   bash bench/batch_scale.sh [BYTES (default 5000000000)] [WORKER COUNTS (default "1 2")]
#
# WORK=<folder> keeps the data folder (and the generated CSV, made once) between runs;
# by default a temporary folder is used and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/nomaly}
GEN=${GEN:-target/release/gen-batch-csv}
BYTES=${1:-5000000000}
COUNTS=${2:-1 2}
PORT=${PORT:-8124}
made=
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  made=1
fi
DATA=$WORK/d
CSV=$DATA/imports/big.csv
pid=
trap '[ -n "$pid" ] && kill "$pid" 2> /dev/null; [ -n "$made" ] && rm -rf "$WORK"; true' EXIT

mkdir -p "$DATA/imports"
if [ ! -f "$CSV" ] || [ "$(stat -c %s "$CSV")" -lt "$BYTES" ]; then
  echo "== generating $BYTES bytes of CSV"
  "$GEN" "$CSV" "$BYTES"
fi
echo "== source: $(stat -c %s "$CSV") bytes, $(nproc) cores"

start() {
  NOMALY_RATE_LIMIT=0 "$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$DATA" \
    --workers 1 --chunk-workers "$1" 2> "$WORK/serve-$1.log" > "$WORK/serve-$1.out" &
  pid=$!
  for _ in $(seq 100); do
    grep -q "listening" "$WORK/serve-$1.out" 2> /dev/null && return
    sleep 0.1
  done
  echo "the server did not start"; cat "$WORK/serve-$1.log"; exit 1
}
stop() { kill -INT "$pid"; wait "$pid" || true; pid=; }

KEY=$("$BIN" keys create --tenant bench --data-dir "$DATA")
API=http://127.0.0.1:$PORT
call() { curl -sS -H "authorization: Bearer $KEY" -H 'content-type: application/json' "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
wait_task() {
  while true; do
    local t; t=$(call "$API/v1/tasks/$1")
    case $(echo "$t" | field '["status"]') in
      completed) echo "$t"; return ;;
      failed|cancelled) echo "task $1 did not complete: $t" >&2; exit 1 ;;
    esac
    sleep 0.5
  done
}

start 1
echo "== training iforest on the first 5000 rows"
body=$(python3 - "$CSV" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    cols = f.readline().strip().split(",")
    rows = [[float(x) for x in next(f).split(",")] for _ in range(5000)]
print(json.dumps({"algorithm": "iforest", "columns": cols, "rows": rows}))
PY
)
task=$(echo "$body" | call -X POST "$API/v1/models" --data-binary @- | field '["task"]["id"]')
MODEL=$(wait_task "$task" | field '["result"]')
stop
echo "model $MODEL"

cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
printf '%-8s %12s %7s %9s %12s %16s %10s %12s\n' workers rows chunks seconds rows/s "peak RSS (MiB)" "CPU s" "CPU us/row"
for n in $COUNTS; do
  start "$n"
  c0=$(cpu)
  t0=$(date +%s.%N)
  task=$(call -X POST "$API/v1/batch" \
    -d "{\"source\": {\"file\": \"big.csv\"}, \"model_id\": \"$MODEL\", \"output\": \"run-$n-$RANDOM\"}" \
    | field '["task"]["id"]')
  done_task=$(wait_task "$task")
  t1=$(date +%s.%N)
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  c1=$(cpu)
  stop
  rows=$(echo "$done_task" | field '["chunks"]["rows"]')
  chunks=$(echo "$done_task" | field '["chunks"]["total"]')
  python3 -c "
import sys
n, rows, chunks, t0, t1, hwm, c0, c1, hz = sys.argv[1:]
s = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(hz)
print(f'{n:8} {int(rows):12d} {int(chunks):7d} {s:9.1f} {int(rows) / s:12.0f} {int(hwm) / 1024:16.0f} {cpu:10.1f} {cpu / int(rows) * 1e6:12.3f}')
" "$n" "$rows" "$chunks" "$t0" "$t1" "$hwm" "$c0" "$c1" "$(getconf CLK_TCK)"
done
