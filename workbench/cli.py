"""The `workbench` command: ingest files, make the sample city, serve dashboards, run reports."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from workbench.cli_text import text_columns
from workbench.store.schema import DATASETS


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", envvar="WORKBENCH_DB_URL", help="Hub URL (default: SQLite data/city.db).")
@click.option("--user", "user", envvar="WORKBENCH_USER", default=None,
              help="Act as this hub user (its role, department and district apply); default: the operator at the shell.")
@click.version_option(package_name="workbench")
@click.pass_context
def main(ctx, db_url, user):
    """城市数智中心 workbench: the city's data hub, analyses, dashboards and reports."""
    import os

    # what the workbench writes (the hub file, evidence, reports, raw copies) is its own alone
    umask = os.umask(0o077)
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_DB_URL", "WORKBENCH_USER")}
    if db_url:
        os.environ["WORKBENCH_DB_URL"] = db_url
    if user:
        os.environ["WORKBENCH_USER"] = user

    def restore():   # a command run inside another program (tests, a notebook) leaves it as it was
        os.umask(umask)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    ctx.call_on_close(restore)


def _principal():
    """Who this command acts as (--user / $WORKBENCH_USER, else the operator); exit 2 if unknown."""
    from workbench import access

    try:
        return access.current(_hub())
    except access.AccessDenied as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)


_INGEST_HELP = """Take FILES (CSV, XLSX, JSON) into DATASET.

DATASET is one of: """ + ", ".join(f"{n} ({d.label})" for n, d in DATASETS.items()) + """.

Good rows load; bad rows go to quarantine with file, line and reason (the row kept whole).
Columns the hub has no field for stay with their rows; a record re-sent with the same key and
other content is a correction (the old values are kept). A file that cannot be read is
reported and the exit code is 2; the other files still load.

--profile NAME|PATH reads the files as one source writes them (column map, units, time zone,
value maps; see `workbench profiles`). --preview prints the mapping, the unknown columns,
converted sample rows and what would load or be quarantined, and writes nothing.
"""


def echo_summary(s) -> None:
    """One file's intake summary for people: its line, the quarantine reasons, ignored columns."""
    click.echo(s.line())
    for reason, n in sorted(s.reasons.items(), key=lambda kv: -kv[1]):
        click.echo(f"    隔离原因: {reason} × {n}")
    if hasattr(s, "details"):
        for line in s.details():
            click.echo(f"    {line}")
    elif getattr(s, "unknown_columns", None):
        click.echo(f"    未识别的列: {', '.join(s.unknown_columns)}")


def echo_preview(s) -> None:
    """What a file would do (`--preview`): the mapping, converted samples, the would-be counts."""
    click.echo(f"预览（未写入任何数据）{s.filename}" + (f"，配置 {s.profile}" if s.profile else ""))
    click.echo("  列映射:")
    for m in s.mapping or []:
        target = (f"{m['label']}({m['field']})" if m["field"] not in (None, "~") else m["label"] or "（忽略）")
        click.echo(f"    {m['column']} → {target}" + (f"  [{m['unit']}]" if m["unit"] else ""))
    pv = s.preview
    if pv.sample:
        click.echo("  换算后的样例行:")
        for row in pv.sample:
            click.echo("    " + "，".join(f"{k}={v}" for k, v in row.items() if v != ""))
    if pv.quarantine_sample:
        click.echo("  将隔离的样例行:")
        for row in pv.quarantine_sample[:3]:
            click.echo(f"    第 {row['行号']} 行：{row['原因']}" + (f"（{row['说明']}）" if row["说明"] else ""))
    echo_summary(s)


