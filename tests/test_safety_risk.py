"""Risk by grid: the arithmetic of each factor on hand-made frames, the ordering, the
contributions summing to the score; the sample city; and the risk-review report."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from workbench.safety import ledger as lg
from workbench.safety import risk as rk

T = pd.Timestamp
AS_OF = T("2026-01-20 00:00")


def grids():
    return pd.DataFrame({"grid_id": ["G1", "G2", "G3", "G4"], "district": ["荷塘区", "荷塘区", "芦淞区", "芦淞区"],
                         "street": ["月塘街道", "月塘街道", "建设街道", "建设街道"], "lat": [27.86, 27.87, 27.80, 27.81],
                         "lon": [113.17, 113.18, 113.16, 113.15], "population": [3000, 2000, 4000, 1000]})


def sites():
    return pd.DataFrame({"site_id": ["S1", "S2", "S3"], "site_type": ["养老院", "高层建筑", "自建房"],
                         "name": ["敬老院", "大厦", "自建房"], "district": ["荷塘区", "荷塘区", "芦淞区"],
                         "grid_id": ["G1", "G2", "G3"]})


def hazards():
    rows = [  # id, site, level, found, deadline, rectified
        ("H1", "S1", "一般", "2025-12-21", "2026-01-30", None),   # open 30 d, not overdue, 养老院
        ("H2", "S2", "重大", "2026-01-05", "2026-01-15", None),   # open 15 d, overdue 5 d
        ("H3", "S2", "一般", "2025-10-01", "2025-10-10", "2025-10-09"),  # rectified: no points
        ("H4", "S3", "一般", "2025-08-22", "2025-09-01", None),   # open 151 d (age capped), overdue 141 d (capped), 自建房
    ]
    df = pd.DataFrame(rows, columns=["hazard_id", "site_id", "level", "ts", "deadline", "rectified_at"])
    for c in ("ts", "deadline", "rectified_at"):
        df[c] = pd.to_datetime(df[c])
    return df.assign(hazard_type="x", verified_at=pd.NaT, status=None, district=None)


def events():
    rows = [  # id, ts, grid, group, urgency, source
        ("E1", "2026-01-10", "G4", "突发事件", "紧急", "12345热线"),
        ("E2", "2026-01-11", "G4", "突发事件", "一般", "网格员"),
        ("E3", "2025-09-01", "G4", "突发事件", "紧急", "网格员"),      # outside 90 days
        ("E4", "2026-01-12", "G4", "市容环境", "一般", "网格员"),      # not an incident group
        ("E5", "2026-01-13", "G4", "突发事件", "紧急", "预警联动"),    # an inspection task, not an incident
        ("E6", "2026-01-21", "G4", "突发事件", "紧急", "网格员"),      # after as_of
        ("E7", "2026-01-14", "G1", "突发事件", "一般", "物联感知"),
    ]
    df = pd.DataFrame(rows, columns=["event_id", "ts", "grid_id", "event_group", "urgency", "source"])
    return df.assign(ts=pd.to_datetime(df["ts"]), event_class="x")


def risk():
    return rk.grid_risk(grids(), sites(), hazards(), events(), AS_OF).set_index("grid_id")


def test_each_factor_arithmetic():
    r = risk()
    w = rk.WEIGHTS
    # G1: one open 一般 at a nursing home, 30 days old; one incident
    assert r.loc["G1", "pts_general"] == pytest.approx(w.general)
    assert r.loc["G1", "pts_age"] == pytest.approx(1.0)
    assert r.loc["G1", "pts_site_type"] == pytest.approx(0.5 * (2.0 + 1.0))
    assert r.loc["G1", "pts_incidents"] == pytest.approx(w.incident)
    assert r.loc["G1", "score"] == pytest.approx(2.0 + 1.0 + 1.5 + 0.5)
    # G2: one open 重大, 15 days old, 5 days overdue, 高层建筑 (factor 1); H3 rectified counts nothing
    assert r.loc["G2", "pts_major"] == pytest.approx(8.0) and r.loc["G2", "pts_general"] == 0
    assert r.loc["G2", "pts_age"] == pytest.approx(0.5)
    assert r.loc["G2", "pts_overdue"] == pytest.approx(3.0 + 0.5)
    assert r.loc["G2", "pts_site_type"] == 0 and r.loc["G2", "open_major"] == 1 and r.loc["G2", "overdue"] == 1
    # G3: caps on age (3) and on overdue days (3 more), then 自建房 ×1.5
    own = 2.0 + 3.0 + 3.0 + 3.0
    assert r.loc["G3", "pts_age"] == pytest.approx(3.0) and r.loc["G3", "pts_overdue"] == pytest.approx(6.0)
    assert r.loc["G3", "pts_site_type"] == pytest.approx(0.5 * own)
    assert r.loc["G3", "score"] == pytest.approx(round(1.5 * own, 1))
    assert r.loc["G3", "vulnerable_open"] == 1 and r.loc["G3", "weighted_types"] == "自建房"
    # G4: E1 (紧急) + E2 only
    assert r.loc["G4", "incidents"] == 2 and r.loc["G4", "pts_incidents"] == pytest.approx(w.incident_urgent + w.incident)


def test_events_placed_by_address_share_their_streets_grids():
    """A hotline work order without coordinates, placed by its address to 建设街道 only, adds its
    points to that street's two grids in equal shares; one placed only to its district is in
    no grid's score; the grids' own counts stay those of the events placed in them."""
    extra = pd.DataFrame({"event_id": ["A1", "A2"], "ts": pd.to_datetime(["2026-01-15", "2026-01-15"]),
                          "grid_id": [None, None], "district": ["芦淞区", "荷塘区"], "street": ["建设街道", None],
                          "event_group": ["突发事件", "突发事件"], "urgency": ["紧急", "紧急"],
                          "source": ["12345热线", "12345热线"], "event_class": "x"})
    base = risk()
    r = rk.grid_risk(grids(), sites(), hazards(), pd.concat([events(), extra], ignore_index=True),
                     AS_OF).set_index("grid_id")
    w = rk.WEIGHTS
    for g in ("G3", "G4"):
        assert r.loc[g, "pts_incidents"] == pytest.approx(base.loc[g, "pts_incidents"] + w.incident_urgent / 2)
        assert r.loc[g, "incidents_by_street"] == 1 and r.loc[g, "incidents"] == base.loc[g, "incidents"]
    assert "按地址定位到所在街道的 1 起" in r.loc["G4", "reasons"]
    for g in ("G1", "G2"):   # the district-only event is guessed into no grid of 荷塘区
        assert r.loc[g, "pts_incidents"] == base.loc[g, "pts_incidents"] and r.loc[g, "incidents_by_street"] == 0
    assert r["score"].sum() == pytest.approx(base["score"].sum() + w.incident_urgent, abs=0.2)


def test_contributions_sum_to_score_and_ranking():
    r = rk.grid_risk(grids(), sites(), hazards(), events(), AS_OF)
    assert (r[list(rk.FACTOR_COLUMNS)].sum(axis=1).round(1) == r["score"]).all()
    assert list(r["grid_id"]) == ["G3", "G2", "G1", "G4"] and list(r["rank"]) == [1, 2, 3, 4]
    assert r["score"].is_monotonic_decreasing
    top = r.set_index("grid_id")
    assert top.loc["G3", "band"] == "高风险" and top.loc["G2", "band"] == "较高风险"
    assert top.loc["G1", "band"] == "一般风险" and top.loc["G4", "band"] == "低风险"
    assert top.loc["G2", "top_factor"] == "重大隐患"
    assert "未整改重大隐患 1 项 +8.0" in top.loc["G2", "reasons"] and "逾期 1 项 +3.5" in top.loc["G2", "reasons"]
    assert "养老院加权 +1.5" in top.loc["G1", "reasons"]


def test_weights_change_the_score_and_are_documented():
    heavy = rk.RiskWeights(incident=5.0, incident_urgent=5.0)
    r = rk.grid_risk(grids(), sites(), hazards(), events(), AS_OF, heavy)
    assert r.iloc[0]["grid_id"] == "G3" and r.set_index("grid_id").loc["G4", "score"] == 10.0
    table = rk.weights_table()
    assert list(table["factor"]) == [label for _, label in rk.FACTORS]
    assert "养老院 ×1.5" in table.set_index("factor").loc["场所类型加权", "rule"]


def test_unknown_grids_empty_inputs_and_helpers():
    s = sites()
    s.loc[2, "grid_id"] = "G9"  # a grid the grid list does not hold
    s = s.assign(lat=[27.86, 27.87, 27.7], lon=[113.17, 113.18, 113.1])
    r = rk.grid_risk(grids(), s, hazards(), events(), AS_OF).set_index("grid_id")
    assert r.loc["G9", "score"] > 0 and r.loc["G9", "lat"] == pytest.approx(27.7)
    empty = rk.grid_risk(grids().iloc[:0], sites().iloc[:0], hazards().iloc[:0], events().iloc[:0], AS_OF)
    assert empty.empty and list(empty.columns)[:2] == ["rank", "grid_id"]
    quiet = rk.grid_risk(grids(), sites(), hazards().iloc[:0], events().iloc[:0], AS_OF)
    assert (quiet["score"] == 0).all() and (quiet["band"] == rk.NO_RISK).all()
    full = rk.grid_risk(grids(), sites(), hazards(), events(), AS_OF)
    assert list(rk.top_grids(full, 2, "荷塘区")["grid_id"]) == ["G2", "G1"]
    d = rk.district_risk(full).set_index("district")
    assert d.loc["芦淞区", "grids"] == 2 and d.loc["芦淞区", "score"] == pytest.approx(full["score"].iloc[[0, 3]].sum())


def test_sample_city_top_grids(sample_city):
    inputs = rk.load_risk_inputs()
    led = lg.load_ledger()
    assert inputs.as_of <= T("2026-01-21") and inputs.as_of >= T("2026-01-19")
    r = rk.grid_risk_from(inputs)
    assert len(r) >= 500 and r["score"].is_monotonic_decreasing
    assert (r[list(rk.FACTOR_COLUMNS)].sum(axis=1).round(1) == r["score"]).all()
    top = r.head(10)
    assert (top["score"] > 0).all() and top["reasons"].str.len().gt(0).all()
    # the grid of the longest-overdue hazard ranks near the top
    st = lg.hazard_states(led.hazards, inputs.as_of, led.sites)
    od = lg.overdue_hazards(st)
    if len(od):
        assert od.iloc[0]["grid_id"] in set(r.head(3)["grid_id"])
    # grids with open hazards all score; grids with nothing at all score 0
    open_grids = set(st.loc[st["open"], "grid_id"])
    assert (r.set_index("grid_id").loc[sorted(open_grids), "score"] > 0).all()
    assert (r["score"] == 0).sum() > 100


def test_risk_review_report(sample_city):
    """The weekly review as a bulletin: one title, the summary first with the hand-counted numbers
    (the hub read directly, not through workbench.safety), decisions, tables, notes; PDF and Excel."""
    import openpyxl

    from workbench.store import hub

    r = subprocess.run([sys.executable, "-m", "workbench.cli", "report", "run", "risk_review", "-p", "district", "芦淞区",
                        "-p", "start", "2026-01-14", "-p", "end", "2026-01-20", "--date", "2026-01-21"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # one district's review: a folder of its own, not the city's weekly one (reports.out_id_of)
    out = next(Path(sample_city["WORKBENCH_REPORTS_OUT"]).glob("*/2026-01-21.ipynb")).parent
    assert out.name == "risk_review-芦淞区"
    nb = nbformat.read(out / "2026-01-21.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    page = (out / "2026-01-21.html").read_text(encoding="utf-8")
    body = page.split("<body", 1)[1]
    assert body.count("<h1") == 1 and "城市安全风险研判周报 · 芦淞区" in body and "2026-01-14 至 2026-01-20" in body
    assert "import " not in body and "workbench report run" not in body
    summary = body.split("wb-b-summary", 1)[1].split("一、逾期未整改隐患", 1)[0]
    # the numbers, counted here from the hub's rows: the week is 2026-01-14 00:00 .. 2026-01-21 00:00 Beijing
    start, end = pd.Timestamp("2026-01-13 16:00"), pd.Timestamp("2026-01-20 16:00")
    hz = hub.read("hazards")
    sites = hub.read("hazard_sites").set_index("site_id")
    district = hz["district"].where(hz["district"].notna(), hz["site_id"].map(sites["district"]))
    hz = hz[district == "芦淞区"]
    ts, dl, rect = (pd.to_datetime(hz[c]) for c in ("ts", "deadline", "rectified_at"))
    found = int(((ts >= start) & (ts < end)).sum())
    prev_found = int(((ts >= start - pd.Timedelta(days=7)) & (ts < start)).sum())
    is_open = (ts < end) & (rect.isna() | (rect >= end)) & ~hz["status"].isin(["已验收", "已销号", "验收通过", "已整改",
                                                                              "整改完成", "已整改待验收"])
    overdue = int((is_open & (dl < end)).sum())
    assert found > 0
    assert f"本周芦淞区新发现隐患 {found} 项" in summary
    assert ("较上周持平" if found == prev_found else ("较上周增加" if found > prev_found else "较上周减少")) in summary
    assert f"其中逾期未整改 {overdue} 项" in summary
    ev = hub.read("city_events", where={"district": "芦淞区"})
    ev = ev[ev["case_type"] == "inspection_task"] if len(ev) else ev
    if len(ev):
        t_dl, t_ts = pd.to_datetime(ev["deadline"]), pd.to_datetime(ev["ts"])
        closed = (ev["status"] == "核查结案") & (pd.to_datetime(ev["closed_at"]) < end)
        late = int(((t_ts < end) & ~closed & (t_dl < end)).sum())
        assert f"逾期未办结的巡查任务 {late} 项" in summary
    assert "需要决策的事项" in summary and (("请各区县督促责任单位限期整改" in summary) == (overdue > 0))
    for text in ("网格风险", "风险分", "计分规则", "逾期未整改", "气象预警", "data:image/png;base64", "注释"):
        assert text in body, text
    assert "LS-" in body and "HT-" not in body.split("风险最高的网格", 1)[1].split("附表", 1)[0]
    # statistical terms in the notes, the face in plain words
    notes = body.split("注释", 1)[1]
    assert "<b>风险分</b>：" in notes and "<b>逾期未办结</b>：" in notes
    assert "风险分：风险分" not in notes and "逾期未办结</b>：逾期未办结" not in notes   # not said twice
    assert (out / "2026-01-21.pdf").read_bytes()[:4] == b"%PDF"
    wb = openpyxl.load_workbook(out / "2026-01-21.xlsx", read_only=True)
    assert {"逾期按区县", "逾期隐患", "网格风险", "计分规则"} <= set(wb.sheetnames)
