"""city_events_open (migration 0017, workbench.store.open_rows): the open cases kept apart by
triggers hold exactly city_events' open rows, on SQLite and PostgreSQL, after a bulk load, the
intake path, re-sent files, the case engine's moves, moves across monthly partitions, deletes,
and for rows held before the migration; the board's counts and the overview read them."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from workbench import cases
from workbench.cockpit import overview
from workbench.events import board, flow, intake
from workbench.store import hub, open_rows
from workbench.store.ingest import insert_new, upsert
from workbench.store.schema import DATASETS

EVENTS = DATASETS["city_events"].table
OPEN = flow.OPEN_EVENTS


def _sample(days=10, seed=4, end=dt.date(2026, 3, 2)) -> pd.DataFrame:
    """The sample city's events (workbench.synth), in UTC, with every status of both case types."""
    from workbench.synth.city import generate

    ev = generate(days, seed, end)["frames"]["city_events"].drop(columns=["_stuck"], errors="ignore")
    for c in ("ts", "updated_at", "deadline", "closed_at"):
        ev[c] = pd.to_datetime(ev[c]) - pd.Timedelta(hours=8)
    rng = np.random.default_rng(seed)
    every = list(flow.STATUSES) + [None, "处理中"]   # a source's unknown status, none at all: not open
    pick = rng.random(len(ev)) < 0.3
    ev.loc[pick, "status"] = rng.choice(np.array(every, dtype=object), int(pick.sum()))
    ev.loc[ev.index[::11], "case_type"] = "inspection_task"
    return ev


