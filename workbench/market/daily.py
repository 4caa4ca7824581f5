"""The rapid tests' daily summary (market_daily, migration 0015): what the market page and the
bulletin figures read instead of the rows (issue 14: 50 M rapid tests).

One row per Beijing day × market × district × category × origin with the sample
batches, the test items, the positive batches and items, and the banned-substance items and
positives, exactly as workbench.market.figures.bulletin counts them per group (a batch: the
records of one market, stall, commodity and sampling time; no sampling time: its own batch).

Kept on write by triggers on rapid_tests (SQLite and PostgreSQL; on PostgreSQL defined on the
partitioned table, so every monthly partition has them): an insert adds its row, a delete takes
it away, an update (a correction, a re-sent file) takes the old away and adds the new. A batch
counts once per group: a row adds a batch when no other row of the group is of its batch (and a
positive batch when no other positive row is). Summed over days a batch whose rows fall on two
Beijing days counts on both (the sample city tests between 06:00 and 18:00).
The migration fills it from the rows already held (`backfill_sql`).
"""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from workbench.market.catalog import BANNED
from workbench.market import figures as fg

TABLE = "market_daily"
KEYS = ("day", "market_id", "district", "category", "origin")
COUNTS = ("samples", "positive_samples", "items", "positive_items", "banned_items", "banned_positive")
POSITIVE = "阳性"

_md = sa.MetaData()
market_daily = sa.Table(
    TABLE, _md,
    sa.Column("day", sa.Date, nullable=False, comment="日期（北京时间）"),
    sa.Column("market_id", sa.String(64), nullable=False, comment="市场编号"),
    sa.Column("district", sa.String(64), nullable=False, comment="区县"),
    sa.Column("category", sa.String(64), nullable=False, comment="样品类别"),
    sa.Column("origin", sa.String(64), nullable=False, comment="产地"),
    *(sa.Column(c, sa.Integer, nullable=False, comment=fg.LABELS[c]) for c in COUNTS),
    sa.PrimaryKeyConstraint(*KEYS, name="pk_market_daily"),
    comment="快检日汇总",
)


def _banned_list() -> str:
    return ", ".join("'" + b.replace("'", "''") + "'" for b in sorted(BANNED))


def _day(dialect: str, ts: str) -> str:
    return f"date({ts}, '+8 hours')" if dialect == "sqlite" else f"(({ts}) + interval '8 hours')::date"


def _same(dialect: str, a: str, b: str) -> str:
    return f"{a} IS {b}" if dialect == "sqlite" else f"{a} IS NOT DISTINCT FROM {b}"


def _others(dialect: str, row: str, positive_only: bool) -> str:
    """Another row of `row`'s batch in its group (not `row` itself)."""
    same = " AND ".join(_same(dialect, f"r.{c}", f"{row}.{c}") for c in ("market_id", "stall_id", "commodity",
                                                                        "district", "category", "origin"))
    return (f"EXISTS (SELECT 1 FROM rapid_tests r WHERE r.stall_id IS NOT DISTINCT FROM {row}.stall_id "
            if dialect != "sqlite" else f"EXISTS (SELECT 1 FROM rapid_tests r WHERE r.stall_id IS {row}.stall_id ") + (
        f"AND r.sampled_at = {row}.sampled_at AND r.test_id <> {row}.test_id AND {same} "
        f"AND {_day(dialect, 'r.ts')} = {_day(dialect, f'{row}.ts')}"
        + (f" AND r.ts > {row}.ts - interval '1 day' AND r.ts < {row}.ts + interval '1 day'"  # prunes partitions
           if dialect != "sqlite" else "")
        + (f" AND r.result = '{POSITIVE}'" if positive_only else "") + ")")


