"""A storage account's network rules, as Resource Manager shows them (`networkAcls`, `publicNetworkAccess`),
and the rules the policy trusts: what restricting the network writes, and whether it is done. Pure.

A PATCH that carries `networkAcls` replaces the whole object: a rule it leaves out is gone, and an
omitted `bypass` falls back to `AzureServices` (azure-cli's recorded `network-rule add/remove`, and
StorageAccountUpdate.json, in tests/data/azure). So the write always carries every list and the
account's own `bypass`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from responders.core.model import BadInput
from responders.core.parse import is_guid

SUBNET_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}/providers/Microsoft\.Network"
    r"/virtualNetworks/[-\w.]{1,80}/subnets/[-\w.]{1,80}",
    re.IGNORECASE,
)
# a resource instance rule names a resource id, whose last segments may be "*" (every instance)
RESOURCE_ID = re.compile(r"/subscriptions/([0-9a-fA-F-]{36}|\*)(/[-\w.()*]{1,260}){2,12}", re.IGNORECASE)
PUBLIC_NETWORK_ACCESS = ("Enabled", "Disabled", "SecuredByPerimeter")
# Azure Storage takes no IP rule in these (storage-network-security.md: private ranges per RFC 1918)
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class TrustedNetwork(NamedTuple):
    """The network rules a restricted account keeps (policy `network.trusted`); empty: none."""

    ip_rules: tuple[str, ...] = ()
    virtual_network_rules: tuple[str, ...] = ()
    resource_access_rules: tuple[tuple[str, str], ...] = ()  # (tenant id, resource id)

    def as_param(self) -> str:
        """The action parameter that carries them (canonical JSON, so the action key is stable)."""
        return json.dumps(
            {
                "ip_rules": sorted(self.ip_rules),
                "virtual_network_rules": sorted(self.virtual_network_rules),
                "resource_access_rules": [
                    {"tenant_id": t, "resource_id": r} for t, r in sorted(self.resource_access_rules)
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_param(cls, text: str) -> TrustedNetwork:
        """Read the parameter back (from a plan or a ledger row), validated again: it goes into a write."""
        try:
            raw = json.loads(text or "{}")
        except ValueError as exc:
            raise ValueError("the trusted network rules are not JSON") from exc
        try:
            return trusted_from_policy(raw)
        except BadInput as exc:
            raise ValueError(str(exc)) from exc


def _ip_rule(value: object) -> str:
    """A public IPv4 address or range, as Azure Storage takes it (no private ranges, no /31 or /32)."""
    try:
        net = ipaddress.ip_network(str(value), strict=True) if isinstance(value, str) else None
    except ValueError:
        net = None
    if (
        net is None
        or net.version != 4
        or any(net.overlaps(p) for p in RFC1918)
        or net.prefixlen < 8
        or (net.prefixlen in (31, 32) and "/" in str(value))
    ):
        raise BadInput(
            f"policy: network.trusted.ip_rules: {value!r} is not a public IPv4 address or range of /8 "
            "or narrower (Azure Storage refuses RFC 1918 ranges and /31, /32: write a single address)"
        )
    return str(value)


def trusted_from_policy(raw: object) -> TrustedNetwork:
    """Validate `network.trusted`: ip_rules, virtual_network_rules (subnet ids), resource_access_rules."""
    if raw is None:
        return TrustedNetwork()
    if not isinstance(raw, Mapping):
        raise BadInput("policy: network.trusted must be a mapping")
    unknown = sorted(set(raw) - {"ip_rules", "virtual_network_rules", "resource_access_rules"})
    if unknown:
        raise BadInput(f"policy: network.trusted has unknown keys {unknown}")
    ips, subnets, resources = (
        raw.get(k) or [] for k in ("ip_rules", "virtual_network_rules", "resource_access_rules")
    )
    if not all(isinstance(v, list) for v in (ips, subnets, resources)):
        raise BadInput("policy: network.trusted.* must be lists")
    bad = [s for s in subnets if not (isinstance(s, str) and SUBNET_ID.fullmatch(s))]
    if bad:
        raise BadInput(f"policy: network.trusted.virtual_network_rules: {bad[0]!r} is not a subnet id")
    rules: list[tuple[str, str]] = []
    for rule in resources:
        if (
            not isinstance(rule, Mapping)
            or set(rule) != {"tenant_id", "resource_id"}
            or not is_guid(str(rule["tenant_id"]))
            or not (isinstance(rule["resource_id"], str) and RESOURCE_ID.fullmatch(rule["resource_id"]))
        ):
            raise BadInput(
                "policy: network.trusted.resource_access_rules: each is {tenant_id: <guid>, "
                "resource_id: /subscriptions/...}"
            )
        rules.append((str(rule["tenant_id"]).lower(), rule["resource_id"]))
    return TrustedNetwork(
        ip_rules=tuple(dict.fromkeys(_ip_rule(v) for v in ips)),
        virtual_network_rules=tuple(dict.fromkeys(subnets)),
        resource_access_rules=tuple(dict.fromkeys(rules)),
    )


def _list(acls: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = acls.get(key) or []
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def untrusted_rules(acls: Mapping[str, Any], trusted: TrustedNetwork) -> list[str]:
    """The account's allow rules the policy does not trust, one line each (for the plan's reason)."""
    ips = set(trusted.ip_rules)
    subnets = {s.lower() for s in trusted.virtual_network_rules}
    resources = {(t, r.lower()) for t, r in trusted.resource_access_rules}
    out = [f"ip {r.get('value')}" for r in _list(acls, "ipRules") if str(r.get("value")) not in ips]
    out += [f"ipv6 {r.get('value')}" for r in _list(acls, "ipv6Rules")]
    out += [
        f"subnet {r.get('id')}"
        for r in _list(acls, "virtualNetworkRules")
        if str(r.get("id", "")).lower() not in subnets
    ]
    out += [
        f"resource {r.get('resourceId')} (tenant {r.get('tenantId')})"
        for r in _list(acls, "resourceAccessRules")
        if (str(r.get("tenantId", "")).lower(), str(r.get("resourceId", "")).lower()) not in resources
    ]
    return out


def is_restricted(
    acls: Mapping[str, Any], public_network_access: str | None, trusted: TrustedNetwork
) -> bool:
    """No request reaches the public endpoint but from a trusted rule: public network access is
    disabled, or the default action is Deny and every rule is trusted."""
    if str(public_network_access or "").lower() == "disabled":
        return True
    return str(acls.get("defaultAction") or "Allow").lower() == "deny" and not untrusted_rules(acls, trusted)


def restricted_acls(acls: Mapping[str, Any], trusted: TrustedNetwork) -> dict[str, Any]:
    """The whole `networkAcls` restricting writes: Deny by default, the trusted rules (and only them),
    the account's own bypass (an omitted one would fall back to AzureServices)."""
    bypass = acls.get("bypass")
    return {
        "bypass": str(bypass) if bypass else "AzureServices",
        "defaultAction": "Deny",
        "ipRules": [{"value": ip, "action": "Allow"} for ip in trusted.ip_rules],
        "virtualNetworkRules": [{"id": s, "action": "Allow"} for s in trusted.virtual_network_rules],
        "resourceAccessRules": [{"tenantId": t, "resourceId": r} for t, r in trusted.resource_access_rules],
    }


