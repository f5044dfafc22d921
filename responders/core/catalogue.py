"""One entry per containment action: what it is, whether and how it is undone, what it may call.

Everything else is derived from here: the kinds a policy may name, whether a planned action is
reversible, the evidence pack's undo text, the custom role (tests/test_infra.py) and the README's
action table (tests/test_catalogue.py). The adapters register one handler per kind
(responders/actions/__init__.py checks it at import), so adding an action starts with its entry.
"""

from __future__ import annotations

from dataclasses import dataclass

SA = "Microsoft.Storage/storageAccounts"
CONTAINERS = f"{SA}/blobServices/containers"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
# the Graph application permissions that let the responder disable a service principal (one of them)
GRAPH_PERMISSIONS = ("Application.ReadWrite.All", "Application.ReadWrite.OwnedBy")
# what gathering the facts reads before any action: the account, its containers and (when a principal is
# implicated) the role assignments that apply to the account
GATHER_ARM_ACTIONS = (f"{SA}/read", f"{CONTAINERS}/read", f"{ROLE_ASSIGNMENTS}/read")
# what the posture checks read besides: the blob service's diagnostic settings (responders/posture.py)
POSTURE_ARM_ACTIONS = ("Microsoft.Insights/diagnosticSettings/read",)


@dataclass(frozen=True)
class ActionSpec:
    """What one action kind is; `does` and `undo` are the README table's cells, word for word.

    `arm_actions` is what the responder's own role grants for the step; `restore_arm_actions` is what
    undoing it needs beyond that, held by whoever runs `restore`, never by the responder. A reversible
    action's `restore_order` says when `restore` undoes it (lower first). `remaining` is what the
    evidence pack tells a human once the step is contained: `{target}` is its target's name, `{until}`
    when tokens issued before it expire, `{keys}` the keys regenerated on the account (the notes of one
    kind and target are said once).
    """

    kind: str
    does: str
    reversible: bool
    undo: str
    arm_actions: tuple[str, ...] = ()
    graph_permissions: tuple[str, ...] = ()
    approval: str = "auto"
    restore_arm_actions: tuple[str, ...] = ()
    restore_order: int = 0
    remaining: str = ""


