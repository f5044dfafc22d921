#!/bin/sh
# azd predown hook: delete exactly the resources that the <env>-external deployment created
# (role assignments, the automation rule, Event Grid system topics and their subscriptions),
# never a resource group. Needs the Azure CLI, signed in (`az login`).
set -eu

name="${AZURE_ENV_NAME}-external"
ids=$(az deployment sub show --subscription "$AZURE_SUBSCRIPTION_ID" --name "$name" \
  --query "properties.outputResources[].id" --output tsv 2>/dev/null || true)
if [ -z "$ids" ]; then
  echo "remove-external: no deployment $name; nothing to remove."
  exit 0
fi

delete() {
  echo "remove-external: deleting $1"
  az resource delete --ids "$1" --output none || echo "remove-external: could not delete $1" >&2
}

# Grants, rules and event subscriptions first; then the topics (deleting a topic deletes its
# subscriptions too). Anything else is left alone and named.
for id in $ids; do
  case "$id" in
    */providers/Microsoft.Authorization/roleAssignments/*) delete "$id" ;;
    */providers/Microsoft.SecurityInsights/automationRules/*) delete "$id" ;;
    */providers/Microsoft.EventGrid/systemTopics/*/eventSubscriptions/*) delete "$id" ;;
  esac
done
for id in $ids; do
  case "$id" in
    */providers/Microsoft.Authorization/roleAssignments/*) ;;
    */providers/Microsoft.SecurityInsights/automationRules/*) ;;
    */providers/Microsoft.EventGrid/systemTopics/*/eventSubscriptions/*) ;;
    */providers/Microsoft.EventGrid/systemTopics/*) delete "$id" ;;
    *) echo "remove-external: leaving $id (not a type this hook deletes)" >&2 ;;
  esac
done
az deployment sub delete --subscription "$AZURE_SUBSCRIPTION_ID" --name "$name" --output none || true
