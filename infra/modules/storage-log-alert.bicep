// A log search alert on StorageBlobLogs for the two data-plane requests that raise no Resource
// Manager event: Get User Delegation Key (a user-delegation SAS can follow) and Set Container ACL
// (how a container is made public through the data plane; the log has no header values, so every
// call is flagged and the responder reads the container's state to decide). Its alert reaches the
// responder's /api/alerts in the common alert schema (samples/events/17-...); the responder runs
// the alert's query to learn the accounts (_ResourceId) and reads the storage logs for evidence.
// StorageBlobLogs exists only once a diagnostic setting sends blob logs to the workspace: until
// then the query fails to resolve the table (MicrosoftDocs/azure-docs#78711).
param name string
param location string
param tags object
@description('ARM id of the Log Analytics workspace that receives StorageBlobLogs.')
param workspaceId string
param functionAppName string
@description('Name of the HTTP-triggered function that takes alerts.')
param functionName string
@description('https URL of that function\'s route.')
param functionUrl string

var query = 'StorageBlobLogs | where OperationName in ("GetUserDelegationKey", "SetContainerACL") | where StatusCode == 200 | project TimeGenerated, AccountName, OperationName, AuthenticationType, RequesterObjectId, CallerIpAddress, _ResourceId'

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// Azure Monitor calls the function through its own Azure Function receiver (it fetches the key
// itself), so no key is written into the action group.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'synthleak'
    enabled: true
    azureFunctionReceivers: [
      {
        name: 'responder-alerts'
        functionAppResourceId: site.id
        functionName: functionName
        httpTriggerUrl: functionUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Synthetic leak responder: user-delegation keys and container ACLs'
    description: 'Get User Delegation Key and Set Container ACL on storage accounts (data-plane requests with no Resource Manager event)'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      workspaceId
    ]
    criteria: {
      allOf: [
        {
          query: query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output ruleId string = rule.id
output query string = query
