"""The spine shared by every department: the case engine, the alert API, the registry of
departments, checks and loaders, the reference geography, time, and the code rules that keep
one path for each job (only the engine writes case history, only the alert API writes alerts,
the spine imports no department, departments never import each other, nothing real imports
the sample generator)."""
from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench import alerts, cases, clock, geo, registry
from workbench.errors import ConfigError, RegistryError, WorkbenchError
from workbench.store import hub
from workbench.store.schema import DATASETS

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "workbench"

DEMO = {
    "label": "测试工单", "department": "测试局", "intake": "登记", "default_hours": 24,
    "transitions": {"登记": ["派发", "作废"], "派发": ["处置", "派发"], "处置": ["办结", "退回"],
                    "退回": ["处置"], "办结": ["重开"], "重开": ["处置"], "作废": []},
    "closed": ["办结", "作废"], "rework": ["退回"],
    "actions": {"dispatch": "派发", "handle": "处置", "close": "办结", "reopen": "重开"},
    "action_labels": {"dispatch": "派发", "handle": "开始处置", "close": "办结", "reopen": "重新办理"},
    "requires": {"派发": "department"},
}


@pytest.fixture
def demo_type():
    ct = cases.CaseType.from_dict("spine_demo", DEMO, where="test")
    cases.register_type(ct)
    yield ct
    cases.TYPES.pop("spine_demo", None)


# ------------------------------------------------------------------------------- case engine

def test_open_move_and_history(hub_engine, demo_type):
    t0 = pd.Timestamp("2026-03-02 01:00")
    ch = cases.open_case(hub_engine, "spine_demo", "C1", actor="张三", ts=t0, title="路灯不亮", district="荷塘区")
    assert ch.after == "登记" and ch.department == "测试局"
    assert cases.open_case(hub_engine, "spine_demo", "C1", actor="张三", ts=t0) is None  # idempotent
    cases.act(hub_engine, "C1", "dispatch", actor="李四", department="城管", ts=t0 + pd.Timedelta(hours=1))
    cases.act(hub_engine, "C1", "handle", actor="王五", ts=t0 + pd.Timedelta(hours=2))
    cases.transition(hub_engine, "C1", "退回", actor="李四", note="未修好", ts=t0 + pd.Timedelta(hours=3))
    cases.transition(hub_engine, "C1", "处置", actor="王五", ts=t0 + pd.Timedelta(hours=4))
    done = cases.act(hub_engine, "C1", "close", actor="李四", ts=t0 + pd.Timedelta(hours=5), expected="处置")
    assert done.before == "处置" and done.after == "办结"
    h = cases.history("C1", hub_engine)
    assert list(h["status"]) == ["登记", "派发", "处置", "退回", "处置", "办结"]
    assert list(h["actor"]) == ["张三", "李四", "王五", "李四", "王五", "李四"]
    assert h["department"].iloc[1] == "城管" and h["note"].iloc[1] == "派遣至城管"
    assert h["ts"].is_monotonic_increasing
    row = hub.query("select status, department, closed_at, deadline from cases where case_id='C1'", eng=hub_engine).iloc[0]
    assert row.status == "办结" and row.department == "城管"
    assert pd.Timestamp(row.closed_at) == t0 + pd.Timedelta(hours=5)
    assert pd.Timestamp(row.deadline) == t0 + pd.Timedelta(hours=24)  # default_hours
    # reopening clears the closing time
    cases.act(hub_engine, "C1", "reopen", actor="李四", ts=t0 + pd.Timedelta(hours=6))
    assert hub.query("select closed_at from cases where case_id='C1'", eng=hub_engine).iloc[0, 0] is None


