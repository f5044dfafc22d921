// Flex Consumption (FC1) plan and the Python 3.11 function app. The app runs as the
// user-assigned identity; every connection is identity-based (no keys in app settings).
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
@description('https URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string
param appInsightsConnectionString string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40
@description('RESPONDER_* and AZURE_* settings the code reads.')
param responderSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption is regional and not offered everywhere; Event Grid retries for 24 h (infra/CHECKOV_SKIPS.md)
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var baseSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}
var allSettings = union(baseSettings, responderSettings)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'responder'
  })
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_222: Event Grid and the Sentinel playbook call the app over its public endpoint; callers are authenticated by the Event Grid system key and a function key (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_17: Event Grid and Logic Apps cannot present client certificates (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per execution from zero; there is no instance count to set (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_213: health check is not available on Flex Consumption (infra/CHECKOV_SKIPS.md)
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No FTP or SCM basic-auth publishing: azd deploys with an Entra ID token.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
