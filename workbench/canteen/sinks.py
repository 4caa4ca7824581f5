"""Where events go: the hub's canteen_violations (upserted live, while dashboards read) and
MQTT (Mosquitto), Frigate-style, one topic per camera:

    workbench/canteen/<camera_id>/events     {"type": "new" | "update" | "end", "id": …, …}
    workbench/canteen/<camera_id>/available  "online" | "offline"   (retained)

A camera that stays down becomes an alert of the alert API (category 摄像头离线, subject
cameras:<camera_id>), lifted (已解除) when it comes back. docs/canteen.md lists every field.

Nothing is lost while the hub is unreachable: every write for the hub (an event change, a
camera going offline or coming back) is first one file of the outbox on disk
(data/outbox/canteen/, written and fsynced before the hub is tried), removed once the hub
has it, and written in order when the hub answers again — by this watcher, or by the next
one that starts (a watcher killed mid-event). The hub writes are idempotent (an event's id
comes from its camera, class and start; a violation row is upserted), so a change written
twice — the hub took it, the watcher died before removing its file — is not doubled.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from pathlib import Path

import pandas as pd

from workbench import clock

log = logging.getLogger(__name__)

TOPIC_PREFIX = "workbench/canteen"
DEPARTMENT = "市场监管局"
OFFLINE_CATEGORY = "摄像头离线"   # = rectification.OFFLINE_CATEGORY
UPDATE_COLUMNS = ["ts_end", "score", "snapshot", "updated_at", "track_ids", "frames", "clean_snapshot"]


def events_topic(camera_id: str) -> str:
    return f"{TOPIC_PREFIX}/{camera_id}/events"


def available_topic(camera_id: str) -> str:
    return f"{TOPIC_PREFIX}/{camera_id}/available"


def camera_directory(eng=None) -> pd.DataFrame:
    """camera_id → canteen_id, district, camera name, canteen name, staff hours (from the hub)."""
    from workbench.store import hub

    cams = hub.read("cameras", columns=["camera_id", "canteen_id", "name", "location"], eng=eng)
    can = hub.read("canteens", columns=["canteen_id", "name", "district", "staff_hours", "school_type"], eng=eng)
    return cams.merge(can.rename(columns={"name": "canteen_name"}), on="canteen_id", how="left")


def _local(ts: dt.datetime) -> pd.Timestamp:
    return clock.to_local(pd.Timestamp(ts))


def camera_subject(camera_id: str) -> str:
    """How alerts name a camera: cameras:<camera_id>."""
    return f"cameras:{camera_id}"


def outbox_folder() -> Path:
    from workbench import config

    return config.data_dir() / "outbox" / "canteen"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(v):
    """JSON for an outbox item; times kept as times ({"$dt": iso})."""
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    if isinstance(v, (dt.datetime, pd.Timestamp)):
        return {"$dt": pd.Timestamp(v).isoformat()}
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def _decode(v):
    if isinstance(v, dict):
        if set(v) == {"$dt"}:
            return pd.Timestamp(v["$dt"]).to_pydatetime()
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


class Outbox:
    """Writes for the hub as files on disk, one per write, in order (see the module doc)."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else outbox_folder()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        held = self.pending()
        self._next = int(held[-1].name.split("-")[0]) + 1 if held else 1

    def put(self, op: str, **args) -> Path:
        """Write one item durably (fsync of the file and of the folder) and return its path."""
        body = json.dumps({"op": op, "args": {k: _encode(v) for k, v in args.items()}}, ensure_ascii=False,
                          default=str)
        with self._lock:
            n = self._next
            self._next += 1
        path = self.folder / f"{n:012d}-{os.getpid()}.json"
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.folder)
        return path

    def pending(self) -> list[Path]:
        """Items not yet in the hub, oldest first."""
        return sorted(self.folder.glob("*.json"))

    def __len__(self) -> int:
        return len(self.pending())

    @staticmethod
    def read(path: Path) -> tuple[str, dict]:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d["op"], {k: _decode(v) for k, v in d["args"].items()}

    def done(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:  # another watcher wrote it meanwhile
            return
        _fsync_dir(self.folder)


class HubSink:
    """Events into canteen_violations, each with its rectification case (case engine) and, for
    a critical one, its 明厨亮灶严重违规 alert; a camera down is a 摄像头离线 alert, lifted
    when it comes back (alert API). See workbench.canteen.rectification. Every write goes
    through the outbox (module doc): a hub that does not answer delays it, never loses it."""

    RETRY_EVERY = 1.0  # seconds between tries while the hub does not answer

    def __init__(self, eng=None, outbox: Outbox | Path | None = None):
        from workbench.store import hub

        if eng is None:
            try:
                eng = hub.engine()
            except Exception as exc:  # noqa: BLE001 - the hub does not answer now: the outbox keeps the writes
                log.warning("hub unreachable at start (%s): writes wait in the outbox", exc)
                eng = hub.engine(migrate=False)
        self.eng = eng
        self.outbox = outbox if isinstance(outbox, Outbox) else Outbox(outbox)
        self.written = {"new": 0, "update": 0, "end": 0, "alerts": 0}
        self.replayed = 0            # items of an earlier run written by this one
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self._offline: dict[str, str] = {}  # camera -> open alert id
        self._lifted: dict[str, str] = {}   # camera -> the alert id just lifted
        self._directory: pd.DataFrame | None = None
        self._mine: set[str] = set()
        self._tried = 0.0
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        # while the hub does not answer, a try each RETRY_EVERY seconds even when no event comes
        threading.Thread(target=self._retry, name="canteen-outbox", daemon=True).start()

    def _retry(self) -> None:
        while not self._closed.wait(self.RETRY_EVERY):
            if self.unreachable_since is not None:
                try:
                    self._flush_once(force=True)
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("outbox retry failed: %s", exc)

    # --------------------------------------------------------------- the outbox
    def event(self, kind: str, record: dict) -> None:
        self._put("event", kind=kind, record=record)

    def _put(self, op: str, **args) -> bool:
        """Into the outbox, then the hub if it answers; True when written to the hub."""
        path = self.outbox.put(op, **args)
        self._mine.add(path.name)
        self.flush()
        return not path.exists()

    def flush(self, wait: float = 0.0) -> int:
        """Write what the outbox holds, in order; with `wait`, keep trying that many seconds
        while the hub does not answer. Returns how many items are left."""
        end = time.monotonic() + wait
        while True:
            left = self._flush_once(force=wait > 0)
            if not left or time.monotonic() >= end:
                return left
            time.sleep(min(self.RETRY_EVERY, max(0.0, end - time.monotonic())))

    def _flush_once(self, force: bool = False) -> int:
        if not force and self.unreachable_since is not None and time.monotonic() - self._tried < self.RETRY_EVERY:
            return len(self.outbox)
        with self._flush_lock:
            items = self.outbox.pending()
            for k, path in enumerate(items):
                self._tried = time.monotonic()
                try:
                    op, args = self.outbox.read(path)
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError) as exc:  # a torn file: only a crash mid-write makes one
                    log.error("outbox item %s unreadable, set aside: %s", path.name, exc)
                    path.rename(path.with_suffix(".bad"))
                    continue
                try:
                    self._apply(op, args)
                except Exception as exc:  # noqa: BLE001 - the hub does not answer: keep it and the rest
                    if self.unreachable_since is None:
                        self.unreachable_since = time.monotonic()
                        log.warning("hub unreachable, %d writes kept in the outbox %s: %s", len(items) - k,
                                    self.outbox.folder, exc)
                    self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    return len(items) - k
                if path.name not in self._mine:
                    self.replayed += 1
                self.outbox.done(path)
                self._mine.discard(path.name)
            if self.unreachable_since is not None:
                log.warning("hub reachable again after %.1f s: outbox written", time.monotonic() - self.unreachable_since)
            self.unreachable_since = None
            return 0

    def _apply(self, op: str, args: dict) -> None:
        if op == "event":
            from workbench.canteen.rectification import record_event

            with self.eng.begin() as conn:
                record_event(conn, args["record"], UPDATE_COLUMNS)
            self.written[args["kind"]] = self.written.get(args["kind"], 0) + 1
        elif op == "offline":
            self._write_offline(**args)
        elif op == "online":
            self._write_online(**args)
        else:
            raise ValueError(f"unknown outbox item {op}")

    def close(self, wait: float = 10.0) -> int:
        """Write what is left (trying up to `wait` seconds); returns how many items stay unwritten."""
        left = self.flush(wait=wait)
        self._closed.set()
        return left

    def _camera(self, camera_id: str) -> dict:
        if self._directory is None:
            try:
                self._directory = camera_directory(self.eng)
            except Exception:  # noqa: BLE001 - an alert without the canteen is better than none
                self._directory = pd.DataFrame(columns=["camera_id"])
        d = self._directory
        row = d[d["camera_id"] == camera_id]
        return row.iloc[0].to_dict() if len(row) else {}

    def _active_offline(self, camera_id: str) -> str | None:
        """The camera's 摄像头离线 alert still active in the hub (a watcher restarted meanwhile)."""
        import sqlalchemy as sa

        from workbench import alerts
        from workbench.store.schema import metadata

        t = metadata.tables["alerts"]
        stmt = sa.select(t.c.alert_id).where(t.c.subject == camera_subject(camera_id),
                                             t.c.category == OFFLINE_CATEGORY, t.c.status != alerts.LIFTED)
        with self.eng.connect() as conn:
            row = conn.execute(stmt.order_by(t.c.ts.desc())).first()
        return row[0] if row else None

    def camera_offline(self, camera_id: str, message: str, ts: dt.datetime, district: str | None = None,
                       canteen_id: str | None = None) -> str | None:
        """Raise the camera's 摄像头离线 alert; its id (None while the hub does not answer)."""
        if self._put("offline", camera_id=camera_id, message=message, ts=ts, district=district,
                     canteen_id=canteen_id):
            return self._offline.get(camera_id)
        return None

    def camera_online(self, camera_id: str, ts: dt.datetime) -> str | None:
        """Lift the camera's 摄像头离线 alert; its id (None: none, or the hub does not answer)."""
        if self._put("online", camera_id=camera_id, ts=ts):
            return self._lifted.pop(camera_id, None)
        return None

    def _write_offline(self, camera_id: str, message: str, ts: dt.datetime, district: str | None = None,
                       canteen_id: str | None = None) -> str:
        from workbench import alerts

        if camera_id in self._offline:
            return self._offline[camera_id]
        held = self._active_offline(camera_id)
        if held:
            self._offline[camera_id] = held
            return held
        info = self._camera(camera_id)
        canteen_id = canteen_id or info.get("canteen_id")
        district = district or info.get("district")
        aid = f"CAM-OFF-{camera_id}-{_local(ts):%Y%m%d%H%M%S}"[:64]
        where = info.get("canteen_name") or canteen_id
        alerts.raise_alert(
            self.eng, alert_id=aid, ts=ts, department=DEPARTMENT, category=OFFLINE_CATEGORY, severity="warning",
            title=f"明厨亮灶摄像头 {camera_id} 离线" + (f"（{where}）" if where else ""), area=camera_id,
            district=district, valid_from=ts, source="明厨亮灶AI", subject=camera_subject(camera_id),
            evidence=json.dumps({"摄像头": camera_id, "原因": message}, ensure_ascii=False)[:4000],
            attrs={"camera_id": camera_id, "canteen_id": canteen_id, "district": district},
            updated_at=ts, note=message[:1024])
        self._offline[camera_id] = aid
        self.written["alerts"] += 1
        return aid

    def _write_online(self, camera_id: str, ts: dt.datetime) -> str | None:
        from workbench import alerts

        aid = self._offline.pop(camera_id, None) or self._active_offline(camera_id)
        if aid is None:
            return None
        alerts.lift(self.eng, aid, ts=ts, actor="明厨亮灶AI", note="视频流已恢复")
        self._lifted[camera_id] = aid
        return aid


class MqttSink:
    """Publishes events (QoS 1) and camera availability (retained). A broker that cannot be
    reached is logged once; the hub stays the record, and the watcher keeps running."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.host, self.port = host, port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        self.published = 0
        self.error: str | None = None
        self._pending = []
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            self.error = f"MQTT 代理 {host}:{port} 无法连接：{exc}"
            log.warning(self.error)
        self.client.loop_start()

    def event(self, kind: str, payload: dict) -> None:
        self._publish(events_topic(payload["camera"]), json.dumps(payload, ensure_ascii=False), retain=False)

    def availability(self, camera_id: str, online: bool) -> None:
        self._publish(available_topic(camera_id), "online" if online else "offline", retain=True)

    def _publish(self, topic: str, body: str, retain: bool) -> None:
        if self.error:
            return
        info = self.client.publish(topic, body, qos=1, retain=retain)
        self._pending.append(info)
        self._pending = [i for i in self._pending if not i.is_published()]
        self.published += 1

    def close(self, timeout: float = 5.0) -> None:
        for info in self._pending:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.loop_stop()
        self.client.disconnect()
