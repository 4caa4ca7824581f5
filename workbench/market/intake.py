"""Intake of rapid-test records: the market-specific row rules, and a watched drop folder.

Records come in through the hub's one ingest path (`workbench ingest rapid_tests FILE`,
or `workbench market watch FOLDER` for the readers' exports). The rules below are
RowChecks of the rapid_tests dataset (workbench/store/schema.py): a failing row goes to the
hub's quarantine table with a stable reason, the file and the line; nothing is fixed.

- 检测结果与检测值、判定限值不符: where the reading and the threshold are both present the
  result is re-derived (enzyme inhibition and cards: positive at reading >= threshold;
  colorimetric: positive above the limit, reading > threshold) and must agree.
- 百分比读数超过 100%: an inhibition rate (unit %, or an enzyme-inhibition test) above 100.
- 胶体金卡读数应为 0 或 1: a colloidal-gold card reads negative (0) or positive (1).
- 市场编号不在农贸市场名录中: the market code is not in the hub's markets table (checked only
  once the hub holds a market registry, so a registry can be loaded after the tests).
- 样品名称不在商品目录中: the commodity is not in workbench.market.catalog.
"""
from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.market import catalog

_ENGINE = contextvars.ContextVar("market_registry_engine", default=None)

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


def derived_result(df: pd.DataFrame) -> pd.Series:
    """阳性 / 阴性 from the reading and the threshold; None where either is missing."""
    reading = pd.to_numeric(df["reading"], errors="coerce")
    thr = pd.to_numeric(df["threshold"], errors="coerce")
    colour = (method_kinds(df) == "colour").to_numpy()
    pos = np.where(colour, reading > thr, reading >= thr)
    out = pd.Series(np.where(pos, "阳性", "阴性"), index=df.index, dtype=object)
    return out.where(reading.notna() & thr.notna(), None)


def result_contradicts_reading(df: pd.DataFrame) -> pd.Series:
    d = derived_result(df)
    r = df["result"].astype(object)
    return d.notna() & r.notna() & (d != r)


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
    """Check market codes against this engine's markets table (default: the configured hub)."""
    token = _ENGINE.set(eng)
    try:
        yield
    finally:
        _ENGINE.reset(token)


def known_markets(eng=None) -> set[str] | None:
    """The hub's market codes; None when the hub holds no market registry yet."""
    import sqlalchemy as sa

    from workbench.store import hub
    from workbench.store.schema import DATASETS

    eng = eng or _ENGINE.get() or hub.engine()
    t = DATASETS["markets"].table
    with eng.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.select(t.c.market_id))}
    return ids or None


def unknown_market(df: pd.DataFrame) -> pd.Series:
    m = df["market_id"].astype(object)
    if not m.notna().any():
        return pd.Series(False, index=df.index)
    known = known_markets()
    if known is None:
        return pd.Series(False, index=df.index)
    return m.notna() & ~m.isin(known)


# ------------------------------------------------------------------ files and the drop folder

def load_tests(conn, ds, frame: pd.DataFrame) -> int:
    """The rapid_tests loader of the hub's ingest (registered in department.py): the good rows
    are inserted, and every positive among them gets its 快检阳性 alert in the same
    transaction (new ones only: a record seen again leaves its alert as it is). So
    `workbench ingest rapid_tests`, `workbench market ingest` and the drop folder agree."""
    import sqlalchemy as sa

    from workbench import alerts as alerts_api
    from workbench.market.analysis import SOURCE, positive_alerts
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    n = insert_new(conn, ds, frame)
    pos = frame[frame["result"] == "阳性"]
    if len(pos):
        m = DATASETS["markets"].table
        names = {r[0]: r[1] for r in conn.execute(sa.select(m.c.market_id, m.c.name).where(
            m.c.market_id.in_(pos["market_id"].dropna().unique().tolist())))}
        alerts_api.publish(conn, positive_alerts(pos, names), actor=SOURCE, note="快检阳性（接入即发布）",
                           new_only=True)
    return n


def ingest_tests(path, eng=None, *, progress: bool = False, force: bool = False, alerts: bool = True):
    """Take one rapid-test file into the hub (`eng`, default the configured hub): positives get
    their 快检阳性 alert as they load (load_tests); then, unless `alerts` is False, the
    market's linkage runs (the stall's follow-up case, the supplied schools' notices), so a
    positive reaches the schools within seconds (`workbench market ingest`, the drop folder)."""
    from workbench.store import hub
    from workbench.store.ingest import ingest_file

    eng = eng or hub.engine()
    with registry_from(eng):
        s = ingest_file("rapid_tests", path, eng, progress=progress, force=force)
    if alerts and s.loaded:
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
            if not p.is_file() or p.suffix.lower() not in SUFFIXES or p.name.startswith((".", "~$")):
                continue
            st = p.stat()
            now[p] = (st.st_size, st.st_mtime_ns)
        for p, sig in now.items():
            if self.seen.get(p) != sig:
                continue  # new or still growing: wait one more poll
            try:
                s = ingest_tests(p, self.eng)
                results.append({"file": p.name, "ok": True, "summary": s})
                _move(p, folder / DONE_DIR)
            except IngestError as exc:
                results.append({"file": p.name, "ok": False, "error": exc.problem})
                target = _move(p, folder / FAILED_DIR)
                target.with_name(target.name + ".txt").write_text(exc.problem + "\n", encoding="utf-8")
        self.seen = {p: sig for p, sig in now.items() if p.exists()}
        return results


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
