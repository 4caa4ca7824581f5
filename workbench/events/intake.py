"""Intake (信息收集): city events from files, Open311, NYC 311 and MQTT messages, into the hub.

Every source ends in `take_in(frame, …)`, which for one batch of records:
1. derives the ids (Open311 `service_request_id`, NYC `unique_key`: the external id; the
   hub's `event_id` is the city's own case number, or the source prefix + external id),
   parses times in the city's time zone, and validates like ingest does (types, bounds,
   required values, `updated` not before `created`);
2. quarantines, with a stable reason, records without an id or a location, outside the
   city's bounds, reported in the future or before 2000, of a class the city does not
   know, or repeated in the batch with the same version;
3. never loads an external id twice: a record the hub already holds is an update when its
   `updated_at` is newer (its status change goes into the history), else it is ignored
   (an older update never overwrites a newer one);
4. dispatches what is new (workbench.events.dispatch: department, urgency, deadline in
   working hours) and merges reports that repeat a case nearby into it (重复件);
5. writes events, their history rows and the quarantine in one transaction, so a caller
   (the MQTT listener) acknowledges a message only after it is committed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import config
from workbench.events import dispatch as dp
from workbench.events import flow
from workbench.store import hub, ingest
from workbench.store.schema import DATASETS, Dataset, Field, ingest_files, quarantine

EVENTS_DS = DATASETS["city_events"]
HISTORY_DS = DATASETS["event_history"]
FORMATS = ("auto", "table", "open311", "nyc311")
SOURCE_PREFIX = {"open311": "O311-", "nyc311": "NYC311-"}
EARLIEST = pd.Timestamp("2000-01-01")
FUTURE_SLACK = pd.Timedelta(minutes=10)  # clocks of sensors and phones run a little ahead

# Reasons (stable: the quarantine explorer and the tests count them).
NO_ID = "缺少事件编号"
NO_LOCATION = "缺少位置（经纬度）"
OUT_OF_CITY = "位置不在城市范围内"
IN_FUTURE = "上报时间在未来"
TOO_OLD = "上报时间早于 2000 年"
UNKNOWN_CLASS = "未知的事件类型"
BAD_STATUS = "办理状态无法识别"
REPEATED = "同批次重复记录"
BAD_JSON = "JSON 格式错误"
NOT_RECORD = "消息不是事件记录"

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
    fields = []
    for f in EVENTS_DS.fields:
        aliases = _EXTRA.get(f.name, f.aliases)
        fields.append(dataclasses.replace(f, required=False, aliases=tuple(aliases)))
    fields.append(Field("request_id", "str", "来源工单号", False, _EXTRA["request_id"]))
    fields.append(Field("service_name", "str", "服务名称", False, _EXTRA["service_name"]))
    return Dataset("city_events", EVENTS_DS.label, EVENTS_DS.department, tuple(fields), key=("event_id",))


READ_DS = _read_ds()
_TS_FIELDS = [f.name for f in EVENTS_DS.fields if f.kind == "ts"]


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

    def add(self, other: "IntakeSummary") -> None:
        for k in ("rows_read", "loaded", "updated", "duplicates", "older", "merged", "dispatched", "quarantined"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for r, n in other.reasons.items():
            self.reasons[r] = self.reasons.get(r, 0) + n

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("event_ids")
        return d

    def line(self) -> str:
        if self.skipped:
            return f"{self.origin}: 已接入过（内容相同），跳过"
        return (f"{self.origin}: 读取 {self.rows_read} 条，新增 {self.loaded} 条（到达即派遣 {self.dispatched}，"
                f"合并重复 {self.merged}），更新 {self.updated} 条，重复 {self.duplicates} 条，"
                f"旧版本忽略 {self.older} 条，隔离 {self.quarantined} 条")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


# ------------------------------------------------------------------ parsing

def parse_times(s: pd.Series, tz: str) -> pd.Series:
    """Times as sources write them → naive UTC; naive ones are local to the city (`tz`)."""
    if tz == config.TZ:
        return ingest.parse_timestamps(s)
    t = s.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    todo = t.notna() & (t != "")
    aware = t.str.contains(r"(?i)(?:z|[+-]\d{2}:?\d{2})$", na=False)
    for fmt in ("ISO8601", "%m/%d/%Y %I:%M:%S %p", "mixed"):
        if not todo.any():
            break
        for mask, local in ((todo & ~aware, True), (todo & aware, False)):
            if not mask.any():
                continue
            p = pd.to_datetime(t[mask], format=fmt, errors="coerce", utc=not local)
            if local:
                p = p.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
            p = p.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
            ok = p.notna()
            out[p.index[ok]] = p[ok]
        todo &= out.isna()
    return out.where(out.isna() | ((out.dt.year >= 1900) & (out.dt.year <= 2100)))


def _iso_utc(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def normalise(raw: pd.DataFrame, fmt: str, rules: dp.CityRules) -> pd.DataFrame:
    """Records with READ_DS field names (text) → the hub's field names (text; times as ISO UTC).

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
    for c in _TS_FIELDS:
        if df[c].isna().all():
            continue
        text = df[c].astype("string")
        parsed = parse_times(text, rules.timezone)
        df[c] = text.where(parsed.isna(), _iso_utc(parsed))
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
    sha256: str                 # the file's hash, or of the message
    fmt: str = "table"


