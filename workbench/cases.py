"""The case engine (一网统管): the one place where any department's case is opened or moved.

A *case type* (city event, canteen rectification, positive-test follow-up, hazard
rectification, inspection task, the linkage cases …) is data: its statuses, the transition
table (status → the statuses that may follow), its intake step, which statuses close it,
the verbs its screens offer. Departments declare their types in YAML and register them
(`workbench.departments`); the engine knows none of them by name.

A *case store* says where a type's cases live: the spine's own `cases` / `case_history`
tables, or a department dataset that is itself a case file (the city's events:
`city_events` / `event_history`). Every store's case table has a status, an opening time,
a deadline, a closing time and a department; every history table has
(id, ts, status, actor, department, note).

The rules the engine keeps, for every type:
- a case is opened with its intake step written to history, never without;
- a move not in the type's table is refused (`CaseError`, naming the steps allowed);
- a move is guarded: the update only applies where the status is still the one read
  (`expected`, when a screen passes what it showed), so a stale screen or a race is refused;
- one history row per step, with actor, department, time and note; the actor is required;
- the times of one case never go backwards (a step is never earlier than the case's last
  step or its opening).
Nothing else in the workbench writes case history; tests/test_spine.py scans the code for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import audit, clock
from workbench.errors import ConfigError, RegistryError, WorkbenchError

if TYPE_CHECKING:
    from workbench.access import Principal

EXTENDED = "延期"     # a history marker: the deadline was extended (the status does not change)


class CaseError(WorkbenchError):
    """A case change the engine refuses; `problem` says why and what is allowed, in Chinese."""


@dataclass(frozen=True)
class CaseStore:
    """Where cases live: a table of cases and its history table (hub datasets)."""

    name: str
    table: str
    id: str
    history: str
    type_column: str | None = "case_type"   # None: every row is of the store's default type
    opened: str = "ts"
    status: str = "status"
    deadline: str | None = "deadline"
    closed: str | None = "closed_at"
    updated: str | None = "updated_at"
    department: str | None = "department"
    district: str | None = "district"      # row-level scope: district staff act on their district's cases
    # the store's open rows kept apart by triggers (workbench.store.open_rows), what counts and
    # lists of open cases read at city scale; None: they read `table`
    open_rows: sa.Table | None = field(default=None, compare=False, hash=False)

    def open_table(self) -> sa.Table:
        """The table to read this store's open cases from: its open rows' table, else its case table."""
        return self.open_rows if self.open_rows is not None else _tables(self)[0]


@dataclass(frozen=True)
class CaseType:
    name: str                                   # city_event
    label: str                                  # 城市事件
    department: str                             # the owning department (default for new cases)
    transitions: Mapping[str, tuple[str, ...]]  # status → statuses that may follow
    intake: str                                 # the first step, always written
    closed: frozenset                           # statuses that close the case
    store: str = "cases"
    actions: Mapping[str, str] = field(default_factory=dict)        # verb → status it leads to
    action_labels: Mapping[str, str] = field(default_factory=dict)  # verb → 中文
    status_labels: Mapping[str, str] = field(default_factory=dict)  # stored status → 中文 (when not Chinese)
    rework: frozenset = frozenset()             # statuses meaning the work was sent back (返工)
    deferred: str | None = None                 # the 缓办 status, when the type has one
    default_hours: float | None = None          # deadline after opening, when none is given
    requires: Mapping[str, str] = field(default_factory=dict)       # status → field a move there needs
    raises: tuple[str, ...] = ()                # alert categories its cases can lead to (linkage loop check)
    void: frozenset = frozenset()               # closing statuses that mean "never a case" (不予立案, 重复件)
    overdue_label: str | None = None            # shown for an open case past its deadline (逾期未整改)

    @property
    def statuses(self) -> tuple[str, ...]:
        seen = [self.intake]
        for s, nxt in self.transitions.items():
            for x in (s, *nxt):
                if x not in seen:
                    seen.append(x)
        return tuple(seen)

    @property
    def open_statuses(self) -> tuple[str, ...]:
        return tuple(s for s in self.statuses if s not in self.closed)

    def allowed(self, status: str | None) -> tuple[str, ...]:
        return tuple(self.transitions.get(status or "", ()))

    def label_of(self, status) -> str:
        return self.status_labels.get(status, status) if isinstance(status, str) else "未知"

    def shown(self, status, deadline=None, now=None) -> str:
        """What a case list shows for a case: its step, or the type's `overdue_label` when the case is
        open and its deadline (naive UTC, as stored) has passed by `now` (default: the clock's now)."""
        import pandas as pd

        if self.overdue_label and isinstance(status, str) and status not in self.closed \
                and deadline is not None and not pd.isna(deadline):
            from workbench import clock

            at = pd.Timestamp(now) if now is not None else clock.now()
            at = at.tz_convert("UTC").tz_localize(None) if at.tzinfo is not None else at
            due = pd.Timestamp(deadline)
            due = due.tz_convert("UTC").tz_localize(None) if due.tzinfo is not None else due
            if due < at:
                return self.overdue_label
        return self.label_of(status)

    def check(self, current: str | None, to: str, case_id: str = "") -> None:
        """CaseError unless `current` → `to` is in the table."""
        if to not in self.statuses:
            raise CaseError(f"{self.label}没有环节“{self.label_of(to)}”；环节有："
                            f"{'、'.join(self.label_of(s) for s in self.statuses)}")
        if to not in self.allowed(current):
            nxt = "、".join(self.label_of(s) for s in self.allowed(current)) or "无（已办结）"
            raise CaseError(f"{self.label} {case_id} 当前为“{self.label_of(current) if current else '未知'}”，"
                            f"不能转为“{self.label_of(to)}”；可转为：{nxt}")

    @classmethod
    def from_dict(cls, name: str, d: Mapping, where: str = "") -> "CaseType":
        """A case type from its YAML block; ConfigError naming `where` when it does not hold."""
        try:
            transitions = {str(k): tuple(v or ()) for k, v in (d.get("transitions") or {}).items()}
            ct = cls(
                name=name, label=d["label"], department=d["department"], transitions=transitions,
                intake=d["intake"], closed=frozenset(d.get("closed") or ()), store=d.get("store", "cases"),
                actions=dict(d.get("actions") or {}), action_labels=dict(d.get("action_labels") or {}),
                status_labels=dict(d.get("status_labels") or {}), rework=frozenset(d.get("rework") or ()),
                deferred=d.get("deferred"), default_hours=d.get("default_hours"),
                requires=dict(d.get("requires") or {}), raises=tuple(d.get("raises") or ()),
                void=frozenset(d.get("void") or ()), overdue_label=d.get("overdue_label"),
            )
        except KeyError as exc:
            raise ConfigError(f"案件类型 {name} 缺少“{exc.args[0]}”", where=where) from None
        known = set(ct.statuses)
        for what, names in (("closed", ct.closed), ("rework", ct.rework), ("void", ct.void),
                            ("actions", ct.actions.values()), ("deferred", [ct.deferred] if ct.deferred else [])):
            bad = [s for s in names if s not in known]
            if bad:
                raise ConfigError(f"案件类型 {name} 的 {what} 含有转移表中没有的环节：{'、'.join(bad)}", where=where)
        if ct.intake not in ct.transitions and ct.intake not in ct.closed:
            raise ConfigError(f"案件类型 {name} 的受理环节“{ct.intake}”在转移表中没有后续环节", where=where)
        return ct


# ------------------------------------------------------------------------------- registry

STORES: dict[str, CaseStore] = {
    "cases": CaseStore("cases", "cases", "case_id", "case_history"),
}
TYPES: dict[str, CaseType] = {}


def register_store(store: CaseStore) -> None:
    STORES[store.name] = store


def register_type(ct: CaseType) -> None:
    if ct.store not in STORES:
        raise RegistryError(f"案件类型 {ct.name} 的存放位置 {ct.store} 未登记")
    TYPES[ct.name] = ct


def load_types(path: str | Path) -> list[CaseType]:
    """Register every case type of a YAML file ({name: {label, department, intake, …}})."""
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for name, d in raw.items():
        ct = CaseType.from_dict(name, d, where=str(path))
        register_type(ct)
        out.append(ct)
    return out


def open_statuses(store: str) -> tuple[str, ...]:
    """Every status that is open for some case type kept in `store` (sorted): what its open
    rows' table holds."""
    _ensure_registered()
    return tuple(sorted({s for t in TYPES.values() if t.store == store for s in t.open_statuses}))


def type_status_in(frame: pd.DataFrame, pairs) -> np.ndarray:
    """Whether each row's (case_type, status) is one of `pairs` (booleans; vectorised: a Python
    loop over Arrow strings cost seconds at a million cases)."""
    key = frame["case_type"].astype("string").fillna("") + "\x1f" + frame["status"].astype("string").fillna("")
    return key.isin([f"{t}\x1f{s}" for t, s in pairs]).to_numpy(dtype=bool)


def case_type(name: str) -> CaseType:
    _ensure_registered()
    if name not in TYPES:
        raise RegistryError(f"未登记的案件类型“{name}”；已登记：{'、'.join(TYPES) or '无'}")
    return TYPES[name]


def _ensure_registered() -> None:
    from workbench import registry

    registry.load()


def _tables(store: CaseStore) -> tuple[sa.Table, sa.Table]:
    from workbench.store.schema import metadata

    return metadata.tables[store.table], metadata.tables[store.history]


def _type_of_row(store: CaseStore, row) -> CaseType:
    name = getattr(row, store.type_column, None) if store.type_column else None
    if name:
        return case_type(name)
    default = [t for t in TYPES.values() if t.store == store.name]
    if len(default) == 1 or (default and not store.type_column):
        return default[0]
    raise CaseError(f"案件 {getattr(row, store.id)} 没有案件类型")


# ------------------------------------------------------------------------------- changes

@dataclass
class Change:
    case_id: str
    case_type: str
    before: str | None
    after: str
    ts: pd.Timestamp
    actor: str
    department: str | None
    note: str


def _ts(x) -> pd.Timestamp:
    """A step's time as naive UTC (now when None; aware times are converted)."""
    if x is None:
        return clock.now()
    t = pd.Timestamp(x)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def _next_ts(conn: Connection, store: CaseStore, case_id: str, ts: pd.Timestamp, opened) -> pd.Timestamp:
    """`ts`, but never before the case's opening nor at or before its last history row."""
    _, hist = _tables(store)
    if opened is not None and not pd.isna(opened):
        ts = max(ts, pd.Timestamp(opened))
    last = conn.execute(sa.select(sa.func.max(hist.c.ts)).where(hist.c[store.id] == case_id)).scalar()
    if last is not None and pd.Timestamp(last) >= ts:
        ts = pd.Timestamp(last) + pd.Timedelta(microseconds=1)
    return ts


def _history_row(store: CaseStore, case_id, ts, status, actor, department, note) -> dict:
    return {store.id: case_id, "ts": pd.Timestamp(ts).to_pydatetime(), "status": status,
            "actor": (actor or "")[:64] or None, "department": (department or None) and department[:64],
            "note": (note or "")[:512] or None}


def _who(actor) -> tuple[str, "Principal | None"]:
    """(the actor's name for history rows, the Principal when one acts): a page passes the
    signed-in Principal; rules, ingest and the watcher pass their system name."""
    from workbench.access import Principal

    if isinstance(actor, Principal):
        return actor.actor, actor
    return ("" if actor is None else str(actor)), None


def _may(who, ct: "CaseType", st: CaseStore, m, what: str, conn=None) -> None:
    """AccessDenied unless `who` may move this case (department, district). A user is read
    afresh from the hub: one disabled, or whose role changed, since the page opened acts no more."""
    if who is None:
        return
    from workbench.access import AccessDenied

    who = fresh(who, conn)
    why = who.why_not_act(owner=ct.department, department=m.get(st.department) if st.department else None,
                          district=m.get(st.district) if st.district else None, what=what)
    if why:
        raise AccessDenied(why)


def fresh(who, conn=None):
    """`who` as the hub holds the user now (AccessDenied when disabled or gone); the system as is."""
    if who is None or who.system:
        return who
    from workbench import users
    from workbench.access import AccessDenied

    eng = conn.engine if conn is not None else None
    now = users.principal(who.username, eng)
    if now is None:
        raise AccessDenied(f"账号 {who.username} 已停用或不存在，请重新登录")
    return now


def _connect(target):
    """(connection context, is_owned) for an Engine or a Connection."""
    return target.begin() if isinstance(target, Engine) else _Borrowed(target)


class _Borrowed:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        return False


def open_case(target: Engine | Connection, case_type_name: str, case_id: str, *, actor, ts=None,
              department: str | None = None, note: str = "", title: str | None = None,
              steps: Iterable[tuple[str, str]] = (), **fields) -> Change | None:
    """Open one case at its intake step (history row written), then take `steps`
    ((status, note) pairs, each checked against the table). Idempotent: a case id the store
    already holds is left alone and None is returned. `fields`: more columns of the case row."""
    actor = _who(actor)[0]
    frame = pd.DataFrame([{**fields, "_id": case_id, "ts": _ts(ts), "department": department,
                           **({"title": title} if title is not None else {})}])
    with _connect(target) as conn:
        n = open_cases(conn, case_type_name, frame, actor=actor, intake_note=note or "受理登记",
                       steps=pd.Series([list(steps)]))
        if n == 0:
            return None
        ct = case_type(case_type_name)
        store = STORES[ct.store]
        table, _ = _tables(store)
        row = conn.execute(sa.select(table).where(table.c[store.id] == case_id)).first()
        m = row._mapping
        return Change(case_id, ct.name, None, m[store.status], pd.Timestamp(m[store.opened]), actor,
                      (m.get(store.department) if store.department else None) or ct.department, note)


def open_cases(conn: Connection, case_type_name: str, frame: pd.DataFrame, *, actor: str | pd.Series,
               steps: pd.Series | None = None, intake_note: str = "受理登记", auto_actor: str = "系统自动") -> int:
    """Open many cases at once (bulk intake). `frame`: one row per case with the store's id
    column (or `_id`) and opening time (`ts`), plus any columns of the case table; `steps`:
    per row, a list of (status, note) taken right after intake, a microsecond apart, each
    checked against the transition table. Cases the store already holds are skipped (their
    history untouched). Returns the number of cases opened."""
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    ct = case_type(case_type_name)
    store = STORES[ct.store]
    table, _ = _tables(store)
    if frame.empty:
        return 0
    f = frame.rename(columns={"_id": store.id}).reset_index(drop=True).copy()
    if not isinstance(actor, pd.Series):
        actor = _who(actor)[0]
        if not actor.strip():
            raise CaseError("没有办理人（开案需要操作人）")
    f["ts"] = pd.to_datetime(f["ts"])
    if f["ts"].isna().any():
        raise CaseError(f"{ct.label}开案需要受理时间")
    steps = steps.reset_index(drop=True) if steps is not None else pd.Series([[]] * len(f))
    # the chain of each case, checked against the table
    finals, chains = [], []
    cache: dict[tuple, str] = {}
    for i, st in enumerate(steps):
        st = [tuple(s) for s in (st or [])]
        key = tuple(s[0] for s in st)
        if key not in cache:
            cur = ct.intake
            for s in key:
                ct.check(cur, s, str(f.at[i, store.id]))
                cur = s
            cache[key] = cur
        finals.append(cache[key])
        chains.append(st)
    f[store.status] = finals
    if store.type_column:
        f[store.type_column] = ct.name
    if store.department and store.department in table.c:
        dep = f[store.department] if store.department in f else pd.Series([None] * len(f))
        f[store.department] = dep.where(dep.notna() & (dep.astype("string") != ""), ct.department)
    if store.deadline and ct.default_hours and store.deadline in table.c:
        dl = f[store.deadline] if store.deadline in f else pd.Series([pd.NaT] * len(f))
        f[store.deadline] = pd.to_datetime(dl).where(pd.to_datetime(dl).notna(),
                                                      f["ts"] + pd.Timedelta(hours=float(ct.default_hours)))
    if store.updated and store.updated in table.c:
        f[store.updated] = f["ts"] + pd.to_timedelta([len(c) for c in chains], unit="us")
    if store.closed and store.closed in table.c:
        closed_at = f[store.updated] if store.updated in f else f["ts"]
        was = f[store.closed] if store.closed in f else pd.Series([pd.NaT] * len(f))
        is_closed = pd.Series(finals).isin(ct.closed).to_numpy()
        f[store.closed] = pd.to_datetime(was).where(~is_closed | pd.to_datetime(was).notna(), closed_at)
    # skip the cases already held
    ids = f[store.id].astype(str).tolist()
    held: set = set()
    for k in range(0, len(ids), 5000):
        held |= {r[0] for r in conn.execute(sa.select(table.c[store.id]).where(table.c[store.id].in_(ids[k:k + 5000])))}
    fresh = ~f[store.id].astype(str).isin(held).to_numpy() & ~f[store.id].astype(str).duplicated().to_numpy()
    if not fresh.any():
        return 0
    new = f[fresh].reset_index(drop=True)
    new_chains = [c for c, keep in zip(chains, fresh) if keep]
    actors = (actor[fresh].reset_index(drop=True) if isinstance(actor, pd.Series)
              else pd.Series([actor] * len(new)))
    n = insert_new(conn, DATASETS[store.table], new[[c for c in new.columns if c in table.c]])
    deps = new[store.department] if store.department in new else pd.Series([ct.department] * len(new))
    rows = []
    for cid, ts, who, dep, chain in zip(new[store.id], new["ts"], actors, deps, new_chains):
        rows.append(_history_row(store, cid, ts, ct.intake, who, dep, intake_note))
        for k, (status, note) in enumerate(chain, start=1):
            rows.append(_history_row(store, cid, ts + pd.Timedelta(microseconds=k), status,
                                     auto_actor, dep, note))
    _write_history(conn, store, rows)
    if n:
        who = actor if isinstance(actor, str) else "、".join(sorted(set(map(str, actors)))[:3])
        audit.record(conn, "case.open", who, subject=ct.name, count=int(n),
                     ids=[str(x) for x in new[store.id].head(20)])
    return n


def _write_history(conn: Connection, store: CaseStore, rows: list[dict]) -> int:
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    if not rows:
        return 0
    ds = DATASETS[store.history]
    df = pd.DataFrame(rows)
    return insert_new(conn, ds, df[[c for c in df.columns if c in ds.table.c]])


def transition(target: Engine | Connection, case_id: str, to: str, *, actor, note: str = "",
               department: str | None = None, ts=None, expected: str | None = None,
               case_type_name: str | None = None, store: str | None = None,
               values: Mapping | None = None) -> Change:
    """Move one case to `to`, writing its history row in the same transaction.

    `expected`: the status the caller saw (a screen's row); refused when the case moved since.
    `department`: where the case goes (a 派遣 step), written to the case and its history row.
    `values`: more columns of the case row to set with the move (e.g. duplicate_of).
    `actor`: the signed-in Principal (its department and district are checked: AccessDenied
    says why not) or, for the workbench's own rules, a system name. Audited."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return transition(conn, case_id, to, actor=actor, note=note, department=department, ts=ts,
                              expected=expected, case_type_name=case_type_name, store=store, values=values)
    conn = target
    actor, who = _who(actor)
    if not actor.strip():
        raise CaseError("没有办理人：每一步都要记录是谁办理的")
    st, row = _find(conn, case_id, case_type_name, store)
    ct = _type_of_row(st, row) if case_type_name is None else case_type(case_type_name)
    m = row._mapping
    before = m[st.status]
    _may(who, ct, st, m, f"把{ct.label}转为“{ct.label_of(to)}”", conn)
    if expected is not None and expected != before:
        raise CaseError(f"{ct.label} {case_id} 已被他人改为“{ct.label_of(before)}”（您看到的是"
                        f"“{ct.label_of(expected)}”），请刷新后重试")
    ct.check(before, to, case_id)
    need = ct.requires.get(to)
    if need and not (department if need == "department" else (values or {}).get(need)) and not (
            need == "department" and st.department and m.get(st.department)):
        raise CaseError(f"{ct.label} {case_id} 转为“{ct.label_of(to)}”需要指定{'责任部门' if need == 'department' else need}")
    when = _next_ts(conn, st, case_id, _ts(ts), m[st.opened])
    table, _ = _tables(st)
    upd = {st.status: to}
    if st.updated:
        upd[st.updated] = when.to_pydatetime()
    if department and st.department:
        upd[st.department] = department
    if st.closed:
        if to in ct.closed:
            upd[st.closed] = when.to_pydatetime()
        elif before in ct.closed:
            upd[st.closed] = None
    upd.update(values or {})
    res = conn.execute(table.update().where(table.c[st.id] == case_id, table.c[st.status] == before).values(**upd))
    if res.rowcount != 1:
        raise CaseError(f"{ct.label} {case_id} 的环节刚被他人改动，请刷新后重试")
    dep = department or (m.get(st.department) if st.department else None) or ct.department
    if not note and to in ct.requires and ct.requires[to] == "department":
        note = f"派遣至{dep}"
    _write_history(conn, st, [_history_row(st, case_id, when, to, actor, dep, note)])
    audit.record(conn, "case.step", actor, subject=subject_of(st, case_id), ts=when, before=before, after=to,
                 department=dep, note=note or None)
    if to in ct.closed:
        _lift_alerts_about(conn, st, [case_id], when, actor)
    return Change(case_id, ct.name, before, to, when, actor, dep, note)


def subject_of(store: CaseStore | str, case_id: str) -> str:
    """How alerts name a case as their subject: "<case table>:<id>" (e.g. city_events:E1)."""
    st = STORES[store] if isinstance(store, str) else store
    return f"{st.table}:{case_id}"


def _lift_alerts_about(conn: Connection, st: CaseStore, ids: list, when, actor: str) -> int:
    """A case that closes lifts the alerts raised about it (an escalation of an overdue event)."""
    from workbench import alerts

    n = 0
    for k in range(0, len(ids), 1000):
        subjects = [subject_of(st, i) for i in ids[k:k + 1000]]
        n += alerts.lift_subjects(conn, subjects, ts=when, actor=actor, note="案件已办结，告警解除")
    return n


def act(target: Engine | Connection, case_id: str, action: str, *, actor, case_type_name: str | None = None,
        store: str | None = None, **kw) -> Change:
    """A named action (a screen's button, a CLI verb) → the status the type maps it to."""
    with _connect(target) as conn:
        st, row = _find(conn, case_id, case_type_name, store)
        ct = _type_of_row(st, row) if case_type_name is None else case_type(case_type_name)
        to = ct.actions.get(action) or (action if action in ct.statuses else None)
        if to is None:
            labels = "、".join(f"{k}（{ct.action_labels.get(k, ct.label_of(v))}）" for k, v in ct.actions.items())
            raise CaseError(f"{ct.label}没有操作“{action}”；可用：{labels}")
        return transition(conn, case_id, to, actor=actor, case_type_name=ct.name, store=st.name, **kw)


def extend(target: Engine | Connection, case_id: str, deadline, *, actor, note: str = "",
           store: str | None = None) -> Change:
    """Extend a case's deadline (延期): the new deadline on the case, a 延期 history row.
    `actor`: a Principal (checked as for `transition`) or a system name. Audited."""
    with _connect(target) as conn:
        actor, who = _who(actor)
        if not actor.strip():
            raise CaseError("没有办理人：每一步都要记录是谁办理的")
        st, row = _find(conn, case_id, None, store)
        ct = _type_of_row(st, row)
        m = row._mapping
        _may(who, ct, st, m, f"延长{ct.label}的处置时限", conn)
        if m[st.status] in ct.closed:
            raise CaseError(f"{ct.label} {case_id} 已办结，不能延期")
        new = pd.Timestamp(deadline)
        old = m.get(st.deadline) if st.deadline else None
        if old is not None and not pd.isna(old) and new <= pd.Timestamp(old):
            raise CaseError(f"新的处置时限 {new} 不晚于原时限 {old}")
        when = _next_ts(conn, st, case_id, clock.now(), m[st.opened])
        table, _ = _tables(st)
        conn.execute(table.update().where(table.c[st.id] == case_id).values(
            **{st.deadline: new.to_pydatetime()}, **({st.updated: when.to_pydatetime()} if st.updated else {})))
        dep = m.get(st.department) if st.department else ct.department
        _write_history(conn, st, [_history_row(st, case_id, when, EXTENDED, actor, dep,
                                               note or f"处置时限延至 {clock.to_local(new):%Y-%m-%d %H:%M}（北京时间）")])
        audit.record(conn, "case.extend", actor, subject=subject_of(st, case_id), ts=when,
                     deadline=new, before=old, note=note or None)
        return Change(case_id, ct.name, m[st.status], m[st.status], when, actor, dep, note)


def sync(conn: Connection, case_type_name: str, changes: pd.DataFrame, *, actor: str,
         note_prefix: str = "来源系统状态同步") -> int:
    """Statuses reported by the system a case came from (Open311, NYC 311, a department's
    ledger), which is the authority on its own cases: taken as reported (a closing may skip
    steps) but only statuses the type knows, one history row each, times never backwards.
    `changes`: id (or `_id`), ts, status, optional note, department. Returns changes applied."""
    ct = case_type(case_type_name)
    st = STORES[ct.store]
    if changes.empty:
        return 0
    ch = changes.rename(columns={"_id": st.id}).copy()
    bad = sorted(set(ch["status"].dropna()) - set(ct.statuses))
    if bad:
        raise CaseError(f"{ct.label}没有环节：{'、'.join(map(str, bad))}")
    ch["ts"] = pd.to_datetime(ch["ts"])
    ch = ch.sort_values([st.id, "ts"], kind="stable")
    table, hist = _tables(st)
    ids = ch[st.id].astype(str).unique().tolist()
    cur: dict = {}
    cols = [table.c[st.id], table.c[st.status], table.c[st.opened]]
    for k in range(0, len(ids), 5000):
        for r in conn.execute(sa.select(*cols).where(table.c[st.id].in_(ids[k:k + 5000]))):
            cur[r[0]] = (r[1], r[2])
    lasts = {}
    for k in range(0, len(ids), 5000):
        for r in conn.execute(sa.select(hist.c[st.id], sa.func.max(hist.c.ts)).where(
                hist.c[st.id].in_(ids[k:k + 5000])).group_by(hist.c[st.id])):
            lasts[r[0]] = pd.Timestamp(r[1])
    rows, updates = [], []
    for r in ch.itertuples(index=False):
        cid = getattr(r, st.id)
        if cid not in cur or pd.isna(r.status) or cur[cid][0] == r.status:
            continue
        before, opened = cur[cid]
        when = max(pd.Timestamp(r.ts), pd.Timestamp(opened))
        if cid in lasts and lasts[cid] >= when:
            when = lasts[cid] + pd.Timedelta(microseconds=1)
        lasts[cid] = when
        note = getattr(r, "note", None) or f"{note_prefix}：{ct.label_of(before)} → {ct.label_of(r.status)}"
        rows.append(_history_row(st, cid, when, r.status, actor, getattr(r, "department", None) or ct.department, note))
        upd = {"_id": cid, "_before": before, st.status: r.status}
        if st.updated:
            upd[st.updated] = when.to_pydatetime()
        if st.closed:
            upd[st.closed] = when.to_pydatetime() if r.status in ct.closed else None
        updates.append(upd)
        cur[cid] = (r.status, opened)
    # apply the last status of each case, guarded on the status read
    final: dict = {}
    first_before: dict = {}
    for u in updates:
        first_before.setdefault(u["_id"], u["_before"])
        final[u["_id"]] = u
    if final:
        batch = [{**u, "_before": first_before[i]} for i, u in final.items()]
        keys = [c for c in batch[0] if not c.startswith("_")]
        stmt = table.update().where(table.c[st.id] == sa.bindparam("_id"),
                                    table.c[st.status] == sa.bindparam("_before")).values(
            **{c: sa.bindparam(c) for c in keys})
        res = conn.execute(stmt, batch)
        if res.rowcount is not None and 0 <= res.rowcount < len(batch):
            raise CaseError(f"{ct.label}：有案件的环节在同步时刚被他人改动，请重试（本次同步未写入）")
    _write_history(conn, st, rows)
    if rows:
        audit.record(conn, "case.sync", actor, subject=ct.name, count=len(rows), source=note_prefix)
    closings = {subject_of(st, i): (u.get(st.updated) if st.updated else None)
                for i, u in final.items() if u[st.status] in ct.closed}
    if closings:  # a case the source closed lifts its alerts, at its closing time
        from workbench import alerts

        alerts.lift_subjects(conn, list(closings), ts=closings, actor=actor, note="案件已办结，告警解除")
    return len(rows)


def import_history(conn: Connection, store_name: str, frame: pd.DataFrame) -> int:
    """History rows that come with cases from their source system (a department's case-flow
    export), taken as they are. A step the hub already holds under the same key (case, time,
    status) — written when the case was opened or synced from the same system — takes the
    source's own actor, department and note, which are the record of who did it. Returns the
    rows added or completed (a row identical to the one held counts as a duplicate)."""
    from workbench.store.ingest import insert_new, records
    from workbench.store.schema import DATASETS

    st = STORES[store_name]
    ds = DATASETS[st.history]
    t = ds.table
    f = frame.reset_index(drop=True)
    added = insert_new(conn, ds, f)
    if added == len(f):
        return added
    cols = [c for c in ("actor", "department", "note") if c in f and c in t.c]
    if not cols:
        return added
    ids = f[st.id].astype(str).unique().tolist()
    held = []
    for k in range(0, len(ids), 2000):
        res = conn.execute(sa.select(t.c[st.id], t.c.ts, t.c.status, *[t.c[c] for c in cols])
                           .where(t.c[st.id].in_(ids[k:k + 2000])))
        held += [tuple(r) for r in res]
    h = pd.DataFrame(held, columns=[st.id, "ts", "status", *[f"_{c}" for c in cols]])
    h["ts"] = pd.to_datetime(h["ts"])
    m = f.assign(ts=pd.to_datetime(f["ts"])).merge(h, on=[st.id, "ts", "status"], how="inner")
    differ = np.zeros(len(m), bool)
    for c in cols:
        new, old = m[c].astype("string"), m[f"_{c}"].astype("string")
        differ |= (new.notna() & (new != old).fillna(True)).to_numpy()
    todo = m[differ]
    if len(todo):
        stmt = t.update().where(t.c[st.id] == sa.bindparam("_id"), t.c.ts == sa.bindparam("_ts"),
                                t.c.status == sa.bindparam("_status")).values(
            **{c: sa.func.coalesce(sa.bindparam(c), t.c[c]) for c in cols})
        batch = [{"_id": r[st.id], "_ts": r["ts"], "_status": r["status"], **{c: r[c] for c in cols}}
                 for r in records(todo[[st.id, "ts", "status", *cols]])]
        for b in batch:
            b["_ts"] = pd.Timestamp(b["_ts"]).to_pydatetime()
        conn.execute(stmt, batch)
    return added + int(differ.sum())


def load_cases(conn: Connection, ds, frame: pd.DataFrame) -> int:
    """The hub's ingest loader for `cases` files (another platform's case export): each case
    opens at its intake step and takes the status the file reports (`sync`); a case type the
    registry does not know is refused for the whole chunk with the types known."""
    n = 0
    for name, part in frame.groupby("case_type", sort=True):
        ct = case_type(name)
        opened = part.drop(columns=["status"]).rename(columns={"case_id": "_id"})
        n += open_cases(conn, ct.name, opened, actor="数据接入", intake_note="文件接入")
        moved = part[part["status"].notna() & (part["status"] != ct.intake)]
        if len(moved):
            ts = moved["updated_at"].where(moved["updated_at"].notna(), moved["ts"]) if "updated_at" in moved else moved["ts"]
            sync(conn, ct.name, pd.DataFrame({"_id": moved["case_id"], "ts": ts, "status": moved["status"]}),
                 actor="数据接入")
    return n


def load_case_history(conn: Connection, ds, frame: pd.DataFrame) -> int:
    """The hub's ingest loader for `case_history` files: the source's steps, kept as given."""
    return import_history(conn, "cases", frame)


def _find(conn: Connection, case_id: str, case_type_name: str | None, store: str | None):
    if case_type_name:
        stores = [STORES[case_type(case_type_name).store]]
    elif store:
        stores = [STORES[store]]
    else:
        _ensure_registered()
        stores = list(STORES.values())
    for st in stores:
        table, _ = _tables(st)
        row = conn.execute(sa.select(table).where(table.c[st.id] == case_id)).first()
        if row is not None:
            return st, row
    raise CaseError(f"找不到案件 {case_id}")


# ------------------------------------------------------------------------------- reading

def history(case_id: str, eng: Engine | None = None, store: str | None = None) -> pd.DataFrame:
    """The steps of one case, oldest first (ts, status, actor, department, note)."""
    from workbench.store import hub

    eng = eng or hub.engine()
    with eng.connect() as conn:
        st, _ = _find(conn, case_id, None, store)
    _, hist = _tables(st)
    return hub.query(sa.select(hist).where(hist.c[st.id] == case_id).order_by(hist.c.ts), eng=eng)


def frame(eng: Engine | None = None, *, since=None, until=None, types: Iterable[str] | None = None,
          department: str | None = None, district: str | None = None, period=None) -> pd.DataFrame:
    """Every case of every store in one shape: case_id, case_type, type_label, department,
    district, status, opened, deadline, closed_at, closed (bool), overdue (open past its
    deadline now, or closed after it). `since`/`until` filter the opening time (naive UTC).
    `period` = (start, end), naive UTC, half-open: only the cases that count for it, those
    opened in it or whose deadline falls in it (filtered in the database: an evaluation of a
    week need not read every case of a year)."""
    from workbench.store import hub

    _ensure_registered()
    eng = eng or hub.engine()
    wanted = set(types) if types else None
    parts = []
    for st in STORES.values():
        tnames = [t.name for t in TYPES.values() if t.store == st.name and (wanted is None or t.name in wanted)]
        if not tnames:
            continue
        table, _ = _tables(st)
        c = table.c
        default = next((t for t in TYPES.values() if t.store == st.name), None)
        ctype = (sa.func.coalesce(c[st.type_column], default.name) if st.type_column else sa.literal(default.name))
        cols = [c[st.id].label("case_id"), ctype.label("case_type"),
                (c[st.department] if st.department else sa.literal(None)).label("department"),
                (c["district"] if "district" in c else sa.literal(None)).label("district"),
                c[st.status].label("status"), c[st.opened].label("opened"),
                (c[st.deadline] if st.deadline else sa.literal(None)).label("deadline"),
                (c[st.closed] if st.closed else sa.literal(None)).label("closed_at")]
        stmt = sa.select(*cols)
        if st.type_column:
            stmt = stmt.where(ctype.in_(tnames))
        if since is not None:
            stmt = stmt.where(c[st.opened] >= pd.Timestamp(since).to_pydatetime())
        if until is not None:
            stmt = stmt.where(c[st.opened] < pd.Timestamp(until).to_pydatetime())
        if department and st.department:
            stmt = stmt.where(c[st.department] == department)
        if district and "district" in c:
            stmt = stmt.where(c["district"] == district)
        if period is not None:
            p0, p1 = (pd.Timestamp(x).to_pydatetime() for x in period)
            in_period = sa.and_(c[st.opened] >= p0, c[st.opened] < p1)
            stmt = stmt.where(sa.or_(in_period, sa.and_(c[st.deadline] >= p0, c[st.deadline] < p1))
                              if st.deadline else in_period)
        parts.append(hub.query(stmt, eng=eng))
    cols = ["case_id", "case_type", "department", "district", "status", "opened", "deadline", "closed_at"]
    out = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else pd.DataFrame(columns=cols)
    for col in ("opened", "deadline", "closed_at"):
        out[col] = pd.to_datetime(out[col])
    closed_set = {(t.name, s) for t in TYPES.values() for s in t.closed}
    void_set = {(t.name, s) for t in TYPES.values() for s in t.void}
    out["closed"] = type_status_in(out, closed_set)
    out["void"] = type_status_in(out, void_set)
    out["type_label"] = out["case_type"].map({t.name: t.label for t in TYPES.values()})
    now = clock.now()
    end = out["closed_at"].where(out["closed"], now)
    out["overdue"] = out["deadline"].notna().to_numpy() & (end > out["deadline"]).to_numpy()
    return out


__all__ = ["CaseError", "CaseStore", "CaseType", "Change", "EXTENDED", "STORES", "TYPES", "act", "case_type",
           "extend", "frame", "history", "import_history", "load_types", "open_case", "open_cases", "open_statuses",
           "type_status_in",
           "register_store", "register_type", "subject_of", "sync", "transition"]
