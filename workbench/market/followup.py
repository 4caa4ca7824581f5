"""Follow-up of positives (阳性处置): lab re-test (复检), goods destroyed (销毁, kg) and the
stall re-tested (跟踪复查) within a deadline.

Each positive is a case of the spine's case engine (type market_followup, case_types.yaml):
its state, deadline (72 h after the test, DOMAIN.md) and closing are the case's wherever the
hub holds it. For a positive without a case (a hub where no case was opened yet) the state
is derived from the ledger's dates as before: closed when the lab re-test came back negative
(the rapid test was a false positive) or the stall was re-tested; the deadline is the
ledger's own, else `hours` after the test. Open past the deadline: overdue (逾期).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.market.catalog import BANNED

STATES = ("未登记处置", "待复检", "待复查", "复查仍阳性", "已办结")          # derived from the ledger's dates
WITHDRAWN = "更正为阴性"  # the test was corrected to negative: the follow-up withdrawn (void, never a case)
CASE_STATES = ("待处置", "已送检", "待复查", "复查仍阳性", "已办结", "复检阴性", WITHDRAWN)  # the case's steps
CLOSED_STATES = ("已办结", "复检阴性", WITHDRAWN)


@dataclass(frozen=True)
class FollowupRules:
    hours: float = 72  # default deadline: handled within 72 h of the positive test (DOMAIN.md)


def status(tests: pd.DataFrame, followups: pd.DataFrame | None, as_of, rules: FollowupRules = FollowupRules(),
           cases: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per positive test with its follow-up state as of `as_of` (naive UTC).
    `cases`: the hub's market_followup cases (read_cases); a positive with a case takes its
    state, deadline and closing from it (`source` 案件), else from the ledger (`source` 台账)."""
    as_of = pd.Timestamp(as_of)
    pos = tests[tests["result"] == "阳性"].copy()
    pos["ts"] = pd.to_datetime(pos["ts"])
    fu_cols = ["test_id", "deadline", "lab_result", "lab_result_at", "destroyed_kg", "destroyed_at",
               "stall_retest_at", "stall_retest_result", "handler"]
    fu = followups if followups is not None and len(followups) else pd.DataFrame(columns=fu_cols)
    fu = fu[[c for c in fu_cols if c in fu]].rename(columns={"deadline": "fu_deadline"})
    out = pos.merge(fu, on="test_id", how="left")
    for c in ("fu_deadline", "lab_result_at", "destroyed_at", "stall_retest_at"):
        out[c] = pd.to_datetime(out[c]) if c in out else pd.NaT
    out["registered"] = out["test_id"].isin(fu["test_id"])
    out["deadline"] = out["fu_deadline"].where(out["fu_deadline"].notna(), out["ts"] + pd.Timedelta(hours=rules.hours))
    lab_neg = out["lab_result"] == "阴性"
    retested = out["stall_retest_at"].notna() & (out["stall_retest_at"] <= as_of)
    still_pos = retested & (out["stall_retest_result"] == "阳性")
    closed = (lab_neg | retested) & ~still_pos
    out["state"] = np.select(
        [~out["registered"], still_pos, closed, out["lab_result"].isna()],
        ["未登记处置", "复查仍阳性", "已办结", "待复检"], "待复查")
    out["closed"] = closed
    out["closed_at"] = out["stall_retest_at"].where(closed & retested)
    out["source"] = "台账"
    out["case_id"] = None
    if cases is not None and len(cases):
        c = cases[cases["case_id"].astype(str).str.startswith(PREFIX)]
        c = c.assign(test_id=c["case_id"].astype(str).str[len(PREFIX):]).drop_duplicates("test_id").set_index("test_id")
        has = out["test_id"].astype(str).isin(c.index).to_numpy()
        if has.any():
            tid = out.loc[has, "test_id"].astype(str)
            out.loc[has, "state"] = tid.map(c["status"]).to_numpy()
            out.loc[has, "deadline"] = pd.to_datetime(tid.map(c["deadline"])).to_numpy()
            out.loc[has, "closed_at"] = pd.to_datetime(tid.map(c["closed_at"])).to_numpy()
            out.loc[has, "closed"] = out.loc[has, "state"].isin(CLOSED_STATES).to_numpy()
            out.loc[has, "source"] = "案件"
            out.loc[has, "case_id"] = tid.map(c["case_id"]).to_numpy()
    out["deadline"] = pd.to_datetime(out["deadline"])
    out["closed_at"] = pd.to_datetime(out["closed_at"])
    out["closed"] = out["closed"].astype(bool)
    closed = out["closed"]
    out["overdue"] = ~closed & out["deadline"].notna() & (as_of > out["deadline"])
    out["days_overdue"] = np.where(out["overdue"], (as_of - out["deadline"]).dt.days, 0)
    out["late"] = closed & out["closed_at"].notna() & (out["closed_at"] > out["deadline"])
    out["banned"] = out["test_item"].isin(BANNED)
    return out.sort_values(["overdue", "days_overdue", "ts"], ascending=[False, False, True]).reset_index(drop=True)


