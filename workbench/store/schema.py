"""The hub's datasets: one declarative spec per dataset, and the tables built from it.

A dataset spec says which columns a table has, how each is typed, which are required,
what a column may be called in a department's file (Chinese or English), the bounds a
value must respect, and the natural key that makes ingest idempotent. The SQLAlchemy
tables are derived from the specs, so the ingest validator and the database agree.

All timestamps are stored as naive UTC (`ts` columns); they are shown in Asia/Shanghai.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # str | int | float | ts | date
    label: str  # Chinese label shown on screens
    required: bool = False
    aliases: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    length: int = 64
    default_from: str | None = None  # copy another field when this one is empty
    stored: bool = True  # False: read from files and handed to the dataset's loader, not a column
    # issue 12 (data as departments send it)
    unit: str | None = None        # the unit values are stored in (℃, mm, m/s, %); files may declare another
    unit_field: str | None = None  # a unit read from this column's header is written into that column
    refers: str | None = None      # a registry (markets, canteens, districts): names become codes
    personal: bool = False         # a citizen's name / phone / ID number: stored apart (personal_data)
    free_text: bool = False        # phone and ID numbers typed into it are masked; originals kept apart
    criterion: str | None = None   # a judging standard as written ("≥50%", "阴性"): its number is kept here,
                                   # the text as written in the named column


@dataclass(frozen=True)
class RowCheck:
    """A rule over several columns; `bad` returns a boolean Series of failing rows; `detail`,
    when given, the text per row saying which values failed it (the quarantine's detail)."""

    reason: str
    bad: Callable
    detail: Callable | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    department: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    ts_field: str | None = "ts"
    checks: tuple[RowCheck, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = field(default=())
    # a record re-sent with the same key and other content: "newest" updates the row and keeps the
    # old values (row_versions); "first" keeps what the hub holds and counts the re-send as a conflict
    corrections: str = "newest"

    @property
    def table(self) -> sa.Table:
        return metadata.tables[self.name]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required and not f.default_from]


PRECISIONS = ("point", "street", "district", "city")

# 0014: the big tables, partitioned by month on this time column on PostgreSQL (workbench.store.partitions;
# SQLite keeps plain tables). Their natural key stays unique through a key registry (docs/scale.md).
PARTITIONED: dict[str, str] = {"city_events": "ts", "canteen_violations": "ts", "rapid_tests": "ts"}


# Shared columns, reused across datasets so names and labels stay identical.
def _geo(required: bool = False) -> tuple[Field, ...]:
    return (
        Field("district", "str", "区县", required, ("区县", "区", "所属区县", "行政区"), refers="districts"),
        Field("street", "str", "街道", False, ("街道", "街道办", "所属街道", "乡镇街道")),
        Field("grid_id", "str", "网格编号", False, ("网格", "网格编号", "所属网格", "grid")),
        Field("lat", "float", "纬度", False, ("纬度", "latitude"), min=-90, max=90),
        Field("lon", "float", "经度", False, ("经度", "longitude", "lng", "long"), min=-180, max=180),
        # 0012: how precisely the record is placed: point (coordinates), street, district, city
        Field("loc_precision", "str", "定位精度", False, ("定位精度",), choices=PRECISIONS),
    )


def _later(a: str, b: str) -> Callable:
    """Rows where column `a` is before column `b` (both present)."""

    def bad(df):
        return df[a].notna() & df[b].notna() & (df[a] < df[b])

    return bad


DATASETS: dict[str, Dataset] = {}


def _register(ds: Dataset) -> Dataset:
    DATASETS[ds.name] = ds
    return ds


_register(Dataset(
    "grids", "网格", "政法委/综治中心",
    (
        Field("grid_id", "str", "网格编号", True, ("网格编号", "网格", "grid")),
        Field("district", "str", "区县", True, ("区县", "区", "所属区县")),
        Field("street", "str", "街道", True, ("街道", "所属街道")),
        Field("lat", "float", "纬度", False, ("纬度", "latitude"), min=-90, max=90),
        Field("lon", "float", "经度", False, ("经度", "longitude"), min=-180, max=180),
        Field("worker", "str", "网格员", False, ("网格员", "网格员姓名")),
        Field("population", "int", "常住人口", False, ("常住人口", "人口"), min=0),
    ),
    key=("grid_id",), ts_field=None,
))

_register(Dataset(
    "markets", "农贸市场", "市场监管局",
    (
        Field("market_id", "str", "市场编号", True, ("市场编号", "市场代码", "市场id")),
        Field("name", "str", "市场名称", True, ("市场名称", "名称"), length=128),
        *_geo(),
        Field("market_type", "str", "市场类型", False, ("市场类型", "类型")),
        Field("open_time", "str", "开市时间", False, ("开市时间", "营业开始")),
        Field("close_time", "str", "闭市时间", False, ("闭市时间", "营业结束")),
        Field("stall_count", "int", "摊位数", False, ("摊位数", "摊位数量"), min=0),
    ),
    key=("market_id",), ts_field=None,
))

_register(Dataset(
    "stalls", "摊位", "市场监管局",
    (
        Field("stall_id", "str", "摊位编号", True, ("摊位编号", "摊位代码")),
        Field("market_id", "str", "市场编号", True, ("市场编号", "市场代码", "市场名称"), refers="markets"),
        Field("stall_no", "str", "摊位号", False, ("摊位号",)),
        Field("vendor", "str", "经营户", False, ("经营户", "经营者", "摊主", "经营户名称"), length=128),
        Field("category", "str", "经营类别", False, ("经营类别", "类别", "经营品类")),
    ),
    key=("stall_id",), ts_field=None,
))

_register(Dataset(
    "canteens", "学校食堂", "教育局",
    (
        Field("canteen_id", "str", "食堂编号", True, ("食堂编号", "食堂代码")),
        Field("name", "str", "食堂名称", True, ("食堂名称", "名称"), length=128),
        Field("school_name", "str", "学校名称", False, ("学校名称", "学校"), length=128),
        Field("school_type", "str", "学校类型", False, ("学校类型", "学段")),
        *_geo(),
        Field("students", "int", "就餐学生数", False, ("就餐学生数", "学生数", "就餐人数"), min=0),
        Field("staff_hours", "str", "从业时间", False, ("从业时间", "后厨作业时间", "作业时段")),
        Field("manager", "str", "食品安全管理员", False, ("食品安全管理员", "负责人")),
    ),
    key=("canteen_id",), ts_field=None,
))

_register(Dataset(
    "cameras", "摄像头", "市场监管局",
    (
        Field("camera_id", "str", "摄像头编号", True, ("摄像头编号", "设备编号", "通道编号")),
        Field("canteen_id", "str", "食堂编号", True, ("食堂编号", "食堂名称"), refers="canteens"),
        Field("name", "str", "摄像头名称", False, ("摄像头名称", "名称"), length=128),
        Field("location", "str", "安装位置", False, ("安装位置", "位置")),
        Field("source_url", "str", "视频源", False, ("视频源", "取流地址", "rtsp"), length=512),
    ),
    key=("camera_id",), ts_field=None,
))

_register(Dataset(
    "canteen_suppliers", "食堂采购来源", "市场监管局",
    (
        Field("canteen_id", "str", "食堂编号", True, ("食堂编号", "食堂名称"), refers="canteens"),
        Field("market_id", "str", "市场编号", True, ("市场编号", "供货市场编号", "市场名称", "供货市场"), refers="markets"),
        Field("since", "date", "合作起始日期", False, ("合作起始日期", "起始日期")),
        Field("goods", "str", "采购品类", False, ("采购品类", "品类")),
    ),
    key=("canteen_id", "market_id"), ts_field=None,
))

_register(Dataset(
    "canteen_violations", "明厨亮灶违规", "市场监管局",
    (
        Field("violation_id", "str", "违规编号", True, ("违规编号", "事件编号", "告警编号")),
        Field("ts", "ts", "开始时间", True, ("开始时间", "告警时间", "发生时间")),
        Field("ts_end", "ts", "结束时间", False, ("结束时间",)),
        Field("camera_id", "str", "摄像头编号", True, ("摄像头编号", "设备编号")),
        Field("canteen_id", "str", "食堂编号", True, ("食堂编号", "食堂名称"), refers="canteens"),
        Field("district", "str", "区县", False, ("区县",), refers="districts"),
        Field("violation_class", "str", "违规类型", True, ("违规类型", "告警类型", "类别")),
        Field("severity", "str", "严重程度", False, ("严重程度", "等级"),
              choices=("critical", "warning", "info")),
        Field("score", "float", "置信度", False, ("置信度", "得分"), min=0, max=1),
        Field("snapshot", "str", "抓拍图", False, ("抓拍图", "快照"), length=512),
        # 整改状态 of a platform export: not a column (migration 0007); the canteen loader applies it
        # to the violation's rectification case through the case engine (workbench.cases.sync)
        Field("status", "str", "整改状态", False, ("整改状态", "状态"), stored=False,
              choices=("open", "notified", "rectified", "verified", "待处理", "已通知", "已整改", "退回整改", "已复核")),
        Field("source", "str", "来源", False, ("来源",)),
        # camera AI pipeline (workbench.canteen; migration 0005)
        Field("updated_at", "ts", "更新时间", False, ("更新时间",)),
        Field("track_ids", "str", "目标编号", False, ("目标编号", "跟踪编号"), length=256),
        Field("frames", "int", "命中帧数", False, ("命中帧数",), min=0),
        Field("clean_snapshot", "str", "原始抓拍图", False, ("原始抓拍图",), length=512),
    ),
    key=("violation_id",),
    checks=(RowCheck("结束时间早于开始时间", _later("ts_end", "ts")),),
    indexes=(("canteen_id", "ts"), ("ts",)),   # ts: 0016, the newest violation without a scan
))

_register(Dataset(
    "rapid_tests", "农贸市场快检", "市场监管局",
    (
        Field("test_id", "str", "检测编号", True, ("检测编号", "样品编号", "检测单号")),
        Field("ts", "ts", "检测时间", True, ("检测时间", "检测日期")),
        Field("sampled_at", "ts", "采样时间", False, ("采样时间", "抽样时间")),
        Field("market_id", "str", "市场编号", True, ("市场编号", "市场代码", "市场名称", "市场"), refers="markets"),
        Field("stall_id", "str", "摊位编号", False, ("摊位编号", "摊位号")),
        Field("vendor", "str", "经营户", False, ("经营户", "被检单位", "摊主"), length=128),
        Field("district", "str", "区县", False, ("区县",), refers="districts"),
        Field("commodity", "str", "样品名称", True, ("样品名称", "商品名称", "品名")),
        Field("category", "str", "样品类别", False, ("样品类别", "类别", "商品类别")),
        Field("origin", "str", "产地", False, ("产地", "产地类型", "来源地"), choices=("本地", "外地")),
        Field("test_item", "str", "检测项目", True, ("检测项目", "项目")),
        Field("method", "str", "检测方法", False, ("检测方法", "方法")),
        Field("reading", "float", "检测值", False, ("检测值", "抑制率", "读数", "检测结果值"), min=0, unit_field="unit"),
        Field("unit", "str", "单位", False, ("单位", "计量单位")),
        Field("threshold", "float", "判定限值", False, ("判定限值", "限值", "阈值", "判定标准"), min=0, criterion="criterion"),
        # 0012: the judging standard as the file wrote it ("≥50%", "阴性"); threshold holds its number
        Field("criterion", "str", "判定标准", False, ("判定标准原文",), length=64),
        Field("result", "str", "检测结果", True, ("检测结果", "结果", "判定结果"), choices=("阴性", "阳性")),
        Field("reagent_batch", "str", "试剂批号", False, ("试剂批号", "批号")),
        Field("reagent_expiry", "date", "试剂有效期", False, ("试剂有效期", "有效期至")),
        Field("device_id", "str", "设备编号", False, ("设备编号", "仪器编号", "检测设备", "检测仪器")),
        Field("inspector_id", "str", "检测员", False, ("检测员", "检测人员", "检测人")),
        Field("source", "str", "来源", False, ("来源",)),
    ),
    key=("test_id",),
    checks=(
        RowCheck("检测时间早于采样时间", _later("ts", "sampled_at")),
    ),  # the market's own row rules are registered by workbench.market (department.py)
    indexes=(("market_id", "ts"), ("ts",), ("stall_id", "sampled_at")),   # 0015: market_daily's batch test
))


_register(Dataset(
    "market_followups", "快检阳性处置", "市场监管局",
    (
        Field("test_id", "str", "检测编号", True, ("检测编号", "样品编号", "阳性检测编号")),
        Field("ts", "ts", "登记时间", True, ("登记时间", "处置登记时间", "发现时间")),
        Field("deadline", "ts", "处置时限", False, ("处置时限", "整改时限", "复查期限")),
        Field("lab_sent_at", "ts", "送检时间", False, ("送检时间", "复检送样时间")),
        Field("lab_result", "str", "复检结果", False, ("复检结果", "实验室复检结果"), choices=("阴性", "阳性")),
        Field("lab_result_at", "ts", "复检报告时间", False, ("复检报告时间", "复检时间")),
        Field("destroyed_kg", "float", "销毁数量(kg)", False, ("销毁数量", "销毁数量(kg)", "销毁重量", "销毁(kg)"),
              min=0, max=100000),
        Field("destroyed_at", "ts", "销毁时间", False, ("销毁时间",)),
        Field("stall_retest_at", "ts", "摊位复查时间", False, ("摊位复查时间", "跟踪复查时间", "复查时间")),
        Field("stall_retest_result", "str", "摊位复查结果", False, ("摊位复查结果", "复查结果"), choices=("阴性", "阳性")),
        Field("handler", "str", "处置人", False, ("处置人", "经办人")),
        Field("note", "str", "处置说明", False, ("处置说明", "备注", "说明"), length=512),
    ),
    key=("test_id",),
    checks=(
        RowCheck("复检报告时间早于送检时间", _later("lab_result_at", "lab_sent_at")),
        RowCheck("处置时限早于登记时间", _later("deadline", "ts")),
        RowCheck("摊位复查时间早于登记时间", _later("stall_retest_at", "ts")),
    ),
))

_register(Dataset(
    "city_events", "城市事件", "城市管理和综合执法局",
    (
        Field("event_id", "str", "事件编号", True, ("事件编号", "案卷编号", "工单编号", "service_request_id")),
        Field("ts", "ts", "上报时间", True, ("上报时间", "受理时间", "来电时间", "requested_datetime", "created_date")),
        Field("updated_at", "ts", "更新时间", False, ("更新时间", "updated_datetime")),
        Field("source", "str", "来源", False, ("来源", "事件来源", "渠道")),
        Field("external_id", "str", "外部编号", False, ("外部编号", "来源编号")),
        Field("event_group", "str", "大类", False, ("大类", "事件大类")),
        Field("event_class", "str", "小类", True, ("小类", "事件类型", "事件小类", "诉求类型", "service_code")),
        Field("description", "str", "问题描述", False, ("问题描述", "描述", "内容", "诉求内容"), length=1024,
              free_text=True),
        *_geo(),
        Field("address", "str", "地址", False, ("地址", "发生地址", "诉求地址", "事发地址"), length=256,
              free_text=True),  # operators type callers' numbers into addresses too
        Field("status", "str", "状态", False, ("状态", "办理状态")),
        Field("department", "str", "责任部门", False, ("责任部门", "处置部门", "agency_responsible")),
        Field("urgency", "str", "紧急程度", False, ("紧急程度",), choices=("紧急", "一般")),
        Field("deadline", "ts", "处置时限", False, ("处置时限", "截止时间", "expected_datetime")),
        Field("closed_at", "ts", "结案时间", False, ("结案时间", "办结时间")),
        Field("duplicate_of", "str", "合并至", False, ("合并至", "主案卷编号")),  # 0004: a merged duplicate's case
        Field("case_type", "str", "案件类型", False, ("案件类型",)),  # 0006: city_event (default) / inspection_task
        Field("alert_id", "str", "来源告警", False, ("来源告警", "告警编号")),  # 0006: the alert it came from (联动)
        # the caller (12345): personal data, kept apart in personal_data, never in the event row
        Field("reporter_name", "str", "诉求人", False, ("诉求人", "来电人", "反映人", "联系人"), stored=False, personal=True),
        Field("reporter_phone", "str", "联系电话", False, ("联系电话", "来电号码", "联系方式", "诉求人电话"),
              stored=False, personal=True),
        Field("reporter_id_no", "str", "证件号码", False, ("证件号码", "身份证号", "身份证号码"), stored=False, personal=True),
    ),
    key=("event_id",),
    checks=(
        RowCheck("更新时间早于上报时间", _later("updated_at", "ts")),
        RowCheck("结案时间早于上报时间", _later("closed_at", "ts")),
    ),
    indexes=(("ts",), ("status", "department"), ("event_class", "ts"), ("external_id",), ("status", "deadline"),
             ("status", "ts"), ("status", "department", "deadline"),
             ("status", "case_type", "department", "district", "deadline")),   # 0016: counts of open cases
))

_register(Dataset(
    "event_history", "事件流转记录", "城市管理和综合执法局",
    (
        Field("event_id", "str", "事件编号", True, ("事件编号", "案卷编号")),
        Field("ts", "ts", "办理时间", True, ("办理时间", "时间")),
        Field("status", "str", "环节", True, ("环节", "状态", "办理环节")),
        Field("actor", "str", "办理人", False, ("办理人", "操作人")),
        Field("department", "str", "办理部门", False, ("办理部门", "部门")),  # 0006
        Field("note", "str", "办理意见", False, ("办理意见", "备注", "说明"), length=512),
    ),
    key=("event_id", "ts", "status"),
    indexes=(("event_id",), ("ts",)),  # ts: 0011, the newest step (数据截至) without a scan
))

_register(Dataset(
    "hazard_sites", "隐患点位", "应急管理局",
    (
        Field("site_id", "str", "点位编号", True, ("点位编号", "场所编号")),
        Field("site_type", "str", "场所类型", True, ("场所类型", "类型")),
        Field("name", "str", "场所名称", True, ("场所名称", "名称"), length=128),
        Field("address", "str", "地址", False, ("地址", "详细地址"), length=256),
        *_geo(),
        Field("owner", "str", "责任人", False, ("责任人", "负责人")),
        Field("phone", "str", "联系电话", False, ("联系电话", "电话")),
    ),
    key=("site_id",), ts_field=None,
))

_register(Dataset(
    "hazards", "隐患台账", "应急管理局",
    (
        Field("hazard_id", "str", "隐患编号", True, ("隐患编号",)),
        Field("site_id", "str", "点位编号", True, ("点位编号", "场所编号")),
        Field("hazard_type", "str", "隐患类型", True, ("隐患类型", "类型")),
        Field("level", "str", "隐患等级", True, ("隐患等级", "等级"), choices=("一般", "重大")),
        Field("description", "str", "隐患描述", False, ("隐患描述", "描述"), length=512),
        Field("ts", "ts", "发现时间", True, ("发现时间", "排查时间", "发现日期")),
        Field("deadline", "ts", "整改期限", False, ("整改期限", "整改时限")),
        Field("rectified_at", "ts", "整改完成时间", False, ("整改完成时间", "整改时间")),
        Field("verified_at", "ts", "验收时间", False, ("验收时间", "复核时间")),
        Field("status", "str", "整改状态", False, ("整改状态", "状态")),
        Field("district", "str", "区县", False, ("区县",)),
        Field("department", "str", "责任部门", False, ("责任部门", "监管部门")),
    ),
    key=("hazard_id",),
    checks=(
        RowCheck("整改期限早于发现时间", _later("deadline", "ts")),
        RowCheck("整改完成时间早于发现时间", _later("rectified_at", "ts")),
        RowCheck("验收时间早于整改完成时间", _later("verified_at", "rectified_at")),
    ),
))

_register(Dataset(
    "inspections", "巡查记录", "应急管理局",
    (
        Field("inspection_id", "str", "巡查编号", True, ("巡查编号", "检查编号")),
        Field("ts", "ts", "巡查时间", True, ("巡查时间", "检查时间", "检查日期")),
        Field("site_id", "str", "点位编号", True, ("点位编号", "场所编号")),
        Field("hazard_id", "str", "隐患编号", False, ("隐患编号",)),
        Field("inspector", "str", "检查人", False, ("检查人", "巡查人员")),
        Field("result", "str", "检查结果", False, ("检查结果", "结果")),
        Field("note", "str", "备注", False, ("备注", "说明"), length=512),
    ),
    key=("inspection_id",),
))

_register(Dataset(
    "weather", "气象观测", "应急管理局",
    (
        Field("station_id", "str", "站点编号", True, ("站点编号", "站号", "station", "origin", "station_id")),
        Field("ts", "ts", "观测时间", True, ("观测时间", "时间", "日期", "观测日期", "dateobserved", "time_hour", "datetime", "date")),
        Field("issued_at", "ts", "发布时间", False, ("发布时间", "预报发布时间", "dateissued"), default_from="ts"),
        Field("kind", "str", "数据类型", False, ("数据类型",), choices=("observed", "forecast")),
        Field("district", "str", "区县", False, ("区县",), refers="districts"),
        Field("lat", "float", "纬度", False, ("纬度",), min=-90, max=90),
        Field("lon", "float", "经度", False, ("经度",), min=-180, max=180),
        # hourly observations (or forecasts); a daily record says so in `resolution` (0012)
        Field("temperature", "float", "气温(°C)", False, ("气温", "温度", "temp", "temperature", "平均气温"),
              min=-80, max=70, unit="℃"),
        Field("precipitation", "float", "降水量(mm)", False, ("降水量", "降水", "precip", "precipitation", "prcp"),
              min=0, max=1000, unit="mm"),
        Field("wind_speed", "float", "风速(m/s)", False, ("风速", "windspeed", "wind_speed", "wind speed", "平均风速"),
              min=0, max=120, unit="m/s"),
        Field("road_temperature", "float", "路面温度(°C)", False, ("路面温度",), min=-80, max=90, unit="℃"),
        Field("humidity", "float", "相对湿度(%)", False, ("相对湿度", "湿度", "relativehumidity", "humid", "humidity"),
              min=0, max=100, unit="%"),
        Field("source", "str", "来源", False, ("来源",)),
        # 0012: the time resolution of the record, and what a daily record carries besides
        Field("resolution", "str", "时间分辨率", False, ("时间分辨率", "观测频次"), choices=("hourly", "daily")),
        Field("temperature_min", "float", "最低气温(°C)", False, ("最低气温", "日最低气温", "tmin", "temp_min"),
              min=-80, max=70, unit="℃"),
        Field("temperature_max", "float", "最高气温(°C)", False, ("最高气温", "日最高气温", "tmax", "temp_max"),
              min=-80, max=70, unit="℃"),
        # snow water equivalent, as CMA reports 降雪量; public sources' "snow"/"snowfall" is usually the
        # depth of new snow (GHCN SNOW mm, Open-Meteo cm), about ten times more: no English alias
        Field("snowfall", "float", "降雪量(mm)", False, ("降雪量", "降雪", "降雪量(水当量)"), min=0, max=1000,
              unit="mm"),
    ),
    key=("station_id", "ts", "issued_at"),
    indexes=(("ts",),),
))

_register(Dataset(
    "alerts", "预警告警", "一网统管",
    (
        Field("alert_id", "str", "告警编号", True, ("告警编号", "预警编号")),
        Field("ts", "ts", "发布时间", True, ("发布时间", "告警时间")),
        Field("department", "str", "部门", True, ("部门", "来源部门")),
        Field("category", "str", "告警类别", True, ("告警类别", "类别")),
        Field("severity", "str", "级别", True, ("级别", "严重程度"), choices=("info", "warning", "critical")),
        Field("title", "str", "标题", True, ("标题",), length=256),
        Field("area", "str", "影响区域", False, ("影响区域", "区域"), length=256),
        Field("district", "str", "区县", False, ("区县",)),
        Field("valid_from", "ts", "生效时间", False, ("生效时间",)),
        Field("valid_to", "ts", "失效时间", False, ("失效时间",)),
        Field("status", "str", "状态", False, ("状态",), choices=("生效中", "待核查", "已处置", "已解除")),
        Field("source", "str", "来源", False, ("来源",)),
        Field("evidence", "str", "证据", False, ("证据",), length=4096),
        Field("level", "str", "预警等级", False, ("预警等级", "颜色等级"), choices=("蓝色", "黄色", "橙色", "红色")),
        Field("updated_at", "ts", "更新时间", False, ("更新时间",)),
        Field("subject", "str", "告警对象", False, ("告警对象",), length=256),  # 0006: dataset:id it is about
        Field("attrs", "str", "关联键", False, ("关联键",), length=4096),  # 0006: JSON keys for linkage
    ),
    key=("alert_id",),
    checks=(RowCheck("失效时间早于生效时间", _later("valid_to", "valid_from")),),
))

_register(Dataset(
    "alert_history", "告警变更记录", "一网统管",
    (
        Field("alert_id", "str", "告警编号", True, ("告警编号", "预警编号")),
        Field("ts", "ts", "变更时间", True, ("变更时间", "时间")),
        Field("action", "str", "变更", True, ("变更", "动作"), choices=("发布", "升级", "降级", "更新", "解除")),
        Field("level", "str", "预警等级", False, ("预警等级",), choices=("蓝色", "黄色", "橙色", "红色")),
        Field("actor", "str", "操作人", False, ("操作人",)),  # 0006
        Field("note", "str", "说明", False, ("说明", "备注"), length=1024),
    ),
    key=("alert_id", "ts", "action"),
    indexes=(("alert_id",),),
))

_register(Dataset(
    "cases", "案件", "一网统管",
    (
        Field("case_id", "str", "案件编号", True, ("案件编号",)),
        Field("case_type", "str", "案件类型", True, ("案件类型",)),
        Field("ts", "ts", "立案时间", True, ("立案时间", "受理时间")),
        Field("title", "str", "案件标题", False, ("案件标题", "标题"), length=256),
        Field("department", "str", "责任部门", False, ("责任部门", "处置部门")),
        Field("district", "str", "区县", False, ("区县",)),
        Field("street", "str", "街道", False, ("街道",)),
        Field("status", "str", "环节", True, ("环节", "状态")),
        Field("urgency", "str", "紧急程度", False, ("紧急程度",), choices=("紧急", "一般")),
        Field("deadline", "ts", "处置时限", False, ("处置时限",)),
        Field("closed_at", "ts", "结案时间", False, ("结案时间",)),
        Field("updated_at", "ts", "更新时间", False, ("更新时间",)),
        Field("subject", "str", "案件对象", False, ("案件对象",), length=256),  # dataset:id it is about
        Field("alert_id", "str", "来源告警", False, ("来源告警",)),            # the alert it came from
        Field("rule", "str", "联动规则", False, ("联动规则",)),                 # the linkage rule that opened it
        Field("parent_case", "str", "上级案件", False, ("上级案件",)),
        Field("description", "str", "案件描述", False, ("案件描述", "描述"), length=1024),
        Field("evidence", "str", "证据", False, ("证据",), length=4096),
    ),
    key=("case_id",),
    checks=(RowCheck("结案时间早于立案时间", _later("closed_at", "ts")),),
    indexes=(("case_type", "status"), ("department", "status"), ("alert_id",), ("subject",), ("ts",)),
))

_register(Dataset(
    "case_history", "案件办理记录", "一网统管",
    (
        Field("case_id", "str", "案件编号", True, ("案件编号",)),
        Field("ts", "ts", "办理时间", True, ("办理时间", "时间")),
        Field("status", "str", "环节", True, ("环节", "状态")),
        Field("actor", "str", "办理人", False, ("办理人", "操作人")),
        Field("department", "str", "办理部门", False, ("办理部门", "部门")),
        Field("note", "str", "办理意见", False, ("办理意见", "备注", "说明"), length=512),
    ),
    key=("case_id", "ts", "status"),
    indexes=(("case_id",), ("ts",)),  # ts: 0011
))

_register(Dataset(
    "data_quality", "数据质量问题", "一网统管",
    (
        Field("finding_id", "str", "问题编号", True, ("问题编号",)),
        Field("ts", "ts", "发现时间", True, ("发现时间",)),
        Field("dataset", "str", "数据集", True, ("数据集",)),
        Field("subject", "str", "对象", False, ("对象", "站点编号", "设备编号")),
        Field("kind", "str", "问题类型", True, ("问题类型", "类型")),
        Field("ts_from", "ts", "起始时间", False, ("起始时间",)),
        Field("ts_to", "ts", "结束时间", False, ("结束时间",)),
        Field("rows", "int", "涉及记录数", False, ("涉及记录数",), min=0),
        Field("reason", "str", "说明", True, ("说明", "原因"), length=1024),
        Field("evidence", "str", "证据", False, ("证据",), length=4096),
    ),
    key=("finding_id",),
    indexes=(("dataset", "subject"),),
))


_SA_TYPES = {
    "int": lambda f: sa.BigInteger(),
    "float": lambda f: sa.Float(),
    "ts": lambda f: sa.DateTime(),
    "date": lambda f: sa.Date(),
    "str": lambda f: sa.String(f.length),
}

for _ds in DATASETS.values():
    sa.Table(
        _ds.name,
        metadata,
        *(sa.Column(f.name, _SA_TYPES[f.kind](f), nullable=not (f.required or f.name in _ds.key),
                    comment=f.label) for f in _ds.fields if f.stored),
        sa.PrimaryKeyConstraint(*_ds.key),
        *(sa.Index(None, *cols) for cols in _ds.indexes),
        comment=_ds.label,
    )

# Ingest bookkeeping: every file seen, and every row that could not be loaded.
ingest_files = sa.Table(
    "ingest_files",
    metadata,
    sa.Column("file_id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("raw_path", sa.String(1024), nullable=False),
    sa.Column("encoding", sa.String(32)),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("loaded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("quarantined", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),  # running | done | failed | skipped
    sa.Column("message", sa.String(1024)),
    sa.Column("profile", sa.String(128)),  # 0012: the profile the file was read with
    sa.Column("notes", sa.Text),           # 0012: JSON: unit conversions, unknown columns, warnings
    sa.UniqueConstraint("dataset", "sha256"),
    comment="已接入文件",
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Column("detail", sa.String(1024)),  # the offending values, e.g. 检测时间: '2023年13月45日'
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.DateTime, nullable=False),
    sa.Index(None, "dataset", "file_sha256"),
    comment="隔离区",
)


# 0012: nothing dropped. Columns the hub has no field for stay with their row; a corrected
# re-send keeps the values it replaced; personal data is kept apart from the records.
row_extras = sa.Table(
    "row_extras",
    metadata,
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("row_key", sa.String(512), nullable=False),   # JSON list of the natural key's values
    sa.Column("data", sa.Text, nullable=False),             # JSON {file column: text}
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("line", sa.Integer),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.PrimaryKeyConstraint("dataset", "row_key"),
    comment="未映射列",
)

row_versions = sa.Table(
    "row_versions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("row_key", sa.String(512), nullable=False),
    sa.Column("ts", sa.DateTime, nullable=False),            # when the correction arrived (UTC)
    sa.Column("file_sha256", sa.String(64)),                 # the file that brought it
    sa.Column("old_json", sa.Text, nullable=False),          # the values it replaced
    sa.Column("new_json", sa.Text, nullable=False),          # the values it brought
    sa.Index(None, "dataset", "row_key"),
    comment="更正记录",
)

personal_data = sa.Table(
    "personal_data",
    metadata,
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("row_key", sa.String(512), nullable=False),
    sa.Column("field", sa.String(64), nullable=False),       # reporter_phone, or description (numbers in text)
    sa.Column("value", sa.String(1024), nullable=False),
    sa.Column("file_sha256", sa.String(64)),
    sa.Column("stored_at", sa.DateTime, nullable=False),
    sa.PrimaryKeyConstraint("dataset", "row_key", "field"),
    comment="个人信息（受保护）",
)


# 0013: who acts (users, sessions) and what was done (the append-only audit log).
users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),          # workbench.access.ROLES
    sa.Column("department", sa.String(64)),                    # an agency: 市场监管局 …
    sa.Column("district", sa.String(64)),                      # 荷塘区 … (district staff)
    sa.Column("password_hash", sa.String(256), nullable=False),  # argon2id
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    comment="用户",
)

user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the cookie's token
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
    sa.Column("address", sa.String(64)),
    sa.Index(None, "username"),
    comment="登录会话",
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("ts", sa.DateTime, nullable=False),              # UTC
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),        # case.step, user.create, unmask, backup …
    sa.Column("target", sa.String(512)),
    sa.Column("detail", sa.Text),                              # JSON
    sa.Index(None, "ts"),
    sa.Index(None, "action", "ts"),
    comment="审计日志（只增不改）",
)
