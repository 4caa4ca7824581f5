"""Chinese labels for what the hub holds: datasets, departments, columns and codes.

Dataset and column labels come from the dataset specs in `workbench.store.schema`, so a
column is called the same on every screen and in every department's file.
"""
from __future__ import annotations

from workbench.geo import NAMES as DISTRICTS
from workbench.store.schema import DATASETS

# The city's departments, in the order they are listed on screens (DOMAIN.md).
DEPARTMENTS: tuple[str, ...] = (
    "市场监管局", "城市管理和综合执法局", "应急管理局", "住房和城乡建设局", "水务", "燃气",
    "公安交警", "生态环境局", "教育局", "政法委/综治中心", "各街道办事处", "12345 热线", "一网统管",
)

# Short names for tight spaces (cards, chart ticks).
DEPARTMENT_SHORT: dict[str, str] = {
    "市场监管局": "市场监管",
    "城市管理和综合执法局": "城管执法",
    "应急管理局": "应急管理",
    "住房和城乡建设局": "住建",
    "公安交警": "交警",
    "生态环境局": "生态环境",
    "政法委/综治中心": "综治中心",
    "各街道办事处": "街道",
    "12345 热线": "12345",
}

# Columns of the hub's own bookkeeping (ingest_files, quarantine, dataset_status).
HUB_COLUMNS: dict[str, str] = {
    "dataset": "数据集",
    "label": "数据集",
    "department": "责任部门",
    "rows": "记录数",
    "first_ts": "最早记录",
    "last_ts": "最新记录",
    "last_ingest": "最近接入",
    "files": "文件数",
    "quarantined": "隔离行数",
    "file_id": "文件序号",
    "sha256": "文件指纹",
    "file_sha256": "文件指纹",
    "filename": "文件名",
    "size_bytes": "文件大小",
    "raw_path": "原始文件",
    "encoding": "编码",
    "received_at": "接收时间",
    "finished_at": "完成时间",
    "rows_read": "读取行数",
    "loaded": "入库行数",
    "duplicates": "重复行数",
    "status": "状态",
    "message": "说明",
    "id": "序号",
    "line": "行号",
    "reason": "隔离原因",
    "row_json": "原始内容",
    "quarantined_at": "隔离时间",
    "detail": "问题值",
    "profile": "接入配置",
    "notes": "接入说明",
    "row_key": "记录主键",
    "kept_at": "保留时间",
    "corrected_at": "更正时间",
}

# Coded values, per column name, shown in Chinese.
VALUE_LABELS: dict[str, dict[str, str]] = {
    "ingest_status": {"running": "进行中", "done": "已完成", "failed": "失败", "skipped": "已跳过",
                      "interrupted": "已中断"},
    "severity": {"critical": "严重", "warning": "警告", "info": "提示"},
    "violation_status": {"open": "待处理", "notified": "已通知", "rectified": "已整改", "verified": "已复核"},
    "weather_kind": {"observed": "实况", "forecast": "预报"},
    "weather_resolution": {"hourly": "逐时", "daily": "日值"},
    "loc_precision": {"point": "坐标点位", "street": "街道", "district": "区县", "city": "仅到全市"},
    "encoding": {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "gbk": "GBK", "gb18030": "GB18030", "gb2312": "GB2312"},
}

# Which columns hold coded values: (dataset or "*", column) → VALUE_LABELS kind.
CODED_COLUMNS: dict[tuple[str, str], str] = {
    ("*", "severity"): "severity",
    ("canteen_violations", "status"): "violation_status",
    ("weather", "kind"): "weather_kind",
    ("weather", "resolution"): "weather_resolution",
    ("*", "loc_precision"): "loc_precision",
    ("ingest_files", "status"): "ingest_status",
}

INGEST_STATUS = VALUE_LABELS["ingest_status"]
SEVERITY = VALUE_LABELS["severity"]


def dataset_label(name: str) -> str:
    """The Chinese name of a dataset (`rapid_tests` → 农贸市场快检); unknown names pass through."""
    ds = DATASETS.get(name)
    return ds.label if ds else str(name)


def dataset_department(name: str) -> str:
    ds = DATASETS.get(name)
    return ds.department if ds else ""


def department_label(name: str, short: bool = False) -> str:
    return DEPARTMENT_SHORT.get(name, name) if short else name


def column_label(column: str, dataset: str | None = None) -> str:
    """The Chinese label of a column: the dataset's field label, else the hub's own."""
    ds = DATASETS.get(dataset) if dataset else None
    if ds is not None:
        for f in ds.fields:
            if f.name == column:
                return f.label
    if column in HUB_COLUMNS:
        return HUB_COLUMNS[column]
    for other in DATASETS.values():  # a shared column (district, ts, ...) of any dataset
        for f in other.fields:
            if f.name == column:
                return f.label
    return column


def value_label(kind: str, value) -> str:
    """A coded value in Chinese (`value_label("severity", "critical")` → 严重)."""
    if value is None:
        return ""
    return VALUE_LABELS.get(kind, {}).get(str(value), str(value))


def code_kind(dataset: str | None, column: str) -> str | None:
    """The VALUE_LABELS kind of a coded column, or None."""
    return CODED_COLUMNS.get((dataset or "", column)) or CODED_COLUMNS.get(("*", column))


def show_value(dataset: str | None, column: str, value) -> str:
    """A stored value as a person reads it: coded values in Chinese, others as text."""
    kind = code_kind(dataset, column)
    return value_label(kind, value) if kind else ("" if value is None else str(value))


def dataset_options(names=None, *, all_label: str | None = None) -> list[tuple[str, str]]:
    """(label, name) pairs for a dropdown, in the order the hub lists its datasets."""
    names = list(DATASETS) if names is None else [n for n in DATASETS if n in set(names)] + \
        [n for n in names if n not in DATASETS]
    opts = [(f"{dataset_label(n)}（{dataset_department(n) or '未知部门'}）", n) for n in names]
    if all_label:
        opts.insert(0, (all_label, ""))
    return opts


__all__ = [
    "DEPARTMENTS", "DEPARTMENT_SHORT", "DISTRICTS", "HUB_COLUMNS", "VALUE_LABELS", "INGEST_STATUS",
    "SEVERITY", "CODED_COLUMNS", "code_kind", "show_value", "dataset_label", "dataset_department", "department_label", "column_label",
    "value_label", "dataset_options",
]
