"""Posture findings: what makes an exposure likely or invisible on a synthetic-data account, each with a
severity and the owner from its tags. Reported, never acted on. The checks are pure; the reads use the
real storage SDK and Resource Manager pipeline against the simulated tenant."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rehearsal.simulator import Simulator
from responders.clients import Clients
from responders.core.model import BadInput, ContainerFacts
from responders.core.policy import Policy
from responders.core.posture import AccountPosture, assess, owner_of
from responders.posture import blob_diagnostic_settings, finished_principals, read_posture
from responders.settings import Settings
from tests.simulator_fixtures import ARM_ACCOUNT, SUB, example, make_tenant

WORKSPACE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-secops/providers/Microsoft.OperationalInsights/workspaces/law"
)
POLICY = Policy.from_dict({"scope": {"allow": ["*"]}})
FINISHED_SP = "5c4d3e2f-1a0b-4c9d-8e7f-6a5b4c3d2e1f"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_LOGS = [{"category": c, "enabled": True} for c in ("StorageRead", "StorageWrite", "StorageDelete")]


def synthetic(name: str, **properties: Any) -> AccountPosture:
    return AccountPosture(
        id=f"{ARM_ACCOUNT}/{name}",
        tags={"data-classification": "synthetic", "owner": "data-team@contoso.example"},
        properties=properties,
        containers=(ContainerFacts("data", "None"),),
        diagnostics=({"properties": {"workspaceId": WORKSPACE, "logs": BLOB_LOGS}},),
        role_assignments=(),
    )


HARDENED = {
    "allowBlobPublicAccess": False,
    "allowSharedKeyAccess": False,
    "publicNetworkAccess": "Disabled",
}


def kinds(account: AccountPosture, **kwargs: Any) -> set[str]:
    found = assess([account], POLICY, evidence_workspace=WORKSPACE, **kwargs)
    return {f.kind for f in found.findings}


def test_a_hardened_synthetic_account_has_no_findings() -> None:
    assert kinds(synthetic("sthard", **HARDENED)) == set()


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"allowSharedKeyAccess": True}, "shared-key-access"),
        ({"allowSharedKeyAccess": None}, "shared-key-access"),  # absent means allowed
        ({"publicNetworkAccess": "Enabled"}, "public-network-no-rules"),
        ({"publicNetworkAccess": None}, "public-network-no-rules"),
        ({"allowBlobPublicAccess": None}, "public-access-allowed"),
    ],
)
def test_each_property_check_finds_what_it_names(change: dict[str, Any], kind: str) -> None:
    props = {k: v for k, v in {**HARDENED, **change}.items() if v is not None}
    assert kind in kinds(synthetic("stone", **props))


def test_no_sas_policy_is_a_finding_only_while_keys_can_sign_a_sas() -> None:
    open_keys = {**HARDENED, "allowSharedKeyAccess": True}
    assert "no-sas-expiration-policy" in kinds(synthetic("stsas", **open_keys))
    policy = {"sasExpirationPeriod": "1.00:00:00", "expirationAction": "Log"}
    assert "no-sas-expiration-policy" not in kinds(synthetic("stsas", **open_keys, sasPolicy=policy))
    assert "no-sas-expiration-policy" not in kinds(synthetic("stsas", **HARDENED))


def test_network_rules_or_a_deny_default_close_the_network_finding() -> None:
    rules = {"defaultAction": "Allow", "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}]}
    base = {**HARDENED, "publicNetworkAccess": "Enabled"}
    assert "public-network-no-rules" not in kinds(synthetic("stnet", **base, networkAcls=rules))
    assert "public-network-no-rules" not in kinds(
        synthetic("stnet", **base, networkAcls={"defaultAction": "Deny"})
    )
    assert "public-network-no-rules" in kinds(
        synthetic("stnet", **base, networkAcls={"defaultAction": "Allow"})
    )


def test_blob_logs_must_reach_the_evidence_workspace_in_every_category() -> None:
    account = synthetic("stlogs", **HARDENED)
    other = copy.deepcopy(WORKSPACE).replace("/law", "/law-other")
    cases = {
        "elsewhere": ({"properties": {"workspaceId": other, "logs": BLOB_LOGS}},),
        "reads missing": ({"properties": {"workspaceId": WORKSPACE, "logs": BLOB_LOGS[1:]}},),
        "disabled": (
            {
                "properties": {
                    "workspaceId": WORKSPACE.upper(),
                    "logs": [{**e, "enabled": False} for e in BLOB_LOGS],
                }
            },
        ),
        "none": (),
    }
    for why, settings in cases.items():
        assert "no-blob-logs" in kinds(AccountPosture(**{**account.__dict__, "diagnostics": settings})), why
    grouped = (
        {
            "properties": {
                "workspaceId": WORKSPACE.upper(),
                "logs": [{"categoryGroup": "allLogs", "enabled": True}],
            }
        },
    )
    assert "no-blob-logs" not in kinds(AccountPosture(**{**account.__dict__, "diagnostics": grouped}))


def test_a_check_that_could_not_be_made_is_unevaluated_not_passed() -> None:
    account = AccountPosture(**{**synthetic("stblind", **HARDENED).__dict__, "diagnostics": None})
    found = assess([account], POLICY, evidence_workspace=WORKSPACE, finished_principals={})
    assert "no-blob-logs" not in {f.kind for f in found.findings}
    assert ("no-blob-logs", account.id) in found.unevaluated


def test_a_web_container_and_a_finished_principal_holding_a_data_role_are_found() -> None:
    account = AccountPosture(
        **{
            **synthetic("stweb", **HARDENED).__dict__,
            "containers": (ContainerFacts("$web", "None"), ContainerFacts("data", "None")),
            "role_assignments": (
                {
                    "properties": {
                        "principalId": FINISHED_SP,
                        "roleDefinitionId": f"/x/roleDefinitions/{READER}",
                        "scope": f"/subscriptions/{SUB}",
                    }
                },
                {
                    "properties": {
                        "principalId": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
                        "roleDefinitionId": f"/x/roleDefinitions/{READER}",
                    }
                },
            ),
        }
    )
    found = assess(
        [account], POLICY, evidence_workspace=WORKSPACE, finished_principals={FINISHED_SP.upper(): "tagged"}
    )
    by_kind = {f.kind: f for f in found.findings}
    assert set(by_kind) == {"static-website-container", "finished-principal-data-role"}
    assert by_kind["static-website-container"].resource.endswith("/containers/$web")
    assert FINISHED_SP in by_kind["finished-principal-data-role"].summary
    assert "Storage Blob Data Reader" in by_kind["finished-principal-data-role"].summary


def test_findings_carry_the_owner_and_a_severity_raised_by_provenance() -> None:
    plain = synthetic("stplain", **{**HARDENED, "allowSharedKeyAccess": True})
    personal = AccountPosture(
        **{
            **plain.__dict__,
            "id": f"{ARM_ACCOUNT}/stpersonal",
            "tags": {**plain.tags, "source-dataset-sensitivity": "personal", "privacy-guarantee": "none"},
        }
    )
    found = assess([plain, personal], POLICY, evidence_workspace=WORKSPACE).findings
    shared = {f.account.rsplit("/", 1)[-1]: f for f in found if f.kind == "shared-key-access"}
    assert shared["stplain"].severity == "medium"
    assert shared["stpersonal"].severity == "critical"
    assert shared["stpersonal"].risk > shared["stplain"].risk
    assert found[0].account.endswith("stpersonal"), "ranked by risk"
    assert {f.owner for f in found} == {"data-team@contoso.example"}


def test_the_owner_tag_is_configurable_and_a_missing_one_is_unassigned() -> None:
    policy = Policy.from_dict({"review": {"owner_tags": ["Cost-Center", "owner"]}})
    assert owner_of({"owner": "a", "cost-center": "cc-7"}, policy) == "cc-7"
    assert owner_of({"owner": " "}, policy) == "unassigned"
    with pytest.raises(BadInput, match="review"):
        Policy.from_dict({"review": {"owner_tag": "x"}})
    with pytest.raises(BadInput, match="owner_tags"):
        Policy.from_dict({"review": {"owner_tags": "owner"}})


def test_an_account_no_marker_calls_synthetic_gives_nothing() -> None:
    account = AccountPosture(id=f"{ARM_ACCOUNT}/stplainapp", tags={}, properties={}, containers=())
    assert assess([account], POLICY, evidence_workspace=WORKSPACE).findings == ()


# --- read from the simulated tenant ----------------------------------------------------------------


def posture_tenant() -> dict[str, Any]:
    tenant = make_tenant()
    tenant["storageAccounts"] += [
        {
            "id": f"{ARM_ACCOUNT}/stsynthopen05",
            "tags": {"data-classification": "synthetic", "owner": "ml-platform@contoso.example"},
            "allowBlobPublicAccess": False,
            "containers": [{"name": "$web"}, {"name": "train"}],
            "diagnosticSettings": [
                {
                    "name": "to-elsewhere",
                    "properties": {"workspaceId": WORKSPACE + "-other", "logs": BLOB_LOGS},
                }
            ],
        },
        {
            "id": f"{ARM_ACCOUNT}/stsynthshut06",
            "tags": {"data-classification": "synthetic", "owner": "ml-platform@contoso.example"},
            "allowBlobPublicAccess": False,
            "allowSharedKeyAccess": False,
            "networkAcls": {
                "bypass": "AzureServices",
                "defaultAction": "Deny",
                "ipRules": [],
                "virtualNetworkRules": [],
            },
            "containers": [{"name": "train"}],
            "diagnosticSettings": [
                {"name": "evidence", "properties": {"workspaceId": WORKSPACE, "logs": BLOB_LOGS}}
            ],
        },
    ]
    tenant["servicePrincipals"].append(
        {
            "id": FINISHED_SP,
            "appId": "6b5a4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
            "displayName": "train-job-7",
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "tags": ["lifecycle:finished"],
        }
    )
    tenant["roleAssignments"] = [
        {
            "name": "7f3e2d1c-0b9a-4877-8665-544332211000",
            "scope": f"{ARM_ACCOUNT}/stsynthopen05",
            "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
            + READER,
            "principalId": FINISHED_SP,
            "principalType": "ServicePrincipal",
        }
    ]
    return tenant


@pytest.fixture(name="clients")
def clients_fixture(monkeypatch: pytest.MonkeyPatch) -> Any:
    with Simulator(posture_tenant()) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        settings = Settings.from_env(
            {
                "RESPONDER_ARM_ENDPOINT": sim.url,
                "RESPONDER_LEDGER_ENDPOINT": "https://127.0.0.1:1",
                "RESPONDER_POLICY": '{"scope": {"allow": ["*"]}}',
            }
        )
        made = Clients(settings)
        made.sim = sim  # type: ignore[attr-defined]
        yield made
        made.close()


def test_posture_read_from_the_tenant_with_the_real_clients(clients: Any) -> None:
    sim = clients.sim
    accounts = [
        read_posture(clients, f"{ARM_ACCOUNT}/{name}", roles=True)
        for name in ("stsynthopen05", "stsynthshut06", "stlocked02")
    ]
    finished = finished_principals(
        sim.state.snapshot()["servicePrincipals"].values(), POLICY.finished_principal_tags
    )
    assert finished == {FINISHED_SP: "tagged lifecycle:finished"}
    found = assess(accounts, POLICY, evidence_workspace=WORKSPACE, finished_principals=finished)
    by_account: dict[str, set[str]] = {}
    for f in found.findings:
        by_account.setdefault(f.account.rsplit("/", 1)[-1], set()).add(f.kind)
    assert by_account == {
        "stsynthopen05": {
            "shared-key-access",
            "no-sas-expiration-policy",
            "public-network-no-rules",
            "static-website-container",
            "no-blob-logs",
            "finished-principal-data-role",
        }
    }, by_account
    assert found.unevaluated == ()
    assert {f.owner for f in found.findings} == {"ml-platform@contoso.example"}
    assert all(r["method"] == "GET" for r in sim.requests() if not r["path"].startswith("/msi/"))


def test_diagnostic_settings_come_back_in_the_published_shape(clients: Any) -> None:
    [setting] = blob_diagnostic_settings(clients, f"{ARM_ACCOUNT}/stsynthshut06")
    published = example("arm_diagnostic_settings_list_example.json")["responses"]["200"]["body"]["value"][0]
    assert set(setting) == set(published)
    assert setting["type"] == published["type"]
    assert setting["id"].endswith(
        "/blobServices/default/providers/microsoft.insights/diagnosticSettings/evidence"
    )
    assert {"workspaceId", "logs", "metrics"} <= set(setting["properties"])


def test_posture_reads_refuse_an_id_that_is_not_a_storage_account(clients: Any) -> None:
    for bad in (
        f"{ARM_ACCOUNT}/st?api-version=1",
        f"{ARM_ACCOUNT}/stx/blobServices/default/containers/c",
        "/x",
    ):
        with pytest.raises(ValueError, match="not a storage account id"):
            read_posture(clients, bad)
