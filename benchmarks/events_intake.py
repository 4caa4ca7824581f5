"""City event intake and dispatch throughput (events/s), from files and from MQTT, into SQLite
and PostgreSQL; and the time from an MQTT message to its committed row (median, p99).

Events are the sample city's (workbench.synth, realistic classes, places and times), made
recent so none is "in the future" or stale. Each run: a fresh hub; every event validated,
deduplicated, routed, given its working-hour deadline, checked for duplicates nearby and
written with its history rows.

- file: one Open311 JSON file of N events through `intake_file`;
- mqtt flood: N messages of one event each published at once (QoS 1) to the broker on
  127.0.0.1:1883, taken by `Listener` (manual ack after commit);
- mqtt batched: the same events as messages of 100 records each;
- latency: messages published at a steady rate well under capacity; per message, from
  publish to the commit of its batch.

    .venv/bin/python benchmarks/events_intake.py [--events 20000] [--rate 100] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd


def sample_records(n: int, seed: int = 7) -> list[dict]:
    """n sample-city events as Open311-style records, shifted to end now (UTC+8 times)."""
    import datetime as dt

    from workbench.synth.city import generate

    days = max(21, int(n / 180) + 2)
    ev = generate(days, seed, dt.date.today() - dt.timedelta(days=1))["frames"]["city_events"].head(n)
    shift = pd.Timestamp.now() - pd.Timedelta(hours=1) - pd.to_datetime(ev["ts"]).max()
    ts = pd.to_datetime(ev["ts"]) + shift
    out = []
    for r, t in zip(ev.itertuples(index=False), ts):
        s = t.strftime("%Y-%m-%dT%H:%M:%S+08:00")
        out.append({"service_request_id": f"{r.event_id}-{uuid.uuid4().hex[:6]}", "service_code": r.event_class,
                    "description": r.description, "requested_datetime": s, "updated_datetime": s,
                    "lat": r.lat, "long": r.lon, "address": r.address, "district": r.district, "street": r.street,
                    "source": r.source})
    return out


def fresh(backend: str, pg: str | None, tmp: Path, tag: str) -> str | None:
    from workbench.store import hub

    if backend == "sqlite":
        return f"sqlite:///{tmp / f'{tag}.db'}"
    return hub.pg_schema_url(pg, f"bench_events_{tag}") if pg else None


def bench_file(url: str, records: list[dict], tmp: Path) -> dict:
    from workbench.events.intake import intake_file
    from workbench.store import hub

    path = tmp / f"open311-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    eng = hub.engine(url)
    t = time.perf_counter()
    s = intake_file(path, eng=eng)
    dt = time.perf_counter() - t
    hub.dispose(url)
    return {"events": s.rows_read, "loaded": s.loaded, "seconds": dt, "per_s": s.rows_read / dt}


def bench_mqtt(url: str, records: list[dict], per_message: int, port: int) -> dict:
    from workbench.events import mqtt as em
    from workbench.store import hub

    eng = hub.engine(url)
    topic = f"bench/events/{uuid.uuid4().hex[:8]}"
    lst = em.Listener(topic, port=port, client_id=f"bench-{uuid.uuid4().hex[:8]}", eng=eng).start()
    msgs = [records[i:i + per_message] if per_message > 1 else records[i]
            for i in range(0, len(records), per_message)]
    t = time.perf_counter()
    sent = 0
    for i in range(0, len(msgs), 500):  # in slices: the broker queues at most max_queued_messages per client
        sent += em.publish(msgs[i:i + 500], topic, port=port)
        while lst.stats.messages < sent - 500:
            time.sleep(0.01)
    while lst.stats.total.rows_read < len(records) and time.perf_counter() - t < 600:
        time.sleep(0.02)
    dt = time.perf_counter() - t
    st = lst.stop()
    hub.dispose(url)
    return {"events": st.total.rows_read, "loaded": st.total.loaded, "messages": st.messages, "seconds": dt,
            "per_s": st.total.rows_read / dt, "batches": st.batches}


def bench_latency(url: str, records: list[dict], rate: float, seconds: float, port: int) -> dict:
    import paho.mqtt.client as mqtt

    from workbench.events import mqtt as em
    from workbench.store import hub

    eng = hub.engine(url)
    topic = f"bench/latency/{uuid.uuid4().hex[:8]}"
    lat: list[float] = []
    sent_at: dict[str, float] = {}

    def committed(summary, _received):  # publish → commit, on one clock, per event id
        now = time.time()
        lat.extend(now - sent_at[e] for e in summary.event_ids if e in sent_at)

    lst = em.Listener(topic, port=port, client_id=f"bench-lat-{uuid.uuid4().hex[:8]}", eng=eng,
                      on_commit=committed).start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    n = int(rate * seconds)
    t0 = time.time()
    for i in range(n):
        target = t0 + i / rate
        time.sleep(max(0.0, target - time.time()))
        rid = f"LAT-{i}-{uuid.uuid4().hex[:4]}"
        rec = dict(records[i % len(records)], service_request_id=rid)
        sent_at[rid] = time.time()
        pub.publish(topic, json.dumps(rec, ensure_ascii=False), qos=1)
    end = time.time() + 30
    while lst.stats.messages < n and time.time() < end:
        time.sleep(0.05)
    pub.disconnect()
    pub.loop_stop()
    lst.stop()
    hub.dispose(url)
    a = np.array(lat) * 1000
    return {"messages": n, "received": lst.stats.messages, "rate_per_s": rate,
            "median_ms": float(np.median(a)) if len(a) else None, "p99_ms": float(np.percentile(a, 99)) if len(a) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=100.0, help="messages/s for the latency run")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--pg", default=os.environ.get("WORKBENCH_TEST_PG_URL"))
    args = ap.parse_args()
    os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="events-bench-data-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    records = sample_records(args.events)
    tmp = Path(tempfile.mkdtemp(prefix="events-bench-"))
    rows = []
    for backend in ("sqlite", "postgresql"):
        for kind in ("file", "mqtt x1", "mqtt x100", "latency"):
            url = fresh(backend, args.pg, tmp, f"{backend[:2]}_{kind.replace(' ', '_')}_{uuid.uuid4().hex[:4]}")
            if url is None:
                print(f"{backend}: skipped (no --pg / WORKBENCH_TEST_PG_URL)")
                break
            if kind == "file":
                r = bench_file(url, records, tmp)
            elif kind.startswith("mqtt"):
                r = bench_mqtt(url, records, 1 if kind == "mqtt x1" else 100, args.port)
            else:
                r = bench_latency(url, records, args.rate, args.seconds, args.port)
            rows.append({"backend": backend, "run": kind, **r})
            print(json.dumps(rows[-1], ensure_ascii=False))
            if backend == "postgresql":  # leave no benchmark schema behind
                import sqlalchemy as sa

                eng = sa.create_engine(args.pg)
                with eng.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{url.split("%3D")[-1]}" CASCADE'))
                eng.dispose()
    print()
    print("| backend | run | events | seconds | events/s |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        if r["run"] != "latency":
            print(f"| {r['backend']} | {r['run']} | {r['events']:,} | {r['seconds']:.1f} | {r['per_s']:,.0f} |")
    print()
    print("| backend | messages/s | messages | median ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        if r["run"] == "latency":
            print(f"| {r['backend']} | {r['rate_per_s']:.0f} | {r['received']:,} | {r['median_ms']:.0f} | {r['p99_ms']:.0f} |")


if __name__ == "__main__":
    main()