def ingest_files(files, load, as_json: bool, error_fields: dict | None = None, unwrap_one: bool = False,
                 echo: bool = True):
    """The file loop of every intake verb: `load(path)` each file (an IngestError is that file's
    problem only: on stderr, and the next file loads), the summaries for people or as JSON, and
    exit code 2 when any file failed. `unwrap_one`: one file's JSON is an object, not a list."""
    from workbench.store.ingest import IngestError

    results, failed = [], 0
    for path in files:
        try:
            s = load(path)
            results.append({"file": str(path), "ok": True, **s.to_dict()})
            if not as_json and echo:
                echo_summary(s)
            if getattr(s, "damaged", 0):   # loaded, but the file itself is damaged in places: exit 2
                failed += 1
                click.echo(f"错误 {path}: {s.damaged} 行无法读取（过长、编码错误或含 NUL），已逐行隔离，其余行已入库",
                           err=True)
        except IngestError as exc:
            failed += 1
            results.append({"file": str(path), "ok": False, **(error_fields or {}), "error": exc.problem})
            click.echo(f"错误 {path}: {exc.problem}", err=True)
        except (Exception, MemoryError) as exc:   # never a traceback: this file failed, the next one is read
            failed += 1
            problem = f"读取失败（{type(exc).__name__}: {str(exc)[:300]}）"
            results.append({"file": str(path), "ok": False, **(error_fields or {}), "error": problem})
            click.echo(f"错误 {path}: {problem}", err=True)
    if as_json:
        out = results[0] if unwrap_one and len(results) == 1 else results
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    sys.exit(2 if failed else 0)


@main.command(help=_INGEST_HELP)
@click.argument("dataset", type=click.Choice(sorted(DATASETS)), metavar="DATASET")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--force", is_flag=True, help="Process a file again even if it was taken in before.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
@click.option("--profile", default=None, help="A source profile: a name (workbench profiles) or a YAML path.")
@click.option("--preview", is_flag=True, help="Show what would happen; write nothing.")
def ingest(dataset, files, as_json, force, progress, profile, preview):
    from workbench.store.ingest import ingest_file

    def load(path):
        s = ingest_file(dataset, path, progress=progress and not as_json and not preview, force=force,
                        profile=profile, preview=preview)
        if preview and not as_json:
            echo_preview(s)
        return s

    ingest_files(files, load, as_json, error_fields={"dataset": dataset}, unwrap_one=True,
                 echo=not preview)


@main.command()
@click.argument("dataset", required=False)
@click.option("--delete", "delete", default=None, metavar="NAME",
              help="Delete the saved profile NAME (audited as the --user / the operator).")
def profiles(dataset, delete):
    """List the source profiles (shipped in workbench/profiles, saved in data/profiles)."""
    from workbench.store import profiles as pf

    if delete:
        try:
            path = pf.delete(delete, who=_principal())
        except pf.ProfileError as exc:
            _echo_err(f"错误：{exc.problem}")
            sys.exit(2)
        click.echo(f"已删除配置 {delete}（{path}）")
        return
    for name, path in pf.available().items():
        try:
            p = pf.load(path)
        except pf.ProfileError as exc:
            click.echo(f"{name}: 无法读取 — {exc.problem}")
            continue
        if dataset and p.dataset != dataset:
            continue
        click.echo(f"{name}\t{p.dataset}\t{p.label}\t{path}")


@main.command()
@click.option("--days", default=365, show_default=True, help="How many days of city life.")
@click.option("--seed", default=7, show_default=True, help="Random seed; same seed, same city.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day (default: yesterday, Asia/Shanghai).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where the sample files and plants.yaml go (default: data/synth).")
@click.option("--if-empty", is_flag=True, help="Do nothing when the hub already holds a city.")
def synth(days, seed, end, out_dir, if_empty):
    """Make a realistic, seeded sample city for Zhuzhou and load it into the hub."""
    from workbench.store import hub
    from workbench.synth import synth_city

    if if_empty and int(hub.dataset_status()["rows"].sum()) > 0:
        click.echo("数据中台已有数据，跳过生成样例城市 (--if-empty)。")
        return
    res = synth_city(days=days, seed=seed, end=end.date() if end else None, out_dir=out_dir, progress=True)
    loaded = sum(s.loaded for s in res.summaries)
    quarantined = sum(s.quarantined for s in res.summaries)
    click.echo(f"样例城市：{len(res.files)} 个文件，入库 {loaded} 行，隔离 {quarantined} 行；"
               f"预置信号见 {res.out_dir / 'plants.yaml'}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is warned about loudly without TLS.")
@click.option("--port", default=8866, show_default=True, type=int)
@click.option("--preheat", default=1, show_default=True, type=int, help="Preheated kernels per dashboard.")
@click.option("--open-browser", is_flag=True, help="Open the dashboards in a browser.")
@click.option("--auth", type=click.Choice(["password", "proxy"]), default="password", show_default=True,
              help="password: the hub's accounts (/login); proxy: single sign-on behind a trusted reverse proxy.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True,
              help="The reverse proxy's own address, one host (repeatable): in proxy mode its user header is "
                   "believed (with the shared secret), in both modes its X-Forwarded-Proto.")
