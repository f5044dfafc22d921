// Event Grid system topic on the subscription (Microsoft.Resources.Subscriptions) and the
// subscription that delivers risky storage changes to the function's Event Grid trigger.
param topicName string
param tags object
param sourceSubscriptionId string
@description('Create the event subscription (false on the first provision: the function must exist).')
param createSubscriptions bool
@description('ARM id of the Event Grid-triggered function: <site id>/functions/<name>.')
param functionResourceId string
param deadLetterStorageAccountName string
param deadLetterContainerName string

// Control-plane operations that can expose a storage account or hand out credentials.
// Event Grid compares strings case-insensitively (listKeys == listkeys). Only Resource Manager
// operations raise these events: Get User Delegation Key is a data-plane request (no event), and
// is seen only in StorageBlobLogs, through alerts.
var riskyStorageOperations = [
  'Microsoft.Storage/storageAccounts/write'
  'Microsoft.Storage/storageAccounts/blobServices/containers/write'
  'Microsoft.Storage/storageAccounts/listKeys/action'
  'Microsoft.Storage/storageAccounts/ListAccountSas/action'
  'Microsoft.Storage/storageAccounts/listServiceSas/action'
]

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: topicName
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: '/subscriptions/${sourceSubscriptionId}'
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource deadLetterAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: deadLetterStorageAccountName
}

// The topic's identity writes undeliverable events to the dead-letter container.
module deadLetterRole 'deadletter-role.bicep' = {
  name: '${topicName}-dlq-role'
  params: {
    storageAccountName: deadLetterStorageAccountName
    containerName: deadLetterContainerName
    principalId: topic.identity.principalId
  }
}

resource riskyStorageChanges 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (createSubscriptions) {
  parent: topic
  name: 'risky-storage-changes'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceActionSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: riskyStorageOperations
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterAccount.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
  dependsOn: [
    deadLetterRole
  ]
}

output topicName string = topic.name
output topicPrincipalId string = topic.identity.principalId