def test_refusals_say_what_is_allowed(hub_engine, demo_type):
    cases.open_case(hub_engine, "spine_demo", "C2", actor="张三")
    with pytest.raises(cases.CaseError, match="可转为：派发、作废"):
        cases.transition(hub_engine, "C2", "办结", actor="张三")
    with pytest.raises(cases.CaseError, match="没有环节"):
        cases.transition(hub_engine, "C2", "不存在", actor="张三")
    with pytest.raises(cases.CaseError, match="办理人"):
        cases.transition(hub_engine, "C2", "作废", actor=" ")
    with pytest.raises(cases.CaseError, match="没有操作"):
        cases.act(hub_engine, "C2", "explode", actor="张三")
    with pytest.raises(cases.CaseError, match="找不到案件"):
        cases.transition(hub_engine, "NOPE", "派发", actor="张三")
    # a stale screen: it showed 登记 but the case moved on
    cases.act(hub_engine, "C2", "dispatch", actor="李四", department="城管")
    with pytest.raises(cases.CaseError, match="已被他人改为“派发”"):
        cases.act(hub_engine, "C2", "handle", actor="王五", expected="登记")
    assert list(cases.history("C2", hub_engine)["status"]) == ["登记", "派发"]  # nothing half-written


def test_times_never_go_backwards(hub_engine, demo_type):
    t0 = pd.Timestamp("2026-03-02 08:00")
    cases.open_case(hub_engine, "spine_demo", "C3", actor="张三", ts=t0)
    ch = cases.act(hub_engine, "C3", "dispatch", actor="李四", department="城管", ts=t0 - pd.Timedelta(days=1))
    assert ch.ts > t0  # never before the opening
    ch2 = cases.act(hub_engine, "C3", "handle", actor="王五", ts=t0 - pd.Timedelta(days=2))
    assert ch2.ts > ch.ts


def test_bulk_open_checks_steps_and_is_idempotent(hub_engine, demo_type):
    f = pd.DataFrame({"_id": ["B1", "B2", "B3"], "ts": pd.to_datetime(["2026-03-01", "2026-03-02", "2026-03-03"]),
                      "title": ["a", "b", "c"], "department": ["城管", None, "城管"]})
    steps = pd.Series([[("派发", "自动派发")], [], [("派发", "自动"), ("处置", "自动")]])
    with hub_engine.begin() as conn:
        assert cases.open_cases(conn, "spine_demo", f, actor="12345热线", steps=steps) == 3
    with hub_engine.begin() as conn:
        assert cases.open_cases(conn, "spine_demo", f, actor="12345热线", steps=steps) == 0
    st = hub.query("select case_id, status, department from cases order by case_id", eng=hub_engine)
    assert list(st["status"]) == ["派发", "登记", "处置"]
    assert st.set_index("case_id").loc["B2", "department"] == "测试局"  # the type's department by default
    h = hub.query("select case_id, status, actor from case_history order by case_id, ts", eng=hub_engine)
    assert len(h) == 6 and (h.groupby("case_id")["status"].first() == "登记").all()
    bad = pd.Series([[("办结", "跳步")]])
    with hub_engine.begin() as conn, pytest.raises(cases.CaseError, match="不能转为“办结”"):
        cases.open_cases(conn, "spine_demo", f.iloc[:1].assign(_id="B9"), actor="x", steps=bad)


def test_sync_extend_and_frame(hub_engine, demo_type):
    t0 = pd.Timestamp("2026-03-02 08:00")
    cases.open_case(hub_engine, "spine_demo", "S1", actor="张三", ts=t0, district="天元区")
    cases.open_case(hub_engine, "spine_demo", "S2", actor="张三", ts=t0, district="荷塘区")
    with hub_engine.begin() as conn:
        n = cases.sync(conn, "spine_demo", pd.DataFrame({
            "_id": ["S1", "S1", "S2"], "ts": [t0 + pd.Timedelta(hours=2), t0 + pd.Timedelta(hours=30), t0],
            "status": ["派发", "办结", "登记"]}), actor="来源系统")
    assert n == 2  # S2 already at 登记
    with hub_engine.begin() as conn, pytest.raises(cases.CaseError, match="没有环节"):
        cases.sync(conn, "spine_demo", pd.DataFrame({"_id": ["S2"], "ts": [t0], "status": ["飞走"]}), actor="x")
    cases.extend(hub_engine, "S2", t0 + pd.Timedelta(days=3), actor="科长", note="材料待补")
    with pytest.raises(cases.CaseError, match="不晚于原时限"):
        cases.extend(hub_engine, "S2", t0, actor="科长")
    with pytest.raises(cases.CaseError, match="已办结"):
        cases.extend(hub_engine, "S1", t0 + pd.Timedelta(days=9), actor="科长")
    assert list(cases.history("S2", hub_engine)["status"]) == ["登记", cases.EXTENDED]
    fr = cases.frame(hub_engine, types=["spine_demo"]).set_index("case_id")
    assert fr.loc["S1", "closed"] and fr.loc["S1", "overdue"]  # closed 30 h after, deadline 24 h
    assert not fr.loc["S2", "closed"] and fr.loc["S2", "district"] == "荷塘区"
    assert list(cases.frame(hub_engine, types=["spine_demo"], district="天元区")["case_id"]) == ["S1"]