def _quarantine_rows(origin: Origin, lines, reasons, details, rows, now) -> list[dict]:
    return [{"dataset": "city_events", "file_sha256": origin.sha256, "filename": origin.name[:512],
             "line": int(line), "reason": reason[:512], "detail": (detail or None) and str(detail)[:1024],
             "row_json": json.dumps({k: v for k, v in row.items() if v not in ("", None) and v == v},
                                    ensure_ascii=False, default=str),
             "quarantined_at": now.to_pydatetime()}
            for line, reason, detail, row in zip(lines, reasons, details, rows)]


def _flag(reasons: pd.Series, mask: pd.Series, text: str) -> pd.Series:
    mask = mask.fillna(False).astype(bool)
    return reasons.where(~mask, reasons + np.where(reasons == "", "", "; ") + text)


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


def take_in(frame: pd.DataFrame, *, origin: Origin, rules: dp.CityRules, eng: Engine | None = None,
            lines=None, malformed: list | None = None, now=None) -> IntakeSummary:
    """Validate, dedupe, dispatch and write one batch (hub field names, text values).

    `lines`: the record's line in its file (or message number); `malformed`: records that
    could not even be read, as (line, reason, detail, row), quarantined with the batch."""
    eng = eng or hub.engine()
    now = _now() if now is None else pd.Timestamp(now)
    summary = IntakeSummary(origin.name)
    frame = frame.reset_index(drop=True)
    lines = np.arange(1, len(frame) + 1) if lines is None else np.asarray(lines)
    malformed = list(malformed or [])
    summary.rows_read = len(frame) + len(malformed)
    qrows: list[tuple] = [tuple(m) for m in malformed]

    if len(frame):
        present = frame.loc[:, frame.notna().any(axis=0)]  # validate only what the records carry
        values, reasons, details = ingest.validate(EVENTS_DS, present)
        reasons = reasons.str.replace(f"缺少{EVENTS_DS.field('event_id').label}", NO_ID, regex=False)
        status, bad_status = map_status(values["status"])
        reasons = _flag(reasons, values["lat"].isna() | values["lon"].isna(), NO_LOCATION)
        has_loc = values["lat"].notna() & values["lon"].notna()
        reasons = _flag(reasons, has_loc & ~rules.in_bounds(values["lat"], values["lon"]), OUT_OF_CITY)
        reasons = _flag(reasons, values["ts"] > now + FUTURE_SLACK, IN_FUTURE)
        reasons = _flag(reasons, values["ts"] < EARLIEST, TOO_OLD)
        cls = values["event_class"]
        reasons = _flag(reasons, cls.notna() & ~rules.known_class(cls.fillna("")), UNKNOWN_CLASS)
        reasons = _flag(reasons, bad_status, BAD_STATUS)
        details = details.where(~(has_loc & ~rules.in_bounds(values["lat"], values["lon"])),
                                details + "纬度 " + values["lat"].astype(str) + "，经度 " + values["lon"].astype(str))
        values["updated_at"] = values["updated_at"].where(values["updated_at"].notna(), values["ts"])
        values["status"] = status
        good = reasons == ""
        # the same id twice in one batch: the newest version wins, an exact repeat is quarantined
        v = values[good].assign(_line=lines[good.to_numpy()])
        rep = v.duplicated(["event_id", "updated_at"], keep="first")
        if rep.any():
            reasons.loc[rep[rep].index] = REPEATED
            good = reasons == ""
        bad = ~good
        if bad.any():
            qrows += list(zip(lines[bad.to_numpy()], reasons[bad], details[bad], frame[bad].to_dict("records")))
        v = values[good].assign(_line=lines[good.to_numpy()]).sort_values("updated_at", kind="stable")
        superseded = v.duplicated("event_id", keep="last")
        summary.older += int(superseded.sum())
        v = v[~superseded]
    else:
        v = pd.DataFrame(columns=[*[f.name for f in EVENTS_DS.fields], "_line"])

    with eng.begin() as conn:
        if len(v):
            _write(conn, v, origin, rules, summary, now)
        if qrows:
            conn.execute(quarantine.insert(), _quarantine_rows(origin, *zip(*qrows), now))
    summary.quarantined = len(qrows)
    for q in qrows:
        for r in str(q[1]).split("; "):
            summary.reasons[r] = summary.reasons.get(r, 0) + 1
    return summary


