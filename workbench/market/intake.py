"""Intake of rapid-test records: the market-specific row rules, the market's loader, and a
watched drop folder.

Records come in through the hub's one ingest path (`workbench ingest rapid_tests FILE`,
`workbench market ingest FILE`, or `workbench market watch FOLDER` for the readers' exports).
The rules below are RowChecks of the rapid_tests dataset (registered in department.py): a
failing row goes to the hub's quarantine table with a stable reason, the file and the line;
nothing is fixed.

- 检测结果与检测值、判定限值不符: where the reading and the threshold are both present the
  result is re-derived and must agree. The judging standard as written (判定标准, `criterion`)
  says the direction: "≥50%" / ">50%" / "50%以上" name the positive side (positive at reading
  ≥ / > the number), "≤0.05mg/kg" / "<0.05" / "不超过…" name the limit a compliant sample keeps
  (positive above it). Without an operator the method decides (enzyme inhibition and cards:
  positive at reading >= threshold; colorimetric: above the limit). A qualitative standard
  ("阴性", "未检出") judges a colloidal-gold card by its reading (1 positive, 0 negative).
- 判定标准无法识别: a 判定标准 that is neither a number with its direction nor a qualitative
  standard ("合格即可", "≤0.1 mg / kg" with inner spaces …); the detail names the value.
- 百分比读数超过 100%: an inhibition rate (unit %, or an enzyme-inhibition test) above 100.
- 胶体金卡读数应为 0 或 1: a colloidal-gold card reads negative (0) or positive (1).
- 摊位号不在该市场的摊位名录中: the stall number (摊位号) or code (摊位编号) is not one of its
  market's stalls in the hub's `stalls` registry; the detail names the closest stall numbers of
  that market. Judged only for markets the registry lists stalls for (see `TestLoader.prepare`).
- 摊位号在该市场对应多个摊位: the market's registry lists the number for two stalls (a registry
  to mend); the detail names their stall_ids.
- 样品名称不在商品目录中: the commodity is not in workbench.market.catalog.

An unknown or ambiguous market (name or code) is the hub's own judgement (ingest.References:
quarantined with the closest registry names); the market adds no second reason for it.
"""
from __future__ import annotations

import contextvars
import re
import stat
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.market import catalog
from workbench.store.schema import RowCheck

_ENGINE = contextvars.ContextVar("market_registry_engine", default=None)

RESULT_CONTRADICTS = "检测结果与检测值、判定限值不符"
UNREADABLE_CRITERION = "判定标准无法识别"
UNKNOWN_STALL = "摊位号不在该市场的摊位名录中"
AMBIGUOUS_STALL = "摊位号在该市场对应多个摊位"


# ------------------------------------------------------------------ row rules (vectorised)


def method_kinds(df: pd.DataFrame) -> pd.Series:
    """enzyme | card | colour per row (from the test item, else method or unit text)."""
    codes, uniq = pd.factorize(df["test_item"])  # map the few distinct items, not every row
    known = pd.Series(uniq, dtype=object).map({k: v[0] for k, v in catalog.TEST_ITEMS.items()}).to_numpy(dtype=object)
    kind = pd.Series(np.where(codes >= 0, np.append(known, None)[codes], None), index=df.index, dtype=object)
    todo = kind.isna()
    if todo.any():
        text = (df.loc[todo, "method"].astype(object).fillna("").astype(str)
                + df.loc[todo, "unit"].astype(object).fillna("").astype(str))
        guess = np.select([text.str.contains("酶|抑制|%", regex=True),
                           text.str.contains("胶体金|试纸|卡", regex=True),
                           text.str.contains("比色|mg/kg", regex=True)], ["enzyme", "card", "colour"], None)
        kind.loc[todo] = guess
    return kind


# 判定标准 as written: the direction of a number, and the standards that have no number
_AT_LEAST = r"^\s*(?:≥|>=|≧|不低于|不小于)"
_ABOVE = r"^\s*(?:>|＞)(?!=)"
_AT_MOST = r"^\s*(?:≤|<=|≦|不大于|不超过|不高于)"
_BELOW = r"^\s*(?:<|＜)(?!=)"
QUALITATIVE = ("阴性", "阴性(-)", "阴性（-）", "-", "未检出", "不得检出", "阴性/未检出", "nd", "不得检出(阴性)")
_QUAL_KEYS = {re.sub(r"\s+", "", unicodedata.normalize("NFKC", q)).lower() for q in QUALITATIVE}


