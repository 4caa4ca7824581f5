"""Per-camera rules for the kitchen cameras, read from YAML (cameras.yaml).

A camera has a source (video file, image folder or RTSP URL), the canteen it watches,
kitchen zones as polygons (an object is inside when the bottom centre of its box is),
staff hours (a person in a kitchen zone outside them is 陌生人闯入), the violation classes
that apply with their severity, and the numbers of the event logic (Frigate's min_score /
threshold / inertia, attribute votes, cooldown). `defaults:` apply to every camera; a
camera's own keys win. A camera whose rules are wrong is reported by name and problem
(`CameraProblem`); the other cameras still load. See docs/canteen.md for every key.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import yaml

from workbench import config
from workbench.canteen.classes import VIOLATIONS

SEVERITIES = ("critical", "warning", "info")


class ConfigError(Exception):
    """A rules file (or one camera in it) that cannot be used; the message names the camera."""

    def __init__(self, camera: str | None, problem: str):
        self.camera = camera
        self.problem = problem
        super().__init__(f"摄像头 {camera}: {problem}" if camera else problem)


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]  # pixels, or fractions of the frame when all are within [0, 1]

    @property
    def relative(self) -> bool:
        return all(0 <= x <= 1 and 0 <= y <= 1 for x, y in self.points)

    def polygon(self, width: int, height: int) -> np.ndarray:
        pts = np.array(self.points, dtype=np.float32)
        if self.relative:
            pts = pts * np.array([width, height], dtype=np.float32)
        return pts

    def outside(self, width: int, height: int) -> list[tuple[float, float]]:
        """Points that lie outside a frame of this size."""
        if self.relative:
            return []
        return [(x, y) for x, y in self.points if not (0 <= x <= width and 0 <= y <= height)]


@dataclass(frozen=True)
class Thresholds:
    """The event logic's numbers (docs/canteen.md: 规则参数)."""

    fps: float = 2.0                # frames sampled per second of video
    min_score: float = 0.3          # a detection below this is ignored; at or above it starts a track / a vote
    threshold: float = 0.5          # the mean score of a subject's violation votes must reach this to confirm
    votes: int = 4                  # attribute votes kept per tracked person (the last N judged frames)
    votes_needed: int = 2           # agreeing votes to decide yes / no; fewer: 未判定 (not judged)
    inertia: int = 1                # consecutive frames with a confirmed violation before an event opens (on top of the votes)
    cooldown_s: float = 20.0        # an event ends after this long without its violation; a return within it continues the event
    update_s: float = 10.0          # at most one update of an open event per this many seconds (hub + MQTT)
    motion_threshold: float = 0.0003  # fraction of changed pixels (320-px grey copy) that counts as motion
    idle_detect_s: float = 1.0      # without motion, still run the detector this often while anything is tracked
    heartbeat_s: float = 10.0       # and this often when nothing is (a bin left open, a motionless person)
    relink_s: float = 2.5           # a new track near a person lost this long ago, of their size, keeps their id


@dataclass(frozen=True)
class CameraRules:
    camera_id: str
    source: str | None = None
    canteen_id: str | None = None
    district: str | None = None
    name: str | None = None
    size: tuple[int, int] | None = None           # (width, height): zones are checked against it up front
    zones: tuple[Zone, ...] = ()                   # none: the whole frame is the kitchen
    staff_hours: str | None = None                 # "06:30-13:30,15:30-17:30"; none: always staff hours
    timezone: str = config.TZ
    start_time: dt.datetime | None = None          # naive UTC of a video file's first frame (default: now)
    violations: dict = field(default_factory=lambda: dict(VIOLATIONS))  # class -> severity
    thresholds: Thresholds = Thresholds()

    def intervals(self) -> list[tuple[int, int]]:
        return parse_hours(self.staff_hours, self.camera_id) if self.staff_hours else []

    def in_staff_hours(self, ts_utc: dt.datetime) -> bool:
        iv = self.intervals()
        if not iv:
            return True
        import pandas as pd

        local = pd.Timestamp(ts_utc).tz_localize("UTC").tz_convert(self.timezone)
        minute = local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in iv)

    def check_frame(self, width: int, height: int) -> None:
        """Zones against the real frame size (ConfigError when a zone lies outside it)."""
        for z in self.zones:
            bad = z.outside(width, height)
            if bad:
                raise ConfigError(self.camera_id, f"区域“{z.name}”的顶点 {bad[0]} 超出画面 {width}×{height}")


