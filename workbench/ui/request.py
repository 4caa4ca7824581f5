"""What the browser asked for, inside a Voilà kernel.

With preheated kernels (workbench.ui.server), Voilà runs a dashboard's cells before anyone
opens it. A dashboard calls `query_params()` after its imports and before it reads the hub:
a preheated kernel waits there for the request, so the data is read when the page is opened,
not when the kernel was started. Outside Voilà (JupyterLab, nbval) it returns at once.

`wait_for_request` speaks Voilà 0.5's request-info protocol itself (the environment
variables and the /voila/query/<kernel_id> websocket of `voila.utils.wait_for_request`):
importing voila.utils in a kernel costs about 1.5 s of CPU (it pulls in jupyter_server),
which a page would otherwise wait for. Should the protocol change, it falls back to voila's.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
from urllib.parse import parse_qs

# No limit on the wait for the request info: a preheated kernel may sit for hours before its first
# visitor (Voilà's own helper waits forever too; idle kernels are culled by the server). A
# connection the server closes without an answer is opened again.
RECONNECT_S = 1.0
QUERY_KEY_PARAM = "key"   # /voila/query/<kernel_id>?key=...: only the kernel (and the server) know it


def query_key(kernel_id: str) -> str:
    """The kernel's key to its request info: HMAC of the kernel id with the hub's secret (data/.secret,
    0600, or $WORKBENCH_SECRET), which the server and its kernels read and no other account can.
    The server (workbench.ui.auth) refuses /voila/query/<kernel_id> without it."""
    import hashlib
    import hmac

    from workbench.access import secret

    return hmac.new(secret(), b"voila-query:" + kernel_id.encode(), hashlib.sha256).hexdigest()


def _query_url() -> str | None:
    kernel_id = os.environ.get("VOILA_KERNEL_ID")
    if not kernel_id:
        return None
    protocol = os.environ.get("VOILA_WS_PROTOCOL", "ws")
    host = os.environ.get("VOILA_APP_IP", "127.0.0.1")
    if ":" in host and not host.startswith("["):   # an IPv6 address
        host = f"[{host}]"
    port = os.environ.get("VOILA_APP_PORT", "8866")
    base = os.environ.get("VOILA_WS_BASE_URL", os.environ.get("VOILA_SERVER_URL", "/"))
    return f"{protocol}://{host}:{port}{base}voila/query/{kernel_id}?{QUERY_KEY_PARAM}={query_key(kernel_id)}"


async def _receive(url: str) -> str:
    import websockets

    ssl_ctx = None
    if url.startswith("wss:"):  # our own server on this machine (TLS for the browsers): no CA to check it by
        import ssl

        ssl_ctx = ssl._create_unverified_context()
    from websockets.exceptions import ConnectionClosed

    while True:
        try:
            async with websockets.connect(url, open_timeout=10, ssl=ssl_ctx) as ws:
                return await ws.recv()
        except ConnectionClosed:   # closed before answering (a proxy's idle limit, a restart): ask again
            await asyncio.sleep(RECONNECT_S)


def wait_for_request() -> None:
    """Block a preheated Voilà kernel until a browser opens the page; no-op elsewhere.

    The request's details (QUERY_STRING, SERVER_NAME, …) land in os.environ, as with voila's,
    among them HTTP_X_WORKBENCH_USER: the signed-in user the server signed into the request
    (workbench.ui.auth; verified by workbench.access.current).
    """
    if os.environ.get("VOILA_PREHEAT", "False") == "False":
        return
    try:
        url = _query_url()
    except Exception:  # noqa: BLE001 - the secret unreadable: no request info, the page has no user
        return
    result: dict = {}

    def run():  # the kernel's own event loop is busy running this cell
        from websockets.exceptions import InvalidHandshake

        try:
            result["info"] = asyncio.new_event_loop().run_until_complete(_receive(url))
        except InvalidHandshake as exc:  # Voilà answers differently: its own helper knows how
            result["fallback"] = exc
        except Exception as exc:  # noqa: BLE001 - server gone or stopping: carry on without
            result["error"] = exc

    if url:
        thread = threading.Thread(target=run, name="voila-request-info", daemon=True)
        thread.start()
        thread.join()
    if url is None or "fallback" in result:
        from voila.utils import wait_for_request as voila_wait

        voila_wait()
        return
    if "info" not in result:
        return
    for key, value in json.loads(result["info"]).items():
        os.environ[key] = str(value)
    os.environ["VOILA_PREHEAT"] = "False"  # answered: a second call returns at once


def query_params() -> dict[str, str]:
    """The page's query string (`?dataset=rapid_tests`) as a dict, after `wait_for_request`."""
    wait_for_request()
    qs = os.environ.get("QUERY_STRING", "")
    return {k: v[-1] for k, v in parse_qs(qs).items() if v}


__all__ = ["wait_for_request", "query_params", "query_key", "QUERY_KEY_PARAM"]
