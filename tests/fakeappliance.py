"""FAKE appliances for the dashboard tests: loopback HTTP servers that answer /info, /health
and an exporter's /metrics with bodies captured from a real service and a real exporter
(optionally renamed), slowly, or not at all."""

from __future__ import annotations

import http.server
import threading
import time


class FakeAppliance:
    """One port serving both the service paths and the exporter's /metrics."""

    def __init__(self, info: bytes, health: bytes, metrics: bytes, delay_s: float = 0.0) -> None:
        bodies = {
            "/info": (info, "application/json"),
            "/health": (health, "application/json"),
            "/metrics": (metrics, "text/plain; version=0.0.4"),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if delay_s:
                    time.sleep(delay_s)
                body, kind = bodies.get(self.path, (b'{"error": {"code": "not_found"}}', "application/json"))
                self.send_response(200 if self.path in bodies else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
