"""Deployment as code: the custom role grants exactly what the code calls, and the wiring matches.

The role check is the point of this file. The action catalogue (responders/core/catalogue.py)
declares the ARM actions each step and the fact gathering need; the "Synthetic Leak Responder"
role in infra/ must list exactly their union, and every `<expr>.storage_accounts.<method>` and
`<expr>.blob_containers.<method>` in responders/, mapped to the ARM action it needs, must add up
to the same set. Adding an SDK call without declaring it (or the other way round) fails here, and a
method name missing from SDK_ACTIONS fails too, so nobody adds an operation without deciding its action.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from responders.core.catalogue import POSTURE_ARM_ACTIONS, ROLE_ASSIGNMENTS, arm_actions, restore_arm_actions
from responders.core.parse import OPERATIONS

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
SOURCE = ROOT / "responders"

SA = "Microsoft.Storage/storageAccounts"
CONTAINERS = f"{SA}/blobServices/containers"

# (operation group, method) -> ARM action (azure-mgmt-storage 25.x method names).
SDK_ACTIONS: dict[tuple[str, str], str] = {
    ("storage_accounts", "get_properties"): f"{SA}/read",
    ("storage_accounts", "list"): f"{SA}/read",
    ("storage_accounts", "list_by_resource_group"): f"{SA}/read",
    ("storage_accounts", "update"): f"{SA}/write",
    ("storage_accounts", "regenerate_key"): f"{SA}/regeneratekey/action",
    ("storage_accounts", "revoke_user_delegation_keys"): f"{SA}/revokeUserDelegationKeys/action",
    ("storage_accounts", "list_keys"): f"{SA}/listkeys/action",
    ("storage_accounts", "list_account_sas"): f"{SA}/ListAccountSas/action",
    ("storage_accounts", "list_service_sas"): f"{SA}/listServiceSas/action",
    ("blob_containers", "list"): f"{CONTAINERS}/read",
    ("blob_containers", "get"): f"{CONTAINERS}/read",
    ("blob_containers", "update"): f"{CONTAINERS}/write",
    ("blob_containers", "create"): f"{CONTAINERS}/write",
    # azure-mgmt-authorization 4.x
    ("role_assignments", "list_for_scope"): f"{ROLE_ASSIGNMENTS}/read",
    ("role_assignments", "get"): f"{ROLE_ASSIGNMENTS}/read",
    ("role_assignments", "delete"): f"{ROLE_ASSIGNMENTS}/delete",
    ("role_assignments", "create"): f"{ROLE_ASSIGNMENTS}/write",
}
GROUPS = frozenset(group for group, _ in SDK_ACTIONS)

# Actions the responder must never hold: each one mints or reveals a credential, or grants any role
# to anyone (the responder itself included).
FORBIDDEN = frozenset(
    a.lower()
    for a in (
        f"{SA}/listkeys/action",
        f"{SA}/ListAccountSas/action",
        f"{SA}/listServiceSas/action",
        f"{ROLE_ASSIGNMENTS}/write",
        "Microsoft.Authorization/roleDefinitions/write",
    )
)

RISKY_OPERATIONS = [
    f"{SA}/write",
    f"{CONTAINERS}/write",
    f"{SA}/listKeys/action",
    f"{SA}/ListAccountSas/action",
    f"{SA}/listServiceSas/action",
]


# --- reading Bicep without the bicep CLI ---------------------------------------------------


def strip_comments(text: str) -> str:
    """Blank out // and /* */ comments, leaving strings ('...' and '''...''') intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def balanced(text: str, start: int) -> str:
    """The bracketed block opening at text[start] ('{' or '['), strings respected."""
    pairs = {"{": "}", "[": "]"}
    opening = text[start]
    assert opening in pairs, f"expected a bracket at {start}, found {opening!r}"
    depth, i, in_string = 0, start, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == "'":
                in_string = False
        elif ch == "'":
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    raise AssertionError(f"unbalanced {opening} at offset {start}")


