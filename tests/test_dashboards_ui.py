"""The dashboards' shared pieces (workbench.ui) without a browser: Beijing time, Chinese
labels and tables, KPI cards, charts that show Chinese, the hub page's numbers on SQLite and
PostgreSQL, and the Voilà command line."""
from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from workbench.store.schema import DATASETS, ingest_files, quarantine
from workbench.ui import cards, charts, hub_page, labels, server, tables, theme


# ------------------------------------------------------------------ time and labels

def test_times_are_shown_in_beijing_time():
    assert tables.format_time(pd.Timestamp("2024-01-05 16:30")) == "2024-01-06 00:30"
    assert tables.format_time(None) == tables.DASH
    local = tables.to_local(pd.Series(pd.to_datetime(["2024-06-30 20:00", None])))
    assert str(local.dt.tz) == "Asia/Shanghai" and local.iloc[0].hour == 4 and pd.isna(local.iloc[1])


def test_age_text():
    now = pd.Timestamp("2024-01-10 12:00")
    assert tables.age_text("2024-01-10 11:59:30", now) == "刚刚"
    assert tables.age_text("2024-01-10 11:15", now) == "45 分钟前"
    assert tables.age_text("2024-01-10 09:00", now) == "3 小时前"
    assert tables.age_text("2024-01-08 12:00", now) == "2 天前"
    assert tables.age_text("2024-01-11 12:00", now) == "1 天后"  # forecasts lie ahead
    assert tables.age_text(pd.NaT, now) == tables.DASH


def test_numbers():
    assert tables.format_number(1234567) == "1,234,567"
    assert tables.format_number(2.0) == "2"
    assert tables.format_number(0.125) == "0.12" or tables.format_number(0.125) == "0.13"
    assert tables.format_number(float("nan")) == tables.DASH
    assert tables.percent(1, 4) == "25.0%" and tables.percent(1, 0) == tables.DASH


def test_labels_come_from_the_schema():
    assert labels.dataset_label("rapid_tests") == DATASETS["rapid_tests"].label == "农贸市场快检"
    assert labels.column_label("commodity", "rapid_tests") == "样品名称"
    assert labels.column_label("ts", "city_events") == "上报时间"
    assert labels.column_label("ts", "weather") == "观测时间"
    assert labels.column_label("rows_read") == "读取行数"
    assert labels.column_label("district") == "区县"
    assert labels.show_value("canteen_violations", "severity", "critical") == "严重"
    assert labels.show_value("canteen_violations", "status", "open") == "待处理"
    assert labels.dataset_options(["weather", "grids"], all_label="全部")[0] == ("全部", "")
    assert [n for _, n in labels.dataset_options(["weather", "grids"])] == ["grids", "weather"]


# ------------------------------------------------------------------ tables and cards

def test_table_html_labels_times_codes_and_escaping():
    df = pd.DataFrame({
        "violation_id": ["<script>alert(1)</script>"],
        "ts": [pd.Timestamp("2024-01-05 16:30")],
        "severity": ["critical"],
        "score": [0.91234],
    })
    html = tables.table_html(df, dataset="canteen_violations")
    assert "<th>违规编号</th>" in html and "<th>开始时间</th>" in html and "<th>严重程度</th>" in html
    assert "2024-01-06 00:30" in html and ">严重<" in html and ">0.91<" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_table_html_empty_and_truncated():
    assert "暂无数据" in tables.table_html(pd.DataFrame())
    assert "暂无数据" in tables.table_html(None)
    html = tables.table_html(pd.DataFrame({"rows": range(30)}), max_rows=10)
    assert html.count("<tr>") == 11 and "共 30 行，显示前 10 行" in html


def test_kpi_card():
    html = cards.kpi_html("记录总数", 46961, unit="条", note="最新记录 3 小时前", tone="warn")
    assert "46,961" in html and "wb-warn" in html and "条" in html
    assert "—" in cards.kpi_html("最近接入", None)
    with pytest.raises(ValueError):
        cards.kpi_html("x", 1, tone="purple")
    row = cards.kpi_row([cards.KPI("数据集", "3 / 15"), cards.kpi_card("隔离行数", 0)])
    assert len(row.children) == 2 and "wb-cards" in row._dom_classes


# ------------------------------------------------------------------ charts

