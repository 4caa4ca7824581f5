"""Inspection tasks that a cold-weather warning sets off, as city events (预警联动).

When a warning is issued (发布), or upgraded to orange or red (升级), each department on
the signal's list gets one task, in the city's event flow: a `city_events` row already
at 任务派遣 plus its 案卷建立 and 任务派遣 history rows. Ids derive from the alert id,
the task and the level, so a re-run adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

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


def triggers(history: pd.DataFrame) -> pd.DataFrame:
    """The history rows that set off tasks: every 发布, and 升级 to 橙色 or 红色."""
    h = history
    return h[(h["action"] == "发布") | ((h["action"] == "升级") & h["level"].isin(["橙色", "红色"]))]


def inspection_tasks(alerts: pd.DataFrame, history: pd.DataFrame,
                     streets: pd.DataFrame | None = None,
                     places: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """City events and their history rows for the tasks the warnings set off.

    `streets`: district, street, lat, lon (street offices; from the hub's grids);
    `places`: area, lat, lon (where a district's tasks are pinned when it has no streets)."""
    trig = triggers(history).merge(alerts[["alert_id", "category", "area", "district", "title"]],
                                   on="alert_id", how="left")
    rows = []
    for t in trig.itertuples():
        level = LEVEL_NO[t.level]
        for task in TASKS.get(t.category, ()):
            if level < task.min_level:
                continue
            for street, lat, lon in _where(task, t.area, streets, places):
                rows.append(_event(t, task, level, street, lat, lon))
    events = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    hist = pd.concat([
        events.assign(status="案卷建立", actor=SOURCE, note="气象预警联动自动立案：" + events["title"]),
        events.assign(status="任务派遣", actor=events["department"],
                      note="派遣至" + events["department"] + "，处置时限 " + events["_hours"].astype(str) + " 小时"),
    ])[["event_id", "ts", "status", "actor", "note"]].reset_index(drop=True)
    return events.drop(columns=["title", "_hours"]), hist


EVENT_COLUMNS = ["event_id", "ts", "updated_at", "source", "external_id", "event_group", "event_class",
                 "description", "district", "street", "lat", "lon", "address", "status", "department",
                 "urgency", "deadline", "title", "_hours"]


def _where(task: Task, area: str, streets, places):
    """(street, lat, lon) for each task instance: every street of the district, or the district."""
    if task.per_street and streets is not None and len(streets):
        s = streets[streets["district"] == area]
        if len(s):
            return list(zip(s["street"], s["lat"], s["lon"]))
    lat, lon = np.nan, np.nan
    from workbench.synth.geography import DISTRICT_BY_NAME

    d = DISTRICT_BY_NAME.get(area)
    if d is not None:
        lat, lon = d.lat, d.lon
    elif places is not None and area in set(places["area"]):
        p = places.set_index("area").loc[area]
        lat, lon = float(p["lat"]), float(p["lon"])
    return [(None, lat, lon)]


def _event(t, task: Task, level: int, street, lat, lon) -> dict:
    ts = pd.Timestamp(t.ts)
    hours = DEADLINE_HOURS[level]
    code = task.code + ("-" + _street_code(street) if street else "")
    office = f"{street}{'人民政府' if str(street).endswith(('镇', '乡')) else '办事处'}" if street else task.department
    title = f"{t.area}{t.category}{t.level}预警"
    return {
        "event_id": f"{t.alert_id}-{code}-{LEVEL_CODE[level]}", "ts": ts, "updated_at": ts, "source": SOURCE,
        "external_id": t.alert_id, "event_group": "突发事件", "event_class": task.event_class,
        "description": f"{title}：请{office}{task.what}。", "district": t.district, "street": street,
        "lat": lat, "lon": lon, "address": f"{t.area}{street or ''}", "status": "任务派遣",
        "department": task.department, "urgency": "紧急", "deadline": ts + pd.Timedelta(hours=hours),
        "title": title, "_hours": hours,
    }


def _street_code(street: str) -> str:
    from workbench.synth.geography import DISTRICTS

    for d in DISTRICTS:
        for name, code in d.streets:
            if name == street:
                return code
    import zlib

    return f"{zlib.crc32(str(street).encode()):08X}"  # a street the city's table does not know


def street_offices(grids: pd.DataFrame) -> pd.DataFrame:
    """Streets of each district with a centre (mean of their grids), from the hub's grids."""
    if grids.empty:
        return pd.DataFrame(columns=["district", "street", "lat", "lon"])
    return (grids.groupby(["district", "street"], sort=True)
            .agg(lat=("lat", "mean"), lon=("lon", "mean")).round(5).reset_index())


def save_tasks(conn: sa.Connection, events: pd.DataFrame, history: pd.DataFrame) -> dict:
    """Insert the tasks not yet in the hub (natural keys): never duplicated on a re-run."""
    return {"events_new": insert_new(conn, DATASETS["city_events"], events),
            "event_history_new": insert_new(conn, DATASETS["event_history"], history)}
