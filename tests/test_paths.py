"""The path -> step table: one table in the policy's defaults, written out in policy.yaml and the README,
and the plan's steps derived from it (pure core)."""

from __future__ import annotations

import pytest
import yaml

from responders.core.classify import classify
from responders.core.model import Facts
from responders.core.parse import parse_item
from responders.core.paths import DEFAULT_STEPS, PATHS
from responders.core.plan import plan
from responders.core.policy import Policy
from tests.test_core import ACCOUNT, NOW, POLICY, SUB, resource_event, synthetic_account

HEADING = "## Which path, which step"


def readme_rows() -> list[list[str]]:
    from tests.test_catalogue import README

    text = README.read_text()
    assert HEADING in text
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    assert lines[0].split("|")[1:-1] == [" path ", " what it is ", " steps (default) "], lines[0]
    return [[cell.strip() for cell in ln.split("|")[1:-1]] for ln in lines[2:]]


def test_the_readme_table_is_the_default_table() -> None:
    want = [[f"`{path}`", PATHS[path], ", ".join(f"`{k}`" for k in DEFAULT_STEPS[path])] for path in PATHS]
    assert readme_rows() == want


def test_the_shipped_policy_writes_out_the_default_table() -> None:
    from tests.test_catalogue import README

    raw = yaml.safe_load((README.parent / "policy.yaml").read_text())
    assert {k: tuple(v) for k, v in raw["paths"].items()} == DEFAULT_STEPS
    assert Policy.from_dict(raw).paths == DEFAULT_STEPS


def policy_with(**rows: list[str]) -> Policy:
    return Policy.from_dict(
        {
            "scope": {"allow": [f"/subscriptions/{SUB}"]},
            "principals": {"allow": ["3a9c5e7b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"]},
            "paths": rows,
        }
    )


def kinds_for(event: dict, policy: Policy, facts: Facts | None = None) -> list[str]:
    signal = parse_item(event, now=NOW)
    facts = facts or synthetic_account(public=False)
    made = plan(signal, facts, classify(signal, facts, policy), policy)
    return [a.kind for a in made.actions]


LIST_KEYS = "Microsoft.Storage/storageAccounts/listKeys/action"


def test_listed_keys_take_the_account_key_user_delegation_and_token_rows() -> None:
    assert kinds_for(resource_event(LIST_KEYS), POLICY) == [
        "storage.regenerate_key",
        "storage.regenerate_key",
        "storage.revoke_user_delegation_keys",
        "identity.disable_service_principal",
    ]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # a policy that keeps the keys when they are listed, and only revokes user-delegation keys
        (
            {"account-key": []},
            ["storage.revoke_user_delegation_keys", "identity.disable_service_principal"],
        ),
        # nor disables the caller
        ({"account-key": [], "management-token": []}, ["storage.revoke_user_delegation_keys"]),
        # rotation where the defaults revoke user-delegation keys
        (
            {"user-delegation-sas": ["storage.regenerate_key"]},
            ["storage.regenerate_key", "storage.regenerate_key", "identity.disable_service_principal"],
        ),
    ],
)
def test_the_plan_follows_the_policys_rows(rows: dict, expected: list[str]) -> None:
    assert kinds_for(resource_event(LIST_KEYS), policy_with(**rows)) == expected


def test_a_principal_left_alone_by_the_policy_is_listed_as_skipped() -> None:
    policy = policy_with(**{"management-token": []})
    signal = parse_item(resource_event(LIST_KEYS), now=NOW)
    facts = synthetic_account(public=False)
    made = plan(signal, facts, classify(signal, facts, policy), policy)
    assert any("paths.management-token does not disable principals" in why for _, why in made.skipped)


def test_each_reason_names_the_paths_the_action_cuts() -> None:
    signal = parse_item(resource_event(LIST_KEYS), now=NOW)
    facts = synthetic_account(public=False)
    made = plan(signal, facts, classify(signal, facts, POLICY), POLICY)
    reasons = {a.kind: a.reason for a in made.actions}
    assert reasons["storage.regenerate_key"].endswith("(cuts account-key)")
    assert reasons["storage.revoke_user_delegation_keys"].endswith("(cuts user-delegation-sas)")


def test_a_container_made_public_takes_the_anonymous_row() -> None:
    event = resource_event(
        "Microsoft.Storage/storageAccounts/blobServices/containers/write",
        subject=f"{ACCOUNT}/blobServices/default/containers/data",
    )
    assert kinds_for(event, POLICY, synthetic_account(public=True)) == [
        "storage.disable_public_access",
        "storage.make_container_private",
    ]
    # the policy may leave the account-level switch to a human and only close the container
    only_container = policy_with(anonymous=["storage.make_container_private"])
    assert kinds_for(event, only_container, synthetic_account(public=True)) == [
        "storage.make_container_private"
    ]