CATALOGUE: dict[str, ActionSpec] = {
    s.kind: s
    for s in (
        ActionSpec(
            kind="storage.disable_public_access",
            does="account `allowBlobPublicAccess=false` (absent means allowed, so it is written explicitly)",
            reversible=True,
            undo="set allowBlobPublicAccess back to the recorded before-state",
            arm_actions=(f"{SA}/read", f"{SA}/write"),
            # account-level public access must be allowed again before a container can be made public again
            restore_order=1,
        ),
        ActionSpec(
            kind="storage.make_container_private",
            does="container `publicAccess=None`; the previous level is recorded",
            reversible=True,
            undo="set the container's recorded public access level back",
            arm_actions=(f"{CONTAINERS}/read", f"{CONTAINERS}/write"),
            restore_order=2,
        ),
        ActionSpec(
            kind="storage.regenerate_key",
            does="regenerates `key1`, then `key2`: every account and service SAS signed with either dies",
            reversible=False,
            undo=(
                "the old key is gone once regenerated; hand the new keys (portal or "
                "`az storage account keys list`) to legitimate users and reissue their SAS"
            ),
            arm_actions=(f"{SA}/read", f"{SA}/regeneratekey/action"),
            remaining=(
                "Keys {keys} of {target} were regenerated: hand the new keys to legitimate users "
                "(portal or `az storage account keys list`) and reissue the SAS they signed."
            ),
        ),
        ActionSpec(
            kind="storage.revoke_user_delegation_keys",
            does="revokes user-delegation keys: the only way to kill user-delegation SAS",
            reversible=False,
            undo=(
                "revoked user-delegation keys stay revoked; clients request new user-delegation keys "
                "and reissue their SAS"
            ),
            arm_actions=(f"{SA}/revokeUserDelegationKeys/action",),
            remaining=(
                "User-delegation SAS for {target} are dead: legitimate clients must request new "
                "user-delegation keys and reissue their SAS."
            ),
        ),
        ActionSpec(
            kind="identity.disable_service_principal",
            does=(
                "service principal `accountEnabled=false` (by object id only); tokens already issued "
                "stay valid up to 60-90 minutes"
            ),
            reversible=True,
            undo="re-enable the service principal (accountEnabled=true)",
            graph_permissions=GRAPH_PERMISSIONS,
            remaining=(
                "Tokens already issued to service principal {target} remain valid for up to 90 minutes "
                "after it was disabled{until}: watch its sign-ins and revoke what you can."
            ),
        ),
        ActionSpec(
            kind="storage.restrict_network",
            does=(
                "account `networkAcls.defaultAction=Deny`, keeping only the rules the policy trusts "
                "(`network.trusted`): every request from elsewhere is refused, whatever its credential, "
                "tokens already issued included; `publicNetworkAccess` is recorded, not changed"
            ),
            reversible=True,
            undo=(
                "put back the recorded networkAcls (default action, bypass, every rule) and "
                "publicNetworkAccess"
            ),
            arm_actions=(f"{SA}/read", f"{SA}/write"),
            approval="approval",
            restore_order=3,
        ),
        ActionSpec(
            kind="storage.disable_shared_key",
            does=(
                "account `allowSharedKeyAccess=false` (absent means allowed): every account key and every "
                "account and service SAS is refused at once"
            ),
            reversible=True,
            undo="set allowSharedKeyAccess back to the recorded before-state (absent is written as true)",
            arm_actions=(f"{SA}/read", f"{SA}/write"),
            approval="approval",
            restore_order=4,
        ),
        ActionSpec(
            kind="authorization.remove_role_assignments",
            does=(
                "deletes the implicated service principal's role assignments at or under the account (by "
                "object id only); Azure applies a removal within up to 10 minutes; assignments inherited "
                "from the resource group or subscription are left and reported"
            ),
            reversible=True,
            undo=(
                "re-create each recorded assignment (same name, role, scope, principal, condition); "
                "`restore` needs an identity holding Microsoft.Authorization/roleAssignments/write there, "
                "which the responder's role does not grant"
            ),
            arm_actions=(f"{ROLE_ASSIGNMENTS}/read", f"{ROLE_ASSIGNMENTS}/delete"),
            restore_arm_actions=(f"{ROLE_ASSIGNMENTS}/write",),
            approval="approval",
        ),
    )
}
ACTION_KINDS = tuple(CATALOGUE)
REVERSIBLE = {kind: spec.reversible for kind, spec in CATALOGUE.items()}
RESTORE_ORDER = {kind: spec.restore_order for kind, spec in CATALOGUE.items() if spec.reversible}


def arm_actions() -> frozenset[str]:
    """Every Resource Manager action the responder needs: what the custom role must grant, exactly."""
    return frozenset((*GATHER_ARM_ACTIONS, *POSTURE_ARM_ACTIONS)).union(
        *(s.arm_actions for s in CATALOGUE.values())
    )


def restore_arm_actions() -> frozenset[str]:
    """What undoing the reversible steps calls beyond the responder's role (the restoring human holds it)."""
    return frozenset().union(*(s.restore_arm_actions for s in CATALOGUE.values())) - arm_actions()


def check_handlers(kinds: list[str]) -> None:
    """Exactly one handler per catalogued kind: a missing, extra or doubled one fails at import."""
    doubled = sorted({k for k in kinds if kinds.count(k) > 1})
    missing = sorted(set(CATALOGUE) - set(kinds))
    extra = sorted(set(kinds) - set(CATALOGUE))
    if doubled or missing or extra:
        raise RuntimeError(
            f"action handlers do not match the catalogue: doubled {doubled}, without a handler "
            f"{missing}, not catalogued {extra}"
        )
