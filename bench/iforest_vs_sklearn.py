"""Isolation Forest speed, scikit-learn vs nomaly, side by side in one run.

Run through iforest_vs_sklearn.sh (it builds nomaly in release mode and makes the venv).
For each matrix (shuttle, http, 1,000,000 x 10 standard normal) both implementations get
the same float64 matrix in memory: this script loads or generates it once, writes the raw
values for nomaly's bench binary, and times scikit-learn in this process with one thread.

Timed, median of --repeat runs:
  fit     scikit-learn IsolationForest.fit (contamination="auto", so no scoring inside);
          nomaly growing the trees.
  score   one scoring pass over every row: scikit-learn score_samples vs nomaly's
          Model::score, both on one thread.
nomaly is then run again on every core: fit + score of the model with its threshold, its
peak RSS, and a hash of the score bits (equal hashes = identical scores at both thread
counts). nomaly's CSV parse rate is reported separately.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402


def median_time(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], result


def sklearn_times(x, repeat):
    model = IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1)
    fit_s, _ = median_time(lambda: model.fit(x), repeat)
    score_s, _ = median_time(lambda: model.score_samples(x), repeat)
    return fit_s, score_s


def nomaly(binary, args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--data", required=True, help="tests/data/tabular")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    matrices = []
    for name, file in [("shuttle", "shuttle.csv"), ("http", "http.csv.gz")]:
        path = os.path.join(args.data, file)
        x = pd.read_csv(path).drop(columns=["label"]).to_numpy(dtype=np.float64)
        matrices.append((name, np.ascontiguousarray(x), path))
    rng = np.random.default_rng(0)
    matrices.append((f"normal {args.rows}x10", rng.standard_normal((args.rows, 10)), None))

    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; nomaly {args.binary}")
    print(f"median of {args.repeat} runs; one thread each unless marked 'all cores' ({os.cpu_count()} cores)\n")
    header = (
        f"{'matrix':<20} {'rows':>9} | {'sk fit s':>8} {'nm fit s':>8} | "
        f"{'sk score s':>10} {'nm score s':>10} {'speed-up':>8} | "
        f"{'nm all-core fit+score s':>23} {'peak RSS MiB':>12} {'same scores':>11}"
    )
    print(header)
    print("-" * len(header))
    parse_rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, csv_path in matrices:
            raw = os.path.join(tmp, "x.f64")
            x.astype("<f8").tofile(raw)
            sk_fit, sk_score = sklearn_times(x, args.repeat)
            common = ["--raw", raw, "--cols", str(x.shape[1]), "--repeat", str(args.repeat)]
            one = nomaly(args.binary, [*common, "--threads", "1"])
            every = nomaly(args.binary, [*common, "--threads", "0"])
            same = "yes" if one["score_hash"] == every["score_hash"] else "NO"
            print(
                f"{name:<20} {x.shape[0]:>9} | {sk_fit:>8.3f} {one['fit_s']:>8.3f} | "
                f"{sk_score:>10.3f} {one['score_s']:>10.3f} {sk_score / one['score_s']:>7.1f}x | "
                f"{every['fit_score_s']:>23.3f} {every['peak_rss_mib']:>12.0f} {same:>11}"
            )
            if csv_path:
                parsed = nomaly(args.binary, ["--csv", csv_path, "--exclude", "label", "--repeat", str(args.repeat), "--threads", "1"])
                parse_rates.append((name, parsed["rows"], parsed["parse_s"], parsed["parse_rows_per_s"]))
    print("\nnomaly CSV parse (read_csv, one thread, label column dropped):")
    for name, rows, secs, rate in parse_rates:
        print(f"  {name:<10} {rows:>9} rows in {secs:.3f} s = {rate:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
