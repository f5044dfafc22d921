// Synthetic leak responder: everything `azd up` provisions.
//
// Subscription scope, so that azd creates the resource group itself; the Event Grid system
// topic whose *source* is the subscription sits in that group (location 'global').
//
// Two phases (see infra/README.md): Event Grid validates that `.../functions/eventgrid_trigger`
// exists and the playbook needs a function key, so neither can be created before `azd deploy`
// has published the code. `wireTriggers` (env WIRE_TRIGGERS) is set before every provision by
// the preprovision hook from whether that function exists now: false on a first provision and
// after `azd down`; the postdeploy hook waits for the function and provisions again, wired.
//
// Everything here lives in the one resource group this deployment creates. `azd down`
// deletes every resource group that holds a resource of the azd deployment (a role
// assignment on the Sentinel workspace would take the Sentinel resource group with it), so
// what lives elsewhere is in external.bicep, a separate deployment run by the postprovision
// hook: the custom role and its assignments, the workspace roles, the Sentinel automation
// rule and the BlobCreated topics on synthetic-data accounts. tests/test_infra.py enforces it.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for the resource group and every regional resource (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@description('ARM id of the Log Analytics workspace on which Microsoft Sentinel is enabled.')
param sentinelWorkspaceId string

@description('ARM id of the workspace the evidence queries run against; empty = the Sentinel workspace.')
param evidenceWorkspaceId string = ''

@description('ARM id of an existing workspace for Application Insights; empty = create one.')
param appLogAnalyticsWorkspaceId string = ''

@description('Comma-separated subscription ids the responder may act in (the allow-list); empty = this subscription only. Used for the default policy here and for the role assignments in external.bicep.')
param responderSubscriptionIds string = ''

@description('RESPONDER_DRY_RUN: true plans and records but changes nothing. Keep true for the first deployment.')
param dryRun bool = true

@description('RESPONDER_POLICY as an object; empty = the default policy (synthetic tag, allow-listed subscriptions).')
param responderPolicy object = {}

@description('Application (client) id of the Entra ID app registration that callers of the playbook sign in to (env AUTH_CLIENT_ID); empty = App Service authentication on with no identity provider.')
param authClientId string = ''

@description('Comma-separated Entra ID object ids allowed to call the playbook (env RESPONDER_PLAYBOOK_CALLERS); empty = any holder of its function key.')
param playbookCallers string = ''

@description('RESPONDER_SWEEP_SCHEDULE: when the sweep runs, six NCRONTAB fields (with seconds); default every 15 minutes.')
param sweepSchedule string = '0 */15 * * * *'

@description('Create the Event Grid subscriptions, the Sentinel playbook and automation rule (needs the deployed code).')
param wireTriggers bool = false

@description('Object id of the "Azure Security Insights" service principal (appId 98785600-1bb7-4fb9-b9fa-19afe2c8a360) in this tenant; empty = no automation rule.')
param sentinelAutomationPrincipalId string = ''

@description('Name of the HTTP-triggered function that takes Sentinel incidents (its key is given to the playbook).')
param sentinelFunctionName string = 'alerts'

@description('Route of that function: the playbook POSTs to https://<app>/api/<route>.')
param sentinelRoute string = 'alerts'

@description('Name of the Python function with the Event Grid trigger.')
param eventGridFunctionName string = 'eventgrid_trigger'

@description('Flex Consumption instance memory (MB): 512, 2048 or 4096.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption maximum instance count.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  workload: 'synthetic-leak-responder'
}
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var allowSubscriptionIds = empty(responderSubscriptionIds) ? [
  subscription().subscriptionId
] : split(replace(responderSubscriptionIds, ' ', ''), ',')
var allowScopes = [for sub in allowSubscriptionIds: '/subscriptions/${sub}']
var evidenceWorkspace = empty(evidenceWorkspaceId) ? sentinelWorkspaceId : evidenceWorkspaceId
var evidenceWsParts = split(evidenceWorkspace, '/')
var functionAppName = 'func-${resourceToken}'
var ledgerTableName = 'ResponderLedger'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'
var defaultPolicy = {
  synthetic: {
    tags: {
      'data-classification': [
        'synthetic'
      ]
    }
    metadata: {
      data_classification: [
        'synthetic'
      ]
    }
  }
  scope: {
    allow: allowScopes
  }
}
var policy = empty(responderPolicy) ? defaultPolicy : responderPolicy

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

// Existing workspaces, read for their customerId (the GUID the query API takes).
resource evidenceWs 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: last(evidenceWsParts)
  scope: resourceGroup(evidenceWsParts[2], evidenceWsParts[4])
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-responder-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    existingWorkspaceId: appLogAnalyticsWorkspaceId
    publisherPrincipalId: identity.outputs.principalId
  }
}

