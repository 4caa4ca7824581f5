"""Scheduled reports: papermill runs of parameterised notebooks, the schedule, the index.

A report is a notebook in notebooks/ with a cell tagged `parameters`. A run writes
reports/out/NAME/DATE.ipynb (executed, with outputs) and DATE.html (code hidden), and
refreshes reports/out/index.html. reports/schedule.yaml says what runs when.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime
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


def period(days, end=None) -> Period:
    """The `days` Beijing days ending with `end` (a date or 'YYYY-MM-DD'; default: today)."""
    import pandas as pd

    try:
        n = int(days)
        if n != float(days) or n < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"参数 days 应为正整数，收到 {days!r}") from None
    try:
        last = (pd.Timestamp(end).date() if end not in (None, "")
                else pd.Timestamp.now(tz=config.TZ).date())
    except (TypeError, ValueError):
        raise ValueError(f"参数 end 应为日期 YYYY-MM-DD，收到 {end!r}") from None
    first = last - pd.Timedelta(days=n - 1)
    start = pd.Timestamp(first).tz_localize(config.TZ).tz_convert("UTC").tz_localize(None)
    stop = (pd.Timestamp(last) + pd.Timedelta(days=1)).tz_localize(config.TZ).tz_convert("UTC").tz_localize(None)
    return Period(n, first, last, start.to_pydatetime(), stop.to_pydatetime())


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


def available() -> dict[str, Path]:
    """Report name → notebook, for every notebook in notebooks/ with a `parameters` cell."""
    import nbformat

    found = {}
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        if any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
            found[nb_path.stem] = nb_path
    return found


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


def run(name: str, parameters: dict | None = None, *, run_date: date | None = None,
        out_name: str | None = None, progress: bool = True, timeout: int = 1800) -> ReportRun:
    """Execute report notebook `name` with papermill and render it to HTML.

    Output goes to reports/out/OUT_NAME/DATE.* (OUT_NAME defaults to the notebook's name).
    """
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    reports = available()
    params = check_parameters(name, parameters)   # before anything runs or is written
    stamp = (run_date or date.today()).isoformat()
    target = out_dir() / (out_name or name)
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
        raise ReportError(f"报告 {name} 运行出错（第 {exc.exec_count} 个单元格）：{exc.ename}: {exc.evalue}；"
                          f"详见 {failed}") from exc
    running.replace(out_nb)
    nb = nbformat.read(out_nb, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{name} {stamp}"}})
    out_html = target / f"{stamp}.html"
    out_html.write_text(body, encoding="utf-8")
    write_index()
    return ReportRun(name, out_nb, out_html, params)


def write_index() -> Path:
    """reports/out/index.html: every rendered report, newest first."""
    root = out_dir()
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for page in sorted(root.glob("*/*.html"), key=lambda p: (p.stem, p.parent.name), reverse=True):
        when = datetime.fromtimestamp(page.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        rel = page.relative_to(root).as_posix()
        items.append(f'<tr><td>{html.escape(page.parent.name)}</td><td>{html.escape(page.stem)}</td>'
                     f'<td><a href="{html.escape(rel)}">查看</a></td><td>{when}</td></tr>')
    index = root / "index.html"
    index.write_text(
        "<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>城市数智中心 · 报告</title>"
        "<style>body{font-family:'Noto Sans CJK SC',sans-serif;margin:2em}td,th{padding:4px 12px;"
        "border-bottom:1px solid #ddd;text-align:left}</style>"
        "<h1>城市数智中心 · 报告目录</h1><table><tr><th>报告</th><th>日期</th><th>链接</th><th>生成时间</th></tr>"
        + "".join(items) + "</table></html>", encoding="utf-8")
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
