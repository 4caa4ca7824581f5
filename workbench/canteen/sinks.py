"""Where events go: the hub's canteen_violations (upserted live, while dashboards read) and
MQTT (Mosquitto), Frigate-style, one topic per camera:

    workbench/canteen/<camera_id>/events     {"type": "new" | "update" | "end", "id": …, …}
    workbench/canteen/<camera_id>/available  "online" | "offline"   (retained)

A camera that stays down becomes an alert in the hub's alerts table (category 摄像头离线),
lifted (已解除) when it comes back. docs/canteen.md lists every field.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

import pandas as pd

from workbench import config
from workbench.store.schema import DATASETS

log = logging.getLogger(__name__)

TOPIC_PREFIX = "workbench/canteen"
DEPARTMENT = "市场监管局"
OFFLINE_CATEGORY = "摄像头离线"
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
    return pd.Timestamp(ts).tz_localize("UTC").tz_convert(config.TZ)


class HubSink:
    """Events into canteen_violations; camera-offline alerts into alerts (+ alert_history)."""

    def __init__(self, eng=None):
        from workbench.store import hub

        self.eng = eng or hub.engine()
        self.written = {"new": 0, "update": 0, "end": 0, "alerts": 0}
        self._offline: dict[str, str] = {}  # camera -> open alert id

    def event(self, kind: str, record: dict) -> None:
        from workbench.store.ingest import upsert

        df = pd.DataFrame([record])
        with self.eng.begin() as conn:
            upsert(conn, "canteen_violations", df, UPDATE_COLUMNS)
        self.written[kind] = self.written.get(kind, 0) + 1

    def camera_offline(self, camera_id: str, message: str, ts: dt.datetime, district: str | None = None) -> str:
        from workbench.store.ingest import upsert
        from workbench.store.ingest import insert_new

        if camera_id in self._offline:
            return self._offline[camera_id]
        aid = f"CAM-OFF-{camera_id}-{_local(ts):%Y%m%d%H%M%S}"[:64]
        row = {"alert_id": aid, "ts": ts, "department": DEPARTMENT, "category": OFFLINE_CATEGORY,
               "severity": "warning", "title": f"明厨亮灶摄像头 {camera_id} 离线", "area": camera_id,
               "district": district, "valid_from": ts, "valid_to": None, "status": "生效中",
               "source": "明厨亮灶AI", "evidence": json.dumps({"摄像头": camera_id, "原因": message},
                                                             ensure_ascii=False)[:4000],
               "level": None, "updated_at": ts}
        with self.eng.begin() as conn:
            upsert(conn, "alerts", pd.DataFrame([row]), ["status", "evidence", "updated_at", "valid_to"])
            insert_new(conn, DATASETS["alert_history"], pd.DataFrame([{
                "alert_id": aid, "ts": ts, "action": "发布", "level": None, "note": message[:1024]}]))
        self._offline[camera_id] = aid
        self.written["alerts"] += 1
        return aid

    def camera_online(self, camera_id: str, ts: dt.datetime) -> str | None:
        from workbench.store.ingest import insert_new

        aid = self._offline.pop(camera_id, None)
        if aid is None:
            return None
        t = DATASETS["alerts"].table
        with self.eng.begin() as conn:
            conn.execute(t.update().where(t.c.alert_id == aid).values(status="已解除", valid_to=ts, updated_at=ts))
            insert_new(conn, DATASETS["alert_history"], pd.DataFrame([{
                "alert_id": aid, "ts": ts, "action": "解除", "level": None, "note": "视频流已恢复"}]))
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
