"""Linkage (联动): rules that turn one department's alert into cases for others.

Each department keeps its rules in one YAML file (`Department.linkage`, e.g.
workbench/market/linkage.yaml), a list of plain blocks, one per rule, as readable as
Frigate's camera config::

    - id: positive-test-school-notice        # unique, ASCII; names the rule everywhere
      name: 快检阳性通报供货学校               # what screens call it
      short: PTSN                             # case id prefix (default: the id)
      when:                                   # the alerts it takes
        category: 快检阳性                    # one category or a list (registered by a department)
        department: 市场监管局                # optional: the raising department
        severity: [warning, critical]         # optional
        min_age_hours: 24                     # optional: active at least this long (as of now)
        include_lifted: false                 # optional: lifted alerts count too (default: active only)
      open:                                   # the case each target gets
        case_type: school_notice              # a registered case type (workbench.cases)
        department: 教育局                    # who handles it
        deadline_hours: 72                    # optional (default: the type's own)
        title: "{school_name}：供货市场{market_name}快检阳性（{commodity}）"
      for_each:                               # optional: the targets (default: one case per alert)
        dataset: canteen_suppliers            # a hub dataset …
        match: {market_id: market_id}         # … its rows whose column equals the alert's attr
        contains: {goods: goods}              # optional: … and whose column contains the alert's attr
                                              #   (a target whose column is empty is kept)
        join:                                 # optional: more columns from other datasets
          - {dataset: canteens, on: canteen_id}
          - {dataset: markets, on: market_id, columns: {name: market_name}}
        key: canteen_id                       # optional: what tells targets apart
        subject: "canteens:{canteen_id}"      # optional: what the case is about
      # or: for_each: {resolver: market.followup_cases}   (a department's function)

A resolver is registered by a department (`Department.resolvers`) and called as
``fn(conn, alerts) -> DataFrame``: `alerts` are the matched alert rows (hub columns, `attrs`
as a dict); each returned row is one case and must carry `alert_id`; it may carry the case's
own id (`_id`, `case_id` or the store's id column), a `target` key, and any column of the case
type's table (title, department, district, deadline, subject …), which win over the rule's.

Rules are checked before anything runs (`validate`): an unknown alert category, department,
case type, dataset or column, a missing resolver, a duplicate id, or rules that loop (a case
type that raises an alert category that another rule turns back into it) are refused with the
file and line (`LinkageError`).

`run` opens the cases through the case engine (`workbench.cases.open_cases`) with
deterministic ids ("LK-<short>-<alert_id>-<target>", hashed past 64 characters), so a rerun
opens nothing; every case carries its alert (`alert_id`), rule, subject and evidence.
A case opens at the alert's time (plus `min_age_hours`): the linkage's time, not the run's.
`chain` / `chain_of_case` give the alert → cases → steps for screens.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import alerts as alert_api
from workbench import cases, clock
from workbench.errors import ConfigError, RegistryError, WorkbenchError

ACTOR = "系统联动"

# The city's departments a rule may send cases to beside the registered ones (DOMAIN.md).
CITY_DEPARTMENTS = (
    "市场监管局", "教育局", "城市管理和综合执法局", "应急管理局", "住房和城乡建设局", "水务", "燃气",
    "供电公司", "公安交警", "生态环境局", "政法委/综治中心", "街道办事处", "区人民政府", "12345 热线", "学校",
)

RULE_KEYS = ("id", "name", "short", "when", "open", "for_each")
WHEN_KEYS = ("category", "department", "severity", "min_age_hours", "include_lifted")
OPEN_KEYS = ("case_type", "department", "deadline_hours", "title", "urgency", "description")
FOR_EACH_KEYS = ("dataset", "match", "contains", "join", "key", "subject", "resolver")
JOIN_KEYS = ("dataset", "on", "columns")
ALERT_COLUMNS = ("alert_id", "ts", "department", "category", "severity", "title", "area", "district",
                 "valid_from", "valid_to", "status", "source", "evidence", "level", "updated_at", "subject", "attrs")


class LinkageError(ConfigError):
    """Rules refused before anything runs; `problems` lists (where, problem), where = file:line."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        text = "\n".join(f"{w}: {p}" for w, p in problems)
        super().__init__(problems[0][1] if len(problems) == 1 else f"联动规则有 {len(problems)} 处问题：\n{text}",
                         where=problems[0][0] if len(problems) == 1 else None)

    def lines(self) -> list[str]:
        return [f"{w}: {p}" for w, p in self.problems]


# ------------------------------------------------------------------------------- reading rules

class _Lined(dict):
    """A YAML mapping that remembers the line of itself and of each key (1-based)."""
    line: int = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict = {}


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        m = _Lined()
        m.line = node.start_mark.line + 1
        for k_node, v_node in node.value:
            k = loader.construct_object(k_node, deep=True)
            m[k] = loader.construct_object(v_node, deep=True)
            m.lines[k] = k_node.start_mark.line + 1
        return m

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    # YAML 1.2 booleans: only true/false (so `on:` of a join stays the word "on", not True)
    Loader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:bool"]
        for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


