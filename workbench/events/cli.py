"""`workbench events …`: intake (files, Open311, NYC 311, MQTT), the case flow, deadlines, patterns."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from workbench.cli_text import ChineseChoice
from workbench.events.flow import ACTION_LABELS, ACTIONS


def _rules(city):
    from workbench.events.dispatch import RulesError, load_rules

    try:
        return load_rules(city)
    except RulesError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def events():
    """城市事件：事件接入、立案派遣、处置时限、热点与预测。"""


_CITY = click.option("--city", default="zhuzhou", show_default=True,
                     help="City rules: a name under workbench/events/cities/ or a YAML file (bounds, classes, routing).")


@events.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "table", "open311", "nyc311"]), default="auto",
              show_default=True, help="auto: Open311 JSON or NYC 311 CSV by their field names, else a table.")
@_CITY
@click.option("--profile", default=None,
              help="A source profile (workbench profiles): hotline_12345, minneapolis_stops, or a YAML path.")
@click.option("--force", is_flag=True, help="Process a file again even if it was taken in before.")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
@click.option("--progress/--no-progress", default=True, help="Show progress on stderr.")
def intake(files, fmt, city, profile, force, as_json, progress):
    """Take event FILES into the hub: validate, dedupe, dispatch on arrival, merge repeats.

    The same as `workbench ingest city_events FILES [--profile P]` (one ingest path), with this
    city's rules (its time zone for naive times when the profile names none) and, for Open311 /
    NYC 311 files, their format."""
    from workbench.cli import ingest_files
    from workbench.events.intake import intake_file

    rules = _rules(city)

    def load(path):
        return intake_file(path, fmt, rules=rules, force=force, progress=progress and not as_json, profile=profile)

    ingest_files(files, load, as_json)


@events.command()
@click.option("--topic", default="city/events", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=1883, show_default=True, type=int)
@click.option("--client-id", default="workbench-events", show_default=True,
              help="Fixed id of the persistent session (the broker keeps unacknowledged messages for it).")
@_CITY
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--username", envvar="WORKBENCH_MQTT_USERNAME", default=None, help="Broker user name.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File holding the broker password (mode 0600); default: $WORKBENCH_MQTT_PASSWORD.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA certificate: connect with TLS and check the broker's certificate.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Client certificate (brokers that require one).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="Its private key.")
@click.option("--max-bytes", default=256 * 1024, show_default=True, type=int,
              help="A larger message is quarantined by its head, not parsed.")
def listen(topic, host, port, client_id, city, seconds, username, password_file, tls_ca, tls_cert, tls_key,
           max_bytes):
    """Take events from an MQTT topic (QoS 1; each message acknowledged only once it is in the hub,
    or in quarantine when it cannot be taken in: a bad message never blocks the topic)."""
    import time

    from workbench.events.mqtt import Listener, read_password

    try:
        password = read_password(password_file)
    except (OSError, IndexError) as exc:
        click.echo(f"错误：密码文件无法使用：{exc}", err=True)
        sys.exit(2)
    lst = Listener(topic, host=host, port=port, client_id=client_id, rules=_rules(city), username=username,
                   password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, max_bytes=max_bytes).start()
    if lst.stats.refused:
        lst.stop(drain=0)
        click.echo(f"错误：MQTT 代理拒绝连接（{lst.stats.refused}）：请检查 --username 和密码", err=True)
        sys.exit(2)
    click.echo(f"监听 mqtt://{host}:{port}/{topic}（会话 {client_id}），Ctrl-C 停止。", err=True)
    start, last = time.time(), -1
    try:
        while seconds is None or time.time() - start < seconds:
            time.sleep(1)
            if lst.stats.messages != last:
                last = lst.stats.messages
                t = lst.stats.total
                click.echo(f"消息 {lst.stats.messages} 条：新增 {t.loaded}，更新 {t.updated}，重复 {t.duplicates}，"
                           f"合并 {t.merged}，隔离 {t.quarantined}"
                           + (f"，已知丢失 {lst.stats.dropped}" if lst.stats.dropped else "")
                           + (f"，重投已隔离 {lst.stats.redelivered}" if lst.stats.redelivered else "")
                           + ("" if lst.connected else "（连接断开，重连中）"), err=True)
    except KeyboardInterrupt:
        pass
    st = lst.stop()
    click.echo(st.total.line())


@events.command()
@_CITY
def dispatch(city):
    """Route the events waiting at 信息收集 by the rules: accept (立案) and dispatch those a rule matches.

    The routing is the workbench's own (history rows say 自动派遣); run by a named user
    (`workbench --user NAME`), that user must be allowed to dispatch city events."""
    from workbench import access
    from workbench.cli import _principal
    from workbench.events import flow
    from workbench.events.board import AUTO_DISPATCH, dispatch_waiting

    who = _principal()
    if not who.system:
        owner = flow._CT.department
        why = who.why_not_act(owner=owner, department=owner, district=who.district, what="派遣城市事件")
        if why:
            click.echo(f"错误: {why}", err=True)
            sys.exit(2)
    n, left = dispatch_waiting(_rules(city), actor=access.system(AUTO_DISPATCH))
    click.echo(f"已立案并派遣 {n} 件；仍待人工派遣 {left} 件（无规则匹配，见调度台）。")


@events.command("act")
@click.argument("event_id")
@click.argument("action", metavar="操作", type=ChineseChoice(ACTION_LABELS, aliases={**{status: a for a, status in ACTIONS.items()},
                                                                     "受理": "accept", "立案": "accept", "处置": "handle",
                                                                     "反馈": "feedback", "结案": "close", "评价": "evaluate",
                                                                     "重复": "duplicate"}))
@click.option("--note", default="", help="办理意见.")
@click.option("--department", default=None, help="For dispatch: the department.")
@click.option("--of", "duplicate_of", default=None, help="For duplicate: the case it repeats.")
@click.option("--expected", default=None, help="The status you saw (环节); refused if the case moved since.")
def act_cmd(event_id, action, note, department, duplicate_of, expected):
    """Move EVENT_ID one step in the case flow (illegal steps are refused): ACTION is 受理立案, 派遣,
    开始处置, 处置反馈, 核查结案, 综合评价, 不予立案, 合并重复, 重新办理 or 缓办 (the English names
    accept, dispatch, handle, feedback, close, evaluate, reject, duplicate, reopen, defer work too), as the signed-in
    identity: `workbench --user NAME` ($WORKBENCH_USER), else the operator at the shell. The
    step records that identity; a user without the right to act is refused with the reason."""
    from workbench.access import AccessDenied
    from workbench.cli import _principal
    from workbench.events.flow import FlowError, act
    from workbench.store import hub

    who = _principal()
    try:
        ch = act(hub.engine(), event_id, action, actor=who, note=note, department=department,
                 duplicate_of=duplicate_of, expected=expected)
    except (FlowError, AccessDenied) as exc:
        click.echo(f"错误: {exc.problem}", err=True)
        sys.exit(2)
    click.echo(f"{ch.case_id}: {ch.before} → {ch.after}（{ch.actor}）")


@events.command()
@_CITY
@click.option("--escalate", is_flag=True, help="Write escalation alerts (预警告警) for overdue cases.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def overdue(city, escalate, limit, as_json):
    """Overdue and nearly overdue cases, and each department's on-time rate."""
    from workbench.events import board, sla
    from workbench.store import hub

    rules = _rules(city)
    snap = board.load(rules=rules)
    st = snap.states
    od, nd = sla.overdue(st), sla.near_due(st)
    written = 0
    if escalate:
        with hub.engine().begin() as conn:
            written = sla.save_escalations(conn, sla.escalations(st))
    if as_json:
        cols = ["event_id", "event_class", "department", "district", "street", "deadline", "overdue_hours"]
        click.echo(json.dumps({"overdue": len(od), "near_due": len(nd), "escalations_new": written,
                               "cases": json.loads(od[cols].head(limit).to_json(orient="records", force_ascii=False,
                                                                                date_format="iso"))},
                              ensure_ascii=False, indent=2))
        return
    click.echo(f"超期未办结 {len(od)} 件，临近超期 {len(nd)} 件" + (f"；新写入升级告警 {written} 条" if escalate else ""))
    for r in od.head(limit).itertuples():
        click.echo(f"  {r.event_id} {r.event_class} {r.department} {r.street or r.district or ''} 超期 {r.overdue_hours:.1f} 小时")
    ot = sla.on_time(st)
    click.echo("各部门按期办结率：")
    for r in ot.itertuples():
        rate = "—" if r.on_time_rate != r.on_time_rate else f"{r.on_time_rate:.0%}"
        click.echo(f"  {r.department:16s} 办结 {r.closed:>6d}  按期率 {rate:>5s}  在办 {r.open:>5d}  超期 {r.open_overdue:>5d}")


