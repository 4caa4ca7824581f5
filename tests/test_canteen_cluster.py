"""The kitchen cameras on a real local Ray cluster: a head and worker nodes started with
`ray start` on 127.0.0.1 (each node its own raylet and worker processes). Cameras come from the
hub's table and spread over the workers; cameras added and removed while it runs; a camera whose
stream never opens and a node without the model file are reported by name while the other cameras
run; a worker node killed mid-run (SIGKILL of its raylet and everything under it): its cameras
resume on the other node from their checkpoints and the hub ends up with exactly the events of
an uninterrupted run in one process — none lost, none doubled."""
from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from workbench import config
from workbench.canteen.cluster import MODEL_ENV, Cluster, LocalNodes, LocalStore, NodeRunner, health, \
    health_lines, place, read_cameras
from workbench.canteen.rules import load_rules
from workbench.canteen.synthkitchen import make_video
from workbench.store import hub

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
MODEL = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"
IMGSZ = 320  # small input: the test is about the cluster, not the detector


def test_placement_is_balanced_and_stable():
    cams = [f"C{i}" for i in range(10)]
    a = place(cams, ["w1", "w2", "w3"])
    loads = sorted(list(a.values()).count(w) for w in ("w1", "w2", "w3"))
    assert loads == [3, 3, 4]
    assert place(cams, ["w1", "w2", "w3"], a) == a                      # nothing moves without a reason
    b = place(cams + ["C10", "C11"], ["w1", "w2", "w3"], a)
    assert all(b[c] == a[c] for c in cams)                              # new cameras do not move the others
    c = place(cams, ["w1", "w3"], a)                                    # w2 died: only its cameras move
    assert all(c[k] == a[k] for k in cams if a[k] != "w2") and set(c.values()) == {"w1", "w3"}
    d = place(cams, ["w1", "w2", "w3", "w4"], a)                        # a worker joins: the fullest give
    assert sorted(list(d.values()).count(w) for w in ("w1", "w2", "w3", "w4")) == [2, 2, 3, 3]
    assert sum(d[k] != a[k] for k in cams) == 2


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clusterclips")
    out = {}
    for i in range(4):
        out[f"K{i}"] = make_video(d / f"K{i}.mp4", seconds=36, fps=10, seed=20 + i, size=(640, 360)).path
    rules = {"defaults": {"fps": 2}, "cameras": {}}
    for cam, p in out.items():
        meta = json.loads(p.with_suffix(".meta.json").read_text(encoding="utf-8"))
        hours = meta.get("staff_hours_assumed")
        rules["cameras"][cam] = {"start_time": meta["clock_start"], "canteen_id": "CT1",
                                 **({"staff_hours": f"{hours[0]}-{hours[1]}"} if hours else {})}
    (d / "rules.yaml").write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    return {"videos": out, "rules": load_rules(d / "rules.yaml"), "dir": d}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Head (no CPUs: runs no cameras) + 2 worker nodes of 1 CPU + a third whose model path
    points nowhere (a node without the model file)."""
    missing = str(tmp_path_factory.mktemp("nomodel") / "kitchen-yolo11n.onnx")
    ln = LocalNodes(workers=3, cpus=1, worker_env=[{}, {}, {MODEL_ENV: missing}])
    try:
        ln.start()
        yield ln
    finally:
        ln.stop()


def _cameras(eng, rows):
    with eng.begin() as c:
        c.execute(sa.text("DELETE FROM cameras"))
        c.execute(sa.text("DELETE FROM canteens"))
        c.execute(sa.text("INSERT INTO canteens (canteen_id, name, district, staff_hours) "
                          "VALUES ('CT1', '一中食堂', '荷塘区', '05:30-20:30')"))
        for cam, src in rows.items():
            c.execute(sa.text("INSERT INTO cameras (camera_id, canteen_id, source_url) VALUES (:c, 'CT1', :s)"),
                      {"c": cam, "s": src})


def _by_worker(h):
    return {w["node"]: sorted(w["camera_status"]) for w in h["workers"]}


def _until(cl, cond, seconds, step=1.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        h = cl.tick()
        if cond(h):
            return h
        time.sleep(step)
    raise AssertionError(f"not reached in {seconds} s: {json.dumps(h, ensure_ascii=False, default=str)[:3000]}")


def test_bad_cameras_and_a_node_without_the_model_are_named_the_others_run(nodes, clips, sqlite_hub):
    eng = sqlite_hub
    _cameras(eng, {"K0": str(clips["videos"]["K0"]), "NOFILE": str(clips["dir"] / "missing.mp4"),
                   "NOSTREAM": "rtsp://127.0.0.1:9/Streaming/Channels/101"})
    cl = Cluster(nodes.address, imgsz=IMGSZ, closeup=None, rules=clips["rules"], poll_s=1, dead_after_s=20,
                 evidence=False, stream_kw={"open_timeout_s": 1, "offline_after_s": 2, "max_backoff_s": 1})
    cl.start()
    try:
        h = _until(cl, lambda h: any(p["camera"] == "NOFILE" for p in h["problems"])
                   and any(p["camera"] == "NOSTREAM" and "离线" in p["problem"] for p in h["problems"])
                   and any(v["frames"] >= 4 for w in h["workers"] for c, v in w["camera_status"].items()
                           if c == "K0"), 150)
        # two workers only: the node without the model runs nothing and says why, naming itself
        assert len(h["workers"]) == 2
        bad = [p for p in h["problems"] if p["camera"] is None and "模型" in p["problem"]]
        assert len(bad) == 1 and bad[0]["node"] in bad[0]["problem"] and "模型文件不存在" in bad[0]["problem"]
        nofile = next(p for p in h["problems"] if p["camera"] == "NOFILE")
        assert "视频文件不存在" in nofile["problem"] and nofile["node"] in {w["node"] for w in h["workers"]}
        # a camera added while it runs starts; a camera removed stops
        _cameras(eng, {"K0": str(clips["videos"]["K0"]), "K1": str(clips["videos"]["K1"])})
        h = _until(cl, lambda h: any(v["frames"] > 0 for w in h["workers"] for c, v in w["camera_status"].items()
                                     if c == "K1"), 90)
        assert sorted(c for cams in _by_worker(h).values() for c in cams) == ["K0", "K1"]
        assert sorted(len(c) for c in _by_worker(h).values()) == [1, 1]   # one camera on each worker
        text = "\n".join(health_lines(health()))
        assert "摄像头 2 路" in text and "模型文件不存在" in text and "NOFILE" in text
    finally:
        cl.shutdown()


def test_worker_killed_mid_run_no_event_lost_or_doubled(nodes, clips, sqlite_hub):
    eng = sqlite_hub
    videos = clips["videos"]
    _cameras(eng, {c: str(p) for c, p in videos.items()})
    rules, _ = read_cameras(eng, clips["rules"])
    # the reference: the same cameras in this process, uninterrupted
    from workbench.canteen.detector import Detector

    det = Detector(MODEL, imgsz=IMGSZ, closeup=None, deterministic=True)  # as the model holders
    ref = []
    runner = NodeRunner("reference", det.detect, LocalStore(), evidence=False,
                        on_change=lambda kind, ev: kind == "new" and ref.append(ev.violation_id))
    runner.set_cameras(rules)
    runner.run_until_done(max_seconds=300)
    assert len(ref) >= 4 and len(set(ref)) == len(ref)

    cl = Cluster(nodes.address, imgsz=IMGSZ, closeup=None, rules=clips["rules"], poll_s=1, dead_after_s=6,
                 evidence=False)
    cl.start()
    try:
        # spread over the two nodes that have the model, then some progress on node 1
        h = _until(cl, lambda h: len(h["workers"]) == 2 and all(
            any(v["frames"] >= 6 for v in w["camera_status"].values()) for w in h["workers"]), 150)
        placed = _by_worker(h)
        assert sorted(len(c) for c in placed.values()) == [2, 2]
        victim = next(w for w in h["workers"] if w["node"].endswith(f":{nodes.node_ports[0]}"))
        moved = sorted(victim["camera_status"])
        assert not all(v["state"] == "ended" for v in victim["camera_status"].values())
        killed_at = time.monotonic()
        assert nodes.kill_node(1)
        h = _until(cl, lambda h: len(h["workers"]) == 1 and all(
            h["workers"][0]["camera_status"].get(c, {}).get("state") in ("running", "ended") for c in moved),
            60, step=0.5)
        failover_s = time.monotonic() - killed_at
        assert failover_s < 30
        assert h["failovers"] and sorted(h["failovers"][-1]["cameras"]) == moved
        h = cl.run(until_done=True, max_seconds=300)
        assert all(v["state"] == "ended" for v in h["workers"][0]["camera_status"].values())
        assert sorted(h["workers"][0]["camera_status"]) == sorted(videos)
    finally:
        cl.shutdown()
    rows = hub.read("canteen_violations", eng=eng)
    assert sorted(rows["violation_id"]) == sorted(ref)                 # none lost, none extra
    assert not rows.duplicated(["camera_id", "violation_class", "ts"]).any()
    assert rows["ts_end"].notna().all()                                 # every event ended once


def test_health_of_a_real_node_reads_the_same_on_the_dashboard_and_the_cli(tmp_path, monkeypatch):
    """The health file as the coordinator writes it (a real node's status), read by the page's
    section and `workbench canteen cluster status`: the same headline; stale marked; 集群未运行
    when no cluster has run or it stopped."""
    from click.testing import CliRunner

    from canteen_nodes import real_node_health
    from workbench.canteen import cluster as cl
    from workbench.cli import main
    from workbench.ui import canteen_page

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    cli = CliRunner()

    # never ran here
    v = cl.health_view(cl.health())
    assert v.state == "none" and v.headline.startswith("集群未运行")
    res = cli.invoke(main, ["canteen", "cluster", "status"])
    assert res.exit_code == 1 and res.output.splitlines()[0] == v.headline
    assert "集群未运行" in canteen_page.cluster_html(None)

    h, _ = real_node_health(tmp_path / "clip")
    got = cl.health()
    assert got is not None and not got["stale"] and not got["stopped"]
    v = cl.health_view(got)
    assert v.state == "running" and v.headline.startswith("集群运行中：1 个工作节点，摄像头 1 路")
    row = v.cameras.iloc[0]
    assert row["摄像头"] == "K0" and row["状态"] == "运行中" and row["已分析帧"] >= 6 and row["帧/秒"] > 0
    assert row["最后一帧"] != "尚无画面" and v.workers.iloc[0]["摄像头(路)"] == 1
    res = cli.invoke(main, ["canteen", "cluster", "status"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == v.headline and any("K0：运行中" in x for x in lines)
    page = canteen_page.cluster_html(got)
    assert "集群运行中" in page and "K0" in page and "帧/秒" in page and "wb-cl-running" in page
    assert "127.0.0.1:61001" in page
    assert "K0" not in canteen_page.cluster_html(got, cameras=["OTHER"])   # a district user: their cameras

    # stale: the coordinator stopped writing (30 s or three rounds)
    old = cl.health(now=time.time() + 120)
    v = cl.health_view(old)
    assert old["stale"] and v.state == "stale" and v.headline.startswith("运行状态已过期")
    page = canteen_page.cluster_html(old)
    assert "状态过期" in page and "wb-cl-stale" in page and "K0" in page
    from types import SimpleNamespace

    later = SimpleNamespace(time=lambda: time.time() + 120, monotonic=time.monotonic, sleep=time.sleep)
    with monkeypatch.context() as m:
        m.setattr(cl, "time", later)   # the CLI reads the file two minutes later
        res = cli.invoke(main, ["canteen", "cluster", "status"])
    assert res.exit_code == 1 and res.output.startswith("运行状态已过期")

    # stopped (what Cluster.shutdown writes): not running, not a fault
    cl.write_health({**h, "stopped": True})
    v = cl.health_view(cl.health(now=time.time() + 3600))
    assert v.state == "stopped" and v.headline.startswith("集群未运行：上次运行已于")
    assert "集群未运行" in canteen_page.cluster_html(cl.health())
