"""`workbench market …`: rapid-test intake (drop folder), analysis and alerts."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def market():
    """农贸市场快检：快检数据接入、通报统计、监测预警、数据真实性核查与阳性处置跟踪。"""


@market.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
@click.option("--force", is_flag=True, help="Process a file again even if it was taken in before.")
@click.option("--profile", default=None, help="A source profile (e.g. market_export): a name or a YAML path.")
@click.option("--preview", is_flag=True, help="Show what would happen; write nothing.")
def ingest(files, as_json, force, profile, preview):
    """Take rapid-test FILES into the hub (markets by name or code, stall numbers within their
    market, checked against this hub's registries); each positive is raised as a 快检阳性 alert
    at once, a corrected re-send updates its test and its alert."""
    from workbench.cli import echo_preview, ingest_files
    from workbench.market.intake import ingest_tests

    def load(path):
        # ingest_tests raises the 快检阳性 alerts of the file's positives right after loading
        s = ingest_tests(path, force=force, progress=not as_json and not preview, profile=profile, preview=preview)
        if preview and not as_json:
            echo_preview(s)
        return s

    ingest_files(files, load, as_json, echo=not preview)


@market.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--interval", default=5.0, show_default=True, help="Seconds between looks at the folder.")
@click.option("--once", is_flag=True, help="Look twice (a file must hold still between looks), then stop.")
def watch(folder, interval, once):
    """Watch FOLDER for the readers' exports; take each finished file in, then move it to
    已接入/ (or 无法读取/ with the reason beside it)."""
    from workbench.market.intake import watch as run_watch

    def report(r):
        if r["ok"]:
            click.echo(r["summary"].line())
        else:
            click.echo(f"错误 {r['file']}: {r['error']}", err=True)

    click.echo(f"监视文件夹 {folder}（每 {interval:g} 秒检查一次，Ctrl+C 停止）", err=True)
    try:
        n = run_watch(folder, interval=interval, rounds=2 if once else None, on_result=report)
    except KeyboardInterrupt:
        click.echo("已停止。", err=True)
        return
    click.echo(f"共接入 {n} 个文件。", err=True)


@market.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-write", is_flag=True, help="Analyse only; write no alerts or findings.")
@click.option("--progress/--no-progress", default=True, help="Show progress on stderr.")
def analyse(as_json, no_write, progress):
    """Bulletin figures, surveillance, integrity and follow-up over the hub's rapid tests;
    alerts and integrity findings written to the hub (updated in place on a rerun)."""
    from tqdm import tqdm

    from workbench.market import analysis

    steps = ("读取快检记录", "整理检测记录", "通报数据", "控制图与预警统计", "数据真实性核查", "阳性处置跟踪", "写入数据中台", "联动处置")
    bar = tqdm(total=len(steps) - (2 if no_write else 0), desc="快检分析", unit="步",
               disable=as_json or not progress, leave=False)

    def step(name):
        if name != steps[0]:
            bar.update(1)
        bar.set_description(name)

    an, written = analysis.run(progress=step, write=not no_write)
    bar.update(1)
    bar.close()
    s = analysis.summary(an, written)
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, indent=2, default=str))
        return
    click.echo(_text(s))


def _text(s: dict) -> str:
    if not s["tests"]:
        return "数据中台暂无快检记录（workbench ingest rapid_tests FILE 或 workbench market watch FOLDER）。"
    rate = f"{s['item_rate']:.2%}" if s["item_rate"] is not None else "—"
    f = s["followups"]
    lines = [f"快检 {s['tests']} 项次（{s['samples']} 批次），阳性 {s['positive_items']} 项，项次阳性率 {rate}；"
             f"禁用物质阳性 {s['banned_positive']} 项。",
             f"市场阳性率上升（CUSUM）{s['cusum_episodes']} 起；漏斗图高于全市的市场：{'、'.join(s['funnel_high']) or '无'}。",
             "数据真实性问题：" + ("，".join(f"{k} {v} 项" for k, v in s["findings"].items()) or "无") + "。",
             f"阳性处置：{f['positives']} 项，已办结 {f['closed']}，未办结 {f['open']}，逾期 {f['overdue']}，"
             f"销毁 {f['destroyed_kg']:.1f} kg。"]
    w = s["written"]
    if w:
        lines.append(f"写入数据中台：告警新增 {w['alerts_new']}、更新 {w['alerts_updated']}、解除 {w.get('alerts_lifted', 0)}；"
                     f"数据质量问题新增 {w['findings_new']}、更新 {w['findings_updated']}。")
        fc = w.get("followup_cases")
        if fc:
            lines.append(f"阳性处置案件：新开 {fc['opened']} 件，按处置台账推进 {fc['steps']} 步。")
    return "\n".join(lines)
