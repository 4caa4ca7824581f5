"""系统管理: the administrators' view of the audit log and the users (dashboards/hub.ipynb
shows it to the admin role; every other role is told why not).

The audit log (workbench.audit.frame) lists every write — case steps, user and role changes,
profile changes, unmasked reads, unblurred evidence views, sign-ins, backups — newest first,
with the time in Beijing time, who did it, the 操作 in Chinese, what it was done to and the
detail; filters by action and by actor. Numbers typed into a detail (a note) are shown masked
(privacy.mask_text), as everywhere on screens. The users table (workbench.users.frame) shows
role, department, district and whether the account is active; no password hash leaves the hub.
"""
from __future__ import annotations

import json

import pandas as pd

from workbench.ui import layout
from workbench.ui.tables import DASH, badge, esc, format_time, table_html

LIMIT = 200
ALL = ""


def refusal(who) -> str | None:
    """Why `who` may not open the administrators' view; None for the admin role."""
    if who is None:
        return "未登录，不能查看系统管理（请先登录）"
    if who.may_read_audit:
        return None
    return f"系统管理（审计日志、用户与角色）仅限系统管理员查看；当前用户为{who.role_label}"


def require(who) -> None:
    """AccessDenied unless `who` may read the audit log and the users."""
    from workbench.access import AccessDenied

    why = refusal(who)
    if why:
        raise AccessDenied(why)


def _detail_text(value, limit: int = 240) -> str:
    from workbench.privacy import mask_text

    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return DASH
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        data = value
    if isinstance(data, dict):
        text = "；".join(f"{k}：{v}" for k, v in data.items() if v not in (None, ""))
    else:
        text = str(data)
    text = mask_text(text) or DASH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_rows(who, eng=None, *, action: str | None = None, actor: str | None = None,
               limit: int = LIMIT) -> pd.DataFrame:
    """The newest audit rows under the filters, for an administrator (AccessDenied otherwise)."""
    from workbench import audit

    require(who)
    return audit.frame(eng, action=action or None, actor=(actor or "").strip() or None, limit=limit)


def audit_table(rows: pd.DataFrame) -> str:
    if rows is None or rows.empty:
        return table_html(None, empty="没有符合条件的审计记录", empty_hint="案件流转、用户变更、查看个人信息原文、登录、备份等操作都会记入审计日志。")
    from workbench.privacy import mask_text

    view = rows.assign(ts=pd.to_datetime(rows["ts"]), detail_text=rows["detail"].map(_detail_text),
                       target_text=rows["target"].map(lambda t: DASH if t is None or pd.isna(t) else mask_text(str(t))))
    return table_html(view, columns=["ts", "actor", "label", "target_text", "detail_text"],
                      labels={"ts": "时间（北京时间）", "actor": "操作人", "label": "操作", "target_text": "对象",
                              "detail_text": "详情"},
                      formatters={"ts": lambda v: format_time(v, "%Y-%m-%d %H:%M:%S")},
                      wrap=("detail_text", "target_text"), max_rows=len(view), max_height="520px")


def users_table(who, eng=None) -> str:
    from workbench import users

    require(who)
    df = users.frame(eng)
    if df.empty:
        return table_html(None, empty="还没有用户", empty_hint="用 workbench users add 新建用户（角色、部门、区县）。")
    view = df.assign(active_badge=df["active"].map(lambda a: badge("启用", "ok") if bool(a) else badge("停用", "bad")),
                     department=df["department"].fillna(DASH), district=df["district"].fillna(DASH))
    return table_html(view, columns=["username", "display_name", "role_label", "department", "district", "active_badge"],
                      labels={"username": "用户名", "display_name": "姓名", "role_label": "角色", "department": "部门",
                              "district": "区县", "active_badge": "状态"},
                      html_columns=("active_badge",), max_rows=len(view), max_height="420px")


def action_options() -> list[tuple[str, str]]:
    from workbench import audit

    return [("全部操作", ALL)] + [(f"{label}（{name}）", name) for name, label in audit.ACTIONS.items()]


def panel(who, eng=None, action: str | None = None, actor: str | None = None):
    """The 系统管理 section: the audit log with its filters and the users; for any role but
    the administrators, one line saying why not."""
    import ipywidgets as widgets

    why = refusal(who)
    if why:
        return layout.stack([layout.html(f'<div class="wb-note wb-refused wb-admin-refused">{esc(why)}</div>')],
                            "wb-admin")
    names = {v for _, v in action_options()}
    pick = widgets.Dropdown(options=action_options(), value=action if action in names else ALL, description="操作",
                            layout=widgets.Layout(width="320px"))
    who_box = widgets.Text(value=actor or "", description="操作人", placeholder="姓名或用户名的一部分",
                           continuous_update=False, layout=widgets.Layout(width="300px"))
    go = widgets.Button(description="查询", icon="search", layout=widgets.Layout(width="90px"))
    for w in (pick, who_box):
        w.style.description_width = "56px"
        w.add_class("wb-select")
    log = widgets.HTML(layout=widgets.Layout(width="100%"))

    def show(*_):
        try:
            rows = audit_rows(who, eng, action=pick.value, actor=who_box.value)
            note = f'<div class="wb-note">显示最新的 {len(rows)} 条（最多 {LIMIT} 条；全部可用 workbench audit 查询）</div>'
            log.value = audit_table(rows) + (note if len(rows) else "")
        except Exception as exc:  # noqa: BLE001 - shown on the page, not lost in a log
            log.value = layout.refused_html(exc, "查询失败")

    pick.observe(show, "value")
    go.on_click(show)
    who_box.observe(show, "value")
    show()
    controls = widgets.HBox([pick, who_box, go])
    controls.add_class("wb-controls")
    return layout.stack([
        layout.section("审计日志", "每一次写入（案件流转、用户与角色变更、接入配置变更、查看个人信息原文、查看未打码图像、登录、备份与恢复）"
                                   "都记入只增不改的审计日志；时间为北京时间。"),
        controls, log,
        layout.section("用户与角色", "角色决定能看什么、能办什么；区县人员只能看本区县的数据。用 workbench users 命令新建、修改或停用用户。"),
        layout.html(users_table(who, eng)),
    ], "wb-admin")


__all__ = ["LIMIT", "refusal", "require", "audit_rows", "audit_table", "users_table", "action_options", "panel"]