def _criterion_text(df: pd.DataFrame) -> pd.Series:
    if "criterion" not in df:
        return pd.Series(pd.NA, index=df.index, dtype="string")
    t = df["criterion"].astype("string").str.normalize("NFKC").str.strip()
    return t.where(t != "")


def criterion_direction(df: pd.DataFrame) -> pd.Series:
    """Per row how its 判定标准 places positives against the threshold: 'ge' (positive at
    reading ≥ number), 'gt' (> number), or None (no operator: the method decides).
    "≥50%" and "50%以上" are 'ge', ">50" 'gt'; "≤0.05mg/kg" (the limit a compliant sample
    keeps) is 'gt' (positive above it), "<0.05" 'ge' (positive from it on)."""
    t = _criterion_text(df).fillna("")
    return pd.Series(np.select(
        [t.str.contains(_AT_LEAST, regex=True), t.str.contains(_ABOVE, regex=True),
         t.str.contains(_AT_MOST, regex=True), t.str.contains(_BELOW, regex=True),
         t.str.contains(r"(?:及|或)?以上$", regex=True), t.str.contains(r"(?:及|或)?以下$", regex=True)],
        ["ge", "gt", "gt", "ge", "ge", "gt"], None), index=df.index, dtype=object)


def qualitative_criterion(df: pd.DataFrame) -> pd.Series:
    """Rows whose 判定标准 is a qualitative standard (阴性, 未检出 …)."""
    t = _criterion_text(df)
    key = t.str.replace(r"\s+", "", regex=True).str.lower()
    return key.isin(_QUAL_KEYS).fillna(False).astype(bool)


def unreadable_criterion(df: pd.DataFrame) -> pd.Series:
    """A 判定标准 written but neither a number (with its direction) nor a qualitative standard.
    (The hub reads the number into `threshold`; text it cannot read leaves threshold empty.)"""
    t = _criterion_text(df)
    thr = pd.to_numeric(df["threshold"], errors="coerce") if "threshold" in df else pd.Series(np.nan, index=df.index)
    return (t.notna() & thr.isna() & ~qualitative_criterion(df)).fillna(False).astype(bool)


def _unreadable_detail(df: pd.DataFrame) -> pd.Series:
    return "判定标准: '" + _criterion_text(df).fillna("").str.slice(0, 40) + "'（应写成 ≥50%、≤0.05mg/kg 或 阴性）"


def derived_result(df: pd.DataFrame) -> pd.Series:
    """阳性 / 阴性 from the reading and the judging standard; None where they do not decide.
    A threshold with a direction (criterion_direction) is judged that way; one without by the
    method (colorimetric: above the limit; enzyme and cards: at or above); a qualitative
    standard judges a card reading of 1 positive and 0 negative."""
    reading = pd.to_numeric(df["reading"], errors="coerce")
    thr = pd.to_numeric(df["threshold"], errors="coerce")
    kind = method_kinds(df)
    direction = criterion_direction(df)
    gt = np.where(direction.notna(), direction == "gt", (kind == "colour").to_numpy())
    pos = np.where(gt, reading > thr, reading >= thr)
    out = pd.Series(np.where(pos, "阳性", "阴性"), index=df.index, dtype=object)
    out = out.where(reading.notna() & thr.notna(), None)
    card = (kind == "card") & qualitative_criterion(df) & thr.isna() & reading.isin([0.0, 1.0])
    if card.any():
        out[card] = np.where(reading[card] == 1.0, "阳性", "阴性")
    return out


def result_contradicts_reading(df: pd.DataFrame) -> pd.Series:
    d = derived_result(df)
    r = df["result"].astype(object)
    return d.notna() & r.notna() & (d != r)


def _contradiction_detail(df: pd.DataFrame) -> pd.Series:
    d = derived_result(df).fillna("")
    reading = pd.to_numeric(df["reading"], errors="coerce").round(4).astype("string").fillna("")
    unit = df["unit"].astype("string").fillna("") if "unit" in df else ""
    crit = _criterion_text(df)
    thr = pd.to_numeric(df["threshold"], errors="coerce").round(4).astype("string")
    std = crit.where(crit.notna(), thr).fillna("")
    return ("检测值 " + reading + unit + "，判定标准 " + std + "，检测结果 "
            + df["result"].astype("string").fillna("") + "（按读数应为" + d + "）")


