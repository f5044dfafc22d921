"""Action catalogue: each containment step registered by its dotted name (Cloud Custodian style)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from responders.actions.authorization import RemoveRoleAssignments
from responders.actions.identity import DisableServicePrincipal, principal_state
from responders.actions.storage import (
    DisablePublicAccess,
    DisableSharedKey,
    MakeContainerPrivate,
    RegenerateKey,
    RestrictNetwork,
    RevokeUserDelegationKeys,
    known_account,
)
from responders.core.catalogue import check_handlers

if TYPE_CHECKING:
    from responders.clients import Clients
    from responders.core.model import Action, Facts, Write


class Handler(Protocol):
    """Read the target's state, tell whether it is already contained, and apply the change.

    `observable` is False for a step Resource Manager cannot show (the executor then adds the last
    recorded write as `writtenAt`); `done_at` is when the state shows the step was done ("" when the
    state carries no such time), never when it was looked at. `state_from` derives the state from
    what the delivery already knows of the target (see `known_state`), or None when that does not
    show it. `apply` returns the writes it sent; as an `Applied`, it also carries what the write's own
    answer shows of the target, which stands in for the read-back.
    """

    kind: str
    observable: bool

    def read(self, clients: Clients, action: Action) -> dict[str, Any]: ...

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool: ...

    def done_at(self, state: dict[str, Any]) -> str: ...

    def state_from(self, known: dict[str, Any], action: Action) -> dict[str, Any] | None: ...

    def apply(self, clients: Clients, action: Action) -> list[Write]: ...


def known_state(facts: Facts) -> dict[str, dict[str, Any]]:
    """What gathering the facts read of each target, by lower-case id: it answers each step's first
    read, so containment does not ask Azure again for what it read a moment before planning."""
    known = {a.lower(): known_account(f) for a, f in facts.accounts.items() if f.found}
    known.update({p.lower(): principal_state(f) for p, f in facts.principals.items()})
    return known


def register(*handlers: Handler) -> dict[str, Handler]:
    """Each handler by the kind it serves; one per catalogued kind, or the app does not start."""
    check_handlers([h.kind for h in handlers])
    return {h.kind: h for h in handlers}


HANDLERS: dict[str, Handler] = register(
    DisablePublicAccess(),
    MakeContainerPrivate(),
    RegenerateKey(),
    RevokeUserDelegationKeys(),
    DisableServicePrincipal(),
    RestrictNetwork(),
    DisableSharedKey(),
    RemoveRoleAssignments(),
)