def _same(eng) -> pd.DataFrame:
    """city_events_open equals city_events' open rows, column for column."""
    want = hub.query(sa.select(EVENTS).where(EVENTS.c.status.in_(cases.open_statuses("city_events"))), eng=eng)
    got = hub.query(sa.select(OPEN), eng=eng)
    cols = [c.name for c in OPEN.columns]
    want = want[cols].sort_values("event_id").reset_index(drop=True)
    got = got[cols].sort_values("event_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    return got


def _naive_counts(eng, now) -> pd.DataFrame:
    rows = hub.query(sa.select(EVENTS).where(EVENTS.c.status.in_(flow.OPEN_STATUSES)), eng=eng)
    rows["case_type"] = rows["case_type"].fillna(flow.CASE_TYPE)
    rows["late"] = pd.to_datetime(rows["deadline"]) < now
    g = rows.groupby(["case_type", "department", "status"], dropna=False).agg(n=("event_id", "size"),
                                                                             overdue=("late", "sum"))
    return g.reset_index().astype({"n": int, "overdue": int})


def test_open_table_equals_the_open_rows_through_every_write(hub_engine, tmp_path):
    ev = _sample()
    with hub_engine.begin() as conn:
        assert insert_new(conn, DATASETS["city_events"], ev) == len(ev)
    held = _same(hub_engine)
    assert 0 < len(held) < len(ev)
    assert set(held["case_type"].fillna(flow.CASE_TYPE)) == {"city_event", "inspection_task"}

    # the intake path (a department's file, dispatched through the case engine)
    recs = [{"service_request_id": f"R{i}", "service_name": "占道经营", "description": "人行道上摆摊",
             "requested_datetime": (pd.Timestamp("2026-03-01 10:00", tz="Asia/Shanghai")
                                    + pd.Timedelta(minutes=i)).isoformat(),
             "lat": 27.83 + 0.01 * i, "long": 113.15, "address": "荷塘区新华西路", "status": "open"} for i in range(5)]
    f = tmp_path / "requests.json"
    f.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    s = intake.intake_file(f, eng=hub_engine)
    assert s.loaded == 5
    got = _same(hub_engine)
    assert {f"R{i}" for i in range(5)} <= set(got["event_id"])

    # a re-sent file: statuses changed both ways, a report time moved a month (another partition)
    fix = ev.sample(300, random_state=1).copy()
    opened = fix["status"].isin(flow.OPEN_STATUSES)
    fix.loc[opened, "status"] = flow.CLOSED
    fix.loc[~opened, "status"] = flow.REOPENED
    fix.loc[fix.index[:20], "ts"] -= pd.Timedelta(days=35)
    with hub_engine.begin() as conn:
        _, updated = upsert(conn, "city_events", fix, ["status", "ts"])
    assert updated == 300
    _same(hub_engine)

    # the case engine's moves: a case dispatched, one closed, a closed one reopened
    rows = hub.read("city_events", eng=hub_engine).set_index("event_id")
    intake_id = rows.index[rows["status"] == flow.INTAKE][0]
    flow.transition(hub_engine, intake_id, flow.CASE, actor="测试")
    fb = rows.index[(rows["status"] == flow.FEEDBACK) & rows["case_type"].fillna(flow.CASE_TYPE).eq(flow.CASE_TYPE)][0]
    flow.transition(hub_engine, fb, flow.CLOSED, actor="测试")
    got = _same(hub_engine)
    assert intake_id in set(got["event_id"]) and fb not in set(got["event_id"])
    assert got.set_index("event_id").loc[intake_id, "status"] == flow.CASE
    flow.transition(hub_engine, fb, flow.REOPENED, actor="测试")
    assert fb in set(_same(hub_engine)["event_id"])

    # the board counts from it what a count over every row gives
    now = pd.Timestamp("2026-03-01 12:00")
    c = board.board_counts(hub_engine, now)
    key = ["case_type", "department", "status"]
    pd.testing.assert_frame_equal(c.sort_values(key).reset_index(drop=True)[key + ["n", "overdue"]],
                                  _naive_counts(hub_engine, now).sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    held = _same(hub_engine)   # the overview: open for its own type (a task has no 缓办)
    kind = held["case_type"].fillna(flow.CASE_TYPE)
    own = [s in cases.case_type(k).open_statuses for k, s in zip(kind, held["status"])]
    assert overview.open_cases(hub_engine, now)["open"].sum() == sum(own) + int(
        hub.query(sa.select(sa.func.count().label("n")).select_from(cases._tables(cases.STORES["cases"])[0]),
                  eng=hub_engine)["n"].iloc[0])

    # deletes, then every row away
    with hub_engine.begin() as conn:
        conn.execute(sa.delete(EVENTS).where(EVENTS.c.event_id.in_(ev["event_id"].iloc[::5].tolist())))
    _same(hub_engine)
    with hub_engine.begin() as conn:
        conn.execute(sa.delete(EVENTS))
    assert _same(hub_engine).empty


def test_installed_statuses_are_the_case_types_open_statuses(hub_engine):
    """The hub as a process opens it copies exactly the registered case types' open statuses (read
    back from the installed triggers; open_rows.ensure makes them again where they differ)."""
    with hub_engine.connect() as conn:
        got = open_rows.installed_statuses(conn, "city_events", OPEN.name)
    assert got == set(cases.open_statuses("city_events"))
    assert set(flow.OPEN_STATUSES) <= got and not got & set(flow.CLOSED_STATUSES)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_the_migration_fills_it_from_rows_held_and_downgrades(backend, tmp_path, monkeypatch, request):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_BACKUP_BEFORE_MIGRATE", "0")
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0016")
    ev = _sample(7, seed=9)
    with eng.begin() as conn:
        insert_new(conn, DATASETS["city_events"], ev)
    hub.upgrade(eng, "0017")
    assert len(_same(eng)) > 0
    with eng.begin() as conn:   # and keeps it from then on
        upsert(conn, "city_events", ev.assign(status=flow.DISPATCH).head(40), ["status"])
    _same(eng)
    from alembic import command

    command.downgrade(hub.alembic_config(eng), "0016")
    assert OPEN.name not in sa.inspect(eng).get_table_names()
    with eng.begin() as conn:   # no trigger left behind to write to a table that is gone
        upsert(conn, "city_events", ev.assign(status=flow.CLOSED).head(10), ["status"])
    hub.upgrade(eng, "0017")
    _same(eng)
    hub.dispose(url)


def test_a_case_type_added_later_is_kept_too(hub_engine, monkeypatch):
    """A department's case type kept in city_events with an open status of its own, registered
    after the migration: the hub, when opened, makes the triggers again for it (open_rows.ensure)
    and refills the table, so its open cases count on the board and the overview."""
    ev = _sample(7, seed=2)
    with hub_engine.begin() as conn:
        insert_new(conn, DATASETS["city_events"], ev)
    extra = cases.CaseType.from_dict("plugin_task", {
        "label": "插件任务", "department": "应急管理局", "store": "city_events", "intake": "复核中",
        "transitions": {"复核中": ["已办结"]}, "closed": ["已办结"]})
    monkeypatch.setitem(cases.TYPES, extra.name, extra)
    with hub_engine.begin() as conn:
        conn.execute(sa.update(EVENTS).where(EVENTS.c.event_id == ev["event_id"].iloc[0])
                     .values(case_type="plugin_task", status="复核中"))
    assert ev["event_id"].iloc[0] not in set(hub.query(sa.select(OPEN.c.event_id), eng=hub_engine)["event_id"])
    assert open_rows.ensure(hub_engine) == [OPEN.name]
    got = _same(hub_engine)
    assert ev["event_id"].iloc[0] in set(got["event_id"])
    assert open_rows.ensure(hub_engine) == []        # once made, left alone
    monkeypatch.delitem(cases.TYPES, extra.name)      # and back: the status no longer kept
    assert open_rows.ensure(hub_engine) == [OPEN.name]
    _same(hub_engine)


@pytest.mark.pg
def test_truncate_empties_it_on_postgresql(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    eng = hub.engine(pg_url)
    with eng.begin() as conn:
        insert_new(conn, DATASETS["city_events"], _sample(7, seed=5))
    assert len(_same(eng)) > 0
    with eng.begin() as conn:
        conn.execute(sa.text("TRUNCATE city_events"))
    assert _same(eng).empty
