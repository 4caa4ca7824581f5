"""Intake (信息收集): city events from files, Open311, NYC 311, 12345 work orders and MQTT messages.

There is one ingest path. A file goes through the hub's `ingest_file("city_events", …)`
(the raw file kept, the same file never taken twice, encodings, header rows, quarantine):
`workbench ingest city_events FILE` and `workbench events intake FILE` are the same call.
What is particular to events is registered with the hub (workbench/events/department.py):
- how a file is read (`EventLoader.read_as`, `prepare`): Open311 GeoReport v2 and NYC 311
  names besides the hub's (the 12345 work order's among them); ids derived (Open311
  `service_request_id`, NYC `unique_key`: the external id; the hub's `event_id` is the city's
  own case number, or the source prefix + external id); times left as written for the hub to
  read in the source's zone (a profile's, else the city's: `source_profile`) with its DST policy;
- the row checks (`ROW_CHECKS`): records without any location (no coordinates and no address,
  district, street or grid), outside the city's bounds,
  reported in the future or before 2000, of a class the city does not know, with a status
  that cannot be read, are quarantined with a stable reason;
- the loader (`EventLoader`, per chunk, in the chunk's transaction): records placed
  (`place`: point, or street / district / city from the address against the hub's streets);
  an external id is never loaded twice: a record the hub already holds is an update when its
  `updated_at` is newer (its status change goes through the case engine's `sync`), a
  correction when the same version brings another place, text or caller (`write_rows`, old
  values in row_versions), else a duplicate or ignored; what
  is new is dispatched (workbench.events.dispatch: department, urgency, deadline in working
  hours), reports repeating a case nearby are merged into it (重复件), and the cases are
  opened through the case engine (`cases.open_cases`, with the automatic steps).
MQTT messages are batches, not files: `take_in` validates them the same way (the same
registered checks, the city's zone), keeps the caller's data apart and masks numbers in the
text as the hub does for files, and ends in the same loader, in one transaction with the
quarantine, so the listener acknowledges a message only after it is committed.
The city's rules (`--city`) and the counts of one intake are passed by `context(…)`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import cases, clock, config, geo, privacy
from workbench.events import dispatch as dp
from workbench.events import flow
from workbench.store import hub, ingest
from workbench.store.profiles import Profile
from workbench.store.schema import DATASETS, Dataset, Field, RowCheck, personal_data, quarantine

EVENTS_DS = DATASETS["city_events"]
HISTORY_DS = DATASETS["event_history"]
FORMATS = ("auto", "table", "open311", "nyc311")
SOURCE_PREFIX = {"open311": "O311-", "nyc311": "NYC311-"}
EARLIEST = pd.Timestamp("2000-01-01")
FUTURE_SLACK = pd.Timedelta(minutes=10)  # clocks of sensors and phones run a little ahead

# Reasons (stable: the quarantine explorer and the tests count them).
NO_ID = "缺少事件编号"
NO_LOCATION = "缺少位置（无经纬度，也无地址）"
OUT_OF_CITY = "位置不在城市范围内"
IN_FUTURE = "上报时间在未来"
TOO_OLD = "上报时间早于 2000 年"
UNKNOWN_CLASS = "未知的事件类型"
BAD_STATUS = "办理状态无法识别"
REPEATED = "文件内主键重复"   # the hub's word for a record repeated in its file or batch
BAD_JSON = "JSON 格式错误"
NOT_RECORD = "记录不是对象"     # the hub's word (a JSON item that is not a record)

OPEN_WORDS = {"open", "opened", "new", "assigned", "in progress", "pending", "started", "accepted", "unassigned",
              "email sent", "draft", "unspecified", "受理", "待处理", "处理中", "办理中", "已受理"}
CLOSED_WORDS = {"closed", "resolved", "completed", "done", "已办结", "办结", "已结案", "结案", "已完成"}

# How records are read: the hub's names and their Chinese aliases, plus Open311 GeoReport v2
# and NYC 311 column names. `request_id` is the source system's own id.
_EXTRA = {
    "request_id": ("service_request_id", "unique_key", "unique key", "request_id", "工单号", "诉求编号"),
    "external_id": ("外部编号", "来源编号", "external_id"),
    "ts": ("上报时间", "受理时间", "requested_datetime", "created_date", "created date", "created", "reported_at", "date"),
    "updated_at": ("更新时间", "updated_datetime", "resolution_action_updated_date",
                   "resolution action updated date", "updated"),
    "event_class": ("小类", "事件类型", "事件小类", "service_code", "complaint_type", "complaint type", "problem", "类型"),
    "service_name": ("service_name",),
    "description": ("问题描述", "描述", "内容", "descriptor", "status_notes"),
    "department": ("责任部门", "处置部门", "agency_responsible", "agency"),
    "deadline": ("处置时限", "截止时间", "expected_datetime", "due_date", "due date"),
    "closed_at": ("结案时间", "办结时间", "closed_date", "closed date"),
    "address": ("地址", "发生地址", "incident_address", "incident address", "address_string"),
    "district": ("区县", "区", "所属区县", "borough", "policeprecinct"),
    "street": ("街道", "街道办", "所属街道", "neighborhood"),
    "lat": ("纬度", "latitude"),
    "lon": ("经度", "longitude", "long", "lng"),
}


def _read_ds() -> Dataset:
    """The hub's fields with their own aliases (the 12345 work order's 工单编号, 来电时间, 诉求类型,
    诉求地址, 诉求内容, 诉求人, 联系电话 …) plus the source formats' names above; a schema alias
    another field claims here (service_request_id: the source's id, not the city's) is left to it."""
    claimed = {ingest._norm_header(a): name for name, al in _EXTRA.items() for a in al}
    fields = []
    for f in EVENTS_DS.fields:
        own = [a for a in f.aliases if claimed.get(ingest._norm_header(a), f.name) == f.name]
        aliases = tuple(dict.fromkeys([*_EXTRA.get(f.name, ()), *own]))
        # a file without a report time cannot be taken in (ids may be derived, a class named by
        # service_name): the hub refuses it whole, naming the column
        fields.append(dataclasses.replace(f, required=f.name == "ts", aliases=aliases))
    fields.append(Field("request_id", "str", "来源工单号", False, _EXTRA["request_id"]))
    fields.append(Field("service_name", "str", "服务名称", False, _EXTRA["service_name"]))
    return Dataset("city_events", EVENTS_DS.label, EVENTS_DS.department, tuple(fields), key=("event_id",))


READ_DS = _read_ds()


@dataclass
class IntakeSummary:
    origin: str
    rows_read: int = 0
    loaded: int = 0          # new events
    updated: int = 0         # newer versions of events the hub held
    duplicates: int = 0      # the same version again (an external id is never loaded twice)
    older: int = 0           # older than what the hub holds: ignored
    merged: int = 0          # new reports merged into an earlier case (重复件)
    dispatched: int = 0      # new events sent to a department on arrival
    quarantined: int = 0
    skipped: bool = False    # the same file was taken in before
    reasons: dict[str, int] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list, repr=False)  # new or updated, in this batch
    hub: ingest.IngestSummary | None = field(default=None, repr=False)  # the hub's summary of a file

    def details(self) -> list[str]:
        """Conversions, columns kept with their rows, warnings (the hub's lines for a file)."""
        return self.hub.details() if self.hub is not None else []

    def add(self, other: "IntakeSummary") -> None:
        for k in ("rows_read", "loaded", "updated", "duplicates", "older", "merged", "dispatched", "quarantined"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for r, n in other.reasons.items():
            self.reasons[r] = self.reasons.get(r, 0) + n

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("event_ids", "hub")}
        if self.hub is not None:
            d.update(profile=self.hub.profile, unknown_columns=self.hub.unknown_columns, warnings=self.hub.warnings)
        return d

    def line(self) -> str:
        if self.skipped:
            return f"{self.origin}: 已接入过（内容相同），跳过"
        return (f"{self.origin}: 读取 {self.rows_read} 条，新增 {self.loaded} 条（到达即派遣 {self.dispatched}，"
                f"合并重复 {self.merged}），更新 {self.updated} 条，重复 {self.duplicates} 条，"
                f"旧版本忽略 {self.older} 条，隔离 {self.quarantined} 条")


def _now() -> pd.Timestamp:
    return clock.now()


# ------------------------------------------------------------------ parsing

def parse_times(s: pd.Series, tz: str, *, ambiguous: str = "quarantine",
                nonexistent: str = "quarantine") -> pd.Series:
    """Times as sources write them → naive UTC; naive ones are local to `tz`. The hub's own
    parser (`ingest.parse_local_times`): a wall time the clock skips or passes twice is NaT
    unless the policy says otherwise, never shifted silently."""
    return ingest.parse_local_times(s, tz, ambiguous=ambiguous, nonexistent=nonexistent)[0]


def normalise(raw: pd.DataFrame, fmt: str, rules: dp.CityRules) -> pd.DataFrame:
    """Records with READ_DS field names (text) → the hub's field names (text, times as written).

    Ids: Open311 / NYC 311 `request_id` becomes the external id; `event_id` is the city's
    own number when given, else the format's prefix + the external id."""
    df = raw.copy()
    for c in [f.name for f in READ_DS.fields]:
        if c not in df:
            df[c] = None
    blank = lambda s: s.astype("string").str.strip().replace("", pd.NA)  # noqa: E731
    req, ext, eid = blank(df["request_id"]), blank(df["external_id"]), blank(df["event_id"])
    ext = ext.fillna(req)
    prefix = SOURCE_PREFIX.get(fmt, "")
    if fmt == "open311":
        eid = eid.fillna(req)
    eid = eid.fillna(prefix + ext) if prefix else eid.fillna(ext)
    df["event_id"], df["external_id"] = eid, ext
    default = {"open311": "Open311", "nyc311": "NYC311"}.get(fmt, rules.default_source)
    df["source"] = blank(df["source"]).fillna(default)  # a record without its channel: the format's, or the city's default
    cls = blank(df["event_class"])
    name = blank(df["service_name"])
    known = set(rules.classes)
    df["event_class"] = cls.where(cls.isin(known) | name.isna() | ~name.isin(known), name).fillna(name)
    # times stay text: the hub's validation reads them in the source's zone (profile, else the
    # city's) with its DST policy, so a skipped or repeated wall time is reported, not shifted
    return df[[f.name for f in EVENTS_DS.fields]]


def map_status(status: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Source statuses → (flow status or None for 'open, let dispatch decide', unrecognised mask)."""
    s = status.astype("string").str.strip()
    low = s.str.lower()
    out = pd.Series(None, index=s.index, dtype=object)
    is_flow = s.isin(flow.STATUSES)
    out[is_flow] = s[is_flow]
    out[low.isin(CLOSED_WORDS)] = flow.CLOSED
    known = is_flow | low.isin(CLOSED_WORDS) | low.isin(OPEN_WORDS) | s.isna() | (s == "")
    return out, ~known


# ------------------------------------------------------------------ the batch

@dataclass
class Origin:
    """Where a batch came from, for quarantine rows and history actors."""
    name: str                   # file name, or mqtt:<topic>
    sha256: str                 # the file's hash, or of the batch of messages
    fmt: str = "table"
    messages: dict[int, str] | None = None   # MQTT: line (message number) → that message's own hash

    def sha_of(self, line) -> str:
        """The hash a quarantined row is kept under: its message's where the batch is of
        messages (a message the broker delivers again is then known: workbench.events.mqtt),
        else the file's."""
        return (self.messages or {}).get(int(line), self.sha256)


def _quarantine_rows(origin: Origin, lines, reasons, details, rows, now) -> list[dict]:
    return [{"dataset": "city_events", "file_sha256": origin.sha_of(line), "filename": origin.name[:512],
             "line": int(line), "reason": reason[:512], "detail": (detail or None) and str(detail)[:1024],
             "row_json": json.dumps({k: v for k, v in row.items() if v not in ("", None) and v == v},
                                    ensure_ascii=False, default=str),
             "quarantined_at": now.to_pydatetime()}
            for line, reason, detail, row in zip(lines, reasons, details, rows)]


def _existing(conn, ids: list[str], exts: list[tuple[str, str]]) -> pd.DataFrame:
    """The hub's events with these event ids, or these (source, external id) pairs."""
    t = EVENTS_DS.table
    cols = [t.c.event_id, t.c.source, t.c.external_id, t.c.ts, t.c.updated_at, t.c.status]
    frames = []
    for i in range(0, len(ids), 500):
        frames.append(pd.DataFrame(conn.execute(sa.select(*cols).where(t.c.event_id.in_(ids[i:i + 500]))).fetchall(),
                                   columns=[c.name for c in cols]))
    ext_ids = sorted({e for _, e in exts})
    for i in range(0, len(ext_ids), 500):
        frames.append(pd.DataFrame(conn.execute(sa.select(*cols).where(t.c.external_id.in_(ext_ids[i:i + 500])))
                                   .fetchall(), columns=[c.name for c in cols]))
    if not frames:
        return pd.DataFrame(columns=[c.name for c in cols])
    out = pd.concat(frames, ignore_index=True).drop_duplicates("event_id")
    return out


def _recent(conn, new: pd.DataFrame, rules: dp.CityRules) -> pd.DataFrame:
    """Events in the hub that a new report might repeat: same classes, near in time and place."""
    t = EVENTS_DS.table
    cols = [t.c.event_id, t.c.ts, t.c.event_class, t.c.lat, t.c.lon, t.c.duplicate_of]
    if new.empty or rules.duplicate_m <= 0:
        return pd.DataFrame(columns=[c.name for c in cols])
    w = pd.Timedelta(hours=rules.duplicate_hours)
    pad = rules.duplicate_m / 111_320 * 3
    stmt = sa.select(*cols).where(
        t.c.event_class.in_(sorted(new["event_class"].dropna().unique())),
        t.c.ts >= (new["ts"].min() - w).to_pydatetime(), t.c.ts <= new["ts"].max().to_pydatetime(),
        t.c.lat.between(float(new["lat"].min()) - pad, float(new["lat"].max()) + pad),
        t.c.lon.between(float(new["lon"].min()) - 2 * pad, float(new["lon"].max()) + 2 * pad))
    return pd.DataFrame(conn.execute(stmt).fetchall(), columns=[c.name for c in cols])


def _recent_by_address(conn, new: pd.DataFrame, rules: dp.CityRules) -> pd.DataFrame:
    """Events in the hub of the same classes near in time, that an address-placed report might
    repeat (compared by address text in `dp.find_address_duplicates`)."""
    t = EVENTS_DS.table
    cols = [t.c.event_id, t.c.ts, t.c.event_class, t.c.address, t.c.duplicate_of]
    if new.empty or rules.duplicate_m <= 0:
        return pd.DataFrame(columns=[c.name for c in cols])
    w = pd.Timedelta(hours=rules.duplicate_hours)
    stmt = sa.select(*cols).where(
        t.c.event_class.in_(sorted(new["event_class"].dropna().unique())), t.c.address.isnot(None),
        t.c.ts >= (new["ts"].min() - w).to_pydatetime(), t.c.ts <= new["ts"].max().to_pydatetime())
    return pd.DataFrame(conn.execute(stmt).fetchall(), columns=[c.name for c in cols])


# ------------------------------------------------------------------ the context of one intake

@dataclass
class _Context:
    rules: dp.CityRules | None = None      # None: the default city's rules
    fmt: str = "auto"                      # auto | table | open311 | nyc311
    now: pd.Timestamp | None = None        # what "in the future" is judged against (default: now)
    stats: IntakeSummary | None = None     # counts of the loader's work, when a caller wants them
    sha256: str | None = None              # the file's (or message batch's) hash, for row_versions


_CTX: contextvars.ContextVar[_Context] = contextvars.ContextVar("events_intake", default=_Context())


@contextlib.contextmanager
def context(*, rules: dp.CityRules | None = None, fmt: str = "auto", now=None, stats: IntakeSummary | None = None,
            sha256: str | None = None):
    """The city's rules, the file format and a summary to count into, for the checks and the
    loader the hub calls (a plain `workbench ingest city_events` uses the default city)."""
    token = _CTX.set(_Context(rules, fmt, None if now is None else pd.Timestamp(now), stats, sha256))
    try:
        yield
    finally:
        _CTX.reset(token)


def _profile_rules() -> dp.CityRules | None:
    """The rules the profile of the file being ingested names (`options: {city: …}`), for
    `workbench ingest city_events FILE --profile P`."""
    ctx = ingest.reading()
    profile = ctx.profile if ctx is not None else None
    city = (profile.options or {}).get("city") if profile is not None else None
    return dp.load_rules(str(city)) if city else None


def active_rules() -> dp.CityRules:
    """An explicit context's rules (intake --city), else those the file's profile names, else the city's."""
    return _CTX.get().rules or _profile_rules() or dp.load_rules()


def _moment() -> pd.Timestamp:
    c = _CTX.get()
    return c.now if c.now is not None else _now()


# ------------------------------------------------------------------ row checks (registered with the hub)

PLACE_TEXT = ("address", "district", "street", "grid_id")


def _no_location(v: pd.DataFrame) -> pd.Series:
    """Neither coordinates nor any place text: a record without coordinates but with an
    address, a district, a street or a grid is placed as precisely as its text allows."""
    no_point = v["lat"].isna() | v["lon"].isna()
    no_text = pd.concat([v[c].astype("string").str.strip().fillna("") == "" for c in PLACE_TEXT], axis=1).all(axis=1)
    return no_point & no_text


def _out_of_city(v: pd.DataFrame) -> pd.Series:
    """Coordinates outside the city's bounds; or, for the reference city's own rules, no
    coordinates and an address naming another city or province (长沙市…): not ours to place."""
    rules = active_rules()
    has = v["lat"].notna() & v["lon"].notna()
    out = has & ~rules.in_bounds(v["lat"], v["lon"])
    if rules.name == geo.CITY:
        named = v["district"].isna() & v["address"].notna()
        out |= ~has & named & geo.names_elsewhere(v["address"]).to_numpy()
    return out


def _where(v: pd.DataFrame) -> pd.Series:
    at = "纬度 " + v["lat"].astype(str) + "，经度 " + v["lon"].astype(str)
    return at.where(v["lat"].notna() & v["lon"].notna(), "地址：" + v["address"].astype("string").fillna(""))


def _in_future(v: pd.DataFrame) -> pd.Series:
    return v["ts"] > _moment() + FUTURE_SLACK


def _too_old(v: pd.DataFrame) -> pd.Series:
    return v["ts"] < EARLIEST


def _unknown_class(v: pd.DataFrame) -> pd.Series:
    cls = v["event_class"]
    return cls.notna() & ~active_rules().known_class(cls.fillna(""))


def _bad_status(v: pd.DataFrame) -> pd.Series:
    return map_status(v["status"])[1]


ROW_CHECKS = (
    RowCheck(NO_LOCATION, _no_location),
    RowCheck(OUT_OF_CITY, _out_of_city, _where),
    RowCheck(IN_FUTURE, _in_future),
    RowCheck(TOO_OLD, _too_old),
    RowCheck(UNKNOWN_CLASS, _unknown_class),
    RowCheck(BAD_STATUS, _bad_status),
)


# ------------------------------------------------------------------ the loader (registered with the hub)

class EventLoader:
    """The hub's loader of `city_events`: dispatch on intake, through the case engine.
    `read_as` / `prepare`: how files are read (Open311, NYC 311 and the hub's own names);
    `repeat_key`: a record repeated in its file is the same id *and* the same version."""

    read_as = READ_DS
    repeat_key = ("event_id", "updated_at")

    def prepare(self, frame: pd.DataFrame, path) -> pd.DataFrame:
        fmt = _CTX.get().fmt
        if fmt == "auto":
            fmt = detect_format(Path(path))
        return normalise(frame, fmt, active_rules())

    def __call__(self, conn, ds, values: pd.DataFrame) -> int:
        return load(conn, values)


LOADER = EventLoader()


# what a corrected re-send of a record may change on the event (its place and its text); its
# status goes through the case engine, its class and department are the flow's business
CORRECTABLE = ("description", "address", "district", "street", "grid_id", "lat", "lon", "loc_precision")


def gazetteer(conn) -> tuple[dict[str, str], pd.DataFrame]:
    """The hub's streets ({street: district}, from `grids`) and its grids (grid_id, district, street)."""
    t = DATASETS["grids"].table
    g = pd.DataFrame(conn.execute(sa.select(t.c.grid_id, t.c.district, t.c.street)).fetchall(),
                     columns=["grid_id", "district", "street"])
    ok = g["street"].notna() & g["district"].notna()
    return dict(zip(g.loc[ok, "street"], g.loc[ok, "district"])), g


def place(v: pd.DataFrame, streets: dict[str, str] | None = None, grids: pd.DataFrame | None = None) -> pd.DataFrame:
    """District, street and `loc_precision` of each record, as precisely as it allows: `point`
    where it has coordinates; else `street` / `district` / `city` from its grid (the hub's
    grids), its district and street columns and its address text (workbench.geo.locate_addresses
    against the hub's streets). Values the source gave are kept; only the missing are filled."""
    v = v.copy()
    point = v["lat"].notna() & v["lon"].notna()
    if grids is not None and len(grids) and v["grid_id"].notna().any():
        g = grids.drop_duplicates("grid_id").set_index("grid_id")
        for c in ("district", "street"):
            v[c] = v[c].where(v[c].notna(), v["grid_id"].map(g[c]))
    todo = v["district"].isna() | v["street"].isna()
    if todo.any():
        part = v[todo]
        text = (part["district"].fillna("").astype(str) + " " + part["street"].fillna("").astype(str) + " "
                + part["address"].fillna("").astype(str))
        loc = geo.locate_addresses(text, streets or {})
        for c in ("district", "street"):
            v.loc[todo, c] = part[c].where(part[c].notna(), loc[c])
    prec = pd.Series("city", index=v.index, dtype=object)
    prec[v["district"].notna()] = "district"
    prec[v["street"].notna()] = "street"
    prec[point] = "point"
    v["loc_precision"] = prec
    return v


def load(conn, values: pd.DataFrame) -> ingest.Written:
    """Good rows (typed, hub names) into the hub: placed (district, street, precision), updates
    of held events, corrections of their place and text (old values in row_versions), new
    events opened and dispatched. Returns what was written, as the hub counts it."""
    c = _CTX.get()
    s = IntakeSummary("")
    if len(values):
        v = values.copy()
        v["status"] = map_status(v["status"])[0]
        v["updated_at"] = v["updated_at"].where(v["updated_at"].notna(), v["ts"])
        given = {c for c in CORRECTABLE if v[c].notna().any()}   # what the source sent, before placing
        streets, grids = gazetteer(conn)
        v = place(v, streets, grids)
        # several versions of one record: the newest wins
        v = v.sort_values("updated_at", kind="stable")
        superseded = v.duplicated("event_id", keep="last")
        s.older += int(superseded.sum())
        _write(conn, v[~superseded], active_rules(), s, given)
    if c.stats is not None:
        c.stats.add(s)
        c.stats.event_ids += s.event_ids
    return ingest.Written(new=s.loaded, updated=s.updated, same=s.duplicates, older=s.older)


def load_history(conn, ds, frame: pd.DataFrame) -> int:
    """The hub's loader of `event_history`: steps exported by the source system, taken as
    they are through the case engine (`cases.import_history`)."""
    return cases.import_history(conn, flow.STORE.name, frame)




def _write(conn, v: pd.DataFrame, rules: dp.CityRules, summary: IntakeSummary, given: set[str] = frozenset()) -> None:
    held = _existing(conn, v["event_id"].tolist(),
                     list(zip(v["source"].fillna(""), v["external_id"].dropna())))
    # a known external id under another event id is the same event
    by_ext = held.dropna(subset=["external_id"]).drop_duplicates(["source", "external_id"])
    ext_map = {(s, e): i for s, e, i in zip(by_ext["source"], by_ext["external_id"], by_ext["event_id"])}
    v = v.copy()
    mapped = [ext_map.get((s, e)) if isinstance(e, str) else None for s, e in zip(v["source"], v["external_id"])]
    v["event_id"] = [m or i for m, i in zip(mapped, v["event_id"])]
    v = v.sort_values("updated_at", kind="stable").drop_duplicates("event_id", keep="last")
    held = held.set_index("event_id")
    known = v["event_id"].isin(held.index)
    old = v[known]
    if len(old):
        h_upd = pd.to_datetime(held.loc[old["event_id"], "updated_at"].fillna(held.loc[old["event_id"], "ts"]))
        h_upd.index = old.index
        # the engine stamps automatic steps microseconds after the report: a version is its millisecond
        inc, hld = pd.to_datetime(old["updated_at"]).dt.floor("ms"), h_upd.dt.floor("ms")
        newer, same = inc > hld, inc == hld
        corrected = _correct(conn, old[newer | same], given)
        corrected |= _personal_changed(conn, old[same])
        same &= ~old["event_id"].isin(corrected)
        summary.duplicates += int(same.sum())
        summary.older += int((~newer & ~same & ~old["event_id"].isin(corrected)).sum())
        fixed = old[~newer & old["event_id"].isin(corrected)]
        summary.updated += len(fixed)
        summary.event_ids += fixed["event_id"].tolist()
        upd = old[newer]
        if len(upd):
            flow.sync_from_source(conn, upd, held.loc[upd["event_id"], "status"].to_numpy(),
                                  actor=upd["source"].iloc[0] or "来源系统")
            summary.updated += len(upd)
            summary.event_ids += upd["event_id"].tolist()
    new = v[~known]
    if len(new):
        _insert(conn, new, rules, summary)


def _correct(conn, rows: pd.DataFrame, given: set[str]) -> set[str]:
    """A held event re-sent with another place or text (a corrected address, a new
    description): updated through the hub's `write_rows`, which keeps the replaced values in
    row_versions. Compared: the columns the source gave (`given`; a column it does not send is
    no correction to empty, and a street the hub placed better since is no correction by the
    source); written with them: the place derived from them (district, street, precision).
    Returns the event ids corrected."""
    compared = {c for c in given if c in CORRECTABLE and c != "loc_precision"}
    if rows.empty or not compared:
        return set()
    state, _ = ingest.compare_with_hub(conn, EVENTS_DS, rows, compared)
    differs = rows[state == "differs"]
    if differs.empty:
        return set()
    present = compared | {"district", "street", "loc_precision"}
    cols = ["event_id", "ts", "event_class", *sorted(present)]
    ingest.write_rows(conn, EVENTS_DS, differs[cols], present=present, file_sha256=_CTX.get().sha256,
                      corrections="newest")
    return set(differs["event_id"])


def _personal_changed(conn, rows: pd.DataFrame) -> set[str]:
    """Held events re-sent with another caller's name, phone or ID number: a correction (the
    protected personal_data keeps the newest, written by the hub after the loader)."""
    fields = [f.name for f in EVENTS_DS.fields if f.personal and f.name in rows]
    if rows.empty or not fields:
        return set()
    given = rows[["event_id", *fields]].dropna(subset=fields, how="all")
    if given.empty:
        return set()
    keys = ingest.row_keys(EVENTS_DS, given)
    t = personal_data
    held = {}
    ks = keys.tolist()
    for i in range(0, len(ks), 400):
        for k, f, val in conn.execute(sa.select(t.c.row_key, t.c.field, t.c.value).where(
                t.c.dataset == EVENTS_DS.name, t.c.row_key.in_(ks[i:i + 400]))):
            held[(k, f)] = val
    out = set()
    for (i, r), k in zip(given.iterrows(), keys):
        if any(pd.notna(r[f]) and (k, f) in held and held[(k, f)] != str(r[f]) for f in fields):
            out.add(r["event_id"])
    return out


def _insert(conn, new: pd.DataFrame, rules: dp.CityRules, summary: IntakeSummary) -> None:
    """Route, rate and time the new events, find the repeats, and open them through the
    case engine with their automatic steps (立案 and 派遣 where a rule matched, 重复件 where
    merged); a status the source gave is then taken through the engine's `sync`."""
    new = new.reset_index(drop=True)
    routed = dp.route(new, rules)
    given_dept = new["department"].notna()
    new["department"] = new["department"].where(given_dept, routed["department"])
    new["event_group"] = new["event_group"].where(new["event_group"].notna(), routed["event_group"])
    new["urgency"] = new["urgency"].where(new["urgency"].notna(), dp.urgency(new, rules))
    new["deadline"] = new["deadline"].where(new["deadline"].notna(), dp.deadlines(new, rules))
    src_status = new["status"]
    is_open = src_status.isna()
    dup_of = pd.Series(None, index=new.index, dtype=object)
    point = new["lat"].notna() & new["lon"].notna()
    probe = is_open & point                       # repeats of a point: within metres
    if probe.any():
        dup_of[probe] = dp.find_duplicates(new[probe], _recent(conn, new[probe], rules), rules)
    by_addr = is_open & ~point & new["loc_precision"].isin(["street", "district"]) & new["address"].notna()
    if by_addr.any():                             # repeats of an address-placed report: the same address
        dup_of[by_addr] = dp.find_address_duplicates(new[by_addr], _recent_by_address(conn, new[by_addr], rules),
                                                     rules)
    merged = dup_of.notna()
    auto = is_open & ~merged & (given_dept | (routed["rule"] >= 0))
    new["duplicate_of"] = dup_of
    steps = []
    for a, m, d, dep in zip(auto, merged, dup_of, new["department"]):
        if m:
            steps.append([(flow.DUPLICATE, f"与 {d} 重复，合并办理")])
        elif a:
            steps.append([(flow.CASE, "到达即立案"), (flow.DISPATCH, f"按派遣规则派遣至{dep}")])
        else:
            steps.append([])
    actor = new["source"].fillna(rules.default_source or "来源系统").astype(str)
    cols = [f.name for f in EVENTS_DS.fields if f.name != "status"]  # the engine decides the status
    n = flow.open_events(conn, new[cols], actor, pd.Series(steps))
    imported = src_status.notna() & (src_status != flow.INTAKE)
    for who, g in new[imported].groupby(actor[imported]):
        cases.sync(conn, flow.CASE_TYPE, pd.DataFrame({"event_id": g["event_id"], "ts": g["updated_at"],
                                                       "status": g["status"], "note": "来源系统导入状态"}), actor=who)
    _keep_source_times(conn, new)
    summary.loaded += n
    summary.merged += int(merged.sum())
    summary.dispatched += int(auto.sum())
    summary.event_ids += new["event_id"].tolist()


def _keep_source_times(conn, new: pd.DataFrame) -> None:
    """The source's version (`updated_at`, when later than the engine's stamp) and its
    closing time, where it gave one, kept on the case (times, not its status)."""
    t = EVENTS_DS.table
    later = [{"_id": i, "_u": u.to_pydatetime()} for i, u, ts in zip(new["event_id"], new["updated_at"], new["ts"])
             if pd.notna(u) and u > ts]
    if later:
        conn.execute(t.update().where(t.c.event_id == sa.bindparam("_id"), t.c.updated_at < sa.bindparam("_u"))
                     .values(updated_at=sa.bindparam("_u")), later)
    given = [{"_id": i, "_c": c.to_pydatetime()} for i, c in zip(new["event_id"], new["closed_at"]) if pd.notna(c)]
    if given:
        conn.execute(t.update().where(t.c.event_id == sa.bindparam("_id"), t.c.closed_at.isnot(None))
                     .values(closed_at=sa.bindparam("_c")), given)


# ------------------------------------------------------------------ files

def detect_format(path: Path) -> str:
    """open311 (JSON with service_request_id), nyc311 (CSV with unique_key and complaint_type), else table."""
    with open(path, "rb") as f:
        head = f.read(65536).decode("utf-8", errors="ignore").lower()
    if "service_request_id" in head:
        return "open311"
    if "unique_key" in head.replace(" ", "_") and "complaint_type" in head.replace(" ", "_"):
        return "nyc311"
    return "table"


def source_profile(profile, rules: dp.CityRules, path: Path | str = "") -> Profile | None:
    """The profile a file is read with: the one given (a name, a path or a Profile), in the
    city's time zone when it names none; without one, the city's time zone alone when it is
    not the hub's (so a US city's naive times are its own wall clock, with the quarantine
    policy for the hours DST skips or repeats)."""
    from workbench.store import profiles

    if profile is not None and not isinstance(profile, Profile):
        try:
            profile = profiles.load(profile)
        except profiles.ProfileError as exc:
            raise ingest.IngestError(path, f"配置无法使用：{exc}")
    if profile is None:
        if rules.timezone == config.TZ:
            return None
        return Profile(name=f"city:{rules.name}", dataset="city_events", label=f"{rules.name} 城市规则",
                                timezone=rules.timezone)
    if not profile.timezone and rules.timezone != config.TZ:
        return dataclasses.replace(profile, timezone=rules.timezone)
    return profile


def intake_file(path: Path | str, fmt: str = "auto", *, rules: dp.CityRules | None = None,
                eng: Engine | None = None, force: bool = False, now=None, progress: bool = False,
                profile=None, preview: bool = False) -> IntakeSummary:
    """Take one file (CSV/XLSX/JSON table, Open311 JSON, NYC 311 CSV, 12345 work orders) into
    the hub: the hub's `ingest_file("city_events", …)` with this city's rules, the file's
    format and the source's profile (`profile`: column map, time zone and DST policy, value
    maps such as the hotline's categories), and the loader's counts. `preview`: nothing written.

    Raises ingest.IngestError when the file cannot be read at all (it names the file)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ingest.IngestError(path, f"未知的格式 '{fmt}'，可选：{', '.join(FORMATS)}")
    rules = rules or dp.load_rules()
    prof = source_profile(profile, rules, path)
    total = IntakeSummary(path.name)
    sha = ingest._sha256(path) if path.is_file() else None
    with context(rules=rules, fmt=fmt, now=now, stats=total, sha256=sha):
        s = ingest.ingest_file("city_events", path, eng, force=force, progress=progress, profile=prof,
                               preview=preview)
    total.hub = s
    total.rows_read, total.quarantined, total.skipped = s.rows_read, s.quarantined, s.skipped
    total.reasons = dict(s.reasons)
    if s.skipped or preview:
        total.loaded, total.updated, total.duplicates, total.older = s.loaded, s.updated, s.duplicates, s.older
    return total


# ------------------------------------------------------------------ messages

def personal_values(values: pd.DataFrame) -> dict[str, pd.Series]:
    """Personal data at the door, as the hub does it for files (`ingest.split_personal`)."""
    return ingest.split_personal(EVENTS_DS, values)


def take_in(frame: pd.DataFrame, *, origin: Origin, rules: dp.CityRules, eng: Engine | None = None,
            lines=None, malformed: list | None = None, now=None, raw: list | None = None,
            extras: pd.DataFrame | None = None) -> IntakeSummary:
    """One batch of records that is not a file (MQTT messages; hub field names, text): the
    hub's validation with the registered checks, then the same loader as files, in one
    transaction with the quarantine. `lines`: the record's message number; `malformed`:
    records that could not even be read, as (line, reason, detail, row); `raw`: the records as
    they came (the quarantine keeps them whole); `extras`: their keys the hub has no field
    for (kept with the loaded records, row_extras). The caller's personal data is kept apart and
    numbers typed into the text masked, as for files."""
    eng = eng or hub.engine()
    now = _now() if now is None else pd.Timestamp(now)
    summary = IntakeSummary(origin.name)
    frame = frame.reset_index(drop=True)
    lines = np.arange(1, len(frame) + 1) if lines is None else np.asarray(lines)
    qrows: list[tuple] = [tuple(m) for m in (malformed or [])]
    summary.rows_read = len(frame) + len(qrows)
    with context(rules=rules, now=now, stats=summary, sha256=origin.sha256):
        good_rows, personal = None, {}
        if len(frame):
            ctx = ingest.ReadContext(tz=rules.timezone, refs=ingest.References(eng))
            values, reasons, details = ingest.validate(EVENTS_DS, frame, ctx)
            good = reasons == ""
            rep = values[good].duplicated(list(EventLoader.repeat_key), keep="first")
            reasons.loc[rep[rep].index] = REPEATED
            good = reasons == ""
            bad = ~good
            if bad.any():
                as_came = [raw[i] for i in np.flatnonzero(bad.to_numpy())] if raw is not None else \
                    frame[bad].to_dict("records")
                qrows += list(zip(lines[bad.to_numpy()], reasons[bad], details[bad], as_came))
            good_rows = values[good].copy()
            personal = personal_values(good_rows)
        with eng.begin() as conn:
            if good_rows is not None and len(good_rows):
                load(conn, good_rows)
                keys = ingest.row_keys(EVENTS_DS, good_rows)
                if personal:
                    ingest.keep_personal(conn, EVENTS_DS, keys, personal, origin.sha256)
                if extras is not None:
                    ingest.keep_extras(conn, EVENTS_DS, keys, extras.loc[good_rows.index],
                                       lines[good.to_numpy()], origin.sha256)
            if qrows:   # masked as a file's quarantined rows are; the originals kept apart
                masked, originals = ingest.mask_quarantined([dict(q[3]) for q in qrows], "city_events")
                by_sha: dict[str, tuple[list, list]] = {}
                for q, o in zip(qrows, originals):
                    ls, os_ = by_sha.setdefault(origin.sha_of(q[0]), ([], []))
                    ls.append(q[0])
                    os_.append(o)
                for sha, (ls, os_) in by_sha.items():
                    ingest.keep_quarantined(conn, "city_events", sha, ls, os_, now.to_pydatetime())
                # the detail quotes the offending values: phone and ID numbers masked there too
                qrows = [(q[0], q[1], privacy.mask_text(q[2]) if q[2] else q[2], m) for q, m in zip(qrows, masked)]
                conn.execute(quarantine.insert(), _quarantine_rows(origin, *zip(*qrows), now))
    summary.quarantined = len(qrows)
    for q in qrows:
        for r in str(q[1]).split("; "):
            summary.reasons[r] = summary.reasons.get(r, 0) + 1
    return summary


RAW, EXTRAS = "_raw", "_extras"


def records_frame(doc: list, first_line: int = 1):
    """Parsed JSON records → (frame with READ_DS names, lines, malformed) in chunks. Two more
    columns: `_extras` (the keys the hub has no field for, as text) and `_raw` (the record)."""
    hmap = ingest._header_map(READ_DS)
    for start in range(0, len(doc), ingest.CHUNK_ROWS):
        buf, lines, bad = [], [], []
        for i, rec in enumerate(doc[start:start + ingest.CHUNK_ROWS], start=start + first_line):
            if not isinstance(rec, dict):
                bad.append((i, NOT_RECORD, f"类型 {type(rec).__name__}", {"value": rec}))
                continue
            row, extra = {}, {}
            for k, val in rec.items():
                name = hmap.get(ingest._norm_header(k))
                if name and name not in row:
                    row[name] = ingest._json_cell(val)
                elif str(k) not in (RAW, EXTRAS):
                    extra[str(k)] = ingest._json_cell(val)
            row[EXTRAS] = extra or None   # keys the hub has no field for: kept with the record
            row[RAW] = rec                # the record as it came, for the quarantine
            buf.append(row)
            lines.append(i)
        yield pd.DataFrame(buf, dtype=object), np.array(lines, dtype=int), bad


def message_bytes(payload) -> bytes:
    """A message's payload as bytes (text as UTF-8, lone surrogates kept)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    return str(payload).encode("utf-8", "surrogatepass")


_KEYS: dict[str, bytes] = {}


def message_sha(payload) -> str:
    """A message's fingerprint, under which its quarantined rows are kept (quarantine.file_sha256):
    HMAC-SHA256 of its bytes with a key derived from the hub's secret (workbench.access.secret,
    data/.secret), not a plain hash, which for a short message would give back the phone number
    its quarantined copy masks (10⁴ guesses). Listeners that share a hub's data folder agree on
    it; one with another secret does not recognise the other's re-deliveries."""
    import hmac

    from workbench import access

    where = str(access.secret_path())
    key = _KEYS.get(where)
    if key is None:
        key = _KEYS[where] = hmac.new(access.secret(), b"workbench-message", hashlib.sha256).digest()
    return hmac.new(key, message_bytes(payload), hashlib.sha256).hexdigest()


def message_batch(payloads: list[bytes], *, topic: str, rules: dp.CityRules, eng: Engine | None = None,
                  first_line: int = 1, now=None, shas: list[str] | None = None) -> IntakeSummary:
    """MQTT payloads (one JSON record, or a list of them, each) → take_in as one batch.
    A payload that is not JSON, or not a record, is quarantined with the reason. Quarantined
    rows are kept under their message's hash: `shas`, one per payload (the messages as the
    broker delivered them), else the payloads' own."""
    records, lines, bad = [], [], []
    sha = message_sha(b"".join(message_bytes(p) for p in payloads))
    each = {k: (shas[k - first_line] if shas else message_sha(p)) for k, p in enumerate(payloads, start=first_line)}
    for k, p in enumerate(payloads, start=first_line):
        try:
            doc = json.loads(p.decode("utf-8-sig") if isinstance(p, bytes) else p)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            bad.append((k, BAD_JSON, str(exc)[:200], {"payload": (p[:500].decode("utf-8", "replace")
                                                                  if isinstance(p, bytes) else str(p)[:500])}))
            continue
        for rec in doc if isinstance(doc, list) else [doc]:
            records.append(rec)
            lines.append(k)
    fmt = "open311" if any(isinstance(r, dict) and "service_request_id" in r for r in records) else "table"
    frames = list(records_frame(records)) if records else []
    frame = pd.concat([f for f, _, _ in frames], ignore_index=True) if frames else pd.DataFrame()
    for _, _, b in frames:
        bad += [(lines[i - 1], *rest) for i, *rest in b]
    kept = [lines[i - 1] for f in frames for i in f[1]] if frames else []
    origin = Origin(f"mqtt:{topic}", sha, fmt, messages=each)
    if frame.empty:
        return take_in(pd.DataFrame(), origin=origin, rules=rules, eng=eng, lines=np.array([], int),
                       malformed=bad, now=now)
    raw = frame.pop(RAW).tolist()
    extras = pd.DataFrame([e or {} for e in frame.pop(EXTRAS)], index=frame.index, dtype=object).fillna("")
    return take_in(normalise(frame, fmt, rules), origin=origin, rules=rules, eng=eng, lines=np.array(kept),
                   malformed=bad, now=now, raw=raw, extras=extras if len(extras.columns) else None)


__all__ = ["FORMATS", "READ_DS", "IntakeSummary", "Origin", "context", "active_rules", "ROW_CHECKS",
           "EventLoader", "LOADER", "load", "load_history", "parse_times", "normalise", "map_status", "take_in",
           "detect_format", "intake_file", "records_frame", "message_batch", "message_sha", "message_bytes", "NO_ID", "NO_LOCATION", "OUT_OF_CITY",
           "IN_FUTURE", "TOO_OLD", "UNKNOWN_CLASS", "BAD_STATUS", "REPEATED", "BAD_JSON", "NOT_RECORD"]

