"""Time and Lambda cost of a batch on AWS, computed from the per-row cost measured by
bench/batch_scale.sh. Nothing here is measured: every input is either a figure from that
script (CPU per row, bytes per row) or an assumption named by its flag, printed with the
result.

    python3 bench/batch_cost.py --cpu-us-per-row 1.9 --bytes-per-row 90.5

The model, per chunk of --chunk-mib:
- compute: rows in the chunk x CPU per row, stretched by the function's share of a vCPU
  (Lambda gives 1 vCPU at 1769 MB, so 1024 MB gets 0.58 of one) and by --core-ratio (how
  much slower a Lambda arm64 core is than the measuring machine's core; 1 = the same);
- I/O: the chunk read from S3 plus its part written back (--s3-mbps each way);
- one invocation per chunk (BatchSize 1).
Wall time: the planner reads one ranged GET per chunk, 16 at a time
(--planner-get-ms each), then Lambda's SQS poller starts 5 concurrent invocations and adds up
to 300 a minute (AWS's documented scaling for standard queues) until the queue's maximum
concurrency; the batch ends when every chunk is done.
"""

import argparse
import math


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cpu-us-per-row", type=float, required=True, help="measured: CPU microseconds per row")
    p.add_argument("--bytes-per-row", type=float, required=True, help="measured: source bytes per row")
    p.add_argument("--rows", type=float, default=1e9)
    p.add_argument("--chunk-mib", type=float, default=64)
    p.add_argument("--memory-mb", type=float, default=1024)
    p.add_argument("--core-ratio", type=float, default=1.0)
    p.add_argument("--s3-mbps", type=float, default=80.0, help="assumed MB/s of one S3 GET or PUT stream")
    p.add_argument("--part-bytes-per-row", type=float, default=24.0, help="bytes of a `score,label` line")
    p.add_argument("--planner-get-ms", type=float, default=30.0, help="assumed latency of one ranged GET")
    p.add_argument("--gb-second-usd", type=float, default=0.0000133334, help="Lambda arm64 price, us-east-1")
    p.add_argument("--request-usd", type=float, default=0.20e-6, help="Lambda price per invocation")
    p.add_argument("--concurrency", type=int, nargs="+", default=[100, 1000])
    a = p.parse_args()

    chunk_bytes = a.chunk_mib * 2**20
    rows_per_chunk = chunk_bytes / a.bytes_per_row
    chunks = math.ceil(a.rows * a.bytes_per_row / chunk_bytes)
    vcpu = min(a.memory_mb / 1769.0, 1.0)
    compute_s = rows_per_chunk * a.cpu_us_per_row * 1e-6 / vcpu * a.core_ratio
    io_s = (chunk_bytes + rows_per_chunk * a.part_bytes_per_row) / (a.s3_mbps * 1e6)
    chunk_s = compute_s + io_s
    gb_s = chunks * chunk_s * a.memory_mb / 1024
    usd = gb_s * a.gb_second_usd + chunks * a.request_usd
    planner_s = chunks * a.planner_get_ms / 1000 / 16

    print(f"inputs: {a.cpu_us_per_row} CPU us/row and {a.bytes_per_row} bytes/row (measured); "
          f"{a.memory_mb:.0f} MB = {vcpu:.2f} vCPU, core ratio {a.core_ratio}, S3 {a.s3_mbps} MB/s, "
          f"planner GET {a.planner_get_ms} ms (assumed)")
    print(f"{a.rows:.0f} rows = {a.rows * a.bytes_per_row / 1e9:.1f} GB = {chunks} chunks of "
          f"{rows_per_chunk:,.0f} rows; a chunk takes {chunk_s:.1f} s ({compute_s:.1f} s compute + {io_s:.1f} s S3)")
    print(f"Lambda: {gb_s:,.0f} GB-s, ${usd:,.2f} (any concurrency; plus SQS, S3 and DynamoDB requests, cents)")
    print(f"{'concurrency':>11} {'planner s':>10} {'peak running':>13} {'scoring s':>10} {'total':>9}")
    for k in a.concurrency:
        # Step through time: concurrency ramps from 5 by 300 a minute up to k.
        done, t, step, running = 0.0, 0.0, 0.5, 5.0
        while done < chunks:
            running = min(k, 5 + 300 * t / 60)
            done += running * step / chunk_s
            t += step
        total = planner_s + t
        print(f"{k:>11} {planner_s:>10.1f} {running:>13.0f} {t:>10.0f} {total / 60:>7.1f} m")


if __name__ == "__main__":
    main()
