"""综合治理 + 城市安全: hazard ledger, grid risk, cold-weather warnings."""
