"""The 明厨亮灶 dashboard: canteens ranked by compliance score, a live feed of new
violations with their (face-blurred) snapshots, one canteen's history and open cases,
filters by district, school type and violation class, and a case editor that writes
status changes (with history) to the hub.

`load()` reads the hub once (workbench.canteen.compliance); the other functions turn the
snapshot into tables, charts and widgets. dashboards/canteen.ipynb only calls them.

The page acts as the signed-in user (`who`, a workbench.access.Principal): a district user's
snapshot holds only their district's canteens, violations and case steps (compliance.load
filters in the queries), so the figures at the top and the tables agree; case steps are taken
as that user (no actor box), and a role that may not act sees the editor disabled with why.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from workbench.canteen import compliance as cp
from workbench.canteen.classes import VIOLATIONS
from workbench.geo import NAMES as DISTRICTS
from workbench.ui import cards, charts, layout, theme
from workbench.ui.tables import DASH, Html, badge, esc, format_time, table_html, utc_now

ALL = ""
DAYS = 30  # school days the ranking covers
REFRESH_S = 30  # seconds between live-feed refreshes
SEVERITY_TONE = {"critical": "bad", "warning": "warn", "info": "info"}
SEVERITY_ZH = {"critical": "严重", "warning": "警告", "info": "提示"}
STATUS_TONE = {"待处理": "bad", "已通知": "warn", "退回整改": "bad", "已整改": "info", "已复核": "ok"}
RANK_LABELS = {"rank": "排名", "name": "食堂", "school_type": "学校类型", "district": "区县", "score": "合规得分",
               "violations": "违规数", "critical": "严重违规", "weighted_per_hour": "每小时加权违规",
               "open_cases": "未销案", "repeat_badge": "屡犯", "top_class": "最多违规类型"}


@dataclass
class CanteenSnapshot:
    now: pd.Timestamp
    data: cp.CanteenData
    who: object = None   # the Principal it was read for (None: unscoped, the system)
    eng: object = None   # the hub it was read from (None: the default); one canteen's case steps on demand

    @property
    def empty(self) -> bool:
        return self.data.empty

    def options(self, column: str, order=()) -> list[str]:
        src = self.data.canteens if column in self.data.canteens else self.data.violations
        seen = set(src[column].dropna()) if column in src else set()
        return [d for d in order if d in seen] + sorted(seen - set(order))


def prepare() -> None:
    """Ahead of the request (a preheated kernel runs it): the hub's engine, and what the page
    imports and builds on a visit — the cluster's health reader (it brings OpenCV and PyAV), the
    evidence store, plotly's first figure — so a visitor does not wait for them."""
    import workbench.canteen.cluster
    import workbench.canteen.evidence
    import workbench.retention  # noqa: F401
    from workbench.store import hub

    hub.engine()
    charts.warm_up_interactive()


def load(now=None, eng=None, who=None) -> CanteenSnapshot:
    """One read of the hub for `who` (a district user: their district only); the case steps are
    read per canteen when one is shown (case_steps), not all at once."""
    return CanteenSnapshot(utc_now() if now is None else pd.Timestamp(now), cp.load(eng=eng, who=who, history=False),
                           who, eng)


# ------------------------------------------------------------------ filters (pure)

def view(snap: CanteenSnapshot, district=None, school_type=None, vclass=None) -> cp.CanteenData:
    """The canteens and violations under the filters."""
    d = snap.data
    can = d.canteens
    if district and "district" in can:
        can = can[can["district"] == district]
    if school_type and "school_type" in can:
        can = can[can["school_type"] == school_type]
    v = d.violations
    if not v.empty:
        if district or school_type:
            v = v[v["canteen_id"].isin(can["canteen_id"])]
        if vclass:
            v = v[v["violation_class"] == vclass]
    return cp.CanteenData(can, d.cameras, v, d.history)


# ------------------------------------------------------------------ tables and charts

