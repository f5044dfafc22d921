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
@description('Application (client) id of the Entra ID app registration callers sign in to; empty = no identity provider.')
param authClientId string = ''

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

// App Service authentication, on: the platform sets X-MS-CLIENT-PRINCIPAL-ID for a caller who
// signed in with Microsoft Entra ID, and external requests cannot set it (MicrosoftDocs
// azure-docs articles/app-service/configure-authentication-user-identities.md), so the code
// trusts that header only with WEBSITE_AUTH_ENABLED=true. AllowAnonymous keeps Event Grid and
// the Logic App calling with function keys; RESPONDER_PLAYBOOK_CALLERS then decides who may use
// the playbook (infra/README.md, "Require sign-in for the playbook"). Without a client id no
// provider is configured and no caller can be identified, so an allow-list refuses everyone.
// checkov applies its SiteConfig checks to every Microsoft.Web/sites/config, this one included
// (skipped below, infra/CHECKOV_SKIPS.md); its own check, CKV_AZURE_56, passes. (pycep, checkov's
// Bicep parser, fails on five comment lines in a row, hence their spread.)
var entraOff = {
  enabled: false
}
var entraOn = {
  enabled: true
  registration: {
    clientId: authClientId
    openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  }
  validation: {
    allowedAudiences: [
      'api://${authClientId}'
      authClientId
    ]
  }
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: checks the legacy authsettings shape (properties.enabled); authsettingsV2 enables it with platform.enabled (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_63: a SiteConfig property (httpLoggingEnabled), not part of authsettingsV2 (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_65: a SiteConfig property (detailedErrorLoggingEnabled), not part of authsettingsV2 (infra/CHECKOV_SKIPS.md)
  parent: site
  // checkov:skip=CKV_AZURE_66: a SiteConfig property (requestTracingEnabled), not part of authsettingsV2 (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_80: a SiteConfig property (netFrameworkVersion), not part of authsettingsV2; the app runs Python (infra/CHECKOV_SKIPS.md)
  name: 'authsettingsV2'
  // checkov:skip=CKV_AZURE_88: a SiteConfig property (azureStorageAccounts), not part of authsettingsV2 (infra/CHECKOV_SKIPS.md)
  // checkov:skip=CKV_AZURE_222: a site property (publicNetworkAccess), not part of authsettingsV2; see the same skip on the site (infra/CHECKOV_SKIPS.md)
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    identityProviders: {
      azureActiveDirectory: empty(authClientId) ? entraOff : entraOn
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
