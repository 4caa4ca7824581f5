"""Scheduled reports: papermill runs of parameterised notebooks, the schedule, the index.

A report is a notebook in notebooks/ with a cell tagged `parameters` that is marked a report:
named in reports/schedule.yaml, or with `"workbench": {"report": true, "title": "…"}` in its
notebook metadata (training and evaluation notebooks such as canteen_train are not reports).
A run writes reports/out/NAME/DATE.ipynb (executed, with outputs), DATE.html (code hidden,
nothing fetched from the internet), DATE.pdf (A4, Chromium), DATE.xlsx (one sheet per table
the notebook showed with workbench.ui.bulletin.table) and DATE.json (title, period, status,
files), and refreshes reports/out/index.html (Chinese: title, period, status, links). A failed
run writes DATE.failed.ipynb and a 失败 line in the index; an earlier good report stays.

Every report covers whole Beijing days ending yesterday unless told otherwise (`period`):
today's partial day is never in it, and all weekly reports cover the same week.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml

from workbench import config

NOTEBOOKS = config.ROOT / "notebooks"


@dataclass
class ReportRun:
    name: str
    notebook: Path
    html: Path
    parameters: dict
    pdf: Path | None = None
    xlsx: Path | None = None
    title: str = ""
    period: str = ""
    problems: list[str] = field(default_factory=list)   # e.g. the PDF could not be printed


class ReportError(Exception):
    pass


@dataclass(frozen=True)
class Period:
    """A report period of whole Beijing days; the UTC bounds are what the hub stores."""

    days: int
    first_day: date
    last_day: date
    start_utc: datetime  # naive UTC, inclusive
    end_utc: datetime  # naive UTC, exclusive

    @property
    def title(self) -> str:
        return "日报" if self.days == 1 else ("周报" if self.days == 7 else f"{self.days} 日报告")

    @property
    def text(self) -> str:
        if self.days == 1:
            return f"{self.first_day:%Y-%m-%d}"
        return f"{self.first_day:%Y-%m-%d} 至 {self.last_day:%Y-%m-%d}"

    def previous(self) -> "Period":
        """The period of as many days just before this one (the comparison period)."""
        return period(self.days, self.first_day - timedelta(days=1))


def _today() -> date:
    import pandas as pd

    return pd.Timestamp.now(tz=config.TZ).date()


def yesterday() -> date:
    """Yesterday in Beijing: the last whole day, where every report ends by default."""

    return _today() - timedelta(days=1)


def period(days, end=None) -> Period:
    """The `days` whole Beijing days ending with `end` (a date or 'YYYY-MM-DD'; default:
    yesterday). A period never reaches into today (its day is not over): ValueError."""
    import pandas as pd

    try:
        n = int(days)
        if n != float(days) or n < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"参数 days 应为正整数，收到 {days!r}") from None
    try:
        last = pd.Timestamp(end).date() if end not in (None, "") else yesterday()
    except (TypeError, ValueError):
        raise ValueError(f"参数 end 应为日期 YYYY-MM-DD，收到 {end!r}") from None
    if last > yesterday():
        raise ValueError(f"参数 end 最晚为昨天 {yesterday():%Y-%m-%d}（今天尚未结束），收到 {end!r}")
    first = last - pd.Timedelta(days=n - 1)
    start = pd.Timestamp(first).tz_localize(config.TZ).tz_convert("UTC").tz_localize(None)
    stop = (pd.Timestamp(last) + pd.Timedelta(days=1)).tz_localize(config.TZ).tz_convert("UTC").tz_localize(None)
    return Period(n, first, last, start.to_pydatetime(), stop.to_pydatetime())


def change_text(now, before, unit: str = "", *, label: str = "较上期") -> str:
    """'较上期增加 12 件（+9.1%）', '较上期持平', '较上期减少 3 件（−20.0%）': the change of a
    count against the previous period, in plain words (no percentage from a zero base)."""
    now, before = float(now), float(before)
    diff = now - before
    fmt = (lambda v: f"{v:,.0f}") if now.is_integer() and before.is_integer() else (lambda v: f"{v:,.1f}")
    if diff == 0:
        return f"{label}持平"
    word = "增加" if diff > 0 else "减少"
    pct = f"（{'+' if diff > 0 else '−'}{abs(diff) / before:.1%}）" if before else ""
    return f"{label}{word} {fmt(abs(diff))}{(' ' + unit) if unit else ''}{pct}"


def out_dir() -> Path:
    return config.reports_out_dir()


def schedule_file() -> Path:
    return config.ROOT / "reports" / "schedule.yaml"


def load_schedule(path: Path | None = None) -> list[dict]:
    """The scheduled reports: id, notebook, title, cron, parameters."""
    path = path or schedule_file()
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(doc.get("reports", []))


def _has_parameters(nb) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def _marked(nb) -> dict | None:
    mark = nb.metadata.get("workbench", {})
    return mark if isinstance(mark, dict) and mark.get("report") else None


def available() -> dict[str, Path]:
    """Report name → notebook: the notebooks in notebooks/ with a `parameters` cell that are
    reports (named in schedule.yaml or marked `workbench.report` in their metadata)."""
    import nbformat

    scheduled = {item.get("notebook") for item in load_schedule()}
    found = {}
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        if _has_parameters(nb) and (nb_path.stem in scheduled or _marked(nb)):
            found[nb_path.stem] = nb_path
    return found


def title_of(name: str) -> str:
    """A report's Chinese title: its schedule entry (by id, else the first by notebook), else
    its notebook's `workbench.title`, else the name."""
    items = load_schedule()
    for item in items:
        if item.get("id") == name and item.get("title"):
            return item["title"]
    for item in items:
        if item.get("notebook") == name and item.get("title"):
            return item["title"]
    path = NOTEBOOKS / f"{name}.ipynb"
    if path.exists():
        import nbformat

        mark = _marked(nbformat.read(path, as_version=4)) or {}
        if mark.get("title"):
            return str(mark["title"])
    return name


