"""Pure core: parse, classify, plan. No I/O, no SDK; fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from responders.core.arm import parse_storage_id
from responders.core.classify import classify
from responders.core.model import AccountFacts, BadInput, ContainerFacts, Facts, PrincipalFacts, SignalKind
from responders.core.parse import detect_schema, incident_key, is_guid, parse_body, parse_item
from responders.core.plan import plan
from responders.core.policy import Policy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "azure"
SUB = "7d1f3c2a-5b9e-4c1d-9a8e-3f2b1c0d4e5a"
ACCOUNT = (
    f"/subscriptions/{SUB}/resourcegroups/rg-synth-prod/providers/microsoft.storage/storageaccounts/stsynth01"
)
NOW = "2026-11-25T08:10:00Z"
POLICY = Policy.from_dict(
    {
        "scope": {"allow": [f"/subscriptions/{SUB}"]},
        "responder": {"object_ids": ["0f6a2c1e-9d3b-4e55-8a61-5c2b7e9d1a00"]},
        "principals": {"allow": ["3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"]},
    }
)
SP = "3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"


def example(name: str) -> object:
    return json.loads((EXAMPLES / name).read_text())


def resource_event(
    operation: str,
    subject: str = ACCOUNT,
    caller: str = SP,
    ptype: str = "ServicePrincipal",
    status: str = "Succeeded",
) -> dict:
    return {
        "id": "11111111-2222-4333-8444-555555555555",
        "eventType": "Microsoft.Resources.ResourceActionSuccess",
        "subject": subject,
        "eventTime": "2026-11-25T08:00:00Z",
        "data": {
            "operationName": operation,
            "resourceUri": subject,
            "status": status,
            "authorization": {"evidence": {"principalType": ptype, "principalId": caller}},
            "claims": {
                "http://schemas.microsoft.com/identity/claims/objectidentifier": caller,
                "appid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b",
            },
        },
    }


def synthetic_account(
    public: bool | None = True, containers: tuple[ContainerFacts, ...] = (), **tags: str
) -> Facts:
    account = AccountFacts(
        id=ACCOUNT,
        tags={"data-classification": "synthetic", **tags},
        allow_blob_public_access=public,
        containers=containers or (ContainerFacts("data", "Container", {}),),
    )
    return Facts(accounts={ACCOUNT: account}, principals={SP: PrincipalFacts(SP, app_id="x")})


# parse -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "eventgrid_resource_write_success_storage_account_eventgridschema_docs.json",
        "eventgrid_resource_action_success_listkeys_eventhub_eventgridschema_docs.json",
        "eventgrid_resource_delete_success_storage_account_eventgridschema_docs.json",
        "eventgrid_blob_deleted_eventgridschema_docs.json",
        "azure_monitor_common_alert_schema_metric_sample_docs.json",
        "azure_monitor_common_alert_schema_activity_log_administrative_test_action_docs.json",
    ],
)
def test_microsofts_published_events_parse_without_error(name: str) -> None:
    body = json.dumps(example(name)).encode()
    for item in parse_body(body, now=NOW):
        signal = parse_item(item, now=NOW)
        assert signal.id
        # placeholders such as {subscription-id} are not resources we could ever act on
        assert all(parse_storage_id(a) for a in signal.accounts)


def test_a_subscription_id_that_is_not_a_guid_is_refused_with_a_reason() -> None:
    """The published dead-letter example's subscription is a placeholder of the wrong length: an id
    part that is not a GUID never reaches a request path; with a real subscription id it parses."""
    item = example("eventgrid_deadletter_blob_created_eventgridschema_docs.json")
    assert not is_guid(item["topic"].split("/")[2])
    with pytest.raises(BadInput, match="names no storage container"):
        parse_item(item, now=NOW)
    fixed = dict(item, topic=item["topic"].replace(item["topic"].split("/")[2], SUB))
    signal = parse_item(fixed, now=NOW)
    assert signal.source == "dead-letter"
    assert signal.containers[0][1] == "deadletter"


def test_blob_created_eventgrid_schema_names_container_and_blob() -> None:
    [item] = example("eventgrid_blob_created_eventgridschema_docs.json")
    item = dict(item, topic=ACCOUNT)
    signal = parse_item(item, now=NOW)
    assert signal.kind is SignalKind.BLOB_CREATED
    assert signal.containers == ((ACCOUNT, "test-container"),)
    assert signal.blob == "new-file.txt"


def test_blob_event_on_an_invalid_account_name_is_rejected() -> None:
    # Microsoft's CloudEvents sample uses "my-storage-account", which no real account can be named.
    [item] = example("eventgrid_blob_created_cloudevents_docs.json")
    with pytest.raises(BadInput, match="names no storage container"):
        parse_item(item, now=NOW)


def test_listkeys_event_names_account_and_service_principal_caller() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    assert signal.kind is SignalKind.KEYS_LISTED
    assert signal.accounts == (ACCOUNT,)
    assert signal.caller.object_id == SP
    assert signal.caller.principal_type == "ServicePrincipal"


def test_operation_names_compare_case_insensitively() -> None:
    signal = parse_item(resource_event("MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION"), now=NOW)
    assert signal.kind is SignalKind.KEYS_LISTED


def test_failed_operation_is_not_a_signal() -> None:
    signal = parse_item(
        resource_event("Microsoft.Storage/storageAccounts/listKeys/action", status="Failed"), now=NOW
    )
    assert signal.kind is SignalKind.OTHER
    assert "Failed" in signal.notes[0]


def test_sentinel_alert_entities_may_be_a_json_string() -> None:
    alert = {
        "SystemAlertId": "a1",
        "AlertDisplayName": "x",
        "Entities": json.dumps(
            [
                {"Type": "azure-resource", "ResourceId": ACCOUNT},
                {"Type": "account", "AadUserId": SP, "Name": "etl"},
                {"Type": "account", "Name": "display-name-only"},
            ]
        ),
    }
    signal = parse_item(alert, now=NOW)
    assert signal.accounts == (ACCOUNT,)
    assert signal.principals == (SP,)


def test_entities_are_mapped_by_immutable_id_never_by_name() -> None:
    alert = {
        "SystemAlertId": "a2",
        "Entities": [
            {"Type": "cloud-application", "Name": "etl-synth-exporter"},
            {"Type": "azure-resource", "ResourceId": "stsynth01"},
        ],
    }
    signal = parse_item(alert, now=NOW)
    assert signal.accounts == ()
    assert signal.apps == ()
    assert signal.principals == ()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[]", "empty"),
        (b"42", "JSON object"),
        (b'{"eventType": "Microsoft.Resources.ResourceWriteSuccess", "id": "x"}', "subject"),
        (b'{"hello": "world"}', "unrecognised payload"),
        (b'{"specversion": "0.3", "id": "x", "type": "t", "source": "s"}', "specversion"),
        (b'{"SystemAlertId": "a", "Entities": "{broken"}', "not JSON"),
        (b'{"resourceId": "stsynth01"}', "resourceId must be"),
        (b'{"eventType": "Microsoft.Storage.BlobCreated", "id": "x", "subject": "/nothing"}', "container"),
        (b'{"id": "x", "eventType": "t", "subject": "s", "data": {"n": NaN}}', "not valid JSON"),
        (b'{"id": "x", "eventType": "t", "subject": "s", "data": {"n": 1e400}}', "not valid JSON"),
        (b'{"id": "\xff"}', "not valid JSON"),
        (b'{"id": "\\ud800"}', "not valid JSON"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(body: bytes, reason: str) -> None:
    def parse_all() -> None:
        for item in parse_body(body, now=NOW):
            parse_item(item, now=NOW)

    with pytest.raises(BadInput, match=reason):
        parse_all()


def test_oversized_body_is_rejected() -> None:
    with pytest.raises(BadInput, match="larger than"):
        parse_body(b"[" + b" " * 2000 + b"]", now=NOW, max_bytes=1000)


def test_incident_key_is_stable_per_event_id() -> None:
    assert incident_key("ABC") == incident_key("abc")
    assert incident_key("abc") != incident_key("abd")


def test_every_sample_file_has_a_known_schema_or_is_malformed() -> None:
    for path in sorted((ROOT / "samples" / "events").glob("*.json")):
        try:
            items = parse_body(path.read_bytes(), now=NOW)
            schemas = [detect_schema(i) for i in items]
        except BadInput:
            assert "malformed" in path.name
            continue
        assert schemas, path.name


# classify ----------------------------------------------------------------------------------------
def test_public_synthetic_container_is_a_high_severity_leak() -> None:
    signal = parse_item(
        resource_event(
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            ACCOUNT + "/blobServices/default/containers/data",
        ),
        now=NOW,
    )
    verdict = classify(signal, synthetic_account(), POLICY)
    assert verdict.leak
    assert verdict.severity == "high"
    assert any("publicly readable" in r for r in verdict.reasons)


def test_missing_allow_blob_public_access_counts_as_allowed() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/write"), now=NOW)
    verdict = classify(signal, synthetic_account(public=None), POLICY)
    assert verdict.leak


def test_account_blocking_public_access_is_not_exposed() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/write"), now=NOW)
    verdict = classify(signal, synthetic_account(public=False), POLICY)
    assert not verdict.leak
    assert any("not publicly readable" in f for f in verdict.findings)


def test_provenance_raises_severity_to_critical() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = synthetic_account(
        **{"source-dataset-sensitivity": "personal", "privacy-guarantee": "none", "fidelity": "high"}
    )
    verdict = classify(signal, facts, POLICY)
    assert verdict.severity == "critical"
    assert any("no privacy guarantee" in r for r in verdict.reasons)


def test_non_synthetic_account_is_ignored_with_reason() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = Facts(accounts={ACCOUNT: AccountFacts(id=ACCOUNT, tags={"data-classification": "public"})})
    verdict = classify(signal, facts, POLICY)
    assert not verdict.leak
    assert any("no synthetic-data marker" in f for f in verdict.findings)


def test_own_identity_alone_is_not_an_echo_only_a_recorded_write_is() -> None:
    event = resource_event(
        "Microsoft.Storage/storageAccounts/write", caller="0f6a2c1e-9d3b-4e55-8a61-5c2b7e9d1a00"
    )
    signal = parse_item(event, now=NOW)
    verdict = classify(signal, synthetic_account(), POLICY)
    assert verdict.leak, "a change made with our identity but not recorded as ours is judged in full"
    assert any("responder's own identity" in f for f in verdict.findings)
    why = "echo of the responder's own write in incident x"
    echo = classify(signal, synthetic_account(), POLICY, echo=why)
    assert not echo.leak
    assert echo.reasons == (why,)


def test_exempt_and_out_of_scope_accounts_are_blocked() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    exempt = classify(signal, synthetic_account(**{"leak-responder-exempt": "true"}), POLICY)
    assert "exempt" in exempt.blocked[ACCOUNT]
    narrow = Policy.from_dict({"scope": {"allow": [f"/subscriptions/{SUB}/resourceGroups/other"]}})
    assert "outside" in classify(signal, synthetic_account(), narrow).blocked[ACCOUNT]
    nothing = Policy.from_dict({})
    assert "outside" in classify(signal, synthetic_account(), nothing).blocked[ACCOUNT]


# plan --------------------------------------------------------------------------------------------
def test_keys_listed_plan_rotates_both_keys_in_order_and_disables_the_app() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = synthetic_account()
    p = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    kinds = [(a.kind, dict(a.params)) for a in p.actions]
    assert kinds == [
        ("storage.regenerate_key", {"key_name": "key1"}),
        ("storage.regenerate_key", {"key_name": "key2"}),
        ("storage.revoke_user_delegation_keys", {}),
        ("identity.disable_service_principal", {}),
    ]
    assert p.actions[1].after == (p.actions[0].key,)
    assert p.actions[3].target == SP
    assert not p.actions[0].reversible
    assert p.actions[3].reversible


def test_public_exposure_plan_closes_account_and_each_public_container() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/write"), now=NOW)
    containers = (ContainerFacts("a", "Blob"), ContainerFacts("b", "None"), ContainerFacts("c", "Container"))
    facts = synthetic_account(containers=containers)
    p = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    assert [(a.kind, a.params.get("container")) for a in p.actions] == [
        ("storage.disable_public_access", None),
        ("storage.make_container_private", "a"),
        ("storage.make_container_private", "c"),
    ]


def test_plan_is_deterministic_for_a_redelivered_event() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = synthetic_account()
    first = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    again = plan(
        parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now="later"),
        facts,
        classify(signal, facts, POLICY),
        POLICY,
    )
    assert [a.key for a in first.actions] == [a.key for a in again.actions]
    assert first.incident == again.incident


def test_blocked_accounts_produce_no_actions_only_skips() -> None:
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = synthetic_account(**{"leak-responder-exempt": "true"})
    p = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    assert p.actions == ()
    assert p.skipped[0][0] == ACCOUNT


def test_approval_mode_comes_from_policy() -> None:
    policy = Policy.from_dict({"scope": {"allow": ["*"]}, "approval": {"storage.regenerate_key": "approval"}})
    signal = parse_item(resource_event("Microsoft.Storage/storageAccounts/listKeys/action"), now=NOW)
    facts = synthetic_account()
    p = plan(signal, facts, classify(signal, facts, policy), policy)
    assert {a.kind: a.mode for a in p.actions}["storage.regenerate_key"] == "approval"
    assert {a.kind: a.mode for a in p.actions}["storage.revoke_user_delegation_keys"] == "auto"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"scope": {"allow": ["subscriptions/x"]}}, "ARM id prefix"),
        ({"approval": {"storage.delete_everything": "auto"}}, "unknown action"),
        ({"approval": {"storage.regenerate_key": "maybe"}}, "must be one of"),
        ({"synthetic": {"name_patterns": ["("]}}, "bad name pattern"),
        ({"colour": "blue"}, "unknown keys"),
    ],
)
def test_policy_errors_name_the_problem(doc: dict, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        Policy.from_dict(doc)


def test_shipped_policies_are_valid() -> None:
    import yaml

    for path in (ROOT / "policy.yaml", ROOT / "samples" / "policy.yaml"):
        Policy.from_dict(yaml.safe_load(path.read_text()))


def test_core_imports_no_azure_sdk() -> None:
    import ast

    for path in (ROOT / "responders" / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert not name.startswith(("azure", "msgraph", "kiota")), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("access", "kinds", "skip"),
    [
        (
            None,
            ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
            "",
        ),
        (
            {"SAS": 2},
            ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
            "",
        ),
        # OAuth on the storage endpoint: the network step (approval) cuts tokens already issued
        (
            {"AccountKey": 1, "OAuth": 3},
            ["storage.regenerate_key", "storage.regenerate_key", "storage.restrict_network"],
            "",
        ),
        ({"Anonymous": 5}, [], "the storage logs show Anonymous"),
        ({}, [], "the storage logs show no access at all"),
    ],
)
def test_alerts_rotate_keys_only_when_the_logs_show_key_or_sas_access(access, kinds, skip) -> None:
    alert = {
        "SystemAlertId": "a3",
        "AlertDisplayName": "reads",
        "Entities": [{"Type": "azure-resource", "ResourceId": ACCOUNT}],
    }
    signal = parse_item(alert, now=NOW)
    base = synthetic_account(public=False, containers=(ContainerFacts("data", "None"),))
    facts = Facts(
        accounts=base.accounts, principals=base.principals, access={} if access is None else {ACCOUNT: access}
    )
    p = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    assert [a.kind for a in p.actions] == kinds
    if skip:
        assert any(skip in why for _, why in p.skipped)


@pytest.mark.parametrize(
    ("mode", "access", "kinds", "skip"),
    [
        (
            "always",
            {"Anonymous": 5},
            ["storage.regenerate_key", "storage.regenerate_key", "storage.revoke_user_delegation_keys"],
            "",
        ),
        ("never", {"SAS": 2}, [], "policy alerts.revoke_credentials is never"),
        ("never", None, [], "policy alerts.revoke_credentials is never"),
        ("evidence", {"Anonymous": 5}, [], "the storage logs show Anonymous"),
    ],
)
def test_policy_decides_whether_alerts_revoke_credentials(mode, access, kinds, skip) -> None:
    policy = Policy.from_dict(
        {"scope": {"allow": [f"/subscriptions/{SUB}"]}, "alerts": {"revoke_credentials": mode}}
    )
    alert = {
        "SystemAlertId": "a4",
        "AlertDisplayName": "reads",
        "Entities": [{"Type": "azure-resource", "ResourceId": ACCOUNT}],
    }
    signal = parse_item(alert, now=NOW)
    base = synthetic_account(public=False, containers=(ContainerFacts("data", "None"),))
    facts = Facts(accounts=base.accounts, access={} if access is None else {ACCOUNT: access})
    p = plan(signal, facts, classify(signal, facts, policy), policy)
    assert [a.kind for a in p.actions] == kinds
    assert (not skip) or any(skip in why for _, why in p.skipped)
    assert p.verdict.leak


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"alerts": {"revoke_credentials": "sometimes"}}, "revoke_credentials must be one of"),
        ({"alerts": {"rotate": "always"}}, "alerts may only hold"),
        ({"disable_principals": "no"}, "disable_principals must be true or false"),
        ({"principals": {"allow": ["etl-synth-exporter"]}}, "principals.allow must list"),
        ({"principals": {"deny": []}}, "principals may only hold allow"),
        ({"dedupe_window_seconds": True}, "non-negative integer"),
    ],
)
def test_policy_rejects_bad_alert_and_switch_settings(doc: dict, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        Policy.from_dict(doc)
