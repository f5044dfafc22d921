"""The simulated tenant: one HTTPS port serving managed identity, ARM, Graph and Log Analytics."""

from __future__ import annotations

import argparse
import contextlib
import copy
import ipaddress
import json
import logging
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from responders.simulator import graph, loganalytics, sentinel, storage
from responders.simulator.auth import TokenStore, authenticate, issue_msi_token
from responders.simulator.events import EventLog
from responders.simulator.faults import Fault, FaultPlan
from responders.simulator.routing import (
    GRAPH,
    LOGS,
    MSI,
    Call,
    Context,
    Reply,
    Route,
    api_of,
    error,
    fault_error,
    route,
)
from responders.simulator.state import TenantState
from responders.simulator.tls import CA_FILE, load_or_create_ca, server_context

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10
_SLASHES = re.compile(r"/{2,}")
_BAD_JSON = {GRAPH: "BadRequest", LOGS: "BadArgumentError", MSI: "BadRequest"}


def normalize_path(raw: str) -> str:
    """Decode, collapse repeated slashes (the Graph SDK sends /v1.0//...) and drop a trailing slash."""
    path = _SLASHES.sub("/", unquote(raw))
    return path.rstrip("/") or "/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Simulator:
    """A local stand-in for the Azure APIs the responder calls, driven by the real SDK clients."""

    def __init__(
        self,
        tenant: dict[str, Any],
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: Path | None = None,
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.host, self._port = host, port
        self._clock = clock or (lambda: datetime.now(UTC))
        self._own_cert_dir = cert_dir is None
        self.cert_dir = Path(tempfile.mkdtemp(prefix="sim-certs-")) if cert_dir is None else Path(cert_dir)
        self.identity_header = secrets.token_urlsafe(24)
        self.state = TenantState(copy.deepcopy(tenant), self._clock)
        self._events = EventLog(self.state.tenant_id, self._clock)
        self._ctx = Context(self.state, self._events, self._clock)
        self._tokens = TokenStore()
        self._faults = FaultPlan(seed)
        self._log_lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._routes: list[Route] = [
            route("GET", r"/msi/token", self._msi, MSI),
            *storage.ROUTES,
            *sentinel.ROUTES,
            *graph.ROUTES,
            *loganalytics.ROUTES,
        ]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind, then serve in a daemon thread; returns self so `Simulator(...).start()` chains."""
        if self._server is not None:
            return self
        ca = load_or_create_ca(self.cert_dir)
        context = server_context(ca, tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost"))))
        self._server = _Server((self.host, self._port), self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections so clients cannot keep talking."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_cert_dir:
            shutil.rmtree(self.cert_dir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.cert_dir / CA_FILE

    def env(self) -> dict[str, str]:
        """Environment that makes an unchanged DefaultAzureCredential and the SDKs use this simulator."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "SSL_CERT_FILE": str(self.ca_path),
        }

    # --- observation and control -----------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """Every API request so far (admin routes excluded), oldest first; never response bodies."""
        with self._log_lock:
            return copy.deepcopy(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def events(self) -> list[dict[str, Any]]:
        """Event Grid events for each successful ARM write or action, oldest first."""
        return self._events.all()

    def clear_events(self) -> None:
        self._events.clear()

    def secrets(self) -> set[str]:
        """Every key value and access token ever issued, plus the identity header (to scrub outputs)."""
        return self._tokens.values() | self.state.issued_keys() | {self.identity_header}

    def set_faults(self, rules: list[dict[str, Any]], seed: int | None = None) -> None:
        """Replace the fault rules; raises ValueError on a malformed rule."""
        self._faults.set(rules, seed)

    def issue_token(self, object_id: str, app_id: str, audience: str = "https://management.azure.com") -> str:
        """A token for another caller (e.g. an attacker's app), so events name someone else."""
        return self._tokens.issue(object_id, app_id, audience)[0]

    # --- request handling (called from server threads) -------------------------------------------

    def _msi(self, ctx: Context, call: Call) -> Reply:
        return issue_msi_token(
            self._tokens,
            call,
            self.identity_header,
            self.state.responder_principal_id,
            self.state.responder_client_id,
        )

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._requests.append(entry)

    def _decide(self, method: str, path: str) -> tuple[float, Fault | None]:
        return self._faults.decide(method, path)

    def _handle(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
        bad_json: bool,
        client: str,
    ) -> tuple[Reply, str | None]:
        """Route, authenticate and run one API request; returns the reply and the caller's object id."""
        api = api_of(path)
        matches = [r for r in self._routes if r.pattern.fullmatch(path)]
        chosen = next((r for r in matches if r.method == method), None)
        if chosen is None:
            if matches:
                return error(api, 405, "MethodNotAllowed", f"{method} is not supported on {path}."), None
            return error(
                api,
                404,
                "NotFound" if api != GRAPH else "Request_ResourceNotFound",
                f"No route for {method} {path}.",
            ), None
        if bad_json:
            return error(
                api,
                400,
                _BAD_JSON.get(api, "InvalidRequestContent"),
                "The request content was not valid JSON.",
            ), None
        params = chosen.pattern.fullmatch(path).groupdict()  # type: ignore[union-attr]
        call = Call(method, path, query, headers, body, client, params)
        if chosen.api != MSI:
            caller = authenticate(self._tokens, chosen.api, call.header("Authorization"))
            if isinstance(caller, Reply):
                return caller, None
            call = Call(method, path, query, headers, body, client, params, caller)
        try:
            reply = chosen.handler(self._ctx, call)
        except Exception:  # a simulator bug must answer 500, not kill the connection
            logger.exception("simulator handler failed for %s %s", method, path)
            reply = error(api, 500, "InternalServerError", "The simulator failed to handle the request.")
        return reply, call.caller.object_id if call.caller else None

    def _admin(self, method: str, path: str, body: Any) -> Reply:
        """Out-of-process control: requests, state (key values redacted), events, faults."""
        key = (method, path.lower())
        if key == ("GET", "/_sim/requests"):
            return Reply(200, self.requests())
        if key == ("DELETE", "/_sim/requests"):
            self.clear_requests()
            return Reply(204)
        if key == ("GET", "/_sim/state"):
            return Reply(200, self.state.snapshot(redact=True))
        if key == ("GET", "/_sim/events"):
            return Reply(200, self.events())
        if key == ("DELETE", "/_sim/events"):
            self.clear_events()
            return Reply(204)
        if key == ("POST", "/_sim/faults"):
            if not isinstance(body, dict) or not isinstance(body.get("rules", []), list):
                return error("arm", 400, "InvalidRequestContent", 'expected {"rules": [...], "seed": n}')
            try:
                self.set_faults(body.get("rules", []), body.get("seed"))
            except (ValueError, TypeError) as exc:
                return error("arm", 400, "InvalidRequestContent", str(exc))
            return Reply(204)
        return error("arm", 404, "NotFound", f"No admin route {method} {path}.")


def _fault_reply(fault: Fault, api: str) -> Reply | None:
    """The injected error reply, or None when the connection is to be dropped."""
    if fault.drop or fault.status is None:
        return None
    reply = fault_error(api, fault.status)
    if fault.retry_after is not None:
        seconds = float(fault.retry_after)
        reply.headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
    return reply


class _Server(ThreadingHTTPServer):
    """Threaded server that does the TLS handshake in the connection thread, not in accept()."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], simulator: Simulator, context: ssl.SSLContext) -> None:
        self.simulator = simulator
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
    server: _Server

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
        sim = self.server.simulator
        arrived = time.time()
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
            self._send(sim._admin(self.command, path, body))
            return
        latency, fault = sim._decide(self.command, path)
        if latency:
            time.sleep(latency)
        caller = None
        reply: Reply | None = None  # None: drop the connection
        if not fault or fault.after:
            headers = {k: v for k, v in self.headers.items()}
            reply, caller = sim._handle(
                self.command, path, query, headers, body, bad_json, self.client_address[0]
            )
        if fault:
            reply = _fault_reply(fault, api_of(path))
        # record before answering, so a client that has its answer always finds the record
        sim._record(
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
        request_id = str(uuid.uuid4())
        correlation = self.headers.get("x-ms-correlation-request-id") or request_id
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


def main(argv: list[str] | None = None) -> int:
    """`python -m responders simulator --tenant FILE`: print {"url", "ca", ...} as one JSON line, serve."""
    parser = argparse.ArgumentParser(
        prog="python -m responders simulator", description="Serve the simulated Azure tenant over HTTPS."
    )
    parser.add_argument("--tenant", required=True, type=Path, help="tenant seed JSON (samples/tenant.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-dir", type=Path, default=None, help="where ca.pem is written (reused)")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection rates")
    parser.add_argument("--identity-header", default=None, help="fixed IDENTITY_HEADER value")
    args = parser.parse_args(argv)
    try:
        tenant = json.loads(args.tenant.read_text(encoding="utf-8"))
        sim = Simulator(tenant, args.host, args.port, args.cert_dir, args.seed)
    except (OSError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    if args.identity_header:
        sim.identity_header = args.identity_header
    stopping = threading.Event()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
    except ValueError:  # not the main thread: the caller stops us some other way
        pass
    try:
        sim.start()
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    env = sim.env()
    print(
        json.dumps(
            {
                "url": sim.url,
                "ca": str(sim.ca_path),
                "identity_endpoint": env["IDENTITY_ENDPOINT"],
                "identity_header": sim.identity_header,
            }
        ),
        flush=True,
    )
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0