@dataclass(frozen=True)
class Join:
    dataset: str
    on: tuple[tuple[str, str], ...]        # (column of the rows so far, column of `dataset`)
    columns: tuple[tuple[str, str], ...]   # (column of `dataset`, name it takes); empty: all new ones
    line: int


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    short: str
    file: str
    line: int
    owner: str                              # the department whose file holds it
    categories: tuple[str, ...]
    case_type: str
    alert_department: str | None = None
    severity: tuple[str, ...] = ()
    min_age_hours: float | None = None
    include_lifted: bool = False
    department: str | None = None
    deadline_hours: float | None = None
    title: str | None = None
    urgency: str | None = None
    description: str | None = None
    resolver: str | None = None
    dataset: str | None = None
    match: tuple[tuple[str, str], ...] = ()  # (dataset column, alert attr)
    contains: tuple[tuple[str, str], ...] = ()  # (dataset column, alert attr): the text holds the value
    joins: tuple[Join, ...] = ()
    key: tuple[str, ...] = ()
    subject: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)  # "when.category" → line

    def where(self, what: str | None = None) -> str:
        return f"{self.file}:{self.lines.get(what, self.line) if what else self.line}"

    @property
    def targets(self) -> str:
        if self.resolver:
            return f"函数 {self.resolver}"
        if self.dataset:
            via = "、".join(j.dataset for j in self.joins)
            return f"{self.dataset}（{'、'.join(f'{c}=告警.{a}' for c, a in self.match)}）" + (f" 关联 {via}" if via else "")
        return "每条告警一件"


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def parse_rules(path: str | Path, owner: str = "") -> list[Rule]:
    """The rules of one YAML file; LinkageError (file and line) when its shape is wrong."""
    import yaml

    path = Path(path)
    try:
        where = str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        where = str(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError:
        raise LinkageError([(where, "找不到联动规则文件")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{where}:{mark.line + 1}" if mark else where
        raise LinkageError([(line, f"YAML 格式错误：{getattr(exc, 'problem', None) or exc}")]) from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise LinkageError([(f"{where}:1", "联动规则文件应是规则列表（每条以“- id: …”开头）")])
    problems: list[tuple[str, str]] = []
    out = []
    for item in raw:
        try:
            out.append(_parse_rule(item, where, owner))
        except LinkageError as exc:
            problems += exc.problems
    if problems:
        raise LinkageError(problems)
    return out


def _parse_rule(d, file: str, owner: str) -> Rule:
    if not isinstance(d, _Lined):
        raise LinkageError([(f"{file}", f"每条联动规则应是一个映射（id、when、open …），而不是：{d!r}"[:200])])
    problems: list[tuple[str, str]] = []
    lines: dict[str, int] = {}

    def at(m: _Lined, key: str | None = None) -> str:
        return f"{file}:{m.lines.get(key, m.line) if key else m.line}"

    def keys_of(m, allowed, what: str, prefix: str):
        if not isinstance(m, _Lined):
            problems.append((at(d, prefix.rstrip(".")), f"“{prefix.rstrip('.')}”应是一个映射"))
            return _Lined()
        for k in m:
            lines[prefix + str(k)] = m.lines[k]
            if k not in allowed:
                problems.append((at(m, k), f"{what}中有未知的项“{k}”（可用：{'、'.join(allowed)}）"))
        return m

    keys_of(d, RULE_KEYS, "联动规则", "")
    rid = d.get("id")
    if not isinstance(rid, str) or not rid.strip():
        problems.append((at(d), "联动规则缺少 id"))
        rid = f"<第{d.line}行>"
    for req in ("when", "open"):
        if req not in d:
            problems.append((at(d), f"联动规则 {rid} 缺少“{req}”"))
    when = keys_of(d.get("when", _Lined()), WHEN_KEYS, f"规则 {rid} 的 when", "when.")
    opn = keys_of(d.get("open", _Lined()), OPEN_KEYS, f"规则 {rid} 的 open", "open.")
    fe = keys_of(d.get("for_each", _Lined()), FOR_EACH_KEYS, f"规则 {rid} 的 for_each", "for_each.")
    cats = tuple(str(c) for c in _as_list(when.get("category")))
    if "when" in d and not cats:
        problems.append((at(when), f"规则 {rid} 的 when 缺少告警类别 category"))
    if "open" in d and not opn.get("case_type"):
        problems.append((at(opn), f"规则 {rid} 的 open 缺少案件类型 case_type"))

    def number(m, key, label):
        v = m.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            problems.append((at(m, key), f"规则 {rid} 的 {label} 应是非负数，而不是“{v}”"))
            return None
        return float(v)

    title = opn.get("title")
    for k in ("title", "description"):
        if opn.get(k) is not None:
            try:
                list(string.Formatter().parse(str(opn[k])))
            except ValueError as exc:
                problems.append((at(opn, k), f"规则 {rid} 的 {k} 模板有误：{exc}"))
    match, joins, key, contains = (), (), (), ()
    if fe.get("resolver") and fe.get("dataset"):
        problems.append((at(fe), f"规则 {rid} 的 for_each 只能用 dataset 或 resolver 之一"))
    if fe.get("dataset"):
        m = fe.get("match")
        if not isinstance(m, Mapping) or not m:
            problems.append((at(fe, "match" if "match" in fe else None),
                             f"规则 {rid} 的 for_each 需要 match（数据集列: 告警关联键）"))
        else:
            match = tuple((str(c), str(a)) for c, a in m.items())
        c = fe.get("contains")
        if c is not None and not isinstance(c, Mapping):
            problems.append((at(fe, "contains"), f"规则 {rid} 的 contains 应是映射（数据集列: 告警关联键）"))
        elif c:
            contains = tuple((str(k), str(a)) for k, a in c.items())
        js = []
        for j in _as_list(fe.get("join")):
            if not isinstance(j, _Lined):
                problems.append((at(fe, "join"), f"规则 {rid} 的 join 每项应是映射（dataset、on、columns）"))
                continue
            for k in j:
                if k not in JOIN_KEYS:
                    problems.append((at(j, k), f"规则 {rid} 的 join 中有未知的项“{k}”（可用：{'、'.join(JOIN_KEYS)}）"))
            on = j.get("on")
            on = tuple((str(a), str(b)) for a, b in on.items()) if isinstance(on, Mapping) else \
                tuple((str(c), str(c)) for c in _as_list(on))
            cols = j.get("columns")
            cols = tuple((str(a), str(b)) for a, b in cols.items()) if isinstance(cols, Mapping) else \
                tuple((str(c), str(c)) for c in _as_list(cols))
            if not j.get("dataset") or not on:
                problems.append((at(j), f"规则 {rid} 的 join 需要 dataset 和 on"))
                continue
            js.append(Join(str(j["dataset"]), on, cols, j.line))
        joins = tuple(js)
        key = tuple(str(k) for k in _as_list(fe.get("key")))
    elif fe.get("match") or fe.get("join"):
        problems.append((at(fe), f"规则 {rid} 的 for_each 有 match/join 却没有 dataset"))
    short = str(d.get("short") or rid)
    if not short.isascii() or any(ch.isspace() for ch in short) or len(short) > 32:
        problems.append((at(d, "short" if "short" in d else "id"),
                         f"规则 {rid} 的编号前缀“{short}”应是不含空格的 ASCII，至多 32 个字符"))
    if problems:
        raise LinkageError(problems)
    return Rule(
        id=rid, name=str(d.get("name") or rid), short=short, file=file, line=d.line, owner=owner,
        categories=cats, case_type=str(opn["case_type"]),
        alert_department=when.get("department"), severity=tuple(str(s) for s in _as_list(when.get("severity"))),
        min_age_hours=number(when, "min_age_hours", "min_age_hours"), include_lifted=bool(when.get("include_lifted")),
        department=opn.get("department"), deadline_hours=number(opn, "deadline_hours", "deadline_hours"),
        title=None if title is None else str(title), urgency=opn.get("urgency"),
        description=None if opn.get("description") is None else str(opn["description"]),
        resolver=None if not fe.get("resolver") else str(fe["resolver"]), dataset=fe.get("dataset"),
        match=match, contains=contains, joins=joins, key=key, subject=fe.get("subject"), lines=lines,
    )


def load_rules(departments: Iterable[str] | None = None) -> list[Rule]:
    """The rules of every registered department's linkage file (or of `departments` only)."""
    from workbench import registry

    wanted = set(departments) if departments else None
    out: list[Rule] = []
    problems: list[tuple[str, str]] = []
    for dept in registry.departments():
        if wanted is not None and dept.name not in wanted:
            continue
        if dept.linkage and Path(dept.linkage).is_file():
            try:
                out += parse_rules(dept.linkage, dept.name)
            except LinkageError as exc:
                problems += exc.problems
    if wanted:
        unknown = wanted - {d.name for d in registry.departments()}
        if unknown:
            problems.append(("联动", f"未登记的部门：{'、'.join(sorted(unknown))}"))
    if problems:
        raise LinkageError(problems)
    return out


# ------------------------------------------------------------------------------- checking rules

def known_departments() -> set[str]:
    """Departments a case may go to: the registered ones (and those they answer for), the
    owners of the hub's datasets, and the city's departments (CITY_DEPARTMENTS)."""
    from workbench import registry
    from workbench.store.schema import DATASETS

    out = set(CITY_DEPARTMENTS)
    for d in registry.departments():
        out |= {d.agency, *d.agencies}
    out |= {ds.department for ds in DATASETS.values() if ds.department}
    out.discard("一网统管")
    return out


def _fields(dataset: str) -> set[str]:
    from workbench.store.schema import DATASETS

    return {f.name for f in DATASETS[dataset].fields}


def validate(rules: list[Rule]) -> list[Rule]:
    """`rules` when every rule can run; LinkageError naming each problem's file and line."""
    from workbench import registry
    from workbench.store.schema import DATASETS

    registry.load()
    categories = registry.registry.alert_categories()
    depts = known_departments()
    problems: list[tuple[str, str]] = []
    seen: dict[str, Rule] = {}
    for r in rules:
        if r.id in seen:
            problems.append((r.where(), f"联动规则 id “{r.id}”重复（另见 {seen[r.id].where()}）"))
        seen.setdefault(r.id, r)
        unknown = [c for c in r.categories if c not in categories]
        if unknown:
            problems.append((r.where("when.category"), f"规则 {r.id}：未知的告警类别“{'、'.join(unknown)}”（各部门登记的"
                             f"类别：{'、'.join(sorted(categories)) or '无'}）"))
        bad_sev = [s for s in r.severity if s not in alert_api.SEVERITIES]
        if bad_sev:
            problems.append((r.where("when.severity"), f"规则 {r.id}：未知的告警级别“{'、'.join(bad_sev)}”"
                             f"（可选：{'、'.join(alert_api.SEVERITIES)}）"))
        for what, dep in (("when.department", r.alert_department), ("open.department", r.department)):
            if dep is not None and dep not in depts:
                problems.append((r.where(what), f"规则 {r.id}：未知的部门“{dep}”（可用：{'、'.join(sorted(depts))}）"))
        if r.case_type not in cases.TYPES:
            problems.append((r.where("open.case_type"), f"规则 {r.id}：未登记的案件类型“{r.case_type}”（已登记："
                             f"{'、'.join(sorted(cases.TYPES)) or '无'}）"))
        if r.urgency is not None and r.urgency not in ("紧急", "一般"):
            problems.append((r.where("open.urgency"), f"规则 {r.id}：紧急程度应是“紧急”或“一般”"))
        if r.resolver:
            try:
                registry.registry.resolver(r.resolver)
            except RegistryError as exc:
                problems.append((r.where("for_each.resolver"), f"规则 {r.id}：{exc.problem}"))
        if r.dataset:
            problems += _check_dataset_targets(r, DATASETS)
    problems += [(w, p) for w, p in _loops(rules)]
    if problems:
        raise LinkageError(problems)
    return rules


def _check_dataset_targets(r: Rule, datasets) -> list[tuple[str, str]]:
    out = []
    if r.dataset not in datasets:
        return [(r.where("for_each.dataset"), f"规则 {r.id}：未知的数据集“{r.dataset}”")]
    have = set(_fields(r.dataset))
    for col, _ in r.match:
        if col not in have:
            out.append((r.where("for_each.match"), f"规则 {r.id}：数据集 {r.dataset} 没有列“{col}”"))
    for col, _ in r.contains:
        if col not in have:
            out.append((r.where("for_each.contains"), f"规则 {r.id}：数据集 {r.dataset} 没有列“{col}”"))
    for j in r.joins:
        if j.dataset not in datasets:
            out.append((f"{r.file}:{j.line}", f"规则 {r.id}：未知的数据集“{j.dataset}”"))
            continue
        theirs = _fields(j.dataset)
        for left, right in j.on:
            if left not in have:
                out.append((f"{r.file}:{j.line}", f"规则 {r.id}：关联 {j.dataset} 的列“{left}”在前面的数据中没有"))
            if right not in theirs:
                out.append((f"{r.file}:{j.line}", f"规则 {r.id}：数据集 {j.dataset} 没有列“{right}”"))
        for src, _ in j.columns:
            if src not in theirs:
                out.append((f"{r.file}:{j.line}", f"规则 {r.id}：数据集 {j.dataset} 没有列“{src}”"))
        have |= {new for _, new in j.columns} if j.columns else theirs
    for k in r.key:
        if k not in have:
            out.append((r.where("for_each.key"), f"规则 {r.id}：对象键“{k}”不在数据集的列中"))
    return out


def _loops(rules: list[Rule]) -> list[tuple[str, str]]:
    """Rule graph: a rule → the rules taking a category its case type raises. Each cycle once."""
    raises = {r.id: set(cases.TYPES[r.case_type].raises) if r.case_type in cases.TYPES else set() for r in rules}
    by_id = {r.id: r for r in rules}
    nxt = {r.id: [s.id for s in rules if raises[r.id] & set(s.categories)] for r in rules}
    out, reported = [], set()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]):
        state[node] = 1
        path.append(node)
        for m in nxt[node]:
            if state.get(m) == 1:
                cyc = path[path.index(m):] + [m]
                key = frozenset(cyc)
                if key not in reported:
                    reported.add(key)
                    steps = " → ".join(f"{i}（{by_id[i].where()}）" for i in cyc)
                    cats = "、".join(sorted(raises[node] & set(by_id[m].categories)))
                    out.append((by_id[m].where("when.category"),
                                f"联动规则成环：{steps}；案件类型 {by_id[node].case_type} 会产生告警“{cats}”"))
            elif state.get(m) is None:
                visit(m, path)
        path.pop()
        state[node] = 2

    for r in rules:
        if state.get(r.id) is None:
            visit(r.id, [])
    return out


def rules_table(rules: list[Rule]) -> pd.DataFrame:
    """The rules for people: one row each."""
    rows = []
    for r in rules:
        cond = []
        if r.alert_department:
            cond.append(f"部门={r.alert_department}")
        if r.severity:
            cond.append(f"级别={'/'.join(r.severity)}")
        if r.min_age_hours:
            cond.append(f"持续≥{r.min_age_hours:g}小时")
        cond.append("含已解除" if r.include_lifted else "仅生效中")
        ct = cases.TYPES.get(r.case_type)
        rows.append({"规则": r.id, "名称": r.name, "位置": r.where(), "告警类别": "、".join(r.categories),
                     "条件": "，".join(cond), "案件类型": f"{ct.label}（{r.case_type}）" if ct else r.case_type,
                     "责任部门": r.department or (ct.department if ct else ""),
                     "时限(小时)": r.deadline_hours or (ct.default_hours if ct else None), "对象": r.targets})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- running rules

def case_id(short: str, alert_id: str, key: str = "") -> str:
    """A linkage case's id: "LK-<short>-<alert_id>[-<target key>]", ≤ 64 characters (the tail
    is replaced by a hash of the whole when longer)."""
    full = "-".join(p for p in ("LK", short, str(alert_id), str(key)) if p)
    if len(full) <= 64:
        return full
    return f"{full[:51]}-{hashlib.sha1(full.encode('utf-8')).hexdigest()[:12]}"


class _Blank(dict):
    def __missing__(self, key):
        return ""


def _render(template: str | None, ctx: Mapping) -> str | None:
    if template is None:
        return None
    try:
        return template.format_map(ctx if isinstance(ctx, _Blank) else _Blank(ctx))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return template


def _names(*templates) -> set[str]:
    """The field names a rule's templates use."""
    out = set()
    for t in templates:
        if t:
            out |= {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(t) if f}
    return out


def _clean(v):
    """None for a missing value (None, NaN, NaT, NA); lists and dicts as they are."""
    if v is None or isinstance(v, (list, tuple, dict, str)):
        return v
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):
        return v