def _write(conn, v: pd.DataFrame, origin: Origin, rules: dp.CityRules, summary: IntakeSummary, now) -> None:
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
        newer = old["updated_at"] > h_upd
        same = old["updated_at"] == h_upd
        summary.duplicates += int(same.sum())
        summary.older += int((~newer & ~same).sum())
        upd = old[newer]
        if len(upd):
            flow.sync_from_source(conn, upd, held.loc[upd["event_id"], "status"].to_numpy(),
                                  actor=upd["source"].iloc[0] or origin.name)
            summary.updated += len(upd)
            summary.event_ids += upd["event_id"].tolist()
    new = v[~known]
    if len(new):
        _insert(conn, new, origin, rules, summary, now)


def _insert(conn, new: pd.DataFrame, origin: Origin, rules: dp.CityRules, summary: IntakeSummary, now) -> None:
    new = new.copy()
    routed = dp.route(new, rules)
    given_dept = new["department"].notna()
    new["department"] = new["department"].where(given_dept, routed["department"])
    new["event_group"] = new["event_group"].where(new["event_group"].notna(), routed["event_group"])
    new["urgency"] = new["urgency"].where(new["urgency"].notna(), dp.urgency(new, rules))
    new["deadline"] = new["deadline"].where(new["deadline"].notna(), dp.deadlines(new, rules))
    src_status = new["status"]
    is_open = src_status.isna()
    dup_of = pd.Series(None, index=new.index, dtype=object)
    if is_open.any():
        dup_of[is_open] = dp.find_duplicates(new[is_open], _recent(conn, new[is_open], rules), rules)
    merged = dup_of.notna()
    auto = is_open & ~merged & (given_dept | (routed["rule"] >= 0))
    status = src_status.copy()
    status[is_open] = flow.INTAKE
    status[auto] = flow.DISPATCH
    status[merged] = flow.DUPLICATE
    new["status"] = status
    new["duplicate_of"] = dup_of
    closed = new["status"].isin(flow.CLOSED_STATUSES)
    new["closed_at"] = new["closed_at"].where(new["closed_at"].notna() | ~closed,
                                              np.where(merged, new["ts"], new["updated_at"]))
    steps = []
    for st, a, m, d, dep, upd in zip(src_status, auto, merged, dup_of, new["department"], new["updated_at"]):
        if m:
            steps.append([(flow.DUPLICATE, f"与 {d} 重复，合并办理")])
        elif a:
            steps.append([(flow.CASE, "到达即立案"), (flow.DISPATCH, f"按派遣规则派遣至{dep}")])
        elif isinstance(st, str) and st != flow.INTAKE:
            steps.append([(st, "来源系统导入状态")])
        else:
            steps.append([])
    actor = new["source"].fillna(origin.name).astype(str)
    hist = flow.arrival_history(new, actor, pd.Series(steps, index=new.index))
    # a source-given status is stamped at the record's updated_at, not a microsecond after intake
    imported = hist["note"] == "来源系统导入状态"
    if imported.any():
        upd_by_id = dict(zip(new["event_id"], new["updated_at"]))
        hist.loc[imported, "ts"] = [max(upd_by_id[e], t) for e, t in zip(hist.loc[imported, "event_id"],
                                                                           hist.loc[imported, "ts"])]
    cols = [f.name for f in EVENTS_DS.fields]
    n = ingest.insert_new(conn, EVENTS_DS, new[cols])
    ingest.insert_new(conn, HISTORY_DS, hist)
    summary.loaded += n
    summary.merged += int(merged.sum())
    summary.dispatched += int(auto.sum())
    summary.event_ids += new["event_id"].tolist()


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


