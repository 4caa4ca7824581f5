"""Live intake from MQTT against a real Mosquitto started for this test (its own port and
persistence file, so the shared broker is never touched): malformed messages are
quarantined and the listener keeps going; the broker restarts underneath it; messages sent
while the listener is away are delivered to its persistent session, even across a broker
restart; nothing is lost and nothing is loaded twice."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time

import pandas as pd
import pytest

from workbench.events import flow, intake
from workbench.events import mqtt as em
from workbench.store import hub

pytestmark = pytest.mark.slow
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder, port, extra: str = "", anonymous: bool = True):
        self.port = port
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous {'true' if anonymous else 'false'}\n"
                             f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n{extra}",
                             encoding="utf-8")
        self.proc = None
        folder.chmod(0o777)  # run as root, mosquitto drops to its own user: it must write its persistence file here

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.time() + 10
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file
            self.proc.wait(10)


@contextlib.contextmanager
def own_broker(extra: str = "", anonymous: bool = True, before=None):
    """A Mosquitto of this test's own (its port, its folder); `before(folder)` writes files
    the configuration names (a password file)."""
    import tempfile
    from pathlib import Path

    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = Path(tempfile.mkdtemp(prefix="events-mosquitto-"))  # not under pytest's 0700 folders
    if before is not None:
        extra = before(folder) or extra
    b = Broker(folder, free_port(), extra, anonymous)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def broker():
    with own_broker() as b:
        yield b


T0 = (pd.Timestamp.now(tz="Asia/Shanghai") - pd.Timedelta(minutes=30)).floor("s").isoformat()


def record(i: int) -> dict:
    ts = T0
    return {"event_id": f"IOT-{i:04d}", "external_id": f"SN-{i:04d}", "ts": ts, "event_class": "道路积水",
            "description": "积水传感器告警", "lat": 27.80 + (i % 50) * 0.003, "lon": 113.10 + (i // 50) * 0.01,
            "source": "物联感知"}


def wait_for(cond, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def count(eng) -> int:
    return int(hub.query("select count(*) as n from city_events", eng=eng)["n"].iloc[0])


def test_listener_survives_bad_messages_and_broker_restarts(broker, sqlite_hub):
    topic, cid = "zz/city/events", "events-test-session"
    lst = em.Listener(topic, port=broker.port, client_id=cid, eng=sqlite_hub).start()
    assert lst.connected
    assert em.publish([record(i) for i in range(50)] + [b"{broken", b"[1, 2]"], topic, port=broker.port) == 52
    assert wait_for(lambda: lst.stats.messages >= 52), lst.stats
    assert count(sqlite_hub) == 50
    time.sleep(1.5)  # the acks reach the broker and its autosave (else it delivers them again: at least once)
    # the broker goes down and comes back: the listener reconnects by itself
    broker.stop()
    assert wait_for(lambda: not lst.connected, 10)
    broker.start()
    assert wait_for(lambda: lst.connected, 15), lst.stats
    assert em.publish([record(i) for i in range(50, 100)], topic, port=broker.port) == 50
    assert wait_for(lambda: count(sqlite_hub) == 100), lst.stats
    # the listener goes away; messages wait in its persistent session, across a broker restart
    lst.stop()
    assert em.publish([record(i) for i in range(100, 130)] + [record(5)], topic, port=broker.port) == 31
    time.sleep(1.5)  # autosave
    broker.stop()
    broker.start()
    again = em.Listener(topic, port=broker.port, client_id=cid, eng=sqlite_hub).start()
    try:
        assert wait_for(lambda: count(sqlite_hub) == 130 and again.stats.messages >= 31), again.stats
    finally:
        again.stop()
    ev = hub.read("city_events", eng=sqlite_hub)
    assert ev["event_id"].is_unique and len(ev) == 130
    assert ev["status"].eq(flow.DISPATCH).all() and ev["department"].eq("水务").all()
    assert again.stats.total.duplicates >= 1  # record 5 sent again: not loaded twice
    q = hub.quarantine_rows("city_events", eng=sqlite_hub)
    assert sorted(q["reason"]) == sorted([intake.BAD_JSON, intake.NOT_RECORD, intake.NOT_RECORD])


def test_a_listener_killed_before_acknowledging_loses_nothing(broker, tmp_path):
    """`workbench events listen` in its own process, killed (SIGKILL) while messages flow:
    whatever it had not committed and acknowledged is delivered again to the next run."""
    import os
    import signal
    import sys

    db = f"sqlite:///{tmp_path / 'city.db'}"
    env = {**os.environ, "WORKBENCH_DB_URL": db, "WORKBENCH_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "workbench.cli", "events", "listen", "--topic", "zz/kill", "--port",
           str(broker.port), "--client-id", "events-kill-test", "--seconds", "60"]
    eng = hub.engine(db)
    log = tmp_path / "listen.log"
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:  # the listener says 监听 once connected; its subscription follows at once
        assert wait_for(lambda: "监听" in log.read_text(encoding="utf-8"), 60), log.read_text(encoding="utf-8")
        time.sleep(0.5)
        n = 600
        assert em.publish([record(i) for i in range(n)], "zz/kill", port=broker.port) == n
        assert wait_for(lambda: count(eng) > 0, 30)
        p.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
        p.wait(10)
        partial = count(eng)
        assert partial < n, "the listener finished before it was killed: nothing was tested"
        p = subprocess.Popen(cmd[:-1] + ["8"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: count(eng) == n, 40), (partial, count(eng))
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
        hub.dispose(db)
    ev = hub.read("city_events", eng=hub.engine(db))
    hub.dispose(db)
    assert len(ev) == n and ev["event_id"].is_unique



def _refuse_in_hub(eng, event_id: str) -> None:
    """A trigger that makes the hub refuse one event (as a constraint of a real hub would)."""
    import sqlalchemy as sa

    with eng.begin() as conn:
        if eng.dialect.name == "sqlite":
            conn.execute(sa.text(f"CREATE TRIGGER refuse_one BEFORE INSERT ON city_events WHEN NEW.event_id = "
                                 f"'{event_id}' BEGIN SELECT RAISE(ABORT, 'refused by the hub'); END"))
        else:
            conn.execute(sa.text(f"CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN IF NEW.event_id = "
                                 f"'{event_id}' THEN RAISE EXCEPTION 'refused by the hub'; END IF; RETURN NEW; END; "
                                 f"$$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse_one BEFORE INSERT ON city_events FOR EACH ROW "
                                 "EXECUTE FUNCTION refuse_one()"))


def test_poison_messages_are_quarantined_masked_and_acknowledged(broker, hub_engine):
    """400 KB of nested brackets, brackets nested deep under the size limit, invalid UTF-8, a
    NUL byte (raw and escaped), an id too long, a time intake cannot hold: each is one quarantined row (its
    phone number masked), acknowledged; the good records around them load; the topic flows on.
    The same on SQLite and PostgreSQL."""
    topic = "zz/poison"
    eng = hub_engine
    _refuse_in_hub(eng, "REFUSED-1")   # a record intake takes and the hub itself refuses
    lst = em.Listener(topic, port=broker.port, client_id="poison-test", eng=eng, state_file=None).start()
    assert lst.connected
    long_id = dict(record(9), event_id="E" * 300, external_id="X" * 300)  # the hub's columns hold 64
    poison = [b"[" * 400_000, b"[" * 100_000 + b"]" * 100_000, b'{"event_id": "\xff\xfe", "note": "13812345678"}',
              b'{"event_id": "N1", "description": "a\x00b 13812345678"}',
              b'{"event_id": "N2", "description": "a\\u0000b"}', long_id,
              dict(record(12), ts="9999-12-31T23:59:59+14:00"),   # out of range: intake's quarantine
              dict(record(13), event_id="REFUSED-1")]             # the hub refuses the batch: bisected to it
    try:
        assert em.publish([record(1), *poison, record(2)], topic, port=broker.port) == len(poison) + 2
        assert wait_for(lambda: lst.stats.messages >= len(poison) + 2, 60), lst.stats
        assert em.publish([record(3)], topic, port=broker.port) == 1   # the topic is not blocked
        assert wait_for(lambda: count(eng) == 3, 30), lst.stats
    finally:
        st = lst.stop()
    assert st.acked == len(poison) + 3 and st.retries == 0
    q = hub.quarantine_rows("city_events", eng=eng)
    reasons = sorted(q["reason"])
    assert len(q) == len(poison), reasons
    assert reasons.count(em.TOO_BIG) == 1 and reasons.count(em.TOO_DEEP) == 1 and reasons.count(em.HAS_NUL) == 2
    assert intake.BAD_JSON in reasons   # invalid UTF-8: intake's own word
    assert reasons.count(em.NOT_STORED) == 1  # written alone, refused while the hub answers: quarantined
    assert sum("超出 1900—2100 年范围" in r for r in reasons) == 1   # the time out of range
    checked = [r for r in reasons if r not in (em.TOO_BIG, em.TOO_DEEP, em.HAS_NUL, intake.BAD_JSON, em.NOT_STORED)
               and "1900—2100" not in r]
    assert len(checked) == 1 and "64" in checked[0], reasons  # the long id: the row checks' own words
    cells = [str(v) for v in q.to_numpy().ravel()]
    text = " ".join(cells)
    assert "13812345678" not in text and "\x00" not in text
    assert max(map(len, cells)) < 5000  # the big one kept by its head


class _DiesBeforeAcknowledging(em.Listener):
    """A listener that commits its batches and then dies before acknowledging them: the
    window between the hub's commit and the PUBACK, in which a real crash leaves the broker
    holding messages the hub already took."""

    def _done(self, items, s):
        self.stats.messages += len(items)
        self.stats.batches += 1
        self.stats.total.add(s)


def test_a_message_delivered_again_is_not_quarantined_twice(broker, sqlite_hub):
    """Committed, then the listener dies before its PUBACKs: the broker delivers the messages
    again (DUP). The good records are not loaded twice (their ids), and the broken messages,
    known by their fingerprint, are not quarantined twice. A broken message its source really
    sends twice (no DUP) is quarantined twice, as sent."""
    topic, cid = "zz/redeliver", "redeliver-test"
    first = _DiesBeforeAcknowledging(topic, port=broker.port, client_id=cid, eng=sqlite_hub, state_file=None).start()
    assert first.connected
    bad = [b"{broken 1", b'"not a record"', dict(record(7), event_class="不存在的类别")]
    assert em.publish([record(1), *bad, record(2)], topic, port=broker.port) == 5
    assert wait_for(lambda: first.stats.messages >= 5), first.stats
    assert len(hub.quarantine_rows("city_events", eng=sqlite_hub)) == 3
    first._stop.set()
    first.client.loop_stop()      # dies: no DISCONNECT, no PUBACK; the broker keeps the session
    first.client.socket().close()
    time.sleep(0.5)
    again = em.Listener(topic, port=broker.port, client_id=cid, eng=sqlite_hub, state_file=None).start()
    try:
        assert wait_for(lambda: again.stats.messages >= 5), again.stats   # delivered again, all five
        assert again.stats.redelivered == 3, again.stats
        assert again.stats.total.duplicates == 2 and again.stats.total.quarantined == 0, again.stats.total.line()
        # the same broken message sent again by its source: a second message, quarantined again
        assert em.publish([bad[0]], topic, port=broker.port) == 1
        assert wait_for(lambda: again.stats.messages >= 6), again.stats
    finally:
        again.stop()
    assert again.stats.acked == 6 and again.stats.redelivered == 3
    q = hub.quarantine_rows("city_events", eng=sqlite_hub)
    assert len(q) == 4, q[["reason", "line"]]
    assert sorted(q["reason"]).count(intake.BAD_JSON) == 2
    assert count(sqlite_hub) == 2
    # each quarantined row is kept under its own message's hash
    held = set(hub.query("select file_sha256 from quarantine", eng=sqlite_hub)["file_sha256"])
    assert intake.message_sha(bad[0]) in held and intake.message_sha(bad[1]) in held


def test_a_copy_in_the_same_batch_and_fingerprints_that_keep_masked_numbers_masked(sqlite_hub):
    """A DUP copy in the same batch as its first delivery (the listener reconnected while the
    first waited in its queue) is not quarantined twice; a text payload is taken as its UTF-8
    bytes; the fingerprint a quarantined message is kept under is keyed with the hub's secret,
    so the phone number its copy masks cannot be found by hashing the 10⁴ candidates."""
    import hashlib

    lst = em.Listener("zz/unit", eng=sqlite_hub, state_file=None)   # not started: batches written directly
    raw = "{broken 请联系13812345678".encode("utf-8")
    s = lst._write([em.Delivery(1, 1, raw, 0.0), em.Delivery(1, 1, raw, 0.0, dup=True),
                    em.Delivery(2, 1, raw.decode("utf-8"), 0.0)])   # the source sent it twice: two messages
    assert s.quarantined == 2 and lst.stats.redelivered == 1
    q = hub.query("select file_sha256, row_json from quarantine", eng=sqlite_hub)
    assert len(q) == 2 and "13812345678" not in " ".join(q["row_json"]) and "138****5678" in q["row_json"].iloc[0]
    fingerprint = q["file_sha256"].iloc[0]
    assert fingerprint == intake.message_sha(raw) == q["file_sha256"].iloc[1]
    candidates = {hashlib.sha256(f"{{broken 请联系138{k:04d}5678".encode("utf-8")).hexdigest() for k in range(10_000)}
    assert fingerprint not in candidates and hashlib.sha256(raw).hexdigest() in candidates


def test_username_and_password(tmp_path, sqlite_hub):
    """A broker that wants a password (mosquitto_passwd file): the wrong one is refused and
    said so; the right one (from a 0600 file, as --password-file reads it) takes messages."""
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not shutil.os.path.exists(passwd):
        pytest.skip("mosquitto_passwd is not installed")

    def users(folder):
        pw = folder / "passwd"
        subprocess.run([passwd, "-c", "-b", str(pw), "city", "s3cret-pass"], check=True, capture_output=True)
        pw.chmod(0o644)  # mosquitto drops to its own user and must read it
        return f"password_file {pw}\n"

    secret = tmp_path / "mqtt.pw"
    secret.write_text("s3cret-pass\n")
    secret.chmod(0o644)
    with pytest.raises(PermissionError):
        em.read_password(secret)
    secret.chmod(0o600)
    assert em.read_password(secret) == "s3cret-pass"
    with own_broker(anonymous=False, before=users) as b:
        bad = em.Listener("zz/auth", port=b.port, client_id="auth-bad", eng=sqlite_hub, username="city",
                          password="wrong", state_file=None).start(wait=3)
        try:
            assert not bad.connected and bad.stats.refused, bad.stats
        finally:
            bad.stop(drain=0)
        with pytest.raises(ConnectionRefusedError):
            em.publish([record(1)], "zz/auth", port=b.port, timeout=5)  # anonymous: refused
        # the command: a wrong password file is refused and said so (exit 2)
        import os
        import sys

        wrong = tmp_path / "wrong.pw"
        wrong.write_text("nope\n")
        wrong.chmod(0o600)
        env = {**os.environ, "WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}",
               "WORKBENCH_DATA_DIR": str(tmp_path / "cli-data")}
        r = subprocess.run([sys.executable, "-m", "workbench.cli", "events", "listen", "--topic", "zz/auth", "--port",
                            str(b.port), "--client-id", "auth-cli", "--username", "city", "--password-file", str(wrong),
                            "--seconds", "3"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "拒绝连接" in r.stderr, r.stderr
        lst = em.Listener("zz/auth", port=b.port, client_id="auth-ok", eng=sqlite_hub, username="city",
                          password=em.read_password(secret), state_file=None).start()
        try:
            assert lst.connected, lst.stats
            assert em.publish([record(i) for i in range(5)], "zz/auth", port=b.port, username="city",
                              password="s3cret-pass") == 5
            assert wait_for(lambda: count(sqlite_hub) == 5, 30)
        finally:
            lst.stop()


def test_messages_the_broker_dropped_are_noticed(tmp_path, sqlite_hub):
    """The broker keeps at most 5 messages for a session that is away (max_queued_messages):
    the numbered publisher's gap is noticed when the listener is back (its last number kept in
    a file across the restart), and so is the broker's $SYS dropped counter; each is an alert
    (消息丢失) and an audit row mqtt.dropped."""
    from workbench import alerts, audit

    state = tmp_path / "seq.json"
    with own_broker("max_queued_messages 5\nsys_interval 1\n") as b:
        lst = em.Listener("zz/drop", port=b.port, client_id="drop-test", eng=sqlite_hub, state_file=state).start()
        assert lst.connected
        assert em.publish([record(i) for i in range(3)], "zz/drop", port=b.port, publisher="sensor-1") == 3
        assert wait_for(lambda: count(sqlite_hub) == 3, 30)
        time.sleep(1.5)  # the $SYS counter's first value: the baseline
        lst.stop()
        assert em.publish([record(i) for i in range(3, 23)], "zz/drop", port=b.port, publisher="sensor-1",
                          seq_start=4) == 20          # numbers 4..23; the broker keeps 5 of them
        again = em.Listener("zz/drop", port=b.port, client_id="drop-test", eng=sqlite_hub, state_file=state,
                            gap_grace=1).start()
        try:
            assert wait_for(lambda: count(sqlite_hub) == 8, 30), again.stats
            assert em.publish([record(23)], "zz/drop", port=b.port, publisher="sensor-1", seq_start=24) == 1
            assert wait_for(lambda: count(sqlite_hub) == 9 and again.stats.dropped and again.stats.sys_dropped, 30), \
                again.stats
        finally:
            again.stop()
    assert again.stats.dropped == 15 and again.stats.sys_dropped >= 15
    a = hub.read("alerts", eng=sqlite_hub)
    a = a[a["category"] == em.DROPPED_CATEGORY]
    assert len(a) == 2 and a["status"].eq(alerts.ACTIVE).all()
    assert any("序号 9–23" in e for e in a["evidence"]), a["evidence"].tolist()
    log = audit.frame(sqlite_hub, action="mqtt.dropped")
    assert len(log) == 2 and set(log["target"]) == {"mqtt:zz/drop"}


def test_tls_with_a_ca_and_a_client_certificate(tmp_path, sqlite_hub):
    """A broker on TLS that requires a client certificate (openssl makes a CA, the broker's
    and the client's certificates): a listener speaking plain MQTT cannot connect, nor one
    without a client certificate; with --tls-ca, --tls-cert, --tls-key it takes messages."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed")

    def certs(folder):
        def ssl(*args):
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
            "-subj", "/CN=workbench test CA")
        for name, cn in (("server", "127.0.0.1"), ("client", "workbench-listener")):
            ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
            ext = folder / f"{name}.ext"
            ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
            ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", "-extfile", str(ext))
        for f in folder.iterdir():
            f.chmod(0o644)  # mosquitto drops to its own user and must read them
        return (f"cafile {folder / 'ca.crt'}\ncertfile {folder / 'server.crt'}\nkeyfile {folder / 'server.key'}\n"
                "require_certificate true\n")

    with own_broker(before=certs) as b:
        f = b.folder
        for kw in ({}, {"tls_ca": f / "ca.crt"}):  # plain MQTT; TLS without a client certificate
            stranger = em.Listener("zz/tls", port=b.port, client_id="tls-bad", eng=sqlite_hub, state_file=None,
                                   **kw).start(wait=2)
            try:
                assert not stranger.connected, kw
            finally:
                stranger.stop(drain=0)
        kw = dict(tls_ca=f / "ca.crt", tls_cert=f / "client.crt", tls_key=f / "client.key")
        lst = em.Listener("zz/tls", port=b.port, client_id="tls-ok", eng=sqlite_hub, state_file=None, **kw).start()
        try:
            assert lst.connected, lst.stats
            assert em.publish([record(i) for i in range(4)], "zz/tls", port=b.port, **kw) == 4
            assert wait_for(lambda: count(sqlite_hub) == 4, 30)
        finally:
            lst.stop()


def test_sequence_numbers_a_publisher_cannot_switch_off():
    """A forged huge sequence number is not believed (later real gaps are still seen); a
    publisher that starts counting again from 1 is followed; made-up publishers are capped."""
    st = em._SeqState(None)
    for n in (1, 2, 3):
        st.see("gw", n, 0.0)
    st.see("gw", 10**15, 0.0)          # forged: ignored
    for n in (4, 8):
        st.see("gw", n, 1.0)
    assert st.due(0, 2.0) == [("gw", 5, 7)]
    st.see("gw", 1, 3.0)               # the gateway restarted its numbering
    st.see("gw", 3, 3.0)
    assert st.last["gw"] == 3 and st.due(0, 4.0) == [("gw", 2, 2)]
    for i in range(em.MAX_PUBLISHERS + 50):
        st.see(f"p{i}", 1, 5.0)
    assert len(st.last) == em.MAX_PUBLISHERS
