"""Fault drills, on loopback, against the real parts: each counts the rows lost and the rows
doubled (both must be 0) and how long the recovery took.

- the camera watcher (its own process) killed with SIGKILL in the middle of an event, then
  started again on the same recording;
- the test's own Mosquitto restarted while numbered events flow (publisher at QoS 1 with
  retries, listener on a persistent session);
- PostgreSQL refusing connections for 20 s — a loopback TCP proxy in front of it is stopped
  and started (the real PostgreSQL service is never touched) — while the watcher, the MQTT
  listener and an ingest run;
- poison messages among good ones.

The drills are functions returning their figures; benchmarks/fault_drills.py runs the same
ones and writes the table.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from workbench.store import hub

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_events_mqtt import MOSQUITTO, free_port, own_broker, record, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
PG_URL = os.environ.get("WORKBENCH_TEST_PG_URL")
TRAINED = ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"
SCENARIO = {"clock_start": "2026-11-26T10:00:00+08:00", "actors": [
    {"track_id": 1, "kind": "person", "enter_s": 0.0, "leave_s": 14.0, "violations": {"未戴厨师帽": [[0.0, 14.0]]},
     "path": [[0.0, 0.40, 0.75], [14.0, 0.50, 0.75]]},
    {"track_id": 2, "kind": "person", "enter_s": 18.0, "leave_s": 34.0, "violations": {"未戴口罩": [[18.0, 34.0]]},
     "path": [[18.0, 0.55, 0.75], [34.0, 0.45, 0.75]]}]}


# ---------------------------------------------------------------------- shared parts

def peak_children_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_self_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kitchen(folder: Path) -> Path:
    """A 36 s recording with two violations (no chef hat 0–14 s, no mask 18–34 s) and the
    camera config that plays it with a fixed clock (a recording: the same events each time)."""
    from workbench.canteen.synthkitchen import make_video

    folder.mkdir(parents=True, exist_ok=True)
    clip = make_video(folder / "kitchen.mp4", seconds=36, fps=10, seed=21, scenario=SCENARIO).path
    cfg = folder / "cameras.yaml"
    cfg.write_text("defaults:\n  fps: 2\n  cooldown_s: 3\ncameras:\n  K9:\n"
                   f"    source: {clip}\n    canteen_id: ST-HT-009\n    district: 荷塘区\n"
                   "    start_time: \"2026-11-26T02:00:00\"\n", encoding="utf-8")
    return cfg


def env_for(url: str, data: Path) -> dict:
    env = {**os.environ, "WORKBENCH_DB_URL": url, "WORKBENCH_DATA_DIR": str(data)}
    env.pop("WORKBENCH_USER", None)
    return env


def watch(cfg: Path, env: dict, realtime: bool, log: Path, wait: float = 90) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "workbench.cli", "canteen", "watch", "--config", str(cfg), "--mqtt", "off",
           "--outbox-wait", str(wait)] + (["--realtime"] if realtime else [])
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "a"), stderr=subprocess.STDOUT)


def violations(eng) -> pd.DataFrame:
    return hub.query("SELECT violation_id, ts, ts_end, frames, violation_class FROM canteen_violations "
                     "ORDER BY violation_id", eng=eng)


def compare(got: pd.DataFrame, want: pd.DataFrame) -> tuple[int, int, int]:
    """(rows lost, rows doubled, rows that differ) of `got` against `want`, by event."""
    ids_w, ids_g = set(want["violation_id"]), list(got["violation_id"])
    lost = len(ids_w - set(ids_g))
    doubled = len(ids_g) - len(set(ids_g) & ids_w)   # a second row for an event, or an event not in the reference
    m = want.merge(got, on="violation_id", suffixes=("_w", "_g"))

    def norm(col):
        t = pd.to_datetime(col)
        return t.dt.tz_convert("UTC").dt.tz_localize(None) if t.dt.tz is not None else t

    differ = int((norm(m["ts_end_w"]) != norm(m["ts_end_g"])).sum()
                 + (m["frames_w"].astype(int) != m["frames_g"].astype(int)).sum())
    return lost, doubled, differ


def reference_run(folder: Path, cfg: Path) -> pd.DataFrame:
    """The recording watched once, undisturbed."""
    url = f"sqlite:///{folder / 'reference.db'}"
    p = watch(cfg, env_for(url, folder / "ref-data"), False, folder / "reference.log")
    assert p.wait(300) == 0, (folder / "reference.log").read_text(encoding="utf-8")
    eng = hub.engine(url)
    ref = violations(eng)
    hub.dispose(url)
    assert len(ref) == 2 and ref["ts_end"].notna().all(), ref
    return ref


class PgProxy:
    """A loopback TCP proxy in front of PostgreSQL: stop() closes its port and cuts every
    connection through it (clients see refused connections), start() opens it again."""

    def __init__(self, target_port: int, port: int | None = None, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._srv: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> "PgProxy":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._srv = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()
        return self

    def _accept(self, srv):
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._srv is not None:
            with contextlib.suppress(OSError):
                self._srv.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            self._srv.close()
            self._srv = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Publisher:
    """One MQTT client publishing numbered records at QoS 1 as they come; paho queues what it
    cannot send while the broker is away and sends it again when the broker returns."""

    def __init__(self, port: int, topic: str, name: str):
        import paho.mqtt.client as mqtt

        self.topic, self.name = topic, name
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"drill-pub-{name}", clean_session=False,
                             protocol=mqtt.MQTTv311)
        self.c.max_queued_messages_set(0)
        self.c.max_inflight_messages_set(100)
        self.c.reconnect_delay_set(0.2, 1)
        self.acked: set[int] = set()
        self.c.on_publish = lambda client, userdata, mid, rc=None, props=None: self.acked.add(mid)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        self.mids: list[int] = []
        self.seq = 0

    def send(self, rec: dict) -> None:
        self.seq += 1
        body = json.dumps({**rec, "_publisher": self.name, "_seq": self.seq}, ensure_ascii=False)
        self.mids.append(self.c.publish(self.topic, body, qos=1).mid)  # queued while the broker is away

    def finish(self, timeout: float = 60) -> int:
        wait_for(lambda: self.acked.issuperset(self.mids), timeout)
        self.c.disconnect()
        self.c.loop_stop()
        return sum(1 for m in self.mids if m in self.acked)


def events_count(eng) -> int:
    return int(hub.query("select count(*) as n, count(distinct event_id) as d from city_events", eng=eng)["n"].iloc[0])


def mqtt_figures(eng, n: int) -> tuple[int, int]:
    """(lost, doubled) of n published events IOT-0000…: by id."""
    ids = hub.query("select event_id from city_events", eng=eng)["event_id"].tolist()
    want = {f"IOT-{i:04d}" for i in range(n)}
    return len(want - set(ids)), len(ids) - len(set(ids) & want)


# ---------------------------------------------------------------------- the drills

def drill_kill_watcher(folder: Path, cfg: Path, ref: pd.DataFrame) -> dict:
    url = f"sqlite:///{folder / 'kill.db'}"
    env = env_for(url, folder / "kill-data")
    log = folder / "kill.log"
    eng = hub.engine(url)
    p = watch(cfg, env, True, log)
    try:  # killed while an event is open (its new row in the hub, no end yet)
        assert wait_for(lambda: violations(eng)["ts_end"].isna().any(), 120), log.read_text(encoding="utf-8")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    at_kill = violations(eng)
    outbox = len(list((folder / "kill-data" / "outbox" / "canteen").glob("*.json")))
    t0 = time.monotonic()
    p2 = watch(cfg, env, False, log)
    rc = p2.wait(300)
    recovery = time.monotonic() - t0
    got = violations(eng)
    hub.dispose(url)
    lost, doubled, differ = compare(got, ref)
    return {"fault": "摄像头监控进程被 SIGKILL（事件进行中）后重启", "rows_lost": lost, "duplicates": doubled,
            "differ": differ, "open_at_kill": int(at_kill["ts_end"].isna().sum()), "outbox_at_kill": outbox,
            "exit": rc, "recovery_s": round(recovery, 1), "peak_mib": round(peak_children_mib()),
            "log": log.read_text(encoding="utf-8")[-2000:]}


def drill_mosquitto_restart(eng, n: int = 1200) -> dict:
    from workbench.events import mqtt as em

    with own_broker() as b:
        lst = em.Listener("zz/drill/restart", port=b.port, client_id="drill-restart", eng=eng, state_file=None).start()
        pub = Publisher(b.port, "zz/drill/restart", "restart")
        try:
            for i in range(n):
                pub.send(record(i))
                if i == n // 3:
                    b.stop()          # SIGTERM: mosquitto saves its sessions and goes away
                    time.sleep(2)
                    b.start()
                    t_back = time.monotonic()
                time.sleep(0.002)
            acked = pub.finish()
            ok = wait_for(lambda: events_count(eng) >= n, 90)
            recovery = time.monotonic() - t_back
        finally:
            st = lst.stop()
    lost, doubled = mqtt_figures(eng, n)
    return {"fault": "Mosquitto 在事件流入时重启", "published": n, "acked": acked, "rows_lost": lost,
            "duplicates": doubled, "complete": ok, "seq_gaps": st.dropped, "redelivered": st.total.duplicates,
            "recovery_s": round(recovery, 1), "peak_mib": round(peak_self_mib())}


def drill_pg_outage(base_url: str, folder: Path, cfg: Path, ref: pd.DataFrame, outage: float = 20.0,
                    n: int = 300, grid_rows: int = 5000) -> dict:
    """PostgreSQL refuses connections for `outage` seconds while the watcher (its own
    process), the MQTT listener (here) and an ingest (its own process) run."""
    from workbench.events import mqtt as em

    schema = f"wb_drill_{os.getpid()}"
    direct = hub.pg_schema_url(base_url, schema)
    hub.engine(direct)  # migrated, directly
    u = sa.engine.make_url(direct)
    proxy = PgProxy(u.port or 5432).start()
    url = u.set(port=proxy.port).render_as_string(hide_password=False)
    env = env_for(url, folder / "pg-data")
    csv = folder / "grids.csv"
    csv.write_text("grid_id,district,street\n" + "".join(f"G{i:05d},荷塘区,月塘街道\n" for i in range(grid_rows)),
                   encoding="utf-8")
    eng = hub.engine(url)
    log = folder / "pg-watch.log"
    out: dict = {"fault": f"PostgreSQL 拒绝连接 {outage:g} 秒（摄像头、MQTT 监听、文件接入同时运行）"}
    try:
        with own_broker() as b:
            lst = em.Listener("zz/drill/pg", port=b.port, client_id="drill-pg", eng=eng, state_file=None).start()
            pub = Publisher(b.port, "zz/drill/pg", "pg")
            w = watch(cfg, env, True, log)
            try:
                assert wait_for(lambda: violations(eng)["ts_end"].isna().any(), 120), log.read_text(encoding="utf-8")
                for i in range(n // 3):
                    pub.send(record(i))
                proxy.stop()                                   # PostgreSQL refuses from here
                t_down = time.monotonic()
                ing = subprocess.run([sys.executable, "-m", "workbench.cli", "ingest", "grids", str(csv),
                                      "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
                for i in range(n // 3, n):
                    pub.send(record(i))
                    time.sleep(0.02)
                time.sleep(max(0.0, outage - (time.monotonic() - t_down)))
                down_rows = violations_or_none(eng)
                proxy.start()                                  # and answers again
                t_up = time.monotonic()
                box = folder / "pg-data" / "outbox" / "canteen"
                ok_mqtt = wait_for(lambda: events_count(eng) >= n, 120)
                t_mqtt = time.monotonic() - t_up
                wait_for(lambda: not any(box.glob("*.json")), 60)
                t_outbox = time.monotonic() - t_up
                rc_w = w.wait(300)
                t_watch = time.monotonic() - t_up
                again = subprocess.run([sys.executable, "-m", "workbench.cli", "ingest", "grids", str(csv),
                                        "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True,
                                       timeout=120)
            finally:
                if w.poll() is None:
                    w.kill()
                st = lst.stop()
                acked = pub.finish(10)
        got = violations(eng)
        lost_w, dup_w, differ = compare(got, ref)
        lost_m, dup_m = mqtt_figures(eng, n)
        grids = hub.query("select count(*) as n, count(distinct grid_id) as d from grids", eng=eng).iloc[0]
        out.update({
            "watcher": {"rows_lost": lost_w, "duplicates": dup_w, "differ": differ, "exit": rc_w,
                        "got": got.astype(str).to_dict("records"), "want": ref.astype(str).to_dict("records"),
                        "outbox_written_s": round(t_outbox, 1), "finished_s": round(t_watch, 1),
                        "during_outage": down_rows,
                        "log": log.read_text(encoding="utf-8")[-1500:]},
            "mqtt": {"published": n, "acked": acked, "rows_lost": lost_m, "duplicates": dup_m, "complete": ok_mqtt,
                     "retries": st.retries, "poisoned": st.poisoned, "recovery_s": round(t_mqtt, 1)},
            "ingest": {"during_exit": ing.returncode, "during_said": (ing.stdout + ing.stderr).strip()[-400:],
                       "again_exit": again.returncode, "rows": int(grids["n"]), "distinct": int(grids["d"]),
                       "rows_lost": grid_rows - int(grids["d"]), "duplicates": int(grids["n"] - grids["d"])},
            "rows_lost": lost_w + lost_m + grid_rows - int(grids["d"]),
            "duplicates": dup_w + dup_m + int(grids["n"] - grids["d"]),
            "recovery_s": round(max(t_outbox, t_mqtt), 1), "peak_mib": round(max(peak_self_mib(), peak_children_mib())),
        })
    finally:
        proxy.stop()
        hub.dispose(url)
        hub.dispose(direct)
        admin = sa.create_engine(base_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return out


def violations_or_none(eng):
    try:
        return len(violations(eng))
    except Exception as exc:  # noqa: BLE001 - the point: the hub does not answer
        return f"无法读取（{type(exc).__name__}）"


def drill_poison(eng, good: int = 200) -> dict:
    from workbench.events import mqtt as em

    poison = [b"[" * 400_000, b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{", b'{"event_id": "P1", "description": "a\x00b"}',
              dict(record(9999), ts="9999-12-31T23:59:59+14:00")]
    msgs = []
    for i in range(good):
        msgs.append(record(i))
        if i % 40 == 20:
            msgs.append(poison[(i // 40) % len(poison)])
    with own_broker() as b:
        lst = em.Listener("zz/drill/poison", port=b.port, client_id="drill-poison", eng=eng, state_file=None).start()
        try:
            t0 = time.monotonic()
            sent = em.publish(msgs, "zz/drill/poison", port=b.port)
            ok = wait_for(lambda: lst.stats.messages >= len(msgs), 60)
            took = time.monotonic() - t0
        finally:
            st = lst.stop()
    lost, doubled = mqtt_figures(eng, good)
    q = hub.query("select count(*) as n from quarantine where dataset = 'city_events'", eng=eng)["n"].iloc[0]
    return {"fault": "毒消息（400 KB 嵌套括号、深层嵌套、非 UTF-8、NUL、超界时间）夹在正常消息中", "published": sent,
            "poison": len(msgs) - good, "quarantined": int(q), "acked": st.acked, "rows_lost": lost,
            "duplicates": doubled, "complete": ok, "retries": st.retries, "recovery_s": round(took, 1),
            "peak_mib": round(peak_self_mib())}


# ---------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    if not TRAINED.exists():
        pytest.skip("the kitchen model is not trained here (models/kitchen/kitchen-yolo11n.onnx)")
    folder = tmp_path_factory.mktemp("kitchen")
    cfg = kitchen(folder)
    return folder, cfg, reference_run(folder, cfg)


def test_watcher_killed_mid_event_loses_and_doubles_nothing(recording, tmp_path):
    _, cfg, ref = recording
    r = drill_kill_watcher(tmp_path, cfg, ref)
    assert r["open_at_kill"] >= 1, r            # it was killed mid-event
    assert r["exit"] == 0, r["log"]
    assert (r["rows_lost"], r["duplicates"], r["differ"]) == (0, 0, 0), r


def test_mosquitto_restarted_while_events_flow(sqlite_hub):
    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed")
    r = drill_mosquitto_restart(sqlite_hub)
    assert r["complete"] and r["acked"] == r["published"], r
    assert (r["rows_lost"], r["duplicates"], r["seq_gaps"]) == (0, 0, 0), r


@pytest.mark.pg
def test_postgresql_refusing_connections_for_20_s(recording, tmp_path, pg_skip_reason):
    if pg_skip_reason:
        pytest.skip(pg_skip_reason)
    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed")
    _, cfg, ref = recording
    r = drill_pg_outage(PG_URL, tmp_path, cfg, ref)
    w, m, i = r["watcher"], r["mqtt"], r["ingest"]
    assert w["exit"] == 0 and (w["rows_lost"], w["duplicates"], w["differ"]) == (0, 0, 0), w
    assert "数据中台" in w["log"] or "outbox" in w["log"] or w["during_outage"] is not None
    assert m["complete"] and m["retries"] > 0 and m["poisoned"] == 0, r   # held, retried: not quarantined
    assert (m["rows_lost"], m["duplicates"]) == (0, 0), m
    assert i["during_exit"] != 0 and "Traceback" not in i["during_said"], i  # refused clearly, the re-run loads it
    assert i["again_exit"] == 0 and (i["rows_lost"], i["duplicates"]) == (0, 0), i


def test_poison_messages_among_good_ones(hub_engine):
    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed")
    r = drill_poison(hub_engine)
    assert r["complete"] and r["retries"] == 0 and r["acked"] == r["published"], r
    assert r["quarantined"] == r["poison"] and (r["rows_lost"], r["duplicates"]) == (0, 0), r


def test_watcher_with_no_hub_keeps_everything_and_says_so(recording, tmp_path):
    """The hub does not answer for the whole run: the watcher keeps watching, every write waits
    in the outbox, it exits 3 saying how many are unwritten; the next run, with the hub back,
    writes them first — nothing lost, nothing doubled."""
    _, cfg, ref = recording
    data = tmp_path / "data"
    down = env_for("postgresql+psycopg://postgres@127.0.0.1:9/none", data)  # nothing listens on port 9
    log = tmp_path / "down.log"
    p = watch(cfg, down, False, log, wait=1)
    assert p.wait(300) == 3, log.read_text(encoding="utf-8")
    said = log.read_text(encoding="utf-8")
    left = sorted((data / "outbox" / "canteen").glob("*.json"))
    assert len(left) >= 4 and f"错误：{len(left)} 条事件未能写入数据中台" in said, said  # 2 events: new + end each
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in left)
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "canteen", "outbox", "--wait", "1"], env=down, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and f"{len(left)} 条事件仍未能写入" in r.stderr, r.stderr
    url = f"sqlite:///{tmp_path / 'back.db'}"
    p = watch(cfg, env_for(url, data), False, log)
    assert p.wait(300) == 0, log.read_text(encoding="utf-8")
    assert f"已补写上次遗留的 {len(left)} 条事件" in log.read_text(encoding="utf-8")
    assert not any((data / "outbox" / "canteen").glob("*.json"))
    eng = hub.engine(url)
    assert compare(violations(eng), ref) == (0, 0, 0)
    hub.dispose(url)
