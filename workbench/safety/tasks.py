"""Inspection tasks that a cold-weather warning sets off (预警联动巡查任务), as cases.

When a warning is issued (发布), or upgraded to orange or red (升级), each department on
the signal's list gets one task: a case of type `inspection_task` in the city's event file
(`city_events`), opened through the case engine (workbench.cases) at its intake step
信息收集 and taken on to 案卷建立 and 任务派遣. Ids derive from the alert id, the task, the
street and the level, so a re-run (or the linkage run after it) opens nothing twice.

`cold_weather_tasks(conn, alert_rows)` is the department's linkage resolver (registered in
department.py): the case rows for the warnings given, each with its `steps`; `open_tasks`
opens them. `workbench safety warn` goes through the same two functions.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench import geo

CASE_TYPE = "inspection_task"
CITY_MGMT = "城市管理和综合执法局"
POLICE = "公安交警"
POWER = "供电公司"
GAS = "燃气"
STREET = "街道办事处"
SOURCE = "预警联动"


@dataclass(frozen=True)
class Task:
    code: str
    event_class: str
    department: str
    what: str  # the instruction, after "{area}{title}："
    min_level: int = 1  # from which level (1 blue … 4 red) the signal sets it off
    per_street: bool = False  # one task per street office of the district


TASKS: dict[str, tuple[Task, ...]] = {
    "寒潮": (
        Task("DL", "电力线路巡查", POWER, "巡查输配电线路和变压器，做好防寒防冻和负荷保障"),
        Task("RQ", "燃气设施巡查", GAS, "巡查燃气管网、调压设施和用户端，防冻防泄漏"),
        Task("ZJ", "自建房和养老机构巡查", STREET, "排查辖区自建房、养老机构取暖用火用电安全，关注独居老人",
             per_street=True),
        Task("QL", "道路桥梁防冻巡查", CITY_MGMT, "巡查桥梁、高架、坡道，备好融雪剂和防滑物资", min_level=3),
        Task("JT", "道路交通安全巡查", POLICE, "加强易结冰路段交通疏导和管控", min_level=3),
    ),
    "道路结冰": (
        Task("QL", "道路结冰巡查", CITY_MGMT, "巡查桥梁、高架、坡道等易结冰路段，撒布融雪剂、设置警示"),
        Task("JT", "结冰路段交通管控", POLICE, "对结冰路段实施交通疏导、限速或临时管制"),
        Task("DL", "电力线路覆冰巡查", POWER, "巡查输配电线路覆冰情况，必要时除冰", min_level=3),
    ),
    "暴雪": (
        Task("QL", "道路积雪结冰巡查", CITY_MGMT, "组织除雪除冰，重点保障桥梁、坡道和主干道通行"),
        Task("JT", "雪天交通管控", POLICE, "加强雪天交通疏导和事故处置"),
        Task("DL", "电力线路巡查", POWER, "巡查输配电线路积雪覆冰，防倒杆断线"),
        Task("ZJ", "自建房和养老机构巡查", STREET, "排查自建房、简易棚房屋面积雪和养老机构安全，必要时转移人员",
             per_street=True),
        Task("RQ", "燃气设施巡查", GAS, "巡查燃气管网和调压设施，防冻防泄漏", min_level=3),
    ),
}
LEVEL_NO = {"蓝色": 1, "黄色": 2, "橙色": 3, "红色": 4}
LEVEL_CODE = {1: "B", 2: "Y", 3: "O", 4: "R"}
DEADLINE_HOURS = {1: 24, 2: 24, 3: 4, 4: 2}


TASK_OVERDUE, TASK_OPEN, TASK_DONE = "逾期未办结", "办理中", "已办结"   # TASK_OVERDUE: case_types.yaml overdue_label
TASK_STATES = (TASK_OVERDUE, TASK_OPEN, TASK_DONE)


@dataclass(frozen=True)
class TaskSummary:
    """The inspection tasks as of one moment."""

    as_of: pd.Timestamp
    total: int
    open: int        # not closed (办理中 + 逾期未办结)
    overdue: int     # open and past its deadline (逾期未办结)
    done: int        # closed (核查结案)
    done_late: int   # closed after their deadline


def task_states(tasks: pd.DataFrame, now) -> pd.DataFrame:
    """Each inspection task as of `now` (naive UTC, as the hub stores times): the one definition
    of a task's state for the page, the report and their summaries.

    A task is closed when its status is one the case type closes with (workbench/safety/
    case_types.yaml: 核查结案) and it was closed by `now`; every other status (案卷建立,
    任务派遣, 任务处理, 处理反馈, 重新办理 …) is open. An open task whose deadline lies before
    `now` is overdue (逾期未办结), whatever step it is at. Adds: closed, open, overdue (bool),
    hours_overdue (float, 0 unless overdue), closed_late (closed after the deadline), state
    (TASK_STATES)."""
    from workbench import cases

    now = pd.Timestamp(now)
    if now.tzinfo is not None:   # the hub's times are naive UTC
        now = now.tz_convert("UTC").tz_localize(None)
    t = tasks.copy() if tasks is not None else pd.DataFrame(columns=TASK_COLUMNS + ["status", "closed_at"])
    for col in ("status", "closed_at", "deadline"):
        if col not in t:
            t[col] = None
    for col in ("ts", "deadline", "closed_at"):
        if col in t:
            t[col] = pd.to_datetime(t[col], errors="coerce")
    ct = cases.case_type(CASE_TYPE)
    status = t["status"].astype("string").fillna("").str.strip()
    closed = status.isin(list(ct.closed)) & (t["closed_at"].isna() | (t["closed_at"] <= now))
    late = ~closed & t["deadline"].notna() & (t["deadline"] < now)
    t["closed"] = closed.to_numpy(bool)
    t["open"] = ~t["closed"]
    t["overdue"] = late.to_numpy(bool)
    hours = (now - t["deadline"]).dt.total_seconds() / 3600.0
    t["hours_overdue"] = np.where(t["overdue"], hours.fillna(0).clip(lower=0), 0.0)
    t["closed_late"] = (t["closed"] & t["deadline"].notna() & t["closed_at"].notna()
                        & (t["closed_at"] > t["deadline"])).to_numpy(bool)
    t["state"] = np.select([t["closed"], t["overdue"]], [TASK_DONE, TASK_OVERDUE], TASK_OPEN)
    return t


def task_summary(states: pd.DataFrame, as_of) -> TaskSummary:
    """Headline numbers of `task_states(...)` output."""
    n = len(states)
    return TaskSummary(as_of=pd.Timestamp(as_of), total=n,
                       open=int(states["open"].sum()) if n else 0, overdue=int(states["overdue"].sum()) if n else 0,
                       done=int(states["closed"].sum()) if n else 0,
                       done_late=int(states["closed_late"].sum()) if n else 0)


def overdue_by(states: pd.DataFrame, by: str = "department") -> pd.DataFrame:
    """Overdue tasks per `by` (department, district): overdue, open, longest_hours; most overdue first."""
    cols = [by, "overdue", "open", "longest_hours"]
    if states is None or states.empty:
        return pd.DataFrame(columns=cols)
    g = states.assign(_k=states[by].astype("string").fillna("未填写")).groupby("_k")
    out = pd.DataFrame({"overdue": g["overdue"].sum(), "open": g["open"].sum(),
                        "longest_hours": g["hours_overdue"].max()}).rename_axis(by).reset_index()
    out[["overdue", "open"]] = out[["overdue", "open"]].astype(int)
    out = out[out["overdue"] > 0]
    return out.sort_values(["overdue", "longest_hours"], ascending=False, kind="stable").reset_index(drop=True)[cols]


def triggers(history: pd.DataFrame) -> pd.DataFrame:
    """The history rows that set off tasks: every 发布, and 升级 to 橙色 or 红色."""
    h = history
    return h[(h["action"] == "发布") | ((h["action"] == "升级") & h["level"].isin(["橙色", "红色"]))]


TASK_COLUMNS = ["event_id", "ts", "source", "external_id", "alert_id", "event_group", "event_class",
                "description", "district", "street", "lat", "lon", "address", "department", "urgency",
                "deadline", "steps"]


def inspection_tasks(alerts: pd.DataFrame, history: pd.DataFrame,
                     streets: pd.DataFrame | None = None,
                     places: pd.DataFrame | None = None) -> pd.DataFrame:
    """The case rows of the tasks the warnings set off, one per task (not yet opened).

    `alerts`: alert_id, category, area, district (the warnings); `history`: their alert
    history (alert_id, ts, action, level). `streets`: district, street, lat, lon and, when
    known, code (street offices; `street_offices(grids)`); `places`: area, lat, lon (where an
    area that is no district is pinned). Each row carries the warning it came from
    (`alert_id`, also `external_id`) and `steps`: the (status, note) pairs the engine takes
    after intake, 案卷建立 then 任务派遣."""
    trig = triggers(history).merge(alerts[["alert_id", "category", "area", "district"]],
                                   on="alert_id", how="left")
    rows = []
    for t in trig.itertuples():
        level = LEVEL_NO[t.level]
        for task in TASKS.get(t.category, ()):
            if level < task.min_level:
                continue
            for street, code, lat, lon in _where(task, t.area, streets, places):
                rows.append(_task(t, task, level, street, code, lat, lon))
    out = pd.DataFrame(rows, columns=TASK_COLUMNS)
    out["ts"] = pd.to_datetime(out["ts"])
    out["deadline"] = pd.to_datetime(out["deadline"])
    return out


def _where(task: Task, area: str, streets, places):
    """(street, code, lat, lon) for each task instance: every street of the district, or the district."""
    if task.per_street and streets is not None and len(streets):
        s = streets[streets["district"] == area]
        if len(s):
            codes = s["code"] if "code" in s else pd.Series([None] * len(s), index=s.index)
            return [(st, c if isinstance(c, str) and c else street_code(st), la, lo)
                    for st, c, la, lo in zip(s["street"], codes, s["lat"], s["lon"])]
    lat, lon = np.nan, np.nan
    d = geo.BY_NAME.get(area)
    if d is not None:
        lat, lon = d.lat, d.lon
    elif places is not None and area in set(places["area"]):
        p = places.set_index("area").loc[area]  # a station without coordinates has none to give
        lat, lon = (float(v) if v is not None and pd.notna(v) else np.nan for v in (p["lat"], p["lon"]))
    return [(None, None, lat, lon)]


def _task(t, task: Task, level: int, street, code, lat, lon) -> dict:
    ts = pd.Timestamp(t.ts)
    hours = DEADLINE_HOURS[level]
    suffix = task.code + ("-" + code if street else "")
    office = f"{street}{'人民政府' if str(street).endswith(('镇', '乡')) else '办事处'}" if street else task.department
    title = f"{t.area}{t.category}{t.level}预警"
    return {
        "event_id": f"{t.alert_id}-{suffix}-{LEVEL_CODE[level]}", "ts": ts, "source": SOURCE,
        "external_id": t.alert_id, "alert_id": t.alert_id, "event_group": "突发事件",
        "event_class": task.event_class, "description": f"{title}：请{office}{task.what}。",
        "district": t.district, "street": street, "lat": lat, "lon": lon, "address": f"{t.area}{street or ''}",
        "department": task.department, "urgency": "紧急", "deadline": ts + pd.Timedelta(hours=hours),
        "steps": [("案卷建立", f"气象预警联动自动立案：{title}"),
                  ("任务派遣", f"派遣至{task.department}，处置时限 {hours} 小时")],
    }


def street_code(street: str) -> str:
    """A street's code in task ids when the hub's grids give none: a checksum of its name
    (the same in every hub)."""
    return f"{zlib.crc32(str(street).encode()):08X}"


def street_offices(grids: pd.DataFrame) -> pd.DataFrame:
    """Streets of each district with a centre (mean of their grids) and a code, from the
    hub's grids. The code is the middle part of the street's grid ids (HT-YT-003 → YT) when
    they follow the city's pattern, else a checksum of the street's name: both stay the same
    as long as the hub's grids do, so task ids are stable."""
    if grids.empty:
        return pd.DataFrame(columns=["district", "street", "lat", "lon", "code"])
    out = (grids.groupby(["district", "street"], sort=True)
           .agg(lat=("lat", "mean"), lon=("lon", "mean")).round(5).reset_index())
    if "grid_id" in grids:
        parts = grids["grid_id"].astype("string").str.split("-")
        mid = parts.str[1].where(parts.str.len() == 3)
        g = grids.assign(_code=mid).dropna(subset=["_code"])
        codes = g.groupby(["district", "street"])["_code"].agg(lambda c: c.mode().iloc[0]) if len(g) else None
        if codes is not None:
            out = out.merge(codes.rename("code").reset_index(), on=["district", "street"], how="left")
    if "code" not in out:
        out["code"] = None
    out["code"] = [c if isinstance(c, str) and c else street_code(s) for c, s in zip(out["code"], out["street"])]
    return out


