// Assigns the custom responder role to the responder identity at one subscription.
targetScope = 'subscription'

param principalId string
@description('GUID (name) of the custom role definition.')
param roleDefinitionGuid string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionGuid)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    description: 'Synthetic leak responder: contain public exposure and leaked keys/SAS.'
  }
}
