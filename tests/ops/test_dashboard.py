"""The dashboard in a real headless Chromium (Debian ``chromium``), driven over the
DevTools protocol: while a client publishes, the page's throughput figure and client
list follow the broker, updated every second from the admin JSON API."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from websockets.sync.client import connect as ws_connect

from tests.helpers.broker import free_port
from tests.helpers.rawclient import RawClient

from .support import wait_for

READ_PAGE = """JSON.stringify({
  updates: Number(document.body.dataset.updates || 0),
  rateIn: document.getElementById('rate-in').textContent,
  rateOut: document.getElementById('rate-out').textContent,
  connections: document.getElementById('connections').textContent,
  status: document.getElementById('status').textContent,
  clients: [...document.querySelectorAll('#clients tr')].map(r => r.dataset.clientId),
  topics: [...document.querySelectorAll('#top-topics tr td:first-child')].map(t => t.textContent),
  chartInk: (() => { const c = document.getElementById('chart');
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let n = 0;  // coloured pixels: the in (blue) and out (green) lines; the grid is grey
                     for (let i = 0; i < d.length; i += 4)
                       if (d[i+3] > 0 && Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) n++;
                     return n; })(),
})"""


class DevTools:
    """A tiny Chrome DevTools Protocol client: Runtime.evaluate on one page."""

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        def page_ws():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
            except OSError:
                return None
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        url = wait_for(page_ws, timeout=timeout, what="chromium's DevTools endpoint")
        self.ws = ws_connect(url, open_timeout=10, max_size=None).__enter__()
        self.next_id = 0

    def call(self, method: str, params: dict) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=10))
            if msg.get("id") == self.next_id:
                return msg["result"]

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.__exit__(None, None, None)


@pytest.mark.timeout(90)
def test_dashboard_shows_live_throughput_and_clients(ops_broker, tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (apt-get install -y chromium)"
    b = ops_broker(["--sys-interval", "0"])
    stop = threading.Event()
    sent = [0]

    def publish_steadily() -> None:  # about 50 messages per second
        with RawClient(b.port) as pub:
            pub.connect("dash-publisher")
            next_at = time.monotonic()
            while not stop.is_set():
                pub.publish("dash/load", b"x" * 16)
                sent[0] += 1
                next_at += 0.02
                time.sleep(max(0.0, next_at - time.monotonic()))
            pub.disconnect()

    with RawClient(b.port) as sub:
        sub.connect("dash-subscriber")
        sub.subscribe("dash/#")
        worker = threading.Thread(target=publish_steadily, daemon=True)
        worker.start()
        debug_port = free_port()
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--remote-debugging-port={debug_port}",
                b.admin_url(f"/#token={b.token}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        devtools = None
        try:
            devtools = DevTools(debug_port)

            def page():
                return json.loads(devtools.evaluate(READ_PAGE) or "{}")

            def busy():
                p = page()
                try:
                    rate = float(p["rateIn"])
                except (KeyError, ValueError):
                    return None
                ok = 25 <= rate <= 100 and "dash-publisher" in p["clients"] and p["updates"] >= 3
                return p if ok else None

            p = wait_for(busy, timeout=25, what="the dashboard showing ~50 msg/s in")
            assert p["clients"] == ["dash-publisher", "dash-subscriber"]
            assert p["connections"] == "2"
            assert float(p["rateOut"]) > 0  # the subscriber receives them
            assert p["topics"][:1] == ["dash/load"]
            assert p["chartInk"] > 0  # the throughput line is drawn on the canvas
            first = p["updates"]

            # Publishing stops and a new client arrives: the page follows within seconds.
            stop.set()
            worker.join(5)
            with RawClient(b.port) as late:
                late.connect("dash-late")

                def quiet():
                    q = page()
                    return (
                        q
                        if (
                            q["rateIn"] == "0.0"
                            and "dash-late" in q["clients"]
                            and "dash-publisher" not in q["clients"]
                        )
                        else None
                    )

                q = wait_for(quiet, timeout=10, what="rate 0 and the new client listed")
            assert q["updates"] > first
            assert q["clients"] == ["dash-late", "dash-subscriber"]
        finally:
            stop.set()
            if devtools is not None:
                devtools.close()
            browser.kill()
            browser.wait(10)
    assert sent[0] > 50


FIRST_RENDER = """JSON.stringify({
  updates: Number(document.body.dataset.updates || 0),
  rateIn: document.getElementById('rate-in').textContent,
  rateOut: document.getElementById('rate-out').textContent,
  retained: document.getElementById('retained').textContent,
  sysRetained: document.getElementById('sys-retained').textContent,
  chartInk: (() => { const c = document.getElementById('chart');
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let n = 0;
                     for (let i = 0; i < d.length; i += 4)
                       if (d[i+3] > 0 && Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) n++;
                     return n; })(),
})"""


@pytest.mark.timeout(90)
def test_dashboard_first_render_has_rates_and_retained_without_sys(ops_broker, tmp_path) -> None:
    """Opened while a client publishes: the very first update (one /api/stats answer)
    shows the real rate and a drawn chart (the server kept the history); the retained
    card counts what clients retained, $SYS apart. A screenshot is saved for a human
    look (dashboard-first-render.png in the test's directory)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (apt-get install -y chromium)"
    b = ops_broker(["--sys-interval", "1"])
    stop = threading.Event()

    def publish_steadily() -> None:  # about 50 messages per second
        with RawClient(b.port) as pub:
            pub.connect("first-publisher")
            for i in range(3):
                pub.publish(f"kept/{i}", b"r", retain=True)
            next_at = time.monotonic()
            while not stop.is_set():
                pub.publish("first/load", b"x" * 16)
                next_at += 0.02
                time.sleep(max(0.0, next_at - time.monotonic()))

    worker = threading.Thread(target=publish_steadily, daemon=True)
    worker.start()
    try:
        # Let the server sample a few seconds before anyone opens the page.
        wait_for(
            lambda: len(b.api("GET", "/api/stats")[1]["rates"]["history"]) >= 3,
            timeout=10,
            what="three sampled seconds",
        )
        _, stats = b.api("GET", "/api/stats")
        assert stats["retained_messages"] == 3  # kept/0..2; $SYS not counted here
        assert stats["sys_retained_messages"] > 0
        assert 25 <= stats["rates"]["publish_received"] <= 100, stats["rates"]
        assert not set(stats) & set(stats["counters"]), "one name, one meaning"
        debug_port = free_port()
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1300,900",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--remote-debugging-port={debug_port}",
                b.admin_url(f"/#token={b.token}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        devtools = None
        try:
            devtools = DevTools(debug_port)
            p = wait_for(
                lambda: (lambda q: q if q.get("updates", 0) >= 1 else None)(
                    json.loads(devtools.evaluate(FIRST_RENDER) or "{}")
                ),
                timeout=20,
                what="the first update",
            )
            assert p["updates"] == 1, p  # the first render itself, not a later one
            assert 25 <= float(p["rateIn"]) <= 100, p
            assert p["chartInk"] > 0, p  # history drawn at once
            assert p["retained"] == "3", p
            assert int(p["sysRetained"]) > 0, p
            shot = devtools.call("Page.captureScreenshot", {"format": "png"})
            import base64

            (tmp_path / "dashboard-first-render.png").write_bytes(base64.b64decode(shot["data"]))
        finally:
            if devtools is not None:
                devtools.close()
            browser.kill()
            browser.wait(10)
    finally:
        stop.set()
        worker.join(5)
