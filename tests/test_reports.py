"""Reports as bulletins: real papermill runs of the report notebooks against a sample city, their
HTML (nothing fetched), PDF, Excel and index; the period; the bulletin pieces; `report list`."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from workbench import reports


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=900)


def summary_box(page: str) -> str:
    """The text of the bulletin's boxed summary (摘要 and 需要决策的事项)."""
    m = re.search(r'<div class="wb-b-summary">(.*?)</div></div>', page, re.S)
    assert m, "no summary box"
    return re.sub(r"<[^>]+>", " ", m.group(1))


def records_between(first: dt.date, last: dt.date) -> int:
    """Records of every dataset whose own time falls on Beijing days first..last, counted here
    from the rows themselves (not by the report's SQL)."""
    from workbench import clock
    from workbench.store import hub
    from workbench.store.schema import DATASETS

    total = 0
    for ds in DATASETS.values():
        if not ds.ts_field:
            continue
        df = hub.read(ds.name)
        if df.empty:
            continue
        day = clock.to_local(pd.to_datetime(df[ds.ts_field])).dt.date
        total += int(((day >= first) & (day <= last)).sum())
    return total


EXTERNAL = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", re.I)


def pdf_pages(data: bytes) -> int:
    """Pages of a PDF (pypdf when installed, else its page objects counted)."""
    try:
        import io

        from pypdf import PdfReader
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    return len(PdfReader(io.BytesIO(data)).pages)