def test_explain_keeps_the_method_behind_a_closed_toggle():
    from workbench.ui import layout

    h = layout.explain_html("阳性率近三周明显上升", "EARS C2 = 4.1；p = 4.1e-21")
    face, rest = h.split('<details class="wb-explain">')
    assert "阳性率近三周明显上升" in face and "EARS" not in face and "p =" not in face
    assert "<summary>说明</summary>" in rest and "EARS C2 = 4.1" in rest and "<details open" not in h
    assert "<summary>统计方法</summary>" in layout.explain_html("x", "y", label="统计方法")
    assert "<details" not in layout.explain_html("只有结论")          # no detail: the face alone
    assert "&lt;b&gt;" in layout.explain_html("x", "y", label="<b>")  # the label is text
    w = layout.explain("阳性率上升", "EARS")
    assert w.value == layout.explain_html("阳性率上升", "EARS") and "wb-explain-widget" in w._dom_classes
    assert "details.wb-explain" in theme.css()


def test_charts_have_a_chinese_font():
    assert theme.cjk_font(), "no CJK font for matplotlib (Debian: fonts-noto-cjk)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = charts.bar_chart(pd.Series({"农贸市场快检": 16317, "城市事件": 3641}), title="各数据集记录数",
                               xlabel="记录数（条）")
        png = charts.png(fig)
        days = pd.date_range("2024-01-01", periods=5, freq="D")
        charts.png(charts.line_chart(pd.DataFrame({"气象观测": range(5)}, index=days), title="每日记录数"))
    assert png[:4] == b"\x89PNG"
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing


# ------------------------------------------------------------------ the hub page

def test_row_preview_uses_labels_and_puts_the_reason_first():
    row = json.dumps({"station_id": "QX-TY", "temperature": 999.9, "kind": "observed", "district": ""})
    html = hub_page.row_preview(row, "weather", "气温(°C)超出上限 70")
    assert html.startswith("<b>气温(°C)=999.9</b>")
    assert "站点编号=QX-TY" in html and "数据类型=实况" in html and "区县=（空）" in html
    assert hub_page.row_preview("not json") == "not json"


def test_hub_page_on_an_empty_hub(hub_engine):
    snap = hub_page.load()
    assert snap.empty and snap.daily.empty
    assert "暂无数据" in hub_page.dataset_overview(snap)
    assert "暂无接入记录" in hub_page.files_table(snap)
    assert "隔离区为空" in hub_page.reasons_table(snap.reasons)
    hub_page.kpis(snap), hub_page.charts_row(snap), hub_page.quarantine_explorer(snap)


def test_hub_page_counts_records_per_beijing_day(hub_engine):
    now = dt.datetime(2024, 1, 7, 4, 0)
    rapid = DATASETS["rapid_tests"].table
    base = {"market_id": "M01", "commodity": "韭菜", "test_item": "农药残留", "result": "阴性"}
    with hub_engine.begin() as conn:
        conn.execute(rapid.insert(), [
            {**base, "test_id": "T1", "ts": dt.datetime(2024, 1, 5, 15, 59)},  # 01-05 23:59 Beijing
            {**base, "test_id": "T2", "ts": dt.datetime(2024, 1, 5, 16, 0)},   # 01-06 00:00 Beijing
            {**base, "test_id": "T3", "ts": dt.datetime(2024, 1, 6, 1, 0)},    # 01-06 09:00 Beijing
        ])
        conn.execute(ingest_files.insert(), [{
            "sha256": "a" * 64, "dataset": "rapid_tests", "filename": "快检.csv", "size_bytes": 10,
            "raw_path": "/raw/a", "encoding": "gbk", "received_at": now, "finished_at": now, "rows_read": 4,
            "loaded": 3, "quarantined": 1, "duplicates": 0, "status": "done", "message": None}])
        conn.execute(quarantine.insert(), [{
            "dataset": "rapid_tests", "file_sha256": "a" * 64, "filename": "快检.csv", "line": 5,
            "reason": "缺少必填字段：检测结果", "row_json": json.dumps({"test_id": "T4", "result": ""}),
            "quarantined_at": now}])
    snap = hub_page.load(now=now)
    assert not snap.empty
    daily = snap.daily["rapid_tests"]
    assert daily[pd.Timestamp("2024-01-05")] == 1 and daily[pd.Timestamp("2024-01-06")] == 2
    overview = hub_page.dataset_overview(snap)
    assert "农贸市场快检" in overview and "2024-01-05 至 2024-01-06" in overview
    assert "较旧" in overview and "1 天前" in overview  # newest record 27 hours before now
    files = hub_page.files_table(snap)
    assert "快检.csv" in files and "已完成" in files and "GBK" in files and "2024-01-07 12:00" in files
    sample = hub_page.quarantine_sample("rapid_tests", "缺少必填字段：检测结果")
    assert list(sample["line"]) == [5]
    assert hub_page.quarantine_sample("rapid_tests", "别的原因").empty
    assert "检测编号=T4" in hub_page.quarantine_table(sample)
    explorer = hub_page.quarantine_explorer(snap, dataset="rapid_tests")
    controls = explorer.children[1]
    assert controls.children[0].value == "rapid_tests"
    assert "缺少必填字段" in explorer.children[2].value


