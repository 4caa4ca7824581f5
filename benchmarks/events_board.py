"""Dispatch board query time with 1 million events in the hub (goal: under 300 ms).

The hub is filled with the sample city's year of events (workbench.synth) repeated back in
time, with fresh ids, to N events; only the newest copy keeps its open cases (older copies
are closed), so the open backlog is the city's realistic one. Then the board's reads —
`board_rows` (open cases, waiting ones first, then by deadline; all departments and one
department), `board_counts` (open per department and status, overdue) and `latest_ts`
(the live poll) — are timed, median of 7 runs after one warm-up, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/events_board.py [--events 1000000] [--backlog 50000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd


def city_year(seed: int = 7) -> pd.DataFrame:
    from workbench.synth.city import generate

    ev = generate(365, seed, dt.date.today() - dt.timedelta(days=1))["frames"]["city_events"]
    ev = ev.drop(columns=["_stuck"], errors="ignore")
    for c in ("ts", "updated_at", "deadline", "closed_at"):
        ev[c] = pd.to_datetime(ev[c]) - pd.Timedelta(hours=8)  # synth times are Beijing time
    return ev


def fill(url: str, n: int, year: pd.DataFrame, backlog: int = 0) -> float:
    from tqdm import tqdm

    from workbench.events import flow
    from workbench.store import hub
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    eng = hub.engine(url)
    ds = DATASETS["city_events"]
    t = time.perf_counter()
    done, k = 0, 0
    bar = tqdm(total=n, desc="填充事件", unit="条")
    while done < n:
        part = year.head(n - done).copy()
        if k:
            shift = pd.Timedelta(days=365 * k)
            for c in ("ts", "updated_at", "deadline", "closed_at"):
                part[c] = part[c] - shift
            part["event_id"] = part["event_id"] + f"-{k}"
            part["external_id"] = part["external_id"].where(part["external_id"].isna(), part["external_id"] + f"-{k}")
            open_ = ~part["status"].isin(flow.CLOSED_STATUSES)
            part.loc[open_, "status"] = flow.CLOSED
            part.loc[open_, "closed_at"] = part.loc[open_, "updated_at"]
        for i in range(0, len(part), 50_000):
            with eng.begin() as conn:
                insert_new(conn, ds, part.iloc[i:i + 50_000])
        done += len(part)
        bar.update(len(part))
        k += 1
    bar.close()
    if backlog:  # a stuck year-old backlog: many more open cases for the board to sort
        import sqlalchemy as sa

        with eng.begin() as conn:
            conn.execute(sa.text(
                "UPDATE city_events SET status = '任务派遣', closed_at = NULL WHERE event_id IN "
                "(SELECT event_id FROM city_events WHERE event_id LIKE :pat ORDER BY event_id LIMIT :n)"),
                {"pat": "%-1", "n": int(backlog)})
    if eng.dialect.name == "postgresql":
        with eng.begin() as conn:
            conn.exec_driver_sql("ANALYZE city_events")
    else:
        with eng.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t


def timed(fn, runs: int = 7) -> float:
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)




def drop_schema(base: str, schema: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL"))
    ap.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    ap.add_argument("--backlog", type=int, default=0, help="also leave this many year-old cases open")
    args = ap.parse_args()
    os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="events-board-data-"))
    from workbench.events import board as bd
    from workbench.store import hub

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    year = city_year()
    tmp = Path(tempfile.mkdtemp(prefix="events-board-"))
    urls = [] if args.only == "postgresql" else [("SQLite", f"sqlite:///{tmp / 'board.db'}")]
    if args.pg and args.only != "sqlite":
        urls.append(("PostgreSQL", hub.pg_schema_url(args.pg, "bench_events_board")))
    if args.backlog:
        print(f"with a backlog of {args.backlog:,} open year-old cases")
    rows = []
    for name, url in urls:
        fill_s = fill(url, args.events, year, args.backlog)
        eng = hub.engine(url)
        total = int(hub.query("select count(*) as n from city_events", eng=eng)["n"].iloc[0])
        open_n = int(bd.board_counts(eng)["n"].sum())
        per_dept = bd.board_counts(eng).groupby("department")["n"].sum()
        dept = per_dept.idxmax() if len(per_dept) else None  # a small fill may leave nothing open
        r = {"backend": name, "events": total, "open": open_n, "fill_s": fill_s,
             "board_all_ms": timed(lambda: bd.board_rows(eng)),
             "board_dept_ms": timed(lambda: bd.board_rows(eng, department=dept)),
             "counts_ms": timed(lambda: bd.board_counts(eng)),
             "poll_ms": timed(lambda: bd.latest_ts(eng))}
        rows.append(r)
        print(r)
        hub.dispose(url)
    if args.pg and args.only != "sqlite":  # leave no benchmark schema behind
        drop_schema(args.pg, "bench_events_board")
    print()
    print("| backend | events | open | board (all) ms | board (one dept) ms | counts ms | poll ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['events']:,} | {r['open']:,} | {r['board_all_ms']:.0f} | {r['board_dept_ms']:.0f} "
              f"| {r['counts_ms']:.0f} | {r['poll_ms']:.1f} |")


if __name__ == "__main__":
    main()
