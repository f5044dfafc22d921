#!/bin/sh
# azd postdeploy hook: once the eventgrid_trigger function exists, provision again so the Event
# Grid subscriptions (validated against .../functions/eventgrid_trigger) and the Sentinel playbook
# (which needs the function key) are created. The preprovision hook (decide-wiring.sh) sees the
# function and sets WIRE_TRIGGERS=true for that provision. If this command's provision already
# found the function (a redeploy), the triggers are wired and there is nothing to do.
set -eu
. "$(dirname "$0")/az-common.sh"

function_id="${RESPONDER_EVENTGRID_FUNCTION_ID:?run azd provision first (no RESPONDER_EVENTGRID_FUNCTION_ID)}"
pause="${WIRE_RETRY_SECONDS:-30}"

# Flex Consumption indexes the functions a little after the deployment returns.
attempt=1
while :; do
  az_capture resource show --ids "$function_id" --query id --output tsv
  [ "$AZ_RC" -eq 0 ] && break
  if ! is_not_found; then
    echo "wire-triggers: cannot read $function_id:" >&2
    printf '%s\n' "$AZ_ERR" >&2
    exit 1
  fi
  if [ "$attempt" -ge "${WIRE_WAIT_ATTEMPTS:-20}" ]; then
    echo "wire-triggers: $function_id still does not exist after $attempt checks; is the code deployed?" >&2
    exit 1
  fi
  echo "wire-triggers: waiting for the functions to be indexed (check $attempt)."
  attempt=$((attempt + 1))
  sleep "$pause"
done

if [ "${WIRE_TRIGGERS:-false}" = "true" ]; then
  echo "wire-triggers: this provision found the function and wired the triggers; nothing to do."
  exit 0
fi

# Event Grid may still answer "Destination endpoint not found" for a short while: try a few times.
attempt=1
until azd provision --no-prompt; do
  if [ "$attempt" -ge 4 ]; then
    echo "wire-triggers: provisioning failed $attempt times; run 'azd provision' again later." >&2
    exit 1
  fi
  echo "wire-triggers: attempt $attempt failed; retrying in $pause s." >&2
  attempt=$((attempt + 1))
  sleep "$pause"
done