def parse_hours(text: str, camera: str | None = None) -> list[tuple[int, int]]:
    """'06:30-13:30,15:30-17:30' -> [(390, 810), (930, 1050)] minutes of the local day."""
    out = []
    for part in str(text).replace("，", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            a, b = (s.strip() for s in part.split("-"))
            ha, ma = (int(v) for v in a.split(":"))
            hb, mb = (int(v) for v in b.split(":"))
        except ValueError:
            raise ConfigError(camera, f"从业时间“{part}”应写成 06:30-13:30") from None
        start, end = ha * 60 + ma, hb * 60 + mb
        if not (0 <= start < end <= 24 * 60):
            raise ConfigError(camera, f"从业时间“{part}”不是当天内的时段")
        out.append((start, end))
    return out


def _thresholds(raw: dict, base: Thresholds, camera: str | None) -> Thresholds:
    known = {f.name: f.type for f in fields(Thresholds)}
    vals = {}
    for k, v in raw.items():
        if k not in known:
            continue
        try:
            vals[k] = float(v) if known[k] in ("float", float) else int(v)
        except (TypeError, ValueError):
            raise ConfigError(camera, f"参数 {k} 应为数值，而不是 {v!r}") from None
        if vals[k] < 0:
            raise ConfigError(camera, f"参数 {k} 不能为负数")
    t = replace(base, **vals)
    if t.fps <= 0:
        raise ConfigError(camera, "fps 必须大于 0")
    if not 0 <= t.min_score <= t.threshold <= 1:
        raise ConfigError(camera, "应满足 0 ≤ min_score ≤ threshold ≤ 1")
    if not 1 <= t.votes_needed <= t.votes:
        raise ConfigError(camera, "应满足 1 ≤ votes_needed ≤ votes")
    if t.inertia < 1:
        raise ConfigError(camera, "inertia 至少为 1")
    return t


def _zones(raw, camera: str) -> tuple[Zone, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(camera, "zones 应为“区域名: 顶点列表”的映射")
    out = []
    for name, spec in raw.items():
        pts = spec.get("points") if isinstance(spec, dict) else spec
        try:
            pts = tuple((float(x), float(y)) for x, y in pts)
        except (TypeError, ValueError):
            raise ConfigError(camera, f"区域“{name}”的顶点应为 [x, y] 列表") from None
        if len(pts) < 3:
            raise ConfigError(camera, f"区域“{name}”至少需要 3 个顶点")
        if any(x < 0 or y < 0 for x, y in pts):
            raise ConfigError(camera, f"区域“{name}”有负坐标，超出画面")
        out.append(Zone(str(name), pts))
    return tuple(out)


def _violations(raw, camera: str) -> dict:
    if raw is None:
        return dict(VIOLATIONS)
    if isinstance(raw, (list, tuple)):
        raw = {c: VIOLATIONS.get(c) for c in raw}
    if not isinstance(raw, dict):
        raise ConfigError(camera, "violations 应为“违规类型: 严重程度”的映射或列表")
    out = {}
    for cls, sev in raw.items():
        if cls not in VIOLATIONS:
            raise ConfigError(camera, f"未知的违规类型“{cls}”（可选：{'、'.join(VIOLATIONS)}）")
        sev = sev or VIOLATIONS[cls]
        if sev not in SEVERITIES:
            raise ConfigError(camera, f"违规类型“{cls}”的严重程度“{sev}”无效（可选：{'、'.join(SEVERITIES)}）")
        out[cls] = sev
    return out


def camera_rules(camera_id: str, spec: dict | None, defaults: dict | None = None) -> CameraRules:
    """One camera's rules from its YAML mapping (defaults first, its own keys win)."""
    spec = {**(defaults or {}), **(spec or {})}
    cam = str(camera_id)
    size = spec.get("size")
    if size is not None:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ConfigError(cam, "size 应为 [宽, 高]") from None
        size = (w, h)
    start = spec.get("start_time")
    if start is not None:
        import pandas as pd

        ts = pd.Timestamp(start)
        ts = ts.tz_localize(spec.get("timezone", config.TZ)) if ts.tzinfo is None else ts
        start = ts.tz_convert("UTC").tz_localize(None).to_pydatetime()
    rules = CameraRules(
        camera_id=cam, source=spec.get("source"), canteen_id=spec.get("canteen_id"),
        district=spec.get("district"), name=spec.get("name"), size=size,
        zones=_zones(spec.get("zones"), cam), staff_hours=spec.get("staff_hours"),
        timezone=spec.get("timezone", config.TZ), start_time=start,
        violations=_violations(spec.get("violations"), cam),
        thresholds=_thresholds(spec, Thresholds(), cam),
    )
    rules.intervals()  # staff hours parse, or ConfigError
    if size:
        rules.check_frame(*size)
    return rules


@dataclass
class RulesFile:
    cameras: dict[str, CameraRules]
    problems: list[ConfigError]
    defaults: dict


def load_rules(path: Path | str | None) -> RulesFile:
    """All cameras of a rules file; a broken camera goes to `problems`, the others load.
    A file that cannot be read at all raises ConfigError."""
    if path is None:
        return RulesFile({}, [], {})
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(None, f"规则文件不存在：{path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(None, f"规则文件 {path.name} 不是有效的 YAML：{exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(None, f"规则文件 {path.name} 应为映射（defaults:, cameras:）")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(None, f"规则文件 {path.name} 的 defaults 应为映射")
    try:  # the defaults themselves must be valid, else every camera would fail the same way
        camera_rules("defaults", {k: v for k, v in defaults.items() if k != "source"})
    except ConfigError as exc:
        raise ConfigError(None, f"规则文件 {path.name} 的 defaults 有误：{exc.problem}") from None
    cams, problems = {}, []
    for cid, spec in (data.get("cameras") or {}).items():
        try:
            if spec is not None and not isinstance(spec, dict):
                raise ConfigError(str(cid), "应为映射（source:, zones:, …）")
            cams[str(cid)] = camera_rules(str(cid), spec, defaults)
        except ConfigError as exc:
            problems.append(exc)
    return RulesFile(cams, problems, defaults)