def ranking_table(ranked: pd.DataFrame, limit: int = 30) -> str:
    if ranked.empty:
        return table_html(None, empty="暂无食堂数据", empty_hint="接入学校食堂名录和明厨亮灶告警后，这里按合规得分排名。")
    r = ranked.assign(
        score=ranked["score"].map(lambda s: badge(f"{s:.1f}", "bad" if s < 80 else ("warn" if s < 95 else "ok"))),
        repeat_badge=ranked["repeat"].map(lambda x: badge("屡犯", "bad") if x else Html(DASH)))
    return table_html(r, columns=list(RANK_LABELS), labels=RANK_LABELS, html_columns=["score", "repeat_badge"],
                      max_rows=limit, max_height="460px")


def ranking_figure(ranked: pd.DataFrame, n: int = 12, title: str = "合规得分最低的食堂"):
    """The lowest scores, lowest on top (plotly: the score on hover and on each bar)."""
    import math

    r = ranked.head(n)
    fig = charts.bar_figure(pd.Series(r["score"].round(1).to_numpy(), index=r["name"].astype(str).str.slice(0, 14)),
                            title=title, unit="分", color=theme.COLORS["bad"])
    if len(r):  # the scores sit close under 100: the axis starts near the lowest so the gaps show
        low = max(0, math.floor(float(r["score"].min()) / 5) * 5 - 5)
        fig.update_xaxes(range=[low, 100.5], rangemode=None)
    return fig


def class_figure(v: pd.DataFrame, title: str = "违规类型分布"):
    counts = v["violation_class"].value_counts()
    return charts.bar_figure(counts, title=title, unit="起")


def _thumb(r, who=None, width: int = 320, now=None) -> str:
    """The violation's snapshot as the application serves it (the face-blurred frame, by the
    violation's id: never a file path taken from the data, never read into the page); for the
    reviewing role, a link to the unblurred frame (the server checks the role and audits it).
    Whether there is one is asked of the evidence store by id, camera and time; when there is
    none, why (evidence.snapshot_state): none was recorded, its retention period is over, or the
    file it should have is missing — a fault, said plainly and marked."""
    from workbench.canteen import evidence as ev
    from workbench.ui.identity import evidence_url

    violation_id = getattr(r, "violation_id", None)
    state = ev.snapshot_state(violation_id, getattr(r, "camera_id", None), getattr(r, "ts", None),
                              recorded=getattr(r, "snapshot", None), now=now)
    if state == ev.SNAPSHOT_MISSING:
        return ('<div class="wb-cv-noimg wb-cv-missing"><b>无抓拍图：文件缺失</b>'
                '<span>这起违规应有抓拍图，但文件找不到（可能被误删或存储故障），请联系系统管理员。</span></div>')
    if state == ev.SNAPSHOT_EXPIRED:
        from workbench.retention import evidence_days

        return (f'<div class="wb-cv-noimg"><b>无抓拍图</b><span>已超过 {evidence_days():g} 天保留期限，'
                '按规定删除</span></div>')
    if state != ev.SNAPSHOT_SHOWN:
        return '<div class="wb-cv-noimg"><b>无抓拍图</b><span>该告警未附抓拍图</span></div>'
    img = (f'<img class="wb-cv-img" src="{esc(evidence_url(str(violation_id)))}" alt="抓拍图（人脸已打码）" '
           f'width="{width}" height="{width * 9 // 16}" loading="lazy">')
    if who is not None and who.may_review_evidence:
        # the unblurred frame only with a reason (the server requires it and audits it with the view)
        img += (f'<form class="wb-cv-original" method="get" target="_blank" rel="noopener" '
                f'action="{esc(evidence_url(str(violation_id), original=True))}">'
                '<input name="reason" required minlength="2" maxlength="200" placeholder="查看原因（必填，留痕）">'
                '<button type="submit">查看未打码原图</button></form>')
    return img