def intake_file(path: Path | str, fmt: str = "auto", *, rules: dp.CityRules | None = None,
                eng: Engine | None = None, force: bool = False, now=None, progress=None) -> IntakeSummary:
    """Take one file (CSV/XLSX/JSON table, Open311 JSON, NYC 311 CSV) into the hub.

    Raises ingest.IngestError when the file cannot be read at all (it names the file)."""
    path = Path(path)
    rules = rules or dp.load_rules()
    if fmt not in FORMATS:
        raise ingest.IngestError(path, f"未知的格式 '{fmt}'，可选：{', '.join(FORMATS)}")
    if not path.is_file():
        raise ingest.IngestError(path, "文件不存在 (no such file)")
    eng = eng or hub.engine()
    sha, raw_path = ingest._sha256_and_keep(path)
    total = IntakeSummary(path.name)
    with eng.begin() as conn:
        prev = conn.execute(sa.select(ingest_files).where(ingest_files.c.dataset == "city_events",
                                                          ingest_files.c.sha256 == sha)).mappings().first()
        if prev is not None and prev["status"] == "done" and not force:
            total.skipped = True
            total.rows_read = total.duplicates = prev["rows_read"]
            return total
        if prev is None:
            file_id = conn.execute(ingest_files.insert().values(
                sha256=sha, dataset="city_events", filename=path.name, size_bytes=path.stat().st_size,
                raw_path=str(raw_path), received_at=_now().to_pydatetime(), status="running")).inserted_primary_key[0]
        else:
            file_id = prev["file_id"]
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                status="running", received_at=_now().to_pydatetime(), message=None))

    def finish(status, message=None, encoding=None):
        with eng.begin() as conn:
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                status=status, message=message, finished_at=_now().to_pydatetime(), encoding=encoding,
                rows_read=total.rows_read, loaded=total.loaded + total.updated, quarantined=total.quarantined,
                duplicates=total.duplicates + total.older))

    encoding = None
    try:
        kind = ingest._sniff(path)
        fmt = detect_format(path) if fmt == "auto" else fmt
        origin = Origin(path.name, sha, fmt)
        if kind == "xlsx":
            encoding = "xlsx"
            chunks = ingest._chunks_xlsx(READ_DS, path, None)
        else:
            encoding = ingest._detect_encoding(path)
            chunks = (_chunks_open311 if kind == "json" else ingest._chunks_csv)(READ_DS, path, encoding, None)
        next(chunks)  # unknown columns: ignored (Open311 and NYC files carry many)
        for frame, lines, malformed in chunks:
            s = take_in(normalise(frame, fmt, rules), origin=origin, rules=rules, eng=eng, lines=lines,
                        malformed=malformed, now=now)
            total.add(s)
            if progress is not None:
                progress(total)
    except ingest.IngestError as exc:
        finish("failed", exc.problem, encoding)
        raise
    except Exception as exc:
        finish("failed", f"{type(exc).__name__}: {exc}", encoding)
        raise
    if total.rows_read == 0:
        finish("failed", "没有数据行", encoding)
        raise ingest.IngestError(path, "没有数据行：表头下面是空的 (no data rows)")
    finish("done", None, encoding)
    return total


