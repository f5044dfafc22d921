# Shared by the hooks (sourced, POSIX sh): run `az` keeping its output, and tell "not found" apart
# from every other failure. Only "not found" may be taken as "nothing there"; a signed-out CLI, a
# subscription the CLI cannot see, a refused request or a throttled one are failures.

# az_capture ARGS...: runs `az ARGS`; sets AZ_RC (exit code), AZ_OUT (stdout) and AZ_ERR (stderr).
az_capture() {
  _az_err=$(mktemp)
  if AZ_OUT=$(az "$@" 2>"$_az_err"); then AZ_RC=0; else AZ_RC=$?; fi
  AZ_ERR=$(cat "$_az_err")
  rm -f "$_az_err"
}

# is_not_found: true when the last az_capture failed because the resource, its parent, its group or
# the deployment does not exist. The Azure CLI prints the ARM error code as "(Code)" and "Code: X";
# a code is matched whole, so SubscriptionNotFound (the CLI pointing elsewhere) is not "not found".
is_not_found() {
  [ "$AZ_RC" -ne 0 ] && printf '%s\n' "$AZ_ERR" | grep -Eq \
    '(^|[^A-Za-z])(NotFound|ResourceNotFound|ParentResourceNotFound|ResourceGroupNotFound|DeploymentNotFound|RoleAssignmentNotFound)([^A-Za-z]|$)'
}
