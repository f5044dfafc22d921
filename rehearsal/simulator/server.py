"""The simulated tenant: one HTTPS port serving managed identity, ARM, Graph and Log Analytics."""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from rehearsal.simulator.auth import TokenStore
from rehearsal.simulator.dispatch import Dispatcher
from rehearsal.simulator.events import EventLog
from rehearsal.simulator.faults import FaultPlan
from rehearsal.simulator.routing import Context, Reply
from rehearsal.simulator.state import TenantState
from rehearsal.simulator.tls import CA_FILE, load_or_create_ca, server_context
from rehearsal.simulator.topic import PATH as TOPIC_PATH
from rehearsal.simulator.topic import Topic
from rehearsal.simulator.transport import HttpsServer
from responders.settings import is_loopback_url


def _is_loopback(host: str) -> bool:
    return is_loopback_url(f"https://{host}")


class _LocalDispatcher(Dispatcher):
    """Adds the local stack's hooks: the simulated Event Grid topic's publish API and, with a state
    file, saving the tenant's state after every answered change, before the client has its answer, so
    a stopped simulator restarted over the same file holds what its clients saw done."""

    def __init__(self, *args: Any, state_file: Path | None, topic: Topic) -> None:
        super().__init__(*args)
        self.state_file = state_file
        self.topic = topic
        self._save_lock = threading.Lock()

    def api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
        bad_json: bool,
        client: str,
    ) -> tuple[Reply, str | None]:
        if method == "POST" and path.lower() == TOPIC_PATH:
            if bad_json:
                return Reply(400, {"error": {"code": "BadRequest", "message": "Invalid JSON."}}), None
            size = len(json.dumps(body)) if body is not None else 0
            return self.topic.publish(headers, body, size), None
        return super().api(method, path, query, headers, body, bad_json, client)

    def record(self, entry: dict[str, Any]) -> None:
        super().record(entry)
        status = entry.get("status")
        changed = entry.get("method") != "GET" and isinstance(status, int) and status < 400
        if changed and self.state_file is not None:
            self.save()

    def save(self) -> None:
        if self.state_file is None:
            return
        with self._save_lock:
            partial = self.state_file.with_name(self.state_file.name + ".partial")
            partial.write_text(json.dumps(self.state.persisted()), encoding="utf-8")
            os.replace(partial, self.state_file)


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
        state_file: Path | None = None,
    ) -> None:
        """`state_file`: where the tenant's state is saved on every change and reloaded from on start
        (None: in memory only)."""
        if not _is_loopback(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.host, self._port = host, port
        clock = clock or (lambda: datetime.now(UTC))
        self._own_cert_dir = cert_dir is None
        self.cert_dir = Path(tempfile.mkdtemp(prefix="sim-certs-")) if cert_dir is None else Path(cert_dir)
        self.state = TenantState(copy.deepcopy(tenant), clock)
        if state_file is not None and state_file.exists():
            try:
                self.state.restore(json.loads(state_file.read_text(encoding="utf-8")))
            except ValueError as exc:  # JSONDecodeError is a ValueError
                raise ValueError(f"{state_file}: {exc} (remove it, or run `make reset`)") from exc
        ctx = Context(self.state, EventLog(self.state.tenant_id, clock), clock)
        self._tokens = TokenStore()
        dispatch_args = (ctx, self._tokens, FaultPlan(seed), secrets.token_urlsafe(24))
        self.topic = Topic()
        self._dispatcher = _LocalDispatcher(*dispatch_args, state_file=state_file, topic=self.topic)
        if state_file is not None and not state_file.exists():
            self._dispatcher.save()
        self._server: HttpsServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind, then serve in a daemon thread; returns self so `Simulator(...).start()` chains."""
        if self._server is not None:
            return self
        ca = load_or_create_ca(self.cert_dir)
        context = server_context(ca, tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost"))))
        self._server = HttpsServer((self.host, self._port), self._dispatcher, context)
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

    @property
    def identity_header(self) -> str:
        """The X-IDENTITY-HEADER value the managed-identity endpoint requires (random per instance)."""
        return self._dispatcher.identity_header

    @identity_header.setter
    def identity_header(self, value: str) -> None:
        self._dispatcher.identity_header = value

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
        return self._dispatcher.requests()

    def clear_requests(self) -> None:
        self._dispatcher.clear_requests()

    def events(self) -> list[dict[str, Any]]:
        """Event Grid events for each successful ARM write or action, oldest first."""
        return self._dispatcher.events.all()

    def clear_events(self) -> None:
        self._dispatcher.events.clear()

    def secrets(self) -> set[str]:
        """Every key value and access token ever issued, plus the identity header (to scrub outputs)."""
        return self._tokens.values() | self.state.issued_keys() | {self.identity_header}

    def set_faults(self, rules: list[dict[str, Any]], seed: int | None = None) -> None:
        """Replace the fault rules ([] clears them); raises ValueError on a malformed rule."""
        self._dispatcher.faults.set(rules, seed)

    def play_recorded(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        count: int | None = None,
    ) -> None:
        """Answer `method` on paths matching the regex `path` with a recorded Azure response
        (`count` times, or until `clear_recorded`)."""
        self._dispatcher.play_recorded(method, path, Reply(status, body, dict(headers or {})), count)

    def clear_recorded(self) -> None:
        self._dispatcher.play_recorded("", "", None)

    def issue_token(self, object_id: str, app_id: str, audience: str = "https://management.azure.com") -> str:
        """A token for another caller (e.g. an attacker's app), so events name someone else."""
        return self._tokens.issue(object_id, app_id, audience)[0]


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