def catalogue() -> list[dict]:
    """The reports for `report list`: name, title, notebook, parameters' defaults, and the
    scheduled runs of each (id, title, cron, parameters)."""
    sched = load_schedule()
    out = []
    for name, path in available().items():
        runs = [i for i in sched if i.get("notebook") == name]
        out.append({"name": name, "title": title_of(name) if not runs else
                    ("、".join(dict.fromkeys(i["title"] for i in runs))),
                    "notebook": path, "schedule": runs})
    return out


def _coerce(value: str):
    """Parameters from the command line arrive as text; YAML gives them their type."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except (yaml.YAMLError, ValueError):   # e.g. 2026-13-45: YAML's date constructor refuses it
        return value
    return parsed if isinstance(parsed, (int, float, bool, list, dict, type(None))) else value


def parameters_of(name: str) -> dict[str, dict]:
    """A report's parameters as papermill reads its `parameters` cell: name → {default, help,
    inferred_type_name}."""
    import papermill as pm

    reports = available()
    if name not in reports:
        raise ReportError(f"没有名为 '{name}' 的报告；可用的报告：{', '.join(reports) or '无'}")
    return pm.inspect_notebook(str(reports[name]))


_TYPE_LABEL = {bool: "布尔值（true/false）", int: "整数", float: "数字", str: "文本", list: "列表", dict: "映射"}


def _expected(spec: dict) -> tuple[type, ...] | None:
    """The types a parameter accepts: its annotation if it has one, else its default's type
    (an int default takes whole numbers, a float one any number); None: any plain value."""
    import ast

    hint = (spec.get("inferred_type_name") or "None").lower()
    for word, types in (("bool", (bool,)), ("int", (int,)), ("float", (int, float)), ("str", (str,)),
                        ("list", (list,)), ("dict", (dict,))):
        if hint.startswith(word) or hint.startswith(f"optional[{word}"):
            return types
    try:
        default = ast.literal_eval(str(spec.get("default")))
    except (ValueError, SyntaxError):
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    for t in (str, list, dict):
        if isinstance(default, t):
            return (t,)
    return None


def check_parameters(name: str, parameters: dict | None) -> dict:
    """The parameters for a run of report `name`, checked before papermill runs anything: a name
    the notebook does not declare, or a value of another type than its default's, is a
    ReportError listing the parameters it has. Text from the command line is read as YAML for
    typed parameters (`7` → 7), and kept as written for text ones."""
    allowed = parameters_of(name)
    given = dict(parameters or {})
    listing = "；".join(f"{k}（默认 {v.get('default')}{'，' + v['help'] if v.get('help') else ''}）"
                       for k, v in allowed.items()) or "无"
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise ReportError(f"报告 {name} 没有参数 {'、'.join(unknown)}，未生成任何文件。可用的参数：{listing}")
    out = {}
    for k, raw in given.items():
        types = _expected(allowed[k])
        value = raw if types == (str,) and isinstance(raw, str) else _coerce(raw)
        if value is not None and types is not None and not (isinstance(value, types)
                                                             and not (isinstance(value, bool) and bool not in types)):
            want = "或".join(dict.fromkeys(_TYPE_LABEL.get(t, t.__name__) for t in types))
            raise ReportError(f"报告 {name} 的参数 {k} 应为{want}，收到 {raw!r}，未生成任何文件。可用的参数：{listing}")
        if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
            raise ReportError(f"报告 {name} 的参数 {k} 的值 {raw!r} 不是文本、数字、布尔值、列表或映射")
        if "YYYY-MM-DD" in (allowed[k].get("help") or "") and value is not None:
            try:
                datetime.strptime(str(value), "%Y-%m-%d")
            except ValueError:
                raise ReportError(f"报告 {name} 的参数 {k} 应为日期 YYYY-MM-DD，收到 {raw!r}，未生成任何文件") from None
        out[k] = value
    return out


_NO_FETCH = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def html_exporter():
    """nbconvert's HTML exporter for reports: code and prompts hidden, and nothing fetched from
    the internet (no require.js, MathJax, mermaid or widget scripts from a CDN)."""
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(extra_loaders=[jinja2.DictLoader({"wb_bulletin.html.j2": _NO_FETCH})],
                        template_file="wb_bulletin.html.j2", exclude_input=True, exclude_input_prompt=True,
                        exclude_output_prompt=True, embed_images=True)


def render_html(nb, title: str) -> str:
    """The executed notebook as a self-contained HTML page titled `title`; text a cell wrote to
    stderr (warnings, log lines) stays in the .ipynb and is not printed in the bulletin."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("outputs"):
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    nb.metadata["title"] = title
    body, _ = html_exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


