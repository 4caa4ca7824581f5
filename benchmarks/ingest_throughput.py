"""Ingest throughput and peak memory: a rapid-test CSV (GBK, Chinese headers) into SQLite and PostgreSQL.

Each measurement runs `ingest_file` in a fresh process on a fresh hub and reports rows/s
and that process's peak resident memory. Two file sizes show whether memory follows the
file (it must not: ingest streams in chunks).

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 1000000] [--small 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from workbench.store import hub
from workbench.store.ingest import ingest_file
eng = hub.engine(sys.argv[1])
t = time.perf_counter()
s = ingest_file("rapid_tests", sys.argv[2], eng)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": s.rows_read, "loaded": s.loaded,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(url: str, path: Path, data_dir: Path) -> dict:
    env = dict(os.environ, WORKBENCH_DATA_DIR=str(data_dir))
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(path)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL"),
                    help="PostgreSQL URL (default: $WORKBENCH_TEST_PG_URL); skipped when absent")
    args = ap.parse_args()

    from workbench.synth import write_rapid_tests_csv

    work = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    files = {}
    for n in sorted({args.small, args.rows}):
        t = time.perf_counter()
        files[n] = write_rapid_tests_csv(work / f"rapid_tests_{n}.csv", rows=n, seed=1)
        print(f"wrote {n:,} rows ({files[n].stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"{'backend':10s} {'rows':>10s} {'seconds':>8s} {'rows/s':>9s} {'peak MiB':>9s}")
    results = []
    for n, path in files.items():
        targets = [("sqlite", f"sqlite:///{work}/hub_{n}.db")]
        if args.pg:
            from workbench.store import hub

            targets.append(("postgresql", hub.pg_schema_url(args.pg, f"wb_bench_{n}")))
        for name, url in targets:
            r = measure(url, path, work / f"data_{name}_{n}")
            assert r["loaded"] == n, r
            r.update(backend=name, rows=n, rows_per_s=n / r["seconds"])
            results.append(r)
            print(f"{name:10s} {n:>10,d} {r['seconds']:8.1f} {r['rows_per_s']:9,.0f} {r['peak_mib']:9.0f}")
    if args.pg:
        import sqlalchemy as sa

        eng = sa.create_engine(args.pg)
        with eng.begin() as conn:
            for n in files:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "wb_bench_{n}" CASCADE'))
    (Path(__file__).parent / "out").mkdir(exist_ok=True)
    (Path(__file__).parent / "out" / "ingest_throughput.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