def summary(st: pd.DataFrame) -> dict:
    if st.empty:
        return {"positives": 0, "closed": 0, "open": 0, "overdue": 0, "late": 0, "destroyed_kg": 0.0,
                "lab_confirmed": 0, "lab_negative": 0}
    return {"positives": int(len(st)), "closed": int(st["closed"].sum()), "open": int((~st["closed"]).sum()),
            "overdue": int(st["overdue"].sum()), "late": int(st["late"].sum()),
            "destroyed_kg": float(pd.to_numeric(st["destroyed_kg"], errors="coerce").fillna(0).sum()),
            "lab_confirmed": int((st["lab_result"] == "阳性").sum()), "lab_negative": int((st["lab_result"] == "阴性").sum())}


# ------------------------------------------------------------------ the follow-up as a case
# Every positive is a case of type `market_followup` (case_types.yaml) in the spine's case
# engine: opened at the test's time in 待处置 (the product withdrawn), deadline 72 h
# (DOMAIN.md), id FU-<test_id>, subject rapid_tests:<test_id>. The linkage rule opens it from
# the 快检阳性 alert (resolver `followup_cases`); the follow-up ledger (market_followups)
# moves it through `cases.sync`, each step at the ledger's own time, opening it when missing.

CASE_TYPE = "market_followup"
AGENCY = "市场监管局"
PREFIX = "FU-"
POSITIVE_ALERT = "MKT-POS-"          # the 快检阳性 alert of a test: MKT-POS-<test_id>
TEST_CASE_COLUMNS = ["test_id", "ts", "market_id", "stall_id", "vendor", "district", "commodity", "test_item",
                     "reading", "unit", "inspector_id"]


def case_id(test_id) -> str:
    return f"{PREFIX}{test_id}"[:64]


def test_of(case) -> str:
    return str(case)[len(PREFIX):]


def _positives(conn, test_ids) -> pd.DataFrame:
    """The rapid-test rows of `test_ids` that the hub holds."""
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    t = DATASETS["rapid_tests"].table
    ids = [str(i) for i in pd.unique(pd.Series(list(test_ids), dtype=object).dropna())]
    parts = []
    for k in range(0, len(ids), 5000):
        rows = conn.execute(sa.select(*[t.c[c] for c in TEST_CASE_COLUMNS]).where(t.c.test_id.in_(ids[k:k + 5000])))
        parts.append(pd.DataFrame(rows.fetchall(), columns=TEST_CASE_COLUMNS))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TEST_CASE_COLUMNS)


def _markets(conn, market_ids) -> pd.DataFrame:
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    m = DATASETS["markets"].table
    ids = [str(i) for i in pd.unique(pd.Series(list(market_ids), dtype=object).dropna())]
    if not ids:
        return pd.DataFrame(columns=["market_id", "name", "district", "street"])
    rows = conn.execute(sa.select(m.c.market_id, m.c.name, m.c.district, m.c.street).where(m.c.market_id.in_(ids)))
    return pd.DataFrame(rows.fetchall(), columns=["market_id", "name", "district", "street"])


def _held_alerts(conn, alert_ids) -> set:
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    alert_table = DATASETS["alerts"].table
    ids = list(alert_ids)
    held: set = set()
    for k in range(0, len(ids), 5000):
        held |= {r[0] for r in conn.execute(sa.select(alert_table.c.alert_id).where(alert_table.c.alert_id.in_(ids[k:k + 5000])))}
    return held


