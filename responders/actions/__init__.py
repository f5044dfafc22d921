"""Action catalogue: each containment step registered by its dotted name (Cloud Custodian style)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from responders.actions.identity import DisableServicePrincipal
from responders.actions.storage import (
    DisablePublicAccess,
    MakeContainerPrivate,
    RegenerateKey,
    RevokeUserDelegationKeys,
)

if TYPE_CHECKING:
    from responders.clients import Clients
    from responders.core.model import Action, Write


class Handler(Protocol):
    """Read the target's state, tell whether it is already contained, and apply the change.

    `observable` is False for a step Resource Manager cannot show (the executor then adds the last
    recorded write as `writtenAt`); `done_at` is when the state shows the step was done ("" when the
    state carries no such time), never when it was looked at.
    """

    kind: str
    observable: bool

    def read(self, clients: Clients, action: Action) -> dict[str, Any]: ...

    def done(self, state: dict[str, Any], action: Action, since: str) -> bool: ...

    def done_at(self, state: dict[str, Any]) -> str: ...

    def apply(self, clients: Clients, action: Action) -> list[Write]: ...


HANDLERS: dict[str, Handler] = {
    h.kind: h
    for h in (
        DisablePublicAccess(),
        MakeContainerPrivate(),
        RegenerateKey(),
        RevokeUserDelegationKeys(),
        DisableServicePrincipal(),
    )
}
