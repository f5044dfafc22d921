// System topic on one storage account that holds synthetic data (deployed into that
// account's resource group, in its region). Azure allows one system topic per source: if
// the account already has one, leave it out of syntheticStorageAccountIds.
param storageAccountName string
param tags object

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${storageAccountName}'
  location: account.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicName string = topic.name
output topicPrincipalId string = topic.identity.principalId