def case_rows(conn, positives: pd.DataFrame, alert_ids: pd.Series | None = None) -> pd.DataFrame:
    """The case rows (not yet opened) of positive rapid tests: case_id FU-<test_id>, ts = the
    test's time, title, department, district, street, deadline (+72 h), subject, alert_id
    (given, else the test's 快检阳性 alert where the hub holds it), description, evidence."""
    cols = ["case_id", "ts", "title", "department", "district", "street", "deadline", "subject", "alert_id",
            "description", "evidence"]
    if positives is None or positives.empty:
        return pd.DataFrame(columns=cols)
    p = positives.reset_index(drop=True).copy()
    for c in TEST_CASE_COLUMNS:
        if c not in p:
            p[c] = None
    p["ts"] = pd.to_datetime(p["ts"])
    mk = _markets(conn, p["market_id"]).drop_duplicates("market_id").set_index("market_id")
    name = p["market_id"].map(mk["name"]).astype(object)
    name = name.where(name.notna(), p["market_id"]).astype(object).where(lambda x: x.notna(), "")
    district = p["district"].where(p["district"].notna(), p["market_id"].map(mk["district"]))
    if alert_ids is None:
        guess = POSITIVE_ALERT + p["test_id"].astype(str)
        held = _held_alerts(conn, guess.str[:64])
        alert_ids = guess.str[:64].where(guess.str[:64].isin(held), None)
    hours = 72.0
    try:
        from workbench import cases

        hours = float(cases.case_type(CASE_TYPE).default_hours or hours)
    except Exception:  # noqa: BLE001 - the type registers with the department; 72 h is the rule
        pass
    banned = p["test_item"].isin(BANNED)
    stall = p["stall_id"].fillna("").astype(str)
    out = pd.DataFrame({
        "case_id": [case_id(t) for t in p["test_id"]],
        "ts": p["ts"],
        "title": (name.astype(str) + stall.where(stall == "", " " + stall + " 摊位") + p["commodity"].fillna("").astype(str)
                  + "检出" + p["test_item"].fillna("").astype(str) + banned.map({True: "（禁用物质）", False: ""})
                  + "：阳性处置").str[:256],
        "department": AGENCY,
        "district": district,
        "street": p["market_id"].map(mk["street"]),
        "deadline": p["ts"] + pd.Timedelta(hours=hours),
        "subject": "rapid_tests:" + p["test_id"].astype(str),
        "alert_id": pd.Series(list(alert_ids), dtype=object).reset_index(drop=True),
        "description": ("快检阳性，产品下架、暂停销售；" + ("经营户 " + p["vendor"].astype(str) + "；").where(p["vendor"].notna(), "")
                        + f"{hours:g} 小时内完成处置（送检复检、销毁、摊位复查）").str[:1024],
    })
    out["evidence"] = [json.dumps({k: (None if pd.isna(v) else v) for k, v in
                                   {"检测编号": r.test_id, "市场编号": r.market_id, "摊位编号": r.stall_id,
                                    "样品": r.commodity, "检测项目": r.test_item, "读数": r.reading, "单位": r.unit,
                                    "检测员": r.inspector_id}.items()}, ensure_ascii=False, default=str)[:4096]
                       for r in p.itertuples()]
    return out[cols]


def followup_cases(conn, alert_rows: pd.DataFrame) -> pd.DataFrame:
    """Linkage resolver (department.resolvers["followup_cases"]): the follow-up case rows for
    快检阳性 alerts (each alert's attrs name its test_id). Opens nothing."""
    from workbench.alerts import attrs_of

    if alert_rows is None or alert_rows.empty:
        return case_rows(conn, None)
    a = alert_rows.reset_index(drop=True)
    tid = [attrs_of(v).get("test_id") for v in (a["attrs"] if "attrs" in a else [None] * len(a))]
    subj = a["subject"] if "subject" in a else pd.Series([None] * len(a))
    tid = [t or (s.split(":", 1)[1] if isinstance(s, str) and s.startswith("rapid_tests:") else None)
           for t, s in zip(tid, subj)]
    a = a.assign(test_id=tid).dropna(subset=["test_id"]).drop_duplicates("test_id")
    tests = _positives(conn, a["test_id"])
    tests = tests.merge(a[["test_id", "alert_id", "ts"]].rename(columns={"ts": "alert_ts"}), on="test_id", how="inner")
    tests["ts"] = pd.to_datetime(tests["ts"]).fillna(pd.to_datetime(tests["alert_ts"]))
    return case_rows(conn, tests, tests["alert_id"])


def open_followups(conn, positives: pd.DataFrame, *, actor: str = "系统自动") -> int:
    """Open the follow-up case of each positive test (rapid-test rows) that has none yet,
    through the case engine; idempotent. Returns cases opened."""
    from workbench import cases

    if positives is None or positives.empty:
        return 0
    p = positives[positives["result"] == "阳性"] if "result" in positives else positives
    rows = case_rows(conn, p)
    return cases.open_cases(conn, CASE_TYPE, rows, actor=actor, intake_note="快检阳性：产品下架，暂停销售")


