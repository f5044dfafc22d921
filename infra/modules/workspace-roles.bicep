// Built-in roles for the responder identity on one Log Analytics workspace, scoped to the
// workspace resource (not its resource group).
param workspaceName string
param principalId string
@description('Microsoft Sentinel Responder: comment on and label incidents.')
param grantSentinelResponder bool
@description('Log Analytics Reader: run the evidence queries.')
param grantLogAnalyticsReader bool

// Built-in role definition GUIDs (identical in every tenant):
//   Microsoft Sentinel Responder: 3e150937-b8fe-4cfb-8069-0eaf05ecd056
//   Log Analytics Reader:         73c42c96-874c-492b-b04d-ab87d138a893
var sentinelResponder = '3e150937-b8fe-4cfb-8069-0eaf05ecd056'
var logAnalyticsReader = '73c42c96-874c-492b-b04d-ab87d138a893'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource responder 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantSentinelResponder) {
  name: guid(workspace.id, principalId, sentinelResponder)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sentinelResponder)
  }
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantLogAnalyticsReader) {
  name: guid(workspace.id, principalId, logAnalyticsReader)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReader)
  }
}