_BUNDLE = "application/vnd.workbench."


def _outputs(nb, mime: str):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if mime in data:
                value = data[mime]
                yield json.loads(value) if isinstance(value, str) else value


def tables_of(nb) -> list[dict]:
    """The tables a report showed with workbench.ui.bulletin.table, as recorded in its outputs:
    [{"title", "sheet", "columns", "rows", "percent", "digits"}], in the order shown."""
    return list(_outputs(nb, _BUNDLE + "table+json"))


def heading_of(nb) -> dict:
    """{"title", "period"} as the report's bulletin.heading showed them ({} if it has none)."""
    return next(iter(_outputs(nb, _BUNDLE + "report+json")), {})


_SHEET_BAD = re.compile(r"[\\/*?:\[\]]")


def sheet_names(titles: list[str]) -> list[str]:
    """Excel sheet names for the tables' titles: characters Excel refuses removed, at most 31
    characters, unique (a repeated name gets （2）, （3）, … within the 31)."""
    out: list[str] = []
    seen: set[str] = set()
    for t in titles:
        base = _SHEET_BAD.sub("", str(t)).strip("' ") or "表"
        name, k = base[:31], 1
        while name.lower() in seen:
            k += 1
            suffix = f"（{k}）"
            name = base[:31 - len(suffix)] + suffix
        seen.add(name.lower())
        out.append(name)
    return out


