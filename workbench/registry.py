"""Departments register here, in one place (as papermill registers its engines).

A department is one folder of the workbench (or another installed package) that says what it
brings in one `Department` object: its datasets' extra row checks and loaders (handed to the
hub's ingest), its case types (a YAML file for the case engine), its alert categories, its
linkage rules (YAML), its CLI group, its dashboard and the analysis that raises its alerts.

Departments are found through the package entry-point group ``workbench.departments``
(pyproject.toml); more can be registered at run time with `register`. The spine imports no
department by name: it loads the entry points. Adding the next department is a folder, a
`Department(...)` in its `department.py` and one entry-point line (README: 新增部门).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import import_module, metadata
from pathlib import Path
from typing import Callable, Mapping

from workbench.errors import RegistryError

GROUP = "workbench.departments"


@dataclass(frozen=True)
class Department:
    name: str                     # market
    label: str                    # 农贸市场快检 (what screens call the application)
    agency: str                   # 市场监管局 (the department in the city's words)
    checks: Mapping[str, tuple] = field(default_factory=dict)       # dataset → RowChecks
    loaders: Mapping[str, Callable] = field(default_factory=dict)   # dataset → loader(conn, ds, frame) → rows
    case_types: Path | None = None           # YAML of case types (workbench.cases)
    case_stores: tuple = ()                  # workbench.cases.CaseStore of its own
    alert_categories: tuple[str, ...] = ()
    linkage: Path | None = None              # YAML of linkage rules (workbench.linkage)
    cli: str | None = None                   # "module:attribute" of its click group
    dashboard: str | None = None             # notebook in dashboards/
    analyse: str | None = None               # "module:function(eng) -> dict": raises its alerts
    agencies: tuple[str, ...] = ()           # other departments it answers for (派往 choices)
    resolvers: Mapping[str, Callable] = field(default_factory=dict)  # linkage targets by name (see linkage)
    retention: str | None = None             # "module:function(days, now) -> dict": deletes its own
                                             # files past their period (workbench retention)
    migrations: Mapping[str, tuple] = field(default_factory=dict)   # revision → ("module:upgrade(op)",
                                             # "module:downgrade(op)"): its step in that hub migration
    tables: tuple = ()                       # sqlalchemy Tables of its own that its migration makes
                                             # (e.g. a summary kept on write): part of the hub's schema


class _Registry:
    def __init__(self):
        self._departments: dict[str, Department] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    def register(self, dept: Department) -> Department:
        """Register a department: its checks and loaders go to the hub's ingest registry,
        its case stores and types to the case engine."""
        from workbench import cases
        from workbench.store import ingest

        with self._lock:
            for dataset, checks in dept.checks.items():
                ingest.register_checks(dataset, *checks, owner=dept.name)
            for dataset, loader in dept.loaders.items():
                ingest.register_loader(dataset, loader, owner=dept.name)
            for store in dept.case_stores:
                cases.register_store(store)
            if dept.case_types:
                cases.load_types(dept.case_types)
            self._departments[dept.name] = dept
        return dept

    def load(self) -> None:
        """Register every department of the entry-point group, once."""
        if self._loaded:
            return
        with self._lock:  # another thread waits here until the registry is whole
            if self._loaded or self._loading:  # (a registration that reads the registry: re-entry)
                return
            self._loading = True
            try:
                self._load()
                self._loaded = True
            finally:
                self._loading = False

    def _load(self) -> None:
        from workbench import alerts, cases
        from workbench.store import ingest
        from workbench.store.schema import RowCheck

        # the spine's own datasets are written through the spine, even when a file brings them
        ingest.register_loader("alerts", alerts.load_rows, owner="一网统管")
        ingest.register_loader("alert_history", alerts.load_history, owner="一网统管")
        ingest.register_loader("cases", cases.load_cases, owner="一网统管")
        ingest.register_loader("case_history", cases.load_case_history, owner="一网统管")

        ingest.register_checks("cases", RowCheck(
            "案件类型未登记", lambda df: df["case_type"].notna() & ~df["case_type"].isin(list(cases.TYPES))),
            owner="一网统管")
        spine_types = Path(__file__).with_name("case_types.yaml")  # the linkage cases (通报, 督办, 维修)
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in self._departments:
                continue
            obj = ep.load()
            dept = obj() if callable(obj) and not isinstance(obj, Department) else obj
            if not isinstance(dept, Department):
                raise RegistryError(f"入口 {ep.name} ({ep.value}) 不是 Department")
            self.register(dept)
        if spine_types.is_file():
            cases.load_types(spine_types)

    def get(self, name: str) -> Department:
        self.load()
        if name not in self._departments:
            raise RegistryError(f"未登记的部门“{name}”；已登记：{'、'.join(self._departments) or '无'}")
        return self._departments[name]

    def all(self) -> list[Department]:
        self.load()
        return list(self._departments.values())

    def by_agency(self, agency: str) -> Department | None:
        return next((d for d in self.all() if d.agency == agency), None)

    def resolver(self, name: str) -> Callable:
        """A linkage target resolver registered as "department.name"."""
        dept, _, fn = name.partition(".")
        d = self.get(dept)
        if fn not in d.resolvers:
            raise RegistryError(f"部门 {dept} 没有登记联动对象“{fn}”；已登记：{'、'.join(d.resolvers) or '无'}")
        return d.resolvers[fn]

    def migrate(self, revision: str, direction: str, op) -> None:
        """Run the departments' steps of hub migration `revision` ("upgrade" or "downgrade"): the
        migration file names no department."""
        steps = [d.migrations[revision] for d in self.all() if revision in d.migrations]
        if not steps:
            raise RegistryError(f"迁移 {revision} 没有部门登记的步骤")
        for up, down in steps:
            resolve(up if direction == "upgrade" else down)(op)

    def metadata(self):
        """The hub's whole schema: the core's tables and every department's own (`tables`), as one
        MetaData (what the migrations at head build; tests compare a migrated hub with it)."""
        import sqlalchemy as sa

        from workbench.store.schema import metadata as core

        whole = sa.MetaData(naming_convention=core.naming_convention)
        for t in core.tables.values():
            t.to_metadata(whole)
        for d in self.all():
            for t in d.tables:
                if t.name in whole.tables:
                    raise RegistryError(f"部门 {d.name} 登记的表 {t.name} 与已有的表重名")
                t.to_metadata(whole)
        return whole

    def alert_categories(self) -> dict[str, str]:
        """Every registered alert category → the department (name) that raises it."""
        return {c: d.name for d in self.all() for c in d.alert_categories}


registry = _Registry()
register = registry.register
load = registry.load
get = registry.get
departments = registry.all
hub_metadata = registry.metadata
migrate = registry.migrate


def resolve(ref: str):
    """The object named by "module:attribute"."""
    mod, _, attr = ref.partition(":")
    obj = import_module(mod)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