FEED_CSS = """<style>
.wb-cv-feed{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.wb-cv-card{min-width:0;box-sizing:border-box;border:1px solid #e3e6ea;border-radius:8px;padding:8px;background:#fff}
.wb-cv-img{display:block;border-radius:4px;width:100%;height:auto;aspect-ratio:16/9;background:#f3f4f6}
.wb-cv-original{font-size:12px;margin-top:4px;display:flex;gap:4px;flex-wrap:wrap}
.wb-cv-original input{width:150px;font-size:12px}
.wb-cv-noimg{aspect-ratio:16/9;display:flex;flex-direction:column;gap:6px;align-items:center;
 justify-content:center;text-align:center;padding:8px 14px;box-sizing:border-box;background:#f3f4f6;color:#888;
 border-radius:4px;font-size:13px}
.wb-cv-noimg span{font-size:12px}
.wb-cv-missing{background:#fdecec;color:#a61b1b;border:1px solid #f1b5b5}
.wb-cv-meta{font-size:13px;margin-top:6px;line-height:1.6;overflow-wrap:anywhere}
.wb-cl-state{font-size:14px;padding:8px 12px;border-radius:6px;margin:4px 0 8px 0;line-height:1.6}
.wb-cl-running{background:#eaf6ee;color:#1f6b3a}
.wb-cl-stale{background:#fff4e0;color:#8a5a00;border:1px solid #f0cf8c}
.wb-cl-none{background:#f3f4f6;color:#555}
.wb-cl-problems{margin:4px 0 0 0;padding-left:20px;font-size:13px;color:#a61b1b;line-height:1.6}
.wb-cl-cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 8px 0}
.wb-cl-cards > .wb-card{flex:1 1 170px;min-width:170px;height:auto}
.wb-cl-old{opacity:.6}
</style>"""


def feed_html(v: pd.DataFrame, canteens: pd.DataFrame, limit: int = 8, who=None) -> str:
    """The newest violations as cards: snapshot, class, severity, canteen, time, status."""
    if v is None or v.empty:
        return table_html(None, empty="暂无违规记录", empty_hint="摄像头识别到违规后（workbench canteen watch），新违规会出现在这里。")
    names = canteens.set_index("canteen_id")["name"] if not canteens.empty else pd.Series(dtype=object)
    out = [FEED_CSS, '<div class="wb-cv-feed">']
    now = utc_now()
    for r in v.sort_values("ts", ascending=False).head(limit).itertuples():
        sev = getattr(r, "severity", None)
        status = getattr(r, "status", None) or "待处理"
        out.append(
            f'<div class="wb-cv-card">{_thumb(r, who, now=now)}<div class="wb-cv-meta">'
            f'{badge(str(r.violation_class), SEVERITY_TONE.get(sev, ""))} '
            f'{badge(SEVERITY_ZH.get(sev, sev or DASH), SEVERITY_TONE.get(sev, ""))} '
            f'{badge(status, STATUS_TONE.get(status, ""))}<br>'
            f'<b>{esc(names.get(r.canteen_id, r.canteen_id))}</b><br>'
            f'{esc(format_time(r.ts, "%Y-%m-%d %H:%M:%S"))} · 摄像头 {esc(r.camera_id)}<br>'
            f'<span style="color:#888">{esc(r.violation_id)}</span></div></div>')
    out.append("</div>")
    return "".join(out)


CLUSTER_STATE_CLASS = {"running": "wb-cl-running", "stale": "wb-cl-stale", "stopped": "wb-cl-none",
                       "none": "wb-cl-none"}