@click.option("--user-header", default="X-Forwarded-User", show_default=True, help="(proxy) Header naming the user.")
@click.option("--proxy-secret-file", type=click.Path(dir_okay=False), default=None,
              help="(proxy, required) File (0600) with the secret the proxy sends in X-Workbench-Proxy-Secret.")
@click.option("--behind-https", is_flag=True,
              help="An HTTPS reverse proxy is in front: the session cookie is Secure.")
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="Host name the server may be reached by besides loopback (repeatable; DNS-rebinding check).")
@click.option("--certfile", type=click.Path(dir_okay=False), default=None, help="TLS certificate (PEM).")
@click.option("--keyfile", type=click.Path(dir_okay=False), default=None, help="TLS private key (PEM).")
@click.option("--kernels-per-user", default=6, show_default=True, type=int,
              help="Dashboard pages (kernels) one user may hold open at once.")
@click.option("--cull-idle", default=300, show_default=True, type=int,
              help="Seconds after which a page's kernel without a browser is shut down.")
def serve(host, port, preheat, open_browser, auth, trusted_proxies, user_header, proxy_secret_file, behind_https,
          allow_hosts, certfile, keyfile, kernels_per_user, cull_idle):
    """Serve the dashboards (Voilà) on HOST:PORT until stopped; every page needs a signed-in user."""
    from workbench.ui.server import Security
    from workbench.ui.server import serve as run_server

    security = Security(auth=auth, trusted_proxies=tuple(trusted_proxies), user_header=user_header,
                        proxy_secret_file=proxy_secret_file, behind_https=behind_https,
                        allow_hosts=tuple(allow_hosts), certfile=certfile, keyfile=keyfile,
                        kernels_per_user=kernels_per_user, cull_idle=cull_idle)
    sys.exit(run_server(host=host, port=port, preheat=preheat, open_browser=open_browser, security=security))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback unless --allow-remote).")
@click.option("--port", default=8888, show_default=True, type=int)
@click.option("--user", "lab_user", default=None,
              help="The notebooks act as this hub user (asks for the password, or $WORKBENCH_PASSWORD, or --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the --user's password from the first line of stdin.")
@click.option("--allow-remote", is_flag=True, help="Listen on a non-loopback --host (the token is the only guard).")
@click.option("--open", "open_browser", is_flag=True, help="Open JupyterLab in a browser.")
def lab(host, port, lab_user, password_stdin, allow_remote, open_browser):
    """JupyterLab in Simplified Chinese at notebooks/ (token printed; --user: the notebooks act
    as that hub user). Runs until Ctrl-C."""
    import os

    from workbench.errors import WorkbenchError

    try:
        from workbench.ui import lab as lab_module
    except ImportError as exc:   # workbench/ui/lab.py
        _echo_err(f"错误：JupyterLab 启动模块不可用（{exc}）")
        sys.exit(1)
    password = None
    if lab_user:
        password = (sys.stdin.readline().rstrip("\n") if password_stdin
                    else os.environ.get("WORKBENCH_PASSWORD") or click.prompt("密码", hide_input=True))
    try:
        code = lab_module.main(host, port, user=lab_user, password=password, allow_remote=allow_remote,
                               open_browser=open_browser)
    except WorkbenchError as exc:
        _echo_err(f"错误：{getattr(exc, 'problem', None) or exc}")
        sys.exit(2)
    sys.exit(code)


@main.group()
def report():
    """Scheduled reports (papermill)."""


@report.command("list")
def report_list():
    """List the reports (notebooks marked as reports; not training or evaluation notebooks)
    with their Chinese titles and schedule."""
    from workbench import reports

    rows = [["报告", "名称", "笔记本", "排程"]]
    for item in reports.catalogue():
        runs = "；".join(f"{r['id']}（{r['cron']}，参数 {r.get('parameters') or {}}）" for r in item["schedule"]) or "手动运行"
        rows.append([item["title"], item["name"], item["notebook"].relative_to(reports.config.ROOT).as_posix(), runs])
    for line in text_columns(rows):
        click.echo(line)


