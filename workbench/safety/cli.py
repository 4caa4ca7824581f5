"""`workbench safety …`: cold-weather warnings over the hub's weather observations, inspection
tasks, hazard rectification cases and overdue major hazards."""
from __future__ import annotations

import json

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def safety():
    """城市安全：寒潮、道路结冰、暴雪预警与联动巡查任务。"""


@safety.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--progress/--no-progress", default=True, help="Show progress on stderr.")
def warn(as_json, progress):
    """Data quality, warnings (alerts + history), inspection tasks, hazard cases and overdue alerts.

    The engine is the workbench acting (its alerts, tasks and case steps say 城市安全预警); run
    by a named user (`workbench --user NAME`), that user must be one who may act on cases."""
    from tqdm import tqdm

    _may_run("运行预警引擎")

    from workbench.safety.warnings import STEPS as steps
    from workbench.safety.warnings import run_engine

    bar = tqdm(total=len(steps), desc="预警引擎", unit="步", disable=as_json or not progress, leave=False)

    def step(name):
        bar.set_description(name)
        if name != steps[0]:
            bar.update(1)

    run = run_engine(progress=step)
    bar.update(1)
    bar.close()
    s = run.summary()
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, indent=2))
        return
    click.echo(_text(s))


def _may_run(what: str) -> None:
    """Exit 2 with the reason unless the command's identity may write (the operator at the shell
    may; a read-only role named with --user may not)."""
    import sys

    from workbench.access import ACTING_ROLES
    from workbench.cli import _principal

    who = _principal()
    if not who.system and who.role not in ACTING_ROLES:
        click.echo(f"错误: {who.role_label}只能查看，不能{what}", err=True)
        sys.exit(2)


def _text(s: dict) -> str:
    w = s["written"]
    lines = [f"气象观测 {s['observations']} 条（其中日值 {s.get('daily_records', 0)} 条），站点 {s['stations']} 个。"]
    lines += [f"说明：{n}" for n in s.get("notes", [])]
    found = "，".join(f"{k} {v} 项" for k, v in s["findings"].items()) or "无"
    lines.append(f"数据质量问题：{found}（新增 {w['findings_new']}，更新 {w['findings_updated']}）。")
    exc = "，".join(f"{k} {v} 个" for k, v in s["excluded_by_kind"].items())
    lines.append(f"剔除观测值 {s['excluded_values']} 个" + (f"（{exc}）" if exc else "") + "，不参与预警判定。")
    lines.append(f"预警过程 {s['episodes']} 个（生效中 {s['active']} 个；新增 {w['alerts_new']}，"
                 f"更新 {w['alerts_updated']}，变更记录新增 {w['alert_history_new']}）：")
    for r in s["episodes_by_level"]:
        lines.append(f"    {r['category']}{r['level']}预警 × {r['n']}")
    lines.append(f"联动巡查任务 {s['tasks']} 件（新派遣 {w['events_new']} 件）。")
    lines.append(f"隐患整改案件新立 {w['hazard_cases_new']} 件，按台账推进 {w['hazard_case_steps']} 步；"
                 f"重大隐患逾期告警新增 {w['overdue_alerts_new']} 条，解除 {w['overdue_alerts_lifted']} 条。")
    return "\n".join(lines)


@safety.command("weather-check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--limit", default=30, show_default=True, help="How many findings to list.")
def weather_check(as_json, limit):
    """Data-quality check of the hub's weather observations only (writes nothing)."""
    from workbench.safety.weather import check_weather
    from workbench.store import hub

    rep = check_weather(hub.read("weather"))
    f = rep.findings
    if as_json:
        click.echo(f.to_json(orient="records", force_ascii=False, date_format="iso"))
        return
    click.echo(f"数据质量问题 {len(f)} 项，剔除观测值 {len(rep.excluded)} 个。")
    for r in f.head(limit).itertuples():
        click.echo(f"  [{r.kind}] {r.reason}")
    if len(f) > limit:
        click.echo(f"  …… 另有 {len(f) - limit} 项（--limit 调整）")