def cluster_html(h: dict | None, cameras=None) -> str:
    """The kitchen cameras' cluster (workbench.canteen.cluster.health_view of the health file):
    one plain line (集群未运行 / running / stale, marked), the totals as cards, cameras per
    worker, every camera's frames/s, lag and last frame, the problems. `cameras`: the camera
    ids the user may see (a district user: their district's); None: all."""
    from workbench.canteen.cluster import health_view

    v = health_view(h)
    tag = badge({"running": "运行中", "stale": "状态过期"}.get(v.state, "未运行"),
                {"running": "ok", "stale": "warn"}.get(v.state, ""))
    out = [FEED_CSS, f'<div class="wb-cl-state {CLUSTER_STATE_CLASS[v.state]}">{tag} {esc(v.headline)}</div>']
    if v.state == "none":
        return "".join(out)
    cams = v.cameras
    problems = v.problems
    if cameras is not None:
        mine = set(cameras)
        cams = cams[cams["摄像头"].isin(mine)]
        problems = [p for p in problems if "摄像头 " not in p or any(f"摄像头 {c}" in p for c in mine)]
    t = v.totals
    lag = t["max_lag_s"]
    from workbench.canteen.cluster import _local

    out.append(f'<div class="{"wb-cl-old " if v.state != "running" else ""}wb-cl-body">')
    out.append('<div class="wb-cl-cards">' + "".join([
        cards.kpi_html("工作节点", t["workers"], unit="个", note="每个节点一个摄像头进程和一个识别模型"),
        cards.kpi_html("运行中的摄像头", f"{t['running']}/{t['cameras']}", unit="路",
                       note="正在分析画面 / 数据中台登记的摄像头",
                       tone="ok" if t["cameras"] and t["running"] == t["cameras"] else "warn"),
        cards.kpi_html("分析速度", t["fps"], unit="帧/秒", note="全部摄像头合计"),
        cards.kpi_html("最大延迟", None if lag is None else round(lag, 1), unit="秒",
                       note="直播画面从拍摄到分析完成", tone="" if lag is None or lag < 10 else "warn"),
        cards.kpi_html("最后一帧", _local(t["last_frame"])[11:] if t["last_frame"] else None,
                       note=f"{_local(t['last_frame'])[:10]}（北京时间）" if t["last_frame"] else "尚无画面"),
    ]) + "</div>")
    out.append(table_html(v.workers, max_rows=50, empty="没有工作节点",
                          empty_hint="集群中没有可运行摄像头的节点，见下方问题。"))
    if cameras is not None:
        out.append('<div class="wb-note">仅列出本区县的摄像头。</div>')
    out.append(table_html(cams.drop(columns=["解码"]), max_rows=200, max_height="320px", empty="暂无摄像头",
                          empty_hint="数据中台 cameras 表中有视频地址的摄像头会被分配到工作节点。"))
    if problems:
        out.append('<ul class="wb-cl-problems">' + "".join(f"<li>{esc(p)}</li>" for p in problems[-10:]) + "</ul>")
    out.append("</div>")
    out.append(layout.explain_html("", "每轮（几秒一次）协调进程读取数据中台的摄像头表，把摄像头平均分配到各工作节点，"
                                       "并写入健康记录 data/cluster/canteen.json；超过 30 秒（或三轮）没有更新即标为“状态过期”。"
                                       "延迟只对直播流计算；录像文件按自身时钟回放。解码方式：流的关键帧间隔允许时只解码关键帧。"
                                       "命令行 workbench canteen cluster status 显示同样的内容。"))
    return "".join(out)


def cluster_section(who=None, cameras=None):
    """The cluster's health as a widget (its `.value` is refreshed by page()'s timer)."""
    from workbench.canteen.cluster import health

    w = layout.html(cluster_html(health(), cameras))
    w.add_class("wb-cl-live")
    return w


def scoped_cameras(snap: CanteenSnapshot, who=None):
    """The camera ids a user who does not see the whole city may see in the cluster's view."""
    who = who if who is not None else snap.who
    if who is None or getattr(who, "sees_all", True):
        return None
    cams = snap.data.cameras
    return list(cams["camera_id"]) if "camera_id" in cams else []


def cases_table(v: pd.DataFrame, limit: int = 100) -> str:
    if v is None or v.empty:
        return table_html(None, empty="暂无未销案的违规", empty_hint="所有违规均已整改并复核。")
    c = v.assign(status_badge=v["status"].map(lambda s: badge(str(s), STATUS_TONE.get(s, ""))),
                 sev=v["severity"].map(lambda s: badge(SEVERITY_ZH.get(s, str(s)), SEVERITY_TONE.get(s, ""))))
    return table_html(c, dataset="canteen_violations",
                      columns=["violation_id", "ts", "violation_class", "sev", "camera_id", "score", "status_badge"],
                      labels={"sev": "严重程度", "status_badge": "整改状态"}, html_columns=["sev", "status_badge"],
                      max_rows=limit, max_height="360px")


