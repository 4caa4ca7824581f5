"""城市安全 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.registry import Department

DEPARTMENT = Department(
    name="safety",
    label="城市安全",
    agency="应急管理局",
    cli="workbench.safety.cli:safety",
    dashboard="safety.ipynb",
    linkage=Path(__file__).with_name("linkage.yaml"),
    analyse="workbench.safety.warnings:run_engine",
)
