"""Live intake from an MQTT topic (paho-mqtt 2.2, QoS 1) that loses nothing it acknowledged.

The guarantee, and how it is kept:
- a persistent session: a fixed client id with clean_session=False (MQTT 3.1.1), so the
  broker keeps the subscription and queues QoS 1 messages while the listener is away;
- manual acknowledgement (paho's `manual_ack=True`): a message is PUBACKed only after its
  batch — the events, their history rows, or the quarantine row of a malformed message —
  is committed to the hub. A message whose batch failed (hub down) is retried and never
  acknowledged before it is written; if the listener dies first, the broker delivers it
  again to the same session (its DUP flag set). Delivering twice is harmless: intake never
  loads an external id twice, and a message delivered again whose records were quarantined
  the first time is known by its fingerprint (kept with its quarantined rows) and not quarantined
  twice — only one the broker marks as a re-delivery, so a source that sends the same broken
  message twice has it quarantined twice, as it sent it;
- paho reconnects by itself when the broker goes away and comes back; with the broker's
  persistence on (`persistence true`), its queue survives the broker's restart too.

A message that cannot be taken in never blocks the topic: it is quarantined (masked, as a
file's rows are) and acknowledged, never retried forever —
- not JSON, not a record, a record the loader refuses: quarantined by intake with its reason;
- over `max_bytes` (default 256 KiB): quarantined by its head, never parsed;
- nested too deep for the parser (RecursionError), or carrying a NUL character (PostgreSQL
  refuses one, SQLite keeps it: both are treated the same here): quarantined;
- a batch the hub refuses while the hub answers (`SELECT 1` works): written again in halves,
  down to the one message the hub still refuses, quarantined with the database's reason.
Only a hub that does not answer keeps the batch unacknowledged (retried until it answers).

Messages lost on the way (the broker's queue for a session that was away is bounded —
mosquitto's max_queued_messages — and a broker restarted without persistence forgets it) are
noticed two ways, each an alert (workbench.alerts, category 消息丢失) and an audit row
"mqtt.dropped":
- per-publisher sequence numbers: a publisher that numbers its messages (`_publisher`,
  `_seq` keys of a record, as `publish(..., publisher=…)` does) shows a gap when one is
  missing. This is the one that says *which* messages were lost and sees every cause (queue
  limits, broker restarts, a publisher's own losses); the last number per publisher is kept
  in data/mqtt/<client id>.json, so a gap across a listener restart is seen too;
- the broker's `$SYS/broker/publish/messages/dropped` counter (mosquitto; `sys_interval`):
  broker-wide, it also counts other clients' losses and restarts at 0 with the broker, but it
  needs nothing from publishers — the fallback for sources that do not number their messages.

Username/password (`username`, `password`) and TLS (`tls_ca`, `tls_cert`, `tls_key`) are
options of the listener and of `publish` (CLI: --username, --password-file or
$WORKBENCH_MQTT_PASSWORD, --tls-ca, --tls-cert, --tls-key).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from workbench.events import dispatch as dp
from workbench.events import intake

log = logging.getLogger(__name__)
DEFAULT_TOPIC = "city/events"
DEFAULT_CLIENT_ID = "workbench-events"
MAX_BYTES = 256 * 1024
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
PUBLISHER, SEQ = "_publisher", "_seq"
TOO_BIG = "消息过大"
TOO_DEEP = "嵌套过深，无法解析"
HAS_NUL = "含有 NUL 字符（数据库不接受）"
NOT_STORED = "数据中台拒绝写入"
DROPPED_CATEGORY = "消息丢失"
DEPARTMENT = "城市管理和综合执法局"
PASSWORD_ENV = "WORKBENCH_MQTT_PASSWORD"
_HEAD = 500


@dataclass
class ListenerStats:
    messages: int = 0
    batches: int = 0
    acked: int = 0
    retries: int = 0
    connects: int = 0
    poisoned: int = 0          # quarantined by the listener itself (too big, too deep, NUL, refused by the hub)
    redelivered: int = 0       # delivered again (DUP) after their quarantine was committed: not quarantined twice
    dropped: int = 0           # messages known lost (sequence gaps)
    sys_dropped: int = 0       # the broker's $SYS dropped counter went up by this much
    last_error: str | None = None
    refused: str | None = None  # the broker refused the connection (bad password, not authorised)
    total: intake.IntakeSummary = field(default_factory=lambda: intake.IntakeSummary("mqtt"))


class Delivery(NamedTuple):
    """A message as the broker delivered it, waiting for its batch."""
    mid: int
    qos: int
    payload: bytes
    at: float
    dup: bool = False          # the broker delivers it again (MQTT DUP flag)


def _head(p: bytes) -> str:
    """The first bytes of a payload as text a database takes (no NUL, bad bytes replaced)."""
    return p[:_HEAD].decode("utf-8", "replace").replace("\x00", "\\x00")


def screen(payload: bytes, max_bytes: int = MAX_BYTES):
    """(payload to hand to intake, (publisher, seq) or None, problem or None). A problem is
    (reason, detail, original) for the quarantine; the payload is then None."""
    payload = intake.message_bytes(payload)
    if len(payload) > max_bytes:
        return None, None, (TOO_BIG, f"{len(payload)} 字节，上限 {max_bytes} 字节（只保留开头）",
                            {"payload": _head(payload), "bytes": len(payload)})
    if b"\x00" in payload or b"\\u0000" in payload:
        return None, None, (HAS_NUL, "NUL 字符", {"payload": _head(payload)})
    try:
        doc = json.loads(payload.decode("utf-8-sig"))
    except RecursionError:
        return None, None, (TOO_DEEP, "JSON 嵌套层数超过解析器上限", {"payload": _head(payload)})
    except (UnicodeDecodeError, ValueError):
        return payload, None, None  # intake quarantines it with its own words (JSON 格式错误)
    if isinstance(doc, dict) and (PUBLISHER in doc or SEQ in doc):
        pub, seq = doc.pop(PUBLISHER, None), doc.pop(SEQ, None)
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        try:
            return payload, (str(pub)[:64] if pub is not None else "", int(seq)), None
        except (TypeError, ValueError):
            return payload, None, None
    return payload, None, None


MAX_JUMP = 10_000          # a sequence number further than this past the last is not believed
MAX_PUBLISHERS = 1_000     # publishers whose numbering is followed


class _SeqState:
    """The last sequence number seen per publisher, the gaps not yet filled (a message sent
    again after a reconnect may arrive after a later one) and the broker's dropped counter,
    kept in a small JSON file so a listener that restarts still sees a gap."""

    def __init__(self, path: Path | None):
        self.path = path
        self.last: dict[str, int] = {}
        self.missing: dict[str, list[list]] = {}   # publisher -> [[first, last, noticed (epoch s)], ...]
        self.sys_dropped: int | None = None
        if path is not None and path.is_file():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                self.last = {str(k): int(v) for k, v in d.get("last", {}).items()}
                self.missing = {str(k): [list(r) for r in v] for k, v in d.get("missing", {}).items()}
                self.sys_dropped = d.get("sys_dropped")
            except (OSError, ValueError, TypeError, AttributeError):
                log.warning("sequence state %s unreadable: starting afresh", path)

    def see(self, pub: str, n: int, now: float) -> None:
        last = self.last.get(pub)
        if last is None:
            if len(self.last) < MAX_PUBLISHERS:   # a flood of made-up publishers is not tracked
                self.last[pub] = n
            return
        if n > last + MAX_JUMP:   # no real gap is that wide: a forged or damaged number, never adopted
            log.warning("publisher %s: sequence %s jumps %s past %s; ignored", pub, n, n - last, last)
            return
        if n > last:
            if n > last + 1:
                self.missing.setdefault(pub, []).append([last + 1, n - 1, now])
            self.last[pub] = n
            return
        ranges = self.missing.get(pub, [])
        if n <= 1 and not any(a <= n <= b for a, b, _ in ranges):   # the publisher started counting again
            self.last[pub] = n
            self.missing.pop(pub, None)
            return
        out = []
        for a, b, t in ranges:  # a late one fills its gap (anything else is a redelivery)
            if a <= n <= b:
                out += [r for r in ([a, n - 1, t], [n + 1, b, t]) if r[0] <= r[1]]
            else:
                out.append([a, b, t])
        if pub in self.missing:
            self.missing[pub] = out

    def due(self, grace: float, now: float) -> list[tuple[str, int, int]]:
        """The gaps still open `grace` seconds after they were noticed (forgotten once said)."""
        out = []
        for pub, ranges in list(self.missing.items()):
            keep = []
            for a, b, t in ranges:
                (out.append((pub, a, b)) if now - t >= grace else keep.append([a, b, t]))
            self.missing[pub] = keep
        return out

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps({"last": self.last, "missing": self.missing, "sys_dropped": self.sys_dropped}),
                       encoding="utf-8")
        os.replace(tmp, self.path)


class Listener:
    """Subscribe to `topic` and take every message into the hub (see the module doc)."""

    def __init__(self, topic: str = DEFAULT_TOPIC, *, host: str = "127.0.0.1", port: int = 1883,
                 client_id: str = DEFAULT_CLIENT_ID, rules: dp.CityRules | None = None, eng=None,
                 batch_max: int = 500, batch_wait: float = 0.02,
                 on_commit: Callable[[intake.IntakeSummary, list[float]], None] | None = None,
                 username: str | None = None, password: str | None = None, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, max_bytes: int = MAX_BYTES,
                 watch_sys: bool = True, state_file: Path | str | None = "auto", gap_grace: float = 10.0):
        import paho.mqtt.client as mqtt

        self.topic, self.host, self.port, self.client_id = topic, host, port, client_id
        self.rules = rules or dp.load_rules()
        self.eng = eng
        self.batch_max, self.batch_wait = batch_max, batch_wait
        self.max_bytes = max_bytes
        self.on_commit = on_commit
        self.stats = ListenerStats()
        self.watch_sys = watch_sys
        self.gap_grace = gap_grace
        if state_file == "auto":
            from workbench import config

            state_file = config.data_dir() / "mqtt" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', client_id)}.json"
        self.seq = _SeqState(Path(state_file) if state_file else None)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, manual_ack=True)
        configure(c, username=username, password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
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
            if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower():
                self.stats.refused = str(reason_code)
            return
        self.stats.refused = None
        self.stats.connects += 1
        topics = [(self.topic, 1)] + ([(SYS_DROPPED, 0)] if self.watch_sys else [])
        client.subscribe(topics)  # ready once the broker confirms it (on_subscribe)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        if not reason_codes[0].is_failure:
            self._connected.set()
        else:
            self.stats.last_error = f"subscribe {self.topic}: {reason_codes}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._connected.clear()

    def _on_message(self, client, userdata, msg):
        if msg.topic == SYS_DROPPED:
            self._queue.put(("sys", msg.payload))
            return
        self._queue.put(Delivery(msg.mid, msg.qos, msg.payload, time.time(), bool(msg.dup)))

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

    def _hub(self):
        if self.eng is None:
            from workbench.store import hub

            self.eng = hub.engine()
        return self.eng

    def hub_answers(self) -> bool:
        import sqlalchemy as sa

        try:
            with self._hub().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure: the hub does not answer
            return False

    def _quarantine(self, problems: list, first_line: int, shas: list[str]) -> intake.IntakeSummary:
        """Messages the listener itself refuses, into the quarantine (masked, as intake does),
        each row under its message's fingerprint (`shas`, intake.message_sha)."""
        sha = hashlib.sha256("".join(shas).encode()).hexdigest()   # the batch's, from keyed fingerprints
        bad = [(first_line + k, reason, detail, orig) for k, (reason, detail, orig) in enumerate(problems)]
        each = {first_line + k: s for k, s in enumerate(shas)}
        return intake.take_in(pd.DataFrame(), origin=intake.Origin(f"mqtt:{self.topic}", sha, "table", each),
                              rules=self.rules, eng=self._hub(), lines=np.array([], int), malformed=bad)

    def _taken(self, again: set[str]) -> set[str]:
        """Of the fingerprints of messages the broker delivers again, those whose quarantined
        rows the hub already holds: their first delivery was committed (one transaction) but not
        acknowledged before the listener went away."""
        import sqlalchemy as sa

        from workbench.store.schema import quarantine as q

        if not again:
            return set()
        with self._hub().connect() as conn:
            return set(conn.execute(sa.select(q.c.file_sha256).distinct().where(
                q.c.dataset == "city_events", q.c.filename == f"mqtt:{self.topic}"[:512],
                q.c.file_sha256.in_(sorted(again)))).scalars())

    def _write(self, items: list[Delivery]) -> intake.IntakeSummary:
        """One batch into the hub: the good payloads through intake, the refused into quarantine."""
        shas = [intake.message_sha(d.payload) for d in items]
        taken = self._taken({s for s, d in zip(shas, items) if d.dup})   # re-deliveries committed before
        seen: set[str] = set()        # and those whose first delivery is in this very batch
        good, good_shas, problems, bad_shas, seqs, again = [], [], [], [], [], 0
        for d, sha in zip(items, shas):
            payload, seq, problem = screen(d.payload, self.max_bytes)
            if seq is not None:
                seqs.append(seq)
            if d.dup and (sha in taken or sha in seen):
                again += 1
                continue
            seen.add(sha)
            if problem is not None:
                problems.append(problem)
                bad_shas.append(sha)
            else:
                good.append(payload)
                good_shas.append(sha)
        summary = intake.IntakeSummary("mqtt")
        if good:
            summary.add(intake.message_batch(good, topic=self.topic, rules=self.rules, eng=self._hub(),
                                             first_line=self.stats.messages + 1, shas=good_shas))
        if problems:
            summary.add(self._quarantine(problems, self.stats.messages + len(good) + 1, bad_shas))
            self.stats.poisoned += len(problems)
        self.stats.redelivered += again
        self._sequences(seqs)
        return summary

    def _done(self, items: list, s: intake.IntakeSummary) -> None:
        for d in items:
            if d.qos > 0:
                self.client.ack(d.mid, d.qos)
                self.stats.acked += 1
        self.stats.messages += len(items)
        self.stats.batches += 1
        self.stats.total.add(s)
        if self.on_commit is not None:
            self.on_commit(s, [d.at for d in items])

    def _sequences(self, seqs: list[tuple[str, int]]) -> None:
        """Note the publishers' numbers; a gap still open after `gap_grace` seconds is a loss."""
        now = time.time()
        for pub, n in seqs:
            self.seq.see(pub, n, now)
        if seqs:
            self.seq.save()
        self._gaps()

    def _gaps(self) -> None:
        due = self.seq.due(self.gap_grace, time.time())
        for pub, a, b in due:
            self.stats.dropped += b - a + 1
            self.dropped(f"发布端 {pub or '（未命名）'} 的消息序号 {a}–{b} 缺失，共 {b - a + 1} 条",
                         publisher=pub, first=a, last=b, missing=b - a + 1, how="sequence")
        if due:
            self.seq.save()

    def _sys(self, payload: bytes) -> None:
        try:
            n = int(payload.decode().strip())
        except (UnicodeDecodeError, ValueError):
            return
        before = self.seq.sys_dropped
        self.seq.sys_dropped = n
        self.seq.save()
        if before is not None and n > before:
            self.stats.sys_dropped += n - before
            self.dropped(f"MQTT 代理报告丢弃消息 {n - before} 条（$SYS 计数 {before} → {n}，含其他客户端）",
                         missing=n - before, counter_before=before, counter=n, how="$SYS")

    def dropped(self, text: str, **detail) -> None:
        """Say that messages were lost: an alert (alert API) and an audit row "mqtt.dropped"."""
        from workbench import access, alerts, audit, clock

        log.warning("mqtt %s: %s", self.topic, text)
        now = clock.now()
        who = access.system("MQTT 监听")
        key = hashlib.sha1(f"{self.topic}|{sorted(detail.items())}".encode()).hexdigest()[:10]
        try:
            with self._hub().begin() as conn:
                alerts.raise_alert(conn, alert_id=f"MQTT-DROP-{now:%Y%m%d%H%M%S}-{key}", ts=now,
                                   department=DEPARTMENT, category=DROPPED_CATEGORY, severity="warning",
                                   title=f"MQTT 消息丢失：{self.topic}", source="MQTT 监听", area=self.topic,
                                   subject=f"mqtt:{self.topic}", evidence=text[:4000],
                                   attrs={"topic": self.topic, "client_id": self.client_id,
                                          **{k: v for k, v in detail.items() if k != "how"}},
                                   actor=who.actor, note=text[:1024])
                audit.record(conn, "mqtt.dropped", who, subject=f"mqtt:{self.topic}", text=text,
                             client_id=self.client_id, **detail)
        except Exception as exc:  # noqa: BLE001 - the log line stands when the hub does not answer
            log.error("could not record the loss in the hub: %s", exc)

    def _work(self):
        pending: list = []
        while True:
            if self._stop.is_set() and not pending and self._queue.empty():
                break
            if not pending:
                if self.seq.missing:
                    self._gaps()
                pending = self._take_batch()
                sys_msgs = [p for p in pending if not isinstance(p, Delivery)]
                pending = [p for p in pending if isinstance(p, Delivery)]
                for _, payload in sys_msgs:
                    self._sys(payload)
                if not pending:
                    continue
            try:
                s = self._write(pending)
            except Exception as exc:  # noqa: BLE001
                self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if self.hub_answers():  # the hub is up and refuses something in the batch
                    pending = self._one_by_one(pending)
                    continue
                self.stats.retries += 1  # the hub is unreachable: keep the batch, unacknowledged, and retry
                log.warning("batch of %d messages not written, retrying: %s", len(pending), exc)
                if self._stop.wait(1.0):
                    break
                continue
            self._done(pending, s)
            pending = []

    def _one_by_one(self, items: list) -> list:
        """Write the batch in halves, each that the hub takes acknowledged, down to the single
        message the hub refuses (while it answers): that one is quarantined. Returns what is
        left to retry (the hub went away meanwhile)."""
        if len(items) > 1:
            mid = len(items) // 2
            for k, part in ((0, items[:mid]), (mid, items[mid:])):
                try:
                    s = self._write(part)
                except Exception:  # noqa: BLE001
                    if not self.hub_answers():
                        return items[k:]
                    left = self._one_by_one(part)
                    if left:
                        return left + (items[mid:] if k == 0 else [])
                    continue
                self._done(part, s)
            return []
        item = items[0]
        try:
            s = self._write([item])
        except Exception as exc:  # noqa: BLE001
            if not self.hub_answers():
                return items
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log.warning("message %s refused by the hub, quarantined: %s", item.mid, why)
            try:
                s = self._quarantine([(NOT_STORED, why, {"payload": _head(intake.message_bytes(item.payload))})],
                                     self.stats.messages + 1, [intake.message_sha(item.payload)])
            except Exception:  # noqa: BLE001 - not even the quarantine: retry later
                return items
            self.stats.poisoned += 1
            seq = screen(item.payload, self.max_bytes)[1]
            if seq is not None:  # its number was seen: no false gap
                self._sequences([seq])
        self._done([item], s)
        return []

    def start(self, wait: float = 10.0) -> "Listener":
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="events-mqtt-worker", daemon=True)
        self._worker.start()
        if wait and not self._connected.wait(wait):
            self.stats.last_error = (self.stats.last_error or "") + \
                f"; no connection to {self.host}:{self.port} after {wait:g} s (still trying)"
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


