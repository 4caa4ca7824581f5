"""城市事件 registers what it brings to the spine (workbench.registry): its case type
(city_event, GB/T 30428) and the store its cases live in (city_events / event_history), the
row checks and the loader of city_events (dispatch on intake, through the case engine: the
same for `workbench ingest city_events` and `workbench events intake`), the loader of
event_history (a source system's own steps), and the escalation alert it raises."""
from __future__ import annotations

from pathlib import Path

from workbench.events import flow, intake
from workbench.events.mqtt import DROPPED_CATEGORY
from workbench.events.sla import ESCALATION_CATEGORY
from workbench.registry import Department

DEPARTMENT = Department(
    name="events",
    label="城市事件",
    agency="城市管理和综合执法局",
    checks={"city_events": intake.ROW_CHECKS},
    loaders={"city_events": intake.LOADER, "event_history": intake.load_history},
    case_types=flow.CASE_TYPES_FILE,
    case_stores=(flow.STORE,),
    tables=(flow.OPEN_EVENTS,),   # the open cases kept apart (migration 0017)
    migrations={"0017": ("workbench.events.flow:upgrade_0017", "workbench.events.flow:downgrade_0017")},
    alert_categories=(ESCALATION_CATEGORY, DROPPED_CATEGORY),
    cli="workbench.events.cli:events",
    dashboard="events.ipynb",
    linkage=Path(__file__).with_name("linkage.yaml"),
    analyse=None,
)
