"""One HTTP endpoint for the whole pipeline: /metrics (every stage), /health and /ready.

Import this only after PROMETHEUS_MULTIPROC_DIR is set: prometheus_client picks its value
class at import time.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from pipeline.logs import get_logger

StatusFn = Callable[[dict], tuple[bool, dict]]  # gauges -> (ready, details)
HEALTH_GAUGES = ("stt_breaker_state", "stt_engine_last_success_timestamp_seconds")


def read_gauges(registry: CollectorRegistry, names: tuple[str, ...] = HEALTH_GAUGES) -> dict[str, list[tuple[dict, float]]]:
    """Current values of a few gauges, as written by every stage: `{name: [(labels, value)]}`."""
    found: dict[str, list[tuple[dict, float]]] = {name: [] for name in names}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in found:
                found[sample.name].append((dict(sample.labels), sample.value))
    return found


class HealthServer:
    """Serves in a daemon thread; `status()` is called per request from that thread."""

    def __init__(self, host: str, port: int, prom_dir: str, status: StatusFn) -> None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=prom_dir)
        handler = _make_handler(registry, status)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(registry: CollectorRegistry, status: StatusFn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            try:
                self._answer()
            except Exception as err:  # e.g. a stage's metrics file read while it is being created
                get_logger().error("health_request_failed", path=self.path, error=f"{type(err).__name__}: {err}")
                self._reply(500, f"{type(err).__name__}: {err}\n".encode(), "text/plain")

        def _answer(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/health", "/ready"):
                ready, details = status(read_gauges(registry))
                alive = details.get("alive", False)
                ok = ready if self.path == "/ready" else alive
                body = json.dumps({"ready": ready, **details}).encode()
                self._reply(200 if ok else 503, body, "application/json")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # scrapes every few seconds would flood stderr
            pass

    return Handler
