"""The fault drills of tests/test_faults.py with their figures, and the backup/restore of a
sample city: rows lost, rows doubled, recovery seconds, peak memory (resident set, MiB) of
the processes involved. Each drill runs in a fresh Python process of its own, so each peak
is that drill's.

    WORKBENCH_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/fault_drills.py [--measure benchmarks/out/faults.md] [--json out.json]

Loopback only: its own Mosquitto on a free port, its own PostgreSQL schema behind a TCP
proxy it stops and starts (the PostgreSQL service is never touched), temporary SQLite hubs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRILLS = ("kill_watcher", "mosquitto_restart", "pg_outage", "poison_sqlite", "poison_pg", "backup_sqlite", "backup_pg")


def one(name: str) -> dict:
    """Run one drill here and return its figures."""
    sys.path.insert(0, str(ROOT / "tests"))
    tmp = Path(tempfile.mkdtemp(prefix=f"fault-{name}-"))
    os.environ["WORKBENCH_DATA_DIR"] = str(tmp / "data")
    import test_faults as tf

    from workbench.store import hub

    pg = os.environ.get("WORKBENCH_TEST_PG_URL")
    if name in ("kill_watcher", "pg_outage"):
        cfg = tf.kitchen(tmp / "clip")
        ref = tf.reference_run(tmp / "clip", cfg)
        if name == "kill_watcher":
            r = tf.drill_kill_watcher(tmp, cfg, ref)
        else:
            r = tf.drill_pg_outage(pg, tmp, cfg, ref)
            r["watcher"].pop("got", None)
            r["watcher"].pop("want", None)
        return r
    if name == "mosquitto_restart":
        return tf.drill_mosquitto_restart(hub.engine(f"sqlite:///{tmp / 'city.db'}"))
    if name.startswith("poison"):
        url = f"sqlite:///{tmp / 'city.db'}" if name.endswith("sqlite") else hub.pg_schema_url(pg, f"wb_poison_{os.getpid()}")
        r = tf.drill_poison(hub.engine(url))
        r["backend"] = name.split("_")[1]
        return r
    if name.startswith("backup"):
        return backup_drill(tmp, name.endswith("pg"), pg)
    raise SystemExit(f"unknown drill {name}")


def backup_drill(tmp: Path, on_pg: bool, pg: str | None) -> dict:
    """The restore drill with figures: a 30-day sample city backed up, damaged, restored."""
    import resource

    import sqlalchemy as sa

    from workbench import backup as bk
    from workbench.store import hub
    from workbench.synth import synth_city

    url = hub.pg_schema_url(pg, f"wb_backup_{os.getpid()}") if on_pg else f"sqlite:///{tmp / 'city.db'}"
    os.environ["WORKBENCH_DB_URL"] = url
    eng = hub.engine(url)
    synth_city(days=30, seed=5, eng=eng, progress=False)
    counts, digests = bk.table_counts(eng), bk.table_digests(eng)
    t0 = time.perf_counter()
    res = bk.backup(eng, tmp / "backups")
    t_backup = time.perf_counter() - t0
    with eng.begin() as conn:
        conn.execute(sa.text("DELETE FROM rapid_tests"))
        conn.execute(sa.text("UPDATE city_events SET description = 'changed'"))
    t0 = time.perf_counter()
    out = bk.restore(eng, res.folder)
    t_restore = time.perf_counter() - t0
    eng = hub.engine(url)
    after, now = bk.table_counts(eng), bk.table_digests(eng)
    after.pop("audit_log"), counts.pop("audit_log"), now.pop("audit_log"), digests.pop("audit_log")
    lost = sum(max(0, n - after.get(t, 0)) for t, n in counts.items())
    extra = sum(max(0, after.get(t, 0) - n) for t, n in counts.items())
    differ = sum(1 for t in digests if digests[t] != now.get(t))
    size = sum(p.stat().st_size for p in res.folder.rglob("*") if p.is_file())
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"fault": f"备份→删改→恢复（{'PostgreSQL pg_dump/pg_restore' if on_pg else 'SQLite 在线备份'}，30 天样例城市）",
            "rows": sum(counts.values()), "tables": len(counts), "files": res.files, "backup_mb": round(size / 1e6, 1),
            "backup_s": round(t_backup, 1), "restore_s": round(t_restore, 1), "rows_lost": lost, "duplicates": extra,
            "tables_differ": differ, "mismatched": out.mismatched, "recovery_s": round(t_restore, 1),
            "peak_mib": round(peak / 1024)}


def drop_schemas() -> None:
    """The PostgreSQL schemas this process made (wb_poison_<pid>, wb_backup_<pid>)."""
    pg = os.environ.get("WORKBENCH_TEST_PG_URL")
    if not pg:
        return
    import sqlalchemy as sa

    from workbench.store import hub

    hub.dispose()
    admin = sa.create_engine(pg)
    with admin.begin() as conn:
        for prefix in ("wb_poison_", "wb_backup_"):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{prefix}{os.getpid()}" CASCADE'))
    admin.dispose()


def row(r: dict) -> str:
    if "watcher" in r:
        w, m, i = r["watcher"], r["mqtt"], r["ingest"]
        what = (f"摄像头：中断期间事件存入发件箱，恢复后 {w['outbox_written_s']} 秒内补写，退出码 {w['exit']}；"
                f"MQTT：{m['published']} 条，未确认的批次重试 {m['retries']} 次，恢复后 {m['recovery_s']} 秒写完；"
                f"接入：中断中运行的文件报错退出（退出码 {i['during_exit']}，无 traceback），重跑入库 {i['rows']} 行")
    elif "open_at_kill" in r:
        what = (f"被杀时 {r['open_at_kill']} 起事件未结束、发件箱 {r['outbox_at_kill']} 条；重启后同一录像重放，"
                f"事件编号相同（幂等写入），退出码 {r['exit']}")
    elif "seq_gaps" in r:
        what = (f"{r['published']} 条编号消息，发布端 QoS 1 重发，监听端持久会话；重复投递 {r['redelivered']} 条被去重，"
                f"序号缺口 {r['seq_gaps']}")
    elif "poison" in r:
        what = (f"{r['backend']}：{r['poison']} 条毒消息全部隔离（打码）并确认（重试 {r['retries']} 次），"
                f"夹在其间的 {r['published'] - r['poison']} 条正常消息照常入库，主题未被阻塞")
    else:
        what = (f"{r['tables']} 张表 {r['rows']} 行 + {r['files']} 个文件，备份 {r['backup_mb']} MB 用时 {r['backup_s']} 秒，"
                f"恢复用时 {r['restore_s']} 秒，内容校验不同的表 {r['tables_differ']} 张")
    return f"| {r['fault']} | {what} | {r['rows_lost']} | {r['duplicates']} | {r['recovery_s']} | {r['peak_mib']} |"


HEADER = ("| 故障 | 发生了什么 | 丢失行数 | 重复行数 | 恢复秒数 | 峰值内存 MiB |\n"
          "|---|---|---|---|---|---|")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", choices=DRILLS, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", choices=DRILLS, default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--measure", default=None, help="Write the table (markdown) here too.")
    args = ap.parse_args()
    if args.one:
        try:
            print("\nRESULT " + json.dumps(one(args.one), ensure_ascii=False, default=str))
        finally:
            drop_schemas()
        return
    results = []
    for name in args.only or DRILLS:
        if name in ("pg_outage", "poison_pg", "backup_pg") and not os.environ.get("WORKBENCH_TEST_PG_URL"):
            print(f"{name}: skipped (WORKBENCH_TEST_PG_URL is not set)", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, timeout=900)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            print(f"{name}: failed\n{p.stderr[-3000:]}", file=sys.stderr)
            continue
        r = json.loads(line[-1][7:])
        r["drill"], r["wall_s"] = name, round(time.perf_counter() - t0, 1)
        results.append(r)
        print(row(r), flush=True)
    table = HEADER + "\n" + "\n".join(row(r) for r in results)
    machine = "2-core AMD EPYC, 24 GiB"
    print(f"\n{table}\n\n({machine}; {time.strftime('%Y-%m-%d')})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    if args.measure:
        Path(args.measure).write_text(
            "# Faults (helper: faults) — benchmarks/fault_drills.py\n\n"
            f"Machine: {machine}. Peak memory: the largest resident set of the drill's processes "
            "(the camera watcher with its ONNX model is the large one).\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
