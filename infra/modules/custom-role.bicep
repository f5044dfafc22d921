// The custom role "Synthetic Leak Responder": exactly the storage-management operations the
// responder's code calls (tests/test_infra.py compares this list with the actions declared in
// responders/core/catalogue.py and with the code). It can read accounts and containers, turn
// public access off, regenerate keys and revoke user-delegation keys. It can NOT list keys or
// create SAS (listkeys/action, ListAccountSas/action, listServiceSas/action): a responder that
// can mint credentials would be a leak path itself. It can read and delete role assignments (to
// remove an implicated service principal's roles on an account) but NOT create them
// (roleAssignments/write would let it grant itself any role): re-creating removed assignments is
// `restore`, run by a human who holds that right. No wildcards.
targetScope = 'subscription'

param roleName string = 'Synthetic Leak Responder'
@description('Subscriptions in the allow-list; the role is assignable in each of them (and in this one, where it is defined).')
param assignableSubscriptionIds array

var allowListScopes = [for sub in assignableSubscriptionIds: '/subscriptions/${sub}']
var assignableScopes = union([
  subscription().id
], allowListScopes)

resource responderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'Contain leaks of synthetic datasets: read storage accounts and containers, disable public blob access, regenerate account keys, revoke user delegation keys, remove an implicated principal\'s role assignments.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.Storage/storageAccounts/write'
          'Microsoft.Storage/storageAccounts/regeneratekey/action'
          'Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action'
          'Microsoft.Storage/storageAccounts/blobServices/containers/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/write'
          'Microsoft.Authorization/roleAssignments/read'
          'Microsoft.Authorization/roleAssignments/delete'
          'Microsoft.Insights/diagnosticSettings/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

output roleGuid string = responderRole.name
output roleDefinitionId string = responderRole.id