def ledger_steps(fu: pd.DataFrame) -> pd.DataFrame:
    """The case steps a follow-up ledger row stands for, at the ledger's own times:
    送检时间 → 已送检; 复检报告时间 → 待复查 (阳性) or 复检阴性 (a result with no report time: at
    the later of 登记时间 and 送检时间); 销毁时间 (no lab re-test) → 待复查;
    摊位复查时间 → 已办结 or 复查仍阳性. Steps after the first closing are dropped.
    Returns case_id, ts, status, note, actor."""
    out = []
    for r in fu.to_dict("records"):
        g = lambda k: (None if k not in r or r[k] is None or (not isinstance(r[k], str) and pd.isna(r[k])) else r[k])  # noqa: E731
        kg = g("destroyed_kg")
        destroyed = f"销毁 {float(kg):g} kg" if kg is not None else "已销毁"
        steps = []
        if g("lab_sent_at") is not None:
            steps.append((g("lab_sent_at"), "已送检", "送检复检" + (f"；{destroyed}" if g("destroyed_at") is not None else "")))
        elif g("destroyed_at") is not None:
            steps.append((g("destroyed_at"), "待复查", f"{destroyed}，待摊位复查"))
        if g("lab_result") in ("阳性", "阴性"):
            # the report's time; a result without one was known when the ledger row was made
            at = g("lab_result_at") if g("lab_result_at") is not None else max(
                pd.Timestamp(x) for x in (g("ts"), g("lab_sent_at")) if x is not None)
            if g("lab_result") == "阴性":
                steps.append((at, "复检阴性", "实验室复检阴性：快检结果为假阳性，办结"))
            else:
                steps.append((at, "待复查", "实验室复检阳性，待摊位复查"))
        if g("stall_retest_at") is not None:
            still = g("stall_retest_result") == "阳性"
            steps.append((g("stall_retest_at"), "复查仍阳性" if still else "已办结",
                          "摊位复查仍阳性，继续处置" if still else "摊位复查阴性，办结"))
        steps.sort(key=lambda s: pd.Timestamp(s[0]))
        actor = str(g("handler") or "处置台账")
        for ts, status, note in steps:
            out.append({"case_id": case_id(r["test_id"]), "ts": pd.Timestamp(ts), "status": status,
                        "note": note, "actor": actor})
            if status in ("已办结", "复检阴性"):
                break
    return pd.DataFrame(out, columns=["case_id", "ts", "status", "note", "actor"])


def sync_ledger(conn, fu: pd.DataFrame) -> dict:
    """Move the follow-up cases of ledger rows (`fu`, market_followups columns) to what the
    ledger says, each step at its own time; a case not opened yet is opened first (from the
    hub's rapid test, else from the ledger row). Steps not later than the case's last step
    are taken as known already (a rerun adds nothing). Returns counts opened, steps."""
    import sqlalchemy as sa

    from workbench import cases
    from workbench.store.schema import DATASETS

    if fu is None or fu.empty:
        return {"opened": 0, "steps": 0}
    fu = fu.drop_duplicates("test_id", keep="last")
    tests = _positives(conn, fu["test_id"])
    known = set(tests["test_id"])
    orphan = fu[~fu["test_id"].isin(known)]  # ledger ahead of the tests: open from the ledger row
    if len(orphan):
        tests = pd.concat([tests, pd.DataFrame({"test_id": orphan["test_id"], "ts": pd.to_datetime(orphan["ts"])})],
                          ignore_index=True)
    opened = open_followups(conn, tests)
    steps = ledger_steps(fu)
    if steps.empty:
        return {"opened": opened, "steps": 0}
    hist = DATASETS["case_history"].table
    ids = steps["case_id"].unique().tolist()
    last: dict = {}
    for k in range(0, len(ids), 5000):
        for cid, ts in conn.execute(sa.select(hist.c.case_id, sa.func.max(hist.c.ts)).where(
                hist.c.case_id.in_(ids[k:k + 5000])).group_by(hist.c.case_id)):
            last[cid] = pd.Timestamp(ts)
    lim = steps["case_id"].map(last)
    steps = steps[lim.isna() | (steps["ts"] > lim)]
    n = 0
    for actor, grp in steps.groupby("actor", sort=True):
        n += cases.sync(conn, CASE_TYPE, grp.drop(columns="actor"), actor=actor, note_prefix="处置台账")
    return {"opened": opened, "steps": n}


def load_ledger(conn, ds, frame: pd.DataFrame) -> int:
    """Loader of market_followups (department.loaders): the ledger rows stored as ever (new
    keys inserted), then each row's dates move its case (`sync_ledger`)."""
    from workbench.store.ingest import insert_new

    n = insert_new(conn, ds, frame)
    sync_ledger(conn, frame)
    return n


def read_cases(eng=None) -> pd.DataFrame:
    """The hub's follow-up cases (case_id, ts, status, deadline, closed_at, updated_at)."""
    from workbench.store import hub

    return hub.read("cases", where={"case_type": CASE_TYPE},
                    columns=["case_id", "ts", "status", "deadline", "closed_at", "updated_at"], eng=eng)