def percent_over_100(df: pd.DataFrame) -> pd.Series:
    reading = pd.to_numeric(df["reading"], errors="coerce")
    pct = (df["unit"].astype(object) == "%") | (method_kinds(df) == "enzyme")
    return pct & (reading > 100)


def card_not_binary(df: pd.DataFrame) -> pd.Series:
    reading = pd.to_numeric(df["reading"], errors="coerce")
    return (method_kinds(df) == "card") & reading.notna() & ~reading.isin([0.0, 1.0])


def unknown_commodity(df: pd.DataFrame) -> pd.Series:
    c = df["commodity"].astype(object)
    return c.notna() & ~c.isin(catalog.COMMODITIES)


@contextmanager
def registry_from(eng):
    """Read the registries (stalls, markets) of this engine's hub (default: the configured hub)."""
    token = _ENGINE.set(eng)
    try:
        yield
    finally:
        _ENGINE.reset(token)


def _engine():
    """The hub whose registries are read: the one `registry_from` names, else the hub the file
    being ingested goes to (ingest.reading()), else the configured hub."""
    from workbench.store import hub, ingest

    ctx = ingest.reading()
    return _ENGINE.get() or (ctx.refs.eng if ctx is not None and ctx.refs is not None else None) or hub.engine()


# ------------------------------------------------------------------ stalls: (market, 摊位号) → stall_id

def stall_key(text) -> str:
    """How stall numbers are compared: NFKC, upper case, without spaces, dashes, 号/摊位, and
    without leading zeros in numbers (A01 = A1 = a-01号)."""
    s = unicodedata.normalize("NFKC", str(text)).upper()
    s = re.sub(r"[\s\-_—·.]|摊位|摊|号", "", s)
    return re.sub(r"(?<!\d)0+(?=\d)", "", s)


def stall_registry(eng=None) -> pd.DataFrame:
    """The hub's stalls: market_id, stall_id, stall_no (text)."""
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    t = DATASETS["stalls"].table
    with (eng or _engine()).connect() as conn:
        rows = conn.execute(sa.select(t.c.market_id, t.c.stall_id, t.c.stall_no)).fetchall()
    return pd.DataFrame(rows, columns=["market_id", "stall_id", "stall_no"], dtype=object)


def _market_codes(values: pd.Series, eng) -> pd.Series:
    """Market names or codes as written → the registry's codes (the hub's References; a value
    it cannot resolve stays as written, and the hub quarantines that row for it)."""
    from workbench.store.ingest import References
    from workbench.store.schema import DATASETS

    v = values.astype("string").str.normalize("NFKC").str.strip()
    v = v.where(v != "").astype(object).where(lambda x: x.notna(), None)
    codes, _why = References(eng).resolve(DATASETS["rapid_tests"].field("market_id"), v)
    return codes


def resolve_stalls(frame: pd.DataFrame, eng=None) -> pd.DataFrame:
    """The stall column (摊位号 or 摊位编号, as text) → the stalls registry's stall_id, per market:
    a value that is a stall_id of the row's market stays, a stall number of that market (A01 =
    A1) becomes its stall_id; anything else stays as written (the row check
    UNKNOWN_STALL quarantines it where the market's stalls are registered)."""
    if "stall_id" not in frame or "market_id" not in frame or frame.empty:
        return frame
    eng = eng or _engine()
    reg = stall_registry(eng)
    if reg.empty:
        return frame   # no stall registry: stall numbers are kept as written
    stall = frame["stall_id"].astype("string").str.normalize("NFKC").str.strip()
    todo = stall.notna() & (stall != "")
    if not todo.any():
        return frame
    market = _market_codes(frame.loc[todo, "market_id"], eng)
    ids = set(zip(reg["market_id"], reg["stall_id"]))
    by_no: dict[tuple, set] = {}
    for m, sid, no in reg.dropna(subset=["stall_no"]).itertuples(index=False):
        by_no.setdefault((m, stall_key(no)), set()).add(sid)
    pairs = pd.DataFrame({"m": market.astype(object), "s": stall[todo].astype(object)})
    out = {}
    for m, s in pairs.drop_duplicates().itertuples(index=False):
        if (m, s) in ids:
            out[(m, s)] = s
            continue
        hit = by_no.get((m, stall_key(s)), set())
        out[(m, s)] = next(iter(hit)) if len(hit) == 1 else s
    frame = frame.copy()
    frame.loc[todo, "stall_id"] = [out[(m, s)] for m, s in zip(pairs["m"], pairs["s"])]
    return frame


