"""The sink process's HTTP side, on WHATSUP_SINK_PORT: read-only ``POST /query``, ``/metrics``, ``/health``.

It exists because chDB allows one engine per process: the sink owns the embedded database, so every other
process reads through this endpoint. Queries run on their own client with ``readonly=1`` (ClickHouse
refuses any write or DDL there), one at a time.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.query import rows_of

MAX_BODY = 1 << 20


class QueryServer:
    """Serve the endpoint from a background thread; ``ready()`` says whether /health answers 200."""

    def __init__(
        self,
        host: str,
        port: int,
        client: Client,
        ready: Callable[[], bool],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._ready = ready
        self._server = ThreadingHTTPServer((host, port), self._handler())
        if context is not None:
            # Each accepted connection does its handshake in its own handler thread, not in accept().
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sink-http", daemon=True)

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering."""
        self._server.shutdown()
        self._server.server_close()

    def query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one read-only query."""
        with self._lock:
            return rows_of(self._client.query(sql, parameters=params))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # A client that sends less than its Content-Length is cut off, not waited for forever.
            timeout = 10.0

            def log_message(self, format: str, *args: Any) -> None:  # access logs would drown the sink's
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: Any) -> None:
                self._send(status, json.dumps(payload).encode())

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST.split(";")[0])
                elif self.path == "/health":
                    ok = server._ready()
                    self._json(200 if ok else 503, {"status": "ok" if ok else "starting", "role": "sink"})
                else:
                    self._refuse(404, "not_found", "no such route")

            def _refuse(self, status: int, reason: str, message: str) -> None:
                self._json(status, {"error": reason, "message": message})

            def do_POST(self) -> None:
                if self.path != "/query":
                    self._refuse(404, "not_found", "no such route")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    self._refuse(400, "bad_length", "Content-Length must be a number of bytes")
                    return
                if length > MAX_BODY:
                    self._refuse(413, "body_too_large", f"body over {MAX_BODY} bytes")
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    sql, params = body["sql"], body.get("params") or {}
                    if not isinstance(sql, str) or not isinstance(params, dict):
                        raise TypeError("sql must be a string and params an object")
                except (ValueError, KeyError, TypeError, RecursionError, AttributeError) as exc:
                    self._refuse(
                        400, "bad_request", f'expected {{"sql": str, "params": object}}: {exc}'[:500]
                    )
                    return
                try:
                    rows = server.query(sql, params)
                except Exception as exc:  # ClickHouse's own message says what was wrong with the SQL
                    self._refuse(400, "query_error", str(exc).split("\n")[0][:1000])
                    return
                self._json(200, {"rows": rows})

        return Handler
