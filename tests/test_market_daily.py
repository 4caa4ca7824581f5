"""market_daily (migration 0015): the daily summary the market page reads equals the row-level
bulletin figures, on SQLite and PostgreSQL, after ingest, corrections, re-ingest, deletes and
for rows held before the migration (backfill)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from workbench.market import daily as D
from workbench.market import figures as fg
from workbench.store import hub
from workbench.store.ingest import upsert
from workbench.store.schema import DATASETS

PEST = "有机磷和氨基甲酸酯类农药残留"
UPDATE = ["ts", "sampled_at", "district", "category", "origin", "result", "test_item", "reading", "commodity"]


def _world(n=1500, seed=3) -> pd.DataFrame:
    """Tests of batches (one stall's sample tested for one to three items within a minute),
    some without a sampling time, a stall, a district or an origin, at every hour."""
    rng = np.random.default_rng(seed)
    rows, i = [], 0
    while i < n:
        m = int(rng.integers(3))
        t0 = pd.Timestamp("2026-03-01 14:30:00") + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 6)))
        items = ([PEST] if rng.random() < 0.6 else ["克伦特罗", "莱克多巴胺", "沙丁胺醇"][: 1 + int(rng.integers(3))])
        sampled = None if rng.random() < 0.05 else t0 - pd.Timedelta(minutes=12)
        com = ["韭菜", "猪肉", "芹菜"][int(rng.integers(3))]
        stall = None if rng.random() < 0.03 else f"S{m}-{int(rng.integers(8))}"
        district = None if rng.random() < 0.03 else ["荷塘区", "芦淞区"][m % 2]
        origin = [None, "本地", "外地"][int(rng.integers(3))]  # a batch's origin is the sample's
        for it in items:
            rows.append(dict(test_id=f"T{i:05d}", ts=t0 + pd.Timedelta(seconds=int(rng.integers(0, 60))),
                             sampled_at=sampled, market_id=f"M{m}", stall_id=stall, district=district, commodity=com,
                             category="蔬菜" if com != "猪肉" else "猪肉", origin=origin, test_item=it,
                             reading=float(rng.uniform(0, 90)), result="阳性" if rng.random() < 0.08 else "阴性"))
            i += 1
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"])
    df["sampled_at"] = pd.to_datetime(df["sampled_at"])
    return df


def _markets(conn):
    upsert(conn, "markets", pd.DataFrame({"market_id": ["M0", "M1", "M2"], "name": ["东门市场", "西门市场", "南门市场"],
                                          "district": ["荷塘区", "芦淞区", "荷塘区"]}), ["name"])


def _rows(eng) -> pd.DataFrame:
    t = hub.read("rapid_tests", eng=eng)
    for c in ("ts", "sampled_at"):
        t[c] = pd.to_datetime(t[c])
    return t


def _same(eng):
    rows = _rows(eng)
    prep = fg.prepare(rows)
    daily = D.load(eng)
    counts = list(D.COUNTS)
    for by in (None, "market", "category", "origin", "district", ["day", "market"], ["day", "category", "origin"]):
        want = fg.bulletin(prep, by)
        got = D.bulletin(daily, by)
        keys = [c for c in want.columns if c not in fg.COLUMNS]
        w = want.set_index(keys)[counts].sort_index()
        g = got.set_index(keys)[counts].sort_index()
        if "day" in keys:  # the same days, whatever the resolution
            g.index = g.index.set_levels(g.index.levels[0].astype(w.index.levels[0].dtype), level=0)
        pd.testing.assert_frame_equal(g, w, check_names=False, obj=f"by {by}")
    # summed in the hub (SQL), as the page reads it
    for by in (None, "market", ["category", "origin"]):
        want = fg.bulletin(prep, by)
        got = D.figures(eng, by)
        keys = [c for c in want.columns if c not in fg.COLUMNS]
        pd.testing.assert_frame_equal(got.set_index(keys)[counts].sort_index(), want.set_index(keys)[counts].sort_index(),
                                      check_names=False, obj=f"sql by {by}")
    day = D.last_day(eng)
    assert day == prep["day"].max()
    got = D.figures(eng, "market", day - pd.Timedelta(days=2), day, district="荷塘区")
    want = fg.bulletin(prep[(prep["day"] >= day - pd.Timedelta(days=2)) & (prep["district"] == "荷塘区")], "market")
    assert got["items"].tolist() == want["items"].tolist() and got["samples"].tolist() == want["samples"].tolist()
    # the p chart's series too
    n, x = D.city_daily(daily)
    assert int(n.sum()) == len(rows) and int(x.sum()) == int((rows["result"] == "阳性").sum())


def test_summary_equals_rows_after_ingest_corrections_reingest_and_deletes(hub_engine):
    df = _world()
    with hub_engine.begin() as conn:
        _markets(conn)
        upsert(conn, "rapid_tests", df, UPDATE)
    _same(hub_engine)
    with hub_engine.begin() as conn:
        upsert(conn, "rapid_tests", df, UPDATE)  # the same file again: nothing changes
    _same(hub_engine)
    fix = df.sample(200, random_state=1).copy()  # corrections: results, items, sampling times …
    fix["result"] = np.where(fix["result"] == "阳性", "阴性", "阳性")
    fix.loc[fix.index[80:100], "test_item"] = "孔雀石绿"
    fix.loc[fix.index[100:110], "sampled_at"] = pd.NaT
    # … and whole batches moved to another origin or day (a batch's rows are corrected together)
    batch = df.groupby(["market_id", df["stall_id"].fillna(""), "commodity", df["sampled_at"].astype(str)]).ngroup()
    moved = df[batch.isin(batch.drop_duplicates().sample(60, random_state=2))].copy()
    moved["origin"] = "外地"
    moved.loc[batch[moved.index] % 2 == 0, "ts"] += pd.Timedelta(days=1, hours=3)
    fix = pd.concat([fix[~fix["test_id"].isin(moved["test_id"])], moved])
    with hub_engine.begin() as conn:
        _, updated = upsert(conn, "rapid_tests", fix, UPDATE)
    assert updated > 200
    _same(hub_engine)
    t = DATASETS["rapid_tests"].table
    gone = df["test_id"].iloc[::7].tolist()
    with hub_engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.test_id.in_(gone)))
    _same(hub_engine)
    with hub_engine.begin() as conn:  # every row away: nothing left in the summary
        conn.execute(sa.delete(t))
    assert D.load(hub_engine).empty


def test_the_migration_fills_the_summary_from_rows_held(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0014")
    df = _world(600, seed=5)
    with eng.begin() as conn:
        _markets(conn)
        upsert(conn, "rapid_tests", df, UPDATE)
    hub.upgrade(eng, "0015")
    _same(eng)
    with eng.begin() as conn:  # and keeps it from then on
        upsert(conn, "rapid_tests", df.assign(result="阳性").head(50), UPDATE)
    _same(eng)
    hub.dispose(url)


@pytest.mark.pg
def test_the_migration_fills_the_summary_on_postgresql(pg_url, monkeypatch, tmp_path):
    """The same on PostgreSQL's partitioned rapid_tests (0014): rows held at 0014, then 0015."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    eng = hub.engine(pg_url, migrate=False)
    hub.upgrade(eng, "0014")
    df = _world(500, seed=8)
    with eng.begin() as conn:
        _markets(conn)
        upsert(conn, "rapid_tests", df, UPDATE)
    hub.upgrade(eng, "0015")
    _same(eng)
    with eng.begin() as conn:
        upsert(conn, "rapid_tests", df.assign(result="阳性").head(60), UPDATE)
    _same(eng)
