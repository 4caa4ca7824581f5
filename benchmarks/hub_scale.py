"""The hub at city scale: PostgreSQL with 10 M city events and 50 M rapid tests, the dashboards' queries timed.

    .venv/bin/python benchmarks/hub_scale.py [--events 10000000] [--tests 50000000] [--violations 2000000]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--months 36] [--runs 3] [--keep]

A schema of its own (hub.pg_schema_url, `wb_scale`) is migrated to head (0014: monthly partitions),
then filled with generated rows over --months months ending now:
- the live path first: --live rows of each table through `ingest.insert_new` (the ingest path's COPY,
  the key registry's trigger on), its rows/s reported;
- the rest in bulk: the same COPY payload (`ingest._copy_text`) with the key trigger off, the key
  registry filled after by one INSERT … SELECT (the trigger's work, done once), then ANALYZE.
Progress (rows, rows/s, ETA) is printed while filling. Then the queries the dashboards run are timed
(median of --runs, each on a warm connection pool): the overview (`cockpit.overview.load`), the
events board (`events.board`: latest_ts, count_since, board_counts, board_rows), the canteen page's
violations of 30 days (`canteen.compliance`), the market page's rapid tests of 30 days
(`market.analysis.load`). Every SQL statement is timed too (SQLAlchemy cursor events); those over
300 ms are EXPLAINed (ANALYZE, BUFFERS). The schema is dropped at the end (--keep keeps it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DISTRICTS = ["荷塘区", "芦淞区", "石峰区", "天元区", "渌口区", "醴陵市", "攸县", "茶陵县", "炎陵县"]
DEPARTMENTS = ["城管执法局", "住建局", "生态环境局", "交通运输局", "市场监管局", "水务局"]
CLASSES = ["占道经营", "乱堆物料", "暴露垃圾", "道路破损", "井盖缺失", "噪声扰民", "违章停车", "路灯不亮"]
# most events closed long ago (核查结案 / 综合评价), a few hundred thousand open at each step
STATUSES = ["核查结案"] * 60 + ["综合评价"] * 36 + ["信息收集", "案卷建立", "任务派遣", "任务处理"]
COMMODITIES = ["小白菜", "菠菜", "芹菜", "韭菜", "豇豆", "黄瓜", "猪肉", "鸡蛋", "草鱼", "虾"]
ITEMS = ["有机磷和氨基甲酸酯类农药", "克伦特罗", "甲醛", "二氧化硫"]
VCLASSES = ["未戴口罩", "未戴厨师帽", "吸烟", "玩手机", "老鼠"]


def machine() -> str:
    from overview_bench import machine as m

    return m()


def _times(n: int, start: pd.Timestamp, end: pd.Timestamp, rng) -> np.ndarray:
    span = (end - start).value
    return np.sort(start.value + rng.integers(0, span, n)).astype("datetime64[ns]")


def gen_events(i0: int, n: int, start, end, rng) -> pd.DataFrame:
    ts = pd.to_datetime(_times(n, start, end, rng))
    st = np.array(STATUSES)[rng.integers(0, len(STATUSES), n)]
    closed = np.isin(st, ["核查结案", "综合评价"])
    deadline = ts + pd.to_timedelta(rng.integers(1, 15, n), unit="D")
    return pd.DataFrame({
        "event_id": [f"E{j:09d}" for j in range(i0, i0 + n)],
        "ts": ts,
        "updated_at": ts + pd.to_timedelta(rng.integers(60, 86400 * 5, n), unit="s"),
        "source": "12345",
        "event_group": "市容环境",
        "event_class": np.array(CLASSES)[rng.integers(0, len(CLASSES), n)],
        "district": np.array(DISTRICTS)[rng.integers(0, len(DISTRICTS), n)],
        "grid_id": [f"G{j:04d}" for j in rng.integers(0, 3000, n)],
        "lat": 27.8 + rng.random(n) * 0.2, "lon": 113.1 + rng.random(n) * 0.2,
        "loc_precision": "point",
        "status": st,
        "department": np.array(DEPARTMENTS)[rng.integers(0, len(DEPARTMENTS), n)],
        "urgency": np.where(rng.random(n) < 0.1, "紧急", "一般"),
        "deadline": deadline,
        "closed_at": pd.Series(ts + pd.to_timedelta(rng.integers(3600, 86400 * 10, n), unit="s")).where(closed),
        "case_type": "city_event",
    })


def gen_tests(i0: int, n: int, start, end, rng) -> pd.DataFrame:
    ts = pd.to_datetime(_times(n, start, end, rng))
    pos = rng.random(n) < 0.02
    return pd.DataFrame({
        "test_id": [f"T{j:010d}" for j in range(i0, i0 + n)],
        "ts": ts,
        "market_id": [f"M{j:03d}" for j in rng.integers(0, 120, n)],
        "stall_id": [f"S{j:05d}" for j in rng.integers(0, 20000, n)],
        "district": np.array(DISTRICTS)[rng.integers(0, len(DISTRICTS), n)],
        "commodity": np.array(COMMODITIES)[rng.integers(0, len(COMMODITIES), n)],
        "test_item": np.array(ITEMS)[rng.integers(0, len(ITEMS), n)],
        "reading": np.round(rng.random(n) * 60, 1),
        "threshold": 50.0,
        "result": np.where(pos, "阳性", "阴性"),
        "device_id": [f"D{j:04d}" for j in rng.integers(0, 600, n)],
        "inspector_id": [f"I{j:04d}" for j in rng.integers(0, 400, n)],
    })


def gen_violations(i0: int, n: int, start, end, rng) -> pd.DataFrame:
    ts = pd.to_datetime(_times(n, start, end, rng))
    cam = rng.integers(0, 3000, n)
    return pd.DataFrame({
        "violation_id": [f"V{j:09d}" for j in range(i0, i0 + n)],
        "ts": ts, "ts_end": ts + pd.to_timedelta(rng.integers(5, 300, n), unit="s"),
        "camera_id": [f"C{j:05d}" for j in cam],
        "canteen_id": [f"K{j // 3:04d}" for j in cam],
        "district": np.array(DISTRICTS)[rng.integers(0, len(DISTRICTS), n)],
        "violation_class": np.array(VCLASSES)[rng.integers(0, len(VCLASSES), n)],
        "severity": np.where(rng.random(n) < 0.1, "critical", "warning"),
        "score": np.round(rng.random(n), 3), "source": "camera-ai",
    })


GEN = {"city_events": gen_events, "rapid_tests": gen_tests, "canteen_violations": gen_violations}


def _arr(values) -> str:
    return "ARRAY[" + ", ".join("'" + v + "'" for v in values) + "]"


def _pick(values) -> str:
    return f"({_arr(values)})[1 + floor(random() * {len(values)})::int]"


# the bulk part: the same distributions made by PostgreSQL itself (INSERT … SELECT generate_series),
# rows in time order (g grows with ts): Python + COPY text here is ~10 k rows/s on this machine
BULK_SQL = {
    "city_events": """INSERT INTO city_events (event_id, ts, updated_at, source, event_group, event_class, district,
        grid_id, lat, lon, loc_precision, status, department, urgency, deadline, closed_at, case_type)
      SELECT 'E' || lpad(g::text, 9, '0'), t, t + random() * interval '5 days', '12345', '市容环境', %(cls)s, %(dis)s,
        'G' || lpad(floor(random() * 3000)::text, 4, '0'), 27.8 + random() * 0.2, 113.1 + random() * 0.2, 'point',
        st, %(dep)s, CASE WHEN random() < 0.1 THEN '紧急' ELSE '一般' END, t + (1 + floor(random() * 14)) * interval '1 day',
        CASE WHEN st IN ('核查结案', '综合评价') THEN t + random() * interval '10 days' END, 'city_event'
      FROM (SELECT g, :t0 + (g - :g0) * :step * interval '1 second' AS t, %(st)s AS st
            FROM generate_series(:g0, :g1) g) s""",
    # the columns the dashboards read (no stall, device or inspector: 50 M rows within ~20 GB of disk)
    "rapid_tests": """INSERT INTO rapid_tests (test_id, ts, market_id, district, commodity, test_item, reading,
        threshold, result)
      SELECT 'T' || lpad(g::text, 10, '0'), :t0 + (g - :g0) * :step * interval '1 second',
        'M' || lpad(floor(random() * 120)::text, 3, '0'), %(dis)s,
        %(com)s, %(item)s, round((random() * 60)::numeric, 1), 50.0,
        CASE WHEN random() < 0.02 THEN '阳性' ELSE '阴性' END
      FROM generate_series(:g0, :g1) g""",
    "canteen_violations": """INSERT INTO canteen_violations (violation_id, ts, ts_end, camera_id, canteen_id, district,
        violation_class, severity, score, source)
      SELECT 'V' || lpad(g::text, 9, '0'), t, t + random() * interval '5 minutes', 'C' || lpad(c::text, 5, '0'),
        'K' || lpad((c / 3)::text, 4, '0'), %(dis)s, %(vc)s, CASE WHEN random() < 0.1 THEN 'critical' ELSE 'warning' END,
        round(random()::numeric, 3), 'camera-ai'
      FROM (SELECT g, :t0 + (g - :g0) * :step * interval '1 second' AS t, floor(random() * 3000)::int AS c
            FROM generate_series(:g0, :g1) g) s""",
}
_PICKS = {"cls": _pick(CLASSES), "dis": _pick(DISTRICTS), "dep": _pick(DEPARTMENTS), "st": _pick(STATUSES),
          "com": _pick(COMMODITIES), "item": _pick(ITEMS), "vc": _pick(VCLASSES)}


def fill(eng, table: str, total: int, live: int, start, end, chunk: int = 1_000_000) -> dict:
    """`live` rows through ingest.insert_new (trigger on), the rest by COPY with the key trigger off."""
    from workbench.store import partitions as P
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    ds = DATASETS[table]
    rng = np.random.default_rng(abs(hash(table)) % 2**32)
    with eng.begin() as conn:   # the months of the span have their partitions
        m = P.month_start(start)
        have = P.held_months(conn, table)
        while m <= P.month_start(end):
            if m not in have:
                P.create_month(conn, table, m)
            m = P.next_month(m)
    out = {"rows": total}
    t0 = time.perf_counter()
    done = 0
    # the span is cut in consecutive slices so each chunk is in time order, like an intake
    edges = pd.date_range(start, end, periods=max(2, total // chunk + 1))

    def progress(phase):
        el = time.perf_counter() - t0
        rate = done / el if el else 0
        eta = (total - done) / rate if rate else float("nan")
        print(f"  {table}: {done:,}/{total:,} rows ({phase}) {rate:,.0f} rows/s, {el:,.0f} s, ETA {eta:,.0f} s",
              flush=True)

    k = 0
    live_s = None
    trigger_off = False
    while done < total:
        n = min(chunk, total - done)
        a, b = edges[min(k, len(edges) - 2)], edges[min(k + 1, len(edges) - 1)]
        if done < live:
            df = GEN[table](done, min(200_000, live - done), a, b, rng)
            tl = time.perf_counter()
            with eng.begin() as conn:
                got = insert_new(conn, ds, df)
            assert got == len(df), (got, len(df))
            live_s = (live_s or 0) + time.perf_counter() - tl
            done += len(df)
            if done >= live:
                out["live_rows_per_s"] = round(live / live_s)
                progress("ingest path, key trigger on")
            continue
        if not trigger_off:
            with eng.begin() as conn:
                conn.execute(sa.text(f'ALTER TABLE "{table}" DISABLE TRIGGER {table}_key_in'))
            trigger_off = True
        step = (end - start).total_seconds() / total
        t_first = (start + pd.Timedelta(seconds=round(done * step, 3))).to_pydatetime()
        with eng.begin() as conn:
            conn.execute(sa.text(BULK_SQL[table] % _PICKS), {"g0": done, "g1": done + n - 1, "t0": t_first,
                                                               "step": step})
        done += n
        k += 1
        if k % 2 == 0 or done >= total:
            progress("bulk INSERT … SELECT generate_series, key trigger off")
    if trigger_off:
        tk = time.perf_counter()
        key = P.key_column(table)
        with eng.begin() as conn:
            conn.execute(sa.text(f'INSERT INTO "{table}_keys" ({key}) SELECT {key} FROM "{table}" ON CONFLICT DO NOTHING'))
            conn.execute(sa.text(f'ALTER TABLE "{table}" ENABLE TRIGGER {table}_key_in'))
        out["keys_s"] = round(time.perf_counter() - tk, 1)
    ta = time.perf_counter()
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'ANALYZE "{table}"'))
        for side in open_tables(table):   # as autovacuum does after the triggers filled it
            conn.execute(sa.text(f'VACUUM (ANALYZE) "{side}"'))
    out["analyze_s"] = round(time.perf_counter() - ta, 1)
    out["fill_s"] = round(time.perf_counter() - t0, 1)
    print(f"  {table}: filled in {out['fill_s']:,.0f} s (key registry {out.get('keys_s', 0)} s, "
          f"ANALYZE {out['analyze_s']} s)", flush=True)
    return out


def open_tables(table: str) -> list[str]:
    """The open rows' tables kept by triggers on `table` (city_events_open: migration 0017)."""
    from workbench import cases

    cases._ensure_registered()
    return [st.open_rows.name for st in cases.STORES.values() if st.table == table and st.open_rows is not None]


