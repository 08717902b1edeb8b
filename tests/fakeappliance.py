"""FAKE appliances for the dashboard tests: loopback HTTP servers that answer /info, /health
and an exporter's /metrics with bodies captured from a real service and a real exporter
(optionally renamed), slowly, or not at all; and FAKE broken appliances that misbehave below
HTTP (hang, reset, answer something that is not HTTP, trickle, cut the body short)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading
import time

UNAUTHORIZED = b'{"error": {"code": "unauthorized", "message": "invalid API key"}}'


class FakeAppliance:
    """One port serving both the service paths and the exporter's /metrics. With `api_key`, /info
    answers 401 to any other key, as the real service does (/health and /metrics stay open)."""

    def __init__(self, info: bytes, health: bytes, metrics: bytes, delay_s: float = 0.0, api_key: str = "") -> None:
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
                code = 200 if self.path in bodies else 404
                if api_key and self.path == "/info" and self.headers.get("X-API-Key") != api_key:
                    body, kind, code = UNAUTHORIZED, "application/json", 401
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # a client may stop reading a huge body
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


BROKEN_MODES = ("hang", "reset", "not_http", "trickle", "truncated")


class FakeBrokenAppliance:
    """A port that accepts connections and then misbehaves, one way for every request:

    hang: reads the request and never answers; reset: closes with SO_LINGER 0 (an RST);
    not_http: answers an SSH banner; trickle: sends a 200 header, then one body byte every
    0.2 s, forever; truncated: promises 4096 bytes of body, sends 10 and closes."""

    def __init__(self, mode: str) -> None:
        if mode not in BROKEN_MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {BROKEN_MODES}")
        self.mode = mode
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_forever(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._misbehave, args=(conn,), daemon=True).start()

    def _misbehave(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            conn.recv(65536)  # the request
            if self.mode == "not_http":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                conn.close()
            elif self.mode == "truncated":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
                conn.sendall(b'{"status": ')
                conn.close()
            elif self.mode == "trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                while not self._closed.wait(0.2):
                    conn.sendall(b" ")
            # hang: hold the connection, answer nothing, until close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
