"""Reference scores from PyOD and scikit-learn for the quality test, one file per model
(and per seed for the random ones).

Usage: python pyod_scores.py INPUT.csv[.gz] OUTDIR MODEL[:SEED,SEED,...] [...]

MODEL is one of ECOD, COPOD, HBOS, KNN, LOF, PCA, CBLOF. Each is fit with its defaults
(KNN: k=5 as PyOD's default; LOF: scikit-learn's LocalOutlierFactor, n_neighbors=20;
CBLOF: random_state=SEED) on every column but `label`, and its decision scores on the
same rows (higher = more anomalous) are written as little-endian float64 to
OUTDIR/MODEL.f64, or OUTDIR/MODEL-SEED.f64. AUCs are computed by the Rust test, not here.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def model(name: str, seed: int):
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "COPOD":
        from pyod.models.copod import COPOD

        return COPOD()
    if name == "HBOS":
        from pyod.models.hbos import HBOS

        return HBOS()
    if name == "KNN":
        from pyod.models.knn import KNN

        return KNN()
    if name == "PCA":
        from pyod.models.pca import PCA

        return PCA()
    if name == "CBLOF":
        from pyod.models.cblof import CBLOF

        return CBLOF(random_state=seed)
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    path, outdir, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = pd.read_csv(path).drop(columns=["label"]).to_numpy(dtype=np.float64)
    os.makedirs(outdir, exist_ok=True)
    for spec in models:
        name, _, seeds = spec.partition(":")
        for seed in [int(s) for s in seeds.split(",")] if seeds else [None]:
            if name == "LOF":
                from sklearn.neighbors import LocalOutlierFactor

                lof = LocalOutlierFactor(n_neighbors=20)
                lof.fit(x)
                scores = -lof.negative_outlier_factor_
            else:
                scores = model(name, seed or 0).fit(x).decision_scores_
            file = f"{name}.f64" if seed is None else f"{name}-{seed}.f64"
            np.asarray(scores, dtype="<f8").tofile(os.path.join(outdir, file))


if __name__ == "__main__":
    main()