@report.command("run")
@click.argument("name")
@click.option("-p", "--parameter", "params", nargs=2, multiple=True, metavar="KEY VALUE",
              help="A notebook parameter; may be given several times.")
@click.option("--date", "run_date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The date in the output file name (default: today).")
def report_run(name, params, run_date):
    """Run report NAME into reports/out/ID/DATE.ipynb, .html, .pdf and .xlsx (ID: the schedule entry the
    parameters fit, e.g. hub_weekly for hub_report -p days 7, else NAME; see `report list`)."""
    from workbench import reports

    try:
        r = reports.run(name, dict(params), run_date=run_date.date() if run_date else None)
    except reports.ReportError as exc:
        _echo_err(f"错误: {exc}")
        sys.exit(2)
    click.echo(f"报告已生成：{r.title}（{r.period or '—'}）")
    for label, path in (("网页", r.html), ("PDF", r.pdf), ("Excel", r.xlsx)):
        if path:
            click.echo(f"  {label}：{path}")
    for problem in r.problems:
        click.echo(f"  注意：{problem}", err=True)


@report.command("schedule")
def report_schedule():
    """Run reports/schedule.yaml until stopped (APScheduler)."""
    from workbench import reports

    for item in reports.load_schedule():
        click.echo(f"已排程：{item['id']} ({item['title']})  cron: {item['cron']}")
    try:
        reports.run_schedule(block=True)
    except (KeyboardInterrupt, SystemExit):
        click.echo("排程已停止。")


@main.group()
def db():
    """The hub's schema (Alembic migrations) and contents."""


@db.command("upgrade")
def db_upgrade():
    """Migrate the hub to the newest schema."""
    from workbench.store import hub

    eng = hub.engine(migrate=False)
    hub.upgrade(eng)
    click.echo(f"数据中台 schema 版本：{hub.current_revision(eng)} ({hub.backend(eng)})")


@db.command("status")
@click.option("--json", "as_json", is_flag=True)
def db_status(as_json):
    """Rows, time span (Beijing dates) and quarantine per dataset."""
    import pandas as pd

    from workbench import clock
    from workbench.store import hub

    st = hub.dataset_status()
    if as_json:
        click.echo(st.to_json(orient="records", force_ascii=False, date_format="iso"))
        return
    rows = [["数据集", "代码", "记录数", "隔离行", "最早（北京时间）", "最晚（北京时间）"]]
    for r in st.itertuples():
        first = clock.to_local(r.first_ts) if pd.notna(r.first_ts) else None
        last = clock.to_local(r.last_ts) if pd.notna(r.last_ts) else None
        rows.append([r.label, r.dataset, f"{r.rows:,}", f"{r.quarantined:,}",
                     f"{first:%Y-%m-%d}" if first is not None else "—",
                     f"{last:%Y-%m-%d}" if last is not None else "—"])
    for line in text_columns(rows, right={2, 3}):
        click.echo(line)


@main.group()
def linkage():
    """联动：把一个部门的告警变成其他部门的案件（各部门 linkage.yaml）。"""


def _linkage_rules(departments=()):
    """The checked rules, or exit 2 with each problem (file:line) on stderr."""
    from workbench import linkage as lk

    try:
        return lk.validate(lk.load_rules(departments or None))
    except lk.LinkageError as exc:
        for line in exc.lines():
            _echo_err(f"错误 {line}")
        _echo_err("联动规则未通过检查，未执行任何操作。")
        sys.exit(2)


@linkage.command("check")
@click.option("-d", "--department", "departments", multiple=True, help="Only this department's rules (market …).")
def linkage_check(departments):
    """Check the rules (categories, departments, case types, loops) and list them."""
    from workbench import linkage as lk

    rules = _linkage_rules(departments)
    for r in lk.rules_table(rules).to_dict("records"):
        click.echo(f"{r['规则']}  {r['名称']}  [{r['位置']}]")
        click.echo(f"    告警 {r['告警类别']}（{r['条件']}） → {r['案件类型']} · {r['责任部门'] or '—'}"
                   f" · 时限 {'%g 小时' % r['时限(小时)'] if r['时限(小时)'] == r['时限(小时)'] and r['时限(小时)'] else '按类型'}"
                   f" · 对象 {r['对象']}")
    click.echo(f"联动规则 {len(rules)} 条，检查通过。")