def _ipv4_or_range(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_network(value, strict=False).version == 4
    except ValueError:
        return False


def _ipv6_or_range(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_network(value, strict=False).version == 6
    except ValueError:
        return False


_BYPASS = re.compile(r"(None|Logging|Metrics|AzureServices)(, ?(Logging|Metrics|AzureServices))*", re.ASCII)
_RULE_KEYS = {
    "ipRules": ({"value", "action"}, lambda r: _ipv4_or_range(r.get("value"))),
    "ipv6Rules": ({"value", "action"}, lambda r: _ipv6_or_range(r.get("value"))),
    "virtualNetworkRules": (
        {"id", "action", "state"},
        lambda r: isinstance(r.get("id"), str) and bool(SUBNET_ID.fullmatch(r["id"])),
    ),
    "resourceAccessRules": (
        {"tenantId", "resourceId"},
        lambda r: (
            is_guid(str(r.get("tenantId")))
            and isinstance(r.get("resourceId"), str)
            and bool(RESOURCE_ID.fullmatch(r["resourceId"]))
        ),
    ),
}


def restorable_network(before: Mapping[str, Any]) -> dict[str, Any]:
    """The account properties that put a recorded network state back, rebuilt field by field from what
    validates as one (a ledger row is data: only a networkAcls and a publicNetworkAccess go out), or
    ValueError. A recorded empty networkAcls is Azure's default, allow."""
    if "networkAcls" not in before:
        raise ValueError("no recorded networkAcls to put back")
    acls = before.get("networkAcls") or {}
    if not isinstance(acls, Mapping):
        raise ValueError("the recorded networkAcls is not an object")
    unknown = sorted(set(acls) - {"bypass", "defaultAction", *_RULE_KEYS})
    if unknown:
        raise ValueError(f"the recorded networkAcls has unknown fields {unknown}")
    out: dict[str, Any] = {"defaultAction": "Allow"} if not acls else {}
    if acls:
        if str(acls.get("defaultAction")) not in ("Allow", "Deny"):
            raise ValueError("the recorded networkAcls.defaultAction is neither Allow nor Deny")
        out["defaultAction"] = acls["defaultAction"]
        bypass = acls.get("bypass")
        if bypass is not None:
            if not (isinstance(bypass, str) and _BYPASS.fullmatch(bypass)):
                raise ValueError("the recorded networkAcls.bypass is not a bypass Azure takes")
            out["bypass"] = bypass
    for key, (fields, valid) in _RULE_KEYS.items():
        rules = acls.get(key)
        if rules is None:
            continue
        if not isinstance(rules, list) or not all(
            isinstance(r, Mapping) and set(r) <= fields and valid(r) and r.get("action", "Allow") == "Allow"
            for r in rules
        ):
            raise ValueError(f"the recorded networkAcls.{key} are not {key} Azure takes")
        out[key] = [{k: r[k] for k in sorted(fields - {"state"}) if k in r} for r in rules]
    props: dict[str, Any] = {"networkAcls": out}
    access = before.get("publicNetworkAccess")
    if access is not None:
        if access not in PUBLIC_NETWORK_ACCESS:
            known = ", ".join(PUBLIC_NETWORK_ACCESS)
            raise ValueError(f"the recorded publicNetworkAccess is not one of {known}")
        props["publicNetworkAccess"] = access
    return props


def same_network(state: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Do two readings of an account's network state (networkAcls, publicNetworkAccess) let in the same
    requests? Rule order, case of ids and a virtual network rule's provisioning state do not count."""
    return _network_key(state) == _network_key(other)


def _network_key(state: Mapping[str, Any]) -> tuple[Any, ...]:
    raw = state.get("networkAcls")
    acls: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    bypass = sorted(p.strip().lower() for p in str(acls.get("bypass") or "AzureServices").split(","))
    return (
        str(state.get("publicNetworkAccess") or "").lower(),
        str(acls.get("defaultAction") or "Allow").lower(),
        tuple(bypass),
        tuple(sorted(str(r.get("value")) for r in _list(acls, "ipRules"))),
        tuple(sorted(str(r.get("value")).lower() for r in _list(acls, "ipv6Rules"))),
        tuple(sorted(str(r.get("id")).lower() for r in _list(acls, "virtualNetworkRules"))),
        tuple(
            sorted(
                (str(r.get("tenantId")).lower(), str(r.get("resourceId")).lower())
                for r in _list(acls, "resourceAccessRules")
            )
        ),
    )
