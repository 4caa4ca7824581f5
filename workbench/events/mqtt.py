"""Live intake from an MQTT topic (paho-mqtt 2.2, QoS 1) that loses nothing it acknowledged.

The guarantee, and how it is kept:
- a persistent session: a fixed client id with clean_session=False (MQTT 3.1.1), so the
  broker keeps the subscription and queues QoS 1 messages while the listener is away;
- manual acknowledgement (paho's `manual_ack=True`): a message is PUBACKed only after its
  batch — the events, their history rows, or the quarantine row of a malformed message —
  is committed to the hub. A message whose batch failed (hub down) is retried and never
  acknowledged before it is written; if the listener dies first, the broker delivers it
  again to the same session. Delivering twice is harmless: intake never loads an external
  id twice;
- paho reconnects by itself when the broker goes away and comes back; with the broker's
  persistence on (`persistence true`), its queue survives the broker's restart too.

A malformed message (not JSON, not a record, a bad record) is quarantined with its reason
and acknowledged, so it cannot block the topic.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from workbench.events import dispatch as dp
from workbench.events import intake

log = logging.getLogger(__name__)
DEFAULT_TOPIC = "city/events"
DEFAULT_CLIENT_ID = "workbench-events"


@dataclass
class ListenerStats:
    messages: int = 0
    batches: int = 0
    acked: int = 0
    retries: int = 0
    connects: int = 0
    last_error: str | None = None
    total: intake.IntakeSummary = field(default_factory=lambda: intake.IntakeSummary("mqtt"))


class Listener:
    """Subscribe to `topic` and take every message into the hub (see the module doc)."""

    def __init__(self, topic: str = DEFAULT_TOPIC, *, host: str = "127.0.0.1", port: int = 1883,
                 client_id: str = DEFAULT_CLIENT_ID, rules: dp.CityRules | None = None, eng=None,
                 batch_max: int = 500, batch_wait: float = 0.02,
                 on_commit: Callable[[intake.IntakeSummary, list[float]], None] | None = None):
        import paho.mqtt.client as mqtt

        self.topic, self.host, self.port = topic, host, port
        self.rules = rules or dp.load_rules()
        self.eng = eng
        self.batch_max, self.batch_wait = batch_max, batch_wait
        self.on_commit = on_commit
        self.stats = ListenerStats()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, manual_ack=True)
        c.reconnect_delay_set(min_delay=0.2, max_delay=2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.stats.last_error = f"connect: {reason_code}"
            return
        self.stats.connects += 1
        client.subscribe(self.topic, qos=1)  # ready once the broker confirms it (on_subscribe)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        if all(not rc.is_failure for rc in reason_codes):
            self._connected.set()
        else:
            self.stats.last_error = f"subscribe {self.topic}: {reason_codes}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._connected.clear()

    def _on_message(self, client, userdata, msg):
        self._queue.put((msg.mid, msg.qos, msg.payload, time.time()))

    # the worker: batches → hub → acknowledgements
    def _take_batch(self) -> list:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.time() + self.batch_wait
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.time())))
            except queue.Empty:
                break
        return batch

    def _work(self):
        pending: list = []
        while not self._stop.is_set() or pending or not self._queue.empty():
            if self._stop.is_set() and not pending and self._queue.empty():
                break
            if not pending:
                pending = self._take_batch()
                if not pending:
                    continue
            try:
                s = intake.message_batch([p for _, _, p, _ in pending], topic=self.topic, rules=self.rules,
                                         eng=self.eng, first_line=self.stats.messages + 1)
            except Exception as exc:  # the hub is unreachable: keep the batch, unacknowledged, and retry
                self.stats.retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("batch of %d messages not written, retrying: %s", len(pending), exc)
                if self._stop.wait(1.0):
                    break
                continue
            for mid, qos, _, _ in pending:
                if qos > 0:
                    self.client.ack(mid, qos)
                    self.stats.acked += 1
            self.stats.messages += len(pending)
            self.stats.batches += 1
            self.stats.total.add(s)
            if self.on_commit is not None:
                self.on_commit(s, [t for _, _, _, t in pending])
            pending = []

    def start(self, wait: float = 10.0) -> "Listener":
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="events-mqtt-worker", daemon=True)
        self._worker.start()
        if wait and not self._connected.wait(wait):
            self.stats.last_error = f"no connection to {self.host}:{self.port} after {wait:g} s (still trying)"
        return self

    @property
    def connected(self) -> bool:
        """Connected and subscribed (the broker confirmed the subscription)."""
        return self._connected.is_set()

    def stop(self, drain: float = 5.0) -> ListenerStats:
        """Stop after writing (and acknowledging) what was received, up to `drain` seconds."""
        end = time.time() + drain
        while not self._queue.empty() and time.time() < end:
            time.sleep(0.05)
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=max(1.0, end - time.time() + 1))
        self.client.disconnect()
        self.client.loop_stop()
        return self.stats

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def publish(records, topic: str = DEFAULT_TOPIC, *, host: str = "127.0.0.1", port: int = 1883,
            client_id: str = "", qos: int = 1, timeout: float = 30.0) -> int:
    """Publish records (dicts → JSON, or raw bytes) at QoS 1 and wait for the broker's
    acknowledgements; returns how many were acknowledged."""
    import json

    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        infos = []
        for r in records:
            payload = r if isinstance(r, (bytes, bytearray)) else json.dumps(r, ensure_ascii=False, default=str)
            infos.append(c.publish(topic, payload, qos=qos))
        end = time.time() + timeout
        for i in infos:
            i.wait_for_publish(timeout=max(0.01, end - time.time()))
        return sum(1 for i in infos if i.is_published())
    finally:
        c.disconnect()
        c.loop_stop()


__all__ = ["DEFAULT_TOPIC", "DEFAULT_CLIENT_ID", "ListenerStats", "Listener", "publish"]
