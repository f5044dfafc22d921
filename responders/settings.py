"""App settings, validated once at start so a misconfiguration fails loudly before any event."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from responders.core.arm import GUID, WorkspaceRef, parse_workspace_id
from responders.core.model import BadInput
from responders.core.policy import Policy

_GUID = re.compile(GUID)
_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")
DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policy.yaml"


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the message names the setting."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _hours(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 24 * 31:
        raise ConfigError(f"{name} must be a whole number of hours from 0 to 744, not {raw[:20]!r}")
    return int(raw)


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is on this machine (127.0.0.0/8, ::1, localhost)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_policy_document(text: str, where: str) -> Policy:
    """Parse a YAML or JSON policy; YAML is imported only when the text is not JSON (cold start)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"policy {where}: not valid YAML or JSON: {exc}") from exc
    try:
        return Policy.from_dict(raw or {})
    except BadInput as exc:
        raise ConfigError(f"policy {where}: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything the adapters need; secrets (connection strings) are kept out of repr."""

    policy: Policy
    dry_run: bool = True
    local: bool = False
    arm_endpoint: str = "https://management.azure.com"
    graph_endpoint: str = "https://graph.microsoft.com/v1.0"
    logs_endpoint: str = "https://api.loganalytics.io/v1"
    ledger_endpoint: str = ""
    ledger_table: str = "ResponderLedger"
    # the Event Grid dead-letter container: blob service URL + container name (Azure, with the identity),
    # or RESPONDER_DEADLETTER_CONNECTION_STRING + container name (Azurite); neither: not read
    deadletter_endpoint: str = ""
    deadletter_container: str = ""
    identity_object_id: str = ""
    sentinel_workspace_id: str = ""
    log_analytics_workspace_id: str = ""
    # the ARM id of the workspace the blob logs must reach (the posture check "no blob logs"; unset: the
    # Sentinel workspace, or no such check)
    evidence_workspace_resource_id: str = ""
    # the review reads each synthetic-data account's blob diagnostic settings (one ARM read each),
    # once per this many hours, spread over the sweeps (0: every sweep)
    review_diagnostics: bool = True
    review_diagnostics_hours: int = 24
    max_body_bytes: int = 1_048_576
    playbook_callers: tuple[str, ...] = ()
    # App Service authentication (Easy Auth) is on: only then does the platform set, and strip from
    # clients, the X-MS-CLIENT-PRINCIPAL-* headers, so only then do they name a caller
    platform_auth: bool = False

    @property
    def sentinel_workspace(self) -> WorkspaceRef | None:
        """The one Sentinel workspace comments and labels may go to (None: write-back is off)."""
        return parse_workspace_id(self.sentinel_workspace_id)

    def __repr__(self) -> str:
        return f"Settings(dry_run={self.dry_run}, local={self.local}, arm={self.arm_endpoint})"

    @property
    def ledger_connection_string(self) -> str:
        """Read on use, never stored on the object, so it cannot leak through repr or logs."""
        return os.environ.get("RESPONDER_LEDGER_CONNECTION_STRING", "")

    @property
    def deadletter_connection_string(self) -> str:
        """Read on use like the ledger's, so it never sits on the object."""
        return os.environ.get("RESPONDER_DEADLETTER_CONNECTION_STRING", "")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if env.get("RESPONDER_POLICY"):
            policy = load_policy_document(env["RESPONDER_POLICY"], "RESPONDER_POLICY")
        else:
            path = Path(env.get("RESPONDER_POLICY_FILE") or DEFAULT_POLICY_FILE)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"RESPONDER_POLICY_FILE {path}: {exc.strerror}") from exc
            policy = load_policy_document(text, str(path))
        identity = env.get("RESPONDER_IDENTITY_OBJECT_ID", "")
        settings = cls(
            policy=policy.with_responder(identity),
            dry_run=_flag(env, "RESPONDER_DRY_RUN", True),
            local=_flag(env, "RESPONDER_LOCAL", False),
            arm_endpoint=env.get("RESPONDER_ARM_ENDPOINT", cls.arm_endpoint).rstrip("/"),
            graph_endpoint=env.get("RESPONDER_GRAPH_ENDPOINT", cls.graph_endpoint).rstrip("/"),
            logs_endpoint=env.get("RESPONDER_LOGS_ENDPOINT", cls.logs_endpoint).rstrip("/"),
            ledger_endpoint=env.get("RESPONDER_LEDGER_ENDPOINT", ""),
            ledger_table=env.get("RESPONDER_LEDGER_TABLE", cls.ledger_table),
            deadletter_endpoint=env.get("RESPONDER_DEADLETTER_ENDPOINT", "").rstrip("/"),
            deadletter_container=env.get("RESPONDER_DEADLETTER_CONTAINER", ""),
            identity_object_id=identity.lower(),
            sentinel_workspace_id=env.get("RESPONDER_SENTINEL_WORKSPACE_ID", ""),
            log_analytics_workspace_id=env.get("RESPONDER_LOG_ANALYTICS_WORKSPACE_ID", ""),
            evidence_workspace_resource_id=env.get("RESPONDER_EVIDENCE_WORKSPACE_RESOURCE_ID", "")
            or env.get("RESPONDER_SENTINEL_WORKSPACE_ID", ""),
            review_diagnostics=_flag(env, "RESPONDER_REVIEW_DIAGNOSTICS", True),
            review_diagnostics_hours=_hours(env, "RESPONDER_REVIEW_DIAGNOSTICS_HOURS", 24),
            playbook_callers=tuple(
                c.strip().lower() for c in env.get("RESPONDER_PLAYBOOK_CALLERS", "").split(",") if c.strip()
            ),
            platform_auth=env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true",
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse plain-http Azure endpoints, and anything non-loopback in local mode."""
        endpoints = {
            "RESPONDER_ARM_ENDPOINT": self.arm_endpoint,
            "RESPONDER_GRAPH_ENDPOINT": self.graph_endpoint,
            "RESPONDER_LOGS_ENDPOINT": self.logs_endpoint,
        }
        for name, url in endpoints.items():
            if urlparse(url).scheme != "https":
                raise ConfigError(f"{name} must be an https URL (bearer tokens are never sent over http)")
            if self.local and not is_loopback_url(url):
                raise ConfigError(f"{name} must be a loopback address when RESPONDER_LOCAL is set")
        if self.local and self.ledger_endpoint and not is_loopback_url(self.ledger_endpoint):
            raise ConfigError(
                "RESPONDER_LEDGER_ENDPOINT must be a loopback address when RESPONDER_LOCAL is set"
            )
        if self.deadletter_endpoint:
            if urlparse(self.deadletter_endpoint).scheme != "https":
                raise ConfigError("RESPONDER_DEADLETTER_ENDPOINT must be an https URL (the identity's token)")
            if self.local and not is_loopback_url(self.deadletter_endpoint):
                raise ConfigError(
                    "RESPONDER_DEADLETTER_ENDPOINT must be a loopback address when RESPONDER_LOCAL is set"
                )
        if (self.deadletter_endpoint or self.deadletter_connection_string) and not _CONTAINER.fullmatch(
            self.deadletter_container
        ):
            raise ConfigError(
                "RESPONDER_DEADLETTER_CONTAINER must name the dead-letter container (3-63 lower-case "
                "letters, digits and single hyphens)"
            )
        if self.local:
            identity = os.environ.get("IDENTITY_ENDPOINT", "")
            if identity and not is_loopback_url(identity):
                raise ConfigError("IDENTITY_ENDPOINT must be a loopback address when RESPONDER_LOCAL is set")
        if self.sentinel_workspace_id and self.sentinel_workspace is None:
            raise ConfigError(
                "RESPONDER_SENTINEL_WORKSPACE_ID must be the ARM id of a Log Analytics workspace: "
                "/subscriptions/{guid}/resourceGroups/{name}/providers/Microsoft.OperationalInsights/"
                "workspaces/{name}"
            )
        if (
            self.evidence_workspace_resource_id
            and parse_workspace_id(self.evidence_workspace_resource_id) is None
        ):
            raise ConfigError(
                "RESPONDER_EVIDENCE_WORKSPACE_RESOURCE_ID must be the ARM id of a Log Analytics workspace"
            )
        if self.log_analytics_workspace_id and not _GUID.fullmatch(self.log_analytics_workspace_id):
            raise ConfigError("RESPONDER_LOG_ANALYTICS_WORKSPACE_ID must be the workspace (customer) GUID")
        wrong = [c for c in self.playbook_callers if not _GUID.fullmatch(c)]
        if wrong:
            raise ConfigError(f"RESPONDER_PLAYBOOK_CALLERS must list Entra ID object ids, not {wrong}")
        if not self.ledger_endpoint and not self.ledger_connection_string:
            raise ConfigError(
                "set RESPONDER_LEDGER_ENDPOINT (Azure) or RESPONDER_LEDGER_CONNECTION_STRING (local)"
            )
