"""A preheated kernel waits for its page's request info as long as it takes, and asks again when
the server closes the connection without answering (the kernel used to give up after 60 s, and
the first visitor of a dashboard idle for longer saw 请先登录)."""
from __future__ import annotations

import asyncio
import json
import socket
import threading

from workbench.ui import request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_request_info_waits_and_reconnects(monkeypatch):
    from websockets.asyncio.server import serve

    port = _free_port()
    seen: list[str] = []
    ready = threading.Event()

    async def handler(ws):
        seen.append(ws.request.path)
        if len(seen) == 1:          # the first connection: closed without an answer
            await ws.close()
            return
        await asyncio.sleep(1.5)    # the visitor comes later
        await ws.send(json.dumps({"QUERY_STRING": "district=荷塘区", "HTTP_X_WORKBENCH_USER": "token"}))

    async def main(stop: asyncio.Event):
        async with serve(handler, "127.0.0.1", port):
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(stop),), daemon=True)
    thread.start()
    assert ready.wait(10)
    monkeypatch.setenv("WORKBENCH_SECRET", "test-secret-of-the-request-info")
    for k, v in {"VOILA_PREHEAT": "True", "VOILA_KERNEL_ID": "kernel-1", "VOILA_APP_IP": "127.0.0.1",
                 "VOILA_APP_PORT": str(port), "VOILA_WS_BASE_URL": "/", "VOILA_WS_PROTOCOL": "ws"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("QUERY_STRING", raising=False)
    monkeypatch.delenv("HTTP_X_WORKBENCH_USER", raising=False)
    try:
        request.wait_for_request()
        assert request.query_params() == {"district": "荷塘区"}
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    assert len(seen) == 2, seen
    key = request.query_key("kernel-1")
    assert all(p == f"/voila/query/kernel-1?key={key}" for p in seen), seen
    import os

    assert os.environ["VOILA_PREHEAT"] == "False"   # answered: the next call returns at once
    os.environ.pop("HTTP_X_WORKBENCH_USER", None)
    os.environ.pop("QUERY_STRING", None)
