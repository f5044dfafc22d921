"""Replay captured events through the registered functions, in-process against the local stand-ins
or posted to a running Functions host (`--target`)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import azure.functions as func

from responders.core.model import BadInput
from responders.core.parse import detect_schema, incident_key, parse_item

if TYPE_CHECKING:
    from rehearsal.standins import StandIns

ROOT = Path(__file__).resolve().parent.parent

REDELIVERIES = 3


_FUNCTIONS: dict[str, Any] = {}
_FUNCTIONS_LOCK = threading.Lock()


def _functions() -> dict[str, Any]:
    """The app's registered functions by name; indexed once, as the host does (it may not repeat)."""
    with _FUNCTIONS_LOCK:
        return _index_functions()


def _index_functions() -> dict[str, Any]:
    if not _FUNCTIONS:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from function_app import app

        _FUNCTIONS.update({f.get_function_name(): f.get_user_function() for f in app.get_functions()})
    return dict(_FUNCTIONS)


def to_eventgrid_event(item: dict[str, Any]) -> func.EventGridEvent:
    when = item.get("eventTime") or None
    moment = datetime.fromisoformat(when[:26].rstrip("Z") + "+00:00") if when else None
    return func.EventGridEvent(
        id=item["id"],
        data=item.get("data"),
        topic=item.get("topic", ""),
        subject=item["subject"],
        event_type=item["eventType"],
        event_time=moment,
        data_version=item.get("dataVersion", ""),
    )


def http_request(route: str, body: bytes, headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST",
        url=f"http://localhost/api/{route}",
        body=body,
        headers={"content-type": "application/json", **(headers or {})},
    )


def deliver_to_functions(event: dict[str, Any]) -> None:
    """One event as an Event Grid subscription delivers it to this app: an Event Grid schema event to
    the Event Grid trigger, a CloudEvent to the webhook. Raises when the delivery failed, so the topic
    retries it."""
    functions = _functions()
    if "specversion" in event:
        response = functions["alerts"](
            http_request("alerts", json.dumps(event).encode(), {"aeg-event-type": "Notification"})
        )
        if response.status_code >= 500:
            raise RuntimeError(f"webhook answered {response.status_code}")
        return
    functions["eventgrid_trigger"](to_eventgrid_event(event))


