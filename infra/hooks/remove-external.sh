#!/bin/sh
# azd predown hook: delete exactly the resources that the <env>-external deployment created
# (role assignments, the automation rule, Event Grid system topics and their subscriptions),
# never a resource group. Needs the Azure CLI, signed in (`az login`) to the tenant and able to
# see AZURE_SUBSCRIPTION_ID.
#
# It fails, and so stops `azd down`, on any error but "not found": a signed-out CLI or one
# pointing elsewhere is never taken for "nothing to remove". A resource already gone counts as
# deleted. The deployment record, which is how this hook finds the resources, is deleted only
# once every delete succeeded, so after a failure the hook can simply run again.
set -eu
. "$(dirname "$0")/az-common.sh"

name="${AZURE_ENV_NAME}-external"
sub="$AZURE_SUBSCRIPTION_ID"

az_capture account show --subscription "$sub" --query id --output tsv
if [ "$AZ_RC" -ne 0 ]; then
  echo "remove-external: the Azure CLI cannot use subscription $sub (az login? az account set?):" >&2
  printf '%s\n' "$AZ_ERR" >&2
  exit 1
fi

az_capture deployment sub show --subscription "$sub" --name "$name" \
  --query "properties.outputResources[].id" --output tsv
if [ "$AZ_RC" -ne 0 ]; then
  if is_not_found; then
    echo "remove-external: no deployment $name in subscription $sub; nothing to remove."
    exit 0
  fi
  echo "remove-external: cannot read deployment $name:" >&2
  printf '%s\n' "$AZ_ERR" >&2
  exit 1
fi
ids=$AZ_OUT

failed=0
delete() {
  echo "remove-external: deleting $1"
  az_capture resource delete --ids "$1" --output none
  if [ "$AZ_RC" -eq 0 ]; then
    return 0
  fi
  if is_not_found; then
    echo "remove-external: $1 was already gone"
    return 0
  fi
  echo "remove-external: could not delete $1:" >&2
  printf '%s\n' "$AZ_ERR" >&2
  failed=$((failed + 1))
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

if [ "$failed" -gt 0 ]; then
  echo "remove-external: $failed delete(s) failed; kept deployment $name so this hook can run again." >&2
  exit 1
fi
az_capture deployment sub delete --subscription "$sub" --name "$name" --output none
if [ "$AZ_RC" -ne 0 ] && ! is_not_found; then
  echo "remove-external: removed the resources but could not delete deployment $name:" >&2
  printf '%s\n' "$AZ_ERR" >&2
  exit 1
fi
echo "remove-external: removed what $name created."