@pytest.mark.slow
def test_hub_report_is_a_bulletin_with_pdf_excel_and_index(sample_city):
    from openpyxl import load_workbook

    r = cli("report", "run", "hub_report", "-p", "days", "7", "-p", "end", "2026-01-20", "--date", "2026-01-21")
    assert r.returncode == 0, r.stderr[-2000:]
    out = Path(sample_city["WORKBENCH_REPORTS_OUT"]) / "hub_weekly"   # where the scheduled weekly run writes
    nb = nbformat.read(out / "2026-01-21.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "days = 7" in injected[0].source and "end = \"2026-01-20\"" in injected[0].source
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    page = (out / "2026-01-21.html").read_text(encoding="utf-8")
    body = page.split("<body", 1)[1]
    # one title, the period, the summary first with the numbers and the change against last week
    assert body.count("<h1>") == 1 and "数据中台周报" in body and "2026-01-14 至 2026-01-20" in body
    assert body.index("wb-b-summary") < body.index("一、各数据集记录数")
    now = records_between(dt.date(2026, 1, 14), dt.date(2026, 1, 20))
    before = records_between(dt.date(2026, 1, 7), dt.date(2026, 1, 13))
    assert now > 0 and before > 0
    box = summary_box(page)
    assert f"新增记录 {now:,} 条" in box and f"上期 {before:,} 条" in box, box
    assert reports.change_text(now, before, "条") in box
    assert "需要决策的事项" in box
    # no code, no developer line, no scroll box, no truncation, text left / numbers right
    assert "import " not in body and "workbench report run" not in body and "显示前" not in body
    assert 'class="wb-b-text">事件流转记录' in body and re.search(r'class="wb-b-num">[\d,]+</td>', body)
    assert "data:image/png;base64" in body   # the chart, inline
    # nothing fetched from the internet
    assert not EXTERNAL.findall(page) and "@import url(http" not in page
    assert "require.min.js" not in page and "MathJax.js" not in page and "cdn." not in page.lower()
    # the PDF opens and has pages; the Excel workbook holds the tables with their rows
    pdf = (out / "2026-01-21.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF") and pdf_pages(pdf) >= 1
    wb = load_workbook(out / "2026-01-21.xlsx", read_only=True)
    assert wb.sheetnames[0] == "报告信息" and "各数据集" in wb.sheetnames and "每日记录数" in wb.sheetnames
    rows = list(wb["各数据集"].iter_rows(values_only=True))
    assert rows[0][:3] == ("数据集", "提供部门", "本期记录（条）")
    assert sum(r[2] for r in rows[1:]) == now and sum(r[3] for r in rows[1:]) == before
    daily = list(wb["每日记录数"].iter_rows(values_only=True))
    assert daily[0][1:] == tuple(f"01-{d}" for d in range(14, 21))
    assert sum(sum(v for v in r[1:]) for r in daily[1:]) == now
    # the index: Chinese title, period, status, the three links
    index = (out.parent / "index.html").read_text(encoding="utf-8")
    assert "数据中台周报" in index and "2026-01-14 至 2026-01-20" in index and "成功" in index
    for ext in ("html", "pdf", "xlsx"):
        assert f'href="hub_weekly/2026-01-21.{ext}"' in index
    assert ">hub_weekly<" not in index and ">hub_report<" not in index   # no bare ids


@pytest.mark.slow
def test_city_daily_summary_states_the_days_numbers(sample_city):
    from workbench import cases, clock

    r = cli("report", "run", "city_daily", "-p", "day", "2026-01-20", "--date", "2026-01-21")
    assert r.returncode == 0, r.stderr[-2000:]
    out = Path(sample_city["WORKBENCH_REPORTS_OUT"]) / "city_daily"
    page = (out / "2026-01-21.html").read_text(encoding="utf-8")
    frame = cases.frame()
    since, until = clock.day_bounds(dt.date(2026, 1, 20))
    b_since, b_until = clock.day_bounds(dt.date(2026, 1, 13))
    n = int(((frame["opened"] >= since) & (frame["opened"] < until)).sum())
    n_before = int(((frame["opened"] >= b_since) & (frame["opened"] < b_until)).sum())
    box = summary_box(page)
    assert f"全市新立案 {n} 件" in box and "较上周同日" in box, box
    diff = n - n_before
    assert (f"增加 {diff} 件" if diff > 0 else f"减少 {-diff} 件" if diff < 0 else "持平") in box
    body = page.split("<body", 1)[1]
    assert body.count("<h1>") == 1 and "城市运行日报（2026年01月20日）" in body
    assert "注释" in body and "按期结案率" in body   # the indicators explained in the notes
    assert not EXTERNAL.findall(page)
    assert (out / "2026-01-21.pdf").read_bytes().startswith(b"%PDF")
    from openpyxl import load_workbook

    wb = load_workbook(out / "2026-01-21.xlsx", read_only=True)
    rows = list(wb["新立案件"].iter_rows(values_only=True))
    assert rows[0] == ("部门", "昨日立案", "上周同日", "变化") and sum(r[1] for r in rows[1:]) == n


def test_a_failed_run_is_listed_as_failed_and_keeps_the_good_report(tmp_path, monkeypatch):
    """A report notebook that raises: 失败 in the index with its failed notebook; the day's
    earlier good report stays."""
    from nbformat.v4 import new_code_cell, new_notebook

    books = tmp_path / "notebooks"
    books.mkdir()
    params = new_code_cell("days = 7")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell("raise ValueError('数据源中断')")])
    nb.metadata["workbench"] = {"report": True, "title": "测试周报"}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, books / "broken.ipynb")
    out = tmp_path / "out"
    monkeypatch.setattr(reports, "NOTEBOOKS", books)
    monkeypatch.setenv("WORKBENCH_REPORTS_OUT", str(out))
    good = out / "broken" / "2026-01-21.html"
    good.parent.mkdir(parents=True)
    good.write_text("an earlier good report", encoding="utf-8")
    assert reports.available() == {"broken": books / "broken.ipynb"}   # marked in its metadata
    with pytest.raises(reports.ReportError, match="数据源中断"):
        reports.run("broken", {}, run_date=dt.date(2026, 1, 21), progress=False)
    assert good.read_text(encoding="utf-8") == "an earlier good report"
    assert (out / "broken" / "2026-01-21.failed.ipynb").exists()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "测试周报" in index and "失败" in index and "数据源中断" in index
    assert 'href="broken/2026-01-21.failed.ipynb"' in index


def test_period_ends_yesterday_by_default_and_never_includes_today():
    today = pd.Timestamp.now(tz="Asia/Shanghai").date()
    p = reports.period(7)
    assert p.last_day == today - dt.timedelta(days=1) and p.first_day == today - dt.timedelta(days=7)
    assert pd.Timestamp(p.end_utc) == pd.Timestamp(today).tz_localize("Asia/Shanghai").tz_convert("UTC").tz_localize(None)
    assert reports.period(1).last_day == p.last_day          # the daily and the weekly end the same day
    with pytest.raises(ValueError, match="昨天"):
        reports.period(1, today)
    prev = reports.period(7, "2026-01-20").previous()
    assert prev.text == "2026-01-07 至 2026-01-13" and prev.end_utc == reports.period(7, "2026-01-20").start_utc
    # every scheduled report takes its period this way: no end of its own in the schedule
    assert all("end" not in (i.get("parameters") or {}) for i in reports.load_schedule())


