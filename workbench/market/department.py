"""农贸市场快检 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.market import daily, followup, intake
from workbench.registry import Department

HERE = Path(__file__).parent

DEPARTMENT = Department(
    name="market",
    label="农贸市场快检",
    agency="市场监管局",
    # an unknown or ambiguous market is the hub's judgement (ingest.References), not a second one here
    checks={"rapid_tests": intake.CHECKS},
    # the follow-up ledger is stored as ever and moves each positive's case (market_followup)
    loaders={"market_followups": followup.load_ledger,
             # a positive reaches the alerts in the same transaction as its record, whichever verb took the file in
             # (its prepare resolves 摊位号 within the market to the stalls registry's stall_id)
             "rapid_tests": intake.LOADER},
    case_types=HERE / "case_types.yaml",
    tables=(daily.market_daily,),   # the rapid tests' daily summary (migration 0015)
    migrations={"0015": ("workbench.market.daily:upgrade_0015", "workbench.market.daily:downgrade_0015")},
    alert_categories=("快检阳性", "快检阳性率上升", "快检阳性处置逾期", "快检数据真实性"),
    resolvers={"followup_cases": followup.followup_cases},
    cli="workbench.market.cli:market",
    dashboard="market.ipynb",
    linkage=HERE / "linkage.yaml",
    analyse="workbench.market.analysis:run",
)