def string_items(array_block: str, where: str) -> list[str]:
    """The string literals of a Bicep array literal; anything else in it is an error."""
    inner = array_block[1:-1]
    items = re.findall(r"'((?:[^'\\]|\\.)*)'", inner)
    leftover = re.sub(r"'((?:[^'\\]|\\.)*)'", "", inner).strip()
    assert not leftover, f"{where}: expected a literal list of strings, also found {leftover!r}"
    return items


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def resource_bodies(resource_type: str) -> list[tuple[Path, str, str]]:
    """(file, symbol, body) of each declared (not `existing`) resource of a type."""
    pattern = re.compile(
        rf"^\s*resource\s+(\w+)\s+'{re.escape(resource_type)}@[\w.-]+'\s+(existing\s+)?=",
        re.MULTILINE,
    )
    found = []
    for path in bicep_files():
        text = strip_comments(path.read_text())
        for match in pattern.finditer(text):
            if match.group(2):
                continue
            brace = text.index("{", match.end())
            found.append((path, match.group(1), balanced(text, brace)))
    return found


def custom_role() -> tuple[Path, str]:
    roles = resource_bodies("Microsoft.Authorization/roleDefinitions")
    assert len(roles) == 1, f"expected one custom role definition in infra/, found {len(roles)}"
    path, _symbol, body = roles[0]
    return path, body


def role_actions(body: str, key: str = "actions") -> list[str]:
    """Every entry of `<key>: [...]` in the role body (all permission blocks)."""
    actions: list[str] = []
    for match in re.finditer(rf"(?<![\w]){key}\s*:\s*(?=\[)", body):
        actions += string_items(balanced(body, match.end()), f"role {key}")
    return actions


def bicep_param_default(path: Path, name: str) -> str:
    text = strip_comments(path.read_text())
    match = re.search(rf"^\s*param\s+{name}\s+string\s*=\s*'([^']*)'", text, re.MULTILINE)
    assert match, f"{path.name}: no string default for param {name}"
    return match.group(1)


# --- reading the responder's code --------------------------------------------------------


@dataclass(frozen=True)
class SdkUse:
    path: Path
    line: int
    group: str
    method: str


def find_sdk_uses(root: Path, excluded: tuple[Path, ...] = ()) -> tuple[list[SdkUse], list[str]]:
    """Each `<expr>.<group>.<method>` (called or passed on), and each bare `<expr>.<group>`.

    A bare reference (`ops = client.storage_accounts`) would hide the method calls made
    through it, so it is reported as a problem rather than guessed at.
    """
    uses: list[SdkUse] = []
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if any(path.is_relative_to(ex) for ex in excluded):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr not in GROUPS:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                uses.append(SdkUse(path, parent.lineno, node.attr, parent.attr))
            elif isinstance(parent, ast.Assign | ast.AnnAssign | ast.NamedExpr | ast.Return):
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                problems.append(f"{where}: `.{node.attr}` is aliased; call its methods directly")
    return uses, problems


def actions_for(uses: list[SdkUse]) -> tuple[set[str], list[str]]:
    actions: set[str] = set()
    unknown: list[str] = []
    for use in uses:
        action = SDK_ACTIONS.get((use.group, use.method))
        if action is None:
            unknown.append(f"{use.path.name}:{use.line}: {use.group}.{use.method}")
        else:
            actions.add(action)
    return actions, unknown


def lower(items: set[str] | list[str]) -> dict[str, str]:
    return {item.lower(): item for item in items}


# --- the role equals the code ------------------------------------------------------------