def history_figure(v: pd.DataFrame, name: str, days: int = 63):
    """One canteen's violations per week (weeks from Monday) and class over the last `days` days."""
    if v.empty:
        return None
    end = v["local_date"].max()
    start = (end - pd.Timedelta(days=days - 1)).normalize()
    start -= pd.Timedelta(days=start.weekday())
    w = v[v["local_date"] >= start]
    weeks = pd.date_range(start, end, freq="W-MON")
    week = w["local_date"] - pd.to_timedelta(w["local_date"].dt.weekday, unit="D")
    table = w.assign(week=week).groupby(["week", "violation_class"]).size().unstack(fill_value=0)
    table = table.reindex(weeks, fill_value=0)
    table.index.name = None
    return charts.line_figure(table, title=f"{name}近 {len(weeks)} 周每周违规（按类型）", unit="起", ylabel="违规数（起/周）",
                              max_series=5, height=340, date_format="%Y-%m-%d 当周", markers=True)


def history_table(h: pd.DataFrame, ids) -> str:
    h = h[h["violation_id"].isin(set(ids))] if not h.empty else h
    if h.empty:
        return table_html(None, empty="暂无整改记录", empty_hint="在下方“整改状态”中变更案件状态后，记录会出现在这里。")
    h = h.sort_values("ts", ascending=False)
    return table_html(h, dataset="case_history", columns=["violation_id", "ts", "status", "actor", "department", "note"],
                      labels={"violation_id": "违规编号", "status": "整改环节"}, max_rows=50, max_height="260px")


# ------------------------------------------------------------------ widgets

def kpis(d: cp.CanteenData, ranked: pd.DataFrame):
    v = d.violations
    last_day = v["local_date"].max() if not v.empty else None
    today = v[v["local_date"] == last_day] if last_day is not None else v
    open_cases = int(v["status"].isin(cp.open_statuses()).sum()) if not v.empty else 0
    crit = int((today["severity"] == "critical").sum()) if not today.empty else 0
    mean = float(ranked["score"].mean()) if not ranked.empty else None
    return cards.kpi_row([
        cards.KPI("学校食堂", len(d.canteens), unit="家", note=f"摄像头 {len(d.cameras)} 路",
                  tone="" if len(d.canteens) else "muted"),
        cards.KPI("最近一日违规", len(today), unit="起",
                  note=f"{last_day:%Y-%m-%d}，严重 {crit} 起" if last_day is not None else "暂无违规记录",
                  tone="bad" if crit else ("warn" if len(today) else "muted")),
        cards.KPI("未销案违规", open_cases, unit="起", note="待处理、已通知、已整改待复核、退回整改",
                  tone="warn" if open_cases else "ok"),
        cards.KPI("平均合规得分", None if mean is None else round(mean, 1), unit="分",
                  note=f"近 {DAYS} 个上学日", tone="" if mean is not None else "muted"),
        cards.KPI("屡犯食堂", int(ranked["repeat"].sum()) if not ranked.empty else 0, unit="家",
                  note="30 天内同类违规 ≥ 3 个上学日", tone="bad" if not ranked.empty and ranked["repeat"].any() else "ok"),
    ])


def editor_refusal(who) -> str | None:
    """Why `who` may not move canteen cases at all (read-only roles, another department, a
    district user without a district); None when the case engine decides case by case."""
    if who is None:
        return "未登录，不能办理整改案件（请先登录）"
    ct = cp.case_type()
    return who.why_not_act(owner=ct.department, department=ct.department,
                           district=who.district if who.role == "district" else None, what="办理整改案件")


