#!/bin/sh
# azd postdeploy hook: once the functions exist, provision again with WIRE_TRIGGERS=true so
# the Event Grid subscriptions (validated against .../functions/eventgrid_trigger) and the
# Sentinel playbook (which needs the function key) can be created.
set -eu

if [ "${WIRE_TRIGGERS:-false}" = "true" ]; then
  echo "wire-triggers: already wired (WIRE_TRIGGERS=true); nothing to do."
  exit 0
fi

azd env set WIRE_TRIGGERS true
# Flex Consumption indexes the functions a little after the deployment returns: Event Grid
# answers "Destination endpoint not found" until then, so try a few times.
attempt=1
until azd provision --no-prompt; do
  if [ "$attempt" -ge 4 ]; then
    echo "wire-triggers: provisioning failed $attempt times; run 'azd provision' again later." >&2
    exit 1
  fi
  echo "wire-triggers: attempt $attempt failed; retrying in 60 s." >&2
  attempt=$((attempt + 1))
  sleep 60
done
