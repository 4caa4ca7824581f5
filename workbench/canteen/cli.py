"""`workbench canteen …`: watch kitchen cameras, sweep old evidence, score canteens, move cases."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

DEFAULT_MODEL = Path("models/kitchen/kitchen-yolo11n.onnx")


def _rules_or_exit(config_path):
    """The cameras' rules file (exit 2 when it cannot be read); each camera it refuses is said
    (that camera does not start, the others run)."""
    from workbench.canteen.rules import ConfigError, load_rules

    try:
        rf = load_rules(config_path)
    except ConfigError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    for p in rf.problems:
        click.echo(f"错误 {p}（该摄像头不启动，其他摄像头照常运行）", err=True)
    return rf

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def canteen():
    """明厨亮灶：后厨摄像头 AI 识别、违规事件、整改闭环与食堂合规评分。"""


def _model_path(model: Path | None) -> Path:
    from workbench import config

    if model:
        return model
    for cand in (config.ROOT / DEFAULT_MODEL, config.ROOT / DEFAULT_MODEL.with_suffix(".pt")):
        if cand.exists():
            return cand
    return config.ROOT / DEFAULT_MODEL


@canteen.command()
@click.argument("sources", nargs=-1)
@click.option("--camera", "camera_ids", multiple=True,
              help="Camera id for each SOURCE, in order (default: the file name); with --config and no "
                   "SOURCE: only these cameras of the config.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Rules YAML (cameras: zones, staff hours, violations, thresholds); see config/cameras.example.yaml.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help=f"YOLO model (.pt or .onnx); default {DEFAULT_MODEL} (or the .pt beside it).")
@click.option("--closeup", default="auto", show_default=True,
              help="Close-up classifier for phones and cigarettes (.onnx), 'auto' (models/kitchen/"
                   "kitchen-closeup.onnx when there) or 'off' (the detector alone).")
@click.option("--fps", type=float, default=None, help="Frames sampled per second (overrides the config).")
@click.option("--realtime", is_flag=True, help="Play video files at their own speed (as if live).")
@click.option("--loop", is_flag=True, help="Start video files over when they end (run until stopped).")
@click.option("--batch", "max_batch", default=8, show_default=True, help="Frames per detector batch.")
@click.option("--no-gate", is_flag=True, help="Send every sampled frame to the detector (no motion gate).")
@click.option("--mqtt", "mqtt_url", default="127.0.0.1:1883", show_default=True,
              help="MQTT broker host:port; 'off' to publish nothing.")
@click.option("--no-hub", is_flag=True, help="Do not write events to the hub (MQTT and evidence only).")
@click.option("--no-evidence", is_flag=True, help="Do not write snapshot images.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--outbox-wait", default=30.0, show_default=True, type=float,
              help="At the end, keep trying this many seconds to write what the outbox holds to the hub.")
def watch(sources, camera_ids, config_path, model, closeup, fps, realtime, loop, max_batch, no_gate, mqtt_url, no_hub,
          no_evidence, as_json, outbox_wait):
    """Watch SOURCE... (video files, image folders, rtsp:// URLs) until they end or Ctrl-C.

    Every violation becomes one event (new / update / end) in the hub's canteen_violations
    and on MQTT (workbench/canteen/<camera>/events), with a face-blurred snapshot. Ctrl-C
    ends every open event before it exits: no event is lost. While the hub does not answer,
    events wait in the outbox on disk (data/outbox/canteen) and are written when it returns
    (an earlier run's leftovers first); the exit code is 3 if any are left unwritten.
    """
    from dataclasses import replace

    from workbench.canteen.detector import ModelError
    from workbench.canteen.rules import ConfigError, camera_rules

    rf = _rules_or_exit(config_path)
    cams = []
    if sources:
        if camera_ids and len(camera_ids) != len(sources):
            click.echo("错误：--camera 的个数应与 SOURCE 相同", err=True)
            sys.exit(2)
        for i, src in enumerate(sources):
            cid = camera_ids[i] if camera_ids else Path(src.rstrip("/")).stem or f"camera{i + 1}"
            if cid in rf.cameras:
                cams.append(replace(rf.cameras[cid], source=src))
            else:
                try:
                    cams.append(camera_rules(cid, {"source": src}, rf.defaults))
                except ConfigError as exc:
                    click.echo(f"错误 {exc}", err=True)
    else:
        wanted = set(camera_ids) if camera_ids else None
        cams = [c for cid, c in rf.cameras.items() if wanted is None or cid in wanted]
    if fps:
        cams = [replace(c, thresholds=replace(c.thresholds, fps=fps)) for c in cams]
    if not cams:
        click.echo("错误：没有可运行的摄像头（给出 SOURCE，或在 --config 中配置 cameras）", err=True)
        sys.exit(2)
    from workbench.canteen.detector import Detector

    try:
        detector = Detector(_model_path(model), closeup=None if closeup.lower() == "off" else closeup)
    except ModelError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    from workbench.canteen.pipeline import Watcher
    from workbench.canteen.sinks import HubSink, MqttSink, camera_directory

    hub_sink = directory = None
    if not no_hub:
        hub_sink = HubSink()
        left = hub_sink.flush()
        if hub_sink.replayed:
            click.echo(f"已补写上次遗留的 {hub_sink.replayed} 条事件到数据中台。", err=True)
        if left:
            click.echo(f"警告：数据中台暂时无法连接，{left} 条事件保存在 {hub_sink.outbox.folder}，恢复后自动写入。", err=True)
        try:
            directory = camera_directory(hub_sink.eng)
        except Exception as exc:  # noqa: BLE001 - cameras run without the directory; events wait in the outbox
            click.echo(f"警告：无法读取摄像头目录（{type(exc).__name__}），按配置运行。", err=True)
    mqtt = None
    if mqtt_url and mqtt_url.lower() != "off":
        host, _, port = mqtt_url.partition(":")
        mqtt = MqttSink(host or "127.0.0.1", int(port or 1883))
        if mqtt.error:
            click.echo(f"警告：{mqtt.error}（事件仍写入数据中台）", err=True)

    def changed(kind, ev):
        if as_json:
            return
        from workbench import clock

        word = {"new": "新违规", "update": "更新", "end": "结束"}[kind]
        if kind != "update":
            click.echo(f"[{word}] {clock.to_local(ev.ts):%H:%M:%S} {ev.camera_id} {ev.violation_class} "
                       f"置信度 {ev.score:.2f} {ev.violation_id}")

    def problem(p):
        click.echo(f"问题 {p.line()}", err=True)

    w = Watcher(cams, detector, hub=hub_sink, mqtt=mqtt, evidence=not no_evidence, max_batch=max_batch,
                realtime=realtime, loop=loop, use_gate=not no_gate, on_change=changed, on_problem=problem,
                directory=directory)
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(_sig, _frame):
        if w.stopping:  # a second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        click.echo("正在停止：结束未关闭的事件并写入……", err=True)
        w.stop()

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    click.echo(f"开始监控 {len(cams)} 路摄像头（Ctrl-C 停止）", err=True)
    try:
        s = w.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if as_json:
        click.echo(json.dumps(s.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(f"摄像头 {s.cameras} 路，采样 {s.frames} 帧，送检测 {s.detected} 帧，"
                   f"违规事件 {s.events} 起（已结束 {s.ended}），用时 {s.seconds:.1f} 秒。")
    if hub_sink is not None:
        left = hub_sink.close(wait=outbox_wait)
        if left:
            click.echo(f"错误：{left} 条事件未能写入数据中台（{hub_sink.last_error}），已保存在 {hub_sink.outbox.folder}；"
                       f"数据中台恢复后再次运行 watch 即补写。", err=True)
            sys.exit(3)
        try:
            _link(hub_sink.eng, quiet=as_json)
        except Exception as exc:  # noqa: BLE001 - the events are in; the linkage runs next time
            click.echo(f"警告：联动未运行（{type(exc).__name__}）。", err=True)
    sys.exit(2 if s.problems and not s.frames else 0)


def _link(eng, quiet: bool = False) -> None:
    """The kitchens' linkage (督办 for critical violations, 维修 for cameras offline 24 h)."""
    from workbench.canteen.rectification import link

    res = link(eng)
    if not quiet:
        click.echo(f"联动：匹配告警 {res['alerts']} 条，新开案件 {res['opened']} 件。")


@canteen.command("outbox")
@click.option("--wait", default=30.0, show_default=True, type=float,
              help="Keep trying this many seconds while the hub does not answer.")
def outbox_cmd(wait):
    """Write the events a watcher kept in the outbox (data/outbox/canteen) while the hub did not
    answer; exit 3 if any are still unwritten."""
    from workbench.canteen.sinks import HubSink

    sink = HubSink()
    held = len(sink.outbox)
    left = sink.close(wait=wait)
    if left:
        click.echo(f"错误：{left} 条事件仍未能写入数据中台（{sink.last_error}），保存在 {sink.outbox.folder}。", err=True)
        sys.exit(3)
    click.echo(f"发件箱已清空：写入数据中台 {held} 条。")


@canteen.command()
@click.option("--days", default=30, show_default=True, type=float, help="Keep this many days of evidence images.")
@click.option("--json", "as_json", is_flag=True)
def sweep(days, as_json):
    """Delete evidence images older than --days (data/evidence/<camera>/<date>/)."""
    from workbench.canteen.evidence import evidence_root, sweep as do_sweep

    out = do_sweep(days)
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"已删除 {out['folders']} 个目录、{out['files']} 张图片（{out['bytes'] / 1e6:.1f} MB），"
                   f"保留最近 {days:g} 天：{evidence_root()}")


@canteen.command()
@click.option("--days", default=30, show_default=True, help="School days back from the latest violation.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def scores(days, limit, as_json):
    """Canteens ranked by compliance score (violations per kitchen hour, weighted by severity);
    a district user (`workbench --user NAME`) sees their district's canteens only."""
    from workbench.canteen import compliance as cp
    from workbench.cli import _principal

    data = cp.load(who=_principal())
    ranked = cp.canteen_scores(data, days=days)
    if as_json:
        click.echo(ranked.head(limit).to_json(orient="records", force_ascii=False))
        return
    if ranked.empty:
        click.echo("暂无食堂或违规数据。")
        return
    for r in ranked.head(limit).itertuples():
        click.echo(f"{r.rank:>3d}. {r.name}（{r.district}） 得分 {r.score:.1f}  违规 {r.violations} 起  "
                   f"每小时加权 {r.weighted_per_hour:.3f}")


@canteen.command("case")
@click.argument("violation_id")
@click.argument("status", metavar="操作或状态")
@click.option("--note", default="", help="Why (整改说明, 复核意见).")
@click.option("--expected", default=None, help="The status you saw; refused if the case moved since.")
def case(violation_id, status, note, expected):
    """Move the rectification case of VIOLATION_ID: 操作或状态 is an action (通知整改, 登记整改,
    复核通过, 复核未通过) or a status (已通知, 已整改, 退回整改, 已复核); the English names (notify,
    rectify, verify, reject-fix; open/notified/rectified/verified of old exports) work too. Through
    the case engine, as the identity of `workbench --user NAME` (its department and district are
    checked) or, without it, the operator at the shell; the step records that identity."""
    from workbench.access import AccessDenied
    from workbench.canteen import compliance as cp
    from workbench.cli import _principal

    by_label = {label: action for action, label in cp.case_type().action_labels.items()}
    status = by_label.get(status.strip(), status)
    try:
        res = cp.set_case_status(violation_id, status, actor=_principal(), note=note or None, expected=expected)
    except (cp.CaseError, AccessDenied) as exc:
        click.echo(f"错误：{exc.problem}", err=True)
        sys.exit(2)
    click.echo(f"{violation_id}：{res['from']} → {res['to']}（{res['actor']}）")


@canteen.command()
@click.option("--clips", default=3, show_default=True, help="Synthetic kitchen clips to render and watch.")
@click.option("--seconds", default=40, show_default=True, help="Length of each clip.")
@click.option("--seed", default=7, show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None)
@click.option("--mqtt", "mqtt_url", default="off", show_default=True, help="host:port to publish on, or off.")
def demo(clips, seconds, seed, model, mqtt_url):
    """Render synthetic kitchen clips, play them as cameras registered in the hub (or DEMO-n)
    and watch them into the hub: the dashboard's feed then shows real, blurred snapshots."""
    from dataclasses import replace

    from workbench import config
    from workbench.canteen.detector import Detector, ModelError
    from workbench.canteen.evaluation import clip_rules
    from workbench.canteen.pipeline import Watcher
    from workbench.canteen.sinks import HubSink, MqttSink, camera_directory
    from workbench.canteen.synthkitchen import write_video_set

    try:
        detector = Detector(_model_path(model))
    except ModelError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    folder = config.data_dir() / "samples" / "kitchen"
    vids = sorted(folder.glob("kitchen_*.mp4"))[:clips]
    if len(vids) < clips:
        click.echo(f"生成合成后厨视频 {clips} 段 → {folder}")
        vids = [t.path for t in write_video_set(folder, n=clips, seconds=seconds, seed=seed)]
    sink = HubSink()
    directory = camera_directory(sink.eng)
    ids = directory["camera_id"].tolist()[:len(vids)] if len(directory) else []
    # each clip keeps its own clock (meta.json) and the staff hours its scenario assumed
    cams = [replace(clip_rules(v), camera_id=ids[i] if i < len(ids) else f"DEMO-{i + 1}") for i, v in enumerate(vids)]
    mqtt = None
    if mqtt_url.lower() != "off":
        host, _, port = mqtt_url.partition(":")
        mqtt = MqttSink(host or "127.0.0.1", int(port or 1883))
    w = Watcher(cams, detector, hub=sink, mqtt=mqtt, directory=directory,
                on_change=lambda kind, ev: kind == "new" and click.echo(f"[新违规] {ev.camera_id} {ev.violation_class}"))
    s = w.run()
    click.echo(f"演示：摄像头 {s.cameras} 路，违规事件 {s.events} 起，已写入数据中台（{sink.written}）。")
    _link(sink.eng)


@canteen.command()
@click.argument("model", type=click.Path(path_type=Path, exists=True))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: <model>-int8.onnx beside it.")
@click.option("--calibration", "calibration", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="Images or videos (files or folders) of the cameras the model will watch: every other frame "
                   "calibrates, the rest checks the copy against the float model. May be given several times.")
def quantize(model, out, calibration):
    """Make an INT8 copy of an exported .onnx model for the CPU (head and first layers kept in
    float), and say how far its scores are from the float model's."""
    from workbench.canteen.detector import Detector
    from workbench.canteen.quantize import THRESHOLDS, fidelity, frames_from, held_out_frames, int8_model

    frames = frames_from(calibration) if calibration else []
    if calibration and not frames:
        raise click.ClickException(f"--calibration 中没有可读的图片或视频：{'、'.join(map(str, calibration))}")
    path = int8_model(model, out, calibration=frames[0::2] or None)
    click.echo(f"已生成：{path}" + (f"（校准帧：合成后厨 32 帧 + 实拍 {len(frames[0::2])} 帧）" if frames else
                                  "（校准帧：合成后厨 32 帧；用 --calibration 加入自己摄像头的画面更准）"))
    check = frames[1::2] or held_out_frames()
    f = fidelity(Detector(model, closeup=None), Detector(path, closeup=None), check)
    click.echo(f"与浮点模型比较（{f['images']} 帧{'实拍' if frames[1::2] else '合成'}画面，未参与校准）：检测 {f['detections']} 个，"
               f"置信度平均相差 {f['mean_abs']:.3f}，99% 不超过 {f['p99_abs']:.3f}；"
               f"在阈值 {' / '.join(map(str, THRESHOLDS))} 两侧判断不同 {f['flips']} 次（可能多报或漏报事件）。")


@canteen.group()
def cluster():
    """The kitchen cameras over a Ray cluster (cameras from the hub's cameras table)."""


@cluster.command("run")
@click.option("--address", default=None,
              help="A Ray cluster to join (host:port of its head; 'auto' = the one started on this machine); "
                   "default: a local cluster in this process.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Rules YAML (zones, staff hours, violations, thresholds per camera).")
@click.option("--model", default=None,
              help="Model path on every node (default: $WORKBENCH_CANTEEN_MODEL on each node, else "
                   f"{DEFAULT_MODEL}).")
@click.option("--closeup", default="auto", show_default=True, help="Close-up classifier (.onnx), auto or off.")
@click.option("--fps", type=float, default=None, help="Frames sampled per second (overrides the rules).")
@click.option("--batch", "max_batch", default=8, show_default=True, help="Frames per detector batch of a worker.")
@click.option("--decode", type=click.Choice(["auto", "keyframes", "full"]), default="auto", show_default=True,
              help="auto: key frames only where the stream's GOP allows the sampling rate.")
@click.option("--poll", "poll_s", default=5.0, show_default=True, help="Seconds between rounds (table re-read, health).")
@click.option("--dead-after", "dead_after_s", default=10.0, show_default=True,
              help="A worker that does not answer this long is given up; its cameras move.")
@click.option("--seconds", default=None, type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--no-evidence", is_flag=True, help="Do not write snapshot images.")
def cluster_run(address, config_path, model, closeup, fps, max_batch, decode, poll_s, dead_after_s, seconds,
                no_evidence):
    """Start or join the cluster and run every camera of the hub's table that has a source_url;
    cameras added to or removed from the table start or stop within --poll seconds."""
    import threading

    from workbench.canteen.cluster import Cluster, health_lines

    rf = _rules_or_exit(config_path)
    cl = Cluster(address, model=model, closeup=None if closeup.lower() == "off" else closeup, fps=fps, rules=rf,
                 poll_s=poll_s, dead_after_s=dead_after_s, max_batch=max_batch, evidence=not no_evidence,
                 decode=decode)
    stop = threading.Event()

    def on_signal(_sig, _frame):
        click.echo("正在停止集群上的摄像头……", err=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cl.start()
    except Exception as exc:  # noqa: BLE001 - no cluster at that address
        click.echo(f"错误：无法连接 Ray 集群（{address or '本机'}）：{type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"集群已启动（{address or '本机'}），摄像头来自数据中台 cameras 表；Ctrl-C 停止。", err=True)
    try:
        h = cl.run(max_seconds=seconds, stop=stop)
    finally:
        cl.shutdown()
    from workbench.canteen.cluster import health

    for line in health_lines(health()):
        click.echo(line)
    sys.exit(0 if h.get("workers") else 2)


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True)
def cluster_status(as_json):
    """The cluster's health (what the 明厨亮灶 dashboard shows): cameras per worker, frames/s,
    lag, last frame, problems. Exit 0 while it runs, 1 when not running or its health is stale."""
    from workbench.canteen.cluster import health, health_lines, health_view

    h = health()
    if as_json:
        click.echo(json.dumps(h, ensure_ascii=False, indent=1, default=str))
    else:
        for line in health_lines(h):
            click.echo(line)
    sys.exit(0 if health_view(h).state == "running" else 1)