def test_closing_a_case_lifts_its_alerts(hub_engine, demo_type):
    t0 = pd.Timestamp("2026-03-02 08:00")
    cases.open_case(hub_engine, "spine_demo", "E1", actor="张三", ts=t0)
    alerts.raise_alert(hub_engine, alert_id="ESC-E1", ts=t0 + pd.Timedelta(days=2), department="测试局",
                       category="测试超期", severity="warning", title="E1 超期", subject=cases.subject_of("cases", "E1"))
    cases.act(hub_engine, "E1", "dispatch", actor="李四", department="城管")
    assert hub.query("select status from alerts", eng=hub_engine).iloc[0, 0] == alerts.ACTIVE
    cases.act(hub_engine, "E1", "handle", actor="王五")
    cases.act(hub_engine, "E1", "close", actor="李四")
    assert hub.query("select status from alerts", eng=hub_engine).iloc[0, 0] == alerts.LIFTED
    assert list(alerts.history("ESC-E1", hub_engine)["action"]) == ["发布", "解除"]


def test_case_type_yaml_is_checked(tmp_path):
    bad = tmp_path / "types.yaml"
    bad.write_text("t1:\n  label: 甲\n  department: 乙\n  intake: 登记\n  transitions: {登记: [办结]}\n"
                   "  closed: [结案]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="closed 含有转移表中没有的环节：结案") as e:
        cases.load_types(bad)
    assert str(bad) in str(e.value)
    missing = tmp_path / "m.yaml"
    missing.write_text("t2:\n  label: 甲\n  intake: 登记\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="缺少“department”"):
        cases.load_types(missing)
    with pytest.raises(RegistryError, match="未登记的案件类型"):
        cases.case_type("no_such_type")


# ------------------------------------------------------------------------------- alert API

def test_alert_lifecycle_and_rerun(hub_engine):
    t0 = pd.Timestamp("2026-01-20 06:00")
    row = {"alert_id": "W1", "ts": t0, "department": "应急管理局", "category": "寒潮", "severity": "warning",
           "title": "荷塘区寒潮蓝色预警", "level": "蓝色", "district": "荷塘区", "attrs": {"district": "荷塘区"}}
    assert alerts.publish(hub_engine, pd.DataFrame([row]))["new"] == 1
    assert alerts.publish(hub_engine, pd.DataFrame([row])) == {"new": 0, "updated": 0, "lifted": 0, "history": 0}
    up = {**row, "level": "橙色", "severity": "critical", "updated_at": t0 + pd.Timedelta(hours=8)}
    assert alerts.publish(hub_engine, pd.DataFrame([up]))["updated"] == 1
    down = {**up, "level": "黄色", "updated_at": t0 + pd.Timedelta(hours=12)}
    alerts.publish(hub_engine, pd.DataFrame([down]))
    assert alerts.lift(hub_engine, "W1", ts=t0 + pd.Timedelta(days=1), actor="值班员", note="气温回升")
    assert not alerts.lift(hub_engine, "W1")  # already lifted
    h = alerts.history("W1", hub_engine)
    assert list(h["action"]) == ["发布", "升级", "降级", "解除"]
    assert h["actor"].iloc[-1] == "值班员"
    a = hub.query("select status, valid_to, attrs from alerts", eng=hub_engine).iloc[0]
    assert a["status"] == "已解除" and alerts.attrs_of(a["attrs"]) == {"district": "荷塘区"}


def test_alert_given_history_and_bad_input(hub_engine):
    t0 = pd.Timestamp("2026-01-20 06:00")
    row = {"alert_id": "W2", "ts": t0, "department": "应急管理局", "category": "暴雪", "severity": "warning",
           "title": "暴雪", "level": "黄色", "status": "已解除", "valid_to": t0 + pd.Timedelta(hours=9)}
    hist = pd.DataFrame({"alert_id": ["W2"] * 3, "ts": [t0, t0 + pd.Timedelta(hours=3), t0 + pd.Timedelta(hours=9)],
                         "action": ["发布", "升级", "解除"], "level": ["蓝色", "黄色", "黄色"]})
    alerts.publish(hub_engine, pd.DataFrame([row]), history=hist)
    assert list(alerts.history("W2", hub_engine)["action"]) == ["发布", "升级", "解除"]
    with pytest.raises(alerts.AlertError, match="未知的告警状态"):
        alerts.publish(hub_engine, pd.DataFrame([{**row, "alert_id": "W3", "status": "whatever"}]))
    with pytest.raises(alerts.AlertError, match="缺少必填项“title”"):
        alerts.publish(hub_engine, pd.DataFrame([{k: v for k, v in row.items() if k != "title"}]))
    with pytest.raises(alerts.AlertError, match="找不到告警"):
        alerts.lift(hub_engine, "NOPE")
    assert "生效中" in DATASETS["alerts"].field("status").choices


# ------------------------------------------------------------------------------- registry and ingest

def test_departments_register_through_entry_points():
    names = {d.name for d in registry.departments()}
    assert {"market", "canteen", "events", "safety"} <= names
    with pytest.raises(RegistryError, match="未登记的部门"):
        registry.get("no_such_department")
    from workbench.store import ingest

    reasons = {c.reason for c in ingest.checks_of(DATASETS["rapid_tests"])}
    assert "样品名称不在商品目录中" in reasons and "检测时间早于采样时间" in reasons
    with pytest.raises(RegistryError, match="未知的数据集"):
        ingest.register_checks("no_such_dataset")


def test_a_registered_department_brings_checks_and_a_loader(sqlite_hub, tmp_path):
    """A new department is one Department object: its row check and loader run in ingest."""
    from workbench.store import ingest
    from workbench.store.schema import RowCheck

    seen = []

    def loader(conn, ds, frame):
        seen.append(len(frame))
        return ingest.insert_new(conn, ds, frame)

    dept = registry.Department(
        name="spine_test", label="测试", agency="测试局",
        checks={"inspections": (RowCheck("巡查结果不能是“未知”", lambda df: df["result"] == "未知"),)},
        loaders={"inspections": loader})
    registry.register(dept)
    try:
        f = tmp_path / "巡查.csv"
        f.write_text("巡查编号,巡查时间,点位编号,检查结果\nI1,2026-01-02 08:00,S1,正常\nI2,2026-01-02 09:00,S1,未知\n",
                     encoding="utf-8")
        s = ingest.ingest_file("inspections", f, sqlite_hub)
        assert (s.loaded, s.quarantined) == (1, 1) and seen == [1]
        assert s.reasons == {"巡查结果不能是“未知”": 1}
        with pytest.raises(RegistryError, match="已有加载器"):
            ingest.register_loader("inspections", lambda *a: 0, owner="other")
    finally:
        ingest._CHECKS.pop("inspections", None)
        ingest._LOADERS.pop("inspections", None)
        registry.registry._departments.pop("spine_test", None)


# ------------------------------------------------------------------------------- geography and time

def test_reference_geography_real_boundaries():
    assert [d.adcode for d in geo.DISTRICTS] == ["430202", "430203", "430204", "430211", "430212", "430281",
                                                 "430223", "430224", "430225"]
    assert geo.district("荷塘").name == "荷塘区" and geo.district("430281").name == "醴陵市"
    assert geo.find("Yanling").name == "炎陵县"
    with pytest.raises(geo.GeoError, match="株洲市没有区县"):
        geo.district("朝阳区")
    # every district's centroid (DOMAIN.md) lies inside its own real boundary
    lat = [d.lat for d in geo.DISTRICTS]
    lon = [d.lon for d in geo.DISTRICTS]
    assert list(geo.locate(lat, lon)) == list(geo.NAMES)
    assert geo.locate([39.9], [116.4])[0] is None  # Beijing is not in Zhuzhou
    x0, y0, x1, y1 = geo.bbox()
    assert 112.5 < x0 < x1 < 114.5 and 25.9 < y0 < y1 < 28.3
    fc = geo.feature_collection({"荷塘区": 3})
    assert len(fc["features"]) == 9 and fc["features"][0]["properties"]["value"] == 3
    assert fc["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_time_and_holidays():
    assert clock.to_local(pd.Timestamp("2026-01-01 16:30")) == pd.Timestamp("2026-01-02 00:30")
    assert clock.to_utc(pd.Timestamp("2026-01-02 00:30")) == pd.Timestamp("2026-01-01 16:30")
    s = clock.local_day(pd.Series(pd.to_datetime(["2026-01-01 15:59", "2026-01-01 16:00"])))
    assert list(s.dt.day) == [1, 2]
    since, until = clock.day_bounds("2026-01-02")
    assert (since, until) == (pd.Timestamp("2026-01-01 16:00"), pd.Timestamp("2026-01-02 16:00"))
    assert not clock.is_workday("2026-10-01")          # 国庆节
    assert clock.is_workday("2026-10-09")              # a plain Friday
    assert clock.is_workday(dt.date(2026, 2, 28))      # a 调休 Saturday made a working day (Spring Festival 2026)
    assert not clock.is_workday(dt.date(2026, 2, 17))  # 春节
    assert clock.calendar_covers("2026-06-01") and not clock.calendar_covers("2031-06-01")
    assert clock.is_workday("2031-06-02") and not clock.is_workday("2031-06-01")  # past the data: Mon–Fri
    with pytest.raises(Exception):
        clock.to_utc(pd.Timestamp("2026-03-08 02:30"), tz="America/New_York")  # does not exist (DST)


def test_local_day_sql_per_dialect(hub_engine):
    expr = clock.local_day_sql(sa.literal(dt.datetime(2026, 1, 1, 16, 30)), hub_engine.dialect.name)
    with hub_engine.connect() as conn:
        assert str(conn.execute(sa.select(expr)).scalar()) == "2026-01-02"


def test_errors_share_one_base():
    from workbench.store.ingest import IngestError

    for cls in (cases.CaseError, alerts.AlertError, IngestError, geo.GeoError, ConfigError, RegistryError):
        assert issubclass(cls, WorkbenchError)
    e = IngestError("a/b.csv", "文件是空的")
    assert e.problem == "文件是空的" and "b.csv" in str(e)


# ------------------------------------------------------------------------------- one path for each job

def _py_files(*skip: str):
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if "/migrations/" in rel or any(rel.startswith(s) for s in skip):
            continue
        yield rel, p.read_text(encoding="utf-8")


HISTORY_TABLES = ("event_history", "case_history", "canteen_case_history")
WRITE = re.compile(r"(insert_new|upsert|\.insert\(|\.update\(|INSERT\s+INTO|UPDATE\s)", re.I)


def _writes(src: str, names) -> list[int]:
    """Lines that write to one of the tables `names`, by static reading: insert_new/upsert
    whose statement names the table (or a variable bound to it) within a few lines; a
    `.insert(` / `.update(` on the table or such a variable; raw INSERT INTO / UPDATE SQL."""
    lines = src.splitlines()
    named = [rf"['\"]{n}['\"]" for n in names]
    al = _aliases(src, names) | {n.upper() for n in names}
    refs = named + [rf"\b{re.escape(a)}\b" for a in al]
    hits = []
    for i, line in enumerate(lines):
        window = "\n".join(lines[max(0, i - 3):i + 3])
        if re.search(r"\b(insert_new|upsert)\(", line) and any(re.search(p, window) for p in refs):
            hits.append(i + 1)
            continue
        m = re.search(r"([A-Za-z_][A-Za-z0-9_\.\[\]\"']*)\.(insert|update)\(", line)
        if m and (m.group(1) in al or any(re.search(p, m.group(1)) for p in named)):
            hits.append(i + 1)
            continue
        if any(re.search(rf"(INSERT\s+INTO|UPDATE)\s+\"?{n}\b", line, re.I) for n in names):
            hits.append(i + 1)
    return hits


def _aliases(src: str, names) -> set[str]:
    """Names a module binds to one of the tables `names` (EVENTS = DATASETS["city_events"].table)."""
    out = set()
    for m in re.finditer(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$", src, re.M):
        if any(re.search(rf"['\"]{n}['\"]", m.group(2)) for n in names) and "table" in m.group(2):
            out.add(m.group(1))
    return out


def test_only_the_case_engine_writes_case_history():
    offenders = {rel: _writes(src, HISTORY_TABLES) for rel, src in _py_files("workbench/cases.py", "workbench/synth/")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"case history written outside workbench/cases.py: {offenders}"


def test_only_the_case_engine_moves_a_case():
    """No update of a case table's status outside the engine (a department's ingest inserts
    new rows; moving a case is the engine's)."""
    offenders = {rel: _moves(src) for rel, src in _py_files("workbench/cases.py", "workbench/synth/")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"case status moved outside workbench/cases.py: {offenders}"


def _moves(src: str) -> list[int]:
    names = ("city_events", "cases", "canteen_violations")
    lines = src.splitlines()
    al = _aliases(src, names)
    hits = []
    for i, line in enumerate(lines):
        m = re.search(r"([A-Za-z_][A-Za-z0-9_\.\[\]\"']*)\.update\(", line)
        if not m or not (m.group(1) in al or any(n in m.group(1) for n in names)):
            continue
        window = "\n".join(lines[max(0, i - 6):i + 4])
        if re.search(r"\bstatus\s*=|[\"']status[\"']\s*:", window):
            hits.append(i + 1)
    return hits


def test_the_mover_scan_finds_a_planted_move():
    planted = ('EVENTS = DATASETS["city_events"].table\n\ndef f(conn, to):\n    values = {"status": to}\n'
               '    conn.execute(EVENTS.update().where(EVENTS.c.event_id == 1).values(**values))\n')
    assert _moves(planted) == [5]
    assert _moves('conn.execute(ingest_files.update().values(status="done"))\n') == []


def test_only_the_alert_api_writes_alerts():
    offenders = {rel: _writes(src, ("alerts", "alert_history"))
                 for rel, src in _py_files("workbench/alerts.py", "workbench/synth/")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"alerts written outside workbench/alerts.py: {offenders}"


def test_the_scan_finds_a_planted_write():
    """The scanner itself must be able to fail."""
    planted = 'def f(conn):\n    insert_new(conn, DATASETS["event_history"], df)\n'
    assert _writes(planted, HISTORY_TABLES) == [2]
    planted2 = 'conn.execute(ALERTS.update().values(status="x"))\n'
    assert _writes(planted2, ("alerts",)) == [1]
    planted3 = 'H = DATASETS["case_history"].table\n\n\n\n\n\ndef f(conn):\n    conn.execute(H.insert().values(x=1))\n'
    assert _writes(planted3, HISTORY_TABLES) == [8]
    assert _writes('conn.execute(cases.insert().values(x=1))\n', HISTORY_TABLES) == []
    assert _writes('q = {"t": "alerts"}\nq.update(changes)\n', ("alerts",)) == []
    assert _writes('conn.execute(sa.text("INSERT INTO alert_history VALUES (1)"))\n', ("alert_history",)) == [1]


DEPARTMENTS = ("canteen", "market", "events", "safety")
SPINE = ("workbench/cases.py", "workbench/alerts.py", "workbench/registry.py", "workbench/geo.py",
         "workbench/clock.py", "workbench/errors.py", "workbench/linkage.py", "workbench/store/",
         "workbench/cockpit/", "workbench/config.py", "workbench/reports.py")


def _imports(src: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_import_rules():
    """(`workbench synth`, the CLI verb that runs the sample generator, may import it.)"""
    bad = []
    for rel, src in _py_files():
        mods = _imports(src)
        if rel not in ("workbench/cli.py",) and not rel.startswith("workbench/synth/") and any(m == "workbench.synth" or m.startswith("workbench.synth.")
                                                         for m in mods):
            bad.append(f"{rel} imports the sample generator")
        if any(rel.startswith(s) for s in SPINE):
            for d in DEPARTMENTS:
                if any(m == f"workbench.{d}" or m.startswith(f"workbench.{d}.") for m in mods):
                    bad.append(f"spine {rel} imports department {d}")
        for d in DEPARTMENTS:
            if rel.startswith(f"workbench/{d}/"):
                for other in DEPARTMENTS:
                    if other != d and any(m == f"workbench.{other}" or m.startswith(f"workbench.{other}.")
                                          for m in mods):
                        bad.append(f"department {d} ({rel}) imports department {other}")
        # (`workbench serve`, the command that starts the screens, is the one place outside ui/)
        if (rel.startswith("workbench/") and not rel.startswith("workbench/ui/") and rel != "workbench/cli.py"
                and any(m.startswith("workbench.ui") for m in mods)):
            bad.append(f"core {rel} imports a screen")
    assert bad == []


def test_spine_datasets_ingest_through_the_spine(hub_engine, tmp_path):
    """A file of alerts or cases goes through the alert API and the case engine: history rows
    are written for it, an unknown case type is refused and its rows quarantined, never loaded."""
    from workbench.store.ingest import ingest_file

    a = tmp_path / "alerts.csv"
    a.write_text("告警编号,发布时间,部门,告警类别,级别,标题,状态\n"
                 "QX1,2026-01-20 06:00,应急管理局,寒潮,warning,株洲市寒潮黄色预警,生效中\n"
                 "QX2,2026-01-20 07:00,应急管理局,寒潮,warning,坏状态,乱写\n", encoding="utf-8")
    s = ingest_file("alerts", a, hub_engine)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert list(alerts.history("QX1", hub_engine)["action"]) == ["发布"]
    c = tmp_path / "cases.csv"
    c.write_text("案件编号,案件类型,立案时间,环节,更新时间\nK1,school_notice,2026-01-20 08:00,已签收,2026-01-20 09:00\n",
                 encoding="utf-8")
    assert ingest_file("cases", c, hub_engine).loaded == 1
    assert list(cases.history("K1", hub_engine)["status"]) == ["已下发", "已签收"]
    bad = tmp_path / "bad_cases.csv"
    bad.write_text("案件编号,案件类型,立案时间,环节\nK2,no_such_type,2026-01-20 08:00,x\n", encoding="utf-8")
    s = ingest_file("cases", bad, hub_engine)
    assert (s.loaded, s.quarantined, s.reasons) == (0, 1, {"案件类型未登记": 1})
    assert hub.query("select count(*) from cases where case_id='K2'", eng=hub_engine).iloc[0, 0] == 0


def test_cases_cli_moves_any_case_through_the_engine(sqlite_hub, demo_type):
    """`workbench cases`: staff move and extend a case of any type (the linkage cases have no
    screen of their own); a stale step and an unknown verb are refused with exit 2."""
    from click.testing import CliRunner

    from workbench.cli import main

    cases.open_case(sqlite_hub, "spine_demo", "K1", actor="系统联动", ts=pd.Timestamp("2026-03-02 01:00"),
                    district="荷塘区")
    from workbench import users

    users.create("wangkz", "long-enough-1", role="staff", name="王科长", department="测试局", eng=sqlite_hub)
    users.create("lisi", "long-enough-1", role="staff", name="李四", department="测试局", eng=sqlite_hub)
    users.create("zhao", "long-enough-1", role="analyst", name="赵六", eng=sqlite_hub)
    invoke = CliRunner().invoke

    def run(cli, args):   # the identity comes from --user, never from a typed name
        if args[:2] in (["cases", "act"], ["cases", "extend"]) and "--actor" in args:
            i = args.index("--actor")
            who = {"王科长": "wangkz", "李四": "lisi"}[args[i + 1]]
            args = ["--user", who] + args[:i] + args[i + 2:]
        return invoke(cli, args)

    r = run(main, ["cases", "list", "--type", "spine_demo"])
    assert r.exit_code == 0 and "K1  测试工单  登记" in r.output and "立案 2026-03-02 09:00" in r.output
    r = run(main, ["cases", "act", "K1", "dispatch", "--actor", "王科长", "--department", "城管", "--expected", "登记"])
    assert r.exit_code == 0 and "登记 → 派发" in r.output
    r = run(main, ["cases", "act", "K1", "handle", "--actor", "李四", "--expected", "登记"])
    assert r.exit_code == 2 and "已被他人改为“派发”" in r.output
    r = run(main, ["cases", "act", "K1", "fly", "--actor", "李四"])
    assert r.exit_code == 2 and "没有操作“fly”" in r.output
    r = run(main, ["cases", "extend", "K1", "2026-03-20 18:00", "--actor", "王科长", "--note", "待补材料"])
    assert r.exit_code == 0 and "2026-03-20 18:00（北京时间）" in r.output
    assert pd.Timestamp(hub.query("select deadline from cases", eng=sqlite_hub).iloc[0, 0]) == pd.Timestamp("2026-03-20 10:00")
    r = run(main, ["cases", "show", "K1"])
    assert [ln.split()[2] for ln in r.output.strip().splitlines()] == ["登记", "派发", cases.EXTENDED]
    assert "处置时限延至" not in r.output and "待补材料" in r.output and "王科长（wangkz）" in r.output
    r = invoke(main, ["--user", "zhao", "cases", "act", "K1", "handle"])
    assert r.exit_code == 2 and "只能查看" in r.output
    r = invoke(main, ["--user", "nobody", "cases", "act", "K1", "handle"])
    assert r.exit_code == 2 and "没有启用的用户 nobody" in r.output


def test_case_type_shows_overdue_label_past_deadline():
    """An open case past its deadline shows its type's overdue_label (逾期未整改), not its step;
    a closed one, one within its deadline, or a type without the label shows the step."""
    import pandas as pd

    from workbench.cases import CaseType

    d = {"label": "隐患整改", "department": "应急管理局", "intake": "待整改",
         "transitions": {"待整改": ["已整改"], "已整改": ["已销号"]}, "closed": ["已销号"],
         "overdue_label": "逾期未整改"}
    ct = CaseType.from_dict("hazard_rectification", d)
    now = pd.Timestamp("2026-03-01 12:00")
    assert ct.shown("待整改", pd.Timestamp("2026-03-01 09:00"), now) == "逾期未整改"
    assert ct.shown("待整改", pd.Timestamp("2026-03-01 13:00"), now) == "待整改"
    assert ct.shown("已销号", pd.Timestamp("2026-02-01"), now) == "已销号"
    assert ct.shown("待整改", None, now) == "待整改"
    assert ct.shown("待整改", pd.Timestamp("2026-03-01 09:00", tz="UTC"), now.tz_localize("Asia/Shanghai")) == "待整改"
    plain = CaseType.from_dict("x", {k: v for k, v in d.items() if k != "overdue_label"})
    assert plain.shown("待整改", pd.Timestamp("2026-03-01 09:00"), now) == "待整改"
