"""农贸市场快检 registers what it brings to the spine (workbench.registry)."""
from __future__ import annotations

from pathlib import Path

from workbench.market import followup, intake
from workbench.registry import Department
from workbench.store.schema import RowCheck

HERE = Path(__file__).parent

DEPARTMENT = Department(
    name="market",
    label="农贸市场快检",
    agency="市场监管局",
    checks={"rapid_tests": (
        RowCheck("百分比读数超过 100%", intake.percent_over_100),
        RowCheck("胶体金卡读数应为 0 或 1", intake.card_not_binary),
        RowCheck("检测结果与检测值、判定限值不符", intake.result_contradicts_reading),
        RowCheck("市场编号不在农贸市场名录中", intake.unknown_market),
        RowCheck("样品名称不在商品目录中", intake.unknown_commodity),
    )},
    # the follow-up ledger is stored as ever and moves each positive's case (market_followup)
    loaders={"market_followups": followup.load_ledger,
             # a positive reaches the alerts in the same transaction as its record, whichever verb took the file in
             "rapid_tests": intake.load_tests},
    case_types=HERE / "case_types.yaml",
    alert_categories=("快检阳性", "快检阳性率上升", "快检阳性处置逾期", "快检数据真实性"),
    resolvers={"followup_cases": followup.followup_cases},
    cli="workbench.market.cli:market",
    dashboard="market.ipynb",
    linkage=HERE / "linkage.yaml",
    analyse="workbench.market.analysis:run",
)