class StatementClock:
    """Every SQL statement the dashboards' functions send, with its time (cursor events)."""

    def __init__(self, eng):
        self.eng = eng
        self.times: dict[str, list[float]] = defaultdict(list)
        self.params: dict[str, object] = {}
        sa.event.listen(eng, "before_cursor_execute", self.before)
        sa.event.listen(eng, "after_cursor_execute", self.after)

    def before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info["wb_t0"] = time.perf_counter()

    def after(self, conn, cursor, statement, parameters, context, executemany):
        self.times[statement].append(time.perf_counter() - conn.info.pop("wb_t0", time.perf_counter()))
        self.params[statement] = parameters


def run_queries(eng, runs: int, end) -> tuple[list[dict], StatementClock]:
    from workbench import clock as wb_clock
    from workbench.canteen import compliance
    from workbench.cockpit import overview as ov
    from workbench.events import board as bd
    from workbench.events import analysis as ea
    from workbench.market import view
    from workbench.ui import events_page

    last = bd.latest_ts(eng)
    t = time.perf_counter()
    pat = ea.run(90, eng=eng)   # the scheduled job (`workbench events analyse`): once, not on a visit
    print(f"  事件规律分析 events analyse（定时任务，90 天 {pat.events:,} 件）: {time.perf_counter() - t:,.1f} s", flush=True)
    month = pd.Timestamp(end) - pd.Timedelta(days=30)
    work = {
        # the week's department evaluation is computed on the first read and kept for an hour
        # (cockpit.overview.evaluation): the first of the runs computes it, the others read it
        "总览 部门考核 overview.evaluate（读入本周期案件计算，每小时一次）": lambda: ov.evaluate(
            eng, ov.parse_filters({}, ov.data_until(eng, wb_clock.now()), wb_clock.local_day(wb_clock.now()).date()),
            wb_clock.now()),
        "总览 overview.load（全部指标；部门考核已保存）": lambda: ov.load(eng=eng),
        "事件看板 latest_ts": lambda: bd.latest_ts(eng),
        "事件看板 count_since（1 小时）": lambda: bd.count_since(last - pd.Timedelta(hours=1), eng),
        "事件看板 board_counts": lambda: bd.board_counts(eng),
        "事件看板 board_rows（一页 50 行）": lambda: bd.board_rows(eng, limit=50),
        "事件看板 board_rows 第 3 页": lambda: bd.board_rows(eng, limit=50, offset=100),
        "事件看板 board_rows 一个部门": lambda: bd.board_rows(eng, department=DEPARTMENTS[0], limit=50),
        "事件页 open_states（全部在办事件）": lambda: bd.open_states(eng),
        "事件页 90 天事件（规律分析窗口）": lambda: bd.load_events(90, eng=eng, columns=bd.WINDOW_COLUMNS),
        "事件页 load()（城市用户：已保存的规律 + 在办事件 + 计数）": lambda: events_page.load(eng=eng),
        "明厨亮灶 30 天违规": lambda: compliance.load(eng=eng, since=month) if _takes_since() else None,
        "农贸市场页 page_figures（market_daily 汇总）": lambda: view.page_figures(eng),
    }
    clock = StatementClock(eng)
    rows = []
    for name, fn in work.items():
        times = []
        got = None
        for _ in range(runs):
            t = time.perf_counter()
            got = fn()
            times.append(time.perf_counter() - t)
        n = _size(got)
        rows.append({"query": name, "median_ms": round(statistics.median(times) * 1000), "rows": n})
        print(f"  {name}: {rows[-1]['median_ms']} ms (median of {runs}), {n} rows", flush=True)
    return rows, clock


