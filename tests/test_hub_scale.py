"""The hub at city scale (issue 14): monthly partitions on PostgreSQL with the natural key kept,
the migration from 0013 with data in place, the pool, and a sign-in shared by two Voilà processes."""
from __future__ import annotations

import threading
import time
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from workbench import registry
from workbench.store import hub, partitions
from workbench.store.ingest import insert_new, write_rows
from workbench.store.schema import DATASETS, PARTITIONED, metadata

EV = DATASETS["city_events"]


def _events(ids, times, cls="占道经营"):
    return pd.DataFrame({"event_id": ids, "ts": pd.to_datetime(times), "event_class": cls})


def _where(conn, table="city_events", key="event_id"):
    """{key: (partition, ts)} of every row."""
    rows = conn.execute(sa.text(f"SELECT tableoid::regclass::text, {key}, ts FROM {table} ORDER BY 2, 3")).all()
    return [(k, part, ts) for part, k, ts in rows]


@pytest.fixture
def pg_hub(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_DB_URL", pg_url)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_BACKUP_BEFORE_MIGRATE", "0")
    return hub.engine(pg_url)


@pytest.mark.pg
def test_big_tables_are_partitioned_by_month_with_months_ahead(pg_hub):
    now = pd.Timestamp.now("UTC").tz_localize(None)
    with pg_hub.connect() as conn:
        for table in PARTITIONED:
            assert partitions.is_partitioned(conn, table)
            months = partitions.held_months(conn, table)
            m = partitions.month_start(now)
            for _ in range(partitions.AHEAD + 1):      # this month and the next twelve are made ahead
                assert m in months, (table, m)
                m = partitions.next_month(m)
        assert not partitions.is_partitioned(conn, "alerts")
    listing = partitions.listing(pg_hub)
    assert {"city_events_pdefault", "rapid_tests_pdefault", "canteen_violations_pdefault"} <= set(listing["partition"])
    with pg_hub.connect() as conn:    # the declared schema, partitions and key registries aside
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                       "include_name": hub.include_name}), registry.hub_metadata())
    assert diff == []
    assert hub.pool_settings()["pool_pre_ping"] and pg_hub.pool.size() == hub.pool_settings()["pool_size"]


@pytest.mark.pg
def test_rows_land_in_their_month_and_a_row_outside_is_kept_then_moved(pg_hub):
    now = pd.Timestamp.now("UTC").tz_localize(None).floor("s")
    with pg_hub.begin() as conn:
        assert insert_new(conn, EV, _events(["E1", "E2", "OLD"], [now, now + pd.DateOffset(months=2),
                                                                   "2019-03-05 08:00"])) == 3
        got = _where(conn)
    part = {k: p for k, p, _ in got}
    assert part["E1"] == f"city_events_p{now:%Y%m}"
    assert part["E2"] == f"city_events_p{now + pd.DateOffset(months=2):%Y%m}"
    assert part["OLD"] == "city_events_pdefault"      # outside every month made: the DEFAULT partition
    moved = partitions.ensure(pg_hub)                   # … which moves it into a month of its own
    assert moved["city_events"]["moved"] == 1
    with pg_hub.begin() as conn:
        part = {k: p for k, p, _ in _where(conn)}
        assert part["OLD"] == "city_events_p201903"
        assert conn.execute(sa.text("SELECT count(*) FROM city_events_pdefault")).scalar() == 0
        # its key is still held: sending it again adds nothing
        assert insert_new(conn, EV, _events(["OLD"], ["2019-03-05 08:00"])) == 0
        assert sorted(conn.execute(sa.text("SELECT event_id FROM city_events_keys")).scalars()) == ["E1", "E2", "OLD"]


@pytest.mark.pg
def test_natural_key_semantics_on_partitioned_tables(pg_hub):
    """A re-sent record is the same record (never a second row), whatever month its time says; a
    correction that changes the time moves the row and keeps the old value; a key twice in one
    batch is one row; insert_new counts only the rows the table took."""
    with pg_hub.begin() as conn:
        for m in range(3, 9):
            partitions.create_month(conn, "city_events", date(2026, m, 1))
        assert insert_new(conn, EV, _events(["A", "B"], ["2026-03-05 08:00", "2026-03-06 08:00"])) == 2
        # the same records again, and A with another month's time: nothing new
        assert insert_new(conn, EV, _events(["A", "B"], ["2026-03-05 08:00", "2026-03-06 08:00"])) == 0
        assert insert_new(conn, EV, _events(["A"], ["2026-07-01 08:00"])) == 0
        # a key twice in one batch: the first is taken
        assert insert_new(conn, EV, _events(["C", "C"], ["2026-04-01 08:00", "2026-05-01 08:00"])) == 1
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM city_events")).one() == (3, 3)
        # a correction of A's time (write_rows, corrections: newest): one row, moved to July
        w = write_rows(conn, EV, _events(["A", "B"], ["2026-07-01 08:00", "2026-03-06 08:00"]))
        assert (w.new, w.updated, w.same) == (0, 1, 1)
        got = {k: (p, ts) for k, p, ts in _where(conn)}
        assert got["A"] == ("city_events_p202607", pd.Timestamp("2026-07-01 08:00"))
        assert conn.execute(sa.text("SELECT count(*) FROM city_events WHERE event_id = 'A'")).scalar() == 1
        old = conn.execute(sa.text("SELECT old_json FROM row_versions WHERE row_key = '[\"A\"]'")).scalar()
        assert "2026-03-05 08:00:00" in old
        # the moved row still holds its key; deleting a row releases it
        assert insert_new(conn, EV, _events(["A"], ["2026-03-05 08:00"])) == 0
        conn.execute(sa.text("DELETE FROM city_events WHERE event_id = 'B'"))
        assert insert_new(conn, EV, _events(["B"], ["2026-08-06 08:00"])) == 1
        keys = sorted(conn.execute(sa.text("SELECT event_id FROM city_events_keys")).scalars())
        assert keys == ["A", "B", "C"]


