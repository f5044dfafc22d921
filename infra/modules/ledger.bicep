// The audit ledger: its own storage account with one table, so the responder's write access
// (Storage Table Data Contributor) is granted on that table alone, and the account holds
// nothing else. Entra ID only: shared keys off.
param name string
param location string
param tags object
param tableName string = 'ResponderLedger'
@description('The app identity: Storage Table Data Contributor on the ledger table only.')
param writerPrincipalId string

// Storage Table Data Contributor (built-in): 0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  // checkov:skip=CKV_AZURE_35: the Functions host (Flex Consumption without VNet integration) writes the ledger over the public endpoint; shared keys are off, so every request needs an Entra ID token and an RBAC grant (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: no private endpoint without a VNet (infra/CHECKOV_SKIPS.md)
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

resource tableWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(table.id, writerPrincipalId, storageTableDataContributor)
  scope: table
  properties: {
    principalId: writerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

output name string = account.name
output tableEndpoint string = account.properties.primaryEndpoints.table
