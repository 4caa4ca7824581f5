"""Where events go: the hub's canteen_violations (upserted live, while dashboards read) and
MQTT (Mosquitto), Frigate-style, one topic per camera:

    workbench/canteen/<camera_id>/events     {"type": "new" | "update" | "end", "id": …, …}
    workbench/canteen/<camera_id>/available  "online" | "offline"   (retained)

A camera that stays down becomes an alert of the alert API (category 摄像头离线, subject
cameras:<camera_id>), lifted (已解除) when it comes back. docs/canteen.md lists every field.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

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


class HubSink:
    """Events into canteen_violations, each with its rectification case (case engine) and, for
    a critical one, its 明厨亮灶严重违规 alert; a camera down is a 摄像头离线 alert, lifted
    when it comes back (alert API). See workbench.canteen.rectification."""

    def __init__(self, eng=None):
        from workbench.store import hub

        self.eng = eng or hub.engine()
        self.written = {"new": 0, "update": 0, "end": 0, "alerts": 0}
        self._offline: dict[str, str] = {}  # camera -> open alert id
        self._directory: pd.DataFrame | None = None

    def event(self, kind: str, record: dict) -> None:
        from workbench.canteen.rectification import record_event

        with self.eng.begin() as conn:
            record_event(conn, record, UPDATE_COLUMNS)
        self.written[kind] = self.written.get(kind, 0) + 1

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

    def camera_online(self, camera_id: str, ts: dt.datetime) -> str | None:
        from workbench import alerts

        aid = self._offline.pop(camera_id, None) or self._active_offline(camera_id)
        if aid is None:
            return None
        alerts.lift(self.eng, aid, ts=ts, actor="明厨亮灶AI", note="视频流已恢复")
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
