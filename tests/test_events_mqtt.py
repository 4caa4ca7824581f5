"""Live intake from MQTT against a real Mosquitto started for this test (its own port and
persistence file, so the shared broker is never touched): malformed messages are
quarantined and the listener keeps going; the broker restarts underneath it; messages sent
while the listener is away are delivered to its persistent session, even across a broker
restart; nothing is lost and nothing is loaded twice."""
from __future__ import annotations

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
    def __init__(self, folder, port):
        self.port = port
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n", encoding="utf-8")
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


@pytest.fixture
def broker():
    import tempfile
    from pathlib import Path

    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = Path(tempfile.mkdtemp(prefix="events-mosquitto-"))  # not under pytest's 0700 folders
    b = Broker(folder, free_port())
    b.start()
    yield b
    b.stop()
    shutil.rmtree(folder, ignore_errors=True)


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