@linkage.command("run")
@click.option("-d", "--department", "departments", multiple=True, help="Only this department's rules.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Only alerts raised since (UTC day).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def linkage_run(departments, since, as_json):
    """Run the rules over the hub's alerts; a rerun opens nothing twice."""
    from workbench import linkage as lk

    rules = _linkage_rules(departments)
    s = lk.run(departments=departments or None, since=since, rules=rules)
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, indent=2))
        return
    for p in s["per_rule"]:
        click.echo(f"{p['rule']:32s} {p['name']:16s} 告警 {p['alerts']:>6d}  对象 {p['targets']:>6d}  "
                   f"新开案件 {p['opened']:>6d}  {p['seconds']:.2f} 秒")
    click.echo(f"联动规则 {s['rules']} 条，匹配告警 {s['alerts']} 条，新开案件 {s['opened']} 件，用时 {s['seconds']:.2f} 秒。")


@linkage.command("chain")
@click.argument("alert_id")
def linkage_chain(alert_id):
    """Show an alert, the cases linkage opened from it and their steps."""
    from workbench import clock
    from workbench import linkage as lk
    from workbench.errors import WorkbenchError

    try:
        ch = lk.chain(alert_id)
    except WorkbenchError as exc:
        _echo_err(f"错误: {exc.problem}")
        sys.exit(2)
    a = ch.alert.iloc[0]
    click.echo(f"告警 {a['alert_id']}  {a['category']}  {a['title']}  （{a['status']}，{clock.to_local(a['ts']):%Y-%m-%d %H:%M}）")
    if ch.cases.empty:
        click.echo("  尚无联动案件。")
    for c in ch.cases.itertuples():
        click.echo(f"  └ 案件 {c.case_id}  {c.type_label or c.case_type}  {c.status}  {c.department or ''}  {c.title or ''}"
                   + (f"  （规则 {c.rule}）" if c.rule and c.rule == c.rule else ""))
        for st in ch.steps[ch.steps["case_id"] == c.case_id].itertuples():
            click.echo(f"      {clock.to_local(st.ts):%Y-%m-%d %H:%M}  {st.status}  {st.actor or ''}  {st.note or ''}")


@main.group("cases")
def cases_group():
    """Cases of every department (一网统管): list, show, move and extend them through the case engine."""


@cases_group.command("list")
@click.option("--type", "case_type", default=None, help="A case type (e.g. school_notice, supervision).")
@click.option("--department", default=None, help="责任部门, e.g. 教育局.")
@click.option("--district", default=None, help="区县, e.g. 荷塘区.")
@click.option("--all", "show_all", is_flag=True, help="Closed cases too (default: open ones).")
@click.option("--limit", default=50, show_default=True)
def cases_list(case_type, department, district, show_all, limit):
    """The open cases (newest first), with their step, deadline and whether overdue."""
    import pandas as pd

    from workbench import cases, clock

    fr = cases.frame(types=[case_type] if case_type else None, department=department, district=district)
    if not show_all:
        fr = fr[~fr["closed"]]
    fr = fr.sort_values("opened", ascending=False).head(limit)
    if fr.empty:
        click.echo("没有符合条件的案件。")
        return
    for r in fr.itertuples():
        due = f"时限 {clock.to_local(r.deadline):%m-%d %H:%M}" if pd.notna(r.deadline) else "无时限"
        click.echo(f"{r.case_id}  {r.type_label}  {r.status}  {r.department or ''}  {r.district or ''}  "
                   f"立案 {clock.to_local(r.opened):%Y-%m-%d %H:%M}  {due}{'  已超期' if r.overdue else ''}")


@cases_group.command("show")
@click.argument("case_id")
def cases_show(case_id):
    """One case's steps (who, when, which department, note), in Beijing time."""
    from workbench import cases, clock

    try:
        h = cases.history(case_id)
    except cases.CaseError as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    for r in h.itertuples():
        text = lambda v: v if isinstance(v, str) else ""  # noqa: E731
        click.echo(f"{clock.to_local(r.ts):%Y-%m-%d %H:%M}  {r.status:8s}  {text(r.actor)}  "
                   f"{text(getattr(r, 'department', None))}  {text(r.note)}")


