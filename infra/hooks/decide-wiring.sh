#!/bin/sh
# azd preprovision hook: decide from what exists whether this provision wires the triggers.
# The Event Grid subscriptions are validated against .../functions/eventgrid_trigger and the
# playbook needs that function's key, so they can only be created once the code is deployed.
# WIRE_TRIGGERS is therefore set before every provision from whether that function exists now,
# never carried over: after `azd down` the function is gone, so the next `azd up` provisions
# without wiring, deploys, and the postdeploy hook (wire-triggers.sh) wires. Needs the Azure CLI,
# signed in, once the app has been provisioned.
set -eu
. "$(dirname "$0")/az-common.sh"

wire=false
function_id="${RESPONDER_EVENTGRID_FUNCTION_ID:-}"
if [ -n "$function_id" ]; then
  az_capture resource show --ids "$function_id" --query id --output tsv
  if [ "$AZ_RC" -eq 0 ]; then
    wire=true
  elif ! is_not_found; then
    echo "decide-wiring: cannot tell whether $function_id exists (az login? az account set?):" >&2
    printf '%s\n' "$AZ_ERR" >&2
    exit 1
  fi
fi
azd env set WIRE_TRIGGERS "$wire"
if [ "$wire" = true ]; then
  echo "decide-wiring: the function is deployed; this provision wires the triggers."
else
  echo "decide-wiring: no deployed function yet; the triggers are wired after deploy."
fi