def open_tasks(conn: sa.Connection, tasks: pd.DataFrame, *, actor: str = SOURCE) -> int:
    """Open the tasks through the case engine (intake, 案卷建立, 任务派遣); tasks already held
    are left alone. Returns how many were opened."""
    from workbench import cases

    if tasks.empty:
        return 0
    steps = tasks["steps"] if "steps" in tasks else None
    return cases.open_cases(conn, CASE_TYPE, tasks.drop(columns=["steps"], errors="ignore"), actor=actor,
                            steps=steps, intake_note="气象预警触发联动巡查")


def cold_weather_tasks(conn: sa.Connection, alert_rows: pd.DataFrame) -> pd.DataFrame:
    """Linkage resolver: the inspection-task case rows for warnings (rows of `alerts`), with
    their `steps`. Reads the warnings' history, the hub's grids (street offices) and, for an
    area that is no district, its weather stations' position."""
    from workbench.store.schema import DATASETS

    if alert_rows is None or alert_rows.empty:
        return pd.DataFrame(columns=TASK_COLUMNS)
    a = alert_rows[alert_rows["category"].isin(TASKS)]
    if a.empty:
        return pd.DataFrame(columns=TASK_COLUMNS)
    a = a.drop_duplicates("alert_id")
    hist = DATASETS["alert_history"].table
    ids = a["alert_id"].astype(str).tolist()
    parts = []
    for k in range(0, len(ids), 1000):
        stmt = sa.select(hist.c.alert_id, hist.c.ts, hist.c.action, hist.c.level).where(
            hist.c.alert_id.in_(ids[k:k + 1000]))
        parts.append(pd.DataFrame(conn.execute(stmt).all(), columns=["alert_id", "ts", "action", "level"]))
    h = pd.concat(parts, ignore_index=True)
    h["ts"] = pd.to_datetime(h["ts"])
    g = DATASETS["grids"].table
    grids = pd.DataFrame(conn.execute(sa.select(g.c.grid_id, g.c.district, g.c.street, g.c.lat, g.c.lon)).all(),
                         columns=["grid_id", "district", "street", "lat", "lon"])
    others = sorted({x for x in a["area"].dropna() if x not in geo.BY_NAME})
    places = None
    if others:
        w = DATASETS["weather"].table
        stmt = (sa.select(w.c.station_id, sa.func.avg(w.c.lat), sa.func.avg(w.c.lon))
                .where(w.c.station_id.in_(others)).group_by(w.c.station_id))
        places = pd.DataFrame(conn.execute(stmt).all(), columns=["area", "lat", "lon"])
    return inspection_tasks(a, h, street_offices(grids), places)