def _delta(dialect: str, row: str, sign: int) -> str:
    """One statement adding (sign 1) or taking away (-1) `row` (NEW / OLD) in the summary."""
    pos = f"({row}.result = '{POSITIVE}')"
    ban = f"({row}.test_item IN ({_banned_list()}))"
    new_batch = f"({row}.sampled_at IS NULL OR NOT {_others(dialect, row, False)})"
    new_pos_batch = f"({pos} AND ({row}.sampled_at IS NULL OR NOT {_others(dialect, row, True)}))"
    as_int = (lambda e: f"(CASE WHEN {e} THEN {sign} ELSE 0 END)")
    vals = [_day(dialect, f"{row}.ts"), f"{row}.market_id", *(f"COALESCE({row}.{c}, '')" for c in KEYS[2:]),
            as_int(new_batch), as_int(new_pos_batch), str(sign), as_int(pos), as_int(ban), as_int(f"{pos} AND {ban}")]
    upd = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in COUNTS)
    where = " WHERE true" if dialect == "sqlite" else ""
    return (f"INSERT INTO {TABLE} ({', '.join(KEYS + COUNTS)}) SELECT {', '.join(vals)}{where} "
            f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET {upd}")


def _prune(dialect: str, row: str) -> str:
    keys = " AND ".join([f"day = {_day(dialect, f'{row}.ts')}", f"market_id = {row}.market_id",
                         *(f"{c} = COALESCE({row}.{c}, '')" for c in KEYS[2:])])
    return f"DELETE FROM {TABLE} WHERE {keys} AND items <= 0"


def _recompute_pg(changed: str) -> str:
    """PostgreSQL: the groups named in `changed` (a transition table) counted again from the rows
    (the same query as the backfill, limited to those groups' market and day)."""
    keys = ("day", "market_id", *KEYS[2:])
    k = "SELECT DISTINCT ((ts) + interval '8 hours')::date AS day, market_id, " + ", ".join(
        f"COALESCE({c}, '') AS {c}" for c in KEYS[2:]) + f" FROM {changed}"
    match = " AND ".join(f"d.{c} = k.{c}" for c in keys)
    return (f"DELETE FROM {TABLE} d USING ({k}) k WHERE {match};\n"
            f"    {backfill_sql('postgresql', keys_from=k)}")


def trigger_sql(dialect: str) -> list[str]:
    """The statements that create the triggers keeping market_daily (one dialect). SQLite: row
    triggers (each row sees the rows before it). PostgreSQL: statement triggers with transition
    tables (an AFTER row trigger there sees every row of its statement, a COPY's too): the
    groups a statement touched are counted again, in one pass, from the rows."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER market_daily_in AFTER INSERT ON rapid_tests BEGIN {_delta(dialect, 'NEW', 1)}; END",
            f"CREATE TRIGGER market_daily_out AFTER DELETE ON rapid_tests BEGIN {_delta(dialect, 'OLD', -1)}; "
            f"{_prune(dialect, 'OLD')}; END",
            f"CREATE TRIGGER market_daily_upd AFTER UPDATE ON rapid_tests BEGIN {_delta(dialect, 'OLD', -1)}; "
            f"{_prune(dialect, 'OLD')}; {_delta(dialect, 'NEW', 1)}; END",
        ]
    out = []
    for op, changed, ref in (("INSERT", "new_rows", "NEW TABLE AS new_rows"),
                             ("DELETE", "old_rows", "OLD TABLE AS old_rows"),
                             ("UPDATE", "(SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows) c",
                              "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
        fn = f"market_daily_{op.lower()}"
        out += [f"""CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_recompute_pg(changed)};
    RETURN NULL;
