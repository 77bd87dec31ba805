"""/metrics and the admin API for a whole ``--workers`` group, served by the supervisor.

The supervisor owns the public ports ([metrics]/[admin], --metrics-port/--admin-port);
every worker serves its own on a private loopback port. A request to the supervisor
asks every worker (concurrently, bounded by a timeout) and answers with:

* ``/metrics``: every worker's samples with a ``worker="i"`` label added (families
  merged, so the exposition stays valid), plus the supervisor's own figures
  (``mqttfast_supervisor_*``: workers configured, up, restarts). Totals are a
  ``sum without (worker)`` in PromQL; nothing is summed here, so no double counting.
* admin API: ``/api/stats`` sums every numeric figure over the workers (and lists each
  worker's under ``workers``), ``/api/clients`` merges the lists (each client tagged
  with its worker), ``/api/clients/<id>...`` and ``DELETE /api/retained`` go to every
  worker (the answer of the worker that has the client), ``/api/topics/top`` adds the
  counts up; ``/api/group`` is the supervisor's own status. The dashboard's files come
  from a worker. The bearer token is checked by the workers (same token everywhere).

A worker that does not answer (restarting) is left out and counted in
``mqttfast_supervisor_scrape_failures_total``; the rest still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .admin.httpd import HTTPServer, Request, Response, error, json_response

if TYPE_CHECKING:
    from .supervisor import Supervisor, Worker

log = logging.getLogger("mqttfast.supervisor")

FETCH_TIMEOUT = 3.0
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def http_request(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request to a worker's private endpoint (Connection: close)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        for name, value in (headers or {}).items():
            if name.lower() not in ("host", "connection", "content-length"):
                head.append(f"{name}: {value}")
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        data = await reader.read()  # the server closes after one response
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    raw_head, _, content = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return status, out, content


def add_worker_label(families: dict[str, list[str]], order: list[str], text: str, i: int) -> None:
    """Merge one worker's exposition into ``families`` (name -> header + sample lines),
    adding ``worker="i"`` to every sample."""
    current = ""
    label = f'worker="{i}"'
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                current = parts[2]
                if current not in families:
                    families[current] = []
                    order.append(current)
                    families[current].append(line)
                elif not any(h.startswith(f"# {parts[1]} ") for h in families[current][:2]):
                    families[current].insert(0, line)
            continue
        end = line.rfind("}")
        if end != -1 and "{" in line[:end]:
            sep = "" if line[end - 1] == "{" else ","
            sample = f"{line[:end]}{sep}{label}{line[end:]}"
        else:
            name, _, rest = line.partition(" ")
            sample = f"{name}{{{label}}} {rest}"
        if current not in families:
            families[current] = []
            order.append(current)
        families[current].append(sample)


def _sum_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _sum_into(total.setdefault(key, {}), value)


class GroupOps:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.metrics: HTTPServer | None = None
        self.admin: HTTPServer | None = None
        self.scrape_failures = 0

    async def start(self, opts: Any) -> None:
        try:
            if opts.metrics_enabled:
                self.metrics = HTTPServer(self.handle_metrics, "metrics")
                host, port = await self.metrics.start(opts.metrics_host, opts.metrics_port)
                log.info("group metrics on http://%s:%d/metrics", host, port)
            if opts.admin_enabled:
                self.admin = HTTPServer(self.handle_admin, "admin")
                host, port = await self.admin.start(opts.admin_host, opts.admin_port)
                log.info("group admin API on http://%s:%d/", host, port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in (self.admin, self.metrics):
            if server is not None:
                await server.stop()
        self.admin = self.metrics = None

    async def _ask(
        self, port_of: str, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> list[tuple[Worker, int, bytes]]:
        """The same request to every worker at once; who did not answer is left out."""
        workers = [w for w in self.sup.workers if getattr(w, port_of) is not None]

        async def one(w: Worker) -> tuple[Worker, int, bytes] | None:
            try:
                status, _, content = await asyncio.wait_for(
                    http_request(getattr(w, port_of), method, target, headers, body),
                    FETCH_TIMEOUT,
                )
            except (OSError, TimeoutError, ValueError, IndexError):
                self.scrape_failures += 1
                return None
            return w, status, content

        answers = await asyncio.gather(*(one(w) for w in workers))
        return [a for a in answers if a is not None]

    # -- /metrics ------------------------------------------------------------------
    async def handle_metrics(self, req: Request) -> Response:
        if req.path != "/metrics":
            return error(404, "not found")
        answers = await self._ask("metrics_port", "GET", "/metrics", {})
        families: dict[str, list[str]] = {}
        order: list[str] = []
        up = set()
        for w, status, content in answers:
            if status == 200:
                up.add(w.index)
                add_worker_label(families, order, content.decode("utf-8", "replace"), w.index)
        lines = [line for name in order for line in families[name]]
        lines += self._own_metrics(up)
        return Response(200, ("\n".join(lines) + "\n").encode(), METRICS_TYPE)

    def _own_metrics(self, up: set[int]) -> list[str]:
        sup = self.sup
        out = [
            "# HELP mqttfast_supervisor_workers Worker processes configured",
            "# TYPE mqttfast_supervisor_workers gauge",
            f"mqttfast_supervisor_workers {sup.count}",
            "# HELP mqttfast_supervisor_worker_up 1 if the worker answered this scrape",
            "# TYPE mqttfast_supervisor_worker_up gauge",
        ]
        out += [
            f'mqttfast_supervisor_worker_up{{worker="{w.index}"}} {int(w.index in up)}'
            for w in sup.workers
        ]
        out += [
            "# HELP mqttfast_supervisor_worker_restarts_total Times a worker exited and was "
            "restarted",
            "# TYPE mqttfast_supervisor_worker_restarts_total counter",
        ]
        out += [
            f'mqttfast_supervisor_worker_restarts_total{{worker="{w.index}"}} {w.restarts}'
            for w in sup.workers
        ]
        out += [
            "# HELP mqttfast_supervisor_scrape_failures_total Worker endpoints that did not "
            "answer the supervisor",
            "# TYPE mqttfast_supervisor_scrape_failures_total counter",
            f"mqttfast_supervisor_scrape_failures_total {self.scrape_failures}",
        ]
        if sup.nats is not None:
            out += [
                "# HELP mqttfast_supervisor_nats_restarts_total Times the local nats-server "
                "was restarted",
                "# TYPE mqttfast_supervisor_nats_restarts_total counter",
                f"mqttfast_supervisor_nats_restarts_total {sup.nats.restarts}",
            ]
        return out

    # -- admin API -----------------------------------------------------------------
    async def handle_admin(self, req: Request) -> Response:
        target = req.path + (f"?{urlencode(req.query)}" if req.query else "")
        headers = {}
        if "authorization" in req.headers:
            headers["Authorization"] = req.headers["authorization"]
        if "content-type" in req.headers:
            headers["Content-Type"] = req.headers["content-type"]
        answers = await self._ask("admin_port", req.method, target, headers, req.body)
        if not answers:
            return error(503, "no worker answered")
        if any(status == 401 for _, status, _ in answers):
            return Response(
                401,
                b'{"error":"missing or wrong bearer token"}',
                headers={"WWW-Authenticate": 'Bearer realm="mqttfast"'},
            )
        path, m = req.path, req.method
        if path == "/api/group" and m == "GET":
            return json_response(self.sup.status())
        if path == "/api/stats" and m == "GET":
            return self._stats(answers)
        if path == "/api/clients" and m == "GET":
            return self._clients(answers, req)
        if path == "/api/topics/top" and m == "GET":
            return self._top(answers, req)
        if path == "/api/retained" and m == "GET":
            return self._retained(answers, req)
        if path.startswith("/api/clients/") or (path == "/api/retained" and m == "DELETE"):
            found = [a for a in answers if a[1] != 404]
            w, status, content = (found or answers)[0]
            return _tagged(status, content, w.index)
        w, status, content = answers[0]  # dashboard files, openapi.json, errors
        return _raw(status, content, path)

    def _stats(self, answers: list[tuple[Worker, int, bytes]]) -> Response:
        total: dict[str, Any] = {}
        per_worker = []
        for w, status, content in answers:
            if status != 200:
                continue
            stats = json.loads(content)
            _sum_into(total, stats)
            per_worker.append(dict(stats, worker=w.index, pid=w.pid, restarts=w.restarts))
        if per_worker:
            total["version"] = per_worker[0].get("version")
        total["uptime_seconds"] = self.sup.status()["uptime_seconds"]
        total.pop("time", None)
        import time

        total["time"] = time.time()
        total["workers"] = per_worker
        total["workers_configured"] = self.sup.count
        return json_response(total)

    def _clients(self, answers: list[tuple[Worker, int, bytes]], req: Request) -> Response:
        total = 0
        clients = []
        for w, status, content in answers:
            if status != 200:
                return Response(status, content)
            data = json.loads(content)
            total += data["total"]
            clients += [dict(c, worker=w.index) for c in data["clients"]]
        limit = req.query.get("limit", "1000")
        n = int(limit) if limit.isdigit() else 1000
        clients.sort(key=lambda c: c.get("client_id", ""))
        return json_response({"total": total, "clients": clients[:n]})

    def _top(self, answers: list[tuple[Worker, int, bytes]], req: Request) -> Response:
        merged: dict[str, list[float]] = {}
        for _, status, content in answers:
            if status != 200:
                return Response(status, content)
            for t in json.loads(content)["topics"]:
                acc = merged.setdefault(t["topic"], [0, 0.0])
                acc[0] += t["messages"]
                acc[1] += t["rate"]
        n_text = req.query.get("n", "10")
        n = int(n_text) if n_text.isdigit() else 10
        ranked = sorted(merged.items(), key=lambda kv: kv[1][0], reverse=True)[:n]
        return json_response(
            {"topics": [{"topic": t, "messages": c, "rate": round(r, 2)} for t, (c, r) in ranked]}
        )

    def _retained(self, answers: list[tuple[Worker, int, bytes]], req: Request) -> Response:
        """Retained messages are cluster-wide; without a shared store the union is shown."""
        seen: dict[str, dict[str, Any]] = {}
        total = 0
        for _, status, content in answers:
            if status != 200:
                return Response(status, content)
            data = json.loads(content)
            total = max(total, data["total"])
            for item in data["retained"]:
                seen.setdefault(item["topic"], item)
        items = sorted(seen.values(), key=lambda i: i["topic"])
        limit = req.query.get("limit", "1000")
        n = int(limit) if limit.isdigit() else 1000
        return json_response({"total": max(total, len(items)), "retained": items[:n]})


def _tagged(status: int, content: bytes, worker: int) -> Response:
    try:
        data = json.loads(content)
    except ValueError:
        return Response(status, content)
    if isinstance(data, dict) and status == 200:
        data["worker"] = worker
    return json_response(data, status)


def _raw(status: int, content: bytes, path: str) -> Response:
    from .admin.api import STATIC_TYPES

    ext = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    if path in ("/", "/dashboard"):
        ext = ".html"
    ctype = "application/json" if path.startswith("/api/") else STATIC_TYPES.get(ext, "text/html")
    return Response(status, content, ctype)


__all__ = ["GroupOps", "add_worker_label", "http_request"]
