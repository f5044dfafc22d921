"""A ledger outage right after a write loses nothing: the intent and the state before are recorded
before the write, so the redelivery reports the write as this incident's and restore still works.

The outage is real: the ledger client talks to Azurite through a loopback TCP link that the test cuts
(open connections reset, new ones refused) the moment the simulated tenant has accepted the write.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from rehearsal.standins import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from tests.harness import sample

ACCOUNT = "stsynthexport08"


class LedgerLink:
    """A loopback TCP forwarder to Azurite that can be cut and restored, like a network partition."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def cut(self) -> None:
        with self._lock:
            self.up = False
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self.cut()
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                if not self.up:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def link(azurite: Azurite) -> Iterator[LedgerLink]:
    made = LedgerLink(azurite.port)
    yield made
    made.close()


def cut_after_writes(h, link: LedgerLink, count: int) -> threading.Thread:
    """Cut the ledger link as soon as the tenant has accepted `count` writes to the account."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            landed = [
                r
                for r in h.sim.requests()
                if r["method"] == "PATCH" and ACCOUNT in r["path"] and r["status"] == 200
            ]
            if len(landed) >= count:
                link.cut()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_a_ledger_outage_after_the_write_keeps_the_before_state_and_restore_works(
    make_harness, link: LedgerLink
) -> None:
    h = make_harness(env={"RESPONDER_LEDGER_CONNECTION_STRING": link.connection_string})
    [event] = sample("02-account-public-access-enabled.json")
    # the read-back after each write is slow, so the link is cut between the write and its outcome
    h.sim.set_faults(
        [{"method": "GET", "path": ACCOUNT + "(/blobServices/default/containers/[^/]+)?$", "latency_ms": 500}]
    )
    watcher = cut_after_writes(h, link, 2)
    # the ledger is unreachable: the function fails, so the platform will redeliver
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        h.eventgrid(event)
    watcher.join()
    snap = h.sim.state.snapshot()["accounts"][ACCOUNT]
    assert snap["properties"]["allowBlobPublicAccess"] is False, "the writes landed"
    assert snap["containers"]["exports"]["properties"]["publicAccess"] == "None"

    # the ledger is back; Event Grid redelivers after the action's lease has ended
    link.restore()
    h.sim.set_faults([])
    later = datetime.now(UTC) + timedelta(minutes=5)
    h.rt.clock = h.rt.executor.clock = lambda: later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    h.eventgrid(event)
    row = h.incident(event["id"])
    assert row["Status"] == "contained"
    steps = {a["Kind"]: a for a in row["actions"]}
    assert {a["Status"] for a in steps.values()} == {"contained"}, [
        (k, a["Status"]) for k, a in steps.items()
    ]
    assert steps["storage.disable_public_access"]["Before"] == {"allowBlobPublicAccess": None}
    assert steps["storage.make_container_private"]["Before"]["publicAccess"] == "Blob"

    status, body, _ = h.http("playbook", {"restore": row["PartitionKey"], "execute": True})
    assert status == 200, body
    assert sorted(r["status"] for r in body["restored"]) == ["restored", "restored"], body
    snap = h.sim.state.snapshot()["accounts"][ACCOUNT]
    assert snap["properties"]["allowBlobPublicAccess"] is True
    assert snap["containers"]["exports"]["properties"]["publicAccess"] == "Blob"
