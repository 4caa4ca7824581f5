"""The audit log: every write, who did it, append-only.

Case steps, user and role changes, profile changes, unmasked reads of personal data,
unblurred evidence views, sign-ins, backups and restores each add one row to `audit_log`.
The database refuses to change or delete a row of it (triggers of migration 0013), so the
log can only grow; `frame` is what the administrators' view shows.

    record(target, action, who, target=…, **detail)   # in the caller's transaction if a Connection
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import clock
from workbench.store.schema import audit_log

ACTIONS: dict[str, str] = {
    "case.open": "立案",
    "case.step": "案件流转",
    "case.extend": "延期",
    "case.sync": "案件同步",
    "user.create": "新建用户",
    "user.update": "修改用户",
    "user.password": "修改密码",
    "user.disable": "停用用户",
    "login": "登录",
    "login.failed": "登录失败",
    "logout": "退出登录",
    "unmask": "查看个人信息原文",
    "evidence.view": "查看未打码图像",
    "profile.save": "保存接入方案",
    "profile.delete": "删除接入方案",
    "backup": "备份",
    "restore": "恢复",
    "migrate": "数据库升级",
    "retention": "按保存期限删除",
    "ingest.interrupted": "接入中断",
    "ingest.file": "文件接入",
    "mqtt.dropped": "消息丢失",
}


def _actor(who) -> str:
    if who is None:
        return "未知"
    return str(getattr(who, "actor", who))[:160]


def record(target: Engine | Connection, action: str, who, *, subject: str | None = None,
           ts=None, **detail: Any) -> None:
    """Append one row: `who` (a Principal or a name) did `action` to `subject`. With a
    Connection the row is part of the caller's transaction (it stands or falls with the write)."""
    row = {
        "ts": (pd.Timestamp(ts) if ts is not None else clock.now()).to_pydatetime().replace(tzinfo=None),
        "actor": _actor(who),
        "action": action[:64],
        "target": None if subject is None else str(subject)[:512],
        "detail": json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
    }
    if isinstance(target, Connection):
        target.execute(audit_log.insert().values(**row))
    else:
        with target.begin() as conn:
            conn.execute(audit_log.insert().values(**row))


def record_many(conn: Connection, action: str, who, subjects, *, ts=None, **detail: Any) -> None:
    """One row per subject (a batch of case steps), in the caller's transaction."""
    when = (pd.Timestamp(ts) if ts is not None else clock.now()).to_pydatetime().replace(tzinfo=None)
    text = json.dumps(detail, ensure_ascii=False, default=str) if detail else None
    rows = [{"ts": when, "actor": _actor(who), "action": action[:64], "target": str(s)[:512], "detail": text}
            for s in subjects]
    if rows:
        conn.execute(audit_log.insert(), rows)


def carry_over(target: Engine | Connection, rows: list[dict]) -> int:
    """Append rows read from another copy of the log (a restore brings back an older log: the
    rows written since the backup are appended again, with their own time, actor and detail)."""
    keep = [{k: r.get(k) for k in ("ts", "actor", "action", "target", "detail")} for r in rows]
    for r in keep:
        r["ts"] = pd.Timestamp(r["ts"]).to_pydatetime()
    if not keep:
        return 0
    if isinstance(target, Connection):
        target.execute(audit_log.insert(), keep)
    else:
        with target.begin() as conn:
            conn.execute(audit_log.insert(), keep)
    return len(keep)


def frame(eng: Engine | None = None, *, since=None, until=None, action: str | None = None,
          actor: str | None = None, limit: int | None = 500) -> pd.DataFrame:
    """The log, newest first (ts UTC, actor, action, 操作 label, target, detail)."""
    from workbench.store import hub

    t = audit_log
    stmt = sa.select(t).order_by(t.c.id.desc())
    if since is not None:
        stmt = stmt.where(t.c.ts >= pd.Timestamp(since).to_pydatetime())
    if until is not None:
        stmt = stmt.where(t.c.ts < pd.Timestamp(until).to_pydatetime())
    if action:
        stmt = stmt.where(t.c.action == action)
    if actor:
        stmt = stmt.where(t.c.actor.contains(actor))
    if limit:
        stmt = stmt.limit(limit)
    df = hub.query(stmt, eng=eng)
    if df.empty:
        df = pd.DataFrame(columns=[c.name for c in t.c])
    df["label"] = df["action"].map(ACTIONS).fillna(df["action"])
    return df


__all__ = ["ACTIONS", "record", "record_many", "carry_over", "frame"]