def matched_alerts(conn: Connection, rule: Rule, *, since=None, now=None) -> pd.DataFrame:
    """The alerts a rule takes: its categories (and department, severity), active unless
    `include_lifted`, active at least `min_age_hours` as of `now` (for a lifted one: until it
    was lifted), raised at or after `since`. `attrs` as dicts; `opened` = when its cases open."""
    from workbench.store.schema import DATASETS

    alert_table = DATASETS["alerts"].table
    stmt = sa.select(*[alert_table.c[c] for c in ALERT_COLUMNS]).where(alert_table.c.category.in_(list(rule.categories)))
    if rule.alert_department:
        stmt = stmt.where(alert_table.c.department == rule.alert_department)
    if rule.severity:
        stmt = stmt.where(alert_table.c.severity.in_(list(rule.severity)))
    if not rule.include_lifted:
        stmt = stmt.where(alert_table.c.status.in_([alert_api.ACTIVE, alert_api.TO_VERIFY]))
    if since is not None:
        stmt = stmt.where(alert_table.c.ts >= pd.Timestamp(since).to_pydatetime())
    al = pd.read_sql(stmt.order_by(alert_table.c.ts, alert_table.c.alert_id), conn)
    if al.empty:
        al["attrs"] = []
        al["opened"] = pd.Series(dtype="datetime64[ns]")
        return al
    for c in ("ts", "valid_from", "valid_to", "updated_at"):
        al[c] = pd.to_datetime(al[c])
    al["attrs"] = [alert_api.attrs_of(v) for v in al["attrs"]]
    start = al["valid_from"].where(al["valid_from"].notna(), al["ts"])
    al["opened"] = start
    if rule.min_age_hours:
        now = pd.Timestamp(now) if now is not None else clock.now()
        lifted = al["status"] == alert_api.LIFTED
        end = pd.Series(now, index=al.index)
        lifted_at = al["valid_to"].where(al["valid_to"].notna(), al["updated_at"])
        end = end.where(~lifted, lifted_at)
        age = pd.Timedelta(hours=rule.min_age_hours)
        al = al[(end - start) >= age].copy()
        al["opened"] = start[al.index] + age
    return al.reset_index(drop=True)


