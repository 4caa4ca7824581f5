"""明厨亮灶 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.registry import Department

DEPARTMENT = Department(
    name="canteen",
    label="明厨亮灶",
    agency="市场监管局",
    cli="workbench.canteen.cli:canteen",
    dashboard="canteen.ipynb",
    linkage=Path(__file__).with_name("linkage.yaml"),
)
