#!/bin/sh
# azd postprovision hook: deploy infra/external.bicep as its own deployment, <env>-external.
# It holds what lives outside the app's resource group (the custom role and its assignments,
# role assignments on the Sentinel/evidence workspaces, the Sentinel automation rule,
# BlobCreated topics on synthetic-data accounts): `azd down` deletes every resource group its
# own deployment touches, so these must not be part of it. Needs the Azure CLI, signed in
# (`az login`), with the rights listed in infra/README.md.
set -eu

: "${SENTINEL_WORKSPACE_ID:?set it with: azd env set SENTINEL_WORKSPACE_ID <workspace ARM id>}"

deploy() {
  az deployment sub create \
    --subscription "$AZURE_SUBSCRIPTION_ID" \
    --location "$AZURE_LOCATION" \
    --name "${AZURE_ENV_NAME}-external" \
    --template-file infra/external.bicep \
    --parameters \
      environmentName="$AZURE_ENV_NAME" \
      principalId="$RESPONDER_IDENTITY_OBJECT_ID" \
      responderSubscriptionIds="${RESPONDER_SUBSCRIPTION_IDS:-}" \
      customRoleName="${CUSTOM_ROLE_NAME:-Synthetic Leak Responder}" \
      sentinelWorkspaceId="$SENTINEL_WORKSPACE_ID" \
      evidenceWorkspaceId="${EVIDENCE_WORKSPACE_ID:-}" \
      syntheticStorageAccountIds="${SYNTHETIC_STORAGE_ACCOUNT_IDS:-}" \
      wireTriggers="${WIRE_TRIGGERS:-false}" \
      functionResourceId="$RESPONDER_EVENTGRID_FUNCTION_ID" \
      deadLetterStorageAccountId="$RESPONDER_DEADLETTER_STORAGE_ID" \
      deadLetterContainerName="$RESPONDER_DEADLETTER_CONTAINER" \
      playbookId="${RESPONDER_PLAYBOOK_ID:-}" \
      sentinelAutomationPrincipalId="${SENTINEL_AUTOMATION_PRINCIPAL_ID:-}" \
    --output none
}

# A new custom role takes a little while to replicate; its first assignment can fail with
# RoleDefinitionDoesNotExist. Deployments are idempotent, so try again.
attempt=1
until deploy; do
  if [ "$attempt" -ge 3 ]; then
    echo "external: deployment failed $attempt times; run 'azd provision' again later." >&2
    exit 1
  fi
  echo "external: attempt $attempt failed; retrying in ${EXTERNAL_RETRY_SECONDS:-30} s." >&2
  attempt=$((attempt + 1))
  sleep "${EXTERNAL_RETRY_SECONDS:-30}"
done
echo "external: deployment ${AZURE_ENV_NAME}-external is up to date."