class Replayer:
    """Delivers captures like the platform would and reports what the ledger recorded."""

    def __init__(self, standins: StandIns | None, target: str | None) -> None:
        self.standins = standins
        self.target = target.rstrip("/") if target else None
        self.functions = _functions() if target is None else {}
        # in-process against the stack `make up` keeps running: its simulator is asked over HTTPS
        self.remote_simulator = standins is None and target is None
        self._requests_before = len(self._admin("requests")) if self.remote_simulator else 0

    @classmethod
    @contextmanager
    def start(
        cls, *, execute: bool, target: str | None, policy_file: str, tenant: str, persist: bool = False
    ) -> Iterator[Replayer]:
        """`persist`: with no ledger configured, use the local stack over the data in .run/ (the CLI);
        otherwise fresh in-memory stand-ins that vanish with the run."""
        if target:
            yield cls(None, target)
            return
        from rehearsal.standins import endpoints_configured, local_stack, start_standins
        from responders.service import Runtime, set_runtime
        from responders.settings import Settings

        extra = {"RESPONDER_POLICY_FILE": policy_file, "RESPONDER_DRY_RUN": "false" if execute else "true"}
        if persist and not endpoints_configured():
            with local_stack(Path(tenant), extra) as standins:
                set_runtime(Runtime.from_settings(Settings.from_env()))
                try:
                    yield cls(standins, None)
                finally:
                    set_runtime(None)
            return
        standins = start_standins(Path(tenant), extra)
        try:
            standins.apply_env()
            set_runtime(Runtime.from_settings(Settings.from_env()))
            yield cls(standins, None)
        finally:
            set_runtime(None)
            standins.stop()

    def _admin(self, what: str) -> Any:
        """The running simulator's admin view (`requests` or `state`, key values redacted)."""
        import os

        import requests

        response = requests.get(
            os.environ["RESPONDER_ARM_ENDPOINT"] + "/_sim/" + what,
            timeout=30,
            verify=os.environ.get("REQUESTS_CA_BUNDLE") or True,
        )
        response.raise_for_status()
        return response.json()

    def _snapshot(self) -> dict[str, Any]:
        if self.standins is not None:
            return self.standins.simulator.state.snapshot(redact=True)
        return self._admin("state") if self.remote_simulator else {}

    def calls(self) -> dict[str, int]:
        from responders.cli import count_calls

        if self.remote_simulator:
            return count_calls(self._admin("requests")[self._requests_before :])
        return count_calls(self.standins.simulator.requests()) if self.standins else {}

    # delivery ------------------------------------------------------------------------------
    def replay_file(self, path: Path) -> list[dict[str, Any]]:
        from responders.cli import iter_items

        return [
            self.replay_item(item, path.name) if raw is None else self._post_alerts(raw, path.name)
            for item, raw in iter_items(path)
        ]

    def replay_item(self, item: Any, name: str) -> dict[str, Any]:
        from responders.service import runtime

        body = json.dumps(item).encode()
        try:
            parse_item(item, now=runtime().clock() if self.target is None else "")
            schema = detect_schema(item)
        except BadInput:
            return self._post_alerts(body, name)
        if schema == "eventgrid":
            return self._eventgrid(item, name)
        if schema == "playbook":
            return self._post("playbook", body, name)
        return self._post_alerts(body, name)

    def _eventgrid(self, item: dict[str, Any], name: str) -> dict[str, Any]:
        if self.target:
            return self._remote(
                "/runtime/webhooks/eventgrid?functionName=eventgrid_trigger",
                [item],
                name,
                {"aeg-event-type": "Notification"},
            )
        from responders.execute import TransientFailure
        from responders.service import SETTLED, ledger_report, runtime

        error = ""
        key = incident_key(item["id"])
        earlier = runtime().ledger.head(key)
        settled = earlier is not None and (
            earlier.get("Status") in SETTLED
            or (earlier.get("Status") == "dry-run" and runtime().settings.dry_run)
        )
        for _ in range(REDELIVERIES):
            try:
                self.functions["eventgrid_trigger"](to_eventgrid_event(item))
                error = ""
                break
            except TransientFailure as exc:  # Event Grid would redeliver; so do we
                error = str(exc)
        row = runtime().ledger.incident(key)
        if row is None:
            return {"file": name, "status": "rejected", "error": error or "no ledger record"}
        report = ledger_report(row)
        report["file"] = name
        # the pipeline answered a settled incident's redelivery from the ledger: a repeat, as the HTTP
        # routes report it ("duplicate")
        if settled and int(row.get("Deliveries") or 1) > int((earlier or {}).get("Deliveries") or 1):
            report["duplicate"] = True
        return report

    def _post_alerts(self, body: bytes, name: str) -> dict[str, Any]:
        return self._post("alerts", body, name)

    def _post(self, route: str, body: bytes, name: str) -> dict[str, Any]:
        if self.target:
            return self._remote(f"/api/{route}", json.loads(body) if body.strip() else None, name, {}, body)
        response = self.functions[route](http_request(route, body, {"aeg-event-type": "Notification"}))
        payload = json.loads(response.get_body() or b"{}")
        if response.status_code >= 400:
            return {
                "file": name,
                "status": "rejected",
                "error": payload.get("error", str(response.status_code)),
                "http_status": response.status_code,
            }
        results = payload.get("results") or [payload]
        first = dict(results[0])
        first["file"] = name
        return first

    def _remote(
        self, path: str, payload: Any, name: str, headers: dict[str, str], raw: bytes | None = None
    ) -> dict[str, Any]:
        import requests

        data = raw if raw is not None else json.dumps(payload).encode()
        response = requests.post(
            self.target + path, data=data, timeout=60, headers={"content-type": "application/json", **headers}
        )
        result: dict[str, Any] = {"file": name, "http_status": response.status_code}
        if response.status_code >= 400:
            result.update(status="rejected", error=response.text[:500])
        else:
            result["status"] = "delivered"
        return result

    # evidence ------------------------------------------------------------------------------
    def print_evidence(self, out: TextIO) -> None:
        """The state the simulated tenant and the ledger hold after the run."""
        from responders.service import runtime

        if self.standins is None and not self.remote_simulator:
            return
        snapshot = self._snapshot()
        out.write("\nAfter the run, the simulated tenant holds:\n")
        for line in describe_state(snapshot):
            out.write(f"  {line}\n")
        ledger = runtime().ledger
        incidents = list(ledger.incidents())
        full = [ledger.incident(i["PartitionKey"]) or {} for i in incidents]
        rows = sum(len(i.get("actions", [])) for i in full)
        statuses: dict[str, int] = {}
        for row in incidents:
            statuses[row.get("Status", "")] = statuses.get(row.get("Status", ""), 0) + 1
        out.write(
            f"The ledger (Azurite table {runtime().settings.ledger_table}) holds {len(incidents)} incident "
            f"rows ({', '.join(f'{n} {k}' for k, n in sorted(statuses.items()))}) and {rows} action rows, "
            "each with its state before and after.\n"
        )
        sentinel = [i for i in full if i.get("IncidentArmId") and i.get("Status") == "contained"]
        for incident in sentinel[:1]:
            name = incident["IncidentArmId"].rsplit("/", 1)[-1].lower()
            held = {n.lower(): i for n, i in snapshot.get("incidents", {}).items()}
            comments = held.get(name, {}).get("comments", {})
            out.write(
                f"The Sentinel incident {incident['IncidentArmId'].rsplit('/', 1)[-1]} holds "
                f"{len(comments)} comment(s) from the responder.\n"
            )
            from datetime import UTC, datetime

            from responders.evidence_pack import build_pack, render_markdown

            out.write(
                f"\nEvidence pack of {incident['PartitionKey']} "
                f"(python -m responders evidence {incident['PartitionKey']}):\n\n"
            )
            out.write(render_markdown(build_pack(incident, datetime.now(UTC))) + "\n")


def describe_state(snapshot: dict[str, Any]) -> list[str]:
    """One line per account and service principal: what an auditor checks after containment."""
    lines = []
    for account in snapshot.get("accounts", {}).values():
        props = account.get("properties", {})
        public = [
            f"{name}={c.get('properties', {}).get('publicAccess')}"
            for name, c in account.get("containers", {}).items()
            if str(c.get("properties", {}).get("publicAccess", "None")) != "None"
        ]
        keys = {name: key.get("creationTime") for name, key in account.get("keys", {}).items()}
        lines.append(
            f"{account.get('name')}: allowBlobPublicAccess={props.get('allowBlobPublicAccess', '(absent)')} "
            f"public containers={public or 'none'} key1 created {keys.get('key1')} "
            f"key2 created {keys.get('key2')}"
        )
    for sp in snapshot.get("servicePrincipals", {}).values():
        lines.append(
            f"service principal {sp.get('displayName')} ({sp.get('id')}): "
            f"accountEnabled={sp.get('accountEnabled')}"
        )
    return lines