def case_editor(snap: CanteenSnapshot, v: pd.DataFrame, on_saved=None, who=None):
    """Pick an open case, its next status and why; 提交 writes to the hub as `who` (the
    signed-in user: the history row names them). A user who may not act sees the controls
    disabled and one line saying why; a refusal of the case engine is shown as its reason."""
    import ipywidgets as widgets

    from workbench.access import AccessDenied

    open_v = cp.cases(cp.CanteenData(snap.data.canteens, snap.data.cameras, v, snap.data.history)).head(300)
    if open_v.empty:
        return layout.empty("暂无可变更的案件", "未销案的违规会出现在这里，可逐步变更为已通知、已整改、已复核（复核未通过则退回整改）。")
    opts = [(f"{r.violation_id} · {r.violation_class} · {r.status}", r.violation_id)
            for r in open_v.itertuples()]
    pick = widgets.Dropdown(options=opts, description="案件", layout=widgets.Layout(width="520px"))
    nxt = widgets.Dropdown(options=[], description="改为", layout=widgets.Layout(width="220px"))
    note = widgets.Text(description="说明", placeholder="整改情况、复核意见", layout=widgets.Layout(width="520px"))
    go = widgets.Button(description="提交", button_style="primary", layout=widgets.Layout(width="100px"))
    msg = widgets.HTML("")
    for w in (pick, nxt, note):
        w.style.description_width = "56px"
        w.add_class("wb-select")
    status_of = dict(zip(open_v["violation_id"], open_v["status"]))  # what the page shows (expected)
    ct = cp.case_type()
    verb = {s: ct.action_labels.get(a, s) for a, s in ct.actions.items()}

    why = editor_refusal(who)

    def refresh_next(*_):
        cur = status_of.get(pick.value, ct.intake)
        nxt.options = [(f"{s}（{verb[s]}）" if verb.get(s, s) != s else s, s) for s in ct.allowed(cur)]
        nxt.value = nxt.options[0][1] if nxt.options else None
        go.disabled = bool(why) or not nxt.options

    def submit(_):
        if why or who is None:
            msg.value = f'<span class="wb-badge wb-bad">未保存</span> {esc(why or "请先登录")}'
            return
        try:
            res = cp.set_case_status(pick.value, nxt.value, actor=who, note=note.value or None,
                                     expected=status_of.get(pick.value))
        except (cp.CaseError, AccessDenied) as exc:
            msg.value = f'<span class="wb-badge wb-bad">未保存</span> {esc(exc.problem)}'
            return
        status_of[pick.value] = res["to"]
        msg.value = (f'<span class="wb-badge wb-ok">已保存</span> {esc(pick.value)}：'
                     f'{esc(res["from"])} → {esc(res["to"])}（{esc(res["actor"])}）')
        refresh_next()
        if on_saved:
            on_saved()

    pick.observe(refresh_next, "value")
    go.on_click(submit)
    refresh_next()
    reason = layout.lock([pick, nxt, note, go], why)
    acting = layout.note(f"以 {who.actor} 的身份办理（记入整改记录）") if who is not None and not why else reason
    box = layout.stack([widgets.HBox([pick, nxt]), widgets.HBox([note, go]), acting, msg], "wb-cv-editor")
    return box


def canteen_section(snap: CanteenSnapshot, d: cp.CanteenData, canteen_id: str | None):
    v = d.violations[d.violations["canteen_id"] == canteen_id] if canteen_id and not d.violations.empty else d.violations.iloc[0:0]
    info = d.canteens.set_index("canteen_id").loc[canteen_id] if canteen_id and canteen_id in set(d.canteens["canteen_id"]) else None
    name = info["name"] if info is not None else (canteen_id or "")
    if not canteen_id:
        return layout.empty("请选择食堂", "在上方选择一家食堂，查看其违规历史和未销案案件。")
    items = []
    if info is not None:
        items.append(layout.note(f"{name} · {info.get('school_type') or DASH} · {info.get('district') or DASH} · "
                                 f"后厨作业时间 {info.get('staff_hours') or DASH} · 食品安全管理员 {info.get('manager') or DASH}"))
    fig = history_figure(v, name)
    items.append(charts.interactive(fig) if fig is not None else layout.empty(f"{name}暂无违规记录"))
    items.append(layout.section("未销案案件", "待处理、已通知、已整改待复核、退回整改的违规，最新的在前。"))
    items.append(layout.html(cases_table(cp.cases(cp.CanteenData(d.canteens, d.cameras, v, d.history)))))
    items.append(layout.section("整改记录"))
    ids = list(v["violation_id"]) if not v.empty else []
    steps = snap.data.history if not snap.data.history.empty else cp.case_steps(ids, eng=snap.eng, who=snap.who)
    items.append(layout.html(history_table(steps, ids)))
    return layout.stack(items)


