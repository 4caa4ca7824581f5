"""Ingest throughput beside pandas, on the same file in one run (issue 12, "Measure").

A rapid-test CSV as a market's reader exports it (GBK, Chinese headers; workbench.synth.bench)
is taken in by:

- pandas: `pandas.read_csv` + `DataFrame.to_sql` into a fresh SQLite file (nothing checked,
  nothing kept: the yardstick);
- ours, SQLite: `ingest_file("rapid_tests", …)` as `workbench ingest rapid_tests` runs it — raw
  file kept, encoding and header found, units, names to codes, every check, quarantine, keys
  repeated within the file, corrections, unknown columns kept, personal data apart, and the
  market department's own loader and row checks (a positive raises its 快检阳性 alert);
- ours, SQLite, core only: the same without the market department's loader and row checks
  (what the hub does for a dataset no department extends);
- ours, PostgreSQL (through COPY into a staging table, then INSERT … ON CONFLICT DO NOTHING),
  and the write stage alone (COPY of checked rows), when a PostgreSQL is given.

Each measurement runs in a fresh process on a fresh hub and reports rows/s and the process's
peak resident memory; a second, smaller file shows that memory does not follow the file size.
The goal (issue 12): ours ≥ 0.5 × pandas' rows/s into SQLite; PostgreSQL ≥ 100k rows/s.

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 200000] [--small 50000] [--pg URL]
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
import json, os, resource, sys, time
mode, url, path = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
if mode == "pandas":
    import pandas as pd
    import sqlalchemy as sa
    eng = sa.create_engine(url)
    t = time.perf_counter()
    df = pd.read_csv(path, encoding="gbk")
    df.to_sql("rapid_tests", eng, index=False)
    out["seconds"] = time.perf_counter() - t
    out["rows"] = out["loaded"] = len(df)
else:
    from workbench import registry
    from workbench.store import hub, ingest
    registry.load()            # the departments' registrations: imported once per process, not timed
    if mode == "core":         # the hub alone: no department loader or row checks on rapid_tests
        ingest._LOADERS.pop("rapid_tests", None)
        ingest._CHECKS.pop("rapid_tests", None)
    eng = hub.engine(url)
    if mode == "copy":         # the write stage alone: checked chunks, then only their COPY is timed
        from pathlib import Path
        ds = ingest.DATASETS["rapid_tests"]
        _, _, chunks = ingest._open_chunks(ds, Path(path))
        plan = ingest._column_plan(ds, next(chunks), Path(path))
        ctx = ingest.ReadContext(refs=ingest.References(eng))
        frames = []
        for rows, lines, bad in chunks:
            frame, _ = ingest._frames(ds, plan, rows, None)
            values, reasons, _ = ingest.validate(ds, frame, ctx)
            frames.append(values[reasons == ""])
        t = time.perf_counter()
        n = 0
        for f in frames:
            with eng.begin() as conn:
                n += ingest.insert_new(conn, ds, f)
        out["seconds"] = time.perf_counter() - t
        out["rows"] = sum(len(f) for f in frames)
        out["loaded"] = n
    else:
        t = time.perf_counter()
        s = ingest.ingest_file("rapid_tests", path, eng)
        out["seconds"] = time.perf_counter() - t
        out["rows"], out["loaded"], out["quarantined"] = s.rows_read, s.loaded, s.quarantined
out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def measure(mode: str, url: str, path: Path, data_dir: Path) -> dict:
    env = dict(os.environ, WORKBENCH_DATA_DIR=str(data_dir))
    out = subprocess.run([sys.executable, "-c", CHILD, mode, url, str(path)], env=env, check=True,
                         capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["rows_per_s"] = r["rows"] / r["seconds"]
    return r


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import pandas

    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, pandas {pandas.__version__}, "
            f"{platform.system()} {platform.release()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--small", type=int, default=50_000, help="a second file: memory must not follow the size")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is reported")
    ap.add_argument("--no-write-stage", action="store_true", help="skip the COPY-only line (an older checkout)")
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

    print(f"machine: {machine()}")
    print(f"{'what':34s} {'rows':>9s} {'seconds':>8s} {'rows/s':>9s} {'peak MiB':>9s}")
    results = []
    schemas = []
    k = 0

    def run(label: str, mode: str, n: int, url_for) -> dict:
        nonlocal k
        best = None
        for _ in range(max(args.repeat, 1)):
            k += 1
            url = url_for(k)
            r = measure(mode, url, files[n], work / f"data_{k}")
            best = r if best is None or r["seconds"] < best["seconds"] else best
        best.update(what=label, mode=mode, file_rows=n)
        results.append(best)
        print(f"{label:34s} {best['rows']:>9,d} {best['seconds']:8.2f} {best['rows_per_s']:9,.0f} "
              f"{best['peak_mib']:9.0f}", flush=True)
        return best

    def sqlite(k: int) -> str:
        return f"sqlite:///{work}/hub_{k}.db"

    def pg(k: int) -> str:
        from workbench.store import hub

        schemas.append(f"wb_bench_{k}")
        return hub.pg_schema_url(args.pg, schemas[-1])

    n = args.rows
    pandas_r = run("pandas read_csv + to_sql, SQLite", "pandas", n, sqlite)
    ours = run("ours, SQLite (workbench ingest)", "full", n, sqlite)
    core = run("ours, SQLite, core only", "core", n, sqlite)
    if args.small != n:
        run("ours, SQLite (small file)", "full", args.small, sqlite)
    if args.pg:
        run("ours, PostgreSQL (workbench ingest)", "full", n, pg)
        run("ours, PostgreSQL, core only", "core", n, pg)
        if not args.no_write_stage:
            run("PostgreSQL write stage (COPY) only", "copy", n, pg)
    print(f"ratio to pandas (SQLite): workbench ingest {ours['rows_per_s'] / pandas_r['rows_per_s']:.2f}, "
          f"core only {core['rows_per_s'] / pandas_r['rows_per_s']:.2f} (goal ≥ 0.5)")
    if args.pg:
        import sqlalchemy as sa

        eng = sa.create_engine(args.pg)
        with eng.begin() as conn:
            for s in schemas:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{s}" CASCADE'))
        eng.dispose()
    (Path(__file__).parent / "out").mkdir(exist_ok=True)
    (Path(__file__).parent / "out" / "ingest_throughput.json").write_text(
        json.dumps({"machine": machine(), "results": results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