def test_freshness():
    now = pd.Timestamp("2024-01-10 12:00")
    row = {"dataset": "rapid_tests", "rows": 5, "last_ts": pd.Timestamp("2024-01-10 06:00")}
    assert hub_page.freshness(row, now) == ("正常", "ok")
    assert hub_page.freshness({**row, "last_ts": pd.Timestamp("2024-01-07")}, now)[0] == "较旧"
    assert hub_page.freshness({**row, "last_ts": pd.Timestamp("2023-12-01")}, now)[0] == "滞后"
    assert hub_page.freshness({**row, "rows": 0}, now)[0] == "暂无数据"
    assert hub_page.freshness({"dataset": "grids", "rows": 3, "last_ts": pd.NaT}, now)[0] == "基础数据"


# ------------------------------------------------------------------ serving

def test_voila_command_preheats_and_takes_overrides():
    cmd = server.voila_command("127.0.0.1", 9000, preheat=2, extra_args=["--VoilaKernelManager.fill_delay=9"])
    assert "--preheat_kernel=True" in cmd and "--pool_size=2" in cmd and "--port=9000" in cmd
    assert "--template=city" in cmd and "--Voila.port_retries=0" in cmd
    assert [a for a in cmd if "fill_delay" in a] == ["--VoilaKernelManager.fill_delay=9"]
    assert "--preheat_kernel=True" not in server.voila_command(preheat=0)


