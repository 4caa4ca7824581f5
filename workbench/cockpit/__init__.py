"""一网统管 cockpit: the city overview (城市运行总览) and the leaders' daily report (城市运行日报).

Logic only, no widgets: `indicators` (GB/T 30428.4-style evaluation per department, pure
functions over DataFrames), `overview` (everything the overview page shows, as data) and
`daily` (the daily report's content). The spine's modules are its only sources: the case
engine's `frame`, the hub's tables; it imports no department.
"""