def _takes_since() -> bool:
    import inspect

    from workbench.canteen import compliance

    return "since" in inspect.signature(compliance.load).parameters


def _size(got) -> int | str:
    if isinstance(got, pd.DataFrame):
        return len(got)
    if isinstance(got, tuple):
        return "+".join(str(len(g)) for g in got if isinstance(g, pd.DataFrame))
    if hasattr(got, "violations"):
        return len(got.violations)
    return "" if got is None else "1"


def explain_slow(eng, clock: StatementClock, limit_ms: float = 300) -> list[tuple[str, float, str]]:
    out = []
    for stmt, ts in clock.times.items():
        med = statistics.median(ts) * 1000
        if med < limit_ms or not stmt.lstrip().upper().startswith("SELECT"):
            continue
        with eng.connect() as conn:
            cur = conn.connection.dbapi_connection.cursor()
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, clock.params.get(stmt))
            plan = "\n".join(r[0] for r in cur.fetchall())
        out.append((stmt, med, plan))
    return out


# statuses an earlier version of this script wrote that are not city_event steps (flow.STATUSES)
OLD_STATUSES = {"立案": "案卷建立", "派遣": "任务派遣", "处置": "任务处理"}


def reuse_tidy(eng, tables) -> None:
    """A kept schema made ready to time as a live hub would be: statuses of an older fill mapped to
    the city_event steps, and VACUUM (ANALYZE) of the big tables (their visibility maps, which
    index-only scans need, are what autovacuum keeps on a live hub)."""
    t0 = time.perf_counter()
    if "city_events" in tables:
        with eng.begin() as conn:
            n = conn.execute(sa.text(
                "UPDATE city_events SET status = CASE status " + " ".join(
                    f"WHEN '{a}' THEN '{b}'" for a, b in OLD_STATUSES.items()) + " END "
                "WHERE status IN (" + ", ".join(f"'{a}'" for a in OLD_STATUSES) + ")")).rowcount
        if n:
            print(f"  city_events: {n:,} rows of an older fill given city_event steps", flush=True)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in [x for t in tables for x in (t, *open_tables(t))]:
            t = time.perf_counter()
            conn.execute(sa.text(f'VACUUM (ANALYZE) "{table}"'))
            print(f"  {table}: VACUUM (ANALYZE) {time.perf_counter() - t:,.0f} s", flush=True)
    print(f"  kept schema tidied in {time.perf_counter() - t0:,.0f} s", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL",
                                                   "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--tests", type=int, default=50_000_000)
    ap.add_argument("--violations", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=200_000, help="rows per table through insert_new, trigger on")
    ap.add_argument("--months", type=int, default=36)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--schema", default="wb_scale")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="a schema kept by an earlier --keep run: migrate it to head, fill only empty tables, time")
    args = ap.parse_args(argv)
    os.environ["WORKBENCH_BACKUP_BEFORE_MIGRATE"] = "0"
    os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="wb-scale-"))   # kept analyses go there
    from workbench.store import hub

    print("machine:", machine(), flush=True)
    url = hub.pg_schema_url(args.pg, args.schema, fresh=not args.reuse)   # --reuse: the kept rows stay
    os.environ["WORKBENCH_DB_URL"] = url
    try:
        eng = hub.engine(url)
        with eng.connect() as conn:
            print("PostgreSQL:", conn.execute(sa.text("SHOW server_version")).scalar(), flush=True)
        end = pd.Timestamp.now("UTC").tz_localize(None).floor("h")
        held = {}
        if args.reuse:   # the kept rows end when they were made: the queries' windows end there too
            with eng.connect() as conn:
                for table in ("city_events", "canteen_violations", "rapid_tests"):
                    held[table] = conn.execute(sa.text(
                        f"SELECT EXISTS (SELECT 1 FROM {table})")).scalar() if sa.inspect(conn).has_table(table) else False
                last = conn.execute(sa.text("SELECT max(ts) FROM city_events")).scalar() if held.get("city_events") else None
            if last is not None:
                end = pd.Timestamp(last).floor("h") + pd.Timedelta(hours=1)
            print("reusing the kept schema:", ", ".join(f"{t} {'kept' if h else 'empty'}" for t, h in held.items()),
                  flush=True)
            reuse_tidy(eng, [t for t, h in held.items() if h])
        start = end - pd.DateOffset(months=args.months)
        t0 = time.perf_counter()
        fills = {}
        for table, n in (("city_events", args.events), ("canteen_violations", args.violations),
                         ("rapid_tests", args.tests)):
            if n and not held.get(table):
                fills[table] = fill(eng, table, n, min(args.live, n), start, end)
        fill_s = time.perf_counter() - t0
        with eng.connect() as conn:
            size = conn.execute(sa.text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 't', 'm')")).scalar()
        print(f"filled in {fill_s:,.0f} s; schema on disk {size / 2**30:.1f} GiB", flush=True)
        for t, f in fills.items():
            print(f"  {t}: {f}", flush=True)
        rows, clock = run_queries(eng, args.runs, end)
        print("\nstatements (median ms, calls) over 100 ms:")
        for stmt, ts in sorted(clock.times.items(), key=lambda kv: -statistics.median(kv[1])):
            med = statistics.median(ts) * 1000
            if med >= 100:
                print(f"  {med:8.0f} ms ×{len(ts)}  {' '.join(stmt.split())[:220]}")
        for stmt, med, plan in explain_slow(eng, clock):
            print(f"\nEXPLAIN ({med:.0f} ms): {' '.join(stmt.split())[:300]}\n{plan}")
        print("\n| 查询 | 中位数 (ms) | 行数 |\n|---|---:|---:|")
        for r in rows:
            print(f"| {r['query']} | {r['median_ms']} | {r['rows']} |")
    finally:
        hub.dispose()
        if not args.keep:
            admin = sa.create_engine(args.pg)
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
            admin.dispose()
            print(f"schema {args.schema} dropped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