@cases_group.command("act")
@click.argument("case_id")
@click.argument("action")
@click.option("--note", default="", help="办理意见.")
@click.option("--department", default=None, help="Where the case goes (a 派遣/派发 step).")
@click.option("--expected", default=None, help="The step you saw; refused if the case has moved since.")
def cases_act(case_id, action, note, department, expected):
    """Move CASE_ID by ACTION (a verb of its type, e.g. sign, feedback, close — or a step's name),
    as the --user (or the operator); the step records that identity."""
    from workbench import cases
    from workbench.access import AccessDenied

    try:
        ch = cases.act(_hub(), case_id, action, actor=_principal(), note=note, department=department,
                       expected=expected)
    except (cases.CaseError, AccessDenied) as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    click.echo(f"{case_id}：{ch.before} → {ch.after}（{ch.actor}）")


@cases_group.command("extend")
@click.argument("case_id")
@click.argument("deadline", type=click.DateTime(["%Y-%m-%d %H:%M", "%Y-%m-%d"]))
@click.option("--note", default="", help="Why (延期理由).")
def cases_extend(case_id, deadline, note):
    """Extend CASE_ID's deadline (延期) to DEADLINE, Beijing time, as the --user (or the
    operator); counted in the 延期率."""
    from workbench import cases, clock
    from workbench.access import AccessDenied

    try:
        cases.extend(_hub(), case_id, clock.to_utc(deadline), actor=_principal(), note=note)
    except (cases.CaseError, AccessDenied) as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    click.echo(f"{case_id}：处置时限延至 {deadline:%Y-%m-%d %H:%M}（北京时间）")


def _hub():
    from workbench.store import hub

    return hub.engine()


# ------------------------------------------------------------------ retention

@main.group("retention")
def retention_group():
    """Delete what is kept past its retention period (raw copies of personal data, evidence)."""


@retention_group.command("run")
@click.option("--raw-days", type=float, default=None,
              help="Keep raw copies of files holding personal data this many days (default 180; $WORKBENCH_RAW_RETENTION_DAYS).")
@click.option("--evidence-days", type=float, default=None,
              help="Keep kitchen evidence images this many days (default 30; $WORKBENCH_EVIDENCE_RETENTION_DAYS).")
