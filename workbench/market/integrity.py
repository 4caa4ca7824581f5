"""Data integrity of rapid-test records: results that look made up.

Each check returns findings (one row per subject: an inspector, a device, a market, a
reagent batch) that say why, in Chinese, with the evidence rows (test ids). Findings go to
the hub's data_quality table (dataset rapid_tests) with stable ids, so a finding that
persists is updated, not repeated. The checks and their numbers: docs/market.md.

- 阳性率异常偏低: an inspector's (or device's) positives against what peers find in the
  same market, commodity and test item (expected = Σ tests × peers' rate per cell). Judged
  conditionally on each cell's positives (under "no difference" the subject's share of a
  cell's positives is hypergeometric; the sum over cells is convolved exactly), so the
  peers' own sampling noise counts too; Bonferroni-corrected for the number compared.
  (A binomial with the peers' rate taken as exact flagged an ordinary inspector whose few
  peers happened to find more: 肖雪佳 on seed 7, 365 days; tests/test_market_integrity.py.)
- 检测速度超出反应时间: a result sooner after sampling than the reaction needs
  (enzyme 10, card 5, colorimetric 8 minutes), or more results from one device within an
  hour than its channels can give (channels × 60 / reaction minutes), judged per method
  against the peers: a rule at least half the devices break is one 规程问题 finding (the
  procedure's, said once), and then only devices far above their peers are findings.
- 出具结果过快: an inspector's pace (results an hour while working) against the peers'
  (robust z on the log scale), set against what reaction time and channels allow.
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
         "off_hours": "非营业时间检测", "expired": "试剂过期", "digits": "读数尾数偏好",
         "throughput": "出具结果过快", "procedure": "规程问题"}
KIND_TEXT = {"enzyme": "酶抑制法", "card": "胶体金卡", "colour": "比色法"}


@dataclass(frozen=True)
class IntegrityRules:
    alpha: float = 0.001          # family-wise, after Bonferroni
    min_expected: float = 5.0     # expected positives an inspector needs before a low rate can be judged
    device_channels: int = 12     # parallel channels of a reader (common enzyme readers: 8–12)
    repeat_run: int = 4           # this many identical continuous readings in a row
    digit_min_readings: int = 200
    max_evidence: int = 40
    rule_min_tests: int = 30      # a device needs this many tests of a method to be compared on a rule
    widespread: float = 0.5       # a rule broken by at least this share of the compared devices is the procedure's …
    widespread_min_share: float = 0.01  # … each of them in at least this share of its tests
    peer_ratio: float = 2.0       # beside a widespread break, a device stands out at this many times its peers' rate
    session_gap: float = 45.0     # minutes: results of one inspector in one market further apart start a new session
    throughput_min_gaps: int = 50 # an inspector needs this many gaps within sessions to be compared
    throughput_ratio: float = 2.0 # … and stands out at this many times the peers' median rate
    throughput_z: float = 4.0     # … and this robust z (log rate against the peers' median and MAD)
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


def _sum_hypergeom_cdf(x: int, N: np.ndarray, K: np.ndarray, n: np.ndarray) -> float:
    """P(X ≤ x) for X the sum over cells of independent hypergeometric draws (cell of N tests
    with K positives, n of them the subject's): the exact pmf convolved cell by cell, kept
    only up to x (all that the lower tail needs)."""
    x = int(x)
    pmf = np.zeros(x + 1)
    pmf[0] = 1.0
    for N_, K_, n_ in zip(N.astype(int), K.astype(int), n.astype(int)):
        lo, hi = max(0, n_ - (N_ - K_)), min(n_, K_)
        if lo > x:
            return 0.0
        if hi == 0:
            continue
        k = np.arange(lo, min(hi, x) + 1)
        p = stats.hypergeom.pmf(k, N_, K_, n_)
        out = np.zeros(x + 1)
        conv = np.convolve(pmf, p)[: x + 1 - lo]
        out[lo:lo + len(conv)] = conv
        pmf = out
    return float(min(1.0, pmf.sum()))


def low_positive_rate(tests: pd.DataFrame, who: str = "inspector_id", rules: IntegrityRules = IntegrityRules(),
                      now=None) -> tuple[list[dict], pd.DataFrame]:
    """Inspectors (or devices) with implausibly few positives against their peers: the others
    testing the same commodity for the same item in the same market. Expected positives =
    Σ over those cells of (own tests × peers' rate). How sure: given each cell's positives,
    the chance that the subject's share of them is as small as it is, if the subject found
    positives as often as the peers (sum of hypergeometrics, exact); the peers' rate is an
    estimate too, so an ordinary inspector beside few peers is not singled out. Bonferroni
    over everyone judged. Returns (findings, the table of all compared)."""
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
    subj = own.index.get_level_values("who")
    per = pd.DataFrame({"n": np.where(judged, own["size"].to_numpy(), 0), "x": np.where(judged, own["sum"].to_numpy(), 0),
                        "exp": exp, "N": tot_al["size"].to_numpy(), "K": tot_al["sum"].to_numpy()}, index=subj)
    table = per[["n", "x", "exp"]].groupby(level=0).sum().rename(columns={"n": "tests", "x": "positives", "exp": "expected"})
    table = table[table["tests"] > 0]
    table.index.name = "subject"
    table["ratio"] = table["positives"] / table["expected"].where(table["expected"] > 0)
    cells = per[(per["n"] > 0) & (per["K"] > 0)]
    # screen with the normal approximation (mean and variance of the hypergeometric sum); the
    # exact tail only where it could matter (a subject at or above the peers needs none)
    N, K, n = (cells[c].to_numpy(float) for c in ("N", "K", "n"))
    mean = n * K / N
    var = mean * (N - K) / N * (N - n) / np.maximum(N - 1, 1)
    mv = pd.DataFrame({"m": mean, "v": var}, index=cells.index).groupby(level=0).sum().reindex(table.index, fill_value=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        approx = stats.norm.cdf((table["positives"] + 0.5 - mv["m"]) / np.sqrt(mv["v"]))
    table["p_value"] = np.where(mv["v"] > 0, approx, 1.0)
    where = cells.groupby(level=0).indices
    for s, x in zip(table.index[table["p_value"] < 0.05], table.loc[table["p_value"] < 0.05, "positives"]):
        i = where[s]
        table.loc[s, "p_value"] = _sum_hypergeom_cdf(x, N[i], K[i], n[i])
    judged_rows = table["expected"] >= rules.min_expected
    m = int(judged_rows.sum())
    table["p_adjusted"] = (table["p_value"] * max(m, 1)).clip(upper=1.0)
    table["flagged"] = judged_rows & (table["p_adjusted"] < rules.alpha)
    table = table.reset_index().sort_values("p_value")[cols]
    findings = []
    who_label = "检测员" if who == "inspector_id" else "设备"
    for r in table[table["flagged"]].itertuples():
        rows = t[t[who] == r.subject]
        # the face in plain words; the test's name and numbers stay in the evidence (方法)
        reason = (f"{who_label} {r.subject} 在有同行可比的市场、样品和项目上检测 {r.tests} 项次，阳性 {r.positives} 项；"
                  f"同行（同一市场、同一样品、同一项目）按同样的检测量应查出约 {r.expected:.1f} 项。"
                  f"阳性这样少，偶然出现的可能不到千分之一：结果可能不真实，应核查。")
        method = (f"条件检验：各单元（市场×样品×项目）阳性数给定时，本人所占阳性数服从超几何分布，各单元之和精确卷积；"
                  f"P(X≤{r.positives})={r.p_value:.2g}，Bonferroni 校正（比较 {m} 个）后 {r.p_adjusted:.2g} < {rules.alpha:g}。")
        findings.append(_finding("low_positive", f"{'INS' if who == 'inspector_id' else 'DEV'}-{r.subject}", rows, reason,
                                 {"可比检测项次": int(r.tests), "阳性": int(r.positives), "期望阳性": round(r.expected, 2),
                                  "p值": r.p_value, "校正后p值": r.p_adjusted, "比较数": m, "方法": method}, now, rules))
    return findings, table


def _ns(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (NaT: the minimum int64)."""
    return pd.to_datetime(s).to_numpy().astype("datetime64[ns]").astype(np.int64)


_NAT = np.iinfo(np.int64).min


def _rule_breaks(tests: pd.DataFrame, rules: IntegrityRules, kind: pd.Series):
    """Per record: reaction shorter than the method needs (`quick`), and more results of its
    device within the hour than the device's channels allow (`burst`); the reaction minutes."""
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
    return quick, burst, ok


def _against_peers(k: np.ndarray, n: np.ndarray, rules: IntegrityRules):
    """Each subject's count of breaks `k` of `n` against the others' pooled rate: the binomial
    upper tail P(X ≥ k), Bonferroni over the subjects compared; flagged below alpha and at
    `peer_ratio` times the peers' rate. Returns (flagged, p_adjusted, peers' rate)."""
    K, N = k.sum(), n.sum()
    judged = n >= rules.rule_min_tests
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(N - n > 0, (K - k) / np.maximum(N - n, 1), 0.0)
        p = np.where(k > 0, stats.binom.sf(k - 1, n, np.clip(q, 1e-9, 1)), 1.0)
    m = max(int(judged.sum()), 1)
    p_adj = np.minimum(1.0, p * m)
    flagged = judged & (p_adj < rules.alpha) & (k >= rules.peer_ratio * q * n) & (k > 0)
    return flagged, p_adj, q


def too_fast(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None, kind=None) -> list[dict]:
    """检测速度超出反应时间, judged per method against the peers: results sooner after sampling
    than the reaction needs (`quick`), or more results of a device in an hour than its
    channels allow (`burst`). Where a rule is broken by at least half of the devices compared
    for that method, it is the procedure's problem (规程问题, one finding for the city, not
    one per device), and a device is a finding only when it breaks it far more often than
    its peers; where few devices break it, each breaking device is a finding."""
    kind = method_kinds(tests) if kind is None else kind
    quick, burst, timed = _rule_breaks(tests, rules, kind)
    dev = tests["device_id"].astype(object).where(tests["device_id"].notna(), tests["inspector_id"]).fillna("未知")
    dev = dev.astype(str).to_numpy()
    kinds = kind.astype(object).fillna("").to_numpy()
    findings = []
    single = np.zeros(len(tests), dtype=bool)  # the records that count against their own device
    for rule, broke, label in (("quick", quick, "反应时间不足"), ("burst", burst, "超出通道能力")):
        if not broke.any():
            continue
        for kd in [k for k in pd.unique(kinds[broke]) if k]:
            sel = (kinds == kd) & (timed if rule == "quick" else True)
            frame = pd.DataFrame({"dev": dev[sel], "b": broke[sel]})
            g = frame.groupby("dev")["b"].agg(["size", "sum"])
            n, k = g["size"].to_numpy(), g["sum"].to_numpy()
            judged = n >= rules.rule_min_tests
            breaking = judged & (k >= rules.widespread_min_share * n) & (k > 0)
            widespread = judged.sum() >= 3 and breaking.sum() >= rules.widespread * judged.sum()
            method = KIND_TEXT.get(kd, kd)
            need = catalog.REACTION_MINUTES.get(kd)
            if not widespread:
                single |= sel & broke
                continue
            flagged, p_adj, q = _against_peers(k, n, rules)
            for d in g.index[flagged]:
                single |= sel & broke & (dev == d)
            rows = tests[sel & broke]
            shares = k[judged] / n[judged]
            if rule == "quick":
                what = (f"{method}检测从采样到出结果短于 {need} 分钟")
                why = "多为规程或记录方式的问题（如未按说明书的反应时间读数，或“采样时间”记的是登记时间）"
            else:
                what = f"{method}检测在一小时内超出设备 {rules.device_channels} 个通道的检测能力"
                why = "多为规程或记录方式的问题（如批量补录、统一填写检测时间）"
            reason = (f"全市比较了 {int(judged.sum())} 台有 {rules.rule_min_tests} 项以上{method}检测的设备，其中 "
                      f"{int(breaking.sum())} 台都有{what}的记录（各占其检测的 1% 以上，共 {int(k.sum())} 项，占这些检测的 "
                      f"{k.sum() / n.sum():.0%}，各设备 {shares.min():.0%}–{shares.max():.0%}）。普遍如此，{why}，"
                      f"不是某台设备或某个检测员的问题，应核对作业规程；不再按设备逐台列出"
                      + (f"，只列出明显多于同行的 {int(flagged.sum())} 台。" if flagged.any() else "。"))
            findings.append(_finding("procedure", f"PROC-{label}-{method}", rows, reason,
                                     {"方法": method, "规则": label, "比较设备数": int(judged.sum()),
                                      "违反设备数": int(breaking.sum()), "违反项次": int(k.sum()),
                                      "占比": round(float(k.sum() / n.sum()), 4),
                                      "明显多于同行的设备": [str(d) for d in g.index[flagged]]}, now, rules))
    if not single.any():
        return findings
    sub = tests[single]
    who = pd.Series(dev[single], index=sub.index)
    q_sub, b_sub = (quick & single)[single], (burst & single)[single]
    for subject, idx in who.groupby(who).indices.items():
        grp = sub.iloc[idx]
        nq, nb = int(q_sub[idx].sum()), int(b_sub[idx].sum())
        parts = []
        if nq:
            parts.append(f"{nq} 项检测从采样到出结果的时间短于反应所需（酶抑制法 10 分钟、胶体金卡 5 分钟、比色法 8 分钟）")
        if nb:
            parts.append(f"{nb} 项检测所在的一小时内该设备出具的结果超过其 {rules.device_channels} 个通道的检测能力")
        inspectors = "、".join(map(str, pd.unique(grp["inspector_id"].dropna())[:3]))
        reason = (f"设备 {subject}" + (f"（检测员 {inspectors}）" if inspectors else "") + "：" + "；".join(parts)
                  + "。同类设备大多没有这种情况，结果可能未按规程完成反应。")
        findings.append(_finding("too_fast", f"DEV-{subject}", grp, reason,
                                 {"反应时间不足": nq, "超出通道能力": nb, "通道数": rules.device_channels}, now, rules))
    return findings


def throughput(tests: pd.DataFrame, rules: IntegrityRules = IntegrityRules(), now=None,
               kind=None) -> tuple[list[dict], pd.DataFrame]:
    """出具结果过快: each inspector's pace against the peers'. Within a session (one inspector's
    results in one market on one Beijing day, gaps under `session_gap` minutes) the gaps
    between consecutive results; an inspector's pace is 60 / the median gap (results an hour
    while working). Compared on the log scale with the others' median and MAD (robust z):
    flagged at `throughput_ratio` times the peers' median pace and z ≥ `throughput_z`. The
    reason sets the pace against what the method's reaction and the device's channels allow."""
    cols = ["subject", "gaps", "median_gap", "per_hour", "peer_per_hour", "z", "flagged"]
    kind = method_kinds(tests) if kind is None else kind
    t = tests[tests["inspector_id"].notna() & tests["ts"].notna()]
    if t.empty:
        return [], pd.DataFrame(columns=cols)
    ts = _ns(t["ts"])
    day = (ts + 8 * 3600 * 10**9) // (86400 * 10**9)
    ins, ins_names = pd.factorize(t["inspector_id"])
    mk, _ = pd.factorize(t["market_id"].astype(object).fillna(""))
    order = np.lexsort((ts, day, mk, ins))
    ts_o, same = ts[order], np.r_[False, (ins[order][1:] == ins[order][:-1]) & (mk[order][1:] == mk[order][:-1])
                                  & (day[order][1:] == day[order][:-1])]
    gap = np.r_[np.nan, np.diff(ts_o) / 60e9]
    inside = same & (gap <= rules.session_gap)
    g = pd.DataFrame({"ins": ins[order][inside], "gap": gap[inside]}).groupby("ins")["gap"]
    table = pd.DataFrame({"gaps": g.size(), "median_gap": g.median()})
    table = table[table["gaps"] >= rules.throughput_min_gaps]
    if len(table) < 4:
        return [], pd.DataFrame(columns=cols)
    table["per_hour"] = 60 / table["median_gap"].clip(lower=0.1)
    lr = np.log(table["per_hour"].to_numpy())
    peer_med = np.array([np.median(np.delete(lr, i)) for i in range(len(lr))])
    peer_mad = np.array([1.4826 * np.median(np.abs(np.delete(lr, i) - peer_med[i])) for i in range(len(lr))])
    table["peer_per_hour"] = np.exp(peer_med)
    table["z"] = (lr - peer_med) / np.maximum(peer_mad, 0.1)
    table["flagged"] = (table["per_hour"] >= rules.throughput_ratio * table["peer_per_hour"]) & (
        table["z"] >= rules.throughput_z)
    table["subject"] = np.asarray(ins_names)[table.index.to_numpy()]
    table = table.reset_index(drop=True)[cols].sort_values("z", ascending=False)
    findings = []
    kinds = kind.reindex(t.index)
    for r in table[table["flagged"]].itertuples():
        rows = t[t["inspector_id"] == r.subject]
        main = kinds[rows.index].mode()
        kd = main.iloc[0] if len(main) else "enzyme"
        react = catalog.REACTION_MINUTES.get(kd, 10)
        cap = rules.device_channels * 60 / react
        reason = (f"检测员 {r.subject} 工作时平均每 {r.median_gap:.1f} 分钟出具一个结果（每小时约 {r.per_hour:.0f} 项，"
                  f"依据 {r.gaps} 个相邻结果的间隔），同行中位数每小时约 {r.peer_per_hour:.0f} 项，是同行的 "
                  f"{r.per_hour / r.peer_per_hour:.1f} 倍。其主要方法{KIND_TEXT.get(kd, kd)}每项需反应 {react} 分钟，"
                  f"一台 {rules.device_channels} 通道设备满负荷每小时最多 {cap:.0f} 项，且每个样品还需称样、提取、加样；"
                  "同行中没有人这样快，应核查是否按规程检测（如批量录入、未做检测直接填写结果）。")
        findings.append(_finding("throughput", f"INS-{r.subject}", rows, reason,
                                 {"相邻结果间隔中位数(分钟)": round(float(r.median_gap), 2), "每小时": round(float(r.per_hour), 1),
                                  "同行每小时": round(float(r.peer_per_hour), 1), "稳健z": round(float(r.z), 1),
                                  "间隔数": int(r.gaps)}, now, rules))
    return findings, table


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
    pace: pd.DataFrame | None = None  # every inspector's pace against the peers (throughput)


def check(tests: pd.DataFrame, markets: pd.DataFrame | None = None, rules: IntegrityRules = IntegrityRules(),
          now=None) -> IntegrityReport:
    """Every integrity check over the rapid tests; findings newest subject first."""
    now = clock.now().floor("s") if now is None else pd.Timestamp(now)
    f_ins, t_ins = low_positive_rate(tests, "inspector_id", rules, now)
    f_dev, t_dev = low_positive_rate(tests, "device_id", rules, now)
    kind = method_kinds(tests)
    f_dig, t_dig = digit_preference(tests, rules, now, kind)
    f_pace, t_pace = throughput(tests, rules, now, kind)
    found = (f_ins + f_dev + too_fast(tests, rules, now, kind) + f_pace + repeated_readings(tests, rules, now, kind)
             + off_hours(tests, markets, rules, now) + expired_reagents(tests, rules, now) + f_dig)
    df = pd.DataFrame(found, columns=FINDING_COLUMNS)
    return IntegrityReport(df, t_ins, t_dev, t_dig, t_pace)
