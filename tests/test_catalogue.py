"""The action catalogue is the one place an action is declared: handlers, policy and README agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from responders.actions import HANDLERS, register
from responders.actions.storage import MakeContainerPrivate
from responders.core.catalogue import ACTION_KINDS, CATALOGUE, GRAPH_PERMISSIONS
from responders.core.model import BadInput
from responders.core.policy import APPROVAL_MODES, Policy

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## What each action does, and how to undo it"


def readme_rows() -> list[list[str]]:
    """The cells of each row of the README's action table (header and rule left out)."""
    text = README.read_text()
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    assert lines[0].split("|")[1:-1] == [" action ", " what it does ", " reversible ", " undo "], lines[0]
    return [[cell.strip() for cell in ln.split("|")[1:-1]] for ln in lines[2:]]


def test_readme_action_table_is_the_catalogue() -> None:
    want = [[f"`{s.kind}`", s.does, "yes" if s.reversible else "**no**", s.undo] for s in CATALOGUE.values()]
    assert readme_rows() == want


def test_every_catalogued_kind_has_exactly_one_handler() -> None:
    assert list(HANDLERS) == list(ACTION_KINDS)
    assert all(h.kind == kind for kind, h in HANDLERS.items())
    every = tuple(type(h)() for h in HANDLERS.values())
    with pytest.raises(RuntimeError, match=r"without a handler \['storage.regenerate_key'\]"):
        register(*(h for h in every if h.kind != "storage.regenerate_key"))
    with pytest.raises(RuntimeError, match=r"doubled \['storage.make_container_private'\]"):
        register(*every, MakeContainerPrivate())


def test_entries_are_complete_and_the_policy_is_derived_from_them() -> None:
    for kind, spec in CATALOGUE.items():
        assert spec.kind == kind
        assert spec.does, kind
        assert spec.undo, kind
        assert spec.approval in APPROVAL_MODES, kind
        assert set(spec.graph_permissions) <= set(GRAPH_PERMISSIONS), kind
        assert all(re.fullmatch(r"Microsoft\.[A-Za-z]+(/[A-Za-z]+)+", a) for a in spec.arm_actions), kind
        # a step calls Resource Manager or Graph (or both); one that declares neither is unchecked
        assert spec.arm_actions or spec.graph_permissions, kind
    assert dict(Policy().approval) == {k: s.approval for k, s in CATALOGUE.items()}
    assert dict(Policy.from_dict({}).approval) == dict(Policy().approval)
    with pytest.raises(BadInput, match=r"unknown action 'storage\.delete_account'"):
        Policy.from_dict({"approval": {"storage.delete_account": "auto"}})


def test_restore_order_and_the_notes_for_humans_are_declared_in_the_catalogue() -> None:
    import inspect

    from responders import evidence_pack, manage
    from responders.core.catalogue import RESTORE_ORDER

    assert manage.RESTORE_ORDER is RESTORE_ORDER
    assert set(RESTORE_ORDER) == {k for k, s in CATALOGUE.items() if s.reversible}
    # account-level public access is allowed again before a container is made public again
    assert RESTORE_ORDER["storage.disable_public_access"] < RESTORE_ORDER["storage.make_container_private"]
    remaining = inspect.getsource(evidence_pack._remaining)
    assert not [kind for kind in CATALOGUE if f'"{kind}"' in remaining], (
        "per-kind notes belong in the catalogue"
    )
    assert all("{target}" in s.remaining for s in CATALOGUE.values() if s.remaining)
