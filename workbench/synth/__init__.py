"""Seeded, realistic sample data for the whole city of Zhuzhou (株洲).

`synth_city` makes the city for a date range, writes it as the files departments send
(GBK CSV, XLSX with title rows, JSON, UTF-8-BOM CSV) and loads them through ingest;
`write_rapid_tests_csv` streams a large rapid-test CSV for ingest benchmarks.
"""
from workbench.synth.bench import write_rapid_tests_csv
from workbench.synth.city import SynthResult, generate, synth_city, write_city

__all__ = ["SynthResult", "generate", "synth_city", "write_city", "write_rapid_tests_csv"]
