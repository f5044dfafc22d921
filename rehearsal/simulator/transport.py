"""HTTPS and HTTP/1.1 plumbing: TLS per connection thread, keep-alive, body reading, faults on the wire."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from rehearsal.simulator import storage
from rehearsal.simulator.dispatch import Dispatcher, fault_reply
from rehearsal.simulator.routing import Reply, api_of, error

MAX_BODY_BYTES = 8 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10
_SLASHES = re.compile(r"/{2,}")


def normalize_path(raw: str) -> str:
    """Decode, collapse repeated slashes (the Graph SDK sends /v1.0//...) and drop a trailing slash."""
    path = _SLASHES.sub("/", unquote(raw))
    return path.rstrip("/") or "/"


class HttpsServer(ThreadingHTTPServer):
    """Threaded server that does the TLS handshake in the connection thread, not in accept()."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, context: ssl.SSLContext) -> None:
        self.dispatcher = dispatcher
        self.ssl_context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._open_lock:
            self._open.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._open_lock:
                self._open.discard(conn)
            conn.close()

    def close_connections(self) -> None:
        with self._open_lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client that hangs up mid-request is normal in fault tests."""


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP/1.1 (keep-alive), applies faults, dispatches, records."""

    protocol_version = "HTTP/1.1"
    timeout = 60
    # headers and body go out in separate writes: without TCP_NODELAY each reply waits ~40 ms for
    # the peer's delayed ACK, which would dominate every latency measured against the simulator
    disable_nagle_algorithm = True
    server: HttpsServer

    def version_string(self) -> str:
        return "responders-simulator/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read sim.requests() instead of a per-request log line."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests get a JSON error body too, never the stdlib's HTML page."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        text = message or explain or phrase
        payload = json.dumps({"error": {"code": phrase.replace(" ", ""), "message": text}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        dispatcher = self.server.dispatcher
        arrived = time.time()
        # Resource Manager gives each request an id and, unless the client sent one, a correlation id
        # equal to it; the answer carries both and the request's Event Grid event the correlation id
        self._request_id = str(uuid.uuid4())
        self._correlation = self.headers.get("x-ms-correlation-request-id") or self._request_id
        split = urlsplit(self.path)
        path = normalize_path(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(error(api_of(path), 400, "BadRequest", "Unreadable request body."))
            return
        body, bad_json = None, False
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                bad_json = True
        if path.lower().startswith("/_sim/"):
            self._send(dispatcher.admin(self.command, path, body))
            return
        latency, fault = dispatcher.faults.decide(self.command, path)
        # an exclusive account write holds the account from arrival to its answer, latency included
        held, free = dispatcher.hold(self.command, path)
        try:
            if latency:
                time.sleep(latency)
            caller = None
            reply: Reply | None = None  # None: drop the connection
            if not free:
                reply = storage.operation_in_progress()
            elif not fault or fault.after:
                headers = {k: v for k, v in self.headers.items()}
                headers.setdefault("x-ms-correlation-request-id", self._correlation)
                reply, caller = dispatcher.api(
                    self.command, path, query, headers, body, bad_json, self.client_address[0]
                )
            if fault and free:
                reply = fault_reply(fault, api_of(path))
        finally:
            dispatcher.release(held)
        # record before answering, so a client that has its answer always finds the record
        dispatcher.record(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "status": reply.status if reply else "dropped",
                "host": self.headers.get("Host", ""),
                "client": self.client_address[0],
                "client_port": self.client_address[1],
                "time": arrived,
                "body": body,
                "caller": caller,
                "answered": time.time(),
                # error bodies only: a success body can hold keys
                "error": reply.body if reply is not None and reply.status >= 400 else None,
            }
        )
        if reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode("utf-8")
        self.send_response(reply.status)
        request_id = getattr(self, "_request_id", "") or str(uuid.uuid4())
        correlation = getattr(self, "_correlation", "") or request_id
        headers = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": correlation,
            "request-id": request_id,
            "client-request-id": self.headers.get("client-request-id") or request_id,
        }
        if reply.body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if reply.status != 204:
            headers["Content-Length"] = str(len(payload))
        headers.update(reply.headers)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.status != 204 and payload:
            self.wfile.write(payload)