def body(snap: CanteenSnapshot, district=None, school_type=None, vclass=None, canteen_id=None, on_saved=None,
         who=None):
    import ipywidgets as widgets

    who = who if who is not None else snap.who
    d = view(snap, district, school_type, vclass)
    ranked = cp.canteen_scores(d, days=DAYS)
    home = who.district if who is not None and not who.sees_all else "全市"
    where = "、".join(x for x in (district, school_type, vclass) if x) or home
    figs = []
    if not ranked.empty:
        figs.append(charts.interactive(ranking_figure(ranked)))
    if not d.violations.empty:
        figs.append(charts.interactive(class_figure(d.violations)))
    # one canteen: the one asked for, else the lowest score
    ids = list(ranked["canteen_id"]) if not ranked.empty else []
    chosen = canteen_id if canteen_id in ids else (ids[0] if ids else None)
    names = dict(zip(ranked["canteen_id"], ranked["name"])) if not ranked.empty else {}
    pick = widgets.Dropdown(options=[(f"{names.get(i, i)}（{i}）", i) for i in ids], value=chosen,
                            description="食堂", layout=widgets.Layout(width="460px"))
    pick.style.description_width = "40px"
    pick.add_class("wb-select")
    holder = widgets.VBox([canteen_section(snap, d, chosen)], layout=widgets.Layout(width="100%"))
    pick.observe(lambda ch: setattr(holder, "children", [canteen_section(snap, d, ch["new"])]), "value")
    feed = layout.html(feed_html(d.violations, d.canteens, who=who))
    feed.add_class("wb-cv-live")
    cluster = cluster_section(who, scoped_cameras(snap, who))
    out = layout.stack([
        kpis(d, ranked),
        layout.section(f"最新违规（{where}）", "摄像头 AI 识别的最新违规及抓拍图（人脸已打码）；勾选“自动刷新”每 30 秒读取新违规，或点“刷新”。"),
        feed,
        layout.section(f"食堂合规排名（{where}）"),
        layout.explain(f"按近 {DAYS} 个上学日的违规情况给每家食堂打分（满分 100），分数越低、问题越多，排在最前的食堂应优先督促整改。",
                       f"得分：每个上学日 100 − 20 × 每小时加权违规数，取近 {DAYS} 个上学日的平均；加权：严重违规 5、"
                       "警告 2、提示 1；每小时按该食堂登记的后厨作业时间折算。“屡犯”：30 天内同一类违规出现在 3 个及以上上学日。"),
        *([layout.grid(figs)] if figs else []),
        layout.html(ranking_table(ranked)),
        layout.section("单个食堂：违规历史与未销案案件"),
        pick, holder,
        layout.section("整改状态", "整改闭环：待处理 → 已通知 → 已整改 → 已复核（复核未通过则退回整改，学校重新整改）；"
                                   "以当前登录用户的身份办理，变更经统一案件引擎写入数据中台并留痕。"),
        case_editor(snap, d.violations, on_saved, who=who),
        layout.section("摄像头集群运行状态", "各工作节点分析的摄像头路数、分析速度、延迟和最后一帧时间；随“自动刷新”更新。"),
        cluster,
    ])
    out.feed = feed  # the live feed, updated in place by page()'s timer
    out.cluster = cluster  # the cluster's health, likewise
    return out


