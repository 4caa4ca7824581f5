"""The hub itself: migrations, WAL, reads, and the status the dashboards show."""
from __future__ import annotations

import threading

import pandas as pd
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from workbench import registry
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

HEAD = "0017"


def test_migrations_build_exactly_the_declared_schema(hub_engine):
    assert hub.current_revision(hub_engine) == HEAD
    with hub_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "include_name": hub.include_name}), registry.hub_metadata())
    assert diff == []
    hub.upgrade(hub_engine)  # a second upgrade is a no-op and keeps data
    assert hub.current_revision(hub_engine) == HEAD


def test_each_migration_keeps_a_users_rows(tmp_path):
    """A hub made by revision 0001 with data in it: upgrading keeps every row."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0001")
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO alerts (alert_id, ts, department, category, severity, title) "
                             "VALUES ('A1', '2026-01-05 00:00:00.000000', '应急管理局', '寒潮', 'warning', '寒潮预警')"))
    hub.upgrade(eng)
    got = hub.read("alerts", eng=eng)
    assert list(got["alert_id"]) == ["A1"] and "level" in got.columns
    hub.dispose(url)


def test_upgrade_keeps_existing_rows(hub_engine):
    ds = DATASETS["grids"]
    with hub_engine.begin() as conn:
        insert_new(conn, ds, pd.DataFrame([{"grid_id": "HT-YT-001", "district": "荷塘区", "street": "月塘街道"}]))
    hub.upgrade(hub_engine)
    assert list(hub.read("grids", eng=hub_engine)["grid_id"]) == ["HT-YT-001"]


def test_sqlite_runs_in_wal_mode(sqlite_hub):
    with sqlite_hub.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_readers_are_not_blocked_by_an_open_write(sqlite_hub):
    """A camera worker holds a write transaction; a dashboard still reads."""
    ds = DATASETS["alerts"]
    row = {"alert_id": "A1", "ts": pd.Timestamp("2026-01-05 00:00"), "department": "应急管理局",
           "category": "寒潮", "severity": "warning", "title": "寒潮黄色预警"}
    started, release = threading.Event(), threading.Event()

    def writer():
        with sqlite_hub.begin() as conn:
            insert_new(conn, ds, pd.DataFrame([row]))
            started.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    started.wait(10)
    assert len(hub.read("alerts", eng=sqlite_hub)) == 0  # uncommitted, and not blocked
    release.set()
    t.join()
    assert list(hub.read("alerts", eng=sqlite_hub)["alert_id"]) == ["A1"]


def test_read_filters_and_dataset_status(hub_engine):
    ds = DATASETS["alerts"]
    rows = [{"alert_id": f"A{i}", "ts": pd.Timestamp("2026-01-01") + pd.Timedelta(days=i),
             "department": "应急管理局", "category": "寒潮", "severity": "warning", "title": "寒潮预警"}
            for i in range(5)]
    with hub_engine.begin() as conn:
        assert insert_new(conn, ds, pd.DataFrame(rows)) == 5
        assert insert_new(conn, ds, pd.DataFrame(rows[:2])) == 0
    got = hub.read("alerts", since="2026-01-02", until="2026-01-04", eng=hub_engine)
    assert list(got["alert_id"]) == ["A1", "A2"]
    st = hub.dataset_status(hub_engine).set_index("dataset")
    assert set(st.index) == set(DATASETS)
    assert st.loc["alerts", "rows"] == 5 and st.loc["alerts", "label"] == "预警告警"
    assert st.loc["alerts", "last_ts"] == pd.Timestamp("2026-01-05")
    assert st.loc["markets", "rows"] == 0