def _read_in(conn: Connection, dataset: str, column: str, values) -> pd.DataFrame:
    from workbench.store.schema import DATASETS

    t = DATASETS[dataset].table
    vals = sorted({str(v) for v in values if v is not None and v == v})
    parts = [pd.read_sql(sa.select(t).where(t.c[column].in_(vals[k:k + 5000])), conn)
             for k in range(0, len(vals), 5000)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=[c.name for c in t.c])
    return pd.concat(parts, ignore_index=True)


def dataset_targets(conn: Connection, rule: Rule, al: pd.DataFrame) -> pd.DataFrame:
    """The rows of the rule's dataset matched on each alert's attrs (one row per alert × target),
    with the joined datasets' columns, `alert_id` and `target` (the key)."""
    from workbench.store.schema import DATASETS

    keys = []
    for rec in al[["alert_id", "attrs", "district", "area", "subject", "category"]].to_dict("records"):
        row = {"alert_id": rec["alert_id"]}
        for col, attr in rule.match:
            v = rec["attrs"].get(attr, rec.get(attr))
            row[col] = None if v is None or v != v else str(v)
        for col, attr in rule.contains:
            v = rec["attrs"].get(attr, rec.get(attr))
            row[f"_contains_{col}"] = None if v is None or v != v else str(v)
        keys.append(row)
    kf = pd.DataFrame(keys, columns=["alert_id", *[c for c, _ in rule.match],
                                     *[f"_contains_{c}" for c, _ in rule.contains]])
    kf = kf.dropna(subset=["alert_id", *[c for c, _ in rule.match]])
    if kf.empty:
        return pd.DataFrame(columns=["alert_id", "target"])
    first = rule.match[0][0]
    rows = _read_in(conn, rule.dataset, first, kf[first])
    for col, _ in rule.match:
        rows[col] = rows[col].astype("string").astype(object)
    out = kf.merge(rows, on=[c for c, _ in rule.match], how="inner")
    for col, _ in rule.contains:  # an alert without the attr, or a target that does not say, keeps the
        want = out.pop(f"_contains_{col}")  # target (better one notice too many than one missed)
        have = out[col].astype("string").fillna("")
        keep = [w is None or w != w or not h or str(w) in h for w, h in zip(want, have)]
        out = out[pd.Series(keep, index=out.index, dtype=bool)].reset_index(drop=True)
    for j in rule.joins:
        left, right = j.on[0]
        other = _read_in(conn, j.dataset, right, out[left])
        if j.columns:
            other = other[[*{r for _, r in j.on}, *[s for s, _ in j.columns if s not in {r for _, r in j.on}]]]
            other = other.rename(columns={s: n for s, n in j.columns if s not in {r for _, r in j.on}})
        else:
            other = other[[c for c in other.columns if c not in out.columns or c in {r for _, r in j.on}]]
        for l, r in j.on:
            out[l] = out[l].astype("string").astype(object)
            other[r] = other[r].astype("string").astype(object)
        other = other.drop_duplicates([r for _, r in j.on])
        out = out.merge(other, left_on=[l for l, _ in j.on], right_on=[r for _, r in j.on], how="left",
                        suffixes=("", f"_{j.dataset}"))
    key = rule.key or tuple(k for k in DATASETS[rule.dataset].key if k not in {c for c, _ in rule.match}) \
        or tuple(DATASETS[rule.dataset].key)
    tgt = pd.Series([""] * len(out), index=out.index, dtype=object)
    for i, k in enumerate(key):
        part = out[k].astype(object).where(out[k].notna(), "").astype(str)
        tgt = part if i == 0 else tgt + "/" + part
    out["target"] = tgt.to_numpy(dtype=object) if len(out) else []
    out = out.drop_duplicates(["alert_id", "target"])
    if rule.subject is None:
        out["subject"] = [f"{rule.dataset}:{t}" for t in out["target"]]
    return out.reset_index(drop=True)


