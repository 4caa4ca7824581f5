"""城市安全 on the spine: hazard rectification cases from the ledger's own dates, the
重大隐患逾期 alert (raised, kept, lifted), inspection tasks through the case engine and the
linkage resolver, and the department's registration. Real hub, both backends."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from workbench import alerts, cases, registry
from workbench.safety import tasks as tk
from workbench.safety import warnings as A
from workbench.store import hub
from workbench.store.ingest import ingest_file

ROOT = Path(__file__).resolve().parents[1]
H = 8  # hours: the files' local times are UTC+8

SITES = """点位编号,场所类型,场所名称,区县,街道
S1,农贸市场,建设农贸市场,芦淞区,建设街道
S2,自建房,桂花村12号,荷塘区,桂花街道
"""
HEAD = "隐患编号,点位编号,隐患类型,隐患等级,隐患描述,发现时间,整改期限,整改完成时间,验收时间,整改状态,区县,责任部门\n"
# H1 major, past its deadline by the ledger's newest date (01-07): overdue · H2 rectified and
# verified · H3 major, deadline ahead · H4 typed 已整改 without a date
LEDGER_1 = HEAD + """H1,S1,燃气管道老化,重大,燃气管道锈蚀,2026-01-02 10:00,2026-01-05 18:00,,,待整改,芦淞区,燃气
H2,S1,消防通道堵塞,一般,,2026-01-03 09:00,2026-01-06 18:00,2026-01-05 15:00,2026-01-07 10:00,已验收,芦淞区,
H3,S2,违规加层,重大,,2026-01-04 11:00,2026-01-30 18:00,,,待整改,荷塘区,住房和城乡建设局
H4,S2,电线私拉乱接,一般,,2026-01-04 12:00,2026-01-20 18:00,,,已整改,荷塘区,
"""
# a later export: H1 rectified on 01-08
LEDGER_2 = LEDGER_1.replace("H1,S1,燃气管道老化,重大,燃气管道锈蚀,2026-01-02 10:00,2026-01-05 18:00,,,待整改",
                            "H1,S1,燃气管道老化,重大,燃气管道锈蚀,2026-01-02 10:00,2026-01-05 18:00,2026-01-08 16:00,,已整改")


def utc(local: str) -> pd.Timestamp:
    return pd.Timestamp(local) - pd.Timedelta(hours=H)


def load(eng, tmp_path, name: str, text: str, dataset: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return ingest_file(dataset, p, eng=eng, progress=False)


def case_table(eng) -> pd.DataFrame:
    return hub.read("cases", eng=eng).set_index("case_id")


def history_of(eng, cid) -> pd.DataFrame:
    return cases.history(cid, eng)


def test_ledger_ingest_opens_and_moves_rectification_cases(hub_engine, tmp_path):
    load(hub_engine, tmp_path, "sites.csv", SITES, "hazard_sites")
    s = load(hub_engine, tmp_path, "ledger1.csv", LEDGER_1, "hazards")
    assert (s.loaded, s.quarantined) == (4, 0)
    c = case_table(hub_engine)
    assert sorted(c.index) == ["HZ-H1", "HZ-H2", "HZ-H3", "HZ-H4"]
    assert (c.case_type == "hazard_rectification").all()
    assert c.status.to_dict() == {"HZ-H1": "待整改", "HZ-H2": "已验收", "HZ-H3": "待整改", "HZ-H4": "已整改待验收"}
    h1 = c.loc["HZ-H1"]
    assert h1.subject == "hazards:H1" and h1.ts == utc("2026-01-02 10:00") and h1.deadline == utc("2026-01-05 18:00")
    assert (h1.department, h1.district, h1.urgency, h1.street) == ("燃气", "芦淞区", "紧急", "建设街道")
    assert "建设农贸市场" in h1.title and "燃气管道老化" in h1.title and pd.isna(h1.closed_at)
    assert c.loc["HZ-H2", "department"] == "应急管理局"  # none given: the type's department
    # H2 took its steps at the ledger's own times, and is closed at its verification
    h2 = history_of(hub_engine, "HZ-H2")
    assert h2.status.tolist() == ["待整改", "已整改待验收", "已验收"]
    assert h2.ts.tolist() == [utc("2026-01-03 09:00"), utc("2026-01-05 15:00"), utc("2026-01-07 10:00")]
    assert set(h2.actor) == {"隐患台账"} and c.loc["HZ-H2", "closed_at"] == utc("2026-01-07 10:00")
    assert history_of(hub_engine, "HZ-H4").status.tolist() == ["待整改", "已整改待验收"]

    # the same file again: nothing new anywhere
    n_hist = len(hub.read("case_history", eng=hub_engine))
    again = load(hub_engine, tmp_path, "ledger1-copy.csv", LEDGER_1, "hazards")
    assert again.loaded == 0 and len(hub.read("case_history", eng=hub_engine)) == n_hist

    # a later export brings H1's rectification: the hazard row and the case follow it
    later = load(hub_engine, tmp_path, "ledger2.csv", LEDGER_2, "hazards")
    assert later.loaded == 1
    row = hub.read("hazards", eng=hub_engine).set_index("hazard_id").loc["H1"]
    assert row.rectified_at == utc("2026-01-08 16:00") and row.status == "已整改"
    assert case_table(hub_engine).loc["HZ-H1", "status"] == "已整改待验收"
    assert history_of(hub_engine, "HZ-H1").status.tolist() == ["待整改", "已整改待验收"]


def test_overdue_major_hazard_alert_is_raised_kept_and_lifted(hub_engine, tmp_path):
    load(hub_engine, tmp_path, "sites.csv", SITES, "hazard_sites")
    load(hub_engine, tmp_path, "ledger1.csv", LEDGER_1, "hazards")
    run = A.run_engine(hub_engine)
    assert run.written["overdue_alerts_new"] == 1
    a = hub.read("alerts", eng=hub_engine)
    od = a[a.category == "重大隐患逾期"]
    assert od.alert_id.tolist() == ["HZ-OD-H1"]  # H3 is major but not late; H2 is done
    r = od.iloc[0]
    assert (r.status, r.severity, r.department, r.district) == ("生效中", "critical", "应急管理局", "芦淞区")
    assert r.subject == cases.subject_of("cases", "HZ-H1") == "cases:HZ-H1"
    assert json.loads(r["attrs"]) == {"hazard_id": "H1", "site_id": "S1", "district": "芦淞区"}
    assert r.ts == utc("2026-01-05 18:00")  # overdue from its deadline
    assert alerts.history("HZ-OD-H1", hub_engine).action.tolist() == ["发布"]
    # the linkage run at the end of the analysis escalates it to the district government
    sup = hub.read("cases", eng=hub_engine)
    sup = sup[sup.alert_id == "HZ-OD-H1"]
    assert sup.case_type.tolist() == ["supervision"] and sup.subject.tolist() == ["hazards:H1"]
    assert run.linkage["opened"] >= 1

    again = A.run_engine(hub_engine)  # nothing changed: nothing written
    assert (again.written["overdue_alerts_new"], again.written["overdue_alerts_lifted"]) == (0, 0)
    assert again.written["hazard_cases_new"] == 0 and again.written["hazard_case_steps"] == 0
    assert len(alerts.history("HZ-OD-H1", hub_engine)) == 1

    # the ledger reports H1 rectified: the alert is lifted at that time, at ingest already
    load(hub_engine, tmp_path, "ledger2.csv", LEDGER_2, "hazards")
    r = hub.read("alerts", eng=hub_engine).set_index("alert_id").loc["HZ-OD-H1"]
    assert r.status == "已解除" and r.valid_to == utc("2026-01-08 16:00")
    assert alerts.history("HZ-OD-H1", hub_engine).action.tolist() == ["发布", "解除"]
    assert A.run_engine(hub_engine).written["overdue_alerts_new"] == 0  # not raised again
    assert hub.read("alerts", eng=hub_engine).set_index("alert_id").loc["HZ-OD-H1", "status"] == "已解除"


def test_closing_the_case_lifts_the_alert_and_a_screen_step_is_not_undone(hub_engine, tmp_path):
    load(hub_engine, tmp_path, "ledger1.csv", LEDGER_1, "hazards")
    A.run_engine(hub_engine)
    # accepted on a screen before the ledger knows: the engine closes the case, the alert goes
    ch = cases.act(hub_engine, "HZ-H1", "verify", actor="王检查", note="现场验收合格")
    assert (ch.before, ch.after) == ("待整改", "已验收")
    assert hub.read("alerts", eng=hub_engine).set_index("alert_id").loc["HZ-OD-H1", "status"] == "已解除"
    # the ledger still lists H1 as open: neither the case nor the alert is moved back
    run = A.run_engine(hub_engine)
    assert run.written["overdue_alerts_new"] == 0 and run.written["hazard_case_steps"] == 0
    assert case_table(hub_engine).loc["HZ-H1", "status"] == "已验收"
    assert hub.read("alerts", eng=hub_engine).set_index("alert_id").loc["HZ-OD-H1", "status"] == "已解除"
    # a later export that rectifies it adds no step behind the verification
    load(hub_engine, tmp_path, "ledger2.csv", LEDGER_2, "hazards")
    assert history_of(hub_engine, "HZ-H1").status.tolist() == ["待整改", "已验收"]
    # a move the table does not have is refused with the steps allowed
    with pytest.raises(cases.CaseError, match="可转为"):
        cases.transition(hub_engine, "HZ-H3", "待整改", actor="王检查")


def test_resolver_gives_task_rows_the_engine_opens_once(hub_engine):
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    lv = [0, 2, 2, 4, 4] + [0] * 10
    hours = pd.date_range("2026-01-10", periods=len(lv), freq="h")
    st = pd.DataFrame({"station_id": ["QX-HT"], "area": ["荷塘区"], "district": ["荷塘区"], "lat": [27.86],
                       "lon": [113.17], "last_hour": [hours[-1]]})
    import numpy as np

    w = A.episodes(A.SignalGrid(hours, st, {"寒潮": np.asarray(lv, np.int8)[:, None]}, {"寒潮": {}}),
                   A.WarningRules(clear_hours=3))
    grids = pd.DataFrame({"grid_id": ["HT-YT-001", "HT-YT-002", "HT-XY-001"], "district": "荷塘区",
                          "street": ["月塘街道", "月塘街道", "仙庾镇"], "lat": [27.87, 27.88, 27.9],
                          "lon": [113.17, 113.18, 113.2]})
    with hub_engine.begin() as conn:
        insert_new(conn, DATASETS["grids"], grids)
        A.save_warnings(conn, w)
    fn = registry.registry.resolver("safety.cold_weather_tasks")
    with hub_engine.begin() as conn:
        rows = fn(conn, hub.read("alerts", eng=hub_engine))
        assert len(rows) and (rows.alert_id == w.alerts.alert_id.iloc[0]).all() and rows.event_id.is_unique
        # street codes from the hub's grids (HT-YT-001 → YT), as the city's task ids always had
        assert {i for i in rows.event_id if "-ZJ-" in i} == {"W-HS-HT-2026011009-ZJ-YT-Y", "W-HS-HT-2026011009-ZJ-XY-Y",
                                                             "W-HS-HT-2026011009-ZJ-YT-R", "W-HS-HT-2026011009-ZJ-XY-R"}
        assert tk.open_tasks(conn, rows) == len(rows)
        assert tk.open_tasks(conn, fn(conn, hub.read("alerts", eng=hub_engine))) == 0  # idempotent
    e = hub.read("city_events", eng=hub_engine)
    assert (e.case_type == "inspection_task").all() and (e.status == "任务派遣").all()
    # a task moves on through the engine, with the type's actions
    tid = e.event_id.iloc[0]
    cases.act(hub_engine, tid, "handle", actor="李巡查")
    cases.act(hub_engine, tid, "feedback", actor="李巡查", note="已巡查，无异常")
    cases.act(hub_engine, tid, "close", actor="赵核查")
    assert cases.history(tid, hub_engine).status.tolist() == ["信息收集", "案卷建立", "任务派遣", "任务处理",
                                                              "处理反馈", "核查结案"]


def test_the_department_registers_its_types_categories_loader_and_resolver():
    d = registry.get("safety")
    assert set(d.alert_categories) == {"寒潮", "道路结冰", "暴雪", "重大隐患逾期"}
    assert cases.case_type("inspection_task").store == "city_events"
    hr = cases.case_type("hazard_rectification")
    assert (hr.store, hr.intake, tuple(hr.closed)) == ("cases", "待整改", ("已验收",))
    assert "重大隐患逾期" in hr.raises and "逾期未整改" not in hr.statuses  # overdue is a flag
    assert "hazards" in d.loaders and "cold_weather_tasks" in d.resolvers


def test_safety_code_keeps_to_the_spine():
    """No synth import, no case history or alert rows written by hand, no other department imported."""
    bad = []
    files = list((ROOT / "workbench" / "safety").glob("*.py")) + [ROOT / "workbench" / "ui" / "safety_page.py"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        for pat in (r"workbench\.synth", r"workbench\.(market|canteen|events)\b",
                    r"insert_new\([^)]*DATASETS\[\"(city_events|event_history|cases|case_history|alerts|alert_history)\"\]",
                    r"upsert\([^)]*\"(city_events|cases|alerts)\"",
                    r"\.(insert|update)\(\)[^\n]*(event_history|case_history|alert_history)"):
            for m in re.finditer(pat, text):
                bad.append(f"{f.name}: {m.group(0)}")
    assert bad == []


def test_migration_0009_marks_the_old_inspection_tasks(tmp_path):
    """Tasks written into city_events before the engine become inspection_task cases of their warning."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = hub.engine(url, migrate=False)
    hub.upgrade(eng, "0008")
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO city_events (event_id, ts, source, external_id, event_class, status) VALUES "
            "('W-HS-HT-2026010820-DL-Y', '2026-01-08 12:00:00.000000', '预警联动', 'W-HS-HT-2026010820', '电力线路巡查', '任务派遣'),"
            "('E1', '2026-01-08 12:00:00.000000', '12345热线', 'X1', '暴露垃圾', '任务派遣')"))
    hub.upgrade(eng, "0009")
    e = hub.query("SELECT event_id, case_type, alert_id FROM city_events", eng=eng).set_index("event_id")
    assert e.loc["W-HS-HT-2026010820-DL-Y", ["case_type", "alert_id"]].tolist() == ["inspection_task", "W-HS-HT-2026010820"]
    assert pd.isna(e.loc["E1", "case_type"]) and pd.isna(e.loc["E1", "alert_id"])
    hub.dispose(url)
