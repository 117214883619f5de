#!/usr/bin/env bash
# Sizes of the Lambda packages as `cargo lambda build --release --arm64` leaves them in
# target/lambda/<function>/bootstrap: as built (release profile: debuginfo stripped,
# symbols kept), fully stripped (aarch64-linux-gnu-strip --strip-all, from Debian's
# binutils-aarch64-linux-gnu), and zipped as Lambda takes them (deflate, level 9). Run the
# build first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v aarch64-linux-gnu-strip >/dev/null || { echo "needs aarch64-linux-gnu-strip: apt-get install binutils-aarch64-linux-gnu"; exit 1; }
py=.venv/bin/python
"$py" - <<'PY'
import os, pathlib, subprocess, sys, tempfile, zipfile
root = pathlib.Path("target/lambda")
fns = ["api", "ws", "worker", "ingest", "events", "scheduler"]
print(f"{'function':<10} {'as built':>10} {'stripped':>10} {'zipped':>10}   (MiB; zipped = the stripped bootstrap, deflate 9)")
for fn in fns:
    boot = root / fn / "bootstrap"
    if not boot.is_file():
        sys.exit(f"{boot} is missing: run `cargo lambda build --release --arm64` first")
    with tempfile.TemporaryDirectory() as tmp:
        stripped = pathlib.Path(tmp) / "bootstrap"
        subprocess.run(["aarch64-linux-gnu-strip", "--strip-all", "-o", str(stripped), str(boot)], check=True)
        z = pathlib.Path(tmp) / "package.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.write(stripped, "bootstrap")
        mib = lambda p: os.path.getsize(p) / 2**20
        print(f"{fn:<10} {mib(boot):>10.2f} {mib(stripped):>10.2f} {mib(z):>10.2f}")
PY