def test_custom_role_grants_exactly_what_the_code_calls() -> None:
    uses, problems = find_sdk_uses(SOURCE, ())
    assert not problems, "\n".join(problems)
    assert uses, (
        "found no `.storage_accounts.<method>`, `.blob_containers.<method>` or "
        "`.role_assignments.<method>` call under responders/: the custom role cannot be checked"
    )
    used, unknown = actions_for(uses)
    assert not unknown, (
        "SDK methods with no ARM action in SDK_ACTIONS (add them there and to the role in "
        "infra/modules/custom-role.bicep):\n" + "\n".join(unknown)
    )
    path, body = custom_role()
    declared = lower(arm_actions())
    # the posture reads go through the bare ARM pipeline (no SDK for them): their paths name them
    posture = (SOURCE / "posture.py").read_text()
    assert "/providers/Microsoft.Insights/diagnosticSettings" in posture
    used = [*used, *POSTURE_ARM_ACTIONS]
    # restore re-creates what a step removed with rights the role does not grant (a human's)
    restore_only = lower(restore_arm_actions())
    assert not restore_only.keys() & lower(role_actions(body)).keys(), "the role grants restore-only actions"
    for what, have, want in (
        (f"{path.relative_to(ROOT)} (the custom role)", lower(role_actions(body)), declared),
        ("the SDK calls in responders/", lower(used), {**declared, **restore_only}),
    ):
        missing = sorted(want[k] for k in want.keys() - have.keys())
        extra = sorted(have[k] for k in have.keys() - want.keys())
        report = (
            f"{what} does not match the ARM actions responders/core/catalogue.py declares.\n"
            f"  declared but not there: {missing}\n"
            f"  there but not declared: {extra}"
        )
        assert (missing, extra) == ([], []), report


def test_scanner_maps_calls_and_rejects_unknown_and_aliased(tmp_path: Path) -> None:
    pkg = tmp_path / "responders"
    (pkg / "actions").mkdir(parents=True)
    (pkg / "simulator").mkdir()
    (pkg / "actions" / "storage.py").write_text(
        "def act(client, rg, name, clients, ref):\n"
        "    client.storage_accounts.get_properties(rg, name)\n"
        "    clients.mgmt(ref).storage_accounts.update(rg, name, {})\n"
        "    client.storage_accounts.regenerate_key(rg, name, {'key_name': 'key1'})\n"
        "    client.storage_accounts.revoke_user_delegation_keys(rg, name)\n"
        "    [c for c in client.blob_containers.list(rg, name)]\n"
        "    retry(client.blob_containers.update, rg, name, 'c', {})\n"
        "    facts = [a for a in tenant.storage_accounts]\n"
    )
    (pkg / "simulator" / "storage.py").write_text("x.storage_accounts.list_keys(1, 2)\n")
    uses, problems = find_sdk_uses(pkg, (pkg / "simulator",))
    assert not problems
    assert sorted((u.group, u.method) for u in uses) == [
        ("blob_containers", "list"),
        ("blob_containers", "update"),
        ("storage_accounts", "get_properties"),
        ("storage_accounts", "regenerate_key"),
        ("storage_accounts", "revoke_user_delegation_keys"),
        ("storage_accounts", "update"),
    ]
    actions, unknown = actions_for(uses)
    assert not unknown
    assert actions == {
        f"{SA}/read",
        f"{SA}/write",
        f"{SA}/regeneratekey/action",
        f"{SA}/revokeUserDelegationKeys/action",
        f"{CONTAINERS}/read",
        f"{CONTAINERS}/write",
    }

    (pkg / "actions" / "more.py").write_text(
        "client.storage_accounts.begin_failover(1, 2)\n"
        "client.storage_accounts.list_keys(1, 2)\n"
        "ops = client.blob_containers\n"
    )
    uses, problems = find_sdk_uses(pkg, (pkg / "simulator",))
    assert problems == [
        "responders/actions/more.py:3: `.blob_containers` is aliased; call its methods directly"
    ]
    actions, unknown = actions_for(uses)
    assert unknown == ["more.py:1: storage_accounts.begin_failover"]
    assert f"{SA}/listkeys/action" in actions


