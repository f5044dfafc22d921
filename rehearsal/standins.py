"""Start the local stand-ins (Azurite for Table Storage, the simulated tenant) and the environment
that points the real SDK clients at them. Used by replay, the demo and the tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key (not a secret of any real account).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StandInError(RuntimeError):
    """A stand-in could not be started; the message says what to run."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_binary() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite-table"
    if not path.exists():
        raise StandInError(f"{path} is missing: run `make setup` (npm ci) first")
    return path


@dataclass
class Azurite:
    """Azurite's table service on a free loopback port, in memory, without telemetry."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    workdir: str = ""

    def start(self, timeout: float = 30.0) -> Azurite:
        self.port = self.port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="azurite-")
        self.process = subprocess.Popen(  # noqa: S603 - our own pinned binary, fixed arguments
            [
                str(azurite_binary()),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                raise StandInError(f"Azurite exited: {err[:500]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise StandInError("Azurite did not start listening in time")

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def local_env(
    sim_url: str,
    ca_path: str,
    identity_header: str,
    ledger_connection: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment that makes an unchanged DefaultAzureCredential and every SDK client use loopback."""
    env = {
        "RESPONDER_LOCAL": "true",
        "RESPONDER_ARM_ENDPOINT": sim_url,
        "RESPONDER_GRAPH_ENDPOINT": sim_url + "/v1.0",
        "RESPONDER_LOGS_ENDPOINT": sim_url + "/v1",
        "RESPONDER_LEDGER_CONNECTION_STRING": ledger_connection,
        "IDENTITY_ENDPOINT": sim_url + "/msi/token",
        "IDENTITY_HEADER": identity_header,
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "REQUESTS_CA_BUNDLE": ca_path,
        "SSL_CERT_FILE": ca_path,
    }
    env.update(extra or {})
    return env


@dataclass
class StandIns:
    """Both stand-ins and the environment pointing at them."""

    simulator: Any
    azurite: Azurite
    tenant: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    _saved: dict[str, str | None] = field(default_factory=dict)

    def apply_env(self) -> None:
        for key, value in self.env.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore_env(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()

    def stop(self) -> None:
        self.restore_env()
        self.simulator.stop()
        self.azurite.stop()


def start_standins(
    tenant_path: Path | None = None, extra_env: Mapping[str, str] | None = None, seed: int = 0
) -> StandIns:
    """Start the simulated tenant and Azurite, and compute the environment for them."""
    from rehearsal.simulator import Simulator

    tenant = json.loads((tenant_path or ROOT / "samples" / "tenant.json").read_text(encoding="utf-8"))
    simulator = Simulator(tenant, seed=seed).start()
    try:
        azurite = Azurite().start()
    except Exception:
        simulator.stop()
        raise
    identity = tenant.get("responderIdentity", {})
    sentinel = tenant.get("sentinel", {})
    extra = {
        "RESPONDER_IDENTITY_OBJECT_ID": identity.get("principalId", ""),
        "RESPONDER_LOG_ANALYTICS_WORKSPACE_ID": tenant.get("logAnalytics", {}).get("workspaceId", ""),
    }
    if sentinel:
        extra["RESPONDER_SENTINEL_WORKSPACE_ID"] = (
            f"/subscriptions/{sentinel['subscriptionId']}/resourceGroups/{sentinel['resourceGroup']}"
            f"/providers/Microsoft.OperationalInsights/workspaces/{sentinel['workspaceName']}"
        )
    extra.update(extra_env or {})
    env = local_env(
        simulator.url, str(simulator.ca_path), simulator.identity_header, azurite.connection_string, extra
    )
    return StandIns(simulator=simulator, azurite=azurite, tenant=tenant, env=env)
