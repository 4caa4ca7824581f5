"""Data integrity of rapid-test records: results that look made up.

Each check returns findings (one row per subject: an inspector, a device, a market, a
reagent batch) that say why, in Chinese, with the evidence rows (test ids). Findings go to
the hub's data_quality table (dataset rapid_tests) with stable ids, so a finding that
persists is updated, not repeated. The checks and their numbers: docs/market.md.

- 阳性率异常偏低: an inspector's (or device's) positives against what peers find in the
  same commodity and test item (expected = Σ tests × peers' rate per cell): the exact
  binomial lower tail P(X ≤ x), Bonferroni-corrected for the number compared.
- 检测速度超出反应时间: a result sooner after sampling than the reaction needs
  (enzyme 10, card 5, colorimetric 8 minutes), or more results from one device within an
  hour than its channels can give (channels × 60 / reaction minutes).
- 读数重复: runs of the same continuous reading (inhibition %, mg/kg) in one inspector's
  consecutive tests of a day.
- 非营业时间检测: tested outside the market's open and close times.
- 试剂过期: tested after the reagent batch's expiry date.
- 读数尾数偏好: the last digit of an inspector's continuous readings far from uniform
  (χ² test, Bonferroni-corrected).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from workbench import clock, config
from workbench.market import catalog
from workbench.market.intake import method_kinds

DATASET = "rapid_tests"
FINDING_COLUMNS = ["finding_id", "ts", "dataset", "subject", "kind", "ts_from", "ts_to", "rows", "reason", "evidence"]
KINDS = {"low_positive": "阳性率异常偏低", "too_fast": "检测速度超出反应时间", "repeated": "读数重复",
         "off_hours": "非营业时间检测", "expired": "试剂过期", "digits": "读数尾数偏好"}


@dataclass(frozen=True)
class IntegrityRules:
    alpha: float = 0.001          # family-wise, after Bonferroni
    min_expected: float = 5.0     # expected positives an inspector needs before a low rate can be judged
    device_channels: int = 12     # parallel channels of a reader (common enzyme readers: 8–12)
    repeat_run: int = 4           # this many identical continuous readings in a row
    digit_min_readings: int = 200
    max_evidence: int = 40
    tz: str = config.TZ


def _local(ts: pd.Series, tz: str) -> pd.Series:
    return clock.to_local(ts, tz)


def _finding(kind: str, subject: str, rows: pd.DataFrame, reason: str, extra: dict, now, rules) -> dict:
    ids = rows["test_id"].astype(str).tolist()
    ev = {"依据": extra, "记录数": len(ids), "检测编号": ids[: rules.max_evidence]}
    text = json.dumps(ev, ensure_ascii=False, default=str)
    while len(text) > 4000 and ev["检测编号"]:
        ev["检测编号"] = ev["检测编号"][: len(ev["检测编号"]) // 2]
        text = json.dumps(ev, ensure_ascii=False, default=str)
    return {"finding_id": f"MKT-{kind}-{subject}"[:64], "ts": rows["ts"].max(), "dataset": DATASET, "subject": str(subject)[:64],
            "kind": KINDS[kind], "ts_from": rows["ts"].min(), "ts_to": rows["ts"].max(), "rows": len(ids),
            "reason": reason[:1024], "evidence": text}


def low_positive_rate(tests: pd.DataFrame, who: str = "inspector_id", rules: IntegrityRules = IntegrityRules(),
                      now=None) -> tuple[list[dict], pd.DataFrame]:
    """Inspectors (or devices) with implausibly few positives against their peers: the others
    testing the same commodity for the same item in the same market. Expected positives =
    Σ over those cells of (own tests × peers' rate); P(X ≤ x) from a binomial with that mean
    (conservative against the exact Poisson-binomial, whose variance is smaller);
    Bonferroni over everyone judged. Returns (findings, the table of all compared)."""
    cols = ["subject", "tests", "positives", "expected", "ratio", "p_value", "p_adjusted", "flagged"]
    t = tests[tests[who].notna()]
    if t.empty:
        return [], pd.DataFrame(columns=cols)
    cell = ["market_id", "commodity", "test_item"]
    pos = (t["result"] == "阳性").astype("int64")
    own = pd.DataFrame({"pos": pos}).groupby([t[who], *(t[c] for c in cell)], observed=True)["pos"].agg(["size", "sum"])
    own.index.names = ["who", *cell]
    tot = own.groupby(level=cell, observed=True).sum()
    tot_al = tot.reindex(own.index.droplevel("who"))
    peer_n = tot_al["size"].to_numpy() - own["size"].to_numpy()
    peer_x = tot_al["sum"].to_numpy() - own["sum"].to_numpy()
    judged = peer_n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        exp = np.where(judged, own["size"].to_numpy() * peer_x / np.where(judged, peer_n, 1), 0.0)
    per = pd.DataFrame({"n": np.where(judged, own["size"].to_numpy(), 0), "x": np.where(judged, own["sum"].to_numpy(), 0),
                        "exp": exp}, index=own.index.get_level_values("who"))
    table = per.groupby(level=0).sum().rename(columns={"n": "tests", "x": "positives", "exp": "expected"})
    table = table[table["tests"] > 0]
    table.index.name = "subject"
    table["ratio"] = table["positives"] / table["expected"].where(table["expected"] > 0)
    p_bar = (table["expected"] / table["tests"]).clip(1e-9, 1 - 1e-9)
    table["p_value"] = stats.binom.cdf(table["positives"], table["tests"], p_bar)
    judged_rows = table["expected"] >= rules.min_expected
    m = int(judged_rows.sum())
    table["p_adjusted"] = (table["p_value"] * max(m, 1)).clip(upper=1.0)
    table["flagged"] = judged_rows & (table["p_adjusted"] < rules.alpha)
    table = table.reset_index().sort_values("p_value")[cols]
    findings = []
    who_label = "检测员" if who == "inspector_id" else "设备"
    for r in table[table["flagged"]].itertuples():
        rows = t[t[who] == r.subject]
        reason = (f"{who_label} {r.subject} 在有同行可比的市场、样品和项目上检测 {r.tests} 项次，阳性 {r.positives} 项；"
                  f"按同行（同一市场、同一样品、同一项目）的阳性率应有约 {r.expected:.1f} 项。"
                  f"二项检验 P(X≤{r.positives})={r.p_value:.2g}，经 Bonferroni 校正（比较 {m} 个）后 {r.p_adjusted:.2g}"
                  f" < {rules.alpha:g}：阳性率异常偏低，结果可能不真实。")
        findings.append(_finding("low_positive", f"{'INS' if who == 'inspector_id' else 'DEV'}-{r.subject}", rows, reason,
                                 {"可比检测项次": int(r.tests), "阳性": int(r.positives), "期望阳性": round(r.expected, 2),
                                  "p值": r.p_value, "校正后p值": r.p_adjusted, "比较数": m}, now, rules))
    return findings, table


def _ns(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (NaT: the minimum int64)."""
    return pd.to_datetime(s).to_numpy().astype("datetime64[ns]").astype(np.int64)


_NAT = np.iinfo(np.int64).min


def too_fast(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None, kind=None) -> list[dict]:
    kind = method_kinds(tests) if kind is None else kind
    react = kind.map(catalog.REACTION_MINUTES).to_numpy(dtype=float, na_value=np.nan)
    ts, sampled = _ns(tests["ts"]), _ns(tests["sampled_at"])
    ok = (ts != _NAT) & (sampled != _NAT) & ~np.isnan(react)
    minutes = (ts - sampled) / 60e9
    quick = ok & (minutes < np.where(np.isnan(react), 0, react))
    burst = np.zeros(len(tests), dtype=bool)
    # per device: results within the hour ending at each result
    code, _ = pd.factorize(tests["device_id"])
    has = np.flatnonzero((code >= 0) & (ts != _NAT))
    if len(has):
        sec = (ts[has] // 10**9)
        order = has[np.lexsort((sec, code[has]))]
        sec_o = ts[order] // 10**9
        key = code[order].astype(np.int64) * 10**11 + (sec_o - sec_o.min())
        start = np.searchsorted(key, key - 3600 + 1, side="left")
        in_hour = np.arange(len(key)) - start + 1
        r = react[order]
        cap = rules.device_channels * 60 / np.where(np.isnan(r), catalog.REACTION_MINUTES["card"], r)
        burst[order[in_hour > cap]] = True
    flagged = quick | burst
    findings = []
    if not flagged.any():
        return findings
    sub = tests[flagged]
    who = sub["device_id"].fillna(sub["inspector_id"]).fillna("未知")
    q_sub, b_sub = quick[flagged], burst[flagged]
    for subject, idx in who.groupby(who).indices.items():
        grp = sub.iloc[idx]
        nq, nb = int(q_sub[idx].sum()), int(b_sub[idx].sum())
        parts = []
        if nq:
            parts.append(f"{nq} 项检测从采样到出结果的时间短于反应所需（酶抑制法 10 分钟、胶体金卡 5 分钟、比色法 8 分钟）")
        if nb:
            parts.append(f"{nb} 项检测所在的一小时内该设备出具的结果超过其 {rules.device_channels} 个通道的检测能力")
        reason = f"设备 {subject}：" + "；".join(parts) + "。结果可能未按规程完成反应。"
        findings.append(_finding("too_fast", f"DEV-{subject}", grp, reason,
                                 {"反应时间不足": nq, "超出通道能力": nb, "通道数": rules.device_channels}, now, rules))
    return findings


def repeated_readings(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None, kind=None) -> list[dict]:
    kind = method_kinds(tests) if kind is None else kind
    reading = pd.to_numeric(tests["reading"]).to_numpy(dtype=float, na_value=np.nan)
    ins, ins_names = pd.factorize(tests["inspector_id"])
    rows = np.flatnonzero((kind != "card").to_numpy() & ~np.isnan(reading) & (ins >= 0))
    if not len(rows):
        return []
    ts = _ns(tests["ts"])[rows]
    day = (ts + 8 * 3600 * 10**9) // (86400 * 10**9)  # the Beijing day (UTC+8, no daylight saving)
    order = rows[np.lexsort((ts, day, ins[rows]))]
    r, i = reading[order], ins[order]
    d = ((_ns(tests["ts"])[order] + 8 * 3600 * 10**9) // (86400 * 10**9))
    same = np.r_[False, (r[1:] == r[:-1]) & (i[1:] == i[:-1]) & (d[1:] == d[:-1])]
    run_id = np.cumsum(~same)
    run_len = np.bincount(run_id)[run_id]
    hit = run_len >= rules.repeat_run
    findings = []
    if not hit.any():
        return findings
    bad = tests.iloc[order[hit]].assign(_run=run_id[hit])
    for name, grp in bad.groupby("inspector_id"):
        runs = grp.groupby("_run")
        examples = [f"{v.iloc[0]:g}×{len(v)}" for _, v in runs["reading"]][:5]
        reason = (f"检测员 {name} 有 {runs.ngroups} 段连续 {rules.repeat_run} 次及以上完全相同的读数"
                  f"（{'、'.join(examples)}），连续测量值如此重复不合常理，可能为抄录或编造。")
        findings.append(_finding("repeated", f"INS-{name}", grp, reason, {"重复段数": runs.ngroups, "示例": examples},
                                 now, rules))
    return findings


def off_hours(tests: pd.DataFrame, markets: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None) -> list[dict]:
    if markets is None or markets.empty or "open_time" not in markets:
        return []

    def minutes(s):
        parts = s.astype("string").str.extract(r"^(\d{1,2})[:：](\d{2})")
        return parts[0].astype(float) * 60 + parts[1].astype(float)

    hours = markets.assign(_open=minutes(markets["open_time"]), _close=minutes(markets["close_time"])).set_index("market_id")
    codes, uniq = pd.factorize(tests["market_id"])
    op = np.append(pd.Index(uniq).map(hours["_open"].to_dict()).to_numpy(dtype=float, na_value=np.nan), np.nan)[codes]
    cl = np.append(pd.Index(uniq).map(hours["_close"].to_dict()).to_numpy(dtype=float, na_value=np.nan), np.nan)[codes]
    ts = _ns(tests["ts"])
    offset = 8 * 60 if rules.tz == config.TZ else 0  # Beijing time has no daylight saving
    mins = np.where(ts != _NAT, (ts // (60 * 10**9) + offset) % 1440, np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(op) & ~np.isnan(cl) & ~np.isnan(mins) & ((mins < op) | (mins > cl))
    findings = []
    if not bad.any():
        return findings
    t = tests[bad]
    for (mkt, ins), grp in t.groupby([t["market_id"], t["inspector_id"].fillna("未知")]):
        o, c = hours.loc[mkt, "open_time"], hours.loc[mkt, "close_time"]
        first = _local(pd.to_datetime(grp["ts"]).iloc[:1], rules.tz).iloc[0]
        reason = (f"市场 {mkt} 的营业时间为 {o}–{c}，检测员 {ins} 有 {len(grp)} 项检测的检测时间在营业时间之外"
                  f"（如 {first:%Y-%m-%d %H:%M}），样品来源存疑。")
        findings.append(_finding("off_hours", f"{mkt}-{ins}", grp, reason, {"营业时间": f"{o}–{c}"}, now, rules))
    return findings


def expired_reagents(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None) -> list[dict]:
    t = tests[tests["reagent_expiry"].notna()]
    if t.empty:
        return []
    day = _local(pd.to_datetime(t["ts"]), rules.tz).dt.normalize()
    exp = pd.to_datetime(t["reagent_expiry"])
    bad = t[day > exp]
    findings = []
    for (batch, mkt), grp in bad.groupby([bad["reagent_batch"].fillna("无批号"), bad["market_id"]]):
        e = pd.to_datetime(grp["reagent_expiry"]).max()
        reason = (f"市场 {mkt} 使用试剂批号 {batch}（有效期至 {e:%Y-%m-%d}）在过期后检测了 {len(grp)} 项，"
                  "过期试剂的结果不可靠，应复检。")
        findings.append(_finding("expired", f"{batch}-{mkt}", grp, reason, {"有效期至": f"{e:%Y-%m-%d}"}, now, rules))
    return findings


def digit_preference(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None,
                     kind=None) -> tuple[list[dict], pd.DataFrame]:
    """The last recorded digit (tenths) of each inspector's continuous readings against the
    median digit shares of the other inspectors (χ² with 9 degrees of freedom, Bonferroni):
    a reader's own rounding or range limits are shared by all, a person's preference is not."""
    kind = method_kinds(tests) if kind is None else kind
    t = tests[(kind != "card") & tests["reading"].notna() & tests["inspector_id"].notna()]
    cols = ["subject", "readings", "chi2", "p_value", "p_adjusted", "top_digit", "top_share", "flagged"]
    if t.empty:
        return [], pd.DataFrame(columns=cols)
    digit = (np.round(t["reading"].to_numpy(float) * 10) % 10).astype(int)
    ins, names = pd.factorize(t["inspector_id"])
    counts = pd.DataFrame(np.bincount(ins * 10 + digit, minlength=10 * len(names)).reshape(len(names), 10),
                          index=pd.Index(names, name="inspector_id"), columns=range(10))
    counts = counts[counts.sum(axis=1) >= rules.digit_min_readings]
    if counts.empty:
        return [], pd.DataFrame(columns=cols)
    C = counts.to_numpy(float)
    n = C.sum(axis=1)
    m = len(counts)
    S = C / n[:, None]
    if m >= 2:  # each inspector against the median shares of the others: one strong preference does not move it
        share = np.vstack([np.median(np.delete(S, i, axis=0), axis=0) for i in range(m)])
    else:
        share = np.full((1, 10), 0.1)
    share = np.clip(share, 1e-3, None)
    share = share / share.sum(axis=1, keepdims=True)
    exp = n[:, None] * share
    chi2 = ((C - exp) ** 2 / exp).sum(axis=1)
    p = stats.chi2.sf(chi2, 9)
    excess = C / n[:, None] - share
    top = excess.argmax(axis=1)
    table = pd.DataFrame({"subject": counts.index, "readings": n.astype(int), "chi2": chi2, "p_value": p,
                          "p_adjusted": np.minimum(1, p * m), "top_digit": top,
                          "top_share": C[np.arange(m), top] / n})
    table["other_share"] = share[np.arange(m), top]
    table["flagged"] = table["p_adjusted"] < rules.alpha
    findings = []
    for r in table[table["flagged"]].itertuples():
        rows = t[t["inspector_id"] == r.subject]
        reason = (f"检测员 {r.subject} 的 {r.readings} 个读数中，末位数字 {r.top_digit} 占 {r.top_share:.0%}，"
                  f"其他检测员同类读数中只占 {r.other_share:.0%}；χ²={r.chi2:.1f}，校正后 p={r.p_adjusted:.2g}："
                  "读数末位明显偏好，可能为估读或编造。")
        findings.append(_finding("digits", f"INS-{r.subject}", rows, reason,
                                 {"读数": int(r.readings), "χ2": round(r.chi2, 2), "校正后p值": r.p_adjusted}, now, rules))
    return findings, table.sort_values("p_value")[cols]


@dataclass
class IntegrityReport:
    findings: pd.DataFrame
    inspectors: pd.DataFrame  # the low-positive comparison of every inspector
    devices: pd.DataFrame
    digits: pd.DataFrame


def check(tests: pd.DataFrame, markets: pd.DataFrame | None = None, rules: IntegrityRules = IntegrityRules(),
          now=None) -> IntegrityReport:
    """Every integrity check over the rapid tests; findings newest subject first."""
    now = clock.now().floor("s") if now is None else pd.Timestamp(now)
    f_ins, t_ins = low_positive_rate(tests, "inspector_id", rules, now)
    f_dev, t_dev = low_positive_rate(tests, "device_id", rules, now)
    kind = method_kinds(tests)
    f_dig, t_dig = digit_preference(tests, rules, now, kind)
    found = (f_ins + f_dev + too_fast(tests, rules, now, kind) + repeated_readings(tests, rules, now, kind)
             + off_hours(tests, markets, rules, now) + expired_reagents(tests, rules, now) + f_dig)
    df = pd.DataFrame(found, columns=FINDING_COLUMNS)
    return IntegrityReport(df, t_ins, t_dev, t_dig)
