"""The only place that builds credentials and SDK clients; SDKs are imported on first use (cold start)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from responders.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.storage import StorageManagementClient
    from azure.monitor.query import LogsQueryClient
    from azure.storage.blob import ContainerClient
    from msgraph import GraphServiceClient

T = TypeVar("T")
RETRY_AFTER_CAP = 30.0
GRAPH_CUTOFF = 120.0  # a Graph call still unanswered after this is cancelled and the step retried
GRAPH_RETRIES = 3


def retry_policy() -> Any:
    """azure-core's retry (429, 408, 5xx, broken connections; never 400/401/403/404), with jittered
    backoff, honouring Retry-After but never sleeping longer than RETRY_AFTER_CAP per attempt."""
    from azure.core.pipeline.policies import RetryPolicy

    class CappedRetryPolicy(RetryPolicy):
        def get_retry_after(self, response: Any) -> float | None:
            value = super().get_retry_after(response)
            return None if value is None else min(float(value), RETRY_AFTER_CAP)

    return CappedRetryPolicy(retry_total=3, retry_backoff_factor=0.4, retry_backoff_max=8)


def graph_retry_handler(cap: float) -> Any:
    """kiota's retry handler (429, 503, 504) with every delay, Retry-After included, capped at `cap`.

    kiota sleeps for whatever Retry-After says up to 180 s (its option's `max_delay` is a base delay
    added to the backoff, not a cap), so with GRAPH_RETRIES retries a call could outlive the cut-off.
    """
    from kiota_http.middleware import RetryHandler
    from kiota_http.middleware.options import RetryHandlerOption

    class CappedRetryHandler(RetryHandler):
        def get_delay_time(self, retry_count: int, response: Any = None, delay: float = 0.0) -> float:
            return min(float(super().get_delay_time(retry_count, response, delay)), cap)

    handler = CappedRetryHandler(RetryHandlerOption(delay=0.0, max_retries=GRAPH_RETRIES))
    handler.backoff_max = 8
    return handler


class Clients:
    """Lazily built, cached SDK clients pointed at the endpoints in Settings."""

    def __init__(
        self, settings: Settings, retry_after_cap: float = RETRY_AFTER_CAP, graph_cutoff: float = GRAPH_CUTOFF
    ) -> None:
        self.settings = settings
        self.retry_after_cap = retry_after_cap
        self.graph_cutoff = graph_cutoff
        self._lock = threading.RLock()
        self._credential: TokenCredential | None = None
        self._storage: dict[str, StorageManagementClient] = {}
        self._authorization: dict[str, AuthorizationManagementClient] = {}
        self._table: TableClient | None = None
        self._logs: LogsQueryClient | None = None
        self._graph: GraphServiceClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arm: Any = None
        self._deadletters: ContainerClient | None = None
        self._resource_graph: ResourceGraphClient | None = None

    @property
    def credential(self) -> TokenCredential:
        """DefaultAzureCredential; AZURE_TOKEN_CREDENTIALS narrows the chain (managed identity only)."""
        with self._lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            return self._credential

    def storage(self, subscription: str) -> StorageManagementClient:
        with self._lock:
            client = self._storage.get(subscription)
        if client is None:
            from azure.mgmt.storage import StorageManagementClient

            client = StorageManagementClient(
                self.credential,
                subscription,
                base_url=self.settings.arm_endpoint,
                retry_policy=retry_policy(),
            )
            with self._lock:
                client = self._storage.setdefault(subscription, client)
        return client

    def resource_graph(self) -> ResourceGraphClient:
        """Resource Graph on the Resource Manager endpoint (the sweep's inventory), same credential and
        capped retries; its quota headers are read by the sweep, which paces its pages by them."""
        with self._lock:
            if self._resource_graph is None:
                from azure.mgmt.resourcegraph import ResourceGraphClient

                self._resource_graph = ResourceGraphClient(
                    self.credential, base_url=self.settings.arm_endpoint, retry_policy=retry_policy()
                )
            return self._resource_graph

    def authorization(self, subscription: str) -> AuthorizationManagementClient:
        """Role assignments (azure-mgmt-authorization): the storage client's endpoint, credential and
        retries; the api-version is the SDK's default for role_assignments (2022-04-01)."""
        with self._lock:
            client = self._authorization.get(subscription)
        if client is None:
            from azure.mgmt.authorization import AuthorizationManagementClient

            client = AuthorizationManagementClient(
                self.credential,
                subscription,
                base_url=self.settings.arm_endpoint,
                retry_policy=retry_policy(),
            )
            with self._lock:
                client = self._authorization.setdefault(subscription, client)
        return client

    def arm(self) -> Any:
        """A bare ARM pipeline (bearer auth, capped retries) for APIs without an SDK in our set:
        Microsoft.SecurityInsights incidents and comments."""
        with self._lock:
            if getattr(self, "_arm", None) is None:
                from azure.core.pipeline import policies
                from azure.mgmt.core import ARMPipelineClient
                from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

                self._arm = ARMPipelineClient(
                    base_url=self.settings.arm_endpoint,
                    policies=[
                        policies.RequestIdPolicy(),
                        policies.HeadersPolicy(),
                        policies.UserAgentPolicy(sdk_moniker="synthetic-leak-responder"),
                        retry_policy(),
                        ARMChallengeAuthenticationPolicy(
                            self.credential, "https://management.azure.com/.default"
                        ),
                        policies.ContentDecodePolicy(),
                        ARMHttpLoggingPolicy(),
                    ],
                )
            return self._arm

    def table(self) -> TableClient:
        with self._lock:
            if self._table is None:
                from azure.data.tables import TableClient

                conn = self.settings.ledger_connection_string
                if conn:
                    self._table = TableClient.from_connection_string(conn, self.settings.ledger_table)
                else:
                    self._table = TableClient(
                        self.settings.ledger_endpoint, self.settings.ledger_table, credential=self.credential
                    )
            return self._table

    def deadletters(self) -> ContainerClient | None:
        """The Event Grid dead-letter container, read with the identity (Azure) or, like the ledger,
        with a connection string (Azurite, over http on loopback); None when neither is configured."""
        with self._lock:
            if self._deadletters is None:
                from azure.storage.blob import ContainerClient

                name = self.settings.deadletter_container
                conn = self.settings.deadletter_connection_string
                from azure.storage.blob import ExponentialRetry

                # three retries a second or two apart (the SDK's default waits 15 s and more, ten times)
                retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3)
                if conn:
                    self._deadletters = ContainerClient.from_connection_string(conn, name, retry_policy=retry)
                elif self.settings.deadletter_endpoint:
                    self._deadletters = ContainerClient(
                        self.settings.deadletter_endpoint,
                        name,
                        credential=self.credential,
                        retry_policy=retry,
                    )
            return self._deadletters

    def logs(self) -> LogsQueryClient:
        with self._lock:
            if self._logs is None:
                from azure.monitor.query import LogsQueryClient

                self._logs = LogsQueryClient(
                    self.credential,
                    endpoint=self.settings.logs_endpoint,
                    audience="https://api.loganalytics.io",
                )
            return self._logs

    def _graph_loop(self) -> asyncio.AbstractEventLoop:
        """msgraph-sdk is async; one private loop thread serves every caller thread."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="graph-loop", daemon=True).start()
                self._loop = loop
            return self._loop

    def graph(self) -> GraphServiceClient:
        with self._lock:
            if self._graph is None:
                from kiota_authentication_azure.azure_identity_authentication_provider import (
                    AzureIdentityAuthenticationProvider,
                )
                from msgraph import GraphRequestAdapter, GraphServiceClient
                from msgraph_core import GraphClientFactory
                from msgraph_core.middleware import GraphTelemetryHandler

                host = urlparse(self.settings.graph_endpoint).hostname or "graph.microsoft.com"
                auth = AzureIdentityAuthenticationProvider(
                    self.credential,
                    scopes=["https://graph.microsoft.com/.default"],
                    allowed_hosts=[host],
                )
                # kiota after msgraph, in the order msgraph imports it: other threads may be importing
                # msgraph's request builders meanwhile, and opposite orders can deadlock the imports
                from kiota_http.kiota_client_factory import KiotaClientFactory
                from kiota_http.middleware import RetryHandler

                # the default chain with its retry handler swapped for one capped like ARM's
                middleware = [
                    graph_retry_handler(self.retry_after_cap) if isinstance(m, RetryHandler) else m
                    for m in KiotaClientFactory.get_default_middleware(None)
                ]
                middleware.append(GraphTelemetryHandler())
                adapter = GraphRequestAdapter(
                    auth, client=GraphClientFactory.create_with_custom_middleware(middleware)
                )
                adapter.base_url = self.settings.graph_endpoint
                self._graph = GraphServiceClient(request_adapter=adapter)
            return self._graph

    def run_graph(self, make: Any) -> Any:
        """Run `make(client)` (a coroutine factory) on the Graph loop and wait for its result.

        At the cut-off the call is cancelled on the loop, retries and all, and TimeoutError is raised
        only once it has stopped: a PATCH cannot land after its step was recorded for a retry.
        """
        client = self.graph()
        cutoff = self.graph_cutoff

        async def bounded() -> Any:
            coro: Coroutine[Any, Any, Any] = make(client)
            return await asyncio.wait_for(coro, cutoff)

        future = asyncio.run_coroutine_threadsafe(bounded(), self._graph_loop())
        try:
            return future.result(timeout=cutoff + 10)  # backstop: wait_for answers at the cut-off
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        with self._lock:
            for client in self._storage.values():
                client.close()
            self._storage.clear()
            for client in self._authorization.values():
                client.close()
            self._authorization.clear()
            if self._table is not None:
                self._table.close()
                self._table = None
            if self._logs is not None:
                self._logs.close()
                self._logs = None
            if self._deadletters is not None:
                self._deadletters.close()
                self._deadletters = None
            if self._arm is not None:
                self._arm.close()
                self._arm = None
            if self._resource_graph is not None:
                self._resource_graph.close()
                self._resource_graph = None
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None
            self._graph = None
            if self._credential is not None and hasattr(self._credential, "close"):
                self._credential.close()
                self._credential = None
