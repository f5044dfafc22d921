"""The ledger works with rights on its table alone, as the responder identity holds them in Azure.

Bicep creates the table and grants Storage Table Data Contributor on that table only, and creating
a table is an account-level request. Azurite enforces the same split for a table-scoped SAS (its
create_table answers 403 AuthorizationFailure, checked below), so here the app runs with such a
SAS and nothing more: containment, a redelivery and the evidence pack.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, TableSasPermissions, TableServiceClient, generate_table_sas

from rehearsal.standins import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from tests.harness import sample


def table_only(azurite: Azurite, table: str) -> str:
    """A connection string whose SAS grants read, add, update and delete on `table` and nothing else."""
    sas = generate_table_sas(
        AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
        table,
        permission=TableSasPermissions(read=True, add=True, update=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"TableEndpoint=http://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT};SharedAccessSignature={sas}"


def ledger_env(azurite: Azurite, table: str) -> dict[str, str]:
    return {"RESPONDER_LEDGER_TABLE": table, "RESPONDER_LEDGER_CONNECTION_STRING": table_only(azurite, table)}


def made_by_bicep(azurite: Azurite) -> str:
    table = "t" + uuid.uuid4().hex[:20]
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_table(table)
    return table


def test_a_table_sas_cannot_create_a_table(azurite: Azurite) -> None:
    table = made_by_bicep(azurite)
    with TableClient.from_connection_string(table_only(azurite, table), table) as client:
        with pytest.raises(HttpResponseError) as refused:
            client.create_table()
        assert refused.value.status_code == 403
        client.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
        assert [dict(e) for e in client.list_entities()] == [{"PartitionKey": "p", "RowKey": "r"}]


def test_containment_redelivery_and_evidence_with_table_rights_only(make_harness, azurite: Azurite) -> None:
    table = made_by_bicep(azurite)
    h = make_harness(env=ledger_env(azurite, table))
    [event] = sample("01-container-made-public.json")

    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    account = h.sim.state.snapshot()["accounts"]["stsynthpublic01"]
    assert account["properties"]["allowBlobPublicAccess"] is False
    acted = len(h.writes())

    h.eventgrid(event)  # Event Grid delivers again
    again = h.incident(event["id"])
    assert again["Deliveries"] == 2
    assert [w for w in h.writes()[acted:] if "microsoft.storage" in w["path"].lower()] == []

    req = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/evidence/{row['PartitionKey']}",
        body=b"",
        route_params={"incident": row["PartitionKey"]},
        params={"format": "json"},
    )
    response = h.functions["evidence"](req)
    assert response.status_code == 200, response.get_body()
    pack = json.loads(response.get_body())
    assert row["PartitionKey"] in json.dumps(pack)
    assert [e for e in pack["timeline"] if "storage.disable_public_access" in json.dumps(e)]


def test_a_missing_table_is_created_only_where_rights_allow(make_harness, azurite: Azurite) -> None:
    [event] = sample("01-container-made-public.json")
    # table rights only and no table: nothing to write to, so the event fails before any action
    table = "t" + uuid.uuid4().hex[:20]
    h = make_harness(env=ledger_env(azurite, table))
    with pytest.raises(HttpResponseError):
        h.eventgrid(event)
    assert h.writes() == []

    # account rights (Azurite's key, the local runs): the ledger makes its own table
    h = make_harness()
    h.eventgrid(event)
    assert h.incident(event["id"])["Status"] == "contained"
