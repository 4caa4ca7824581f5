"""城市事件 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.registry import Department

DEPARTMENT = Department(
    name="events",
    label="城市事件",
    agency="城市管理和综合执法局",
    cli="workbench.events.cli:events",
    dashboard="events.ipynb",
    linkage=Path(__file__).with_name("linkage.yaml"),
)