@pytest.mark.pg
def test_the_same_key_sent_by_two_writers_at_once_is_one_row(pg_hub):
    """Two transactions insert the same test id with different times: the second waits for the
    first's key and, once it commits, takes nothing."""
    ds = DATASETS["rapid_tests"]

    def test(ts):
        return pd.DataFrame({"test_id": ["T1"], "ts": pd.to_datetime([ts]), "market_id": "M1", "commodity": "菠菜",
                             "test_item": "农残", "result": "阴性"})

    got = {}
    first = pg_hub.connect()
    tx = first.begin()
    assert insert_new(first, ds, test("2026-02-01 09:00")) == 1

    def second():
        with pg_hub.begin() as conn:
            got["second"] = insert_new(conn, ds, test("2026-06-01 09:00"))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()        # waiting on the first writer's key
    tx.commit()
    first.close()
    t.join(10)
    assert got["second"] == 0
    with pg_hub.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rapid_tests")).scalar() == 1


@pytest.mark.pg
def test_migration_from_0013_moves_the_data_in_place(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_BACKUP_BEFORE_MIGRATE", "0")
    eng = hub.engine(pg_url, migrate=False)
    hub.upgrade(eng, "0013")
    with eng.begin() as conn:
        assert not partitions.is_partitioned(conn, "city_events")
        insert_new(conn, EV, _events(["E1", "E2"], ["2024-02-03 10:00", "2026-10-01 10:00"]))
        insert_new(conn, DATASETS["rapid_tests"], pd.DataFrame({
            "test_id": ["T1"], "ts": pd.to_datetime(["2025-05-05 09:00"]), "market_id": "M1", "commodity": "菠菜",
            "test_item": "农残", "result": "阳性"}))
        insert_new(conn, DATASETS["canteen_violations"], pd.DataFrame({
            "violation_id": ["V1"], "ts": pd.to_datetime(["2026-11-02 12:00"]), "camera_id": "C1",
            "canteen_id": "K1", "violation_class": "未戴口罩"}))
    hub.upgrade(eng)
    assert hub.current_revision(eng) == "0017"
    with eng.begin() as conn:
        for table in PARTITIONED:
            assert partitions.is_partitioned(conn, table)
        assert {(k, p) for k, p, _ in _where(conn)} == {("E1", "city_events_p202402"), ("E2", "city_events_p202610")}
        assert _where(conn, "rapid_tests", "test_id")[0][:2] == ("T1", "rapid_tests_p202505")
        assert _where(conn, "canteen_violations", "violation_id")[0][:2] == ("V1", "canteen_violations_p202611")
        # the keys came along: re-sending the old rows adds nothing
        assert insert_new(conn, EV, _events(["E1", "E2"], ["2024-02-03 10:00", "2026-10-01 10:00"])) == 0
        names = {i["name"] for i in sa.inspect(conn).get_indexes("city_events")}
        assert {i.name for i in metadata.tables["city_events"].indexes} <= names
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                       "include_name": hub.include_name}), registry.hub_metadata())
    assert diff == []


def test_sqlite_keeps_plain_tables(sqlite_hub):
    with sqlite_hub.connect() as conn:
        assert not partitions.is_partitioned(conn, "city_events")
        names = set(sa.inspect(conn).get_table_names())
    assert "city_events" in names and not any(n.startswith("city_events_p") or n.endswith("_keys") for n in names)
    assert partitions.ensure(sqlite_hub) == {}


# ------------------------------------------------------------------ many users: several Voilà processes

def test_a_session_made_on_one_voila_process_is_accepted_by_another(voila, tmp_path):
    """Two Voilà processes on one hub and one data folder (hence one secret): the session cookie
    one of them set is good on the other; signing out on one ends it on both (sessions live in
    the hub). What lets a front spread users over processes (docs/scale.md)."""
    import nbformat
    import requests

    from conftest import TEST_PASSWORD

    folder = tmp_path / "dash"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("print('ok')")]
    nbformat.write(nb, str(folder / "ok.ipynb"))
    env = {"WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'city.db'}", "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    with voila(env, "scale-a", folder=folder, preheat=0) as a, voila(env, "scale-b", folder=folder, preheat=0) as b:
        s = requests.Session()
        s.get(a.base_url + "/login", timeout=30)
        r = s.post(a.base_url + "/login", data={"username": a.user, "password": TEST_PASSWORD,
                                                "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=30)
        assert r.status_code == 302
        cookie = {"workbench-session": s.cookies["workbench-session"]}

        def tree(srv, cookies=None):
            return requests.get(srv.base_url + "/voila/tree", cookies=cookies, allow_redirects=False, timeout=30)

        assert tree(b, cookie).status_code == 200          # B takes A's session
        assert tree(b).status_code == 302                  # no cookie: to /login
        s.get(a.base_url + "/logout", timeout=30)          # signed out on A …
        assert tree(b, cookie).status_code == 302          # … and so on B
