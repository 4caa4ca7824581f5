"""农贸市场快检: intake, bulletin figures, surveillance, data integrity and follow-up of
the rapid tests inspectors run at the city's farmers' markets (docs/market.md)."""
