"""Migration 0007 on SQLite and PostgreSQL: a hub of revision 0006 holding canteen violations
with statuses and their canteen_case_history moves onto the case engine, and nothing is lost."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench import cases
from workbench.canteen import compliance as cp
from workbench.store import hub

VIOLATIONS = [  # id, ts (UTC), class, status in 0006
    ("V-OPEN", "2026-11-23 02:00:00", "未戴口罩", "open"),
    ("V-NOTE", "2026-11-23 03:00:00", "老鼠", "notified"),      # sent back after a failed check
    ("V-RECT", "2026-11-23 04:00:00", "未戴厨师帽", "rectified"),
    ("V-DONE", "2026-11-23 05:00:00", "抽烟", "verified"),
    ("V-FILE", "2026-11-23 06:00:00", "玩手机", "verified"),     # from a platform export: no history
]
HISTORY = [  # violation, ts, status, actor, note
    ("V-NOTE", "2026-11-23 04:00:00", "notified", "张三", "已电话通知"),
    ("V-NOTE", "2026-11-24 04:00:00", "rectified", "校方", "已放置捕鼠器"),
    ("V-NOTE", "2026-11-25 04:00:00", "notified", "李四", "复核发现鼠迹，退回"),
    ("V-RECT", "2026-11-23 05:00:00", "notified", "张三", None),
    ("V-RECT", "2026-11-23 09:00:00", "rectified", "校方", "已整改"),
    ("V-DONE", "2026-11-23 05:00:00", "open", "系统", "受理"),   # its intake was recorded already
    ("V-DONE", "2026-11-23 06:00:00", "notified", "张三", None),
    ("V-DONE", "2026-11-24 06:00:00", "rectified", "校方", None),
    ("V-DONE", "2026-11-25 06:00:00", "verified", "李四", "复核通过"),
]


def _hub_at_0006(url):
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0006")
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO canteens (canteen_id, name, district) VALUES ('A', '甲小学食堂', '荷塘区')"))
        for vid, ts, cls, status in VIOLATIONS:
            conn.execute(sa.text(
                "INSERT INTO canteen_violations (violation_id, ts, ts_end, camera_id, canteen_id, violation_class, "
                "status, updated_at) VALUES (:v, :ts, :ts, 'C1', 'A', :c, :s, :u)"),
                {"v": vid, "ts": pd.Timestamp(ts).to_pydatetime(), "c": cls, "s": status,
                 "u": (pd.Timestamp(ts) + pd.Timedelta(hours=30)).to_pydatetime()})
        for vid, ts, status, actor, note in HISTORY:
            conn.execute(sa.text("INSERT INTO canteen_case_history (violation_id, ts, status, actor, note) "
                                 "VALUES (:v, :ts, :s, :a, :n)"),
                         {"v": vid, "ts": pd.Timestamp(ts).to_pydatetime(), "s": status, "a": actor, "n": note})
    return eng


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_0007_moves_violations_and_history_into_the_case_engine(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    eng = _hub_at_0006(url)
    try:
        hub.upgrade(eng, "0007")
        insp = sa.inspect(eng)
        assert "canteen_case_history" not in insp.get_table_names()
        assert "status" not in {c["name"] for c in insp.get_columns("canteen_violations")}
        assert len(hub.read("canteen_violations", eng=eng)) == len(VIOLATIONS)  # no violation lost

        got = hub.read("cases", eng=eng).set_index("case_id")
        assert set(got["case_type"]) == {"canteen_rectification"} and len(got) == len(VIOLATIONS)
        assert got["status"].to_dict() == {"V-OPEN": "待处理", "V-NOTE": "退回整改", "V-RECT": "已整改",
                                           "V-DONE": "已复核", "V-FILE": "已复核"}
        assert set(got["department"]) == {"市场监管局"} and set(got["district"]) == {"荷塘区"}
        assert got.loc["V-NOTE", "subject"] == "canteen_violations:V-NOTE"
        assert got.loc["V-NOTE", "title"] == "甲小学食堂后厨老鼠整改"
        assert got.loc["V-OPEN", "deadline"] == pd.Timestamp("2026-11-26 02:00:00")
        assert got.loc["V-DONE", "closed_at"] == pd.Timestamp("2026-11-25 06:00:00")
        assert got.loc["V-FILE", "closed_at"] == pd.Timestamp("2026-11-24 12:00:00")  # its updated_at
        assert got["closed_at"].isna().sum() == 3

        h = hub.read("case_history", eng=eng)
        steps = {cid: list(g.sort_values("ts")["status"]) for cid, g in h.groupby("case_id")}
        assert steps == {
            "V-OPEN": ["待处理"],
            "V-NOTE": ["待处理", "已通知", "已整改", "退回整改"],
            "V-RECT": ["待处理", "已通知", "已整改"],
            "V-DONE": ["待处理", "已通知", "已整改", "已复核"],
            "V-FILE": ["待处理", "已复核"],
        }
        # every old history row is there, with its time, actor and note, department 市场监管局
        old = {(v, pd.Timestamp(t), a, n) for v, t, _, a, n in HISTORY}
        new = {(r.case_id, pd.Timestamp(r.ts), r.actor, None if pd.isna(r.note) else r.note) for r in h.itertuples()}
        assert old <= new and set(h["department"]) == {"市场监管局"}
        assert len(h) == len(HISTORY) + 5  # intakes of V-OPEN, V-NOTE, V-RECT, V-FILE + V-FILE's status step

        # the engine carries on from there (the hub's own schema and the case type agree)
        hub.upgrade(eng)
        with eng.begin() as conn:
            cases.transition(conn, "V-NOTE", "已整改", actor="校方", case_type_name="canteen_rectification")
        data = cp.load(eng=eng)
        assert set(cp.cases(data)["violation_id"]) == {"V-OPEN", "V-NOTE", "V-RECT"}
        assert list(data.history[data.history["violation_id"] == "V-NOTE"]["status"])[-1] == "已整改"
    finally:
        hub.dispose(url)


def test_0007_downgrade_gives_the_statuses_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = _hub_at_0006(url)
    try:
        hub.upgrade(eng, "0007")
        hub.upgrade(eng, "0007")
        from alembic import command

        command.downgrade(hub.alembic_config(eng), "0006")
        v = hub.query("SELECT violation_id, status FROM canteen_violations", eng=eng).set_index("violation_id")
        assert v["status"].to_dict() == {vid: s for vid, _, _, s in VIOLATIONS}
        h = hub.query("SELECT violation_id, status FROM canteen_case_history", eng=eng)
        assert len(h) >= len(HISTORY) - 1 and hub.query("SELECT count(*) AS n FROM cases", eng=eng)["n"][0] == 0
    finally:
        hub.dispose(url)