END $$""", f"CREATE TRIGGER {fn} AFTER {op} ON rapid_tests REFERENCING {ref} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"]
    return out


def drop_trigger_sql(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {n}" for n in ("market_daily_in", "market_daily_out", "market_daily_upd")]
    return [sql for op in ("insert", "delete", "update") for sql in (
        f"DROP TRIGGER IF EXISTS market_daily_{op} ON rapid_tests", f"DROP FUNCTION IF EXISTS market_daily_{op}()")]


def backfill_sql(dialect: str, keys_from: str | None = None) -> str:
    """market_daily from the rows held (the same counts as the triggers', in one statement);
    `keys_from` (PostgreSQL): a query of the groups to count (day, market_id, …), the rest left.
    Rows without a sampling time are batches of their own: summed in one pass, without the
    batch-level grouping the others need (a bulk fill without sampling times stays one GROUP BY)."""
    day = _day(dialect, "r.ts")
    grp = ", ".join(["day", "market_id", *KEYS[2:]])
    keys_sel = f"{day} AS day, r.market_id, " + ", ".join(f"COALESCE(r.{c}, '') AS {c}" for c in KEYS[2:])
    keys_grp = f"{day}, r.market_id, " + ", ".join(f"COALESCE(r.{c}, '')" for c in KEYS[2:])
    pos = f"CASE WHEN r.result = '{POSITIVE}' THEN 1 ELSE 0 END"
    ban = f"CASE WHEN r.test_item IN ({_banned_list()}) THEN 1 ELSE 0 END"
    banpos = f"CASE WHEN r.test_item IN ({_banned_list()}) AND r.result = '{POSITIVE}' THEN 1 ELSE 0 END"
    src, where = "rapid_tests r", "WHERE true"
    if keys_from is not None:  # the rows of the touched markets within the touched days' span (an index range
        # for one row's change, one pass for a bulk load); the touched groups are picked at the end
        where = (f"WHERE r.ts >= (SELECT min(day) FROM ({keys_from}) k1) - interval '8 hours' "
                 f"AND r.ts < (SELECT max(day) FROM ({keys_from}) k2) + interval '16 hours' "
                 f"AND r.market_id IN (SELECT market_id FROM ({keys_from}) k3)")
    batches = (f"SELECT {keys_sel}, COUNT(*) AS items, SUM({pos}) AS pos, SUM({ban}) AS ban, SUM({banpos}) AS ban_pos "
               f"FROM {src} {where} AND r.sampled_at IS NOT NULL "
               f"GROUP BY {keys_grp}, r.stall_id, r.commodity, r.sampled_at")
    with_time = (f"SELECT {grp}, COUNT(*) AS samples, SUM(CASE WHEN pos > 0 THEN 1 ELSE 0 END) AS positive_samples, "
                 f"SUM(items) AS items, SUM(pos) AS positive_items, SUM(ban) AS banned_items, SUM(ban_pos) AS banned_positive "
                 f"FROM ({batches}) b GROUP BY {grp}")
    no_time = (f"SELECT {keys_sel}, COUNT(*) AS samples, SUM({pos}) AS positive_samples, COUNT(*) AS items, "
               f"SUM({pos}) AS positive_items, SUM({ban}) AS banned_items, SUM({banpos}) AS banned_positive "
               f"FROM {src} {where} AND r.sampled_at IS NULL GROUP BY {keys_grp}")
    out = (f"INSERT INTO {TABLE} ({', '.join(KEYS + COUNTS)}) SELECT {grp}, "
           + ", ".join(f"SUM({c})" for c in COUNTS)
           + f" FROM ({with_time} UNION ALL {no_time}) u")
    if keys_from is not None:  # only the groups touched (others of the same market and day stay)
        out += f" WHERE ({grp}) IN ({keys_from})"
    return out + f" GROUP BY {grp}"


# ------------------------------------------------------------------ reading

def load(eng=None, first_day=None, last_day=None) -> pd.DataFrame:
    """The summary rows of Beijing days [first_day, last_day] (dates; None: open)."""
    from workbench.store import hub

    eng = eng or hub.engine()
    t = market_daily
    stmt = sa.select(t)
    if first_day is not None:
        stmt = stmt.where(t.c.day >= pd.Timestamp(first_day).date())
    if last_day is not None:
        stmt = stmt.where(t.c.day <= pd.Timestamp(last_day).date())
    with eng.connect() as conn:
        df = pd.DataFrame(conn.execute(stmt).fetchall(), columns=list(KEYS + COUNTS))
    df["day"] = pd.to_datetime(df["day"]).astype("datetime64[ns]")
    for c in KEYS[2:]:
        df[c] = df[c].replace("", None)
    for c in COUNTS:
        df[c] = df[c].astype("int64")
    return df


def bulletin(daily: pd.DataFrame, by=None) -> pd.DataFrame:
    """workbench.market.figures.bulletin from the daily summary (`by`: keys of fg.GROUPS among
    market, district, category, origin, or 'day'; None: one row 'city')."""
    by = [by] if isinstance(by, str) else list(by or [])
    cols = [fg.GROUPS.get(b, b) for b in by]
    if not cols:
        out = daily[list(COUNTS)].sum().to_frame().T
        out.index = pd.Index(["全市"], name="_all")
    else:
        out = daily.groupby(cols, sort=True, dropna=False)[list(COUNTS)].sum()
    return fg._rates(out).reset_index().rename(columns={"_all": "scope"})


def bulletin_periods(daily: pd.DataFrame, start, end, by=None) -> pd.DataFrame:
    parts = []
    for p in fg.periods(start, end):
        sel = daily[(daily["day"] >= p.first_day) & (daily["day"] <= p.last_day)]
        parts.append(bulletin(sel, by).assign(period=p.name))
    return pd.concat(parts, ignore_index=True)


def city_daily(daily: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(items, positive items) per Beijing day, the city (for the p chart)."""
    g = daily.groupby("day")[["items", "positive_items"]].sum().sort_index()
    return g["items"], g["positive_items"]


def sums(eng=None, by=(), first_day=None, last_day=None, district: str | None = None,
         markets: list | None = None) -> pd.DataFrame:
    """The summary summed in the hub (SQL GROUP BY; what the page reads at city scale): counts
    per `by` (columns of market_daily: day, market_id, district, category, origin; empty: one
    row) over Beijing days [first_day, last_day], optionally of one district or some markets."""
    from workbench.store import hub

    eng = eng or hub.engine()
    t = market_daily
    by = [fg.GROUPS.get(b, b) for b in ([by] if isinstance(by, str) else list(by or []))]
    stmt = sa.select(*(t.c[c] for c in by), *(sa.func.coalesce(sa.func.sum(t.c[c]), 0).label(c) for c in COUNTS))
    if first_day is not None:
        stmt = stmt.where(t.c.day >= pd.Timestamp(first_day).date())
    if last_day is not None:
        stmt = stmt.where(t.c.day <= pd.Timestamp(last_day).date())
    if district is not None:
        stmt = stmt.where(t.c.district == district)
    if markets is not None:
        stmt = stmt.where(t.c.market_id.in_(list(markets)))
    if by:
        stmt = stmt.group_by(*(t.c[c] for c in by)).order_by(*(t.c[c] for c in by))
    with eng.connect() as conn:
        df = pd.DataFrame(conn.execute(stmt).fetchall(), columns=[*by, *COUNTS])
    if "day" in df:
        df["day"] = pd.to_datetime(df["day"]).astype("datetime64[ns]")
    for c in by:
        if c in KEYS[2:]:
            df[c] = df[c].replace("", None)
    for c in COUNTS:
        df[c] = df[c].astype("int64")
    return df


def figures(eng=None, by=None, first_day=None, last_day=None, district=None, markets=None) -> pd.DataFrame:
    """fg.bulletin's table (counts, rates, Wilson intervals) from `sums` (SQL)."""
    cols = [fg.GROUPS.get(b, b) for b in ([by] if isinstance(by, str) else list(by or []))]
    s = sums(eng, cols, first_day, last_day, district, markets)
    if not cols:
        s.index = pd.Index(["全市"], name="_all")
        return fg._rates(s).reset_index().rename(columns={"_all": "scope"})
    return fg._rates(s.set_index(cols)).reset_index()


def last_day(eng=None, district=None):
    """The last Beijing day with rapid tests (a Timestamp), None when there are none."""
    from workbench.store import hub

    eng = eng or hub.engine()
    t = market_daily
    stmt = sa.select(sa.func.max(t.c.day))
    if district is not None:
        stmt = stmt.where(t.c.district == district)
    with eng.connect() as conn:
        d = conn.execute(stmt).scalar()
    return None if d is None else pd.Timestamp(d)


def upgrade_0015(op) -> None:
    """Migration 0015's step for the market (run through the registry: the hub imports no
    department): the table, the index the triggers' batch look-up uses, the backfill, the triggers."""
    dialect = op.get_bind().dialect.name
    op.create_table(TABLE, *(sa.Column(c.name, c.type, nullable=c.nullable, comment=c.comment)
                             for c in market_daily.columns),
                    sa.PrimaryKeyConstraint(*KEYS, name="pk_market_daily"), comment="快检日汇总")
    op.create_index("ix_rapid_tests_stall_id_sampled_at", "rapid_tests", ["stall_id", "sampled_at"])
    op.execute(backfill_sql(dialect))
    for sql in trigger_sql(dialect):
        op.execute(sql)


def downgrade_0015(op) -> None:
    for sql in drop_trigger_sql(op.get_bind().dialect.name):
        op.execute(sql)
    op.drop_index("ix_rapid_tests_stall_id_sampled_at", table_name="rapid_tests")
    op.drop_table(TABLE)