def _evidence(rec: Mapping) -> str:
    ev = rec.get("evidence")
    parsed = ev
    if isinstance(ev, str):
        try:
            parsed = json.loads(ev)
        except ValueError:
            parsed = ev
    body = {"告警": rec["alert_id"], "类别": rec.get("category"), "告警标题": rec.get("title"),
            "告警对象": _clean(rec.get("subject")), "关联键": rec.get("attrs") or {}, "证据": _clean(parsed)}
    text = json.dumps(body, ensure_ascii=False, default=str)
    if len(text) > 4096:
        body["证据"] = (ev or "")[: max(0, 4000 - len(text) + len(ev or ""))] if isinstance(ev, str) else "（过长，见告警）"
        text = json.dumps(body, ensure_ascii=False, default=str)[:4096]
    return text


def _ids(rule: Rule, store, targets: pd.DataFrame) -> pd.Series:
    """The case id of each target row: the resolver's own, else the linkage id."""
    given = pd.Series([None] * len(targets), index=targets.index, dtype=object)
    for col in (store.id, "case_id", "_id"):
        if col in targets:
            given = targets[col].astype(object).where(targets[col].notna(), given)
    tgt = (targets["target"].astype(object).where(targets["target"].notna(), "").astype(str)
           if "target" in targets else pd.Series("", index=targets.index))
    made = (f"LK-{rule.short}-" + targets["alert_id"].astype(str)
            + tgt.where(tgt == "", "-" + tgt)).astype(object)
    long = made.str.len() > 64
    if long.any():
        made[long] = [case_id(rule.short, a, t) for a, t in zip(targets["alert_id"][long], tgt[long])]
    return given.where(given.notna(), made).astype(str)


