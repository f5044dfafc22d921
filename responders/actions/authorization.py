"""Authorization adapter (azure-mgmt-authorization): read the role assignments that apply to a storage
account, and remove one service principal's assignments at or under it.

Assignments are inherited: one at the resource group or subscription applies to the account too, but
removing it would take the principal's access to everything else under that scope, so this step
removes only those at or under the account and reports the inherited ones (a path left open). Every
request path is rebuilt from a validated account id, a GUID name and a scope checked to lie under the
account; nothing from an input, a ledger row or an answer is put into a URL unchecked.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from responders.core.arm import StorageRef, parse_storage_id
from responders.core.model import Action, RoleAssignmentFacts, Write
from responders.core.parse import guid

if TYPE_CHECKING:
    from responders.clients import Clients

# what one removed assignment is recorded as, enough for restore to re-create it as it was
RECORDED = (
    "id",
    "name",
    "roleDefinitionId",
    "scope",
    "principalId",
    "principalType",
    "condition",
    "conditionVersion",
    "description",
)
# a child scope of an account (a blob service, a container): plain name segments only
_CHILD = re.compile(r"(?:/[A-Za-z0-9$][A-Za-z0-9._-]{0,62})+", re.ASCII)
_ROLE_DEFINITION = re.compile(
    r"(?:/subscriptions/[0-9a-f-]{36})?/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-f-]{36}",
    re.IGNORECASE | re.ASCII,
)
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


def account_ref(resource_id: str) -> StorageRef:
    """The account an action targets, parsed and rebuilt: the only scope a list is sent for."""
    ref = parse_storage_id(resource_id)
    if ref is None or ref.container:
        raise ValueError(f"not a storage account id: {resource_id!r}")
    return ref


def principal_of(action: Action) -> str:
    """The principal whose assignments the step removes: a GUID object id, never a name."""
    object_id = guid(action.params.get("principal", ""))
    if not object_id:
        raise ValueError("the principal must be a service principal object id (a GUID)")
    return object_id


def checked_scope(scope: str, ref: StorageRef) -> str:
    """A scope at or under the account, as Azure spells it, or ValueError: it goes into a request path."""
    account = ref.account_id
    if scope.lower() == account.lower():
        return account
    if scope.lower().startswith(account.lower() + "/") and _CHILD.fullmatch(scope[len(account) :]):
        return account + scope[len(account) :]
    raise ValueError(f"role assignment scope {scope!r} is not at or under {account}")


def _record(assignment: Any) -> dict[str, Any]:
    return {
        "id": str(assignment.id or ""),
        "name": str(assignment.name or "").lower(),
        "roleDefinitionId": str(assignment.role_definition_id or ""),
        "scope": str(assignment.scope or ""),
        "principalId": str(assignment.principal_id or "").lower(),
        "principalType": str(assignment.principal_type or ""),
        "condition": assignment.condition,
        "conditionVersion": assignment.condition_version,
        "description": assignment.description,
    }


def _facts(record: dict[str, Any]) -> RoleAssignmentFacts:
    return RoleAssignmentFacts(
        name=record["name"],
        scope=record["scope"],
        role_definition_id=record["roleDefinitionId"],
        principal_id=record["principalId"],
        principal_type=record["principalType"],
        condition=record["condition"] or "",
        condition_version=record["conditionVersion"] or "",
        description=record["description"] or "",
    )


def read_account_roles(clients: Clients, account_id: str) -> tuple[RoleAssignmentFacts, ...]:
    """Every role assignment that applies at, above or below the account, of every principal (no
    filter: Azure lists all three), for the facts: who keeps which role on the account."""
    ref = account_ref(account_id)
    listed = clients.authorization(ref.subscription).role_assignments.list_for_scope(ref.account_id)
    return tuple(_facts(_record(a)) for a in listed)


def _principal_records(clients: Clients, ref: StorageRef, principal: str) -> list[dict[str, Any]]:
    """The principal's assignments at, above or below the account: every assignment of the scope, then
    filtered here, as Microsoft's RBAC troubleshooting advises for checking a removal (a listing by
    principal can lag it by minutes)."""
    listed = clients.authorization(ref.subscription).role_assignments.list_for_scope(ref.account_id)
    return [r for r in (_record(a) for a in listed) if r["principalId"] == principal]


def role_state(clients: Clients, action: Action) -> dict[str, Any]:
    """The step's state: the principal's assignments at or under the account (what it removes) and
    those inherited from above (what it leaves, and reports)."""
    ref, principal = account_ref(action.target), principal_of(action)
    at, inherited = [], []
    for record in _principal_records(clients, ref, principal):
        relation = _facts(record).relation(ref.account_id)
        if relation in ("at", "under"):
            at.append(record)
        elif relation == "above":
            inherited.append(record)
    key = lambda r: (r["scope"].lower(), r["name"])  # noqa: E731
    return {
        "principal": principal,
        "scope": ref.account_id,
        "assignments": sorted(at, key=key),
        "inherited": sorted(inherited, key=key),
    }


class RemoveRoleAssignments:
    """DELETE each of the principal's role assignments at or under the account (200 with the deleted
    assignment, 204 when it is already gone: a redelivery deletes nothing twice)."""

    kind = "authorization.remove_role_assignments"
    observable = True
    # one DELETE per assignment: a step that failed part way has removed some, which restore puts back
    restores_partly = True

    def __init__(self) -> None:
        # what the step's last read saw, by action key: apply deletes exactly those (the ones the
        # ledger records as the before-state), never one that appeared after the read
        self._read: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, clients: Clients, action: Action) -> dict[str, Any]:
        state = role_state(clients, action)
        with self._lock:
            self._read[action.key] = list(state["assignments"])
            while len(self._read) > 1024:
                self._read.popitem(last=False)
        return state

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None:
        return None  # the account's known state holds no role assignments: read them

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool:
        return not state.get("assignments")

    def done_at(self, state: dict[str, Any]) -> str:
        return ""

    def apply(self, clients: Clients, action: Action) -> list[Write]:
        """Role assignment deletes raise no event the responder subscribes to: no echo to record."""
        ref, principal = account_ref(action.target), principal_of(action)
        refuse_own(clients, principal)
        with self._lock:
            seen = self._read.pop(action.key, None)
        if seen is None:
            seen = role_state(clients, action)["assignments"]
        client = clients.authorization(ref.subscription)
        for record in seen:
            name = guid(record.get("name"))
            if not name or str(record.get("principalId", "")).lower() != principal:
                raise ValueError(f"not a role assignment of {principal}: {record.get('id')!r}")
            client.role_assignments.delete(checked_scope(str(record.get("scope", "")), ref), name)
        return []

    def left_partly(self, state: dict[str, Any], before: dict[str, Any]) -> bool:
        """After a removal that failed part way: does the principal hold nothing at or under the account
        but what the step recorded before (none granted since, which restore would add to)?"""
        recorded = {str(r.get("name", "")) for r in before.get("assignments") or [] if isinstance(r, dict)}
        return {r["name"] for r in state.get("assignments") or []} <= recorded

    def restore(self, clients: Clients, action: Action, before: dict[str, Any]) -> list[Write]:
        """PUT each recorded assignment the principal no longer holds back under its own name, with its
        role, principal and condition (one still held, after a removal that failed part way, is left as
        it is). Needs Microsoft.Authorization/roleAssignments/write, which the responder's role does not
        hold: run by a human with that right."""
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        ref, principal = account_ref(action.target), principal_of(action)
        refuse_own(clients, principal)  # a role for the responder itself would widen its own rights
        recorded = before.get("assignments") or []
        checked = [_restorable(r, ref, principal) for r in recorded]  # all valid, or nothing is sent
        held = {r["name"] for r in role_state(clients, action)["assignments"]}
        client = clients.authorization(ref.subscription)
        for scope, name, record in checked:
            if name in held:
                continue
            client.role_assignments.create(
                scope,
                name,
                RoleAssignmentCreateParameters(
                    role_definition_id=record["roleDefinitionId"],
                    principal_id=principal,
                    principal_type=record.get("principalType") or "ServicePrincipal",
                    condition=record.get("condition") or None,
                    condition_version=record.get("conditionVersion") or None,
                    description=record.get("description") or None,
                ),
            )
        return []


def _restorable(record: Any, ref: StorageRef, principal: str) -> tuple[str, str, dict[str, Any]]:
    """(scope, name, record) of a recorded assignment fit to be re-created, or ValueError."""
    if not isinstance(record, dict):
        raise ValueError("a recorded role assignment must be an object")
    name = guid(record.get("name"))
    role = str(record.get("roleDefinitionId") or "")
    if not name or not _ROLE_DEFINITION.fullmatch(role):
        raise ValueError(f"recorded role assignment {record.get('id')!r} has no GUID name or role id")
    if role.lower().startswith("/subscriptions/") and role.split("/")[2].lower() != ref.subscription:
        raise ValueError(f"recorded role assignment {name}: its role is defined in another subscription")
    if str(record.get("principalId", "")).lower() != principal:
        raise ValueError(f"recorded role assignment {name} is not of principal {principal}")
    if (record.get("principalType") or "ServicePrincipal") not in PRINCIPAL_TYPES:
        raise ValueError(f"recorded role assignment {name} has an unknown principal type")
    for field in ("condition", "conditionVersion", "description"):
        if record.get(field) is not None and not isinstance(record.get(field), str):
            raise ValueError(f"recorded role assignment {name}: {field} must be a string")
    return checked_scope(str(record.get("scope", "")), ref), name, record


def refuse_own(clients: Clients, principal: str) -> None:
    """The responder never removes its own role assignments, nor has restore create one for it,
    whatever a plan or a ledger row says."""
    settings = clients.settings
    own = {settings.identity_object_id.lower(), *settings.policy.responder_object_ids} - {""}
    if principal in own:
        raise ValueError("the responder's own role assignments are never removed")