def write_excel(tables: list[dict], path: Path, *, title: str = "", period: str = "") -> Path:
    """The report's tables as an Excel workbook (openpyxl): a first sheet 报告信息, then one
    sheet per table with its header, every row, numbers as numbers (shares as percent). A
    report that showed no table (an empty period) gets the first sheet, saying so."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    info = wb.active
    info.title = "报告信息"
    info.append(["报告", title])
    info.append(["统计区间（北京时间）", period])
    info.append(["生成时间", datetime.now().strftime("%Y-%m-%d %H:%M")])
    info.append([])
    info.append(["工作表", "表格"])
    names = sheet_names([t.get("sheet") or t.get("title") or "表" for t in tables])
    for name, t in zip(names, tables):
        info.append([name, t.get("title", "")])
    if not tables:
        info.append(["—", "本期没有数据表"])
    info.column_dimensions["A"].width = 24
    info.column_dimensions["B"].width = 48
    bold = Font(bold=True)
    for name, t in zip(names, tables):
        ws = wb.create_sheet(name)
        cols = list(t.get("columns", []))
        ws.append(cols)
        for c in ws[1]:
            c.font = bold
        for row in t.get("rows", []):
            ws.append(row)
        pct = set(t.get("percent") or [])
        for j, col in enumerate(cols, 1):
            values = [r[j - 1] for r in t.get("rows", []) if j - 1 < len(r)]
            numeric = values and all(isinstance(v, (int, float)) or v is None for v in values)
            width = max([len(str(col)) * 2] + [len(str(v)) * (2 if not numeric else 1) for v in values[:500]])
            ws.column_dimensions[get_column_letter(j)].width = min(60, max(8, width + 2))
            fmt = "0.0%" if col in pct else None
            if col in (t.get("digits") or {}):
                d = int(t["digits"][col])
                fmt = ("0." + "0" * d if d > 0 else "0") + ("%" if col in pct else "")
            if fmt:
                for cell in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                    cell[0].number_format = fmt
            if not numeric:
                for cell in ws.iter_rows(min_row=1, min_col=j, max_col=j):
                    cell[0].alignment = Alignment(horizontal="left", wrap_text=False)
        ws.freeze_panes = "A2"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120) -> Path:
    """Print the report's HTML to an A4 PDF with the Chromium the browser tests use
    (workbench.chromium: Debian's chromium through Playwright). Nothing is fetched: every
    request that leaves the file is aborted."""
    from workbench.chromium import chromium

    with chromium() as browser:
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                   else route.abort())
        page.goto(html_path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
        page.emulate_media(media="print")
        page.pdf(path=str(pdf_path), format="A4", print_background=True, prefer_css_page_size=True,
                 margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
                 display_header_footer=True, header_template="<span></span>",
                 footer_template='<div style="font-size:8px;width:100%;text-align:center;color:#666">'
                                 '第 <span class="pageNumber"></span> 页 / 共 <span class="totalPages"></span> 页</div>')
    return pdf_path


def _write_meta(target: Path, stamp: str, meta: dict) -> None:
    (target / f"{stamp}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")


WHEN = ("end", "start", "day")   # which period a report covers: a run for another period is the same report


def _defaults(name: str) -> dict:
    import ast

    out = {}
    for k, spec in parameters_of(name).items():
        try:
            out[k] = ast.literal_eval(str(spec.get("default")))
        except (ValueError, SyntaxError):
            out[k] = spec.get("default")
    return out


def _own(params: dict, defaults: dict) -> dict:
    """The parameters a run sets to other than the notebook's defaults, the period's end aside."""
    return {k: v for k, v in params.items() if k not in WHEN and v not in (None, "") and v != defaults.get(k)}


def schedule_id(name: str, params: dict) -> str | None:
    """The schedule entry a run of notebook `name` with `params` is one of (its id), so a run by
    hand lands where the scheduled one does (hub_report -p days 7 → hub_weekly, days 1 →
    hub_daily): the first entry of the notebook whose every non-empty parameter equals the
    run's value (or the notebook's default when the run leaves it out), and that names every
    parameter the run sets to other than its default, the period's end aside (a district's
    report is not the city's). None: no entry fits."""
    defaults = _defaults(name)
    own = set(_own(params, defaults))
    for item in load_schedule():
        if item.get("notebook") != name:
            continue
        wanted = {k: v for k, v in (item.get("parameters") or {}).items() if v not in (None, "")}
        if all(params.get(k, defaults.get(k)) == v for k, v in wanted.items()) and own <= set(wanted):
            return item.get("id")
    return None


def out_id_of(name: str, params: dict) -> str:
    """The folder under reports/out a run writes to: its schedule entry's id, else the notebook's
    name followed by the values of the parameters it sets to other than their defaults, the
    period's end aside (events_weekly -p district 荷塘区 → events_weekly-荷塘区), so that a
    district's or another length's report never overwrites the scheduled one of that date."""
    sid = schedule_id(name, params)
    if sid:
        return sid
    import re

    own = _own(params, _defaults(name))
    return "-".join([name, *(re.sub(r"[^\w.]+", "_", str(own[k])) for k in sorted(own))])