def _held(conn: Connection, store, ids: list[str]) -> set:
    from workbench.store.schema import metadata

    table = metadata.tables[store.table]
    held: set = set()
    for k in range(0, len(ids), 5000):
        held |= {r[0] for r in conn.execute(sa.select(table.c[store.id]).where(table.c[store.id].in_(ids[k:k + 5000])))}
    return held


def case_rows(rule: Rule, al: pd.DataFrame, targets: pd.DataFrame | None, *, resolved: bool = False,
              skip: set | None = None) -> pd.DataFrame:
    """One row per case to open (the case engine's frame): `_id`, ts, title, department,
    district, deadline, subject, alert_id, rule, evidence, description, … (store columns).
    `resolved`: the targets are a resolver's case rows (their columns go to the case, `steps`
    too); else dataset rows, which give the case only their district and street.
    `skip`: case ids already held (no row is built for them)."""
    ct = cases.case_type(rule.case_type)
    store = cases.STORES[ct.store]
    if targets is None:
        targets = pd.DataFrame({"alert_id": al["alert_id"], "target": ""})
    targets = targets[targets["alert_id"].isin(al["alert_id"])].reset_index(drop=True)
    ids = _ids(rule, store, targets)
    if skip:
        keep = ~ids.isin(skip).to_numpy()
        targets, ids = targets[keep].reset_index(drop=True), ids[keep].reset_index(drop=True)
    if targets.empty:
        return pd.DataFrame()
    if not resolved:
        return _dataset_case_rows(rule, al, targets, ids)
    alerts_by_id, evidence = {}, {}
    for a in al.to_dict("records"):
        base = {k: _clean(v) for k, v in a.items() if k != "attrs"}
        alerts_by_id[a["alert_id"]] = (a, {**base, "alert_title": a.get("title"), "alert_subject": a.get("subject"),
                                            **a["attrs"]})
    rows = []
    for cid, t in zip(ids, targets.to_dict("records")):
        a, actx = alerts_by_id[t["alert_id"]]
        t = {k: v for k, v in t.items() if _clean(v) is not None}
        ctx = _Blank(actx)
        for k, v in t.items():
            ctx[k] = v
        ctx["title"] = a.get("title")
        opened = pd.Timestamp(t["ts"]) if resolved and t.get("ts") is not None else a["opened"]
        if resolved:
            row = {k: v for k, v in t.items() if k not in ("_id", "case_id", store.id, "target", store.status)}
        else:
            row = {k: t[k] for k in ("district", "street") if k in t}
        row = {**row, "_id": cid, "ts": opened, "alert_id": a["alert_id"], "rule": rule.id}
        if "title" not in row:
            row["title"] = (_render(rule.title, ctx) or a.get("title") or "")[:256]
        if "description" not in row:
            row["description"] = (_render(rule.description, ctx) or a.get("title") or "")[:1024]
        if rule.department and "department" not in row:
            row["department"] = rule.department
        if "district" not in row:
            row["district"] = _clean(a.get("district"))
        if rule.urgency and "urgency" not in row:
            row["urgency"] = rule.urgency
        if rule.deadline_hours is not None and "deadline" not in row:
            row["deadline"] = opened + pd.Timedelta(hours=rule.deadline_hours)
        if "subject" not in row:
            row["subject"] = _render(rule.subject, ctx) if rule.subject else (t.get("subject") or _clean(a.get("subject")))
        if "evidence" not in row:
            if a["alert_id"] not in evidence:
                evidence[a["alert_id"]] = _evidence(a)
            row["evidence"] = evidence[a["alert_id"]]
        rows.append(row)
    f = pd.DataFrame(rows)
    if len(f) and "deadline" in f:
        f["deadline"] = pd.to_datetime(f["deadline"])
    return f


def _plain(template: str | None) -> list[tuple[str, str | None]] | None:
    """(literal, field) pieces of a template without format specs or conversions (else None)."""
    if template is None:
        return []
    out = []
    for lit, name, spec, conv in string.Formatter().parse(template):
        if spec or conv or (name is not None and (not name or not name.isidentifier())):
            return None
        out.append((lit, name))
    return out


def _format_column(template: str | None, ctx: pd.DataFrame) -> pd.Series:
    """`template` rendered for every row of `ctx` (missing fields render empty), vectorized."""
    pieces = _plain(template)
    if pieces is None:
        recs = ctx.to_dict("records")
        return pd.Series([_render(template, {k: v for k, v in r.items() if _clean(v) is not None}) for r in recs],
                         index=ctx.index, dtype=object)
    out = pd.Series("", index=ctx.index, dtype=object)
    for lit, name in pieces:
        if lit:
            out = out + lit
        if name is not None and name in ctx:
            col = ctx[name].astype(object)
            out = out + col.where(col.notna(), "").astype(str)
    return out