module appStorage 'modules/app-storage.bicep' = {
  name: 'app-storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    appPrincipalId: identity.outputs.principalId
  }
}

module ledger 'modules/ledger.bicep' = {
  name: 'ledger'
  scope: rg
  params: {
    name: 'stl${resourceToken}'
    location: location
    tags: tags
    tableName: ledgerTableName
    writerPrincipalId: identity.outputs.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: appStorage.outputs.name
    deploymentContainerUrl: '${appStorage.outputs.blobEndpoint}${deploymentContainerName}'
    appInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    authClientId: authClientId
    responderSettings: {
      RESPONDER_POLICY: string(policy)
      RESPONDER_DRY_RUN: dryRun ? 'true' : 'false'
      RESPONDER_LEDGER_ENDPOINT: ledger.outputs.tableEndpoint
      RESPONDER_LEDGER_TABLE: ledgerTableName
      RESPONDER_IDENTITY_OBJECT_ID: identity.outputs.principalId
      RESPONDER_SENTINEL_WORKSPACE_ID: sentinelWorkspaceId
      RESPONDER_LOG_ANALYTICS_WORKSPACE_ID: evidenceWs.properties.customerId
      RESPONDER_EVIDENCE_WORKSPACE_RESOURCE_ID: evidenceWorkspace
      AZURE_CLIENT_ID: identity.outputs.clientId
      RESPONDER_PLAYBOOK_CALLERS: playbookCallers
      // the container the Event Grid subscriptions dead-letter to; the identity reads it with the
      // Storage Blob Data Owner role it holds on this account for the Functions host
      RESPONDER_DEADLETTER_ENDPOINT: appStorage.outputs.blobEndpoint
      RESPONDER_DEADLETTER_CONTAINER: deadLetterContainerName
      RESPONDER_SWEEP_SCHEDULE: sweepSchedule
      AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'
    }
  }
}

// --- Triggers ------------------------------------------------------------------------------
module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    topicName: 'evgt-subscription-${resourceToken}'
    tags: tags
    sourceSubscriptionId: subscription().subscriptionId
    createSubscriptions: wireTriggers
    functionResourceId: '${functionApp.outputs.id}/functions/${eventGridFunctionName}'
    deadLetterStorageAccountName: appStorage.outputs.name
    deadLetterContainerName: deadLetterContainerName
  }
}

module playbook 'modules/sentinel-playbook.bicep' = if (wireTriggers) {
  name: 'sentinel-playbook'
  scope: rg
  params: {
    name: 'logic-sentinel-${resourceToken}'
    location: location
    tags: tags
    functionAppName: functionApp.outputs.name
    functionName: sentinelFunctionName
    functionUrl: 'https://${functionApp.outputs.defaultHostName}/api/${sentinelRoute}'
    sentinelAutomationPrincipalId: sentinelAutomationPrincipalId
  }
}

// Data-plane requests with no Resource Manager event, alerted from StorageBlobLogs (the module says why).
module storageLogAlert 'modules/storage-log-alert.bicep' = if (wireTriggers) {
  name: 'storage-log-alert'
  scope: rg
  params: {
    name: 'alert-storage-udk-acl-${resourceToken}'
    location: location
    tags: tags
    workspaceId: evidenceWorkspace
    functionAppName: functionApp.outputs.name
    functionName: sentinelFunctionName
    functionUrl: 'https://${functionApp.outputs.defaultHostName}/api/${sentinelRoute}'
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_RESPONDER_URL string = 'https://${functionApp.outputs.defaultHostName}'
output RESPONDER_IDENTITY_OBJECT_ID string = identity.outputs.principalId
output RESPONDER_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output RESPONDER_LEDGER_ENDPOINT string = ledger.outputs.tableEndpoint
output RESPONDER_LEDGER_TABLE string = ledgerTableName
output RESPONDER_LEDGER_ACCOUNT string = ledger.outputs.name
output RESPONDER_SYSTEM_TOPIC string = eventGrid.outputs.topicName
output RESPONDER_TRIGGERS_WIRED bool = wireTriggers
// Read by infra/hooks/external.sh (azd stores outputs in the environment).
output RESPONDER_EVENTGRID_FUNCTION_ID string = '${functionApp.outputs.id}/functions/${eventGridFunctionName}'
output RESPONDER_DEADLETTER_STORAGE_ID string = appStorage.outputs.id
output RESPONDER_DEADLETTER_CONTAINER string = deadLetterContainerName
output RESPONDER_PLAYBOOK_ID string = wireTriggers ? playbook.outputs.id : ''