def test_hub_env_is_absolute_and_finds_the_template(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = server.hub_env({"WORKBENCH_DB_URL": "sqlite:///data/city.db", "WORKBENCH_DATA_DIR": "data"})
    assert env["WORKBENCH_DB_URL"] == f"sqlite:///{tmp_path / 'data' / 'city.db'}"
    assert env["WORKBENCH_DATA_DIR"] == str(tmp_path / "data")
    assert env["JUPYTER_PATH"].split(":")[0] == str(theme.JUPYTER_DIR)
    pg = "postgresql+psycopg://u:p@db/city"
    assert server.hub_env({"WORKBENCH_DB_URL": pg})["WORKBENCH_DB_URL"] == pg
    template = theme.JUPYTER_DIR / "voila" / "templates" / theme.TEMPLATE
    assert json.loads((template / "conf.json").read_text())["base_template"] == "lab"
    assert "https://" not in (template / "index.html.j2").read_text()  # no internet needed
    assert theme.css().startswith("/*")


def test_dashboards_have_titles():
    found = server.dashboards()
    assert found and all(server.dashboard_title(p) != p.stem for p in found), "set metadata.title"
    urls = server.dashboard_urls(port=9000)
    assert urls["数据中台"] == "http://127.0.0.1:9000/voila/render/hub.ipynb"


def test_query_params_outside_voila(monkeypatch):
    from workbench.ui.request import query_params

    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    monkeypatch.setenv("QUERY_STRING", "dataset=rapid_tests&x=1")
    assert query_params() == {"dataset": "rapid_tests", "x": "1"}


def test_serve_refuses_a_busy_port(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert server.serve(port=port) == 1
    assert "已被占用" in capsys.readouterr().err


def test_template_folder_is_inside_the_package():
    assert Path(theme.CSS_FILE).is_file()
    assert theme.JUPYTER_DIR.parent.name == "ui"


# ------------------------------------------------------------------ maps and interactive charts (plotly)

def test_district_map_draws_the_real_districts_named_with_values_on_hover():
    import json

    from workbench import geo
    from workbench.ui import maps

    values = pd.Series({"荷塘区": 12, "芦淞": 30, "430281": 7})         # names, short names and adcodes
    pts = pd.DataFrame({"lat": [27.86, 26.80], "lon": [113.20, 113.55], "label": ["月塘街道 HT-03 网格", "茶陵 城关"],
                        "size": [5, 1], "tone": ["bad", ""], "group": ["超期", "在办"]})
    spec = maps.district_spec(values, title="各区县在办案件", unit="件", points=pts)
    fills = [t for t in spec["data"] if t.get("fill") == "toself"]
    assert sorted({t["name"] for t in fills}) == sorted(geo.NAMES)
    # each district's real boundary, projected as the overview's SVG map is
    hetang = next(t for t in fills if t["name"] == "荷塘区")
    ring = geo.boundary("430202")["coordinates"][0][0]
    x, y = maps.project(ring[0][0], ring[0][1])
    assert hetang["x"][0] == pytest.approx(float(x), abs=1e-4) and hetang["y"][0] == pytest.approx(ring[0][1], abs=1e-4)
    assert "在办案件：12 件" in hetang["text"] and "醴陵市" in next(t for t in fills if t["name"] == "醴陵市")["text"]
    assert "无数据" in next(t for t in fills if t["name"] == "攸县")["text"]
    labels = " ".join(" ".join(t["text"]) for t in spec["data"] if t.get("mode") == "text")
    assert all(d.name in labels for d in geo.DISTRICTS)              # every district named on the map
    assert "30" in labels
    dots = [t for t in spec["data"] if t.get("mode") == "markers+text"]
    assert {t["name"] for t in dots} == {"超期", "在办"}
    modes = [t.get("mode") for t in spec["data"]]   # every dot first, the labels over them: none hidden
    assert max(i for i, m in enumerate(modes) if m == "markers") < min(i for i, m in enumerate(modes) if m == "markers+text")
    assert all(t["hoverinfo"] == "skip" and t["marker"]["opacity"] == 0 for t in dots)
    assert "月塘街道 HT-03 网格" in json.dumps(dots, ensure_ascii=False)
    assert not any(str(t).startswith(("27.", "26.")) for d in dots for t in d["hovertext"])   # named, not coordinates
    text = json.dumps(spec, ensure_ascii=False)
    assert "http" not in text and "topojson" not in text and "mapbox" not in text   # nothing to fetch


def test_district_map_scope_and_bad_input():
    from workbench import geo
    from workbench.ui import maps

    spec = maps.district_spec({"荷塘区": 3, "芦淞区": 5}, districts=["荷塘区"], unit="件")
    fills = {t["name"]: t for t in spec["data"] if t.get("fill") == "toself"}
    assert "在办" not in fills["芦淞区"]["text"] and "不在本账号的查看范围" in fills["芦淞区"]["text"]
    assert "xaxis2" not in spec["layout"]                              # one district: no enlarged panel
    x0, x1 = spec["layout"]["xaxis"]["range"]
    bx = geo.bbox("430202")
    assert maps.project(bx[0], 0)[0] > x0 and maps.project(bx[2], 0)[0] < x1 and x1 - x0 < 0.25
    written = [t for tr in spec["data"] if tr.get("mode") == "text" for t in tr["text"]]
    assert any(t.startswith("荷塘区") for t in written)                   # alone, a district has its full name
    # a place at the map's edge: its long label would be cut off there, so it stays on hover only
    lon_w, lat_mid = bx[0] + 0.002, (bx[1] + bx[3]) / 2
    pts = pd.DataFrame({"lat": [lat_mid, lat_mid], "lon": [lon_w, (bx[0] + bx[2]) / 2], "size": [9, 5],
                        "label": ["茨菇塘街道 网格 HT-CGT-013 很长的名字", "月塘街道 网格 HT-YT-007"]})
    dots = [t for t in maps.district_spec({"荷塘区": 3}, districts=["荷塘区"], points=pts)["data"]
            if t.get("mode") == "markers+text"]
    assert dots[0]["text"] == ["", "月塘街道 网格 HT-YT-007"] and "很长的名字" in dots[0]["hovertext"][0]
    with pytest.raises(geo.GeoError, match="没有区县"):
        maps.district_spec({"长沙县": 1})
    with pytest.raises(ValueError, match="label"):
        maps.district_spec({"荷塘区": 1}, points=pd.DataFrame({"lat": [27.8], "lon": [113.1]}))
    w = maps.district_map({"荷塘区": 1}, title="测试", unit="件")
    data = w.outputs[0]["data"][charts.PLOTLY_MIME]
    assert data["config"]["locale"] == "zh-CN" and data["config"]["locales"]["zh-CN"]["dictionary"]["Zoom in"] == "放大"
    assert data["layout"]["height"] == 600 and "wb-map" in w._dom_classes


def test_interactive_charts_carry_units_on_hover_and_chinese_fonts():
    import json

    frame = pd.DataFrame({"事件": [3, 5, None], "投诉": [1, 2, 3]}, index=pd.date_range("2026-01-01", periods=3))
    spec = charts.line_spec(frame, title="每日事件", unit="件")
    assert [t["name"] for t in spec["data"]] == ["事件", "投诉"]
    assert spec["data"][0]["x"][0] == "2026-01-01 00:00:00" and spec["data"][0]["y"][2] is None
    assert "件" in spec["data"][0]["hovertemplate"] and spec["layout"]["hovermode"] == "x unified"
    assert "Noto Sans CJK SC" in spec["layout"]["font"]["family"]
    bars = charts.bar_spec(pd.Series({"甲市场": 3, "乙市场": 10}), title="阳性批次", unit="批次", top=1)
    assert bars["data"][0]["y"] == ["乙市场"] and "批次" in bars["data"][0]["hovertemplate"]
    w = charts.interactive_line(frame, title="每日事件", unit="件")
    bundle = w.outputs[0]["data"]
    json.dumps(bundle)                                                   # plain JSON for the widget state
    assert set(bundle) == {charts.PLOTLY_MIME, "text/plain"} and "wb-plotly" in w._dom_classes
    assert "每日事件" in bundle["text/plain"]                            # what a plain Jupyter shows
    charts.set_figure(w, charts.bar_figure(pd.Series({"甲": 1})))       # replaced in place (a refresh)
    assert w.outputs[0]["data"][charts.PLOTLY_MIME]["data"][0]["type"] == "bar"
    # only what workbench-charts' plotly.js bundle draws (cartesian): anything else is refused here,
    # not left blank in the browser
    with pytest.raises(ValueError, match="scattermap"):
        charts.plotly_bundle({"data": [{"type": "scattermap", "lat": [27.8], "lon": [113.1]}], "layout": {}})


def test_district_map_writes_no_label_over_another():
    """Twenty hotspots packed into one corner of 荷塘区 (as the sample city's centre): the biggest
    is named, no two written labels cover each other in their panel, every point keeps its name on
    hover, and points spread over the city are all named."""
    import numpy as np

    from workbench.ui import maps

    rng = np.random.default_rng(3)
    packed = pd.DataFrame({"lat": 27.86 + rng.uniform(0, 0.02, 20), "lon": 113.16 + rng.uniform(0, 0.02, 20),
                           "label": [f"荷塘区 宋家桥街道 网格 HT-SJQ-{i:03d}" for i in range(20)],
                           "size": np.arange(20, 0, -1)})
    spec = maps.district_spec({"荷塘区": 3}, points=packed)
    dots = [t for t in spec["data"] if t.get("mode") == "markers+text"]
    written = [(t, i) for t in dots for i, s in enumerate(t["text"]) if s]
    assert any(t["text"][0] == packed.label[0] for t in dots)            # the largest is named
    assert 1 <= len(written) < 12                                        # not all twelve fit
    for t in dots:
        assert len(t["hovertext"]) == 20 and all(h.startswith("<b>荷塘区") for h in t["hovertext"])
    # the written labels of one panel, boxes estimated as maps places them, do not meet
    for t in dots:
        xr = spec["layout"]["xaxis2" if t["xaxis"] == "x2" else "xaxis"]["range"]
        yr = spec["layout"]["yaxis2" if t["yaxis"] == "y2" else "yaxis"]["range"]
        k = max((xr[1] - xr[0]) / maps.PANEL_PX[0], (yr[1] - yr[0]) / maps.PANEL_PX[1])
        boxes = [(t["x"][i], t["y"][i], maps._label_px(s) * k, 15 * k) for i, s in enumerate(t["text"]) if s]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                (x1, y1, w1, _), (x2, y2, w2, _) = boxes[a], boxes[b]
                assert abs(x1 - x2) >= (w1 + w2) / 2 or abs(y1 - y2) >= 15 * k * 0.99
    spread = pd.DataFrame({"lat": [27.86, 27.65, 27.00, 26.80, 27.30], "lon": [113.14, 113.50, 113.35, 113.55, 113.15],
                           "label": ["荷塘", "醴陵", "攸县", "茶陵", "渌口"], "size": [5, 4, 3, 2, 1]})
    dots = [t for t in maps.district_spec({"荷塘区": 3}, points=spread)["data"] if t.get("mode") == "markers+text"]
    assert {s for t in dots for s in t["text"] if s} == set(spread.label)
    # a small place right under a district's name keeps its name on hover, the district's stays legible
    under = spread.assign(lat=[27.86, 27.65, 27.00, 26.80, 27.45], lon=[113.14, 113.50, 113.35, 113.55, 113.10])
    dots = [t for t in maps.district_spec({"荷塘区": 3}, points=under)["data"] if t.get("mode") == "markers+text"]
    assert {s for t in dots for s in t["text"] if s} == set(spread.label) - {"渌口"}
