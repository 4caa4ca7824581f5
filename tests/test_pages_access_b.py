"""Pages act as the signed-in user (issue 13; canteen, market and hub pages, the admin view, the
department CLIs and the reports): a district user reads only their district's rows, the figures
at the top agree with the tables; a read-only role is refused with the reason and sees the
controls disabled; a case step records the user who took it; the admin view is the admin's
only; quarantined rows and report output show masked personal data only."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench import audit, cases, users
from workbench.access import AccessDenied, Principal
from workbench.canteen import compliance as cp
from workbench.canteen.rectification import load_violations
from workbench.privacy import PHONE_OR_ID
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

HT, LK = "荷塘区", "芦淞区"
STAFF = Principal("zhang", "张三", role="staff", department="市场监管局")
OTHER = Principal("wang", "王五", role="staff", department="应急管理局")
DIST = Principal("li", "李四", role="district", department="市场监管局", district=HT)
ANALYST = Principal("zhao", "赵六", role="analyst")
ADMIN = Principal("root1", "管理员", role="admin")
REVIEWER = Principal("qian", "钱七", role="reviewer", department="市场监管局")


def _violation(vid, canteen, district, day, cls="未戴厨师帽", sev="warning"):
    ts = dt.datetime(2026, 11, day, 2, 0, 0)
    return {"violation_id": vid, "ts": ts, "ts_end": ts + dt.timedelta(minutes=1), "camera_id": f"{canteen}-C1",
            "canteen_id": canteen, "district": district, "violation_class": cls, "severity": sev, "score": 0.8,
            "snapshot": f"evidence/{canteen}-C1/2026-11-{day:02d}/{vid}.jpg", "source": "明厨亮灶AI"}


def _enrol(eng, *people):
    """The principals as users of the hub (the engine re-reads who acts from the hub)."""
    from workbench import users

    for p in people:
        if users.principal(p.username, eng, active_only=False) is None:
            users.create(p.username, "long-enough-1", role=p.role, name=p.name, department=p.department,
                         district=p.district, eng=eng)


def _canteens(eng):
    _enrol(eng, STAFF, OTHER, DIST, ANALYST, ADMIN, REVIEWER)
    with eng.begin() as conn:
        insert_new(conn, DATASETS["canteens"], pd.DataFrame([
            {"canteen_id": "ST-HT-001", "name": "月塘小学食堂", "school_type": "小学", "district": HT},
            {"canteen_id": "ST-HT-002", "name": "建宁幼儿园食堂", "school_type": "幼儿园", "district": HT},
            {"canteen_id": "ST-LK-001", "name": "芦淞中学食堂", "school_type": "初中", "district": LK}]))
        insert_new(conn, DATASETS["cameras"], pd.DataFrame([
            {"camera_id": f"{c}-C1", "canteen_id": c} for c in ("ST-HT-001", "ST-HT-002", "ST-LK-001")]))
        load_violations(conn, DATASETS["canteen_violations"], pd.DataFrame([
            _violation("V-HT-1", "ST-HT-001", HT, 23), _violation("V-HT-2", "ST-HT-002", HT, 24),
            _violation("V-HT-3", "ST-HT-001", None, 25),   # no district on the row: its canteen's
            _violation("V-LK-1", "ST-LK-001", LK, 24), _violation("V-LK-2", "ST-LK-001", LK, 25, "鼠患", "critical")]))


# ------------------------------------------------------------------ district scope

def test_canteen_data_is_scoped_to_the_district_user(hub_engine):
    from workbench.ui import canteen_page

    _canteens(hub_engine)
    everything = cp.load(eng=hub_engine)
    mine = cp.load(eng=hub_engine, who=DIST)
    assert len(everything.violations) == 5 and len(everything.canteens) == 3
    assert set(mine.canteens["district"]) == {HT} and len(mine.cameras) == 2
    assert set(mine.violations["violation_id"]) == {"V-HT-1", "V-HT-2", "V-HT-3"}
    assert set(mine.history["violation_id"]) == {"V-HT-1", "V-HT-2", "V-HT-3"}  # case steps too
    # a leader and an analyst read everything
    assert len(cp.load(eng=hub_engine, who=ANALYST).violations) == 5
    # the page's numbers agree with its tables for the district user
    snap = canteen_page.load(eng=hub_engine, who=DIST)
    ranked = cp.canteen_scores(snap.data)
    assert set(ranked["district"]) == {HT} and len(ranked) == 2
    cards = _cards(canteen_page.kpis(snap.data, ranked))
    open_rows = cp.cases(snap.data)
    assert cards["学校食堂"] == "2" and cards["未销案违规"] == str(len(open_rows)) == "3"
    assert set(open_rows["violation_id"]) == {"V-HT-1", "V-HT-2", "V-HT-3"}
    assert "芦淞" not in canteen_page.ranking_table(ranked)
    from workbench import config

    shots = config.data_dir() / "evidence" / "ST-HT-001-C1"
    (shots / "2026-11-23").mkdir(parents=True)
    (shots / "2026-11-23" / "V-HT-1.jpg").write_bytes(b"\xff\xd8 blurred")
    (shots / "2026-11-25").mkdir(parents=True)
    outside = config.data_dir() / "elsewhere.jpg"
    outside.write_bytes(b"\xff\xd8 not evidence")
    (shots / "2026-11-25" / "V-HT-3.jpg").symlink_to(outside)   # a link out of the evidence folder
    feed = canteen_page.feed_html(snap.data.violations, snap.data.canteens, who=DIST)
    assert feed.count('class="wb-cv-img"') == 1 and feed.count("无抓拍图") == 2   # V-HT-2 none, V-HT-3 a link
    assert "V-LK" not in feed and "V-HT-1" in feed
    # snapshots by the application's evidence URL (by id), never a stored path or an embedded file
    assert "/workbench/evidence/V-HT-1" in feed and "evidence/ST-" not in feed and "data:image" not in feed
    assert "/original" not in feed   # the unblurred frame is offered to the reviewer only
    assert "/workbench/evidence/V-HT-1/original" in canteen_page.feed_html(
        snap.data.violations, snap.data.canteens, who=REVIEWER)
    assert snap.options("district") == [HT]


def test_market_data_is_scoped_to_the_district_user():
    from workbench.market import analysis as ma
    from workbench.synth.city import generate
    from workbench.ui import market_page as mp

    city = generate(14, 5, dt.date(2026, 3, 1))
    f = city["frames"]
    tests = f["rapid_tests"].copy()
    for c in ("ts", "sampled_at"):
        tests[c] = pd.to_datetime(tests[c]) - pd.Timedelta(hours=8)
    markets, followups = f["markets"], f["market_followups"]
    district = markets["district"].value_counts().index[0]
    who = Principal("d1", "区县员", role="district", district=district)
    t, m, fu = mp.scoped(who, tests, markets, followups)
    assert len(t) and set(m["district"]) == {district}
    assert set(t["market_id"]) <= set(m["market_id"]) and len(t) < len(tests)
    assert set(fu["test_id"]) <= set(t["test_id"])
    an = ma.analyse(t, m, fu)
    # the figures at the top are the district's: batches and items of its tests only
    assert int(an.city.iloc[0]["items"]) == len(t)
    snap = mp.MarketSnapshot(pd.Timestamp("2026-03-15"), an, pd.DataFrame(columns=["dataset", "reason", "rows"]), who)
    html = str(mp.page(snap))
    assert "隔离区的记录尚未确定所属区县" in html
    # a city-wide user is not scoped
    assert len(mp.scoped(ANALYST, tests, markets, followups)[0]) == len(tests)


# ------------------------------------------------------------------ acting as the identity

def test_a_read_only_role_is_refused_with_the_reason_and_sees_the_editor_disabled(hub_engine):
    from workbench.ui import canteen_page

    _canteens(hub_engine)
    with pytest.raises(AccessDenied, match="数据分析员只能查看"):
        cp.set_case_status("V-HT-1", "notify", actor=ANALYST, eng=hub_engine)
    with pytest.raises(AccessDenied, match="芦淞区.*荷塘区人员不能"):
        cp.set_case_status("V-LK-1", "notify", actor=DIST, eng=hub_engine)
    with pytest.raises(AccessDenied, match="市场监管局办理，应急管理局不能"):
        cp.set_case_status("V-HT-1", "notify", actor=OTHER, eng=hub_engine)
    with pytest.raises(cp.CaseError, match="没有办理人"):
        cp.set_case_status("V-HT-1", "notify", actor="  ", eng=hub_engine)
    assert list(cases.history("V-HT-1", eng=hub_engine)["status"]) == ["待处理"]   # nothing moved

    snap = canteen_page.load(eng=hub_engine, who=ANALYST)
    editor = canteen_page.case_editor(snap, snap.data.violations, who=ANALYST)
    text = str(editor)
    assert "数据分析员只能查看，不能办理整改案件" in text
    buttons = [w for w in _walk(editor) if type(w).__name__ == "Button"]
    assert buttons and all(b.disabled for b in buttons)
    assert not [w for w in _walk(editor) if getattr(w, "description", "") == "操作人"]  # no actor box


def test_a_step_on_the_page_records_the_signed_in_user(hub_engine):
    from workbench.ui import canteen_page

    _canteens(hub_engine)
    snap = canteen_page.load(eng=hub_engine, who=DIST)
    editor = canteen_page.case_editor(snap, snap.data.violations, who=DIST)
    pick = next(w for w in _walk(editor) if getattr(w, "description", "") == "案件")
    assert {v for _, v in pick.options} == {"V-HT-1", "V-HT-2", "V-HT-3"}   # the district's cases only
    pick.value = "V-HT-2"
    go = next(w for w in _walk(editor) if type(w).__name__ == "Button")
    assert not go.disabled
    old = os.environ.get("WORKBENCH_DB_URL")
    go.click()
    msg = [w for w in _walk(editor) if type(w).__name__ == "HTML" and "已保存" in w.value]
    assert msg and "李四（li）" in msg[0].value, [w.value for w in _walk(editor) if type(w).__name__ == "HTML"]
    assert os.environ.get("WORKBENCH_DB_URL") == old
    h = cases.history("V-HT-2", eng=hub_engine)
    assert list(h["status"]) == ["待处理", "已通知"] and h.iloc[-1]["actor"] == "李四（li）"
    log = audit.frame(hub_engine, action="case.step")
    assert log.iloc[0]["actor"] == "李四（li）" and "V-HT-2" in log.iloc[0]["target"]
    # staff of the owning department act too, named
    res = cp.set_case_status("V-HT-1", "notify", actor=STAFF, eng=hub_engine)
    assert res["actor"] == "张三（zhang）"


def _cards(box) -> dict[str, str]:
    """KPI title → the number shown."""
    out = {}
    for w in _walk(box):
        m = re.search(r'wb-card-title">([^<]+)</div><div class="wb-card-value">([^<]+)<', getattr(w, "value", "") or "")
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _walk(w):
    yield w
    for c in getattr(w, "children", ()) or ():
        yield from _walk(c)


def cli(env, *args, user=None):
    e = {**os.environ, **env}
    e.pop("WORKBENCH_USER", None)
    pre = ["--user", user] if user else []
    return subprocess.run([sys.executable, "-m", "workbench.cli", *pre, *args], capture_output=True, text=True,
                          env=e, timeout=300)


def test_canteen_cli_acts_as_the_identity_not_an_actor_text(sqlite_hub):
    _canteens(sqlite_hub)   # enrols li (district, 荷塘区) and zhao (analyst) among others
    env = {k: os.environ[k] for k in ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR")}
    r = cli(env, "canteen", "case", "V-HT-1", "notify", "--actor", "随便谁", user="li")
    assert r.returncode == 2 and "--actor" in r.stderr   # the option is gone
    r = cli(env, "canteen", "case", "V-HT-1", "notify", "--note", "已电话通知", user="zhao")
    assert r.returncode == 2 and "数据分析员只能查看" in r.stderr
    r = cli(env, "canteen", "case", "V-HT-1", "notify", "--note", "已电话通知", user="li")
    assert r.returncode == 0, r.stderr
    assert "李四（li）" in r.stdout
    assert cases.history("V-HT-1", eng=sqlite_hub).iloc[-1]["actor"] == "李四（li）"
    r = cli(env, "canteen", "case", "V-HT-2", "notify")   # the operator at the shell, named
    assert r.returncode == 0 and "命令行（" in cases.history("V-HT-2", eng=sqlite_hub).iloc[-1]["actor"]
    r = cli(env, "canteen", "scores", "--json", user="li")
    assert r.returncode == 0 and "芦淞" not in r.stdout and "月塘小学食堂" in r.stdout


# ------------------------------------------------------------------ the hub page and the admin view

def test_the_admin_view_is_the_admins_only(hub_engine):
    from workbench.ui import admin_page

    users.create("zhang", "long-enough-pw", role="staff", name="张三", department="市场监管局", eng=hub_engine)
    audit.record(hub_engine, "case.step", STAFF, subject="cases:V1", note="已电话联系 13812345678")
    for who in (ANALYST, STAFF, DIST, REVIEWER, Principal("lead", "市长", role="leader")):
        text = str(admin_page.panel(who, hub_engine))
        assert "仅限系统管理员查看" in text and who.role_label in text and "13812345678" not in text
        with pytest.raises(AccessDenied, match="仅限系统管理员"):
            admin_page.audit_rows(who, hub_engine)
        with pytest.raises(AccessDenied):
            admin_page.users_table(who, hub_engine)
    assert "未登录" in str(admin_page.panel(None, hub_engine))
    rows = admin_page.audit_rows(ADMIN, hub_engine, action="case.step", actor="张三")
    assert len(rows) == 1
    html = admin_page.audit_table(rows)
    assert "案件流转" in html and "张三（zhang）" in html and "cases:V1" in html
    assert "138****5678" in html and "13812345678" not in html   # a number typed into a note: masked
    assert "时间（北京时间）" in html
    assert admin_page.audit_rows(ADMIN, hub_engine, action="user.create").iloc[0]["target"] == "zhang"
    assert admin_page.audit_rows(ADMIN, hub_engine, actor="没有这个人").empty
    users_html = admin_page.users_table(ADMIN, hub_engine)
    assert "部门人员" in users_html and "市场监管局" in users_html and "启用" in users_html
    assert "argon2" not in users_html
    panel = admin_page.panel(ADMIN, hub_engine)
    assert "审计日志" in str(panel) and "用户与角色" in str(panel)


def test_upload_panel_refuses_read_only_roles_and_district_rows(sqlite_hub):
    from workbench.ui import hub_page

    for who, why in ((ANALYST, "数据分析员只能查看，不能接入文件"), (DIST, "区县人员只能查看本区县"),
                     (None, None)):
        panel = hub_page.upload_panel(who=who) if who else None
        if panel is None:
            continue
        assert why in str(panel)
        buttons = [w for w in _walk(panel) if type(w).__name__ in ("Button", "FileUpload")]
        assert buttons and all(b.disabled for b in buttons)
    panel = hub_page.upload_panel(who=STAFF)
    assert all(not b.disabled for b in _walk(panel) if type(b).__name__ == "Button")
    snap = hub_page.load(who=DIST)
    assert "不属于任何区县" in str(hub_page.quarantine_explorer(snap)) and \
        "不属于任何区县" in str(hub_page.kept_panel(who=DIST))


def test_a_profile_saved_and_deleted_on_the_page_is_audited_under_the_user(sqlite_hub, tmp_path):
    from workbench.ui import hub_page

    f = tmp_path / "markets.csv"
    data = "市场编号,市场名称,区县\nM01,建设路农贸市场,荷塘区\n".encode("utf-8")
    f.write_bytes(data)
    panel = hub_page.upload_panel(dataset="markets", who=STAFF)
    find = lambda kind, d=None: [w for w in _walk(panel) if type(w).__name__ == kind  # noqa: E731
                                 and (d is None or getattr(w, "description", None) == d)]
    find("FileUpload")[0].value = ({"name": f.name, "type": "text/csv", "size": len(data), "content": memoryview(data),
                                    "last_modified": dt.datetime.now(dt.UTC)},)
    find("Button", "预览")[0].click()
    find("Text", "配置名称")[0].value = "district_markets"
    find("Button", "保存为配置")[0].click()
    texts = " ".join(w.value for w in _walk(panel) if type(w).__name__ == "HTML")
    assert "已保存配置“district_markets”" in texts, texts[-800:]
    saved = audit.frame(sqlite_hub, action="profile.save")
    assert saved.iloc[0]["actor"] == "张三（zhang）" and saved.iloc[0]["target"] == "district_markets"
    pick = find("Dropdown", "接入配置")[0]
    assert pick.value == "district_markets"
    find("Button", "删除配置")[0].click()
    assert audit.frame(sqlite_hub, action="profile.delete").iloc[0]["actor"] == "张三（zhang）"
    assert "district_markets" not in {v for _, v in pick.options}


def test_quarantine_and_the_upload_preview_show_masked_cells(sqlite_hub, tmp_path):
    from workbench.store import ingest
    from workbench.ui import hub_page

    f = tmp_path / "hotline.csv"
    f.write_text("工单编号,受理时间,事件类型,区县,诉求人,联系电话,问题描述\n"
                 "GD1,2026-03-01 09:00,占道经营,荷塘区,王小明,13812345678,门口占道 联系13912345678\n"
                 "GD2,不是时间,占道经营,荷塘区,李大华,13712345678,身份证430202199001011234\n", encoding="utf-8")
    s = ingest.ingest_file("city_events", f, preview=True)
    html = hub_page.summary_html(s)
    assert s.quarantined >= 1 and "将被隔离的样例行" in html
    for raw in ("13812345678", "13712345678", "13912345678", "430202199001011234", "李大华", "王小明"):
        assert raw not in html, raw
    ingest.ingest_file("city_events", f)
    rows = hub_page.quarantine_sample("city_events")
    table = hub_page.quarantine_table(rows)
    assert len(rows) >= 1 and "不是时间" in table
    assert not PHONE_OR_ID.search(table), PHONE_OR_ID.search(table)
    assert "李大华" not in table and "137****5678" in table


# ------------------------------------------------------------------ reports

_IMAGES = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")
_NAMES = ["王小明", "李大华", "欧阳娜娜", "张伟", "陈静"]


@pytest.fixture(scope="module")
def callers_hub(tmp_path_factory):
    """A hub whose 12345 work orders carry callers' names, phones and ID numbers (in their own
    columns; numbers typed into the description and the address too), some of them quarantined
    (half the rows name an event type the city does not know)."""
    from workbench.store import ingest

    root = tmp_path_factory.mktemp("callers")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data"),
           "WORKBENCH_REPORTS_OUT": str(root / "reports")}
    lines = ["工单编号,受理时间,事件类型,区县,地址,诉求人,联系电话,证件号码,问题描述"]
    start = pd.Timestamp("2026-01-01 09:00")
    for i in range(60):
        ts = start + pd.Timedelta(hours=7 * i)
        phone = f"139{i:04d}{5678 + i:04d}"
        lines.append(f"GD{i:03d},{ts:%Y-%m-%d %H:%M},{'占道经营' if i % 2 else '噪音扰民'},{'荷塘区' if i % 3 else '芦淞区'},"
                     f"建设路{i}号 来电人电话{phone},{_NAMES[i % 5]},{phone},43020219900101{1000 + i},"
                     f"市民反映门口占道，回电 {phone}，身份证 43020219900101{1000 + i}")
    lines.append("GD999,不是时间,占道经营,荷塘区,建设路1号,赵某某,13800001111,430202199001019999,回电 13800001111")
    f = root / "hotline.csv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s = ingest.ingest_file("city_events", f)
        assert s.loaded >= 20 and s.quarantined >= 1, s.line()
        with hub.engine().connect() as conn:
            assert conn.execute(sa.text("select count(*) from personal_data")).scalar()  # the originals, apart
        # the file came in yesterday: a report's period ends yesterday at the latest
        yesterday = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)).tz_localize(None).to_pydatetime()
        with hub.engine().begin() as conn:
            conn.execute(sa.text("update ingest_files set received_at = :t"), {"t": yesterday})
            conn.execute(sa.text("update quarantine set quarantined_at = :t"), {"t": yesterday})
    finally:
        hub.dispose(env["WORKBENCH_DB_URL"])
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("report", ["events_weekly", "hub_report"])
def test_report_output_shows_masked_personal_data_only(callers_hub, report):
    """The reports run as the system (papermill, no user), and what they show is masked: no
    phone or ID number pattern and no caller's full name anywhere in their HTML (the hub
    report shows the period's quarantined rows: masked)."""
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_USER"} | callers_hub
    # the events report covers the work orders' weeks; the hub report the days the file came in
    end = "2026-01-20" if report == "events_weekly" else \
        str((pd.Timestamp.now(tz="Asia/Shanghai") - pd.Timedelta(days=1)).date())
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "report", "run", report, "-p", "days", "28",
                        "-p", "end", end, "--date", "2026-01-21"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    from workbench import reports

    out = Path(callers_hub["WORKBENCH_REPORTS_OUT"]) / reports.out_id_of(report, {"days": 28, "end": end}) / \
        "2026-01-21.html"
    text = _IMAGES.sub("", out.read_text(encoding="utf-8"))
    hits = sorted({m.group(0) for m in PHONE_OR_ID.finditer(text)})
    assert not hits, f"{report}: unmasked phone/ID numbers in the output: {hits[:10]}"
    assert not [n for n in _NAMES if n in text]
    if report == "events_weekly":
        assert "占道经营" in text   # the report did show the work orders
    else:   # the quarantined work order is shown, its caller's number masked
        assert "GD999" in text or "不是时间" in text
        assert "138****1111" in text and "赵**" in text
