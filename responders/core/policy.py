"""The policy a security team writes: what marks synthetic data, what raises severity, where we may act."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from responders.core.catalogue import ACTION_KINDS, CATALOGUE, GRAPH_PERMISSIONS
from responders.core.model import BadInput
from responders.core.network import TrustedNetwork, trusted_from_policy
from responders.core.parse import is_guid
from responders.core.paths import DEFAULT_STEPS, PATHS

APPROVAL_MODES = ("auto", "approval")
# When an alert names a synthetic account: rotate its keys and revoke its user-delegation keys only
# when the storage logs show key or SAS access (or cannot be read), always, or never (humans decide).
ALERT_CREDENTIAL_MODES = ("evidence", "always", "never")
# a management group scope: its subscriptions are learned at run time (Resource Graph), see in_scope
MANAGEMENT_GROUP = re.compile(r"^/providers/microsoft\.management/managementgroups/([\w.()-]{1,90})$")


def _lower_values(raw: Mapping[str, Any], what: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise BadInput(f"policy: {what} must be a mapping of name -> list of values")
    out: dict[str, tuple[str, ...]] = {}
    for key, values in raw.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadInput(f"policy: {what}.{key} must be a string or a list of strings")
        out[str(key).lower()] = tuple(v.lower() for v in values)
    return out


def _paths(raw: Any) -> dict[str, tuple[str, ...]]:
    """The path -> steps table: the defaults, with the rows the policy gives replacing theirs."""
    table = dict(DEFAULT_STEPS)
    if raw is None:
        return table
    if not isinstance(raw, Mapping):
        raise BadInput("policy: paths must be a mapping of access path -> list of actions")
    for name, kinds in raw.items():
        if name not in PATHS:
            raise BadInput(f"policy: paths names unknown access path {name!r}; known: {', '.join(PATHS)}")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise BadInput(f"policy: paths.{name} must be a list of action names")
        for kind in kinds:
            if kind not in ACTION_KINDS:
                raise BadInput(f"policy: paths.{name} names unknown action {kind!r}")
        table[name] = tuple(dict.fromkeys(kinds))
    return table


def _default_approval() -> dict[str, str]:
    """Each action's default mode, as its catalogue entry declares it."""
    return {kind: spec.approval for kind, spec in CATALOGUE.items()}