def live_feed(district=None, school_type=None, vclass=None, eng=None, who=None) -> str:
    """The feed's HTML from a fresh read of the hub for `who` (the timer calls this)."""
    d = view(load(eng=eng, who=who), district, school_type, vclass)
    return feed_html(d.violations, d.canteens, who=who)


def page(snap: CanteenSnapshot, district=None, school_type=None, vclass=None, canteen_id=None, who=None):
    """Filters, a refresh button and the body, as `who` (default: the user the snapshot was read
    for); a filter change redraws it (a saved case does not, so the editor keeps its message)."""
    import ipywidgets as widgets

    who = who if who is not None else snap.who

    def dd(label, options, value, width="220px"):
        opts = [(f"全部{label}", ALL)] + [(o, o) for o in options]
        w = widgets.Dropdown(options=opts, value=value if value in options else ALL, description=label,
                             layout=widgets.Layout(width=width))
        w.style.description_width = "64px"
        w.add_class("wb-select")
        return w

    f_d = dd("区县", snap.options("district", DISTRICTS), district)
    f_s = dd("学校类型", snap.options("school_type", ("幼儿园", "小学", "初中", "高中", "职业学校")), school_type)
    seen = set(snap.data.violations["violation_class"].unique()) if "violation_class" in snap.data.violations else set()
    f_c = dd("违规类型", [c for c in VIOLATIONS if c in seen], vclass, "240px")
    refresh = widgets.Button(description="刷新", icon="refresh", layout=widgets.Layout(width="90px"))
    auto = widgets.Checkbox(value=True, description="自动刷新", indent=False, layout=widgets.Layout(width="100px"))
    stamp = layout.note(f"数据读取于 {format_time(snap.now, '%Y-%m-%d %H:%M:%S')}（北京时间）")
    state = {"snap": snap}
    holder = widgets.VBox([], layout=widgets.Layout(width="100%"))
    holder.add_class("wb-page")

    def redraw(*_, reload=False, keep=None):
        try:
            if reload:
                state["snap"] = load(who=who)
                stamp.value = (f'<div class="wb-note">数据读取于 {format_time(state["snap"].now, "%Y-%m-%d %H:%M:%S")}'
                               f'（北京时间）</div>')
            holder.children = [body(state["snap"], f_d.value or None, f_s.value or None, f_c.value or None,
                                    keep, who=who)]
        except Exception as exc:  # shown on the page, not lost in a log
            holder.children = [layout.unavailable(layout.hub_down()) if layout.hub_unreachable(exc)
                               else layout.error(str(exc))]

    redraw(keep=canteen_id)
    for w in (f_d, f_s, f_c):
        w.observe(lambda ch: redraw(), "value")
    refresh.on_click(lambda _: redraw(reload=True))

    def tick():  # the live feed: new violations appear without a click
        import time

        while True:
            time.sleep(REFRESH_S)
            if not auto.value or not holder.children:
                continue
            try:
                feed = getattr(holder.children[0], "feed", None)
                if feed is not None:
                    feed.value = live_feed(f_d.value or None, f_s.value or None, f_c.value or None, who=who)
                cl = getattr(holder.children[0], "cluster", None)
                if cl is not None:
                    from workbench.canteen.cluster import health

                    cl.value = cluster_html(health(), scoped_cameras(state["snap"], who))
            except Exception:  # noqa: BLE001 - a failed refresh waits for the next one
                pass

    import threading

    threading.Thread(target=tick, name="canteen-feed", daemon=True).start()
    controls = widgets.HBox([f_d, f_s, f_c, refresh, auto, stamp])
    controls.add_class("wb-controls")
    return layout.stack([controls, holder], "wb-canteen")


__all__ = ["CanteenSnapshot", "prepare", "load", "view", "ranking_table", "ranking_figure", "class_figure",
           "feed_html", "cluster_html", "cluster_section", "scoped_cameras", "cases_table", "history_figure", "history_table", "kpis", "editor_refusal", "case_editor",
           "canteen_section", "body", "live_feed", "page"]