def test_role_actions_parser_reads_literal_lists_only() -> None:
    body = (
        "{\n  properties: {\n    permissions: [\n      {\n"
        "        actions: [\n          'A/read' // why\n          'B/write'\n        ]\n"
        "        notActions: [\n          'C/delete'\n        ]\n        dataActions: []\n"
        "      }\n    ]\n  }\n}"
    )
    assert role_actions(strip_comments(body)) == ["A/read", "B/write"]
    assert role_actions(strip_comments(body), "notActions") == ["C/delete"]
    with pytest.raises(AssertionError, match="literal list of strings"):
        role_actions("{ actions: [\n 'A/read'\n someVariable\n ] }")


# --- the role itself -----------------------------------------------------------------------


def test_custom_role_is_narrow() -> None:
    path, body = custom_role()
    actions = role_actions(body)
    assert actions, f"{path.name}: the role lists no actions"
    assert len(actions) == len(lower(actions)), f"duplicate actions in {actions}"
    assert not [a for a in actions if "*" in a], f"wildcards in {actions}"
    assert not [a for a in actions if a.lower() in FORBIDDEN], f"credential-minting actions in {actions}"
    # storage management, reading and deleting role assignments (never creating them), and the
    # posture checks' read of diagnostic settings
    others = [a for a in actions if not a.lower().startswith(SA.lower() + "/")]
    assert sorted(others) == sorted(
        [f"{ROLE_ASSIGNMENTS}/delete", f"{ROLE_ASSIGNMENTS}/read", *POSTURE_ARM_ACTIONS]
    ), actions
    for key in ("notActions", "dataActions", "notDataActions"):
        assert role_actions(body, key) == [], f"{key} must be empty"
    assert re.search(r"type\s*:\s*'CustomRole'", body)
    role_name = bicep_param_default(path, "roleName")
    assert role_name == "Synthetic Leak Responder"
    assert "assignableScopes" in body


def test_built_in_roles_are_scoped_and_named() -> None:
    """Built-in role GUIDs in infra/ are the ones the comments name (same in every tenant)."""
    expected = {
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
        "3e150937-b8fe-4cfb-8069-0eaf05ecd056": "Microsoft Sentinel Responder",
        "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
        "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
        "f4c81013-99ee-4d62-a7ee-b3f1f648599a": "Microsoft Sentinel Automation Contributor",
    }
    seen: set[str] = set()
    for path in bicep_files():
        text = path.read_text()
        for guid in re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text):
            assert guid in expected, f"{path.name}: unknown role or id {guid}; name it in this test"
            assert expected[guid] in text, f"{path.name}: {guid} is not labelled {expected[guid]!r}"
            seen.add(guid)
    assert seen == set(expected), f"roles not used: {set(expected) - seen}"
    ledger = (INFRA / "modules" / "ledger.bicep").read_text()
    grant = balanced(ledger, ledger.index("{", ledger.index("resource tableWriter")))
    assert re.search(r"scope\s*:\s*table\b", grant), "the ledger role must be scoped to the table"


# --- Event Grid, app settings, azd ------------------------------------------------------------


def test_event_grid_filter_lists_the_risky_operations() -> None:
    path = INFRA / "modules" / "eventgrid.bicep"
    text = strip_comments(path.read_text())
    (body,) = [
        b for p, _, b in resource_bodies("Microsoft.EventGrid/systemTopics/eventSubscriptions") if p == path
    ]
    key = re.search(r"key\s*:\s*'data\.operationName'", body)
    assert key, "no advanced filter on data.operationName"
    filt = body[body.rindex("{", 0, key.start()) :]
    filt = balanced(filt, 0)
    assert re.search(r"operatorType\s*:\s*'StringIn'", filt)
    values = re.search(r"values\s*:\s*(\w+|(?=\[))", filt)
    assert values, "the filter has no values"
    if values.group(1):
        decl = re.search(rf"^var\s+{values.group(1)}\s*=\s*(?=\[)", text, re.MULTILINE)
        assert decl, f"no var {values.group(1)}"
        operations = string_items(balanced(text, decl.end()), values.group(1))
    else:
        operations = string_items(balanced(filt, values.end()), "values")
    assert lower(operations).keys() == lower(RISKY_OPERATIONS).keys(), operations
    # the filter passes exactly the operations the parser gives a kind of signal, and no more
    assert lower(operations).keys() == set(OPERATIONS), sorted(set(OPERATIONS) ^ lower(operations).keys())
    # data-plane requests raise no Resource Manager event: nothing may wait for one
    assert not [op for op in OPERATIONS if "generateuserdelegationkey" in op]
    included = re.search(r"includedEventTypes\s*:\s*(?=\[)", body)
    assert included
    assert set(string_items(balanced(body, included.end()), "includedEventTypes")) == {
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceActionSuccess",
    }
    assert re.search(r"endpointType\s*:\s*'AzureFunction'", body)
    assert re.search(r"eventDeliverySchema\s*:\s*'EventGridSchema'", body)
    assert re.search(r"maxDeliveryAttempts\s*:\s*30\b", body)
    assert re.search(r"eventTimeToLiveInMinutes\s*:\s*1440\b", body)
    assert "deadLetterWithResourceIdentity" in body
    assert re.search(r"topicType\s*:\s*'Microsoft\.Resources\.Subscriptions'", text)