def _dataset_case_rows(rule: Rule, al: pd.DataFrame, targets: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """The case rows of dataset targets, column by column (a year's alerts × schools is many)."""
    names = _names(rule.title, rule.description, rule.subject)
    a = al.drop_duplicates("alert_id").set_index("alert_id", drop=False)
    attrs = pd.DataFrame(list(a["attrs"]), index=a.index)
    actx = a.drop(columns=["attrs"]).assign(alert_title=a["title"], alert_subject=a["subject"])
    actx = pd.concat([actx.drop(columns=[c for c in attrs.columns if c in actx.columns and c != "alert_id"]),
                      attrs.drop(columns=[c for c in attrs.columns if c == "alert_id"])], axis=1)
    actx["title"] = a["title"]  # {title} is the alert's title
    tcols = [c for c in targets.columns if c in names | {"district", "street", "subject", "target"} and c != "alert_id"]
    ctx = targets[["alert_id", *tcols]].copy()
    for c in names | {"district", "title"}:
        if c not in actx.columns:
            continue
        from_alert = targets["alert_id"].map(actx[c]).astype(object)
        if c == "title" or c not in ctx.columns:
            ctx[c] = from_alert.to_numpy()
        else:  # the target's value first, else the alert's
            ctx[c] = ctx[c].astype(object).where(ctx[c].notna(), from_alert).to_numpy()
    alert_title = targets["alert_id"].map(a["title"]).astype(object).fillna("")
    opened = pd.to_datetime(targets["alert_id"].map(a["opened"]))
    title = _format_column(rule.title, ctx) if rule.title is not None else alert_title
    desc = _format_column(rule.description, ctx) if rule.description is not None else alert_title
    if rule.subject:
        subject = _format_column(rule.subject, ctx)
    elif "subject" in targets:
        subject = targets["subject"].astype(object)
    else:
        subject = targets["alert_id"].map(a["subject"]).astype(object)
    evidence = {aid: _evidence(r) for aid, r in zip(a["alert_id"], a.to_dict("records"))}
    f = pd.DataFrame({"_id": ids.to_numpy(), "ts": opened.to_numpy(), "alert_id": targets["alert_id"].to_numpy(),
                      "rule": rule.id, "title": title.str.slice(0, 256).to_numpy(),
                      "description": desc.str.slice(0, 1024).to_numpy(),
                      "district": ctx["district"].to_numpy() if "district" in ctx else None,
                      "subject": subject.to_numpy(), "evidence": targets["alert_id"].map(evidence).to_numpy()})
    if "street" in targets:
        f["street"] = targets["street"].to_numpy()
    if rule.department:
        f["department"] = rule.department
    if rule.urgency:
        f["urgency"] = rule.urgency
    if rule.deadline_hours is not None:
        f["deadline"] = f["ts"] + pd.Timedelta(hours=rule.deadline_hours)
    return f.astype({c: object for c in f.columns if c not in ("ts", "deadline")}).where(f.notna(), None)


def run_rule(conn: Connection, rule: Rule, *, since=None, now=None) -> dict:
    """One rule: its alerts, their targets, the cases opened (idempotent)."""
    from workbench import registry

    t0 = time.perf_counter()
    al = matched_alerts(conn, rule, since=since, now=now)
    targets = None
    if len(al) and rule.resolver:
        targets = registry.registry.resolver(rule.resolver)(conn, al.copy())
        if targets is None:
            targets = pd.DataFrame(columns=["alert_id"])
        if "alert_id" not in targets:
            raise WorkbenchError(f"联动对象函数 {rule.resolver} 返回的行缺少 alert_id", where=rule.where())
        targets = targets.reset_index(drop=True)
        if "target" not in targets:
            targets["target"] = targets.groupby("alert_id").cumcount().astype(str).where(
                targets.groupby("alert_id")["alert_id"].transform("size") > 1, "")
    elif len(al) and rule.dataset:
        targets = dataset_targets(conn, rule, al)
    frame = pd.DataFrame()
    if len(al):
        if targets is None:
            targets = pd.DataFrame({"alert_id": al["alert_id"], "target": ""})
        store = cases.STORES[cases.case_type(rule.case_type).store]
        held = _held(conn, store, _ids(rule, store, targets).tolist())
        frame = case_rows(rule, al, targets, resolved=bool(rule.resolver), skip=held)
        n_targets = len(targets)
    opened = 0
    if len(frame):
        steps = None
        if "steps" in frame:
            steps = frame.pop("steps").apply(lambda v: list(v) if isinstance(v, (list, tuple)) else [])
        actor = frame.pop("actor").fillna(ACTOR) if "actor" in frame else ACTOR
        opened = cases.open_cases(conn, rule.case_type, frame, actor=actor, steps=steps,
                                  intake_note=f"联动规则“{rule.name}”（{rule.id}）由告警生成")
    return {"rule": rule.id, "name": rule.name, "owner": rule.owner, "case_type": rule.case_type,
            "alerts": int(len(al)), "targets": int(n_targets if len(al) else 0), "opened": int(opened),
            "seconds": round(time.perf_counter() - t0, 3)}


def run(eng: Engine | None = None, departments: Iterable[str] | None = None, since=None, *,
        rules: list[Rule] | None = None, now=None) -> dict:
    """Run the linkage rules (of `departments`' files, default all) over the hub's alerts.
    Each rule in its own transaction. Returns: rules, alerts (matched), targets, opened,
    per_rule (a dict per rule), seconds."""
    from workbench.store import hub

    t0 = time.perf_counter()
    rules = validate(rules if rules is not None else load_rules(departments))
    eng = eng or hub.engine()
    per = []
    for r in rules:
        with eng.begin() as conn:
            per.append(run_rule(conn, r, since=since, now=now))
    return {"rules": len(rules), "alerts": sum(p["alerts"] for p in per), "targets": sum(p["targets"] for p in per),
            "opened": sum(p["opened"] for p in per), "per_rule": per,
            "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------------- the chain

@dataclass
class Chain:
    """An alert and what linkage made of it: the alert (one row), its changes, the cases
    (every store), their steps (case_id, ts, status, actor, department, note)."""
    alert: pd.DataFrame
    alert_history: pd.DataFrame
    cases: pd.DataFrame
    steps: pd.DataFrame

    @property
    def alert_id(self) -> str | None:
        return None if self.alert.empty else str(self.alert["alert_id"].iloc[0])


CASE_COLUMNS = ["case_id", "store", "case_type", "type_label", "status", "department", "district", "ts",
                "deadline", "closed_at", "title", "subject", "rule", "alert_id"]
STEP_COLUMNS = ["case_id", "ts", "status", "actor", "department", "note"]


def _store_cases(conn: Connection, where) -> pd.DataFrame:
    """Cases of every registered store matching `where(store, table)` (a condition or None)."""
    from workbench.store.schema import metadata

    parts = []
    for st in cases.STORES.values():
        table = metadata.tables[st.table]
        cond = where(st, table)
        if cond is None:
            continue
        c = table.c
        default = next((t.name for t in cases.TYPES.values() if t.store == st.name), None)
        cols = [c[st.id].label("case_id"), sa.literal(st.name).label("store"),
                (c[st.type_column] if st.type_column else sa.literal(default)).label("case_type"),
                c[st.status].label("status"),
                (c[st.department] if st.department else sa.literal(None)).label("department"),
                (c["district"] if "district" in c else sa.literal(None)).label("district"),
                c[st.opened].label("ts"), (c[st.deadline] if st.deadline else sa.literal(None)).label("deadline"),
                (c[st.closed] if st.closed else sa.literal(None)).label("closed_at"),
                (c["title"] if "title" in c else (c["description"] if "description" in c else sa.literal(None))).label("title"),
                (c["subject"] if "subject" in c else sa.literal(None)).label("subject"),
                (c["rule"] if "rule" in c else sa.literal(None)).label("rule"),
                (c["alert_id"] if "alert_id" in c else sa.literal(None)).label("alert_id")]
        parts.append(pd.read_sql(sa.select(*cols).where(cond).order_by(c[st.opened]), conn))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[c for c in CASE_COLUMNS if c != "type_label"])
    out["case_type"] = out["case_type"].fillna("")
    out["type_label"] = out["case_type"].map({t.name: t.label for t in cases.TYPES.values()})
    for col in ("ts", "deadline", "closed_at"):
        out[col] = pd.to_datetime(out[col])
    return out[CASE_COLUMNS]


def _steps(conn: Connection, found: pd.DataFrame) -> pd.DataFrame:
    from workbench.store.schema import metadata

    parts = []
    for st_name, ids in found.groupby("store")["case_id"]:
        st = cases.STORES[st_name]
        hist = metadata.tables[st.history]
        for k in range(0, len(ids), 5000):
            q = sa.select(hist.c[st.id].label("case_id"), hist.c.ts, hist.c.status, hist.c.actor,
                          hist.c.department, hist.c.note).where(hist.c[st.id].in_(list(ids)[k:k + 5000]))
            parts.append(pd.read_sql(q, conn))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=STEP_COLUMNS)
    out["ts"] = pd.to_datetime(out["ts"])
    return out.sort_values(["case_id", "ts"], kind="stable").reset_index(drop=True)[STEP_COLUMNS]