def test_period_is_whole_beijing_days():
    p = reports.period(7, "2026-01-20")
    assert p.text == "2026-01-14 至 2026-01-20" and p.title == "周报"
    assert str(p.start_utc) == "2026-01-13 16:00:00" and str(p.end_utc) == "2026-01-20 16:00:00"
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ValueError, match="days"):
            reports.period(bad)


def test_a_run_by_hand_lands_where_the_scheduled_one_does():
    assert reports.schedule_id("hub_report", {"days": 7, "end": "2026-01-20"}) == "hub_weekly"
    assert reports.schedule_id("hub_report", {"days": 1}) == "hub_daily"
    assert reports.schedule_id("hub_report", {}) == "hub_weekly"          # the notebook's default days = 7
    assert reports.schedule_id("hub_report", {"days": 3}) is None
    assert reports.schedule_id("city_daily", {"day": "2026-01-20"}) == "city_daily"
    assert reports.out_id_of("hub_report", {"days": 7, "end": "2026-01-20"}) == "hub_weekly"
    assert reports.out_id_of("hub_report", {"days": 3}) == "hub_report-3"    # not a scheduled one's folder
    # one district's report is not the city's: its own folder, never over the scheduled one
    assert reports.schedule_id("events_weekly", {"district": "荷塘区"}) is None
    assert reports.out_id_of("events_weekly", {"district": "荷塘区"}) == "events_weekly-荷塘区"
    assert reports.out_id_of("events_weekly", {"days": 28, "end": "2026-01-20"}) == "events_weekly-28"
    assert reports.out_id_of("events_weekly", {"district": None, "end": "2026-01-20"}) == "events_weekly"
    assert reports.out_id_of("risk_review", {"district": "芦淞区", "start": "2026-01-14"}) == "risk_review-芦淞区"


def test_change_in_words():
    assert reports.change_text(1100, 1000, "条") == "较上期增加 100 条（+10.0%）"
    assert reports.change_text(8, 10, "件") == "较上期减少 2 件（−20.0%）"
    assert reports.change_text(5, 5) == "较上期持平"
    assert reports.change_text(3, 0, "件") == "较上期增加 3 件"   # no percentage from nothing


def test_bulletin_table_is_paged_for_print_and_recorded_for_excel():
    from workbench.ui import bulletin as bt

    df = pd.DataFrame({"market": [f"市场{i}" for i in range(70)], "tests": range(70),
                       "rate": [i / 100 for i in range(70)]})
    page = bt.table_html(df, "各市场", columns={"market": "市场", "tests": "检测项次", "rate": "阳性率"},
                         percent=["rate"], page_rows=30)
    assert page.count("<table") == 3 and page.count("<thead>") == 3          # header repeated per block
    assert "续表 2/3" in page and "续表 3/3" in page and "共 70 行" in page
    assert all(f">市场{i}<" in page for i in range(70))                      # every row, no "显示前"
    assert '<td class="wb-b-text">市场0</td><td class="wb-b-num">0</td><td class="wb-b-num">0.0%</td>' in page
    assert "overflow" not in page.split("</style>")[-1] and "max-height" not in page
    rec = bt.table_record(df, "各市场", columns={"market": "市场", "tests": "检测项次", "rate": "阳性率"})
    assert rec["columns"] == ["市场", "检测项次", "阳性率"] and len(rec["rows"]) == 70 and rec["rows"][1] == ["市场1", 1, 0.01]
    assert "@page{size:A4" in bt.CSS and "break-inside:avoid" in bt.CSS
    assert "本期没有需要决策的事项" in bt.summary_html(["本期 3 件。"], decisions=[])
    assert bt.heading_html("周报", "2026-01-14 至 2026-01-20").count("<h1>") == 1


def test_excel_sheet_names_are_valid_and_unique(tmp_path):
    from openpyxl import load_workbook

    long = "各市场按样品类别和检测项目的本期阳性率与上期比较（含禁用物质）"
    names = reports.sheet_names([long, long, "产地/来源", "报告信息"[:2] + "?"])
    assert all(len(n) <= 31 for n in names) and len(set(names)) == 4 and names[2] == "产地来源"
    tables = [{"title": long, "columns": ["市场", "阳性率"], "rows": [["甲", 0.5], ["乙", None]], "percent": ["阳性率"]},
              {"title": long, "columns": ["n", "天"], "rows": [[1, 17.8802]], "digits": {"天": 1}}]
    path = reports.write_excel(tables, tmp_path / "r.xlsx", title="测试", period="2026-01-20")
    wb = load_workbook(path)
    assert wb.sheetnames == ["报告信息", *reports.sheet_names([long, long])]
    ws = wb[wb.sheetnames[1]]
    assert [c.value for c in ws[2]] == ["甲", 0.5] and ws["B2"].number_format == "0.0%"
    ws = wb[wb.sheetnames[2]]
    assert ws["B2"].value == 17.8802 and ws["B2"].number_format == "0.0"   # shown as in the report, kept exact