def _chunks_open311(ds, path, encoding, bar):
    """JSON records: a list, {"service_requests": [...]}, {"records": [...]}, or ingest's shapes."""
    text = Path(path).read_text(encoding=encoding)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ingest.IngestError(path, f"{BAD_JSON}：第 {exc.lineno} 行第 {exc.colno} 列: {exc.msg}")
    if isinstance(doc, dict) and isinstance(doc.get("service_requests"), list):
        doc = doc["service_requests"]
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        doc = doc.get("records") or doc.get("data") or (lists[0] if len(lists) == 1 else [doc])
    if not isinstance(doc, list) or not doc:
        raise ingest.IngestError(path, "JSON 中没有记录列表 (expected a list of service requests)")
    yield []
    yield from records_frame(doc)


def records_frame(doc: list, first_line: int = 1):
    """Parsed JSON records → (frame with READ_DS names, lines, malformed) in chunks."""
    hmap = ingest._header_map(READ_DS)
    for start in range(0, len(doc), ingest.CHUNK_ROWS):
        buf, lines, bad = [], [], []
        for i, rec in enumerate(doc[start:start + ingest.CHUNK_ROWS], start=start + first_line):
            if not isinstance(rec, dict):
                bad.append((i, NOT_RECORD, f"类型 {type(rec).__name__}", {"value": rec}))
                continue
            row = {}
            for k, val in rec.items():
                name = hmap.get(ingest._norm_header(k))
                if name and name not in row:
                    row[name] = ingest._json_cell(val)
            buf.append(row)
            lines.append(i)
        yield pd.DataFrame(buf, dtype=object), np.array(lines, dtype=int), bad


# ------------------------------------------------------------------ messages

def message_batch(payloads: list[bytes], *, topic: str, rules: dp.CityRules, eng: Engine | None = None,
                  first_line: int = 1, now=None) -> IntakeSummary:
    """MQTT payloads (one JSON record, or a list of them, each) → take_in as one batch.
    A payload that is not JSON, or not a record, is quarantined with the reason."""
    records, lines, bad = [], [], []
    sha = hashlib.sha256(b"".join(payloads)).hexdigest()
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
    origin = Origin(f"mqtt:{topic}", sha, fmt)
    if frame.empty:
        return take_in(pd.DataFrame(), origin=origin, rules=rules, eng=eng, lines=np.array([], int),
                       malformed=bad, now=now)
    return take_in(normalise(frame, fmt, rules), origin=origin, rules=rules, eng=eng, lines=np.array(kept),
                   malformed=bad, now=now)


__all__ = ["FORMATS", "READ_DS", "IntakeSummary", "Origin", "parse_times", "normalise", "map_status", "take_in",
           "detect_format", "intake_file", "records_frame", "message_batch", "NO_ID", "NO_LOCATION", "OUT_OF_CITY",
           "IN_FUTURE", "TOO_OLD", "UNKNOWN_CLASS", "BAD_STATUS", "REPEATED", "BAD_JSON", "NOT_RECORD"]

