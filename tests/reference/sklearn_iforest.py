"""scikit-learn's IsolationForest scores for the quality test, one file per seed.

Usage: python sklearn_iforest.py INPUT.csv[.gz] OUTDIR SEED [SEED ...]

Fits IsolationForest(n_estimators=100, max_samples=256, random_state=SEED) on every
column but `label` and writes -score_samples (higher = more anomalous) as little-endian
float64 to OUTDIR/seed-SEED.f64. AUCs are computed by the Rust test, not here.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402


def main() -> None:
    path, outdir, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
    frame = pd.read_csv(path)
    x = frame.drop(columns=["label"]).to_numpy(dtype=np.float64)
    os.makedirs(outdir, exist_ok=True)
    for seed in seeds:
        model = IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=1)
        scores = -model.fit(x).score_samples(x)
        scores.astype("<f8").tofile(os.path.join(outdir, f"seed-{seed}.f64"))


if __name__ == "__main__":
    main()