@events.command()
@_CITY
@click.option("--days", default=120, show_default=True, help="History to use.")
@click.option("--backtest/--no-backtest", default=True)
@click.option("--closed-on-holidays", is_flag=True,
              help="The source takes no reports on public holidays: those days are closed, not zero demand.")
@click.option("--closed", "closures", multiple=True, help="A day the source was or will be closed (YYYY-MM-DD); repeatable.")
def forecast(city, days, backtest, closed_on_holidays, closures):
    """Tomorrow's and next week's volume per class with 90 % intervals; the backtest against seasonal naive."""
    import pandas as pd

    from workbench.events import patterns as pt
    from workbench.events.board import load_events

    rules = _rules(city)
    ev = load_events(days=days)
    if ev.empty:
        click.echo("暂无事件数据。")
        return
    d = pt.daily_counts(ev, tz=rules.timezone, total="全部")
    closed = pt.closed_days(d.index[0], d.index[-1] + pd.Timedelta(days=7), holidays=closed_on_holidays,
                            extra=closures, rules=rules)
    if closed:
        click.echo(f"停办日（不计为零需求）：{len(closed)} 天，"
                   f"{'、'.join(f'{x:%m-%d}' for x in sorted(closed)[:10])}{'…' if len(closed) > 10 else ''}")
    f = pt.forecast(d, closed=closed)
    for r in f.itertuples():
        tomorrow = "停办" if r.tomorrow_closed else f"{r.tomorrow:7.1f} [{r.tomorrow_lo:.0f}, {r.tomorrow_hi:.0f}]"
        click.echo(f"  {r.series:10s} 明日 {tomorrow}   "
                   f"下周（{r.open_days} 个办理日）{r.week:8.1f} [{r.week_lo:.0f}, {r.week_hi:.0f}]")
    if backtest:
        b = pt.backtest(d, closed=closed)
        click.echo(f"回测（逐日滚动 {int(b['days'].max()) if len(b) else 0} 天）：")
        for r in b.itertuples():
            click.echo(f"  {r.series:10s} MAPE 模型 {r.mape_model:.1%}  季节朴素 {r.mape_seasonal_naive:.1%}  "
                       f"90% 区间覆盖 {r.coverage:.0%}")


@events.command()
@_CITY
@click.option("--days", default=90, show_default=True, help="The page's window (days before the newest report).")
def analyse(city, days):
    """Analyse the events page's patterns (hotspots, areas, deadlines kept, resolution time, forecast)
    over the window and keep them for the page (run after loading events, and on a schedule)."""
    import time

    from workbench import clock
    from workbench.events import analysis as ea

    t = time.perf_counter()
    pat = ea.run(days, city=city)
    if pat.empty:
        click.echo(f"近 {days} 天没有事件，已保存空结果。")
        return
    n_hot = int(pat.hot["significant"].sum()) if len(pat.hot) else 0
    click.echo(f"事件规律分析：近 {days} 天事件 {pat.events:,} 件（截至 {clock.to_local(pat.latest):%Y-%m-%d %H:%M}），显著热点区域 {n_hot} 片，"
               f"预计 {len(pat.forecast)} 类，重复地点 {len(pat.repeats)} 处；用时 {time.perf_counter() - t:.1f} 秒，已保存供页面读取。")