def chain(alert_id: str, eng: Engine | None = None) -> Chain:
    """The alert → the cases linkage opened from it (every store) → their steps."""
    from workbench.store import hub
    from workbench.store.schema import DATASETS

    cases._ensure_registered()
    eng = eng or hub.engine()
    alert_table, alert_hist = DATASETS["alerts"].table, DATASETS["alert_history"].table
    with eng.connect() as conn:
        alert = pd.read_sql(sa.select(alert_table).where(alert_table.c.alert_id == alert_id), conn)
        if alert.empty:
            raise WorkbenchError(f"找不到告警 {alert_id}")
        hist = pd.read_sql(sa.select(alert_hist).where(alert_hist.c.alert_id == alert_id).order_by(alert_hist.c.ts), conn)
        found = _store_cases(conn, lambda st, tb: (tb.c.alert_id == alert_id) if "alert_id" in tb.c else None)
        steps = _steps(conn, found)
    return Chain(alert, hist, found, steps)


def chain_of_case(case_id: str, eng: Engine | None = None) -> Chain:
    """The chain a case belongs to: its alert's (every case of it), or the case alone."""
    from workbench.store import hub
    from workbench.store.schema import DATASETS

    cases._ensure_registered()
    eng = eng or hub.engine()
    with eng.connect() as conn:
        found = _store_cases(conn, lambda st, tb: tb.c[st.id] == case_id)
        if found.empty:
            raise WorkbenchError(f"找不到案件 {case_id}")
        aid = found["alert_id"].iloc[0]
        if aid is None or aid != aid:
            alert_table, alert_hist = DATASETS["alerts"].table, DATASETS["alert_history"].table
            return Chain(pd.DataFrame(columns=[c.name for c in alert_table.c]),
                         pd.DataFrame(columns=[c.name for c in alert_hist.c]),
                         found, _steps(conn, found))
    return chain(str(aid), eng)


__all__ = ["ACTOR", "CITY_DEPARTMENTS", "Chain", "LinkageError", "Rule", "case_id", "case_rows", "chain",
           "chain_of_case", "dataset_targets", "known_departments", "load_rules", "matched_alerts", "parse_rules",
           "rules_table", "run", "run_rule", "validate"]