@dataclass(frozen=True)
class Policy:
    """Validated policy; build it with `Policy.from_dict` so a typo fails at start, not mid-incident."""

    synthetic_tags: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"data-classification": ("synthetic",)}
    )
    synthetic_metadata: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"data_classification": ("synthetic",)}
    )
    name_patterns: tuple[str, ...] = ()
    exempt_tag: str = "leak-responder-exempt"
    allowed_scopes: tuple[str, ...] = ()
    # service principals (object or application ids, or "*") the responder may disable; empty: none
    principal_scope: tuple[str, ...] = ()
    responder_object_ids: tuple[str, ...] = ()
    sensitive_sources: tuple[str, ...] = ("personal", "special-category", "health")
    sensitivity_tag: str = "source-dataset-sensitivity"
    guarantee_tag: str = "privacy-guarantee"
    fidelity_tag: str = "fidelity"
    approval: Mapping[str, str] = field(default_factory=_default_approval)
    # access path -> the actions that cut it (core.paths; README "Which path, which step")
    paths: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_STEPS))
    disable_principals: bool = True
    dedupe_window_seconds: int = 900
    alert_credentials: str = "evidence"
    # the Graph application permission the responder holds: with OwnedBy it may disable only the
    # service principals it owns, so the plan skips the others (with the reason) before any call
    graph_permission: str = "Application.ReadWrite.All"
    # the network rules storage.restrict_network keeps (and writes): every other rule is removed
    network_trusted: TrustedNetwork = field(default_factory=TrustedNetwork)
    # the subscriptions found under the management groups in `allowed_scopes` (lower case), filled in
    # at run time by `with_members`; until then a management group scope allows nothing
    member_subscriptions: frozenset[str] = frozenset()
    # the control review: the tags that name a resource's owner (the first present wins), and the
    # service principal tags that mark a principal whose job is done
    owner_tags: tuple[str, ...] = ("owner", "owners", "contact")
    finished_principal_tags: tuple[str, ...] = ("lifecycle:finished",)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Policy:
        """Validate a policy document (parsed YAML or JSON); unknown keys are errors, not ignored."""
        if not isinstance(raw, Mapping):
            raise BadInput("policy: the document must be a mapping")
        known = {
            "synthetic",
            "provenance",
            "scope",
            "exemptions",
            "responder",
            "approval",
            "disable_principals",
            "dedupe_window_seconds",
            "alerts",
            "principals",
            "network",
            "paths",
            "review",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadInput(f"policy: unknown keys {unknown}; expected some of {sorted(known)}")
        syn = raw.get("synthetic", {}) or {}
        prov = raw.get("provenance", {}) or {}
        scope = raw.get("scope", {}) or {}
        exem = raw.get("exemptions", {}) or {}
        resp = raw.get("responder", {}) or {}
        approval = _default_approval()
        for kind, mode in (raw.get("approval", {}) or {}).items():
            if kind not in ACTION_KINDS:
                raise BadInput(f"policy: approval names unknown action {kind!r}")
            if mode not in APPROVAL_MODES:
                raise BadInput(f"policy: approval.{kind} must be one of {APPROVAL_MODES}")
            approval[kind] = mode
        patterns = tuple(syn.get("name_patterns", []) or [])
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise BadInput(f"policy: bad name pattern {pattern!r}: {exc}") from exc
        scopes = tuple(s.rstrip("/").lower() for s in scope.get("allow", []) or [])
        for s in scopes:
            if s != "*" and not s.startswith("/subscriptions/") and not MANAGEMENT_GROUP.match(s):
                raise BadInput(
                    f"policy: scope {s!r} must be '*', an ARM id prefix or "
                    "/providers/Microsoft.Management/managementGroups/<name>"
                )
        principals = raw.get("principals", {}) or {}
        if not isinstance(principals, Mapping) or set(principals) - {"allow"}:
            raise BadInput("policy: principals may only hold allow")
        allowed = principals.get("allow", []) or []
        if not isinstance(allowed, list) or not all(
            isinstance(p, str) and (p == "*" or is_guid(p)) for p in allowed
        ):
            raise BadInput("policy: principals.allow must list service principal object or app ids, or '*'")
        window = raw.get("dedupe_window_seconds", 900)
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise BadInput("policy: dedupe_window_seconds must be a non-negative integer")
        disable = raw.get("disable_principals", True)
        if not isinstance(disable, bool):
            raise BadInput("policy: disable_principals must be true or false")
        alerts = raw.get("alerts", {}) or {}
        if not isinstance(alerts, Mapping) or set(alerts) - {"revoke_credentials"}:
            raise BadInput("policy: alerts may only hold revoke_credentials")
        credentials = alerts.get("revoke_credentials", "evidence")
        if credentials not in ALERT_CREDENTIAL_MODES:
            raise BadInput(f"policy: alerts.revoke_credentials must be one of {ALERT_CREDENTIAL_MODES}")
        network = raw.get("network", {}) or {}
        if not isinstance(network, Mapping) or set(network) - {"trusted"}:
            raise BadInput("policy: network may only hold trusted")
        trusted = trusted_from_policy(network.get("trusted"))
        review = raw.get("review", {}) or {}
        if not isinstance(review, Mapping) or set(review) - {"owner_tags", "finished_principal_tags"}:
            raise BadInput("policy: review may only hold owner_tags and finished_principal_tags")
        owner_tags = review.get("owner_tags", list(cls.owner_tags))
        finished_tags = review.get("finished_principal_tags", list(cls.finished_principal_tags))
        for name, value in (("owner_tags", owner_tags), ("finished_principal_tags", finished_tags)):
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise BadInput(f"policy: review.{name} must be a list of non-empty strings")
        permission = resp.get("graph_permission", cls.graph_permission)
        if permission not in GRAPH_PERMISSIONS:
            raise BadInput(f"policy: responder.graph_permission must be one of {GRAPH_PERMISSIONS}")
        return cls(
            owner_tags=tuple(t.strip().lower() for t in owner_tags),
            finished_principal_tags=tuple(t.strip().lower() for t in finished_tags),
            graph_permission=permission,
            network_trusted=trusted,
            synthetic_tags=_lower_values(
                syn.get("tags", {"data-classification": ["synthetic"]}), "synthetic.tags"
            ),
            synthetic_metadata=_lower_values(
                syn.get("metadata", {"data_classification": ["synthetic"]}), "synthetic.metadata"
            ),
            name_patterns=patterns,
            exempt_tag=str(exem.get("tag", "leak-responder-exempt")).lower(),
            allowed_scopes=scopes,
            principal_scope=tuple(p.lower() for p in allowed),
            responder_object_ids=tuple(str(x).lower() for x in resp.get("object_ids", []) or []),
            sensitive_sources=tuple(
                str(x).lower() for x in prov.get("sensitive_sources", cls.sensitive_sources)
            ),
            sensitivity_tag=str(prov.get("sensitivity_tag", cls.sensitivity_tag)).lower(),
            guarantee_tag=str(prov.get("guarantee_tag", cls.guarantee_tag)).lower(),
            fidelity_tag=str(prov.get("fidelity_tag", cls.fidelity_tag)).lower(),
            approval=approval,
            paths=_paths(raw.get("paths")),
            disable_principals=disable,
            dedupe_window_seconds=window,
            alert_credentials=credentials,
        )

    def with_responder(self, object_id: str) -> Policy:
        """Add our own identity so the echo of our writes is recognised."""
        if not object_id or object_id.lower() in self.responder_object_ids:
            return self
        ids = (*self.responder_object_ids, object_id.lower())
        return Policy(**{**self.__dict__, "responder_object_ids": ids})

    @property
    def management_groups(self) -> tuple[str, ...]:
        """The management group names the allow-list names (lower case)."""
        return tuple(m[1] for s in self.allowed_scopes if (m := MANAGEMENT_GROUP.match(s)))

    def with_members(self, subscriptions: frozenset[str]) -> Policy:
        """The policy with the subscriptions its management groups hold now."""
        members = frozenset(s.lower() for s in subscriptions)
        if members == self.member_subscriptions:
            return self
        return Policy(**{**self.__dict__, "member_subscriptions": members})

    def principal_in_scope(self, object_id: str, app_id: str = "") -> bool:
        """Principal allow-list on object or application ids; an empty list allows none."""
        ids = {object_id.lower(), app_id.lower()} - {""}
        return any(p == "*" or p in ids for p in self.principal_scope)

    def in_scope(self, resource_id: str) -> bool:
        """Scope allow-list on ARM id prefixes; an empty list allows nothing (safe by default)."""
        rid = resource_id.lower()
        if any(s == "*" or rid == s or rid.startswith(s + "/") for s in self.allowed_scopes):
            return True
        parts = rid.split("/", 3)
        return len(parts) > 2 and parts[1] == "subscriptions" and parts[2] in self.member_subscriptions
