"""城市事件: urban event intake, case flow, dispatch, deadlines and patterns (GB/T 30428)."""
