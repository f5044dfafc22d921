// What lives outside the app's resource group, deployed by the azd postprovision hook
// (infra/hooks/external.sh) as a deployment of its own, named <env>-external: the custom role
// and its assignments (subscription scope), role assignments on the Sentinel and evidence
// workspaces, the Sentinel automation rule, and BlobCreated topics on synthetic-data
// accounts. It is kept out of main.bicep because `azd down` deletes every resource group
// that holds a resource of the azd deployment: a role assignment on the Sentinel workspace
// there would take the Sentinel resource group with it. The predown hook
// (infra/hooks/remove-external.sh) deletes exactly the resources this deployment created,
// except the role definition (see infra/README.md, "Remove").
targetScope = 'subscription'

@description('azd environment name (tags).')
param environmentName string

@description('principalId of the responder identity.')
param principalId string

@description('Comma-separated subscription ids the responder may act in (the allow-list); empty = this subscription only.')
param responderSubscriptionIds string = ''

@description('Name of the custom role (tenant-wide unique). Change it only to run two environments in one tenant.')
param customRoleName string = 'Synthetic Leak Responder'

@description('ARM id of the Log Analytics workspace with Microsoft Sentinel.')
param sentinelWorkspaceId string

@description('ARM id of the workspace the evidence queries run against; empty = the Sentinel workspace.')
param evidenceWorkspaceId string = ''

@description('Comma-separated ARM ids of storage accounts holding synthetic data (BlobCreated topics).')
param syntheticStorageAccountIds string = ''

@description('Create the event subscriptions and the automation rule (the functions and the playbook exist).')
param wireTriggers bool = false

@description('ARM id of the Event Grid-triggered function: <site id>/functions/<name>.')
param functionResourceId string

@description('ARM id of the storage account with the dead-letter container (in the app resource group).')
param deadLetterStorageAccountId string

param deadLetterContainerName string = 'eventgrid-deadletter'

@description('ARM id of the Sentinel playbook (Logic App); empty = no automation rule.')
param playbookId string = ''

@description('Object id of the "Azure Security Insights" service principal; empty = no automation rule.')
param sentinelAutomationPrincipalId string = ''

var tags = {
  'azd-env-name': environmentName
  workload: 'synthetic-leak-responder'
}
var allowSubscriptionIds = empty(responderSubscriptionIds) ? [
  subscription().subscriptionId
] : split(replace(responderSubscriptionIds, ' ', ''), ',')
var evidenceWorkspace = empty(evidenceWorkspaceId) ? sentinelWorkspaceId : evidenceWorkspaceId
var sentinelWsParts = split(sentinelWorkspaceId, '/')
var evidenceWsParts = split(evidenceWorkspace, '/')
var deadLetterParts = split(deadLetterStorageAccountId, '/')
var accountIds = empty(syntheticStorageAccountIds) ? [] : split(replace(syntheticStorageAccountIds, ' ', ''), ',')

// --- Least privilege: the custom role, assigned in every allow-listed subscription ---------
module customRole 'modules/custom-role.bicep' = {
  name: '${environmentName}-custom-role'
  params: {
    roleName: customRoleName
    assignableSubscriptionIds: allowSubscriptionIds
  }
}

module responderRoleAssignments 'modules/subscription-role-assignment.bicep' = [for sub in allowSubscriptionIds: {
  name: '${environmentName}-responder-role-${take(uniqueString(sub), 8)}'
  scope: subscription(sub)
  params: {
    principalId: principalId
    roleDefinitionGuid: customRole.outputs.roleGuid
  }
}]

// Microsoft Sentinel Responder on the Sentinel workspace (comments, labels on incidents), and
// Log Analytics Reader there when it is also the evidence workspace.
module sentinelRoles 'modules/workspace-roles.bicep' = {
  name: '${environmentName}-sentinel-roles'
  scope: resourceGroup(sentinelWsParts[2], sentinelWsParts[4])
  params: {
    workspaceName: last(sentinelWsParts)
    principalId: principalId
    grantSentinelResponder: true
    grantLogAnalyticsReader: evidenceWorkspace == sentinelWorkspaceId
  }
}

// Log Analytics Reader on the evidence workspace when it is not the Sentinel one.
module evidenceRoles 'modules/workspace-roles.bicep' = if (evidenceWorkspace != sentinelWorkspaceId) {
  name: '${environmentName}-evidence-roles'
  scope: resourceGroup(evidenceWsParts[2], evidenceWsParts[4])
  params: {
    workspaceName: last(evidenceWsParts)
    principalId: principalId
    grantSentinelResponder: false
    grantLogAnalyticsReader: true
  }
}

// Sentinel runs the playbook for every new incident.
module automationRule 'modules/sentinel-automation-rule.bicep' = if (wireTriggers && !empty(playbookId) && !empty(sentinelAutomationPrincipalId)) {
  name: '${environmentName}-sentinel-automation-rule'
  scope: resourceGroup(sentinelWsParts[2], sentinelWsParts[4])
  params: {
    workspaceName: last(sentinelWsParts)
    playbookId: playbookId
    ruleName: guid(sentinelWorkspaceId, playbookId, 'synthetic-leak-responder')
  }
}

// Optional: BlobCreated on accounts that hold synthetic data. Topic, then the dead-letter
// role for its identity, then the subscription (which needs both).
module blobTopics 'modules/eventgrid-blob-topic.bicep' = [for (accountId, i) in accountIds: {
  name: '${environmentName}-blob-topic-${i}'
  scope: resourceGroup(split(accountId, '/')[2], split(accountId, '/')[4])
  params: {
    storageAccountName: last(split(accountId, '/'))
    tags: tags
  }
}]

module blobTopicDeadLetterRoles 'modules/deadletter-role.bicep' = [for (accountId, i) in accountIds: {
  name: '${environmentName}-blob-dlq-role-${i}'
  scope: resourceGroup(deadLetterParts[2], deadLetterParts[4])
  params: {
    storageAccountName: last(deadLetterParts)
    containerName: deadLetterContainerName
    principalId: blobTopics[i].outputs.topicPrincipalId
  }
}]

module blobSubscriptions 'modules/eventgrid-blob-subscription.bicep' = [for (accountId, i) in accountIds: if (wireTriggers) {
  name: '${environmentName}-blob-subscription-${i}'
  scope: resourceGroup(split(accountId, '/')[2], split(accountId, '/')[4])
  params: {
    topicName: blobTopics[i].outputs.topicName
    functionResourceId: functionResourceId
    deadLetterStorageAccountId: deadLetterStorageAccountId
    deadLetterContainerName: deadLetterContainerName
  }
  dependsOn: [
    blobTopicDeadLetterRoles
  ]
}]

output RESPONDER_CUSTOM_ROLE_ID string = customRole.outputs.roleGuid