def configure(client, *, username: str | None = None, password: str | None = None, tls_ca: str | None = None,
              tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """Username/password and TLS on a paho client (a CA file: the broker's certificate is
    checked; a certificate and key: the client's own, for brokers that require one)."""
    if username:
        client.username_pw_set(username, password)
    if tls_ca or tls_cert:
        client.tls_set(ca_certs=str(tls_ca) if tls_ca else None, certfile=str(tls_cert) if tls_cert else None,
                       keyfile=str(tls_key) if tls_key else None)


def read_password(path: str | Path | None) -> str | None:
    """The password from a file (first line; refused if others can read it), else $WORKBENCH_MQTT_PASSWORD."""
    if path:
        p = Path(path)
        if p.stat().st_mode & 0o077:
            raise PermissionError(f"密码文件 {p} 对其他用户可读，请 chmod 600")
        return p.read_text(encoding="utf-8").splitlines()[0].strip() if p.stat().st_size else ""
    return os.environ.get(PASSWORD_ENV)


def publish(records, topic: str = DEFAULT_TOPIC, *, host: str = "127.0.0.1", port: int = 1883,
            client_id: str = "", qos: int = 1, timeout: float = 30.0, publisher: str | None = None,
            seq_start: int = 1, username: str | None = None, password: str | None = None,
            tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None) -> int:
    """Publish records (dicts → JSON, or raw bytes) at QoS 1 and wait for the broker's
    acknowledgements (paho sends again what was not acknowledged when the broker returns);
    returns how many were acknowledged. `publisher`: number the dict records (`_publisher`,
    `_seq` from `seq_start`) so that a listener sees a gap."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    configure(c, username=username, password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(min_delay=0.2, max_delay=2)
    acked: set[int] = set()
    refused: list[str] = []
    c.on_publish = lambda client, userdata, mid, rc=None, props=None: acked.add(mid)
    c.on_connect = lambda client, userdata, flags, rc, props=None: rc.is_failure and refused.append(str(rc))
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        mids = []
        for k, r in enumerate(records):
            if publisher is not None and isinstance(r, dict):
                r = {**r, PUBLISHER: publisher, SEQ: seq_start + k}
            payload = r if isinstance(r, (bytes, bytearray)) else json.dumps(r, ensure_ascii=False, default=str)
            mids.append(c.publish(topic, payload, qos=qos).mid)  # queued by paho while the broker is away
        end = time.time() + timeout
        while time.time() < end and not acked.issuperset(mids):
            if refused:
                raise ConnectionRefusedError(f"MQTT 代理拒绝连接：{refused[0]}")
            time.sleep(0.02)
        return sum(1 for m in mids if m in acked)
    finally:
        c.disconnect()
        c.loop_stop()


__all__ = ["DEFAULT_TOPIC", "DEFAULT_CLIENT_ID", "MAX_BYTES", "ListenerStats", "Delivery", "Listener", "publish", "screen",
           "configure", "read_password", "TOO_BIG", "TOO_DEEP", "HAS_NUL", "NOT_STORED", "DROPPED_CATEGORY"]
