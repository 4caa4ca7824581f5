"""`workbench serve` stopped and started again at once: the port's closed connections (TIME_WAIT,
about a minute) must not make the new server refuse with 端口已被占用."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from workbench.ui.server import free_port, port_free


def test_port_in_time_wait_is_free_and_a_listening_one_is_not():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as Tornado binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_free("127.0.0.1", port)           # somebody listens: busy
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()                                       # the server closes first: its side waits in TIME_WAIT
    time.sleep(0.2)
    client.close()
    listener.close()
    plain = socket.socket()                            # the old check (a bind without SO_REUSEADDR) …
    with pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    plain.close()
    assert port_free("127.0.0.1", port)               # … refused the port; the server's own bind takes it


def _start(port: int, env: dict) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--preheat", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "看板服务已启动" in line:
            return proc, lines
    proc.kill()
    proc.wait()
    raise AssertionError("serve did not start:\n" + "".join(lines[-30:]))


@pytest.mark.slow
def test_serve_restarts_right_after_stopping():
    env = dict(os.environ)
    port = free_port()
    first, _ = _start(port, env)
    try:
        held = http.client.HTTPConnection("127.0.0.1", port, timeout=30)   # a browser's keep-alive connection
        held.request("GET", "/login")
        assert held.getresponse().read() and True
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) is not None
    finally:
        if first.poll() is None:
            first.kill()
    in_time_wait = not _plain_bind_ok(port)
    second, lines = _start(port, env)                  # at once, not a minute later
    try:
        assert not any("端口" in ln and "占用" in ln for ln in lines)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/login")
        assert c.getresponse().status == 200
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=120)
        except subprocess.TimeoutExpired:
            second.kill()
    held.close()
    assert in_time_wait   # the stop did leave the port in TIME_WAIT: the case the old check refused


def _plain_bind_ok(port: int) -> bool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
