"""The market page's queries at city scale (issue 14): the figures it reads from market_daily
(workbench.market.view.page_figures: last day, 本期/本月/本年, per market, category and origin of
30 days, the daily series) against the row read it replaced (market.analysis.load of 30 days).

A PostgreSQL schema of its own (`wb_market_bench`, dropped first and after; never wb_scale) is
migrated to head and filled with `--rows` rapid tests over `--days` days in the shape of
benchmarks/hub_scale.py (120 markets, districts and commodities at random, no sampling time),
through the table's triggers (the summary kept on write, one statement). The summary's size
depends on days × markets × districts, not on the rows: at 2 M rows over a year it holds as
many groups as 50 M rows over a year would, so page_figures' time here is its time at 50 M.

    .venv/bin/python benchmarks/market_queries.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
        [--rows 2000000] [--days 365] [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILL = """INSERT INTO rapid_tests (test_id, ts, market_id, district, commodity, test_item, reading, threshold, result)
  SELECT 'T' || lpad(g::text, 10, '0'), :t0 + (g * :step) * interval '1 second',
    'M' || lpad(floor(random() * 120)::text, 3, '0'),
    (ARRAY['荷塘区','芦淞区','石峰区','天元区','渌口区','醴陵市','攸县','茶陵县','炎陵县'])[1 + floor(random() * 9)::int],
    (ARRAY['韭菜','芹菜','菠菜','小白菜','豇豆','猪肉','草鱼','银耳'])[1 + floor(random() * 8)::int],
    (ARRAY['有机磷和氨基甲酸酯类农药残留','克伦特罗','孔雀石绿','二氧化硫'])[1 + floor(random() * 4)::int],
    round((random() * 60)::numeric, 1), 50.0, CASE WHEN random() < 0.02 THEN '阳性' ELSE '阴性' END
  FROM generate_series(:g0, :g1) g"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL"), required=False)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--schema", default="wb_market_bench")
    args = ap.parse_args(argv)
    if not args.pg:
        ap.error("--pg URL (or $WORKBENCH_TEST_PG_URL)")
    if args.schema == "wb_scale":
        ap.error("wb_scale is the lead's fill: choose another schema")
    from workbench.market import analysis, view
    from workbench.store import hub

    url = hub.pg_schema_url(args.pg, args.schema)
    try:
        eng = hub.engine(url)
        end = pd.Timestamp("2026-11-28 16:00")
        t0 = end - pd.Timedelta(days=args.days)
        step = args.days * 86400 / args.rows
        t = time.perf_counter()
        chunk = 500_000
        with eng.begin() as conn:
            for g0 in range(0, args.rows, chunk):
                conn.execute(sa.text(FILL), {"t0": t0.to_pydatetime(), "step": step, "g0": g0,
                                             "g1": min(args.rows, g0 + chunk) - 1})
        fill = time.perf_counter() - t
        with eng.begin() as conn:
            conn.execute(sa.text("ANALYZE rapid_tests; ANALYZE market_daily"))
            groups = conn.execute(sa.text("SELECT count(*) FROM market_daily")).scalar()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}; PostgreSQL {eng.dialect.server_version_info}")
        print(f"filled {args.rows:,} rapid tests over {args.days} days in {fill:.1f} s "
              f"(summary kept by the triggers: {groups:,} rows)")

        def timed(fn):
            times = []
            for _ in range(args.runs):
                s = time.perf_counter()
                got = fn()
                times.append(time.perf_counter() - s)
            return statistics.median(times) * 1000, got

        from collections import defaultdict

        per = defaultdict(list)

        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["t0"] = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):
            per[statement].append(time.perf_counter() - conn.info.pop("t0", time.perf_counter()))

        sa.event.listen(eng, "before_cursor_execute", before)
        sa.event.listen(eng, "after_cursor_execute", after)
        ms, figs = timed(lambda: view.page_figures(eng))
        sa.event.remove(eng, "before_cursor_execute", before)
        sa.event.remove(eng, "after_cursor_execute", after)
        print(f"view.page_figures (the page's figures, 8 SQL sums): {ms:.0f} ms median of {args.runs}; "
              f"last day {figs.last_day:%Y-%m-%d}, {len(figs.by_market)} markets")
        for stmt, ts in per.items():
            print(f"  {statistics.median(ts) * 1000:7.0f} ms × {len(ts) // args.runs}  {' '.join(stmt.split())[:150]}")
        month = end - pd.Timedelta(days=30)
        ms_rows, got = timed(lambda: analysis.load(eng=eng, since=month))
        print(f"analysis.load 30 days (the row read it replaced): {ms_rows:.0f} ms, {len(got[0]):,} rows")
    finally:
        hub.dispose(url)
        admin = sa.create_engine(args.pg)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
