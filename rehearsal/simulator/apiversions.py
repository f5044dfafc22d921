"""The api-versions Resource Manager accepts per resource provider, as the specifications list them
(azure-rest-api-specs readme input folders; tests/data/azure/arm_api_versions_from_specs.json).

A request with any other version is refused the way Resource Manager refuses it, so a client pinned
to a version Azure does not serve fails in the tests instead of in production.
"""

from __future__ import annotations

import re

from rehearsal.simulator.routing import ARM, Reply, error

STORAGE = (
    "2026-09-01", "2026-06-01", "2026-04-01", "2025-08-01", "2025-06-01", "2025-01-01", "2024-01-01",
    "2023-05-01", "2023-04-01", "2023-01-01", "2022-09-01", "2022-05-01", "2021-09-01", "2021-08-01",
    "2021-06-01", "2021-04-01", "2021-02-01", "2021-01-01", "2020-08-01-preview", "2019-06-01",
    "2019-04-01", "2018-11-01", "2018-07-01", "2018-03-01-preview", "2018-02-01", "2017-10-01",
    "2017-06-01", "2016-12-01", "2016-05-01", "2016-01-01", "2015-06-15", "2015-05-01-preview",
)  # fmt: skip
SECURITY_INSIGHTS = (
    "2025-12-01", "2025-09-01", "2025-07-01-preview", "2025-06-01", "2025-04-01-preview", "2024-09-01",
    "2023-11-01",
)  # fmt: skip
# the versions of authorization-RoleAssignmentsCalls.json (the only Microsoft.Authorization type simulated)
ROLE_ASSIGNMENTS = (
    "2022-04-01", "2020-10-01-preview", "2020-08-01-preview", "2020-04-01-preview", "2020-03-01-preview",
    "2018-09-01-preview", "2018-01-01-preview", "2017-10-01-preview", "2015-07-01",
)  # fmt: skip
# the folders of specification/resourcegraph/resource-manager/Microsoft.ResourceGraph seen in the specs
# (stable/2021-03-01 and 2022-10-01 with examples; the readme's 2019-04-01 and two previews)
RESOURCE_GRAPH = ("2022-10-01", "2021-03-01", "2020-04-01-preview", "2019-04-01", "2018-09-01-preview")
# diagnosticSettings: only the version of the vendored example (arm_diagnostic_settings_list_example.json)
DIAGNOSTIC_SETTINGS = ("2021-05-01-preview",)
BY_PROVIDER = {
    "microsoft.insights": DIAGNOSTIC_SETTINGS,
    "microsoft.storage": STORAGE,
    "microsoft.securityinsights": SECURITY_INSIGHTS,
    "microsoft.authorization": ROLE_ASSIGNMENTS,
    "microsoft.resourcegraph": RESOURCE_GRAPH,
}
_PROVIDER = re.compile(r"/providers/(Microsoft\.[A-Za-z]+)/(\w+)", re.IGNORECASE)


def check(path: str, query: dict[str, str]) -> Reply | None:
    """None when the api-version is one the provider serves; else Resource Manager's 400."""
    found = _PROVIDER.findall(path)
    if not found:
        return None
    provider, kind = found[-1]
    versions = BY_PROVIDER.get(provider.lower())
    if versions is None:
        return None
    sent = next((v for k, v in query.items() if k.lower() == "api-version"), None)
    if not sent:
        return error(
            ARM,
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if sent.lower() not in versions:
        return error(
            ARM,
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location 'westeurope' and API version '{sent}' "
            f"for type '{kind}'. The supported api-versions are '{', '.join(versions)}'.",
        )
    return None