def test_app_settings_are_the_ones_the_code_reads() -> None:
    main = strip_comments((INFRA / "main.bicep").read_text())
    block = balanced(main, main.index("{", main.index("responderSettings:")))
    names = set(re.findall(r"^\s*(\w+)\s*:", block[1:-1], re.MULTILINE))
    assert names == {
        "RESPONDER_POLICY",
        "RESPONDER_DRY_RUN",
        "RESPONDER_LEDGER_ENDPOINT",
        "RESPONDER_LEDGER_TABLE",
        "RESPONDER_IDENTITY_OBJECT_ID",
        "RESPONDER_SENTINEL_WORKSPACE_ID",
        "RESPONDER_LOG_ANALYTICS_WORKSPACE_ID",
        "RESPONDER_EVIDENCE_WORKSPACE_RESOURCE_ID",
        "RESPONDER_PLAYBOOK_CALLERS",
        "RESPONDER_DEADLETTER_ENDPOINT",
        "RESPONDER_DEADLETTER_CONTAINER",
        "RESPONDER_SWEEP_SCHEDULE",
        "AZURE_CLIENT_ID",
        "AZURE_TOKEN_CREDENTIALS",
    }
    assert "AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'" in block
    assert re.search(r"^\s*param\s+dryRun\s+bool\s*=\s*true", main, re.MULTILINE)
    assert bicep_param_default(INFRA / "main.bicep", "eventGridFunctionName") == "eventgrid_trigger"
    assert re.search(r"ledgerTableName\s*=\s*'ResponderLedger'", main)
    app = strip_comments((INFRA / "modules" / "function-app.bicep").read_text())
    for setting in (
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    ):
        assert setting in app
    assert "AccountKey" not in app, "no storage keys in app settings"
    assert "listKeys" not in app, "no storage keys in app settings"


def test_app_service_authentication_is_on_and_lets_key_callers_through() -> None:
    """The code trusts X-MS-CLIENT-PRINCIPAL-ID only with App Service authentication on; Event Grid
    and the Logic App call anonymously (function keys), so unauthenticated requests must pass."""
    path = INFRA / "modules" / "function-app.bicep"
    text = strip_comments(path.read_text())
    configs = [(sym, body) for p, sym, body in resource_bodies("Microsoft.Web/sites/config") if p == path]
    [(_, body)] = [(sym, b) for sym, b in configs if re.search(r"name\s*:\s*'authsettingsV2'", b)]
    platform = balanced(body, body.index("{", body.index("platform:")))
    assert re.search(r"enabled\s*:\s*true", platform)
    validation = balanced(body, body.index("{", body.index("globalValidation:")))
    assert re.search(r"requireAuthentication\s*:\s*false", validation)
    assert re.search(r"unauthenticatedClientAction\s*:\s*'AllowAnonymous'", validation)
    assert re.search(r"azureActiveDirectory\s*:\s*empty\(authClientId\)\s*\?\s*entraOff\s*:\s*entraOn", body)
    entra = balanced(text, text.index("{", text.index("var entraOn")))
    assert re.search(r"clientId\s*:\s*authClientId", entra)
    assert "${tenant().tenantId}/v2.0" in entra
    main = strip_comments((INFRA / "main.bicep").read_text())
    assert re.search(r"^\s*authClientId\s*:\s*authClientId\s*$", main, re.MULTILINE)
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["authClientId"]["value"] == "${AUTH_CLIENT_ID=}"
    assert params["playbookCallers"]["value"] == "${RESPONDER_PLAYBOOK_CALLERS=}"


