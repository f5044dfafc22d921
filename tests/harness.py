"""Test harness: the real registered functions, the real SDK clients, the simulated tenant and Azurite.

Nothing of ours is mocked: a test drives `function_app` exactly as the Functions host would.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from rehearsal.simulator import Simulator
from rehearsal.standins import Azurite, local_env
from responders.replay import _functions, http_request, to_eventgrid_event
from responders.service import Runtime, set_runtime
from responders.settings import Settings, is_loopback_url

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TENANT = json.loads((SAMPLES / "tenant.json").read_text())
SUB = "7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a"
PREFIX = f"/subscriptions/{SUB}/resourceGroups/rg-synth-prod/providers/Microsoft.Storage/storageAccounts/"
RESPONDER_OID = TENANT["responderIdentity"]["principalId"]


def account_id(name: str, group: str = "rg-synth-prod", sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{name}"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / "events" / name).read_text())


def writes(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ARM and Graph writes the tenant saw (token requests, queries and list POSTs are reads)."""
    from responders.cli import READ_POSTS, WRITE_METHODS

    return [
        r
        for r in requests
        if r["method"] in WRITE_METHODS
        and not r["path"].startswith("/msi/")
        and not (r["method"] == "POST" and r["path"].lower().endswith(READ_POSTS))
    ]


@dataclass
class Harness:
    """One simulated tenant, one fresh ledger table, the app's registered functions."""

    sim: Simulator
    rt: Runtime
    functions: dict[str, Callable[..., Any]] = field(default_factory=_functions)

    def eventgrid(self, item: dict[str, Any]) -> None:
        self.functions["eventgrid_trigger"](to_eventgrid_event(item))

    def http(
        self, route: str, body: Any, headers: dict[str, str] | None = None, method: str = "POST"
    ) -> tuple[int, dict[str, Any], func.HttpResponse]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if method == "POST":
            req = http_request(route, raw, headers)
        else:
            req = func.HttpRequest(
                method=method, url=f"http://localhost/api/{route}", body=raw, headers=headers or {}
            )
        response = self.functions[route](req)
        data = response.get_body()
        return response.status_code, (json.loads(data) if data else {}), response

    def incident(self, event_id: str) -> dict[str, Any] | None:
        from responders.core.parse import incident_key

        return self.rt.ledger.incident(incident_key(event_id))

    def writes(self) -> list[dict[str, Any]]:
        return writes(self.sim.requests())

    def all_ledger_rows(self) -> list[dict[str, Any]]:
        return list(self.rt.clients.table().list_entities())


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def loopback_only() -> Iterator[None]:
    """Refuse any connection or name lookup that would leave this machine."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not is_loopback_url(f"https://{address[0]}"):
            raise ConnectionRefusedError(f"test tried to reach non-loopback address {address[0]}")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback_url(f"https://{host}") and str(host) != "":
            raise socket.gaierror(f"test tried to resolve non-loopback host {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]
    socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]


@pytest.fixture
def make_harness(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., Harness]]:
    """Factory: `make_harness(dry_run=False, policy=None, tenant=None, env=None)`."""
    made: list[tuple[Simulator, Runtime]] = []

    def make(
        *,
        dry_run: bool = False,
        policy: dict[str, Any] | None = None,
        tenant: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> Harness:
        sim = Simulator(tenant or TENANT, cert_dir=tmp_path / f"certs{len(made)}").start()
        deadletters = "dl-" + uuid.uuid4().hex[:20]
        azurite.create_container(deadletters)
        extra = {
            "RESPONDER_IDENTITY_OBJECT_ID": RESPONDER_OID,
            "RESPONDER_LEDGER_TABLE": "t" + uuid.uuid4().hex[:20],
            "RESPONDER_DEADLETTER_CONNECTION_STRING": azurite.blob_connection_string,
            "RESPONDER_DEADLETTER_CONTAINER": deadletters,
            "RESPONDER_DRY_RUN": "true" if dry_run else "false",
            "RESPONDER_LOG_ANALYTICS_WORKSPACE_ID": TENANT["logAnalytics"]["workspaceId"],
            "RESPONDER_SENTINEL_WORKSPACE_ID": (
                f"/subscriptions/{SUB}/resourceGroups/rg-secops/providers/"
                "Microsoft.OperationalInsights/workspaces/law-secops"
            ),
        }
        if policy is not None:
            extra["RESPONDER_POLICY"] = json.dumps(policy)
        else:
            extra["RESPONDER_POLICY_FILE"] = str(SAMPLES / "policy.yaml")
        extra.update(env or {})
        for key, value in local_env(
            sim.url, str(sim.ca_path), sim.identity_header, azurite.connection_string, extra
        ).items():
            monkeypatch.setenv(key, value)
        if policy is not None:
            monkeypatch.delenv("RESPONDER_POLICY_FILE", raising=False)
        rt = Runtime.from_settings(Settings.from_env(dict(os.environ)))
        set_runtime(rt)
        made.append((sim, rt))
        return Harness(sim=sim, rt=rt)

    yield make
    set_runtime(None)
    for sim, rt in made:
        rt.close()
        sim.stop()