def run(name: str, parameters: dict | None = None, *, run_date: date | None = None,
        out_name: str | None = None, progress: bool = True, timeout: int = 1800,
        pdf: bool = True, excel: bool = True) -> ReportRun:
    """Execute report notebook `name` with papermill and render it: HTML, PDF, Excel.

    Output goes to reports/out/OUT_NAME/DATE.* (OUT_NAME defaults to the id of the schedule
    entry the run fits, else the notebook's name and the parameters that set what it covers: `out_id_of`). A failure leaves an earlier good report in place, writes
    DATE.failed.ipynb and puts a 失败 line in the index; the error is a ReportError.
    """
    import nbformat
    import papermill as pm

    reports = available()
    params = check_parameters(name, parameters)   # before anything runs or is written
    stamp = (run_date or _today()).isoformat()
    out_id = out_name or out_id_of(name, params)
    scheduled = {i.get("id"): i.get("title") for i in load_schedule()}
    target = out_dir() / out_id
    target.mkdir(parents=True, exist_ok=True)
    out_nb = target / f"{stamp}.ipynb"
    running = target / f".{stamp}.running.ipynb"   # an earlier good report is replaced only by a good one
    try:
        pm.execute_notebook(
            str(reports[name]), str(running), parameters=params, progress_bar=progress,
            cwd=str(NOTEBOOKS), kernel_name="python3", execution_timeout=timeout,
            report_mode=False,
        )
    except pm.PapermillExecutionError as exc:
        failed = target / f"{stamp}.failed.ipynb"
        if running.exists():
            running.replace(failed)
        _write_meta(target, stamp, {"id": out_id, "notebook": name, "title": scheduled.get(out_id) or title_of(name),
                                    "period": "",
                                    "status": "失败", "error": f"{exc.ename}: {exc.evalue}",
                                    "failed": failed.name, "finished": datetime.now().isoformat(timespec="seconds")})
        write_index()
        raise ReportError(f"报告 {name} 运行出错（第 {exc.exec_count} 个单元格）：{exc.ename}: {exc.evalue}；"
                          f"详见 {failed}") from exc
    running.replace(out_nb)
    (target / f"{stamp}.failed.ipynb").unlink(missing_ok=True)
    nb = nbformat.read(out_nb, as_version=4)
    head = heading_of(nb)   # the schedule's title for a scheduled run, else the one the report showed
    title = scheduled.get(out_id) or head.get("title") or title_of(name)
    out_html = target / f"{stamp}.html"
    out_html.write_text(render_html(nb, title), encoding="utf-8")
    result = ReportRun(name, out_nb, out_html, params, title=title, period=head.get("period", ""))
    if excel:
        try:
            result.xlsx = write_excel(tables_of(nb), target / f"{stamp}.xlsx", title=title, period=result.period)
        except Exception as exc:   # the HTML report stands; the index says what is missing
            result.problems.append(f"Excel 未生成：{exc}")
    if pdf:
        try:
            result.pdf = write_pdf(out_html, target / f"{stamp}.pdf")
        except Exception as exc:
            result.problems.append(f"PDF 未生成：{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    _write_meta(target, stamp, {"id": out_id, "notebook": name, "title": title, "period": result.period,
                                "status": "成功", "html": out_html.name,
                                "pdf": result.pdf.name if result.pdf else None,
                                "xlsx": result.xlsx.name if result.xlsx else None,
                                "problems": result.problems, "parameters": params,
                                "finished": datetime.now().isoformat(timespec="seconds")})
    write_index()
    return result