def test_sentinel_may_run_playbooks_in_the_playbooks_resource_group() -> None:
    """Microsoft Sentinel Automation Contributor goes on the resource group holding the playbook
    (MicrosoftDocs azure-docs articles/sentinel/includes/playbooks-service-account-permissions.md)."""
    path = INFRA / "modules" / "sentinel-playbook.bicep"
    grants = [b for p, _, b in resource_bodies("Microsoft.Authorization/roleAssignments") if p == path]
    [grant] = [b for b in grants if "sentinelAutomationContributor" in b]
    assert not re.search(r"^\s{2}scope\s*:", grant, re.MULTILINE), "no scope: the module's resource group"
    assert "guid(resourceGroup().id" in grant
    main = strip_comments((INFRA / "main.bicep").read_text())
    module = balanced(main, main.index("{", main.index("module playbook")))
    assert re.search(r"^\s{2}scope\s*:\s*rg\s*$", module, re.MULTILINE)


def test_function_names_in_bicep_exist_in_the_code() -> None:
    """Event Grid and the playbook target functions by name: a rename must update infra/."""
    names: set[str] = set()
    routes: set[str] = set()
    for path in sorted((SOURCE / "triggers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                kwargs = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
                if node.func.attr == "function_name":
                    names.update([*args, kwargs.get("name")])
                elif node.func.attr == "route":
                    routes.update([*args, kwargs.get("route")])
    main = INFRA / "main.bicep"
    assert bicep_param_default(main, "eventGridFunctionName") in names, names
    assert bicep_param_default(main, "sentinelFunctionName") in names, names
    assert bicep_param_default(main, "sentinelRoute") in routes, routes


def test_azd_files_parse_and_name_the_service() -> None:
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    service = azure["services"]["responder"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert azure["infra"]["path"] == "infra"
    hooks = {name: hook["posix"]["run"] for name, hook in azure["hooks"].items()}
    assert hooks == {
        "preprovision": "./infra/hooks/decide-wiring.sh",
        "postprovision": "./infra/hooks/external.sh",
        "postdeploy": "./infra/hooks/wire-triggers.sh",
        "predown": "./infra/hooks/remove-external.sh",
    }
    for script in hooks.values():
        assert (ROOT / script).is_file(), script
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = strip_comments((INFRA / "main.bicep").read_text())
    declared = set(re.findall(r"^\s*param\s+(\w+)\s", main, re.MULTILINE))
    assert set(params) <= declared, set(params) - declared
    assert params["dryRun"]["value"] == "${RESPONDER_DRY_RUN=true}"
    site = strip_comments((INFRA / "modules" / "function-app.bicep").read_text())
    assert "'azd-service-name': 'responder'" in site
    assert re.search(r"name\s*:\s*'python'\s*\n\s*version\s*:\s*'3\.11'", site)
    assert "'FlexConsumption'" in site
    assert "'FC1'" in site


def test_checkov_skips_are_justified() -> None:
    skipped = set()
    for path in bicep_files():
        for check, reason in re.findall(r"checkov:skip=(CKV2?_[A-Z]+_\d+)(?::([^\n]*))?", path.read_text()):
            assert reason.strip(), f"{path.name}: {check} skipped without a reason"
            skipped.add(check)
    documented = set(
        re.findall(r"^## (CKV2?_[A-Z]+_\d+)", (INFRA / "CHECKOV_SKIPS.md").read_text(), re.MULTILINE)
    )
    assert skipped == documented, f"undocumented: {skipped - documented}; stale: {documented - skipped}"


# --- `azd down` must never reach a resource group we do not own ------------------------------


def test_azd_deployment_stays_in_its_own_resource_group() -> None:
    """`azd down` deletes every resource group holding a resource of the azd deployment.

    So main.bicep creates its resource group and deploys only into it; everything scoped
    elsewhere (workspace role grants, automation rule, topics on other accounts, the custom
    role at subscription scope) belongs in external.bicep, which the hooks manage.
    """
    main = strip_comments((INFRA / "main.bicep").read_text())
    declared = re.findall(r"^resource\s+(\w+)\s+'([^']+)'\s+(existing\s+)?=", main, re.MULTILINE)
    created = [(sym, rtype) for sym, rtype, existing in declared if not existing]
    assert [rtype.split("@")[0] for _, rtype in created] == ["Microsoft.Resources/resourceGroups"], created
    (rg_symbol,) = [sym for sym, _ in created]
    modules = re.finditer(r"^module\s+(\w+)\s+'[^']+'\s*=", main, re.MULTILINE)
    for module in modules:
        body = balanced(main, main.index("{", module.end()))
        scope = re.search(r"^\s{2}scope\s*:\s*(.+)$", body, re.MULTILINE)
        assert scope, f"module {module.group(1)} has no scope (it would deploy at subscription scope)"
        assert scope.group(1).strip() == rg_symbol, f"module {module.group(1)} deploys to {scope.group(1)}"
    external = strip_comments((INFRA / "external.bicep").read_text())
    assert "Microsoft.Resources/resourceGroups@" not in external, "external.bicep must not create groups"


def _fake_az(tmp_path: Path, show_output: str, *, fail: bool = False) -> tuple[dict[str, str], Path]:
    """A stand-in `az` on PATH that logs its arguments and answers `deployment sub show`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "az.log"
    (tmp_path / "show.txt").write_text(show_output)
    script = bin_dir / "az"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'case "$1 $2 $3" in "deployment sub show") '
        f'cat "{tmp_path / "show.txt"}" ;; esac\n' + ("exit 1\n" if fail else "")
    )
    script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AZURE_ENV_NAME": "dev",
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "AZURE_LOCATION": "westeurope",
    }
    return env, log


def test_predown_hook_deletes_only_what_external_created(tmp_path: Path) -> None:
    sub = "/subscriptions/sub-1"
    ws = f"{sub}/resourceGroups/rg-sentinel/providers/Microsoft.OperationalInsights/workspaces/ws"
    topic = f"{sub}/resourceGroups/rg-data/providers/Microsoft.EventGrid/systemTopics/evgt-st1"
    ids = [
        f"{topic}",
        f"{topic}/eventSubscriptions/synthetic-blob-created",
        f"{ws}/providers/Microsoft.Authorization/roleAssignments/a1",
        f"{ws}/providers/Microsoft.SecurityInsights/automationRules/r1",
        f"{sub}/providers/Microsoft.Authorization/roleAssignments/a2",
        f"{sub}/providers/Microsoft.Authorization/roleDefinitions/d1",
        f"{sub}/resourceGroups/rg-sentinel",
    ]
    env, log = _fake_az(tmp_path, "\n".join(ids) + "\n")
    hook = ROOT / "infra" / "hooks" / "remove-external.sh"
    done = subprocess.run(["sh", str(hook)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    deleted = [
        line.split("--ids ")[1].split()[0]
        for line in log.read_text().splitlines()
        if "resource delete" in line
    ]
    assert deleted == [ids[1], ids[2], ids[3], ids[4], ids[0]], deleted
    calls = log.read_text()
    assert "group delete" not in calls
    assert "deployment sub delete --subscription sub-1 --name dev-external" in calls
    assert "roleDefinitions/d1 (not a type" in done.stderr
    assert "resourceGroups/rg-sentinel (not a type" in done.stderr


def test_postprovision_hook_deploys_external_bicep(tmp_path: Path) -> None:
    env, log = _fake_az(tmp_path, "")
    hook = ROOT / "infra" / "hooks" / "external.sh"
    done = subprocess.run(["sh", str(hook)], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "SENTINEL_WORKSPACE_ID" in done.stderr
    env |= {
        "SENTINEL_WORKSPACE_ID": "/subscriptions/sub-1/resourceGroups/rg-s/providers/"
        "Microsoft.OperationalInsights/workspaces/ws",
        "RESPONDER_IDENTITY_OBJECT_ID": "oid",
        "RESPONDER_EVENTGRID_FUNCTION_ID": "fid",
        "RESPONDER_DEADLETTER_STORAGE_ID": "sid",
        "RESPONDER_DEADLETTER_CONTAINER": "eventgrid-deadletter",
        "WIRE_TRIGGERS": "true",
    }
    done = subprocess.run(["sh", str(hook)], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    call = log.read_text()
    assert call.startswith(
        "deployment sub create --subscription sub-1 --location westeurope --name dev-external"
    )
    assert "--template-file infra/external.bicep" in call
    assert "wireTriggers=true" in call
    external = strip_comments((INFRA / "external.bicep").read_text())
    declared = set(re.findall(r"^\s*param\s+(\w+)\s", external, re.MULTILINE))
    passed = set(re.findall(r" (\w+)=", call))
    assert passed == declared, f"hook passes {passed - declared}, misses {declared - passed}"


def test_postprovision_hook_retries_then_fails(tmp_path: Path) -> None:
    env, log = _fake_az(tmp_path, "", fail=True)
    env |= dict.fromkeys(
        (
            "SENTINEL_WORKSPACE_ID",
            "RESPONDER_IDENTITY_OBJECT_ID",
            "RESPONDER_EVENTGRID_FUNCTION_ID",
            "RESPONDER_DEADLETTER_STORAGE_ID",
            "RESPONDER_DEADLETTER_CONTAINER",
        ),
        "x",
    ) | {"EXTERNAL_RETRY_SECONDS": "0"}
    hook = ROOT / "infra" / "hooks" / "external.sh"
    done = subprocess.run(["sh", str(hook)], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert log.read_text().count("deployment sub create") == 3
    assert "failed 3 times" in done.stderr


def test_the_app_reads_the_container_event_grid_dead_letters_to_with_a_role_that_reaches_it() -> None:
    main = strip_comments((INFRA / "main.bicep").read_text())
    settings = balanced(main, main.index("{", main.index("responderSettings:")))
    assert re.search(r"RESPONDER_DEADLETTER_CONTAINER\s*:\s*deadLetterContainerName\b", settings)
    assert re.search(r"RESPONDER_DEADLETTER_ENDPOINT\s*:\s*appStorage\.outputs\.blobEndpoint\b", settings)
    grid = balanced(main, main.index("{", main.index("module eventGrid")))
    assert re.search(r"deadLetterContainerName\s*:\s*deadLetterContainerName\b", grid)
    assert re.search(r"deadLetterStorageAccountName\s*:\s*appStorage\.outputs\.name\b", grid)
    for path in (
        INFRA / "modules" / "eventgrid.bicep",
        INFRA / "modules" / "eventgrid-blob-subscription.bicep",
    ):
        assert re.search(
            r"blobContainerName\s*:\s*deadLetterContainerName\b", strip_comments(path.read_text())
        )
    # the responder identity holds a blob data role on that account (it reads, and never deletes, blobs)
    storage = balanced(main, main.index("{", main.index("module appStorage")))
    assert re.search(r"appPrincipalId\s*:\s*identity\.outputs\.principalId\b", storage)
    app_storage = strip_comments((INFRA / "modules" / "app-storage.bicep").read_text())
    grant = balanced(app_storage, app_storage.index("{", app_storage.index("resource appBlobOwner")))
    assert re.search(r"principalId\s*:\s*appPrincipalId\b", grant)
    assert "storageBlobDataOwner" in grant