def test_report_list_shows_only_reports_with_chinese_titles():
    import nbformat as nbf

    for training in ("canteen_train", "canteen_eval"):   # they have parameters cells, yet are no reports
        nb = nbf.read(reports.NOTEBOOKS / f"{training}.ipynb", as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
        assert training not in reports.available()
    assert {"hub_report", "city_daily", "market_bulletin", "events_weekly", "risk_review"} <= set(reports.available())
    r = cli("report", "list")
    assert r.returncode == 0, r.stderr
    assert "canteen_train" not in r.stdout and "canteen_eval" not in r.stdout
    for title in ("数据中台周报", "城市运行日报", "农贸市场快检周报", "城市事件周报"):
        assert title in r.stdout


def test_bad_parameter_fails_with_the_reason(sample_city):
    r = cli("report", "run", "hub_report", "-p", "days", "abc")
    assert r.returncode == 2
    assert "参数 days 应为整数" in r.stderr and "未生成任何文件" in r.stderr   # checked before papermill runs


def test_unknown_report_is_refused(sample_city):
    r = cli("report", "run", "no_such_report")
    assert r.returncode == 2 and "hub_report" in r.stderr


def test_schedule_names_existing_notebooks():
    items = reports.load_schedule()
    assert items and {i["notebook"] for i in items} <= set(reports.available())
    assert len({i["id"] for i in items}) == len(items)
    sched = reports.run_schedule(block=False)  # builds the jobs (cron parsing) without starting
    assert {j.id for j in sched.get_jobs()} == {i["id"] for i in items}


def test_index_reads_the_runs_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS_OUT", str(tmp_path))
    folder = tmp_path / "market_weekly"
    folder.mkdir()
    for ext in ("html", "pdf", "xlsx"):
        (folder / f"2026-01-19.{ext}").write_text("x", encoding="utf-8")
    (folder / "2026-01-19.json").write_text(json.dumps(
        {"title": "农贸市场快检周报", "period": "2026-01-12 至 2026-01-18", "status": "成功", "html": "2026-01-19.html",
         "pdf": "2026-01-19.pdf", "xlsx": "2026-01-19.xlsx"}, ensure_ascii=False), encoding="utf-8")
    page = reports.write_index().read_text(encoding="utf-8")
    assert "农贸市场快检周报" in page and "2026-01-12 至 2026-01-18" in page
    assert 'href="market_weekly/2026-01-19.pdf"' in page and 'href="market_weekly/2026-01-19.xlsx"' in page


def test_hub_decisions_name_what_stopped_fell_failed_or_was_quarantined():
    from workbench.hub_digest import HubDigest, decisions

    ds = pd.DataFrame([
        # label, department, records, before, files, failed, loaded, file_quarantined
        ("气象观测", "应急管理局", 0, 1512, 0, 0, 0, 0),          # stopped
        ("城市事件", "城市管理和综合执法局", 500, 1174, 3, 0, 500, 0),   # fell to 43 %
        ("农贸市场快检", "市场监管局", 5000, 5400, 6, 2, 4000, 400),  # failed files, 9.1 % quarantined
        ("案件", "一网统管", 360, 367, 0, 0, 0, 0),                 # nothing to decide
    ], columns=["label", "department", "records", "records_before", "files", "files_failed", "loaded",
                "file_quarantined"])
    p = reports.period(7, "2026-01-20")
    d = HubDigest(p, p.previous(), ds, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {})
    out = decisions(d)
    assert out == [
        "气象观测本期没有新记录（上期 1,512 条）：请应急管理局确认数据源是否中断。",
        "城市事件本期记录 500 条，仅为上期的 43%：请城市管理和综合执法局说明原因。",
        "农贸市场快检有 2 个文件接入失败：需数据提供部门修正后重新提供。",
        "农贸市场快检本期接入的数据行有 9.1%（400 行）被隔离：需与数据提供部门核对格式和口径。",
    ]