def index_entries() -> list[dict]:
    """Every run under reports/out (from its DATE.json; older runs without one from their
    files), newest date first: id, date, title, period, status, html/pdf/xlsx (paths relative
    to the index), failed notebook, error, problems."""
    root = out_dir()
    entries: dict[tuple[str, str], dict] = {}
    if not root.exists():
        return []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in folder.iterdir():
            m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.(json|html|failed\.ipynb)", f.name)
            if not m:
                continue
            key = (folder.name, m.group(1))
            e = entries.setdefault(key, {"id": folder.name, "date": m.group(1), "title": title_of(folder.name),
                                         "period": "", "status": "成功", "html": None, "pdf": None, "xlsx": None,
                                         "failed": None, "error": "", "problems": []})
            if m.group(2) == "json":
                meta = json.loads(f.read_text(encoding="utf-8"))
                e.update({k: meta.get(k) for k in ("title", "period", "status", "error", "problems")
                          if meta.get(k) is not None})
                for k in ("html", "pdf", "xlsx", "failed"):
                    if meta.get(k) and (folder / meta[k]).exists():
                        e[k] = f"{folder.name}/{meta[k]}"
            elif m.group(2) == "html" and not e["html"]:
                e["html"] = f"{folder.name}/{f.name}"
            elif m.group(2) == "failed.ipynb" and not e["failed"]:
                e["failed"] = f"{folder.name}/{f.name}"
    for e in entries.values():   # a good earlier report of that day beside a failed rerun
        if e["status"] == "失败" and e["html"] is None and (root / e["id"] / f"{e['date']}.html").exists():
            e["html"] = f"{e['id']}/{e['date']}.html"
    return sorted(entries.values(), key=lambda e: (e["date"], e["title"]), reverse=True)


def write_index() -> Path:
    """reports/out/index.html: every report run, newest first, in Chinese: title, period,
    status (成功 / 失败 with the failed notebook), links to HTML, PDF and Excel."""
    root = out_dir()
    root.mkdir(parents=True, exist_ok=True)
    esc = html.escape

    def link(rel, text):
        return f'<a href="{esc(rel)}">{text}</a>' if rel else '<span class="none">—</span>'

    rows = []
    for e in index_entries():
        if e["status"] == "失败":
            status = (f'<span class="bad">失败</span>：{esc(e["error"] or "")} '
                      + (link(e["failed"], "出错的笔记本") if e["failed"] else ""))
        else:
            status = '<span class="ok">成功</span>' + (
                f'<div class="small">{esc("；".join(e["problems"]))}</div>' if e["problems"] else "")
        rows.append(f"<tr><td class='n'>{esc(e['title'])}</td><td class='n'>{esc(e['date'])}</td>"
                    f"<td class='n'>{esc(e['period'] or '—')}</td><td>{status}</td><td class='n'>{link(e['html'], '网页')}</td>"
                    f"<td class='n'>{link(e['pdf'], 'PDF')}</td><td class='n'>{link(e['xlsx'], 'Excel')}</td></tr>")
    index = root / "index.html"
    index.write_text(
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>城市数智中心 · 报告目录</title>"
        "<style>body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:2em;color:#1f2933}"
        "table{border-collapse:collapse}td,th{padding:4px 12px;border-bottom:1px solid #d9e2ec;text-align:left;"
        "vertical-align:top}th{background:#e4ecf5}.ok{color:#1a7f37}.bad{color:#b42318;font-weight:600}"
        ".small{font-size:12px;color:#52606d}.none{color:#9aa5b1}td.n,th{white-space:nowrap}</style></head><body>"
        "<h1>城市数智中心 · 报告目录</h1>"
        "<table><thead><tr><th>报告</th><th>生成日期</th><th>统计区间（北京时间）</th><th>状态</th>"
        "<th>网页</th><th>PDF</th><th>Excel</th></tr></thead><tbody>"
        + ("".join(rows) or "<tr><td colspan='7'>还没有生成任何报告。</td></tr>")
        + "</tbody></table></body></html>", encoding="utf-8")
    return index


def run_schedule(block: bool = True):
    """Run reports/schedule.yaml with APScheduler (cron expressions in Asia/Shanghai)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    sched = (BlockingScheduler if block else BackgroundScheduler)(timezone=config.TZ)
    for item in load_schedule():
        if item["notebook"] not in available():
            raise ReportError(f"schedule.yaml 中的报告 '{item['notebook']}' 在 notebooks/ 中不存在")
        check_parameters(item["notebook"], item.get("parameters"))   # a wrong schedule stops at start
        sched.add_job(run, CronTrigger.from_crontab(item["cron"], timezone=config.TZ),
                      args=[item["notebook"], item.get("parameters") or {}],
                      kwargs={"progress": False, "out_name": item["id"]},
                      id=item["id"], name=item.get("title", item["id"]),
                      coalesce=True, max_instances=1, misfire_grace_time=3600)
    if block:
        sched.start()
    return sched