@click.option("--personal-days", type=float, default=None,
              help="Keep the originals of personal values (personal_data, quarantined rows' too) this many days "
                   "(default: the raw period; $WORKBENCH_PERSONAL_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def retention_run(raw_days, evidence_days, personal_days, dry_run, as_json):
    """Delete raw copies, personal originals and evidence older than their retention; recorded in the audit log."""
    from workbench import retention

    res = retention.run(_hub(), raw=raw_days, evidence=evidence_days, personal=personal_days, who=_principal(),
                        dry_run=dry_run)
    click.echo(json.dumps(res.to_dict(), ensure_ascii=False) if as_json else res.line())


# ------------------------------------------------------------------ users

@main.group("users")
def users_group():
    """Users of the hub: their role, department and district (sign-in for the dashboards)."""


def _user_error(fn):
    import functools

    @functools.wraps(fn)
    def run(*a, **kw):
        from workbench.users import UserError

        try:
            return fn(*a, **kw)
        except UserError as exc:
            _echo_err(f"错误：{exc.problem}")
            sys.exit(2)
    return run


def _password(ask: bool, prompt: str = "密码") -> str:
    import os

    env = os.environ.get("WORKBENCH_PASSWORD")
    if env and not ask:
        return env
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


_ROLE_HELP = "角色：" + "、".join(f"{k}（{v}）" for k, v in __import__("workbench.access", fromlist=["ROLES"]).ROLES.items())


@users_group.command("add")
@click.argument("username")
@click.option("--role", required=True, help=_ROLE_HELP)
@click.option("--name", default=None, help="姓名 (display name).")
@click.option("--department", default=None, help="所属部门, e.g. 市场监管局 (staff, reviewer).")
@click.option("--district", default=None, help="所属区县, e.g. 荷塘区 (district staff).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_user_error
def users_add(username, role, name, department, district, password_stdin):
    """Add USERNAME (asks for the password, or $WORKBENCH_PASSWORD, or --password-stdin)."""
    from workbench import users

    users.validate(username, role, district)   # before asking for a password
    pw = sys.stdin.readline().rstrip("\n") if password_stdin else _password(False)
    who = users.create(username, pw, role=role, name=name, department=department, district=district,
                       by=_principal(), eng=_hub())
    click.echo(f"已新建用户 {who.username}：{who.describe}")


@users_group.command("list")
def users_list():
    """Every user: role, department, district, active or not."""
    from workbench import users

    df = users.frame(_hub())
    if df.empty:
        click.echo("还没有用户。用 `workbench users add` 新建。")
        return
    for r in df.itertuples():
        text = lambda v: v if isinstance(v, str) and v else "-"  # noqa: E731 - NULL reads as NaN
        click.echo(f"{r.username:16s} {text(r.display_name):8s} {text(r.role_label):6s} {text(r.department):12s} "
                   f"{text(r.district):6s} {'启用' if r.active else '停用'}")


@users_group.command("set")
@click.argument("username")
@click.option("--role", default=None, help=_ROLE_HELP)
@click.option("--name", default=None)
@click.option("--department", default=None, help="所属部门 ('' to clear).")
@click.option("--district", default=None, help="所属区县 ('' to clear).")
@click.option("--enable/--disable", "active", default=None, help="启用或停用 (disabling ends its sessions).")
@_user_error
def users_set(username, role, name, department, district, active):
    """Change USERNAME's role, name, department, district, or enable/disable it (audited)."""
    from workbench import users

    who = users.update(username, role=role, name=name,
                       department=... if department is None else department,
                       district=... if district is None else district, active=active, by=_principal(), eng=_hub())
    click.echo(f"已更新用户 {username}：{who.describe if who else ''}{'' if active is not False else '（已停用）'}")


@users_group.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of stdin.")
@_user_error
def users_passwd(username, password_stdin):
    """Set USERNAME's password (its sessions end)."""
    from workbench import users

    pw = sys.stdin.readline().rstrip("\n") if password_stdin else _password(True, "新密码")
    users.set_password(username, pw, by=_principal(), eng=_hub())
    click.echo(f"已修改 {username} 的密码，其已登录的会话均已失效。")


DEMO_ACCOUNTS = (  # username, display name, role, department, district
    ("demo-admin", "演示管理员", "admin", None, None),
    ("demo-leader", "演示市领导", "leader", None, None),
    ("demo-scjg", "演示市场监管", "staff", "市场监管局", None),
    ("demo-cgzf", "演示城管执法", "staff", "城市管理和综合执法局", None),
    ("demo-yjgl", "演示应急管理", "staff", "应急管理局", None),
    ("demo-yxzx", "演示运管中心", "staff", "市城市运行管理服务中心", None),
    ("demo-hetang", "演示荷塘区", "district", None, "荷塘区"),
    ("demo-analyst", "演示分析员", "analyst", None, None),
    ("demo-reviewer", "演示复核员", "reviewer", "市场监管局", None),
)


@users_group.command("demo")
@_user_error
def users_demo():
    """One demo account per role for the sample city, random passwords written to
    data/demo-accounts.txt (0600) and printed; running it again keeps the accounts and passwords."""
    import os
    import secrets

    from workbench import config, users

    path = config.data_dir() / "demo-accounts.txt"
    known = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and not line.startswith("#"):
                known[parts[0]] = parts[1]
    eng, by = _hub(), _principal()
    rows = []
    for username, name, role, department, district in DEMO_ACCOUNTS:
        exists = users.principal(username, eng, active_only=False) is not None
        pw = known.get(username) if exists else None
        if not exists:
            pw = secrets.token_urlsafe(9)
            users.create(username, pw, role=role, name=name, department=department, district=district, by=by, eng=eng)
        else:
            now = users.principal(username, eng, active_only=False)
            if (users.principal(username, eng) is None
                    or (now.role, now.name, now.department, now.district) != (role, name, department, district)):
                users.update(username, role=role, name=name, department=department, district=district, active=True,
                             by=by, eng=eng)
            if not pw:
                pw = secrets.token_urlsafe(9)
                users.set_password(username, pw, by=by, eng=eng)
        rows.append((username, pw, users.principal(username, eng).describe))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# 演示账号（workbench users demo）：用户名\t密码\t角色；仅供演示，勿用于生产\n")
        f.writelines(f"{u}\t{p}\t{d}\n" for u, p, d in rows)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    for u, p, d in rows:
        click.echo(f"{u:14s} {p:14s} {d}")
    click.echo(f"演示账号已写入 {path}（仅本用户可读）。登录地址：workbench serve 后打开 /login")


@main.command("backup")
@click.option("--to", "to", type=click.Path(path_type=Path), default=None,
              help="Folder the backup goes into (default: $WORKBENCH_BACKUP_DIR or data/backups).")
@click.option("--no-files", is_flag=True, help="The database only (not data/raw, data/evidence, data/profiles).")
def backup_cmd(to, no_files):
    """Back up the hub (SQLite: online backup API; PostgreSQL: pg_dump) with its raw files and
    evidence, checksummed (manifest.json), into a new 0700 folder."""
    from workbench import backup as bk

    who = _principal()
    if not who.may_manage:
        _echo_err(f"错误：{who.describe} 无权备份（需要系统管理员）")
        sys.exit(2)
    try:
        res = bk.backup(_hub(), to, who=who, files=not no_files)
    except bk.BackupError as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    click.echo(f"已备份 {res.line()}")


@main.command("restore")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask: replace the hub and its files with the backup.")
@click.option("--no-files", is_flag=True, help="The database only (leave data/raw, data/evidence as they are).")
@click.option("--allow-unsigned", is_flag=True,
              help="Take a backup whose manifest another hub signed (a restore on a new machine without its data/.secret).")
def restore_cmd(folder, yes, no_files, allow_unsigned):
    """Replace the hub and its files with the backup FOLDER, after checking every file of it
    against its manifest (a changed file refuses the restore before anything is touched)."""
    from workbench import backup as bk

    who = _principal()
    if not who.may_manage:
        _echo_err(f"错误：{who.describe} 无权恢复（需要系统管理员）")
        sys.exit(2)
    if allow_unsigned:
        _echo_err("警告：--allow-unsigned：不核对备份清单的签名，只核对文件校验和；请确认备份来源可靠。")
    try:
        m = bk.verify(folder, allow_unsigned=allow_unsigned)
    except bk.BackupError as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    click.echo(f"备份 {folder}：{m['created']}，{m['backend']}，{len(m['tables'])} 张表 "
               f"{sum(m['tables'].values())} 行，文件 {len(m['files'])} 个，校验通过。")
    if not yes and not click.confirm("恢复将覆盖当前数据库和文件，继续？", default=False):
        _echo_err("已取消，未做任何改动。")
        sys.exit(1)
    try:
        res = bk.restore(_hub(), folder, who=who, files=not no_files, allow_unsigned=allow_unsigned)
    except bk.BackupError as exc:
        _echo_err(f"错误：{exc.problem}")
        sys.exit(2)
    click.echo(f"已恢复 {res.line()}")
    if res.mismatched:
        _echo_err("警告：以下表的行数与备份清单不符：" + "，".join(f"{t} {a}→{b}" for t, (a, b) in res.mismatched.items()))
        sys.exit(3)


@main.command("audit")
@click.option("--action", default=None, help="Only this action (case.step, login, unmask, backup …).")
@click.option("--actor", "actor", default=None, help="Only rows whose actor contains this text.")
@click.option("--limit", default=50, show_default=True)
def audit_cmd(action, actor, limit):
    """The audit log, newest first (Beijing time): who did what to which record."""
    from workbench import audit, clock

    df = audit.frame(_hub(), action=action, actor=actor, limit=limit)
    if df.empty:
        click.echo("审计日志为空。")
        return
    for r in df.itertuples():
        click.echo(f"{clock.to_local(r.ts):%Y-%m-%d %H:%M:%S}  {r.label:8s}  {r.actor}  {r.target or ''}  {r.detail or ''}")


def _register_department_commands() -> None:
    """Each registered department's CLI group (workbench.registry: `cli="module:group"`)."""
    from workbench import registry

    for dept in registry.departments():
        if dept.cli:
            main.add_command(registry.resolve(dept.cli))


_register_department_commands()


if __name__ == "__main__":
    main()
