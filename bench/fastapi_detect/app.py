"""The synchronous detection endpoint of ADR-022's Python stack, written for the load
benchmark: FastAPI under uvicorn, a scikit-learn IsolationForest fitted once per worker
process at start-up, and `POST /v1/detect` scoring the rows of each request.

It does what nomaly's `POST /v1/detect` with a `model_id` does: check a bearer key,
validate the body (a non-empty matrix of finite numbers of the model's width), score,
label against the training threshold, and answer scores, labels and the anomaly count.

Environment: BENCH_DATA (a CSV with a header; a `label` column is dropped), BENCH_KEY
(the accepted key), BENCH_TREES (default 100), BENCH_SEED (default 0).
"""

import hmac
import math
import os
import time

import numpy as np
import pandas as pd
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sklearn.ensemble import IsolationForest

DATA = os.environ["BENCH_DATA"]
KEY = os.environ["BENCH_KEY"]

frame = pd.read_csv(DATA)
frame = frame.drop(columns=[c for c in frame.columns if c == "label"])
X = frame.to_numpy(dtype=np.float64)
MODEL = IsolationForest(
    n_estimators=int(os.environ.get("BENCH_TREES", "100")),
    random_state=int(os.environ.get("BENCH_SEED", "0")),
).fit(X)
# Scores are `-score_samples` (higher = more anomalous), as nomaly's; the threshold is
# the training scores' 90th percentile (contamination 0.1), as nomaly's default.
THRESHOLD = float(np.quantile(-MODEL.score_samples(X), 0.9))
WIDTH = X.shape[1]

app = FastAPI()


class DetectRequest(BaseModel):
    model_id: str
    rows: list[list[float]]


@app.get("/healthz")
def health():
    return {"status": "ok"}


@app.post("/v1/detect")
def detect(req: DetectRequest, authorization: str = Header(default="")):
    presented = authorization.removeprefix("Bearer ")
    if not hmac.compare_digest(presented.encode(), KEY.encode()):
        raise HTTPException(status_code=401, detail="unauthorized")
    if not req.rows or any(len(r) != WIDTH for r in req.rows):
        raise HTTPException(status_code=422, detail=f"rows must be {WIDTH} wide")
    if any(not math.isfinite(v) for r in req.rows for v in r):
        raise HTTPException(status_code=422, detail="values must be finite")
    started = time.perf_counter()
    scores = -MODEL.score_samples(np.asarray(req.rows, dtype=np.float64))
    labels = (scores > THRESHOLD).astype(int)
    return {
        "model_id": req.model_id,
        "scores": scores.tolist(),
        "labels": labels.tolist(),
        "anomalies": int(labels.sum()),
        "threshold": THRESHOLD,
        "compute_ms": (time.perf_counter() - started) * 1e3,
    }