def _stall_misses(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """Rows whose stall is not a stall of their market (where the registry lists that market's
    stalls), and among them those whose number names several stalls of the market."""
    reg = stall_registry()
    none = pd.Series(False, index=df.index)
    if reg.empty or "stall_id" not in df:
        return none, none, reg
    s = df["stall_id"].astype(object)
    m = df["market_id"].astype(object)
    listed = m.isin(set(reg["market_id"]))
    held = pd.MultiIndex.from_frame(reg[["market_id", "stall_id"]].astype(str))
    pair = pd.MultiIndex.from_arrays([m.astype(str), s.astype(str)])
    bad = s.notna() & listed & ~pair.isin(held)
    twice = pd.Series(False, index=df.index)
    if bad.any():
        keys = reg.dropna(subset=["stall_no"]).assign(k=lambda r: r["stall_no"].map(stall_key))
        shared = set(map(tuple, keys[keys.duplicated(["market_id", "k"], keep=False)][["market_id", "k"]].to_numpy()))
        if shared:
            twice[bad] = [(mm, stall_key(ss)) in shared for mm, ss in zip(m[bad], s[bad])]
    return bad & ~twice, twice, reg


def unknown_stall(df: pd.DataFrame) -> pd.Series:
    return _stall_misses(df)[0]


def ambiguous_stall(df: pd.DataFrame) -> pd.Series:
    return _stall_misses(df)[1]


def _stall_detail(df: pd.DataFrame) -> pd.Series:
    import difflib

    bad, twice, reg = _stall_misses(df)
    out = pd.Series("", index=df.index, dtype=object)
    nos = reg.dropna(subset=["stall_no"]).groupby("market_id")["stall_no"].apply(list).to_dict()
    for i in df.index[(bad | twice).to_numpy()]:
        m, s = df.at[i, "market_id"], str(df.at[i, "stall_id"])
        if twice[i]:
            key = stall_key(s)
            same = reg["stall_no"].map(lambda x, key=key: x is not None and stall_key(x) == key)
            ids = sorted(reg.loc[(reg["market_id"] == m) & same, "stall_id"].astype(str))
            out[i] = f"市场 {m} 的摊位号“{s}”对应多个摊位编号：{'、'.join(ids)}"
            continue
        score = {str(x): difflib.SequenceMatcher(None, stall_key(s), stall_key(x)).ratio() for x in nos.get(m, [])}
        close = sorted((x for x, r in score.items() if r >= 0.4), key=lambda x: (-score[x], stall_key(x)))[:3]
        hint = f"最接近：{'、'.join(close)}" if close else "该市场名录中没有相近的摊位号"
        out[i] = f"市场 {m} 的摊位号“{s}”未登记，{hint}"
    return out


# the market's row rules, in the order a row's reasons are listed (department.py registers them)
CHECKS = (
    RowCheck("百分比读数超过 100%", percent_over_100),
    RowCheck("胶体金卡读数应为 0 或 1", card_not_binary),
    RowCheck(UNREADABLE_CRITERION, unreadable_criterion, _unreadable_detail),
    RowCheck(RESULT_CONTRADICTS, result_contradicts_reading, _contradiction_detail),
    RowCheck(UNKNOWN_STALL, unknown_stall, _stall_detail),
    RowCheck(AMBIGUOUS_STALL, ambiguous_stall, _stall_detail),
    RowCheck("样品名称不在商品目录中", unknown_commodity),
)


# ------------------------------------------------------------------ the loader (registered with the hub)

class TestLoader:
    """The hub's loader of `rapid_tests` (department.py), so `workbench ingest rapid_tests`,
    `workbench market ingest` and the drop folder agree.

    `prepare` (each chunk, before validation): the stall column → the stalls registry's
    stall_id within the row's market (`resolve_stalls`). A stall number is unique only within
    its market. With an empty stalls registry, or for a market the registry lists no stalls
    for, the stall is kept as written and not judged (the registry may arrive after the tests,
    as the market registry may).

    Calling it writes the good rows with the hub's corrections (`write_rows`: a re-sent test
    with other content updates the row, the old values kept in row_versions) and moves the
    alerts: see `load_tests`."""

    __test__ = False  # not a pytest class

    def prepare(self, frame: pd.DataFrame, path) -> pd.DataFrame:
        """Stall numbers → stall ids against the registries of the hub being loaded (`_engine`:
        the row checks of this chunk read the same, UNKNOWN_STALL)."""
        return resolve_stalls(frame)

    def __call__(self, conn, ds, frame: pd.DataFrame, *, present=None, file_sha256=None, corrections=None):
        return load_tests(conn, ds, frame, present=present, file_sha256=file_sha256, corrections=corrections)


LOADER = TestLoader()

_EVIDENCE = ["market_id", "stall_id", "vendor", "commodity", "test_item", "reading", "inspector_id", "district", "ts"]


def _held(conn, ids, columns: list[str]) -> pd.DataFrame:
    """The hub's rapid tests among `ids`: test_id (index) and `columns` (ingest.held_rows)."""
    from workbench.store.ingest import held_rows
    from workbench.store.schema import DATASETS

    keys = pd.DataFrame({"test_id": pd.Series(list(ids), dtype=object).dropna().astype(str)})
    return held_rows(conn, DATASETS["rapid_tests"], keys, columns).set_index("test_id")


def _differs(new: pd.DataFrame, old: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Per row (aligned by position) whether any of `columns` differs (numbers to 1e-6, times exactly)."""
    out = np.zeros(len(new), dtype=bool)
    for c in columns:
        a, b = new[c].reset_index(drop=True), old[c].reset_index(drop=True)
        if c == "reading":
            a, b = pd.to_numeric(a, errors="coerce").round(6), pd.to_numeric(b, errors="coerce").round(6)
        elif c == "ts":
            a, b = pd.to_datetime(a), pd.to_datetime(b)
        else:
            a, b = a.astype("string"), b.astype("string")
        same = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
        out |= ~same.to_numpy(dtype=bool)
    return out


def load_tests(conn, ds, frame: pd.DataFrame, *, present=None, file_sha256=None, corrections=None):
    """Write the good rows (`ingest.write_rows`: new ones inserted; a test re-sent with the same
    检测编号 and other content is a correction: the row updated, the old values kept in
    row_versions) and keep the 快检阳性 alerts in step, in the same transaction:

    - a new positive: its alert raised (new ones only: a record seen again leaves its alert);
    - corrected 阴性 → 阳性: the alert raised (a lifted one raised again, 生效中), and a follow-up
      case withdrawn by an earlier correction back to 待处置 (the linkage opens a missing one);
    - corrected 阳性 → 阴性: what a market officer does with a rapid result proved wrong on
      paper — the test's alerts lifted (已解除, "检测结果更正为阴性"), and its follow-up case, if
      still open, closed as 更正为阴性 (a void closing: never a case, counted nowhere); a case
      already closed keeps its history;
    - corrected but still positive (another vendor, reading …): the alert's title and evidence
      follow, its status stays.
    With `corrections: first` a re-send changes nothing. Returns the `Written`."""
    from workbench.store.ingest import Written, write_rows

    if frame.empty:
        return Written()
    held = _held(conn, frame["test_id"], ["result"])["result"]
    f = frame.drop_duplicates("test_id", keep="last")
    was = f["test_id"].map(held) if len(held) else pd.Series(None, index=f.index, dtype=object)
    pos = f["result"] == "阳性"
    applied = (corrections or ds.corrections) == "newest"
    still = f[(was == "阳性") & pos] if applied else f.iloc[:0]
    if len(still):   # positives re-sent: those whose evidence changed update their alert
        cols = [c for c in _EVIDENCE if present is None or c in present]
        old = _held(conn, still["test_id"], cols).reindex(still["test_id"].astype(str))
        still = still[_differs(still, old, cols)]
    w = write_rows(conn, ds, frame, present=present, file_sha256=file_sha256, corrections=corrections)
    new_pos = f[was.isna() & pos]
    to_pos = f[(was == "阴性") & pos] if applied else f.iloc[:0]
    to_neg = f[(was == "阳性") & (f["result"] == "阴性")] if applied else f.iloc[:0]
    if len(new_pos) or len(to_pos) or len(to_neg) or len(still):
        _move_alerts(conn, new_pos, to_pos, to_neg, still)
    return w


def _move_alerts(conn, new_pos, to_pos, to_neg, still) -> None:
    import sqlalchemy as sa

    from workbench import alerts as alerts_api
    from workbench import cases, clock
    from workbench.market import followup as fu
    from workbench.market.analysis import SOURCE, positive_alerts
    from workbench.store.schema import DATASETS

    m = DATASETS["markets"].table
    ids = pd.concat([x["market_id"] for x in (new_pos, to_pos, still)]).dropna().unique().tolist()
    names = {r[0]: r[1] for r in conn.execute(sa.select(m.c.market_id, m.c.name).where(m.c.market_id.in_(ids)))} if ids else {}
    now = clock.now()
    if len(new_pos):
        alerts_api.publish(conn, positive_alerts(new_pos, names), actor=SOURCE, note="快检阳性（接入即发布）",
                           new_only=True)
    a = DATASETS["alerts"].table
    if len(to_pos):
        raised = positive_alerts(to_pos, names)
        raised["updated_at"] = now   # raised again now, not at the test's time
        alerts_api.publish(conn, raised, actor=SOURCE, note="检测结果更正为阳性，发布快检阳性告警")
        _cases_to(conn, [fu.case_id(t) for t in to_pos["test_id"]], fu.WITHDRAWN, "待处置",
                  "检测结果更正为阳性，重新处置")
    if len(still):
        upd = positive_alerts(still, names)
        held = {r[0]: (r[1], r[2]) for r in conn.execute(sa.select(a.c.alert_id, a.c.status, a.c.valid_to).where(
            a.c.alert_id.in_(upd["alert_id"].tolist())))}
        upd = upd[upd["alert_id"].isin(held)].copy()
        if len(upd):
            upd["status"] = [held[i][0] for i in upd["alert_id"]]
            upd["valid_to"] = [held[i][1] for i in upd["alert_id"]]
            upd["updated_at"] = now
            alerts_api.publish(conn, upd, actor=SOURCE, note="检测记录更正，告警内容随之更新")
    if len(to_neg):
        alerts_api.lift_subjects(conn, ["rapid_tests:" + str(t) for t in to_neg["test_id"]], ts=now, actor=SOURCE,
                                 note="检测结果更正为阴性，告警解除")
        ct = cases.case_type(fu.CASE_TYPE)
        _cases_to(conn, [fu.case_id(t) for t in to_neg["test_id"]], set(ct.open_statuses), fu.WITHDRAWN,
                  "检测结果更正为阴性，撤销阳性处置")


def _cases_to(conn, case_ids: list[str], when_in, to: str, note: str) -> int:
    """Move the follow-up cases among `case_ids` whose status is in `when_in` to `to` (the case engine)."""
    import sqlalchemy as sa

    from workbench import cases
    from workbench.market.analysis import SOURCE
    from workbench.store.schema import DATASETS

    when_in = {when_in} if isinstance(when_in, str) else set(when_in)
    t = DATASETS["cases"].table
    n = 0
    for k in range(0, len(case_ids), 1000):
        for cid, status in conn.execute(sa.select(t.c.case_id, t.c.status).where(t.c.case_id.in_(case_ids[k:k + 1000]))):
            if status in when_in:
                cases.transition(conn, cid, to, actor=SOURCE, note=note)
                n += 1
    return n


def ingest_tests(path, eng=None, *, progress: bool = False, force: bool = False, alerts: bool = True,
                 profile=None, preview: bool = False):
    """Take one rapid-test file into the hub (`eng`, default the configured hub): positives get
    their 快检阳性 alert as they load (load_tests); then, unless `alerts` is False, the
    market's linkage runs (the stall's follow-up case, the supplied schools' notices), so a
    positive reaches the schools within seconds (`workbench market ingest`, the drop folder).
    `profile` / `preview` as for `ingest_file` (preview writes nothing and links nothing)."""
    from workbench.store import hub
    from workbench.store.ingest import ingest_file

    eng = eng or hub.engine()
    with registry_from(eng):
        s = ingest_file("rapid_tests", path, eng, progress=progress, force=force, profile=profile, preview=preview)
    if alerts and not preview and (s.loaded or s.updated):
        from workbench import linkage

        linkage.run(eng, departments=["market"])
    return s


SUFFIXES = (".csv", ".txt", ".xlsx", ".json")
DONE_DIR = "已接入"
FAILED_DIR = "无法读取"


@dataclass
class DropFolder:
    """A folder the readers export into. A file is taken once its size and mtime held still
    for one poll (the reader finished writing); then it moves to 已接入/ (or 无法读取/ with a
    .txt beside it saying why). Nothing is deleted; the hub keeps the raw bytes too."""

    folder: Path
    eng: object = None
    seen: dict = field(default_factory=dict)  # path -> (size, mtime) at the last poll

    def poll(self) -> list[dict]:
        """One pass; returns one result per file taken (ok, summary or error)."""
        from workbench.store.ingest import IngestError

        folder = Path(self.folder)
        results = []
        now = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith((".", "~$")) or p.suffix.lower() not in SUFFIXES:
                continue
            refused = outside_folder(p, folder)
            if refused:   # never read, never followed: the link itself is moved aside with the reason
                results.append({"file": p.name, "ok": False, "error": refused})
                target = _move(p, folder / FAILED_DIR)
                target.with_name(target.name + ".txt").write_text(refused + "\n", encoding="utf-8")
                continue
            st = p.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            now[p] = (st.st_size, st.st_mtime_ns)
        for p, sig in now.items():
            if self.seen.get(p) != sig:
                continue  # new or still growing: wait one more poll
            refused = outside_folder(p, folder)   # replaced by a link since the last poll
            if refused:
                results.append({"file": p.name, "ok": False, "error": refused})
                continue
            try:
                s = ingest_tests(p, self.eng)
                results.append({"file": p.name, "ok": True, "summary": s})
                _move(p, folder / DONE_DIR)
            except (IngestError, OSError) as exc:   # OSError: swapped for a link while read (O_NOFOLLOW)
                problem = getattr(exc, "problem", None) or f"无法读取：{exc}"
                results.append({"file": p.name, "ok": False, "error": problem})
                target = _move(p, folder / FAILED_DIR)
                target.with_name(target.name + ".txt").write_text(problem + "\n", encoding="utf-8")
        self.seen = {p: sig for p, sig in now.items() if p.exists()}
        return results


def outside_folder(p: Path, folder: Path) -> str | None:
    """Why a drop-folder entry is refused (None: a plain file that is really in the folder): a
    symbolic link (to /etc/passwd or anywhere else) is never followed, and neither is a path
    whose real location is outside the folder (a linked parent, a hard link to a file with
    other links). Judged with lstat, so nothing is opened."""
    import os

    try:
        st = os.lstat(p)
    except OSError as exc:
        return f"无法读取“{p.name}”：{exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"拒绝读取“{p.name}”：这是符号链接（指向 {os.readlink(p)}），投递目录只接收文件本身"
    if not stat.S_ISREG(st.st_mode):
        return None
    real = Path(os.path.realpath(p))
    if real.parent != Path(os.path.realpath(folder)):
        return f"拒绝读取“{p.name}”：实际位置 {real} 不在投递目录内"
    if st.st_nlink > 1:
        return f"拒绝读取“{p.name}”：该文件有 {st.st_nlink} 个硬链接，可能指向投递目录以外的文件"
    return None


def _move(p: Path, target_dir: Path) -> Path:
    target_dir.mkdir(exist_ok=True)
    target = target_dir / p.name
    k = 1
    while target.exists():
        target = target_dir / f"{p.stem}.{k}{p.suffix}"
        k += 1
    p.replace(target)
    return target


def watch(folder, eng=None, *, interval: float = 5.0, rounds: int | None = None, on_result=None) -> int:
    """Poll `folder` every `interval` seconds (forever, or `rounds` times); returns files taken."""
    drop = DropFolder(Path(folder), eng)
    taken, n = 0, 0
    while rounds is None or n < rounds:
        for r in drop.poll():
            taken += 1
            if on_result:
                on_result(r)
        n += 1
        if rounds is None or n < rounds:
            time.sleep(interval)
    return taken
